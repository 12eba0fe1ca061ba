"""Generated launchers: the kernel body, unchanged, inside a loop over the element index.

One body serves both targets. On the CPU the launcher is a Numba ``prange`` loop over
``0..n``; on a GPU it is a CUDA kernel whose threads walk ``0..n`` in a grid-stride loop (so
any launch configuration covers every element). A reduction kernel's body returns a value
per index: the CPU launcher folds it in a ``prange`` reduction, the GPU launcher folds per
thread, then per block in shared memory, then across blocks with one atomic per block.
The body is nested inside the launcher so that Numba inlines it (no separate device
function to compile, which also lets PTX be built without a GPU).
"""

from __future__ import annotations

import textwrap

from .._version import __version__
from ._source import BodySource

__all__ = ["GENERATOR_VERSION", "REDUCTIONS", "launcher_source"]

GENERATOR_VERSION = 1
REDUCTIONS = ("sum", "min", "max")

_COMBINE = {
    "sum": "{acc} + {value}",
    "min": "min({acc}, {value})",
    "max": "max({acc}, {value})",
}
_ATOMIC = {"sum": "add", "min": "min", "max": "max"}


def _header(body: BodySource, target: str, reduce: str | None) -> str:
    written = ", ".join(sorted(body.writes)) or "none"
    mode = f"reduction ({reduce})" if reduce else "element-wise"
    params = ", ".join(body.params)
    return (
        f"# PyDotCompute @kernel launcher (generator {GENERATOR_VERSION}, "
        f"pydotcompute {__version__})\n"
        f"# kernel: {body.qualname}  target: {target}  mode: {mode}\n"
        f"# index: {body.index}  arguments: {params or 'none'}  written: {written}\n"
    )


def launcher_source(body: BodySource, target: str, reduce: str | None) -> str:
    """The Python source of the launcher ``launch`` for ``target`` (``"cpu"`` or ``"cuda"``).

    A body without source text is called as ``_pdc_body``, the body compiled by Numba from
    its bytecode (a CPU function, or a CUDA device function), bound by the loader.
    """
    args = ", ".join(body.params)
    if body.has_source:
        call = f"{body.name}(_pdc_i{', ' if args else ''}{args})"
        nested = textwrap.indent(body.text, "    ")
    else:
        call = f"_pdc_body(_pdc_i{', ' if args else ''}{args})"
        nested = f"    # {body.name}: no source text; compiled by Numba from its bytecode"
    if target == "cpu":
        return _cpu(body, args, call, nested, reduce)
    return _cuda(body, args, call, nested, reduce)


def _params(*names: str) -> str:
    return ", ".join(n for n in names if n)


def _cpu(body: BodySource, args: str, call: str, nested: str, reduce: str | None) -> str:
    head = _header(body, "cpu", reduce) + "from numba import prange\n\n\n"
    if reduce is None:
        return head + (
            f"def launch({_params('_pdc_n', args)}):\n"
            f"{nested}\n"
            "    for _pdc_i in prange(_pdc_n):\n"
            f"        {call}\n"
        )
    first = call.replace("(_pdc_i", "(0", 1)
    step = _COMBINE[reduce].format(acc="_pdc_acc", value=call)
    update = f"_pdc_acc += {call}" if reduce == "sum" else f"_pdc_acc = {step}"
    return head + (
        f"def launch({_params('_pdc_n', args)}):\n"
        f"{nested}\n"
        f"    _pdc_acc = {first}\n"
        "    for _pdc_i in prange(1, _pdc_n):\n"
        f"        {update}\n"
        "    return _pdc_acc\n"
    )


def _cuda(body: BodySource, args: str, call: str, nested: str, reduce: str | None) -> str:
    head = _header(body, "cuda", reduce) + "from numba import cuda\n\n\n"
    walk = (
        "    _pdc_i = cuda.grid(1)\n"
        "    _pdc_stride = cuda.gridsize(1)\n"
        "    while _pdc_i < _pdc_n:\n"
    )
    if reduce is None:
        return head + (
            f"def launch({_params('_pdc_n', args)}):\n"
            f"{nested}\n"
            f"{walk}"
            f"        {call}\n"
            "        _pdc_i += _pdc_stride\n"
        )
    step = _COMBINE[reduce].format(acc="_pdc_acc", value=call)
    fold = _COMBINE[reduce].format(acc="_pdc_smem[_pdc_tid]", value="_pdc_smem[_pdc_tid + _pdc_s]")
    return head + (
        "# _PDC_BLOCK (threads per block), _PDC_ACC (accumulator type) and _PDC_IDENTITY are\n"
        "# bound by the loader before compilation.\n"
        f"def launch({_params('_pdc_n', args, '_pdc_result')}):\n"
        f"{nested}\n"
        "    _pdc_smem = cuda.shared.array(_PDC_BLOCK, dtype=_PDC_ACC)\n"
        "    _pdc_tid = cuda.threadIdx.x\n"
        "    _pdc_acc = _PDC_ACC(_PDC_IDENTITY)\n"
        f"{walk}"
        f"        _pdc_acc = {step}\n"
        "        _pdc_i += _pdc_stride\n"
        "    _pdc_smem[_pdc_tid] = _pdc_acc\n"
        "    cuda.syncthreads()\n"
        "    _pdc_s = _PDC_BLOCK // 2\n"
        "    while _pdc_s > 0:\n"
        "        if _pdc_tid < _pdc_s:\n"
        f"            _pdc_smem[_pdc_tid] = {fold}\n"
        "        cuda.syncthreads()\n"
        "        _pdc_s //= 2\n"
        "    if _pdc_tid == 0:\n"
        f"        cuda.atomic.{_ATOMIC[reduce]}(_pdc_result, 0, _pdc_smem[0])\n"
    )
