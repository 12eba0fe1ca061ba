"""A small ctypes binding to NVRTC: compile CUDA C++ to a CUBIN without a GPU.

libnvrtc is found, in order, at ``$PYDOTCOMPUTE_NVRTC``, in the ``nvidia-cuda-nvrtc-cu12``
wheel (or its CUDA 13 successor), by the system loader, and under ``$CUDA_PATH`` /
``/usr/local/cuda``. Compiling needs no driver and no GPU, so CI checks the generated source
for real GPU architectures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
from pathlib import Path

from ..._install import extra_hint
from ...errors import BackendUnavailableError

__all__ = ["Nvrtc", "load_nvrtc"]

ENV_VAR = "PYDOTCOMPUTE_NVRTC"


def _candidates() -> list[str]:
    found: list[str] = []
    if os.environ.get(ENV_VAR):
        found.append(os.environ[ENV_VAR])
    spec = importlib.util.find_spec("nvidia")
    for root in list(spec.submodule_search_locations or []) if spec else []:
        for sub in ("cuda_nvrtc/lib", "cu13/lib", "cu12/lib"):
            found += sorted(glob.glob(os.path.join(root, sub, "libnvrtc.so*")), reverse=True)
    name = ctypes.util.find_library("nvrtc")
    if name:
        found.append(name)
    for base in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if base:
            found += sorted(glob.glob(os.path.join(base, "lib64", "libnvrtc.so*")), reverse=True)
    return [f for f in found if "builtins" not in Path(f).name and ".alt." not in Path(f).name]


class Nvrtc:
    """An NVRTC library: its version and a ``compile`` to CUBIN."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self._lib = lib
        self.path = path
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def __repr__(self) -> str:
        return f"<NVRTC {self.version[0]}.{self.version[1]} at {self.path}>"

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            text = self._lib.nvrtcGetErrorString(code).decode() if code else ""
            raise RuntimeError(f"{what} failed: {text} ({code})")

    def compile(self, source: str, name: str, options: list[str]) -> tuple[bytes | None, str]:
        """Compile ``source``; return (CUBIN or ``None`` on a compile error, the log)."""
        lib = self._lib
        prog = ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(
                ctypes.byref(prog), source.encode(), name.encode(), 0, None, None
            ),
            "nvrtcCreateProgram",
        )
        try:
            opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
            code = lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self._check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "log size")
            buf = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
            log = buf.value.decode(errors="replace")
            if code != 0:
                return None, log
            self._check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
            cubin = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
            return cubin.raw, log
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


@functools.cache
def load_nvrtc() -> Nvrtc:
    """Load libnvrtc (cached), or raise a clear error saying how to install it."""
    tried = []
    for path in _candidates():
        try:
            return Nvrtc(ctypes.CDLL(path), path)
        except OSError as exc:
            tried.append(f"{path}: {exc}")
    detail = "; ".join(tried) or "no libnvrtc.so found"
    raise BackendUnavailableError(
        f"compiling device ring kernels for CUDA needs NVRTC ({detail}); install it with "
        f"pip install nvidia-cuda-nvrtc-cu12 (or {extra_hint('cuda')}) or set {ENV_VAR} "
        "to the path of libnvrtc.so"
    )
