"""NVRTC of both CUDA toolchains (12 and 13): finding, choosing and loading it without a GPU."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydotcompute import BackendUnavailableError
from pydotcompute.backends.device import _nvrtc
from pydotcompute.backends.device._nvrtc import load_nvrtc, nvrtc_libraries

DT_RPATH, DT_RUNPATH, DT_DEBUG = 15, 29, 21


def installed(major: int) -> _nvrtc.Nvrtc:
    try:
        return load_nvrtc(major)
    except BackendUnavailableError as exc:
        pytest.skip(f"NVRTC {major} is not installed: {exc}")


@pytest.fixture
def fresh_search(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Search for NVRTC again under the test's environment, and forget it afterwards."""
    nvrtc_libraries.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    nvrtc_libraries.cache_clear()


def strip_runpath(path: Path) -> int:
    """Turn the library's DT_RPATH / DT_RUNPATH entries into DT_DEBUG; return how many."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"\x7fELF" and data[4] == 2, "a 64-bit ELF file"
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    changed = 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type != 2:  # PT_DYNAMIC
            continue
        for off in range(p_offset, p_offset + p_filesz, 16):
            tag, _ = struct.unpack_from("<qQ", data, off)
            if tag in (DT_RPATH, DT_RUNPATH):
                struct.pack_into("<q", data, off, DT_DEBUG)
                changed += 1
    path.write_bytes(bytes(data))
    return changed


def test_both_toolchains_are_found_one_library_each() -> None:
    found, _ = nvrtc_libraries()
    for major in (12, 13):
        if major not in found:
            pytest.skip(f"NVRTC {major} is not installed (dev extra: nvidia-cuda-nvrtc*)")
        assert found[major].version[0] == major and found[major].name.startswith("NVRTC ")


def test_default_follows_the_installed_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(12), installed(13)
    monkeypatch.setattr("pydotcompute._cuda.cupy_cuda_major", lambda: 12)
    assert load_nvrtc().version[0] == 12
    monkeypatch.setattr("pydotcompute._cuda.cupy_cuda_major", lambda: 13)
    assert load_nvrtc().version[0] == 13
    monkeypatch.setattr("pydotcompute._cuda.cupy_cuda_major", lambda: None)
    assert load_nvrtc().version[0] == 13  # no CuPy: the newest


def test_a_driver_too_old_for_the_newest_toolchain_gets_the_older(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed(12), installed(13)
    monkeypatch.setattr("pydotcompute._cuda.cupy_cuda_major", lambda: 13)
    assert load_nvrtc(at_most=12).version[0] == 12
    with pytest.raises(BackendUnavailableError, match=r"NVRTC 13 \(the driver runs CUDA 12"):
        load_nvrtc(13, at_most=12)


def test_a_missing_toolchain_says_how_to_install_it(fresh_search: pytest.MonkeyPatch) -> None:
    fresh_search.setenv(_nvrtc.ENV_VAR, "/nonexistent/libnvrtc.so.12")
    with pytest.raises(
        BackendUnavailableError, match=r"needs NVRTC 13 \(loaded: none;.*nvidia-cuda-nvrtc>=13"
    ):
        load_nvrtc(13)


@pytest.fixture(scope="module")
def bare_nvrtc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of libnvrtc 12 without RUNPATH, its builtins beside it (as the CUDA 13 wheel)."""
    try:
        lib = Path(load_nvrtc(12).path)
    except BackendUnavailableError as exc:
        pytest.skip(f"NVRTC 12 is not installed: {exc}")
    folder = tmp_path_factory.mktemp("bare-nvrtc")
    shutil.copyfile(lib, folder / lib.name)
    assert strip_runpath(folder / lib.name) >= 1
    for builtins in lib.parent.glob("libnvrtc-builtins.so.*"):
        if ".alt." not in builtins.name:
            shutil.copyfile(builtins, folder / builtins.name)
    return folder / lib.name


COMPILE = textwrap.dedent(
    """
    import ctypes, sys
    sys.path[:0] = [{root!r}]
    from pydotcompute.backends.device import _nvrtc
    path = {path!r}
    nvrtc = _nvrtc.Nvrtc(ctypes.CDLL(path), path) if {raw} else _nvrtc.load_nvrtc()
    try:
        cubin, log = nvrtc.compile('extern "C" __global__ void f() {{}}', "f.cu", ["-arch=sm_90"])
        print("ok", cubin[:4] == b"\\x7fELF")
    except Exception as exc:
        print("error", exc)
    """
)


def compile_in_child(path: Path, raw: bool) -> str:
    root = str(Path(__file__).resolve().parents[2])
    env = {"PATH": "/usr/bin:/bin", _nvrtc.ENV_VAR: str(path)}
    code = COMPILE.format(root=root, path=str(path), raw=raw)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    ).stdout.strip()


def test_nvrtc_without_runpath_finds_its_builtins(bare_nvrtc: Path) -> None:
    # The premise: loaded plainly, this copy cannot find its builtins.
    assert compile_in_child(bare_nvrtc, raw=True).startswith("error nvrtcCompileProgram failed")
    assert compile_in_child(bare_nvrtc, raw=False) == "ok True"


def test_nvrtc_without_its_builtins_is_a_clear_error(bare_nvrtc: Path, tmp_path: Path) -> None:
    alone = tmp_path / bare_nvrtc.name
    shutil.copyfile(bare_nvrtc, alone)
    out = compile_in_child(alone, raw=False)
    assert "libnvrtc-builtins must sit beside it" in out and "reinstall it" in out


def test_preload_takes_only_the_builtins_of_the_same_major(tmp_path: Path) -> None:
    lib = Path(installed(12).path)
    for name in ("libnvrtc-builtins.so.13.5", "libnvrtc-builtins.alt.so.12.9"):
        (tmp_path / name).write_bytes(b"not a library")
    builtins = next(p for p in lib.parent.glob("libnvrtc-builtins.so.12.*"))
    shutil.copyfile(builtins, tmp_path / builtins.name)
    assert _nvrtc.preload_builtins(str(tmp_path / "libnvrtc.so.12")) == [
        str(tmp_path / builtins.name)
    ]
    assert _nvrtc.preload_builtins("libnvrtc.so.12") == []  # the system loader's own search
