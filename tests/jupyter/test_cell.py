"""Compiling a %%ring_kernel cell into an actor body, in-process."""

from __future__ import annotations

import asyncio
import inspect
import linecache
import traceback
from typing import Any

import pytest

from pydotcompute import KernelRegistrationError, RingKernelRuntime
from pydotcompute.jupyter._cell import compile_body

from ..conftest import within

FILENAME = "<ring-kernel-test-cell>"


def compile_cell(source: str, namespace: dict[str, Any] | None = None) -> Any:
    ns = {} if namespace is None else namespace
    lines = ["# %%ring_kernel k\n", *(line + "\n" for line in source.splitlines())]
    linecache.cache[FILENAME] = (sum(map(len, lines)), None, lines, FILENAME)
    return compile_body("k", source, filename=FILENAME, namespace=ns)


def test_body_is_an_async_function_of_ctx_named_after_the_kernel() -> None:
    body = compile_body("my-actor 2", "pass", filename=FILENAME, namespace={})
    assert inspect.iscoroutinefunction(body)
    assert list(inspect.signature(body).parameters) == ["ctx"]
    assert body.__code__.co_name == "my_actor_2"
    assert body.__qualname__ == "ring_kernel[my-actor 2]"


async def test_body_sees_notebook_names_and_keeps_its_own_locals(
    runtime: RingKernelRuntime,
) -> None:
    ns: dict[str, Any] = {"factor": 3, "seen": []}
    body = compile_cell(
        "total = 0\n"
        "while not ctx.should_terminate:\n"
        "    x = await ctx.receive()\n"
        "    total += x * factor\n"
        "    seen.append(total)\n"
        "    await ctx.send(total)\n",
        ns,
    )
    await within(runtime.launch("k", func=body))
    await within(runtime.activate("k"))
    for x in (1, 2):
        await within(runtime.send("k", x))
    replies = [await within(runtime.receive("k")) for _ in range(2)]
    assert replies == [3, 9]
    assert ns["seen"] == [3, 9]
    assert "total" not in ns and "x" not in ns


async def test_global_statement_writes_to_the_notebook(runtime: RingKernelRuntime) -> None:
    ns: dict[str, Any] = {}
    body = compile_cell("global last\nlast = await ctx.receive()\n", ns)
    await within(runtime.launch("k", func=body))
    await within(runtime.activate("k"))
    await within(runtime.send("k", "hello"))
    await within(asyncio.wait_for(_until_set(ns, "last"), 5))
    assert ns["last"] == "hello"


async def _until_set(ns: dict[str, Any], key: str) -> None:
    # The body writes the notebook name once it runs; nothing to await on it directly.
    while key not in ns:  # noqa: ASYNC110
        await asyncio.sleep(0)


def test_syntax_error_carries_the_cells_line_and_column() -> None:
    with pytest.raises(SyntaxError) as info:
        compile_cell("x = 1\nwhile True:\n    y = (1 +\n")
    assert info.value.filename == FILENAME
    assert info.value.lineno == 4  # the magic line is line 1 of the cell
    with pytest.raises(SyntaxError) as info:
        compile_cell("x = 1\ny = 2 +* 3\n")
    assert (info.value.lineno, info.value.text) == (3, "y = 2 +* 3\n")


def test_errors_found_by_the_compiler_also_carry_the_cells_line() -> None:
    with pytest.raises(SyntaxError, match="'break' outside loop") as info:
        compile_cell("x = 1\nbreak\n")
    assert info.value.lineno == 3


async def test_runtime_traceback_points_at_the_cells_lines() -> None:
    body = compile_cell("x = 1\n\ny = x / 0\n")
    with pytest.raises(ZeroDivisionError) as info:
        await within(body(None))
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno, frame.line) == (FILENAME, 4, "y = x / 0")


def test_multiline_strings_keep_their_exact_content() -> None:
    ns: dict[str, Any] = {}
    body = compile_cell('global text\ntext = """a\n  b\nc"""\nreturn text\n', ns)
    with pytest.raises(StopIteration) as info:
        body(None).send(None)
    assert info.value.value == "a\n  b\nc"


def test_leading_string_becomes_the_docstring() -> None:
    body = compile_cell('"""Echo every message."""\nawait ctx.send(await ctx.receive())\n')
    assert body.__doc__ == "Echo every message."


def test_empty_cell_is_refused_with_an_example() -> None:
    with pytest.raises(KernelRegistrationError, match="has no body; write the actor's loop"):
        compile_cell("# only a comment\n\n")


def test_a_generator_body_is_refused() -> None:
    with pytest.raises(KernelRegistrationError, match="uses 'yield'"):
        compile_cell("yield await ctx.receive()\n")
