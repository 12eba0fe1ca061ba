"""Turn a ``%%ring_kernel`` cell into a ring kernel spec: a host body or a device kernel.

A host cell is compiled into ``async def NAME(ctx)`` whose globals are the notebook's
namespace, so notebook names are visible and names the cell assigns stay local to the body.
The cell's statements are moved into the function at the AST level rather than indented
into a source template: line and column numbers stay those of the cell (the magic's own line
is line 1), and string literals spanning lines keep their exact content.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import linecache
import re
import sys
from typing import Any

from ..errors import KernelRegistrationError
from ..ring._spec import RingKernelSpec

__all__ = ["cache_cell_source", "compile_body", "device_spec"]

#: line of the cell where the body starts: line 1 holds ``%%ring_kernel ...``
BODY_FIRST_LINE = 2


def _function_name(kernel_id: str) -> str:
    """A Python identifier for the body's code object, readable in tracebacks."""
    name = re.sub(r"\W", "_", kernel_id) or "ring_kernel"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"_{name}"
    return name


def compile_body(
    kernel_id: str,
    source: str,
    *,
    filename: str,
    namespace: dict[str, Any],
    first_line: int = BODY_FIRST_LINE,
) -> Any:
    """Compile a cell body into ``async def body(ctx)`` with ``namespace`` as its globals.

    Parameters
    ----------
    kernel_id:
        Id of the kernel (names the function).
    source:
        The cell body (without the magic's line).
    filename:
        File name given to the code; registered in ``linecache`` by the caller, so
        tracebacks show the cell's source.
    namespace:
        The notebook's namespace: the body's globals.
    first_line:
        Line number of the body's first line in the cell.

    Raises
    ------
    SyntaxError
        The body does not compile; ``lineno`` is the cell's line.
    KernelRegistrationError
        The body is empty, or a generator (uses ``yield``).
    """
    tree = ast.parse("\n" * (first_line - 1) + source, filename=filename, mode="exec")
    if not tree.body:
        raise KernelRegistrationError(
            f"ring kernel {kernel_id!r}: the %%ring_kernel cell has no body; write the "
            "actor's loop below the magic line, e.g.\n"
            "    while not ctx.should_terminate:\n"
            "        msg = await ctx.receive()\n"
            "        await ctx.send(msg)"
        )
    fields: dict[str, Any] = {}
    if sys.version_info >= (3, 12):
        fields["type_params"] = []
    func = ast.AsyncFunctionDef(
        name=_function_name(kernel_id),
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg="ctx")],
            vararg=None,
            kwonlyargs=[],
            kw_defaults=[],
            kwarg=None,
            defaults=[],
        ),
        body=tree.body,
        decorator_list=[],
        returns=None,
        lineno=tree.body[0].lineno,
        col_offset=0,
        end_lineno=tree.body[-1].end_lineno,
        end_col_offset=tree.body[-1].end_col_offset,
        **fields,
    )
    module = ast.Module(body=[func], type_ignores=[])
    ast.fix_missing_locations(module)
    code = compile(module, filename, "exec", dont_inherit=True)
    scope: dict[str, Any] = {}
    exec(code, namespace, scope)
    body = scope[func.name]
    if not inspect.iscoroutinefunction(body):
        raise KernelRegistrationError(
            f"ring kernel {kernel_id!r}: the cell body uses 'yield', which makes it an async "
            "generator; an actor body sends replies with 'await ctx.send(...)' instead"
        )
    body.__qualname__ = f"ring_kernel[{kernel_id}]"
    return body


def cache_cell_source(shell: Any, source: str) -> str:
    """Register a cell's source for tracebacks; returns the file name to compile it under.

    The name is IPython's ``<ipython-input-N-hash>`` form, mapped to the cell's number so
    tracebacks label it ``Cell In[N]``. ipykernel's own names end in ``.py``, which makes
    IPython's traceback formatter look for a file on disk and then fall back to a source
    lookup that cannot place a body that is not a ``def``: the lines shown would be wrong.
    The magic line is given as a comment so that the source parses.
    """
    from IPython.core.compilerop import code_name

    # IPython counts a cell (execution_count += 1) before running it.
    number = max(int(getattr(shell, "execution_count", 1)) - 1, 0)
    name: str = code_name(source, number)
    lines = [line + "\n" for line in source.splitlines()]
    linecache.cache[name] = (len(source), None, lines, name)
    filename_map = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if isinstance(filename_map, dict):
        filename_map[name] = number
    return name


def device_spec(
    kernel_id: str,
    source: str,
    *,
    input_type: type | None,
    output_type: type | None,
    state_type: type | None,
    mode: str,
    options: dict[str, Any],
    first_line: int = BODY_FIRST_LINE,
) -> RingKernelSpec:
    """Declare a device ring kernel whose CUDA handler body is ``source``.

    The source is padded with blank lines so that the compiler's line numbers, which the
    device backend maps back to the handler source, are the cell's own line numbers.
    """
    from ..ring import ring_kernel

    if input_type is None or output_type is None:
        raise KernelRegistrationError(
            f"ring kernel {kernel_id!r}: a --cuda kernel needs --in TYPE and --out TYPE "
            "(fixed-layout @message classes)"
        )
    spec: RingKernelSpec = ring_kernel(
        kernel_id=kernel_id,
        input_type=input_type,
        output_type=output_type,
        cuda="\n" * (first_line - 1) + source,
        state_type=state_type,
        mode=mode,
        replace=True,
        **options,
    )
    return spec
