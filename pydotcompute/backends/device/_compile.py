"""Compile generated kernel source (NVRTC for CUDA, the host C++ compiler for the emulated
device) and cache the build products on disk.

Cache keys cover the generated source (which embeds the message layouts and the
generator version), the layouts' dtypes, the compile options, the compiler's version and
the target architecture, so a second process launching the same kernel loads the cached
CUBIN or shared library without compiling.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..._cache import cache_key, cached_path, write_cached
from ..._progress import build_step
from ...errors import BackendUnavailableError, KernelCompileError
from ._codegen import GENERATOR_VERSION, GeneratedSource
from ._definition import DeviceDefinition
from ._nvrtc import Nvrtc, load_nvrtc
from ._shim import ENTRY, SHIM_HEADER

__all__ = ["Build", "build_cuda", "build_emulated", "find_cxx", "parse_errors"]

NVRTC_OPTIONS = ("-std=c++17", "-lineinfo")
CXX_OPTIONS = ("-std=c++17", "-O2", "-g", "-shared", "-fPIC", "-pthread", "-DPDC_EMULATED", "-w")
_COMPILE_TIMEOUT_S = 300

# "summer.handle(3): error: ..." (NVRTC) and "summer.handle:3:5: error: ..." (gcc, clang)
_ERROR_LINE = re.compile(
    r"^(?P<file>[^\s:()]+)(?:\((?P<l1>\d+)\)|:(?P<l2>\d+)(?::\d+)?):\s*"
    r"(?:catastrophic |fatal )?error:\s*(?P<text>.*)$"
)


@dataclass(frozen=True)
class Build:
    """A compiled kernel: where the artifact is and whether it came from the cache."""

    path: Path
    cache_hit: bool
    compile_s: float
    key: str
    compiler: str


#: Explanations added to compiler errors that mention these names in the user's code.
HINTS = {
    "skip_reply": "skip_reply() is available in sequential mode only: in parallel mode every "
    "message gets exactly one reply",
}


def parse_errors(log: str, gen: GeneratedSource) -> list[tuple[str, int, str]]:
    """The errors a compiler log reports in the user's handler or prelude, in order."""
    parts = {gen.handle_file: "handle", gen.prelude_file: "prelude"}
    found = []
    for line in log.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if m and m["file"] in parts:
            text = m["text"].strip()
            hints = [hint for name, hint in HINTS.items() if name in text]
            if hints:
                text = f"{text} ({'; '.join(hints)})"
            found.append((parts[m["file"]], int(m["l1"] or m["l2"]), text))
    return found


def _layout_key(d: DeviceDefinition) -> list[str]:
    return [str(x.dtype.descr) if x is not None else "-" for x in d.layouts]


# ---------------------------------------------------------------- CUDA (NVRTC)
def build_cuda(
    gen: GeneratedSource, d: DeviceDefinition, arch: str, nvrtc: Nvrtc | None = None
) -> Build:
    """Compile for ``sm_<arch>`` with NVRTC, or load the CUBIN from the cache.

    ``nvrtc`` defaults to the toolchain of the installed CuPy, limited to what the driver
    of a usable GPU can load (:func:`~._nvrtc.load_nvrtc`).
    """
    if nvrtc is None:
        from ..._cuda import cuda_status

        nvrtc = load_nvrtc(at_most=cuda_status().driver_major)
    options = [f"--gpu-architecture=sm_{arch}", *NVRTC_OPTIONS]
    compiler = nvrtc.name
    key = cache_key("cuda", GENERATOR_VERSION, gen.text, _layout_key(d), options, compiler)
    what = f"ring kernel {gen.kernel_id!r}"
    cached = cached_path("cuda", key, ".cubin")
    if cached is not None:
        with build_step(what, "cuda", cached=True, detail=f"{compiler}, sm_{arch}"):
            return Build(cached, True, 0.0, key, compiler)
    with build_step(what, "cuda", cached=False, detail=f"{compiler}, sm_{arch}"):
        start = time.perf_counter()
        cubin, log = nvrtc.compile(gen.text, f"{gen.file_stem}.cu", options)
        elapsed = time.perf_counter() - start
        if cubin is None:
            raise KernelCompileError.from_compiler(
                gen.kernel_id, compiler, log, gen.text, parse_errors(log, gen)
            )
        path = write_cached("cuda", key, ".cubin", cubin)
    return Build(path, False, elapsed, key, compiler)


# ---------------------------------------------------------------- emulated device (C++)
def find_cxx() -> str | None:
    """The host C++ compiler: ``$CXX``, else ``c++``, ``g++`` or ``clang++`` on PATH."""
    env = os.environ.get("CXX")
    if env:
        return shutil.which(env) or (env if Path(env).exists() else None)
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.cache
def _cxx_version(cxx: str) -> str:
    try:
        out = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendUnavailableError(
            f"the C++ compiler {cxx} does not run ({exc}); set CXX to a working g++ or clang++"
        ) from exc
    return out.splitlines()[0] if out else cxx


def require_cxx() -> tuple[str, str]:
    """The C++ compiler and its version line, or a clear error when there is none."""
    cxx = find_cxx()
    if cxx is None:
        raise BackendUnavailableError(
            "the emulated device builds kernels with a host C++ compiler, but none was found "
            f"(CXX={os.environ.get('CXX')!r}; no c++, g++ or clang++ on PATH); install one "
            "(apt-get install g++, xcode-select --install) or set CXX, or run on a CUDA GPU"
        )
    return cxx, _cxx_version(cxx)


def build_emulated(gen: GeneratedSource, d: DeviceDefinition) -> Build:
    """Build the emulated-device shared library, or take it from the cache."""
    cxx, version = require_cxx()
    key = cache_key(
        "emulated",
        GENERATOR_VERSION,
        gen.text,
        SHIM_HEADER,
        ENTRY,
        _layout_key(d),
        CXX_OPTIONS,
        version,
        platform.machine(),
    )
    what = f"ring kernel {gen.kernel_id!r}"
    cached = cached_path("emulated", key, ".so")
    if cached is not None:
        with build_step(what, "emulated", cached=True, detail=version):
            return Build(cached, True, 0.0, key, version)
    with build_step(what, "emulated", cached=False, detail=version):
        return _compile_emulated(gen, cxx, version, key)


def _compile_emulated(gen: GeneratedSource, cxx: str, version: str, key: str) -> Build:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pdc-build-") as tmp:
        t = Path(tmp)
        (t / "pdc_emulated.h").write_text(SHIM_HEADER)
        (t / f"{gen.file_stem}.cu").write_text(gen.text)
        entry = t / "entry.cpp"
        entry.write_text(f'#include "{gen.file_stem}.cu"\n{ENTRY}')
        out = t / "kernel.so"
        try:
            proc = subprocess.run(
                [cxx, *CXX_OPTIONS, "-I", tmp, str(entry), "-o", str(out)],
                capture_output=True,
                text=True,
                timeout=_COMPILE_TIMEOUT_S,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired as exc:
            raise KernelCompileError.from_compiler(
                gen.kernel_id, cxx, f"timed out after {_COMPILE_TIMEOUT_S} s", gen.text, []
            ) from exc
        if proc.returncode != 0:
            log = proc.stderr + proc.stdout
            raise KernelCompileError.from_compiler(
                gen.kernel_id, Path(cxx).name, log, gen.text, parse_errors(log, gen)
            )
        data = out.read_bytes()
    path = write_cached("emulated", key, ".so", data)
    return Build(path, False, time.perf_counter() - start, key, version)
