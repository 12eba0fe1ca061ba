"""Compute tests: a private artifact cache, the simulated GPU, and subprocess helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pydotcompute import Accelerator
from pydotcompute._cuda import cuda_status

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Compiled kernels of this session go to a temporary cache, not the user's."""
    # Load Numba's real CUDA target before any test sets NUMBA_ENABLE_CUDASIM: the choice
    # between it and the simulator is made once per process, at import.
    import numba.cuda  # noqa: F401

    path = tmp_path_factory.mktemp("pdc-cache")
    old = os.environ.get("PYDOTCOMPUTE_CACHE_DIR")
    os.environ["PYDOTCOMPUTE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        del os.environ["PYDOTCOMPUTE_CACHE_DIR"]
    else:
        os.environ["PYDOTCOMPUTE_CACHE_DIR"] = old


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Accelerator:
    """The simulated GPU: separate "device" memory in host arrays (no Numba import needed)."""
    if cuda_status().usable:
        pytest.skip("a real GPU is usable here, so cuda:0 is not the simulator")
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    return Accelerator("cuda:0")


def gpu() -> Accelerator:
    """The first real GPU, or skip the test with the probe's reason."""
    status = cuda_status()
    if not status.usable:
        pytest.skip(f"no usable CUDA GPU: {status.reason}")
    return Accelerator("cuda:0")


def run_python(
    code: str,
    *,
    cache: Path,
    script: Path,
    sim: bool = False,
    timeout: float = 240,
    env: dict[str, str] | None = None,
) -> Any:
    """Run ``code`` from the file ``script`` in a fresh interpreter; return its last JSON line.

    Kernel bodies need their source, so the code runs from a file rather than ``-c``.
    """
    script.write_text(textwrap.dedent(code))
    extra = env or {}
    env = dict(os.environ, PYDOTCOMPUTE_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env.update(extra)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
