"""Short errors from the magics, shown the way IPython shows its own.

IPython shows an exception through ``_render_traceback_`` when the exception has one (the hook
ipyparallel uses for remote errors); the magics attach one to the errors they raise, so that a
cell shows what the user needs and no frame of the library, IPython or asyncio:

* a runtime error (``ReceiveTimeoutError``, ``KernelNotFoundError``, ...): one line;
* a failed kernel (``KernelFailedError``): the body's traceback in the cell's own lines, then
  one line;
* an interrupted wait: one ``KeyboardInterrupt`` line;
* a cell that does not compile: IPython's own syntax error display of the cell's lines.

The exception's type stays what it was, so ``except`` clauses and ``ename`` are unchanged.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..errors import KernelRegistrationError

__all__ = ["CellSyntaxError", "interrupted", "short", "syntax_error"]

E = TypeVar("E", bound=BaseException)

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


class CellSyntaxError(KernelRegistrationError):
    """A ``%%ring_kernel`` cell does not compile; its cause is the ``SyntaxError``.

    It is not itself a ``SyntaxError``: IPython would then show the magic's and its own frames
    above the cell's line, whatever the exception says.
    """


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from its first frame outside the pydotcompute package (the cell's body)."""
    while tb is not None and tb.tb_next is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            break
        tb = tb.tb_next
    return tb


def _one_line(shell: Any, exc: BaseException) -> list[str]:
    lines: list[str] = shell.InteractiveTB.get_exception_only(type(exc), exc)
    return lines


def short(shell: Any, exc: E) -> E:
    """Make ``exc`` show as one line (and its cause's traceback in the cell, if it has one)."""
    cause = exc.__cause__
    exc.__traceback__ = None
    if cause is None or cause.__traceback__ is None:

        def render() -> list[str]:
            return _one_line(shell, exc)
    else:
        cause.__traceback__ = _user_frames(cause.__traceback__)

        def render() -> list[str]:
            tb = shell.InteractiveTB.structured_traceback(type(cause), cause, cause.__traceback__)
            return [
                *tb,
                "\nThe above exception was the direct cause of the following exception:\n",
                *_one_line(shell, exc),
            ]

    exc._render_traceback_ = render  # type: ignore[attr-defined]
    return exc


def syntax_error(shell: Any, kernel_id: str, exc: SyntaxError) -> CellSyntaxError:
    """A :class:`CellSyntaxError` that shows like IPython shows a cell's syntax error."""
    where = f" (line {exc.lineno})" if exc.lineno else ""
    error = CellSyntaxError(
        f"ring kernel {kernel_id!r}: the cell does not compile: {exc.msg}{where}"
    )
    error.__cause__ = exc
    error.__suppress_context__ = True

    def render() -> list[str]:
        lines: list[str] = shell.SyntaxTB.structured_traceback(SyntaxError, exc, [])
        return lines

    error._render_traceback_ = render  # type: ignore[attr-defined]
    return error


def interrupted(what: str) -> KeyboardInterrupt:
    """A ``KeyboardInterrupt`` that shows as one line saying which wait it stopped."""
    exc = KeyboardInterrupt(what)

    def render() -> list[str]:
        return [f"KeyboardInterrupt: {what}"]

    exc._render_traceback_ = render  # type: ignore[attr-defined]
    return exc
