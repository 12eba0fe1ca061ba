"""The on-disk artifact cache and the CUDA probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from pydotcompute import BackendUnavailableError, PyDotComputeError
from pydotcompute._cache import cache_dir, cache_key, read_cached, write_cached
from pydotcompute._cuda import cuda_status, require_cupy


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
