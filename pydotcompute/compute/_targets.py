"""Compiling launchers: the CPU through Numba's own cache, the GPU through our PTX/cubin cache.

CPU: the generated launcher is written to a module file under the cache directory
(``cpu/``) and compiled by Numba with its disk cache pinned to that same directory (a cache
locator of ours: ``NUMBA_CACHE_DIR`` and Numba's other locations are never used), so a new
process loads the machine code instead of compiling, and every file comes from a directory
:func:`pydotcompute._cache.cache_dir` checked. GPU: ``numba.cuda.compile_ptx`` turns the
launcher into PTX (no GPU needed for that), stored under ``ptx/`` with a small JSON of its
entry point and parameters; nvJitLink links the PTX into a cubin for the device's
architecture (no GPU needed either), cached beside it, so loading never depends on the
driver's PTX JIT (which refuses PTX newer than the driver). A new process reads both instead
of compiling, and loads the cubin through CuPy.
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
from pathlib import Path
from typing import Any

import numpy as np

from .._cache import cache_dir, cache_key, read_cached, write_cached
from .._install import extra_hint
from ..errors import BackendUnavailableError, KernelCompileError
from ._codegen import GENERATOR_VERSION, launcher_source
from ._source import BodySource

__all__ = [
    "CompiledCpu",
    "CompiledPtx",
    "compile_cpu",
    "compile_cpu_cuda",
    "compile_ptx",
    "link_cubin",
    "result_type",
]

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


def _numba_cache(py_func: Any) -> Any:
    """Numba's disk cache for ``py_func``, kept in ``cache_dir("cpu")`` and nowhere else."""
    import inspect

    caching: Any = importlib.import_module("numba.core.caching")  # untyped for mypy

    class Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):  # type: ignore[misc]
        def __init__(self, func: Any, py_file: str) -> None:
            self._py_file = py_file
            self._lineno = func.__code__.co_firstlineno
            self._cache_path = str(cache_dir("cpu"))

        def get_cache_path(self) -> str:
            return self._cache_path

    class Impl(caching.CompileResultCacheImpl):  # type: ignore[misc]
        def __init__(self, func: Any) -> None:
            # Numba's own __init__ tries NUMBA_CACHE_DIR, the source tree and the user-wide
            # cache in turn; ours has exactly one place.
            self._lineno = func.__code__.co_firstlineno
            self._locator = Locator(func, inspect.getfile(func))
            modname = Path(inspect.getfile(func)).stem
            self._filename_base = self.get_filename_base(
                f"{modname}.{func.__qualname__}", getattr(sys, "abiflags", "")
            )

    class Cache(caching.FunctionCache):  # type: ignore[misc]
        _impl_class = Impl

    return Cache(py_func)


def _cpu_module(
    body: BodySource,
    source: str,
    parallel: bool,
    fastmath: Any = False,
    extra: dict[str, Any] | None = None,
) -> Any:
    """The Numba dispatcher of a launcher's ``source``, disk-cached when the body has source."""
    key = cache_key(GENERATOR_VERSION, "cpu", source, body.constants, parallel, bool(fastmath),
                    body.fingerprint)  # fmt: skip
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
        # The body's globals first (not the module's own __name__, __file__, ...): the
        # launcher's definitions, run next, take precedence.
        for k, v in {**body.namespace, **(extra or {})}.items():
            if not (k.startswith("__") and k.endswith("__")):
                module.__dict__[k] = v
        spec.loader.exec_module(module)
        import numba

        # nogil: a launch from a worker thread (launch_async) leaves the event loop running.
        dispatcher: Any = numba.njit(parallel=parallel, fastmath=fastmath, nogil=True)(
            module.launch
        )
        if body.has_source:
            # Without source the body is a separate dispatcher Numba cannot cache with it.
            dispatcher._cache = _numba_cache(dispatcher.py_func)
        _modules[key] = dispatcher
        return dispatcher


def _cpu_extra(body: BodySource) -> dict[str, Any]:
    """Names a CPU launcher needs besides the body's own: the body compiled from bytecode."""
    if body.has_source:
        return {}
    import numba

    return {"_pdc_body": numba.njit(body.func)}


def _index_module(body: BodySource, reduce: str | None, parallel: bool) -> Any:
    source = launcher_source(body, "cpu", reduce)
    # A sum may be reassociated: it runs "in no particular order" anyway (threads split it), and
    # the freedom lets LLVM vectorize it. Nothing else changes (no other fast-math flag).
    fastmath: Any = {"reassoc"} if reduce == "sum" else False
    return _cpu_module(body, source, parallel, fastmath, _cpu_extra(body))


def compile_cpu(
    body: BodySource, reduce: str | None, parallel: bool, signature: tuple[Any, ...]
) -> CompiledCpu:
    """Compile (or load from Numba's cache) the CPU launcher for ``signature``."""
    import numba

    dispatcher = _index_module(body, reduce, parallel)
    sig = (numba.int64, *signature)
    return _compile_dispatcher(body, dispatcher, sig, reduce)


def _compile_dispatcher(
    body: BodySource, dispatcher: Any, sig: tuple, reduce: str | None
) -> CompiledCpu:
    from numba.np.numpy_support import as_dtype

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
    # The compiled entry point skips the dispatcher's per-call type resolution: the launch
    # already found this variant by its argument keys.
    entry = dispatcher.overloads[sig].entry_point
    return CompiledCpu(entry, hit, seconds, resty)


def _cuda_namespace(body: BodySource) -> dict[str, Any]:
    """What a CUDA body translated for the CPU needs: NumPy, atomics, CPU device functions."""
    import numba

    from ._atomics import ATOMICS

    extra: dict[str, Any] = {"_pdc_np": np, "_pdc_inline": numba.njit(inline="always")}
    extra.update({f"_pdc_atomic_{op}": f for op, f in ATOMICS.items()})
    for name, value in body.namespace.items():
        if type(value).__name__ == "CUDADispatcher" and hasattr(value, "py_func"):
            extra[name] = numba.njit(value.py_func)  # a @cuda.jit(device=True) helper
    return extra


def _carried_dtypes(
    body: BodySource, plan: Any, signature: tuple[Any, ...], carried: set[str]
) -> dict[str, np.dtype[Any]]:
    """Numba's types of the variables that live across barriers, from a typing compile."""
    import numba
    from numba.np.numpy_support import as_dtype

    from ._cudaform import untranslatable

    types: Any = importlib.import_module("numba.core.types")  # untyped for mypy
    from ._threadloops import thread_function

    namespace = {**body.namespace, **_cuda_namespace(body)}
    exec(compile(thread_function(plan, body.params), f"<typing {body.name}>", "exec"), namespace)
    probe = numba.njit(namespace["_pdc_thread"])
    sig = (*([numba.int64] * 12), *signature)
    try:
        with _lock:
            probe.compile(sig)
    except Exception as exc:  # Numba's typing and lowering errors
        raise _compile_error(body, "the CPU", exc) from exc
    typemap = probe.overloads[sig].type_annotation.typemap
    out: dict[str, np.dtype[Any]] = {}
    for name in sorted(carried):
        found = [t for k, t in typemap.items() if k == name or re.fullmatch(rf"{name}\.\d+", k)]
        try:
            dtypes = [as_dtype(types.unliteral(t)) for t in found]
        except Exception:  # NumbaNotImplementedError: an array, a tuple, ...
            dtypes = []
        if not dtypes or any(d.kind not in "biufc" for d in dtypes):
            shown = ", ".join(sorted({str(t) for t in found})) or "unknown"
            raise untranslatable(
                f"@kernel {body.qualname}: variable {name!r} ({shown}) keeps a value across "
                "cuda.syncthreads(); on the CPU only numbers can (each thread gets a slot). "
                "Recompute it after the barrier, or keep it in a cuda.local.array used within "
                "one region"
            )
        out[name] = np.result_type(*dtypes)
    return out


def compile_cpu_cuda(
    body: BodySource, plan: Any, parallel: bool, signature: tuple[Any, ...]
) -> tuple[CompiledCpu, str]:
    """Compile (or load from Numba's cache) the CPU launcher of a CUDA-form kernel.

    Returns the compiled launcher and its source.
    """
    import numba

    from ._threadloops import block_launcher, carried_names, flat_launcher

    if plan.block_mode:
        carried = carried_names(plan, body.params)
        dtypes = _carried_dtypes(body, plan, signature, carried) if carried else {}
        text = block_launcher(plan, body.params, dtypes, body.qualname)
    else:
        text = flat_launcher(plan, body.params, parallel)
    source = cuda_header(body, plan) + text
    dispatcher = _cpu_module(body, source, parallel, False, _cuda_namespace(body))
    sig = (*([numba.int64] * 6), *signature)
    return _compile_dispatcher(body, dispatcher, sig, None), source


def cuda_header(body: BodySource, plan: Any) -> str:
    """The comment header and imports of a CUDA-form kernel's CPU launcher."""
    mode = "block (thread loops split at cuda.syncthreads)" if plan.block_mode else "flat"
    written = ", ".join(sorted(body.writes)) or "none"
    return (
        f"# PyDotCompute @kernel CPU launcher of a CUDA kernel (generator {GENERATOR_VERSION})\n"
        f"# kernel: {body.qualname}  mode: {mode}\n"
        f"# arguments: {', '.join(body.params) or 'none'}  written: {written}\n"
        "from numba import prange\n\n\n"
    )


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
    dispatcher = _index_module(body, reduce, False)
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
    A CUDA-form body is compiled as it is (it is the kernel); an element-index body inside
    its generated grid-stride launcher.
    """
    source = body.text if body.form == "cuda" else launcher_source(body, "cuda", reduce)
    sig_text = [list(k) for k in keys]
    shown = {k: repr(v) for k, v in constants.items()}
    key = cache_key(
        GENERATOR_VERSION, "cuda", source, sig_text, list(cc), body.constants, shown,
        _numba_versions(), body.fingerprint,
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
    if body.form == "cuda":
        launch, sig = body.func, signature
    else:
        if not body.has_source:
            constants = {**constants, "_pdc_body": cuda.jit(device=True)(body.func)}
        launch = exec_launcher(body, source, constants, f"<pydotcompute launcher {body.name}>")
        sig = (numba.int64, *signature)
    try:
        with _lock:
            ptx, _ = cuda.compile_ptx(launch, sig, cc=cc)
    except Exception as exc:  # Numba's typing, lowering and NVVM errors
        if body.form == "index" and not body.has_source and "CudaSupportError" in repr(exc):
            raise KernelCompileError(
                f"@kernel {body.qualname}: its source cannot be read (made by exec or from a "
                "string), so its body is a CUDA device function, and numba-cuda needs a GPU to "
                f"type a call to one ({type(exc).__name__}). Build its PTX on a machine with a "
                "GPU, define it in a file or a cell, or write it in the CUDA form (cuda.grid(1)), "
                "which numba-cuda compiles from bytecode without a GPU"
            ) from exc
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


def _nvjitlink() -> Any:
    try:
        nvjitlink: Any = importlib.import_module("cuda.bindings.nvjitlink")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"linking a @kernel for the GPU needs nvJitLink ({exc}); {extra_hint('cuda')}"
        ) from exc
    return nvjitlink


def link_cubin(compiled: CompiledPtx, cc: tuple[int, int]) -> bytes:
    """The cubin of ``compiled`` for ``sm_<cc>``, linked by nvJitLink (no GPU needed), cached.

    Loading a cubin needs no PTX JIT in the driver, so a driver older than the PTX version
    Numba emits still runs the kernel.
    """
    arch = f"sm_{cc[0]}{cc[1]}"
    nvjitlink = _nvjitlink()
    version = ".".join(map(str, nvjitlink.version()))
    key = cache_key("cubin", compiled.key, arch, version)
    cached = read_cached("ptx", key, ".cubin")
    if cached is not None:
        return cached
    data = compiled.ptx.encode()
    handle = nvjitlink.create(2, [f"-arch={arch}", "-O3"])
    try:
        try:
            nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel.ptx")
            nvjitlink.complete(handle)
        except nvjitlink.nvJitLinkError as exc:
            size = nvjitlink.get_error_log_size(handle)
            log = bytearray(size)
            if size:
                nvjitlink.get_error_log(handle, log)
            raise KernelCompileError(
                f"nvJitLink {version} could not link the kernel {compiled.entry[:60]} for "
                f"{arch}: {exc}; {log.decode(errors='replace').strip()[:2000]}. A PTX version "
                "newer than this nvJitLink needs a newer nvidia-nvjitlink wheel"
            ) from exc
        cubin = bytearray(nvjitlink.get_linked_cubin_size(handle))
        nvjitlink.get_linked_cubin(handle, cubin)
    finally:
        nvjitlink.destroy(handle)
    write_cached("ptx", key, ".cubin", bytes(cubin))
    return bytes(cubin)


_functions: dict[tuple[str, int], Any] = {}


def load_ptx(compiled: CompiledPtx, cupy: Any, device_index: int, cc: tuple[int, int]) -> Any:
    """Load the kernel on a GPU from its nvJitLink-linked cubin; return (module, function)."""
    found = _functions.get((compiled.key, device_index))
    if found is not None:
        return found
    from cupy.cuda import function

    cubin = link_cubin(compiled, cc)
    with cupy.cuda.Device(device_index):
        module = function.Module()
        module.load(cubin)
        kernel = module.get_function(compiled.entry)
    _functions[(compiled.key, device_index)] = (module, kernel)
    return module, kernel
