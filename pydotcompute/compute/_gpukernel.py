"""The part of a ``Kernel`` that launches on GPUs (real or Numba's simulator), and its state.

``KernelBase`` holds what every launch shares (the body, compiled variants, counters, the
argument checks against the accelerator) and the GPU paths: PTX compiled by numba-cuda and
linked by nvJitLink into a cubin that CuPy loads, the simulator for ``NUMBA_ENABLE_CUDASIM``.
``Kernel`` (``_kernel``) adds the CPU paths and the public launch API.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .._progress import build_step
from ..errors import KernelArgumentError
from ._accelerator import Accelerator, numba_cuda
from ._args import arg_key, check_abi, is_device_array, pack_args
from ._buffer import UnifiedBuffer
from ._codegen import launcher_source
from ._config import Config
from ._memory import wait_event
from ._source import BodySource
from ._targets import compile_ptx, exec_launcher, load_ptx, reduce_constants, result_type
from ._variant import Variant, simulator_kernel

__all__ = ["GPU_BLOCK", "KernelBase", "as_device_key"]

GPU_BLOCK = 256
SIM_BLOCK = 32  # the simulator runs a Python thread per CUDA thread: keep blocks small
GPU_BLOCKS_PER_SM = 32
SIM_MAX_GRID = 4


def as_device_key(key: tuple) -> tuple:
    """The key a GPU launch compiles for (any array kind becomes a writable device array)."""
    if key[0] == "scalar":
        return key
    return ("device", key[1], key[2], key[3], False)


class KernelBase:
    """A kernel's state and its GPU launches (see ``Kernel`` for the public API)."""

    _body: BodySource
    _variants: dict[tuple, Variant]
    reduce: str | None
    _launches: int
    _compiles: int
    _hits: int
    _compile_s: float

    @property
    def name(self) -> str:
        """The body function's name."""
        return self._body.name

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

    def _run_sim_cuda(self, acc: Accelerator, args: tuple, cfg: Config, prepare: bool) -> None:
        vkey = ("sim-cuda",)
        variant = self._variants.get(vkey)
        if variant is None:
            fake = simulator_kernel(self._body.func)
            variant = Variant("cuda-simulator", (), fake)
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
            variant = Variant("cuda-simulator", keys, cuda.jit(launch), dtype, (), constants)
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

    def _gpu_variant(self, acc: Accelerator, keys: tuple, block: int) -> Variant:
        vkey = ("cuda", acc.index, keys, block if self.reduce else 0)
        variant = self._variants.get(vkey)
        if variant is not None:
            return variant
        t0 = time.perf_counter()
        cc = acc.compute_capability or (7, 5)
        compiled, dtype, constants = self._ptx(keys, cc, block)
        _module, function = load_ptx(compiled, acc._memory.cupy, acc.index, cc)
        self._record(compiled.cache_hit, time.perf_counter() - t0)
        variant = Variant("cuda", keys, function, dtype, compiled.params, constants)
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
        config: Config | None,
        prepare: bool = False,
    ) -> Any:
        cupy = acc._memory.cupy
        if config is None:
            sms = acc.sm_count or 1
            blocks = min(max(1, -(-n // GPU_BLOCK)), sms * GPU_BLOCKS_PER_SM)
            config = Config((blocks, 1, 1), (GPU_BLOCK, 1, 1))
        grid, block = config.grid, config.block
        dkeys = tuple(as_device_key(k) for k in keys)
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
        elif (self._body.form == "index" and n == 0) or config.threads == 0:
            return None
        packed = pack_args(keys, values)
        if self._body.form == "index":
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
            as_device_key(arg_key(self.name, p, a)) for p, a in zip(self._body.params, args)
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
