"""python -m pydotcompute demo / info."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import pydotcompute
from pydotcompute import _cli
from pydotcompute._cli import main
from pydotcompute._cuda import cuda_status
from pydotcompute.backends.device._compile import find_cxx


def test_demo_runs_and_prints_results_and_telemetry() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pydotcompute", "demo"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out = proc.stdout
    assert "Sum: 15.0" in out and "[0.75, 45.0]" in out
    assert "5/5 injected spikes found" in out
    assert "kernel" in out and "summer" in out and "TERMINATED" in out


def test_demo_shows_a_device_ring_kernel_launched_once() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pydotcompute", "demo", "--readings", "200"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    device = proc.stdout.split("5. Device ring kernel", 1)[1]
    if cuda_status().usable:
        assert device.lstrip().startswith("on the GPU")
    else:
        assert device.lstrip().startswith("on the emulated device (no usable GPU")
    if find_cxx() is None and not cuda_status().usable:
        assert "skipped: the emulated device builds kernels with a host C++ compiler" in device
        return
    assert re.search(
        r"5,000 messages through 'scaler' on \S+: 1 launch, 5,000 replies "
        r"\(all correct\), 5,000 counted",
        device,
    )
    assert re.search(r"round trip p50: device kernel [\d.]+ us, host kernel [\d.]+ us", device)


def test_info_reports_versions_and_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("pydotcompute ") and "numpy" in out and "msgpack" in out and "msgspec" in out
    )
    assert "\n  host                  usable (asyncio ring kernels)\n" in out
    assert re.search(
        r"  cupy                  "
        r"(not installed \(pip install -e \"\.\[cuda\]\"|[\d.]+ \(cupy-cuda1\dx\))",
        out,
    )
    assert re.search(r"  cuda                  .*(builds with NVRTC \d+\.\d+|no usable NVRTC)", out)


def test_bad_arguments_give_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--readings", "5"])
    assert info.value.code == 2
    assert "--readings must be at least 200, got 5" in capsys.readouterr().err


def test_info_on_a_gpu_names_the_driver_loading_mode_and_nvrtc(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydotcompute._cuda import CudaStatus

    gpu = CudaStatus(True, "usable", 1, "NVIDIA H200", "90", 13000, "EAGER")
    monkeypatch.setattr("pydotcompute._cuda.cuda_status", lambda: gpu)
    assert main(["info"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "  cuda " in line)
    assert "usable (device ring kernels on 1 GPU(s), device 0: NVIDIA H200 (sm_90);" in row
    assert "driver CUDA 13.0; module loading EAGER;" in row
    assert re.search(r"(builds with NVRTC 1[23]\.\d+|no usable NVRTC)", row)


def test_version_flag_prints_the_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pydotcompute", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert proc.stdout.strip() == f"pydotcompute {pydotcompute.__version__}"


def test_info_lists_the_widgets_package(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = {"pydotcompute-widgets": "9.8.7"}
    monkeypatch.setattr(_cli, "_version_of", versions.get)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "  pydotcompute-widgets  9.8.7\n" in out
    versions.clear()
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert (
        "  pydotcompute-widgets  not installed (pip install -e ./widgets in a PyDotCompute "
        "checkout)" in out
    )
    assert '  numba                 not installed (pip install -e ".[cuda]" (CUDA 12 driver)' in out
