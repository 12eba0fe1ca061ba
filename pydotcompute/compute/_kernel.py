"""``@kernel``: one Python body, compiled by Numba for the CPU or as a CUDA kernel.

A body's first parameter is the element index; the launcher runs it for every index in
``0..size`` (``_codegen`` shows how). ``f(*args)`` picks the accelerator from the arguments,
synchronizes ``UnifiedBuffer`` arguments, finds or compiles the variant for the argument
types and launches it; ``f[grid, block](*args)`` fixes the CUDA launch configuration.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import build_step
from ..errors import KernelArgumentError
from ._accelerator import Accelerator, numba_cuda
from ._args import arg_key, check_abi, is_device_array, numba_type, pack_args
from ._buffer import UnifiedBuffer
from ._codegen import REDUCTIONS, launcher_source
from ._memory import wait_event
from ._source import BodySource, read_body
from ._targets import (
    compile_cpu,
    compile_ptx,
    exec_launcher,
    load_ptx,
    reduce_constants,
    result_type,
)

__all__ = ["Kernel", "KernelStats", "kernel"]

GPU_BLOCK = 256
SIM_BLOCK = 32  # the simulator runs a Python thread per CUDA thread: keep blocks small
GPU_BLOCKS_PER_SM = 32
SIM_MAX_GRID = 4
# Below this many indices a parallel CPU loop costs more to start than it saves (waking the
# worker threads takes tens of microseconds, far more on a busy machine): run them in order.
PARALLEL_MIN = 1 << 16


@dataclass(frozen=True)
class KernelStats:
    """What a kernel did in this process: launches, compilations, disk cache use.

    ``cache_hits`` counts variants loaded from the on-disk cache instead of compiled (PTX for
    the GPU, Numba's CPU cache for the CPU); ``compiles`` those compiled here.
    ``compile_s`` is the time spent getting variants ready, compiling or loading.
    """

    launches: int = 0
    compiles: int = 0
    cache_hits: int = 0
    variants: int = 0
    compile_s: float = 0.0
    targets: tuple[str, ...] = ()

    @property
    def cache_misses(self) -> int:
        """Variants that were not in the disk cache (and so were compiled)."""
        return self.compiles


@dataclass
class _Variant:
    target: str
    keys: tuple[tuple, ...]
    run: Any
    result_dtype: np.dtype[Any] | None = None
    ptx_params: tuple[str, ...] = ()
    constants: dict[str, Any] = field(default_factory=dict)


class Kernel:
    """A ``@kernel``: call it to run the body for every index on an accelerator.

    Parameters of a call
    --------------------
    *args:
        The body's parameters after the index: numbers, NumPy arrays (CPU), CuPy arrays
        (GPU) or :class:`UnifiedBuffer` objects (either; synchronized automatically).
    size:
        How many indices to run (default: the size of the first array argument).
    accelerator:
        Where to run (default: the accelerator of the buffer or device-array arguments, else
        the decorator's, else the CPU for NumPy arrays, else :meth:`Accelerator.default`).
    stream:
        CuPy stream for a GPU launch (default: CuPy's current stream). Ignored on the CPU.
    timeout:
        A reduction on a GPU waits for its result at most this long.

    Returns ``None`` for an element-wise kernel (a GPU launch returns before the kernel
    finishes), and the reduced value as a NumPy scalar for a reduction.
    """

    def __init__(
        self,
        func: Any,
        *,
        reduce: str | None = None,
        parallel: bool = True,
        accelerator: Accelerator | str | None = None,
    ) -> None:
        if reduce is not None and reduce not in REDUCTIONS:
            raise KernelArgumentError(
                f"@kernel(reduce={reduce!r}): expected one of {', '.join(REDUCTIONS)}"
            )
        self._body: BodySource = read_body(func)
        self.func = func
        self.reduce = reduce
        self.parallel = parallel
        self._accelerator = None if accelerator is None else Accelerator(accelerator)
        self._variants: dict[tuple, _Variant] = {}
        self._launches = 0
        self._compiles = 0
        self._hits = 0
        self._compile_s = 0.0
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        mode = f" reduce={self.reduce}" if self.reduce else ""
        return f"<kernel {self._body.qualname}{mode} writes={list(self.writes)}>"

    @property
    def name(self) -> str:
        """The body function's name."""
        return self._body.name

    @property
    def params(self) -> tuple[str, ...]:
        """The body's parameters after the index (what a call passes)."""
        return self._body.params

    @property
    def writes(self) -> tuple[str, ...]:
        """Array parameters the body may write (read from its syntax, conservatively)."""
        return tuple(p for p in self._body.params if p in self._body.writes)

    @property
    def stats(self) -> KernelStats:
        """Launches, compilations and disk cache hits so far."""
        targets = tuple(sorted({v.target for v in self._variants.values()}))
        return KernelStats(
            self._launches, self._compiles, self._hits, len(self._variants), self._compile_s,
            targets,
        )  # fmt: skip

    def source(self, target: str = "cpu") -> str:
        """The generated launcher's Python source for ``target`` (``"cpu"`` or ``"cuda"``)."""
        if target not in ("cpu", "cuda"):
            raise KernelArgumentError(f"target must be 'cpu' or 'cuda', got {target!r}")
        return launcher_source(self._body, target, self.reduce)

    def __getitem__(self, config: Any) -> _Configured:
        """Fix the CUDA launch configuration: ``f[grid, block](*args)``."""
        try:
            grid, block = (int(c[0] if isinstance(c, tuple) else c) for c in config)
        except (TypeError, ValueError):
            raise KernelArgumentError(
                f"{self.name}[...]: expected [grid, block] (two positive ints), got {config!r}"
            ) from None
        if grid < 1 or not 1 <= block <= 1024:
            raise KernelArgumentError(
                f"{self.name}[{grid}, {block}]: grid must be >= 1 and block in 1..1024"
            )
        if self.reduce is not None and block & (block - 1):
            raise KernelArgumentError(
                f"{self.name}[{grid}, {block}]: a reduction's block must be a power of two"
            )
        return _Configured(self, grid, block)

    def __call__(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Accelerator | str | None = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        return self._launch(args, size, accelerator, stream, timeout, None)

    # ------------------------------------------------------------------ launching
    def _launch(
        self,
        args: tuple[Any, ...],
        size: int | None,
        accelerator: Accelerator | str | None,
        stream: Any,
        timeout: float | None,
        config: tuple[int, int] | None,
    ) -> Any:
        body = self._body
        if len(args) != len(body.params):
            raise KernelArgumentError(
                f"{self.name}() takes {len(body.params)} arguments ({', '.join(body.params)}) "
                f"after the index, got {len(args)}"
            )
        keys = tuple(arg_key(self.name, p, a) for p, a in zip(body.params, args))
        acc = self._target(args, accelerator)
        n = self._size(args, size)
        if acc.kind == "cpu":
            return self._run_cpu(acc, keys, args, n)
        if acc.simulated:
            return self._run_sim(acc, keys, args, n, config)
        return self._run_gpu(acc, keys, args, n, stream, timeout, config)

    def _target(self, args: tuple[Any, ...], accelerator: Any) -> Accelerator:
        if accelerator is not None:
            return Accelerator(accelerator)
        saw_numpy = False
        for a in args:
            if isinstance(a, UnifiedBuffer):
                return a.accelerator
            if isinstance(a, np.ndarray):
                saw_numpy = True
            elif is_device_array(a):
                device = getattr(a, "device", None)
                return Accelerator(f"cuda:{getattr(device, 'id', 0)}")
        if self._accelerator is not None:
            return self._accelerator
        return Accelerator("cpu") if saw_numpy else Accelerator.default()

    def _size(self, args: tuple[Any, ...], size: int | None) -> int:
        if size is not None:
            if not isinstance(size, int | np.integer) or size < 0:
                raise KernelArgumentError(
                    f"{self.name}(): size must be a non-negative int, got {size!r}"
                )
            return int(size)
        for a in args:
            if isinstance(a, UnifiedBuffer | np.ndarray):
                return int(a.size)
            if is_device_array(a):
                return math.prod(a.__cuda_array_interface__["shape"])
        raise KernelArgumentError(
            f"{self.name}(): no array argument to take the size from; pass size=N"
        )

    def _device_values(self, acc: Accelerator, args: tuple[Any, ...], stream: Any) -> list:
        values = []
        for name, a in zip(self._body.params, args):
            if isinstance(a, UnifiedBuffer):
                if a.accelerator is not acc:
                    raise KernelArgumentError(
                        f"{self.name}(): argument {name!r} is a UnifiedBuffer on "
                        f"{a.accelerator.id}, but the kernel runs on {acc.id}; create the "
                        f"buffer with accelerator={acc.id!r}"
                    )
                values.append(a._for_kernel(stream, name in self._body.writes))
            elif isinstance(a, np.ndarray) and acc.is_gpu and not acc.simulated:
                raise KernelArgumentError(
                    f"{self.name}(): argument {name!r} is a NumPy array in host memory, but "
                    f"the kernel runs on {acc.id}; wrap it in a UnifiedBuffer or pass a CuPy "
                    "array"
                )
            elif is_device_array(a) and not acc.is_gpu:
                raise KernelArgumentError(
                    f"{self.name}(): argument {name!r} is a GPU array, but the kernel runs on "
                    f"{acc.id}; pass a NumPy array or a UnifiedBuffer"
                )
            else:
                values.append(a)
        return values

    def _finished(self, args: tuple[Any, ...], stream: Any) -> None:
        self._launches += 1
        for a in args:
            if isinstance(a, UnifiedBuffer):
                a._used_on(stream)

    def _record(self, hit: bool, seconds: float) -> None:
        self._compile_s += seconds
        if hit:
            self._hits += 1
        else:
            self._compiles += 1

    def _run_cpu(self, acc: Accelerator, keys: tuple, args: tuple, n: int) -> Any:
        parallel = self.parallel and n >= PARALLEL_MIN
        variant = self._variants.get(("cpu", keys, parallel))
        if variant is None:
            signature = tuple(numba_type(k) for k in keys)
            with build_step(
                f"@kernel {self.name}", "cpu", cached=None, detail=", ".join(map(str, signature))
            ) as step:
                compiled = compile_cpu(self._body, self.reduce, parallel, signature)
                step.done(compiled.cache_hit)
            self._record(compiled.cache_hit, compiled.seconds)
            variant = _Variant("cpu", keys, compiled.dispatcher, compiled.result_dtype)
            self._variants[("cpu", keys, parallel)] = variant
        values = self._device_values(acc, args, None)
        self._launches += 1
        if self.reduce is None:
            variant.run(n, *values)
            return None
        if n == 0:
            return self._empty(variant.result_dtype)
        return variant.result_dtype.type(variant.run(n, *values))  # type: ignore[union-attr]

    def _empty(self, dtype: np.dtype[Any] | None) -> Any:
        if self.reduce != "sum" or dtype is None:
            raise KernelArgumentError(
                f"{self.name}(): a {self.reduce} reduction over size=0 has no value"
            )
        return dtype.type(0)

    def _reduction_dtype(self, keys: tuple) -> np.dtype[Any]:
        assert self.reduce is not None
        return result_type(self._body, self.reduce, keys)

    def _run_sim(
        self, acc: Accelerator, keys: tuple, args: tuple, n: int, config: tuple[int, int] | None
    ) -> Any:
        cuda = numba_cuda(acc)
        grid, block = config or (min(max(1, -(-n // SIM_BLOCK)), SIM_MAX_GRID), SIM_BLOCK)
        vkey = ("sim", keys, block)
        variant = self._variants.get(vkey)
        if variant is None:
            t0 = time.perf_counter()
            constants: dict[str, Any] = {}
            dtype = None
            if self.reduce is not None:
                dtype = self._reduction_dtype(keys)
                constants = reduce_constants(self.reduce, dtype, block)
            source = launcher_source(self._body, "cuda", self.reduce)
            launch = exec_launcher(self._body, source, constants, f"<launcher {self.name}>")
            variant = _Variant("cuda-simulator", keys, cuda.jit(launch), dtype, (), constants)
            self._variants[vkey] = variant
            self._record(False, time.perf_counter() - t0)
        values = self._device_values(acc, args, None)
        self._launches += 1
        if self.reduce is None:
            if n:
                variant.run[grid, block](n, *values)
            return None
        if n == 0:
            return self._empty(variant.result_dtype)
        assert variant.result_dtype is not None
        result = np.full(1, variant.constants["_PDC_IDENTITY"], variant.result_dtype)
        variant.run[grid, block](n, *values, result)
        return result[0]

    def _gpu_variant(self, acc: Accelerator, keys: tuple, block: int) -> _Variant:
        vkey = ("cuda", acc.index, keys, block if self.reduce else 0)
        variant = self._variants.get(vkey)
        if variant is not None:
            return variant
        t0 = time.perf_counter()
        compiled, dtype, constants = self._ptx(keys, acc.compute_capability or (7, 5), block)
        _module, function = load_ptx(compiled, acc._memory.cupy, acc.index)
        self._record(compiled.cache_hit, time.perf_counter() - t0)
        variant = _Variant("cuda", keys, function, dtype, compiled.params, constants)
        self._variants[vkey] = variant
        return variant

    def _ptx(self, keys: tuple, cc: tuple[int, int], block: int) -> tuple[Any, Any, dict]:
        constants: dict[str, Any] = {}
        dtype = None
        if self.reduce is not None:
            dtype = self._reduction_dtype(keys)
            constants = reduce_constants(self.reduce, dtype, block)
        if dtype is not None:
            keys = (*keys, ("device", dtype.str, 1, "C", False))
        with build_step(
            f"@kernel {self.name}", "cuda", cached=None, detail=f"PTX for sm_{cc[0]}{cc[1]}"
        ) as step:
            compiled = compile_ptx(self._body, self.reduce, keys, cc, constants)
            step.done(compiled.cache_hit)
        return compiled, dtype, constants

    def _run_gpu(
        self,
        acc: Accelerator,
        keys: tuple,
        args: tuple,
        n: int,
        stream: Any,
        timeout: float | None,
        config: tuple[int, int] | None,
    ) -> Any:
        cupy = acc._memory.cupy
        if config is None:
            sms = acc.sm_count or 1
            config = (min(max(1, -(-n // GPU_BLOCK)), sms * GPU_BLOCKS_PER_SM), GPU_BLOCK)
        grid, block = config
        variant = self._gpu_variant(acc, keys, block)
        if stream is None:
            stream = acc._memory.current_stream()
        values = self._device_values(acc, args, stream)
        values = [cupy.asarray(v) if is_device_array(v) else v for v in values]
        result = None
        if self.reduce is not None:
            if n == 0:
                return self._empty(variant.result_dtype)
            with acc._memory.device:
                result = cupy.full(1, variant.constants["_PDC_IDENTITY"], variant.result_dtype)
            values.append(result)
            keys = (*keys, ("device", result.dtype.str, 1, "C", False))
        elif n == 0:
            return None
        packed = [np.int64(n), *pack_args(keys, values)]
        check_abi(self.name, packed, variant.ptx_params)
        with acc._memory.device:
            variant.run((grid,), (block,), tuple(packed), stream=stream)
        self._finished(args, stream)
        if result is None:
            return None
        host = np.empty(1, result.dtype)
        with acc._memory.device:
            result.get(stream=stream, out=host, blocking=False)
        wait_event(acc._memory.record(stream), timeout, f"the reduction {self.name}")
        return host[0]

    def ptx(self, *args: Any, cc: tuple[int, int] = (7, 5), block: int = GPU_BLOCK) -> str:
        """The PTX this kernel compiles to for arguments like ``args`` (no GPU needed).

        Uses (and fills) the on-disk PTX cache, and counts in :attr:`stats` like a launch's
        compilation. ``args`` are example values: arrays give their dtype and rank.
        """
        if len(args) != len(self._body.params):
            raise KernelArgumentError(
                f"{self.name}.ptx() takes {len(self._body.params)} example arguments "
                f"({', '.join(self._body.params)}), got {len(args)}"
            )
        keys = tuple(
            _as_device_key(arg_key(self.name, p, a)) for p, a in zip(self._body.params, args)
        )
        compiled, _dtype, _constants = self._ptx(keys, cc, block)
        self._record(compiled.cache_hit, compiled.seconds)
        return str(compiled.ptx)


def _as_device_key(key: tuple) -> tuple:
    if key[0] == "scalar":
        return key
    return ("device", key[1], key[2], key[3], False)


class _Configured:
    """A kernel with a fixed CUDA launch configuration (``f[grid, block]``)."""

    def __init__(self, kernel: Kernel, grid: int, block: int) -> None:
        self.kernel, self.grid, self.block = kernel, grid, block

    def __repr__(self) -> str:
        return f"{self.kernel!r}[{self.grid}, {self.block}]"

    def __call__(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Accelerator | str | None = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Launch with this configuration (the CPU ignores it)."""
        config = (self.grid, self.block)
        return self.kernel._launch(args, size, accelerator, stream, timeout, config)


def kernel(
    func: Any = None,
    *,
    reduce: str | None = None,
    parallel: bool = True,
    accelerator: Accelerator | str | None = None,
) -> Any:
    """Compile a Python function with Numba for the CPU or a CUDA GPU: ``@kernel``.

    The body's first parameter is the element index ``i``; it is run for every ``i`` in
    ``0..size``, in parallel and in no particular order, so each index should write only its
    own elements::

        @kernel
        def saxpy(i, a, x, y, out):
            out[i] = a * x[i] + y[i]

        saxpy(2.0, x, y, out)                 # size = x.size
        saxpy[blocks, threads](2.0, x, y, out)

    With ``reduce="sum"`` (or ``"min"``, ``"max"``) the body returns a value per index and
    the call returns their reduction::

        @kernel(reduce="sum")
        def dot(i, x, y):
            return x[i] * y[i]

    Parameters
    ----------
    reduce:
        ``None`` (element-wise) or the reduction to apply to the values the body returns.
    parallel:
        Run the CPU loop on all cores (Numba ``prange``) when ``size`` is at least 65,536;
        ``False`` always runs it in order.
    accelerator:
        Default accelerator when the arguments do not decide it.

    Raises
    ------
    KernelCompileError
        The function cannot be a kernel (no source, defaults, ``*args``) or Numba cannot
        compile it (raised at the first launch, with Numba's error).
    KernelArgumentError
        An argument has a type a kernel cannot take; the message names it.
    """

    def wrap(f: Any) -> Kernel:
        return Kernel(f, reduce=reduce, parallel=parallel, accelerator=accelerator)

    if func is None:
        return wrap
    return wrap(func)
