"""``@kernel``: one Python body, compiled by Numba for the CPU or as a CUDA kernel.

Two forms. An *element-index* body's first parameter is the index; the launcher runs it for
every index in ``0..size`` (``_codegen`` shows how). A *CUDA* body is a Numba CUDA kernel as
written for ``@cuda.jit`` (``cuda.grid(1)``, shared memory, atomics); on a GPU numba-cuda
compiles it as it is, on the CPU ``_cudaform``/``_threadloops`` translate it. ``f(*args)``
picks the accelerator from the arguments, synchronizes ``UnifiedBuffer`` arguments, finds or
compiles the variant for the argument types and launches it; ``f[blocks, threads](*args)``
fixes the launch configuration; ``await f.launch_async(*args)`` does it off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import math
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import KernelArgumentError, KernelCompileError, OperationTimeoutError
from ._accelerator import Accelerator, numba_cuda
from ._args import arg_key, check_abi, is_device_array, numba_type, pack_args
from ._buffer import UnifiedBuffer
from ._codegen import REDUCTIONS, launcher_source
from ._config import Config, auto_config, parse_config
from ._cudaform import CpuPlan, plan_cpu
from ._memory import wait_event
from ._source import BodySource, read_body
from ._targets import (
    compile_cpu,
    compile_cpu_cuda,
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
# Numba's default threading layer (workqueue) aborts the process when two threads run
# parallel launchers at once (a launch on the event loop and one from launch_async).
_PARALLEL_LOCK = threading.Lock()


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
    parallel: bool = False
    source: str = ""


class Kernel:
    """A ``@kernel``: call it to run the body on an accelerator.

    Parameters of a call
    --------------------
    *args:
        The body's parameters (after the index in the element-index form): numbers, NumPy
        arrays (CPU), CuPy arrays (GPU) or :class:`UnifiedBuffer` objects (either;
        synchronized automatically).
    size:
        Element-index form: how many indices to run (default: the size of the first array
        argument). CUDA form: the threads to cover, an int or a tuple of 1-3 ints (one per
        grid dimension); the launch configuration is chosen for it (256 threads per block in
        1-D, 16x16 in 2-D, 8x8x8 in 3-D). A CUDA-form call needs ``size`` or ``f[blocks,
        threads]``.
    accelerator:
        Where to run (default: the accelerator of the buffer or device-array arguments, else
        the decorator's, else the CPU for NumPy arrays, else :meth:`Accelerator.default`).
    stream:
        CuPy stream for a GPU launch (default: CuPy's current stream). Ignored on the CPU.
    timeout:
        A reduction on a GPU waits for its result at most this long.

    Returns ``None`` for an element-wise or CUDA-form kernel (a GPU launch returns before
    the kernel finishes; a CPU launch after), and the reduced value as a NumPy scalar for a
    reduction. :meth:`launch_async` is the awaitable form.
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
        self._plan: CpuPlan | None = None
        self._warned = False
        self._fast: _FastPath | None = None
        self._configured: dict[Any, _Configured] = {}
        if self._body.form == "cuda" and reduce is not None:
            raise KernelArgumentError(
                f"@kernel(reduce={reduce!r}) {self._body.name}: a CUDA-form kernel (one using "
                "cuda.grid, cuda.threadIdx, ...) writes its results itself; reduce= is for the "
                "element-index form"
            )
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        mode = f" reduce={self.reduce}" if self.reduce else ""
        form = " cuda" if self.form == "cuda" else ""
        return f"<kernel {self._body.qualname}{form}{mode} writes={list(self.writes)}>"

    @property
    def form(self) -> str:
        """``"index"`` (the body's first parameter is the element index) or ``"cuda"``."""
        return self._body.form

    @property
    def name(self) -> str:
        """The body function's name."""
        return self._body.name

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters a call passes (after the index in the element-index form)."""
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
        """The generated launcher's Python source for ``target`` (``"cpu"`` or ``"cuda"``).

        A CUDA-form kernel's ``"cuda"`` source is its own; its ``"cpu"`` launcher is the one
        the last CPU launch compiled (its per-thread variables are typed from the arguments).
        """
        if target not in ("cpu", "cuda"):
            raise KernelArgumentError(f"target must be 'cpu' or 'cuda', got {target!r}")
        if self.form == "index":
            return launcher_source(self._body, target, self.reduce)
        if target == "cuda":
            return self._body.text
        built = [v.source for v in self._variants.values() if v.target == "cpu" and v.source]
        if not built:
            raise KernelArgumentError(
                f"{self.name}.source('cpu'): a CUDA-form kernel's CPU launcher is generated "
                "for its argument types; launch it on the CPU once first"
            )
        return built[-1]

    def __getitem__(self, config: Any) -> _Configured:
        """Fix the launch configuration: ``f[blocks, threads](*args)`` as in Numba.

        ``blocks`` and ``threads`` are ints or tuples of 1-3 ints; an optional third item is
        the CuPy stream. The element-index form ignores the configuration on the CPU.
        """
        try:
            found = self._configured.get(config)
        except TypeError:  # unhashable (a list): parse it every time
            found = None
        if found is not None:
            return found
        cfg, stream = parse_config(self.name, config, self.reduce is not None)
        if self.form == "index" and (cfg.grid[1:] != (1, 1) or cfg.block[1:] != (1, 1)):
            raise KernelArgumentError(
                f"{self.name}[{config}]: an element-index kernel runs a 1-D grid (its index "
                "walks 0..size); pass ints, or write the body in the CUDA form with "
                "cuda.grid(2)"
            )
        configured = _Configured(self, cfg, stream)
        if stream is None and len(self._configured) < 64:
            self._configured[config] = configured  # f[blocks, threads] in a loop: parse once
        return configured

    def __call__(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Accelerator | str | None = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Run the kernel (see the class docstring for the parameters)."""
        if size is None and accelerator is None:
            done, result = self._repeat(args, None)
            if done:
                return result
        return self._launch(args, size, accelerator, stream, timeout, None)

    def _repeat(self, args: tuple[Any, ...], config: Config | None) -> tuple[bool, Any]:
        """Repeat the last CPU launch if ``args`` and ``config`` repeat it: (done, result)."""
        fast = self._fast
        if fast is None or fast.config != config:
            return False, None
        values = fast.match(args)
        if values is None:
            return False, None
        self._launches += 1
        if self.reduce is None:
            _run(fast.variant, *fast.lead, *values)
            return True, None
        dtype = fast.variant.result_dtype
        if not fast.lead[0] or dtype is None:
            return False, None
        return True, dtype.type(_run(fast.variant, *fast.lead, *values))

    async def launch_async(
        self,
        *args: Any,
        size: Any = None,
        accelerator: Accelerator | str | None = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Launch and return when the kernel has finished, without blocking the event loop.

        Takes what a call takes. The first launch's compilation runs on a worker thread; a
        CPU launch runs there too (its threads release the GIL), a GPU launch is issued on
        ``stream`` (default: a new non-blocking stream) and awaited through a CUDA event
        waited on by a worker thread. So a ring kernel can launch a long kernel while other
        ring kernels keep answering. ``f[blocks, threads].launch_async(...)`` fixes the
        configuration.

        Raises
        ------
        OperationTimeoutError
            The kernel had not finished after ``timeout`` seconds (it keeps running; its
            results land when it finishes).
        """
        return await self._launch_async(args, size, accelerator, stream, timeout, None)

    async def _launch_async(
        self,
        args: tuple[Any, ...],
        size: Any,
        accelerator: Any,
        stream: Any,
        timeout: float | None,
        config: Config | None,
    ) -> Any:
        acc = self._target(args, accelerator)
        if acc.kind == "cpu" or acc.simulated or self.reduce is not None:
            work = asyncio.to_thread(self._launch, args, size, acc, stream, None, config)
            task = asyncio.ensure_future(work)
            try:
                return await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                raise OperationTimeoutError(
                    f"{self.name}.launch_async() did not finish within {timeout} s; the "
                    "kernel is still running on a worker thread. Pass a larger timeout, or "
                    "timeout=None"
                ) from None
        if stream is None:
            stream = acc.stream()
        await asyncio.to_thread(self._launch, args, size, acc, stream, timeout, config, True)
        self._launch(args, size, acc, stream, timeout, config)  # compiled: only issues it
        event = acc._memory.record(stream)
        await asyncio.to_thread(wait_event, event, timeout, f"the kernel {self.name}")
        return None

    # ------------------------------------------------------------------ launching
    def _launch(
        self,
        args: tuple[Any, ...],
        size: Any,
        accelerator: Accelerator | str | None,
        stream: Any,
        timeout: float | None,
        config: Config | None,
        prepare: bool = False,
    ) -> Any:
        body = self._body
        if len(args) != len(body.params):
            after = " after the index" if self.form == "index" else ""
            raise KernelArgumentError(
                f"{self.name}() takes {len(body.params)} arguments ({', '.join(body.params)})"
                f"{after}, got {len(args)}"
            )
        keys = tuple(arg_key(self.name, p, a) for p, a in zip(body.params, args))
        acc = self._target(args, accelerator)
        if self.form == "cuda":
            cfg = config or auto_config(self.name, size)
            if acc.kind == "cpu":
                return self._run_cpu_cuda(acc, keys, args, cfg, prepare)
            if acc.simulated:
                return self._run_sim_cuda(acc, args, cfg, prepare)
            return self._run_gpu(acc, keys, args, 0, stream, timeout, cfg, prepare)
        n = self._size(args, size)
        if acc.kind == "cpu":
            return self._run_cpu(acc, keys, args, n, prepare)
        if acc.simulated:
            return self._run_sim(acc, keys, args, n, config, prepare)
        return self._run_gpu(acc, keys, args, n, stream, timeout, config, prepare)

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

    def _size(self, args: tuple[Any, ...], size: Any) -> int:
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

    def _run_cpu(
        self, acc: Accelerator, keys: tuple, args: tuple, n: int, prepare: bool = False
    ) -> Any:
        parallel = self.parallel and n >= PARALLEL_MIN
        variant = self._variants.get(("cpu", keys, parallel))
        if variant is None:
            compiled = compile_cpu(
                self._body, self.reduce, parallel, tuple(numba_type(k) for k in keys)
            )
            self._record(compiled.cache_hit, compiled.seconds)
            variant = _Variant(
                "cpu", keys, compiled.dispatcher, compiled.result_dtype, parallel=parallel
            )
            self._variants[("cpu", keys, parallel)] = variant
        if prepare:
            return None
        values = self._device_values(acc, args, None)
        self._launches += 1
        self._fast = _FastPath.remember(args, variant, (n,), None)
        if self.reduce is None:
            _run(variant, n, *values)
            return None
        if n == 0:
            return self._empty(variant.result_dtype)
        return variant.result_dtype.type(_run(variant, n, *values))  # type: ignore[union-attr]

    def _run_cpu_cuda(
        self, acc: Accelerator, keys: tuple, args: tuple, cfg: Config, prepare: bool
    ) -> None:
        parallel = self.parallel and cfg.threads >= PARALLEL_MIN
        vkey = ("cpu", keys, parallel)
        variant = self._variants.get(vkey)
        if variant is None:
            variant = self._compile_cpu_cuda(keys, parallel)
            self._variants[vkey] = variant
        if prepare:
            return
        values = self._device_values(acc, args, None)
        self._launches += 1
        self._fast = _FastPath.remember(args, variant, (*cfg.grid, *cfg.block), cfg)
        if cfg.threads:
            _run(variant, *cfg.grid, *cfg.block, *values)

    def _compile_cpu_cuda(self, keys: tuple, parallel: bool) -> _Variant:
        body = self._body
        why = "its source cannot be read (it was made by exec or from a string)"
        if body.tree is not None:
            try:
                if self._plan is None:
                    self._plan = plan_cpu(body.tree, body.cuda_roots, body.qualname)
                signature = tuple(numba_type(k) for k in keys)
                compiled, source = compile_cpu_cuda(body, self._plan, parallel, signature)
            except KernelCompileError as exc:
                if not getattr(exc, "untranslatable", False):
                    raise
                why = str(exc).split(" has no CPU translation")[0].split(": ", 1)[-1]
            else:
                self._record(compiled.cache_hit, compiled.seconds)
                return _Variant("cpu", keys, compiled.dispatcher, parallel=parallel,
                                source=source)  # fmt: skip
        return self._simulated_cpu(keys, why)

    def _simulated_cpu(self, keys: tuple, why: str) -> _Variant:
        """Numba's CUDA simulator: the last resort for a CUDA body the CPU cannot translate."""
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"@kernel {self._body.qualname} runs on the CPU through Numba's CUDA simulator "
                f"(one Python thread per CUDA thread: thousands of times slower than compiled "
                f"code) because {why}. Define it in a file or a notebook cell, or run it on a "
                "GPU",
                RuntimeWarning,
                stacklevel=5,
            )
        fake = _simulator_kernel(self._body.func)

        def run(gx: int, gy: int, gz: int, bx: int, by: int, bz: int, *values: Any) -> None:
            fake[(gx, gy, gz), (bx, by, bz)](*values)

        self._record(False, 0.0)
        return _Variant("cuda-simulator", keys, run)

    def _run_sim_cuda(self, acc: Accelerator, args: tuple, cfg: Config, prepare: bool) -> None:
        vkey = ("sim-cuda",)
        variant = self._variants.get(vkey)
        if variant is None:
            fake = _simulator_kernel(self._body.func)
            variant = _Variant("cuda-simulator", (), fake)
            self._variants[vkey] = variant
            self._record(False, 0.0)
        if prepare:
            return
        values = self._device_values(acc, args, None)
        self._launches += 1
        if cfg.threads:
            variant.run[cfg.grid, cfg.block](*values)

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
        self,
        acc: Accelerator,
        keys: tuple,
        args: tuple,
        n: int,
        config: Config | None,
        prepare: bool = False,
    ) -> Any:
        cuda = numba_cuda(acc)
        if config is not None:
            grid, block = config.grid[0], config.block[0]
        else:
            grid, block = min(max(1, -(-n // SIM_BLOCK)), SIM_MAX_GRID), SIM_BLOCK
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
        if prepare:
            return None
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
        cc = acc.compute_capability or (7, 5)
        compiled, dtype, constants = self._ptx(keys, cc, block)
        _module, function = load_ptx(compiled, acc._memory.cupy, acc.index, cc)
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
        return compile_ptx(self._body, self.reduce, keys, cc, constants), dtype, constants

    def _run_gpu(
        self,
        acc: Accelerator,
        keys: tuple,
        args: tuple,
        n: int,
        stream: Any,
        timeout: float | None,
        config: Config | None,
        prepare: bool = False,
    ) -> Any:
        cupy = acc._memory.cupy
        if config is None:
            sms = acc.sm_count or 1
            blocks = min(max(1, -(-n // GPU_BLOCK)), sms * GPU_BLOCKS_PER_SM)
            config = Config((blocks, 1, 1), (GPU_BLOCK, 1, 1))
        grid, block = config.grid, config.block
        dkeys = tuple(_as_device_key(k) for k in keys)
        variant = self._gpu_variant(acc, dkeys, block[0])
        if prepare:
            return None
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
        elif (self.form == "index" and n == 0) or config.threads == 0:
            return None
        packed = pack_args(keys, values)
        if self.form == "index":
            packed.insert(0, np.int64(n))
        check_abi(self.name, packed, variant.ptx_params)
        with acc._memory.device:
            variant.run(grid, block, tuple(packed), stream=stream)
        self._finished(args, stream)
        if result is None:
            return None
        host = np.empty(1, result.dtype)
        with acc._memory.device:
            result.get(stream=stream, out=host, blocking=False)
        wait_event(acc._memory.record(stream), timeout, f"the reduction {self.name}")
        return host[0]

    def cubin(self, *args: Any, cc: tuple[int, int] = (9, 0), block: int = GPU_BLOCK) -> bytes:
        """The cubin nvJitLink links from :meth:`ptx` for ``sm_<cc>`` (no GPU needed), cached.

        This is what a GPU launch loads: machine code for the device, so the driver's PTX
        JIT is never needed.
        """
        from ._targets import link_cubin

        keys = self._example_keys("cubin", args)
        compiled, _dtype, _constants = self._ptx(keys, cc, block)
        self._record(compiled.cache_hit, compiled.seconds)
        return link_cubin(compiled, cc)

    def _example_keys(self, what: str, args: tuple[Any, ...]) -> tuple:
        if len(args) != len(self._body.params):
            raise KernelArgumentError(
                f"{self.name}.{what}() takes {len(self._body.params)} example arguments "
                f"({', '.join(self._body.params)}), got {len(args)}"
            )
        return tuple(
            _as_device_key(arg_key(self.name, p, a)) for p, a in zip(self._body.params, args)
        )

    def ptx(self, *args: Any, cc: tuple[int, int] = (7, 5), block: int = GPU_BLOCK) -> str:
        """The PTX this kernel compiles to for arguments like ``args`` (no GPU needed).

        Uses (and fills) the on-disk PTX cache, and counts in :attr:`stats` like a launch's
        compilation. ``args`` are example values: arrays give their dtype and rank.
        """
        keys = self._example_keys("ptx", args)
        compiled, _dtype, _constants = self._ptx(keys, cc, block)
        self._record(compiled.cache_hit, compiled.seconds)
        return str(compiled.ptx)


def _simulator_kernel(func: Any) -> Any:
    """``func`` as a kernel of Numba's CUDA simulator (usable without NUMBA_ENABLE_CUDASIM)."""
    module: Any = importlib.import_module("numba.cuda.simulator.kernel")  # untyped for mypy
    return module.FakeCUDAKernel(func, device=False, fastmath=False)


class _FastPath:
    """The last CPU launch, to repeat with one identity check per array argument.

    A loop that launches a kernel on the same arrays again and again (the common case) skips
    the argument keys, the accelerator choice and the variant lookup: the arrays are the same
    objects (held weakly, so the kernel keeps none alive), numbers of the same type.
    """

    __slots__ = ("config", "kinds", "lead", "refs", "variant")

    def __init__(
        self,
        refs: list[Any],
        kinds: list[int],
        variant: _Variant,
        lead: tuple[int, ...],
        config: Config | None,
    ) -> None:
        self.refs, self.kinds, self.variant = refs, kinds, variant
        self.lead, self.config = lead, config

    @classmethod
    def remember(
        cls, args: tuple[Any, ...], variant: _Variant, lead: tuple[int, ...], config: Config | None
    ) -> _FastPath | None:
        """The fast path for launches like this one (``lead``: the launcher's first values)."""
        refs: list[Any] = []
        kinds: list[int] = []
        arrays = 0
        for a in args:
            if isinstance(a, UnifiedBuffer) and a.accelerator.kind == "cpu":
                refs.append(weakref.ref(a))
                kinds.append(2)
                arrays += 1
            elif type(a) is np.ndarray and a.flags.writeable:
                refs.append(weakref.ref(a))
                kinds.append(1)
                arrays += 1
            elif type(a) in (int, float, bool, complex) or isinstance(a, np.generic):
                refs.append(type(a))
                kinds.append(0)
            else:
                return None
        # With no array the accelerator came from the decorator or the machine, not the args.
        return cls(refs, kinds, variant, lead, config) if arrays else None

    def match(self, args: tuple[Any, ...]) -> list[Any] | None:
        """The launcher's values for ``args`` if they repeat the last launch, else ``None``."""
        if len(args) != len(self.refs):
            return None
        values = []
        for a, ref, kind in zip(args, self.refs, self.kinds):
            if kind == 0:
                if type(a) is not ref or (ref is int and not -(2**63) <= a < 2**63):
                    return None
                values.append(a)
            elif a is not ref():
                return None
            else:
                values.append(a if kind == 1 else a._host)
        return values


def _run(variant: _Variant, *args: Any) -> Any:
    if not variant.parallel:
        return variant.run(*args)
    with _PARALLEL_LOCK:
        return variant.run(*args)


def _as_device_key(key: tuple) -> tuple:
    if key[0] == "scalar":
        return key
    return ("device", key[1], key[2], key[3], False)


class _Configured:
    """A kernel with a fixed launch configuration (``f[blocks, threads]``)."""

    def __init__(self, kernel: Kernel, config: Config, stream: Any) -> None:
        self.kernel, self.config, self.stream = kernel, config, stream

    def __repr__(self) -> str:
        return f"{self.kernel!r}[{self.config}]"

    def __call__(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Accelerator | str | None = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Launch with this configuration (an element-index kernel's CPU run ignores it)."""
        if size is None and accelerator is None:
            done, result = self.kernel._repeat(args, self.config)
            if done:
                return result
        stream = self.stream if stream is None else stream
        return self.kernel._launch(args, size, accelerator, stream, timeout, self.config)

    async def launch_async(
        self,
        *args: Any,
        size: int | None = None,
        accelerator: Accelerator | str | None = None,
        stream: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Launch with this configuration off the event loop (see :meth:`Kernel.launch_async`)."""
        stream = self.stream if stream is None else stream
        return await self.kernel._launch_async(
            args, size, accelerator, stream, timeout, self.config
        )


def kernel(
    func: Any = None,
    *,
    reduce: str | None = None,
    parallel: bool = True,
    accelerator: Accelerator | str | None = None,
) -> Any:
    """Compile a Python function with Numba for the CPU or a CUDA GPU: ``@kernel``.

    In the element-index form the body's first parameter is the index ``i``; it is run for
    every ``i`` in ``0..size``, in parallel and in no particular order, so each index should
    write only its own elements::

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

    A Numba CUDA kernel body (one that uses ``numba.cuda``: ``cuda.grid(1)``,
    ``cuda.threadIdx.x``, ``cuda.shared.array``, ``cuda.syncthreads()``, ``cuda.atomic.add``)
    is the CUDA form: decorated with ``@kernel`` instead of ``@cuda.jit`` it runs unchanged,
    compiled by numba-cuda on a GPU and translated for the CPU elsewhere::

        @kernel
        def saxpy(a, x, y, out):
            i = cuda.grid(1)
            if i < out.size:
                out[i] = a * x[i] + y[i]

        saxpy[blocks, 256](2.0, x, y, out)
        saxpy(2.0, x, y, out, size=n)         # the configuration is chosen for n threads

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
        The function cannot be a kernel (defaults, ``*args``), Numba cannot compile it, or a
        CUDA-form body uses something the CPU cannot run (raised at the first launch, with
        the reason).
    KernelArgumentError
        An argument has a type a kernel cannot take; the message names it.
    """

    def wrap(f: Any) -> Kernel:
        return Kernel(f, reduce=reduce, parallel=parallel, accelerator=accelerator)

    if func is None:
        return wrap
    return wrap(func)
