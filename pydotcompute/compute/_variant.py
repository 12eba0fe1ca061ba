"""Compiled variants of a kernel, and how a CPU launch repeats cheaply.

``Variant`` is one compiled form (a target, argument keys, the callable). ``FastPath`` is the
last CPU launch, repeated with one identity check per array argument; ``run_variant`` calls a
variant, one parallel CPU launcher at a time under Numba's "workqueue" threading layer
(which aborts the process when two threads run parallel code at once, e.g. a launch on the
event loop and one from ``launch_async``; other layers run them concurrently).
``simulator_kernel`` is the last resort for CUDA bodies on the CPU.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._buffer import UnifiedBuffer
from ._config import Config

__all__ = ["PARALLEL_LOCK", "FastPath", "Variant", "run_variant", "simulator_kernel"]

PARALLEL_LOCK = threading.Lock()
# Whether parallel launchers must take PARALLEL_LOCK: known after the first parallel launch
# (Numba picks its threading layer then); only the "workqueue" layer needs it. OpenMP and TBB
# run launches from several threads at once, so a long launch_async never holds up another.
_serialize: list[bool] = [True]


@dataclass
class Variant:
    """One compiled form of a kernel: for a target, argument keys and (GPU) block size."""

    target: str
    keys: tuple[tuple, ...]
    run: Any
    result_dtype: np.dtype[Any] | None = None
    ptx_params: tuple[str, ...] = ()
    constants: dict[str, Any] = field(default_factory=dict)
    parallel: bool = False
    source: str = ""


def simulator_kernel(func: Any) -> Any:
    """``func`` as a kernel of Numba's CUDA simulator (usable without NUMBA_ENABLE_CUDASIM)."""
    module: Any = importlib.import_module("numba.cuda.simulator.kernel")  # untyped for mypy
    return module.FakeCUDAKernel(func, device=False, fastmath=False)


class FastPath:
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
        variant: Variant,
        lead: tuple[int, ...],
        config: Config | None,
    ) -> None:
        self.refs, self.kinds, self.variant = refs, kinds, variant
        self.lead, self.config = lead, config

    @classmethod
    def remember(
        cls, args: tuple[Any, ...], variant: Variant, lead: tuple[int, ...], config: Config | None
    ) -> FastPath | None:
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


def run_variant(variant: Variant, *args: Any) -> Any:
    """Call a compiled variant (parallel CPU launchers one at a time, see PARALLEL_LOCK)."""
    if not variant.parallel:
        return variant.run(*args)
    if not _serialize[0]:
        return variant.run(*args)
    with PARALLEL_LOCK:
        result = variant.run(*args)
    numba: Any = importlib.import_module("numba")  # untyped for mypy
    _serialize[0] = numba.threading_layer() == "workqueue"
    return result
