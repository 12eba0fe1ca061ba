"""Tab completion of the magics' arguments, through IPython's ``complete_command`` hook.

``%ring`` completes its subcommands, then kernel ids of the notebook runtime, then the
subcommand's options; in a message expression (``send``, ``call``) it completes the notebook's
names (IPython's Python completion does not run on a magic's line). ``%%ring_kernel``
completes its options, a policy's or mode's choices, the names of classes in the notebook
after ``--in``/``--out``/``--state``, and the ids of running kernels (to relaunch one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._args import _EXPR_COMMANDS, CELL_OPTIONS, SUBCOMMANDS, subcommand_options

__all__ = ["RING_KERNEL_KEY", "RING_KEY", "complete_ring", "complete_ring_kernel", "install"]

RING_KEY = "%ring"
RING_KERNEL_KEY = "%%ring_kernel"
_TYPE_OPTIONS = ("--in", "--out", "--state")


def _words(event: Any) -> tuple[list[str], str]:
    """The words typed before the one being completed, and that word."""
    text: str = event.text_until_cursor
    words = text.split()
    if text and not text[-1].isspace():
        return words[:-1], words[-1]
    return words, ""


def _kernel_ids(kernel_ids: Callable[[], list[str]]) -> list[str]:
    return sorted(kernel_ids())


def _names(namespace: dict[str, Any], symbol: str) -> list[str]:
    """Notebook names (and builtins) starting with ``symbol``, for a message expression."""
    import builtins

    if not symbol or not symbol.isidentifier():
        return []
    found = {n for n in (*namespace, *vars(builtins)) if n.startswith(symbol)}
    return sorted(n for n in found if not n.startswith("_") or symbol.startswith("_"))


def complete_ring(
    event: Any,
    kernel_ids: Callable[[], list[str]],
    namespace: Callable[[], dict[str, Any]] = dict,
) -> list[str]:
    """Completions of a ``%ring`` line."""
    before, _word = _words(event)
    if len(before) <= 1:
        return [*SUBCOMMANDS, "--help"]
    command = before[1]
    if command not in SUBCOMMANDS:
        return []
    options = [*subcommand_options(command), "--help"]
    if command in ("status", "dashboard"):
        return ["--help"]
    if len(before) == 2:
        return [*_kernel_ids(kernel_ids), "--help"]
    if command in _EXPR_COMMANDS:
        if _word.startswith("--") and len(before) > 3:
            return options
        return _names(namespace(), event.symbol)
    if before[-1] == "--timeout":
        return []  # a number of seconds
    return options


def complete_ring_kernel(
    event: Any, kernel_ids: Callable[[], list[str]], namespace: Callable[[], dict[str, Any]]
) -> list[str]:
    """Completions of a ``%%ring_kernel`` line."""
    before, word = _words(event)
    previous = before[-1] if before else ""
    if CELL_OPTIONS.get(previous):
        return list(CELL_OPTIONS[previous])
    if previous in _TYPE_OPTIONS:
        return sorted(
            name
            for name, value in namespace().items()
            if isinstance(value, type) and not name.startswith("_")
        )
    if len(before) <= 1 and not word.startswith("-"):
        return _kernel_ids(kernel_ids)
    return list(CELL_OPTIONS)


def install(shell: Any, kernel_ids: Callable[[], list[str]]) -> None:
    """Register both completers with ``shell`` (IPython's ``complete_command`` hook)."""

    def ring(_self: Any, event: Any) -> list[str]:
        return complete_ring(event, kernel_ids, lambda: shell.user_ns)

    def ring_kernel(_self: Any, event: Any) -> list[str]:
        return complete_ring_kernel(event, kernel_ids, lambda: shell.user_ns)

    shell.set_hook("complete_command", ring, str_key=RING_KEY)
    shell.set_hook("complete_command", ring_kernel, str_key=RING_KERNEL_KEY)


def uninstall(shell: Any) -> None:
    """Remove both completers from ``shell``."""
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in (RING_KEY, RING_KERNEL_KEY):
            dispatcher.strs.pop(key, None)
