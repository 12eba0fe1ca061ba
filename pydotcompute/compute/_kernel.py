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
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import build_step
from ..errors import KernelArgumentError, KernelCompileError, OperationTimeoutError
from ._accelerator import Accelerator
from ._args import arg_key, is_device_array, numba_type
from ._buffer import UnifiedBuffer
from ._codegen import REDUCTIONS, launcher_source
from ._config import Config, Configured, auto_config, parse_config
from ._cudaform import CpuPlan, plan_cpu
from ._gpukernel import KernelBase
from ._memory import wait_event
from ._source import BodySource, read_body
from ._targets import (
    compile_cpu,
    compile_cpu_cuda,
)
from ._variant import FastPath, Variant, run_variant, simulator_kernel

__all__ = ["Kernel", "KernelStats", "kernel"]

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


class Kernel(KernelBase):
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
        self._variants: dict[tuple, Variant] = {}
        self._launches = 0
        self._compiles = 0
        self._hits = 0
        self._compile_s = 0.0
        self._plan: CpuPlan | None = None
        self._warned = False
        self._fast: FastPath | None = None
        self._configured: dict[Any, Configured] = {}
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

    def __getitem__(self, config: Any) -> Configured:
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
        configured = Configured(self, cfg, stream)
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
            run_variant(fast.variant, *fast.lead, *values)
            return True, None
        dtype = fast.variant.result_dtype
        if not fast.lead[0] or dtype is None:
            return False, None
        return True, dtype.type(run_variant(fast.variant, *fast.lead, *values))

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

    def _run_cpu(
        self, acc: Accelerator, keys: tuple, args: tuple, n: int, prepare: bool = False
    ) -> Any:
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
            variant = Variant(
                "cpu", keys, compiled.dispatcher, compiled.result_dtype, parallel=parallel
            )
            self._variants[("cpu", keys, parallel)] = variant
        if prepare:
            return None
        values = self._device_values(acc, args, None)
        self._launches += 1
        self._fast = FastPath.remember(args, variant, (n,), None)
        if self.reduce is None:
            run_variant(variant, n, *values)
            return None
        if n == 0:
            return self._empty(variant.result_dtype)
        return variant.result_dtype.type(run_variant(variant, n, *values))  # type: ignore[union-attr]

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
        self._fast = FastPath.remember(args, variant, (*cfg.grid, *cfg.block), cfg)
        if cfg.threads:
            run_variant(variant, *cfg.grid, *cfg.block, *values)

    def _compile_cpu_cuda(self, keys: tuple, parallel: bool) -> Variant:
        body = self._body
        why = "its source cannot be read (it was made by exec or from a string)"
        if body.tree is not None:
            try:
                if self._plan is None:
                    self._plan = plan_cpu(body.tree, body.cuda_roots, body.qualname)
                signature = tuple(numba_type(k) for k in keys)
                with build_step(
                    f"@kernel {self.name}", "cpu", cached=None,
                    detail=", ".join(map(str, signature)),
                ) as step:  # fmt: skip
                    compiled, source = compile_cpu_cuda(body, self._plan, parallel, signature)
                    step.done(compiled.cache_hit)
            except KernelCompileError as exc:
                if not getattr(exc, "untranslatable", False):
                    raise
                why = str(exc).split(" has no CPU translation")[0].split(": ", 1)[-1]
            else:
                self._record(compiled.cache_hit, compiled.seconds)
                return Variant("cpu", keys, compiled.dispatcher, parallel=parallel,
                                source=source)  # fmt: skip
        return self._simulated_cpu(keys, why)

    def _simulated_cpu(self, keys: tuple, why: str) -> Variant:
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
        fake = simulator_kernel(self._body.func)

        def run(gx: int, gy: int, gz: int, bx: int, by: int, bz: int, *values: Any) -> None:
            fake[(gx, gy, gz), (bx, by, bz)](*values)

        self._record(False, 0.0)
        return Variant("cuda-simulator", keys, run)


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
