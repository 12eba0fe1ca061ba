"""Hand work from widget callbacks to the runtime's event loop.

Widget callbacks arrive on whatever thread the kernel handles comm messages on, possibly
while the loop is inside an update (re-entrantly). The runtime is not thread-safe, so a
callback never touches it: it hands a function to the loop with ``call_soon_threadsafe``
and returns. Failures are reported to the dashboard (shown in the widget), never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["LoopBridge"]

Report = Callable[[str, BaseException], None]


class LoopBridge:
    """Runs functions and coroutines on ``loop`` for callbacks coming from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, report: Report) -> None:
        self.loop = loop
        self._report = report
        self._tasks: set[asyncio.Task[Any]] = set()

    def call(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (never inline); report what it raises."""
        try:
            self.loop.call_soon_threadsafe(self._guarded, what, fn, args)
        except RuntimeError as exc:  # the loop is closed: nothing can run any more
            self._report(what, exc)

    def _guarded(self, what: str, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._report(what, exc)

    def spawn(
        self,
        what: str,
        coro: Coroutine[Any, Any, Any],
        done: Callable[[Any], None],
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a task (call on the loop's thread); ``done(result)`` on success.

        A failure (or a cancellation) is reported with ``what``.
        """
        task = self.loop.create_task(coro)
        self._tasks.add(task)  # the loop keeps only weak references to tasks

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                self._report(what, asyncio.CancelledError(f"{what} was cancelled"))
            elif (exc := t.exception()) is not None:
                self._report(what, exc)
            else:
                done(t.result())

        task.add_done_callback(finished)
        return task

    @property
    def pending(self) -> int:
        """How many spawned tasks are still running."""
        return len(self._tasks)
