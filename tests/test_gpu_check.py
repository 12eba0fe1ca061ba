"""tools/gpu_check.sh: the one-call GPU check, dry-run here (its GPU parts skip cleanly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


def test_it_needs_an_output_folder() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage: tools/gpu_check.sh OUTDIR" in proc.stderr


@pytest.mark.slow
def test_a_dry_run_writes_its_five_small_files(tmp_path: Path) -> None:
    from pydotcompute._cuda import cuda_status

    if cuda_status().usable:
        pytest.skip("a usable GPU is present: this is the dry run of a machine without one")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CHECK_TESTS": "tests/backends/test_device_gpu.py",
        "GPU_CHECK_BENCH": "device device_pipeline",
        "GPU_CHECK_PROBE": "/nonexistent/probe.py",
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["bench.log", "env.log", "probe.log", "results.json", "tests.log"]
    assert all((tmp_path / "out" / f).stat().st_size < 64 * 1024 for f in files)
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["gpu"] is None and result["gpu_status"].startswith("no: ")
    assert result["probe_exit_code"] == "skipped"
    assert result["tests"]["skipped"] == result["tests"]["tests"] >= 3
    assert result["tests"]["failures"] == result["tests"]["errors"] == 0
    assert result["benchmarks"]["exit_code"] == 0
    assert result["benchmarks"]["record"]["results"] == {"device": [], "device_pipeline": []}
    bench_log = (tmp_path / "out" / "bench.log").read_text()
    assert "the CUDA variant needs a usable CUDA GPU" in bench_log
    env_log = (tmp_path / "out" / "env.log").read_text()
    assert "CUDA_MODULE_LOADING=" in env_log and "backends:" in env_log
    assert "skipped: no usable GPU" in (tmp_path / "out" / "probe.log").read_text()
    assert "summary: GPU no: " in proc.stdout
