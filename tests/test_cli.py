"""python -m pydotcompute demo / info."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pydotcompute
from pydotcompute import _cli
from pydotcompute._cli import main


def test_demo_runs_and_prints_results_and_telemetry() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pydotcompute", "demo"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    out = proc.stdout
    assert "Sum: 15.0" in out and "[0.75, 45.0]" in out
    assert "5/5 injected spikes found" in out
    assert "kernel" in out and "summer" in out and "TERMINATED" in out


def test_info_reports_versions_and_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pydotcompute ") and "numpy" in out and "msgpack" in out
    assert "\n  host                  usable (asyncio ring kernels)\n" in out


def test_bad_arguments_give_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--readings", "5"])
    assert info.value.code == 2
    assert "--readings must be at least 200, got 5" in capsys.readouterr().err


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
    assert '  cupy-cuda12x          not installed (pip install -e ".[cuda]" in a' in out
