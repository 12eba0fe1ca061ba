"""Show builds in the running cell: "compiling ring kernel 'levels' ..." while it compiles.

The core reports builds as :class:`~pydotcompute.BuildEvent`; this listener turns each build
into one display in the cell that runs it (a Jupyter display with an id): empty when the build
starts, showing what is compiled (or loaded from the cache) while it runs, and emptied again when
it ends, when the cell's own output (``compiled in 1.20 s``) says the rest. Stored notebooks keep
only the emptied display, so their outputs do not depend on the state of the cache. Only
ipykernel shows it; the IPython terminal has no display to update (turn on logging there).
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import Callable
from typing import Any

from .._progress import BuildEvent, add_build_listener

__all__ = ["BuildProgress", "install", "uninstall"]

_remove: Callable[[], None] | None = None


class BuildProgress:
    """A build listener that shows progress in the notebook cell running the build.

    Parameters
    ----------
    loop:
        Returns the notebook's event loop: events from a worker thread (device builds) are
        handed to it, so the display goes to the cell that runs the build.
    """

    def __init__(self, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._loop = loop
        self._handles: dict[int, Any] = {}

    def __call__(self, event: BuildEvent) -> None:
        if threading.current_thread() is threading.main_thread():
            self.show(event)
        else:
            self._loop().call_soon_threadsafe(self.show, event)

    def show(self, event: BuildEvent) -> None:
        """Start, update or empty the display of ``event``'s build (in the notebook's thread)."""
        from IPython import display as ipython_display

        display: Any = ipython_display.display  # untyped in IPython
        if event.phase == "started":
            handle = display({}, raw=True, display_id=True)
            self._handles[event.build_id] = handle
            text = event.describe()
            handle.update({"text/plain": text, "text/html": _html(text)}, raw=True)
            return
        handle = self._handles.pop(event.build_id, None)
        if handle is not None:
            handle.update({}, raw=True)


def _html(text: str) -> str:
    return f'<div style="color:#777">&#8987; {html.escape(text)}</div>'


def install(shell: Any) -> None:
    """Show build progress in this kernel's cells (only under ipykernel; once per process)."""
    global _remove
    if _remove is not None or getattr(shell, "kernel", None) is None:
        return  # already listening, or not a Jupyter kernel (the terminal cannot update)
    from ._session import current_session

    _remove = add_build_listener(BuildProgress(lambda: current_session().loop))


def uninstall() -> None:
    """Stop showing build progress (``%unload_ext pydotcompute``)."""
    global _remove
    if _remove is not None:
        _remove()
        _remove = None
