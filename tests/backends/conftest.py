"""Fixtures of the backend tests: where device kernels run, and a private build cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pydotcompute import RingKernelRuntime
from pydotcompute._cuda import cuda_status
from pydotcompute.backends.device._compile import find_cxx
from pydotcompute.backends.device._nvrtc import Nvrtc, load_nvrtc
from pydotcompute.errors import BackendUnavailableError
from tests.conftest import WAIT, within

NO_CXX = "the emulated device needs a C++ compiler (g++ or clang++), none found"


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the session: each kernel compiles once, not per test."""
    return tmp_path_factory.mktemp("pdc-cache")


@pytest.fixture(autouse=True)
def private_cache(build_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds go to the session's cache, never to the user's."""
    monkeypatch.setenv("PYDOTCOMPUTE_CACHE_DIR", str(build_cache))


def _cuda_marks() -> list[pytest.MarkDecorator]:
    status = cuda_status()
    return [
        pytest.mark.gpu,
        pytest.mark.skipif(not status.usable, reason=f"no usable CUDA GPU: {status.reason}"),
    ]


@pytest.fixture(
    params=[
        pytest.param("emulated", marks=pytest.mark.skipif(find_cxx() is None, reason=NO_CXX)),
        pytest.param("cuda", marks=_cuda_marks()),
    ]
)
def device(request: pytest.FixtureRequest) -> str:
    """Where device kernels run: the emulated device, and CUDA where a GPU is usable."""
    return str(request.param)


@pytest.fixture
async def druntime(device: str) -> AsyncIterator[RingKernelRuntime]:
    """A runtime whose device kernels run on ``device``, shut down at the end."""
    rt = RingKernelRuntime(device=device)
    async with rt:
        yield rt
        await within(rt.shutdown(), WAIT * 2)


@pytest.fixture(params=[12, 13], ids=["nvrtc12", "nvrtc13"])
def nvrtc(request: pytest.FixtureRequest) -> Nvrtc:
    """Each CUDA toolchain's NVRTC: generated sources must compile with both."""
    try:
        return load_nvrtc(request.param)
    except BackendUnavailableError as exc:
        pytest.skip(f"NVRTC {request.param} is not installed: {exc}")
