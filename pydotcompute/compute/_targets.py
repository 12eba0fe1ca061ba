"""Compiling launchers: the CPU through Numba's own cache, the GPU through our PTX cache.

CPU: the generated launcher is written to a module file under the cache directory
(``cpu/``) and compiled with ``numba.njit(cache=True)``; Numba keeps the machine code beside
that file, so a new process loads it instead of compiling. That is Numba's CPU cache, not
PTX. GPU: ``numba.cuda.compile_ptx`` turns the launcher into PTX (no GPU needed for that),
stored under ``ptx/`` with a small JSON of its entry point and parameters; a new process
reads it instead of compiling, then links and loads it through CuPy on the device.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._cache import cache_dir, cache_key, read_cached, write_cached
from ..errors import KernelCompileError
from ._codegen import GENERATOR_VERSION, launcher_source
from ._source import BodySource

__all__ = ["CompiledCpu", "CompiledPtx", "compile_cpu", "compile_ptx", "result_type"]

_lock = threading.RLock()
_modules: dict[str, Any] = {}  # cache key -> numba dispatcher of the launcher


@functools.cache
def _numba_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("numba", "numba-cuda"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "none"
    return out


def _compile_error(body: BodySource, target: str, exc: BaseException) -> KernelCompileError:
    detail = str(exc).strip().splitlines()
    shown = "\n".join(detail[:12])
    return KernelCompileError(
        f"@kernel {body.qualname} does not compile for {target}: {type(exc).__name__}: "
        f"{shown}\nKernel bodies use the subset of Python that Numba compiles (numbers, "
        "arrays, math); see docs/articles/concepts/unified-memory.md"
    )


# ---------------------------------------------------------------------------- CPU
@dataclass(frozen=True)
class CompiledCpu:
    """A CPU launcher ready to call, and how it was obtained."""

    dispatcher: Any
    cache_hit: bool
    seconds: float
    result_dtype: np.dtype[Any] | None


def _cpu_module(body: BodySource, reduce: str | None, parallel: bool) -> Any:
    source = launcher_source(body, "cpu", reduce)
    # A sum may be reassociated: it runs "in no particular order" anyway (threads split it), and
    # the freedom lets LLVM vectorize it. Nothing else changes (no other fast-math flag).
    fastmath: Any = {"reassoc"} if reduce == "sum" else False
    key = cache_key(GENERATOR_VERSION, "cpu", source, body.constants, parallel, bool(fastmath))
    with _lock:
        found = _modules.get(key)
        if found is not None:
            return found
        name = f"pdc_{body.name}_{key}"
        path = cache_dir("cpu") / f"{name}.py"
        if read_cached("cpu", name, ".py") != source.encode():
            write_cached("cpu", name, ".py", source.encode())
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # Numba's cache rebuilds a function's environment by importing its module by name.
        sys.modules[name] = module
        spec.loader.exec_module(module)
        for k, v in body.namespace.items():
            module.__dict__.setdefault(k, v)
        import numba

        dispatcher = numba.njit(cache=True, parallel=parallel, fastmath=fastmath)(module.launch)
        _modules[key] = dispatcher
        return dispatcher


def compile_cpu(
    body: BodySource, reduce: str | None, parallel: bool, signature: tuple[Any, ...]
) -> CompiledCpu:
    """Compile (or load from Numba's cache) the CPU launcher for ``signature``."""
    import numba
    from numba.np.numpy_support import as_dtype

    dispatcher = _cpu_module(body, reduce, parallel)
    sig = (numba.int64, *signature)
    t0 = time.perf_counter()
    hits = sum(dispatcher.stats.cache_hits.values())
    try:
        with _lock:
            dispatcher.compile(sig)
    except Exception as exc:  # Numba raises TypingError, LoweringError, UnsupportedError, ...
        raise _compile_error(body, "the CPU", exc) from exc
    seconds = time.perf_counter() - t0
    hit = sum(dispatcher.stats.cache_hits.values()) > hits
    resty = None
    if reduce is not None:
        ret = dispatcher.overloads[sig].signature.return_type
        resty = as_dtype(ret)
    return CompiledCpu(dispatcher, hit, seconds, resty)


def result_type(body: BodySource, reduce: str, keys: tuple[tuple, ...]) -> np.dtype[Any]:
    """The accumulator dtype of a reduction for argument ``keys`` (typed by Numba's CPU target).

    The GPU launcher accumulates in the type the CPU launcher's accumulator has, so both
    targets return the same dtype. The answer is cached on disk beside the PTX.
    """
    source = launcher_source(body, "cpu", reduce)
    key = cache_key(GENERATOR_VERSION, "result-type", source, [list(k) for k in keys],
                    body.constants, _numba_versions())  # fmt: skip
    cached = read_cached("ptx", key, ".dtype")
    if cached is not None:
        return np.dtype(cached.decode())
    import numba
    from numba.np.numpy_support import as_dtype

    from ._args import numba_type

    signature = tuple(numba_type(k) for k in keys)
    dispatcher = _cpu_module(body, reduce, False)
    try:
        with _lock:
            dispatcher.compile((numba.int64, *signature))
    except Exception as exc:  # Numba's typing and lowering errors
        raise _compile_error(body, "the CPU (typing the reduction)", exc) from exc
    ret = dispatcher.overloads[(numba.int64, *signature)].signature.return_type
    try:
        dtype = as_dtype(ret)
    except Exception as exc:  # NumbaNotImplementedError for non-scalar types
        raise KernelCompileError(
            f"@kernel {body.qualname}: a reduction body must return a number for each index, "
            f"but it returns {ret}"
        ) from exc
    if dtype.kind not in "iuf":
        raise KernelCompileError(
            f"@kernel {body.qualname}: a reduction body must return an int or a float, "
            f"but it returns {dtype}; convert the value, e.g. return float(...)"
        )
    write_cached("ptx", key, ".dtype", dtype.str.encode())
    return dtype


# ---------------------------------------------------------------------------- GPU (PTX)
@dataclass(frozen=True)
class CompiledPtx:
    """PTX of a GPU launcher and what is needed to call it."""

    key: str
    ptx: str
    entry: str
    params: tuple[str, ...]
    cache_hit: bool
    seconds: float


_ENTRY = re.compile(r"\.visible\s+\.entry\s+(\S+)\s*\((.*?)\)", re.S)
_PARAM = re.compile(r"\.param\s+\.(\w+)")


def ptx_entry(ptx: str) -> tuple[str, tuple[str, ...]]:
    """The kernel entry's mangled name and the PTX types of its parameters."""
    match = _ENTRY.search(ptx)
    if match is None:
        raise KernelCompileError("the generated PTX has no kernel entry point")
    return match.group(1), tuple(_PARAM.findall(match.group(2)))


def exec_launcher(body: BodySource, source: str, constants: dict[str, Any], filename: str) -> Any:
    """Run a launcher's source in the body's namespace and return its ``launch`` function."""
    namespace = dict(body.namespace)
    namespace.update(constants)
    code = compile(source, filename, "exec")
    exec(code, namespace)
    return namespace["launch"]


def reduce_constants(reduce: str, dtype: np.dtype[Any], block: int) -> dict[str, Any]:
    """The values bound into a GPU reduction launcher: block size, accumulator, identity."""
    if reduce == "sum":
        identity: Any = 0
    elif dtype.kind == "f":
        identity = np.inf if reduce == "min" else -np.inf
    else:
        info = np.iinfo(dtype)
        identity = int(info.max) if reduce == "min" else int(info.min)
    return {"_PDC_BLOCK": block, "_PDC_ACC": dtype.type, "_PDC_IDENTITY": identity}


def compile_ptx(
    body: BodySource,
    reduce: str | None,
    keys: tuple[tuple, ...],
    cc: tuple[int, int],
    constants: dict[str, Any],
) -> CompiledPtx:
    """PTX of the GPU launcher for argument ``keys`` and ``cc``, from the disk cache if there.

    A cache hit neither compiles nor imports Numba: the key is built from the argument keys.
    """
    source = launcher_source(body, "cuda", reduce)
    sig_text = [list(k) for k in keys]
    shown = {k: repr(v) for k, v in constants.items()}
    key = cache_key(
        GENERATOR_VERSION, "cuda", source, sig_text, list(cc), body.constants, shown,
        _numba_versions(),
    )  # fmt: skip
    t0 = time.perf_counter()
    meta_bytes = read_cached("ptx", key, ".json")
    ptx_bytes = read_cached("ptx", key, ".ptx") if meta_bytes is not None else None
    if meta_bytes is not None and ptx_bytes is not None:
        meta = json.loads(meta_bytes)
        return CompiledPtx(
            key, ptx_bytes.decode(), meta["entry"], tuple(meta["params"]), True,
            time.perf_counter() - t0,
        )  # fmt: skip
    import numba

    from ._args import numba_type

    signature = tuple(numba_type(k) for k in keys)
    cuda: Any = importlib.import_module("numba.cuda")  # untyped for mypy: numba-cuda ships no stubs
    launch = exec_launcher(body, source, constants, f"<pydotcompute launcher {body.name}>")
    try:
        with _lock:
            ptx, _ = cuda.compile_ptx(launch, (numba.int64, *signature), cc=cc)
    except Exception as exc:  # Numba's typing, lowering and NVVM errors
        raise _compile_error(body, f"CUDA (sm_{cc[0]}{cc[1]})", exc) from exc
    entry, params = ptx_entry(ptx)
    write_cached("ptx", key, ".ptx", ptx.encode())
    meta = {
        "entry": entry,
        "params": list(params),
        "kernel": body.qualname,
        "signature": [str(t) for t in signature],
        "cc": list(cc),
        "versions": _numba_versions(),
    }
    write_cached("ptx", key, ".json", json.dumps(meta, indent=1).encode())
    return CompiledPtx(key, ptx, entry, params, False, time.perf_counter() - t0)


_functions: dict[tuple[str, int], Any] = {}


def load_ptx(compiled: CompiledPtx, cupy: Any, device_index: int) -> Any:
    """Link and load PTX on a GPU through CuPy; return the kernel function (cached)."""
    found = _functions.get((compiled.key, device_index))
    if found is not None:
        return found
    from cupy.cuda import function

    with cupy.cuda.Device(device_index):
        linker = function.LinkState()
        linker.add_ptr_data(compiled.ptx.encode(), f"{compiled.entry[:40]}.ptx")
        cubin = linker.complete()
        module = function.Module()
        module.load(cubin)
        kernel = module.get_function(compiled.entry)
    _functions[(compiled.key, device_index)] = (module, kernel)
    return module, kernel
