"""CUDA settings made before anything initialises CUDA, and the toolchain CuPy is built for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pydotcompute import BackendUnavailableError
from pydotcompute._cuda import (
    CUPY_WHEELS,
    CudaStatus,
    check_ring_kernel_environment,
    cupy_cuda_major,
    cupy_distribution,
)

ROOT = str(Path(__file__).resolve().parents[1])
PROBE = (
    "import os, sys; sys.path.insert(0, {root!r}); import pydotcompute; "
    "print(os.environ.get('CUDA_MODULE_LOADING'), 'cupy' in sys.modules)"
)


def run_import(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "CUDA_MODULE_LOADING"}
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(root=ROOT)],
        capture_output=True, text=True, timeout=120, check=True, env={**clean, **env},
    ).stdout.strip()  # fmt: skip


def test_import_asks_for_eager_module_loading_without_touching_cuda() -> None:
    assert run_import() == "EAGER False"


def test_a_loading_mode_the_user_chose_is_kept() -> None:
    assert run_import(CUDA_MODULE_LOADING="LAZY") == "LAZY False"


def test_lazy_loading_named_by_the_user_is_refused_for_ring_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pydotcompute._cuda.EAGER_SET_HERE", False)
    monkeypatch.setenv("CUDA_MODULE_LOADING", "LAZY")
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    unknown = CudaStatus(True, "usable", 1, "GPU", "90", 12040, None)  # no cuModuleGetLoadingMode
    with pytest.raises(BackendUnavailableError, match=r"\(CUDA_MODULE_LOADING=LAZY is set\)"):
        check_ring_kernel_environment(unknown)


def test_cupy_toolchain_is_read_from_the_installed_wheel() -> None:
    wheel = cupy_distribution()
    if wheel is None:
        assert cupy_cuda_major() is None
        return
    assert wheel[0] in dict(CUPY_WHEELS)
    assert cupy_cuda_major() == dict(CUPY_WHEELS)[wheel[0]]
