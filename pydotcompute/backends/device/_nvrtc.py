"""A small ctypes binding to NVRTC: compile CUDA C++ to a CUBIN without a GPU.

Both CUDA 12 and CUDA 13 toolchains are supported. libnvrtc is looked for at
``$PYDOTCOMPUTE_NVRTC`` (that file only), in the NVRTC wheels (``nvidia-cuda-nvrtc-cu12``:
``nvidia/cuda_nvrtc/lib``; ``nvidia-cuda-nvrtc`` 13: ``nvidia/cu13/lib``), by the system
loader, and under ``$CUDA_PATH`` / ``$CUDA_HOME`` / ``/usr/local/cuda``. One library is kept
per major version; :func:`load_nvrtc` takes the major the installed CuPy is built for (see
:func:`pydotcompute._cuda.cupy_cuda_major`) when it is there, else the newest.

libnvrtc loads ``libnvrtc-builtins.so.<major>.<minor>`` with ``dlopen`` when it compiles.
The CUDA 13 wheel's libnvrtc has been seen without a RUNPATH, so that lookup fails and so
does every compile; the builtins beside the library are therefore loaded first (a
``dlopen`` of an already loaded soname finds it). Compiling needs no driver and no GPU, so
CI checks the generated source for real GPU architectures with every NVRTC installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
import re
from pathlib import Path

from ...errors import BackendUnavailableError

__all__ = ["Nvrtc", "load_nvrtc", "nvrtc_libraries", "preload_builtins"]

ENV_VAR = "PYDOTCOMPUTE_NVRTC"
NVRTC_ERROR_COMPILATION = 6  # the source has errors: the log says which
#: The wheel folders of each toolchain, under every ``nvidia`` package root.
WHEEL_DIRS = ("cu13/lib", "cuda_nvrtc/lib", "cu12/lib")
INSTALL_HINT = (
    "pip install nvidia-cuda-nvrtc-cu12 (CUDA 12) or 'nvidia-cuda-nvrtc>=13' (CUDA 13); "
    "the extras cuda and cuda13 include them"
)

_preloaded: list[ctypes.CDLL] = []  # builtins kept loaded for the life of the process


def _candidates() -> list[str]:
    found: list[str] = []
    spec = importlib.util.find_spec("nvidia")
    for root in list(spec.submodule_search_locations or []) if spec else []:
        for sub in WHEEL_DIRS:
            found += sorted(glob.glob(os.path.join(root, sub, "libnvrtc.so*")), reverse=True)
    name = ctypes.util.find_library("nvrtc")
    if name:
        found.append(name)
    for base in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if base:
            found += sorted(glob.glob(os.path.join(base, "lib64", "libnvrtc.so*")), reverse=True)
    return [f for f in found if "builtins" not in Path(f).name and ".alt." not in Path(f).name]


def preload_builtins(library: str) -> list[str]:
    """Load the ``libnvrtc-builtins`` beside ``library`` (RTLD_GLOBAL); return their paths.

    Only the builtins of the library's own major version are loaded (``.so.13.x`` for
    ``libnvrtc.so.13``); a library named without a version takes every one beside it.
    """
    path = Path(library)
    if not path.is_absolute():
        return []  # found by the system loader: its own search path finds the builtins
    major = re.fullmatch(r"libnvrtc\.so\.(\d+)(?:\.[\d.]*)?", path.name)
    pattern = f"libnvrtc-builtins.so.{major[1]}.*" if major else "libnvrtc-builtins.so*"
    loaded = []
    for builtins in sorted(path.parent.glob(pattern)):
        if ".alt." in builtins.name:
            continue
        _preloaded.append(ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL))
        loaded.append(str(builtins))
    return loaded


class Nvrtc:
    """An NVRTC library: its version and a ``compile`` to CUBIN."""

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self._lib = lib
        self.path = path
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)

    def __repr__(self) -> str:
        return f"<NVRTC {self.version[0]}.{self.version[1]} at {self.path}>"

    @property
    def name(self) -> str:
        """``NVRTC <major>.<minor>``, as build records and ``info`` show it."""
        return f"NVRTC {self.version[0]}.{self.version[1]}"

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            text = self._lib.nvrtcGetErrorString(code).decode(errors="replace")
            raise BackendUnavailableError(
                f"{what} failed in {self.path}: {text} ({code}); the NVRTC installation is "
                f"broken or incomplete (its libnvrtc-builtins must sit beside it): "
                f"reinstall it ({INSTALL_HINT}) or set {ENV_VAR} to a working libnvrtc.so"
            )

    def compile(self, source: str, name: str, options: list[str]) -> tuple[bytes | None, str]:
        """Compile ``source``; return (CUBIN or ``None`` on a compile error, the log).

        Raises
        ------
        BackendUnavailableError
            NVRTC itself failed (not the source): for example its builtins are missing.
        """
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
            if code == NVRTC_ERROR_COMPILATION:
                return None, log
            self._check(code, "nvrtcCompileProgram")
            self._check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
            cubin = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
            return cubin.raw, log
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _open(path: str) -> Nvrtc:
    preload_builtins(path)
    return Nvrtc(ctypes.CDLL(path), path)


@functools.cache
def nvrtc_libraries() -> tuple[dict[int, Nvrtc], tuple[str, ...]]:
    """Every loadable NVRTC, one per major version, and what failed to load (cached)."""
    paths = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else _candidates()
    found: dict[int, Nvrtc] = {}
    tried: list[str] = []
    for path in paths:
        try:
            nvrtc = _open(path)
        except (OSError, BackendUnavailableError) as exc:
            tried.append(f"{path}: {exc}")
            continue
        found.setdefault(nvrtc.version[0], nvrtc)
    return found, tuple(tried)


def load_nvrtc(major: int | None = None, *, at_most: int | None = None) -> Nvrtc:
    """The NVRTC of CUDA ``major`` (default: CuPy's toolchain, else the newest).

    ``at_most`` (the driver's CUDA major) excludes newer toolchains, whose CUBINs that
    driver could not load.

    Raises
    ------
    BackendUnavailableError
        No NVRTC (of that major) can be loaded; the message says how to install one.
    """
    found, tried = nvrtc_libraries()
    usable = {m: n for m, n in found.items() if at_most is None or m <= at_most}
    if major is None:
        from ..._cuda import cupy_cuda_major

        wanted = cupy_cuda_major()
        if wanted in usable:
            return usable[wanted]
        if usable:
            return usable[max(usable)]
    elif major in usable:
        return usable[major]
    have = ", ".join(n.name for n in found.values()) or "none"
    detail = "; ".join(tried) or "no libnvrtc.so found"
    which = "" if major is None else f" {major}"
    limit = "" if at_most is None else f" (the driver runs CUDA {at_most} and older)"
    raise BackendUnavailableError(
        f"compiling device ring kernels for CUDA needs NVRTC{which}{limit} (loaded: {have}; "
        f"{detail}); {INSTALL_HINT}, or set {ENV_VAR} to the path of libnvrtc.so"
    )
