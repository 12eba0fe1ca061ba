"""The on-disk artifact cache and the CUDA probe."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from pydotcompute import BackendUnavailableError, PyDotComputeError, RingKernelRuntime, _cache
from pydotcompute._cache import (
    CacheTrustError,
    cache_dir,
    cache_key,
    cached_path,
    read_cached,
    write_cached,
)
from pydotcompute._cuda import cuda_status, require_cupy
from pydotcompute.backends.device._compile import find_cxx


def test_cache_dir_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDOTCOMPUTE_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir("cuda") == tmp_path / "c" / "cuda"
    assert (tmp_path / "c" / "cuda").is_dir()


def test_cache_dir_defaults_under_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYDOTCOMPUTE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("ptx") == tmp_path / "pydotcompute" / "ptx"


def test_unwritable_cache_dir_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PYDOTCOMPUTE_CACHE_DIR", str(blocker))
    with pytest.raises(PyDotComputeError, match="set PYDOTCOMPUTE_CACHE_DIR to a writable"):
        cache_dir("cuda")


def test_keys_are_stable_and_sensitive_to_every_part() -> None:
    k = cache_key("src", b"bytes", {"b": 1, "a": 2}, 3)
    assert k == cache_key("src", b"bytes", {"a": 2, "b": 1}, 3)
    assert k != cache_key("src", b"bytes", {"a": 2, "b": 1}, 4)
    assert cache_key("ab", "c") != cache_key("a", "bc")


def test_write_then_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDOTCOMPUTE_CACHE_DIR", str(tmp_path))
    assert read_cached("x", "k", ".bin") is None
    path = write_cached("x", "k", ".bin", b"data")
    assert path.read_bytes() == b"data" and read_cached("x", "k", ".bin") == b"data"
    assert [p.name for p in path.parent.iterdir()] == ["k.bin"]  # no temporary left behind


def test_cuda_status_explains_itself() -> None:
    status = cuda_status()
    assert isinstance(status.usable, bool) and status.reason
    if not status.usable:
        with pytest.raises(BackendUnavailableError, match="needs a usable CUDA GPU, but"):
            require_cupy("this feature")


# ---------------------------------------------------------------- trust


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("PYDOTCOMPUTE_CACHE_DIR", str(root))
    return root


def test_cache_directories_are_created_private(cache: Path) -> None:
    path = cache_dir("numba")
    assert path == cache / "numba"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE(write_cached("numba", "k", ".bin", b"x").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("mode", "who"), [(0o777, "its group and all users"), (0o703, "all users")]
)
def test_a_cache_directory_others_can_write_is_refused(cache: Path, mode: int, who: str) -> None:
    cache_dir("cuda")
    (cache / "cuda").chmod(mode)
    with pytest.raises(
        CacheTrustError,
        match=rf"cache directory {cache / 'cuda'} is writable by {who} \(mode {mode:o}\).*"
        rf"chmod 700 {cache / 'cuda'}",
    ):
        cache_dir("cuda")


def test_a_cache_root_others_can_write_is_refused(cache: Path) -> None:
    cache.mkdir(mode=0o700)
    cache.chmod(0o757)
    with pytest.raises(CacheTrustError, match=rf"cache directory {cache} is writable by all"):
        read_cached("cuda", "k", ".cubin")


def test_a_cache_directory_of_another_user_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir("emulated")
    me = os.getuid()
    monkeypatch.setattr(_cache, "_uid", lambda: me + 4242)
    with pytest.raises(
        CacheTrustError,
        match=rf"cache directory {cache} belongs to .*uid {me}\), not to you \(uid {me + 4242}\)"
        r".*set PYDOTCOMPUTE_CACHE_DIR to a directory of your own",
    ):
        cache_dir("emulated")


def test_a_cached_file_others_can_write_is_never_loaded(cache: Path) -> None:
    path = write_cached("cuda", "k", ".cubin", b"\x7fELF")
    path.chmod(0o666)
    with pytest.raises(CacheTrustError, match=rf"cached file {path} is writable.*chmod 600"):
        read_cached("cuda", "k", ".cubin")
    with pytest.raises(CacheTrustError, match=rf"delete it \(rm {path}\) and it is rebuilt"):
        cached_path("cuda", "k", ".cubin")
    path.chmod(0o644)  # readable by others is fine: only writers matter
    assert cached_path("cuda", "k", ".cubin") == path


def test_group_write_is_allowed_for_a_user_private_group(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir("ptx")
    (cache / "ptx").chmod(0o770)
    monkeypatch.setattr(_cache, "_private_group", lambda gid, uid: True)
    assert cache_dir("ptx") == cache / "ptx"
    monkeypatch.setattr(_cache, "_private_group", lambda gid, uid: False)
    with pytest.raises(CacheTrustError, match="writable by its group"):
        cache_dir("ptx")


@pytest.mark.skipif(find_cxx() is None, reason="no C++ compiler for the emulated device")
async def test_a_planted_kernel_library_is_not_loaded(cache: Path) -> None:
    from tests.backends.device_kernels import declare

    declare("trusting")
    async with RingKernelRuntime(device="emulated") as rt:
        await asyncio.wait_for(rt.launch("trusting"), 120)
        await asyncio.wait_for(rt.terminate("trusting"), 30)
    (library,) = (cache / "emulated").glob("*.so")
    library.chmod(0o666)  # as if another user could have replaced it
    async with RingKernelRuntime(device="emulated") as rt:
        with pytest.raises(CacheTrustError, match=rf"cached file {library} is writable"):
            await asyncio.wait_for(rt.launch("trusting"), 60)
