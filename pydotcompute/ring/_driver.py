"""The driver of a host kernel's body: its asyncio task, and running it inline when parked.

A body is an ``async def`` run by an asyncio task, as usual, but through a :class:`BodyDriver`
that sits between the task and the body's coroutine. When the body waits in ``ctx.receive``
with an empty inbox it *parks*: it yields :data:`PARK` to the driver instead of awaiting a
future, and its task waits on the driver's park future.

A message sent to a parked body is queued and the body is marked *runnable* with its runtime's
:class:`Scheduler`. Runnable bodies are then run inline, in the caller's own call, the way an
eager task factory starts a task: as soon as a host caller would otherwise wait
(``runtime.receive``, ``runtime.call``, a blocked ``send``), or else at the next turn of the
event loop. A run takes everything queued for the body, then the body parks again. So a send
followed by a receive never goes through the event loop, a window of messages is taken in one
run, and a pipeline of kernels (bodies sending to the next with ``runtime.send``) runs stage
after stage in the same call, with no recursion. (Running the body at every send instead, the
first design, costs a context switch per message; see docs/articles/guides/performance.md.)

What keeps this correct:

* **The body runs as its own task.** During an inline run the loop's current task is the
  kernel's task and the body runs in the task's ``contextvars`` context, so
  ``asyncio.current_task()``, ``asyncio.timeout()`` and context variables see the body's task,
  not the caller's.
* **Only parked bodies run inline.** If the body awaits anything else (a sleep, a full outbox,
  another kernel's reply) or ends, the inline run stops there and the task is woken to carry
  on from that point.
* **Re-entrancy.** A running body is not parked, so a message sent to it from its own run (to
  itself, or by a kernel it sent to) is queued. Runs never nest: a caller already inside a
  flush (a body waiting on another kernel's reply) waits through its task instead.
* **Fairness.** At most :data:`INLINE_BUDGET` inline runs per turn of the event loop (per
  runtime); past it
  the rest wait for the loop's next turn, so other tasks get theirs. Runnable bodies run in the
  order they became runnable.
* **Cancellation.** Cancelling the task (``terminate``'s deadline, ``asyncio.timeout`` in the
  body, ``asyncio.run`` at exit) cancels the park future; the driver throws the cancellation
  into the body where it waits. A body that swallows the cancellation and waits again is
  closed after :data:`CANCEL_GRACE_S` (:meth:`BodyDriver.kill`), so it can never hang
  ``terminate`` or ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from asyncio import tasks as _tasks
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..errors import KernelStateError

if TYPE_CHECKING:
    from ._inbox import Inbox

__all__ = [
    "CANCEL_GRACE_S",
    "INLINE_BUDGET",
    "PARK",
    "BodyDriver",
    "CancellationIgnoredError",
    "Scheduler",
    "park",
    "timeout_waker",
]

PARK: Any = object()  # yielded by a parked body to its driver
INLINE_BUDGET = 64  # inline runs per turn of the event loop
CANCEL_GRACE_S = 1.0  # how long a cancelled body may go on before it is closed

_SEND, _THROW, _YIELD, _RETURN, _RAISE = range(5)

# The loop's current task is switched to the body's task during an inline run. Python 3.12+
# has a C function for it; 3.11 keeps the current tasks in a dict (what _enter_task uses).
_swap_task: Callable[[Any, Any], Any] | None = getattr(_tasks, "_swap_current_task", None)
_current_tasks: dict[Any, Any] = getattr(_tasks, "_current_tasks", {})


@types.coroutine
def park() -> Generator[Any, Any, Any]:
    """Wait, parked, for the driver to hand over an entry (or throw into the body)."""
    return (yield PARK)


class CancellationIgnoredError(KernelStateError):
    """A host kernel's body went on after it was cancelled, so it was closed."""


class Scheduler:
    """The runnable parked bodies of one runtime, run inline in the order they became so."""

    __slots__ = ("armed", "current", "flushing", "left", "loop", "runnable")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.runnable: deque[BodyDriver] = deque()
        self.left = INLINE_BUDGET  # inline runs left before the loop must turn
        self.armed = False  # a turn callback is scheduled
        self.flushing = False
        self.current: BodyDriver | None = None  # the driver whose body is stepping now

    def mark(self, d: BodyDriver) -> None:
        """``d``'s body is parked and has messages: run it soon."""
        d.runnable = True
        timer = d.timer
        if timer is not None:  # its receive(timeout=...) is answered: the timer must not fire
            timer.cancel()
            d.timer = None
        self.runnable.append(d)
        if not self.armed:
            self.armed = True
            self.loop.call_soon(self._on_turn)

    def _on_turn(self) -> None:
        """Run by the loop: it turned, so the budget is refilled and runnable bodies run."""
        self.armed = False
        self.left = INLINE_BUDGET
        if self.runnable and not self.flushing:
            self.flush()
        if self.runnable and not self.armed:
            self.armed = True
            self.loop.call_soon(self._on_turn)

    def flush(self) -> None:
        """Run the runnable bodies inline, within the budget (callers check ``flushing``)."""
        runnable = self.runnable
        self.flushing = True
        try:
            while runnable and self.left > 0:
                d = runnable.popleft()
                d.runnable = False
                if d.parked and d.inbox.open and d.inbox._size and not d.park_fut.done():
                    self.left -= 1
                    d.run_inline()
        finally:
            self.flushing = False
        if runnable and not self.armed:
            self.armed = True
            self.loop.call_soon(self._on_turn)


class BodyDriver:
    """Runs a body's coroutine for its task, and inline while it is parked with messages."""

    __slots__ = (
        "_coro",
        "_handoff",
        "_kill_handle",
        "context",
        "inbox",
        "kernel_id",
        "killed",
        "loop",
        "park_fut",
        "parked",
        "runnable",
        "sched",
        "task",
        "timer",
    )

    def __init__(
        self, coro: Coroutine[Any, Any, Any], inbox: Inbox, sched: Scheduler, kernel_id: str
    ) -> None:
        self._coro = coro
        self.inbox = inbox
        self.kernel_id = kernel_id
        self.loop = sched.loop
        self.sched = sched
        self.context = contextvars.copy_context()
        self.task: asyncio.Task[Any] | None = None
        self.park_fut: asyncio.Future[None] = self.loop.create_future()
        self.parked = False
        self.runnable = False
        self.timer: asyncio.TimerHandle | None = None
        self._handoff: tuple[int, Any] | None = None
        self._kill_handle: asyncio.TimerHandle | None = None
        self.killed = False

    # ---------------------------------------------------------------- the task's side
    def __await__(self) -> Generator[Any, Any, Any]:
        sched = self.sched
        how: int = _SEND
        arg: Any = None
        while True:
            if how is _SEND or how is _THROW:
                outer, sched.current = sched.current, self
                try:
                    y = self._coro.send(arg) if how is _SEND else self._coro.throw(arg)
                except StopIteration as stop:
                    return stop.value
                finally:
                    sched.current = outer
                if how is _THROW and isinstance(arg, asyncio.CancelledError):
                    self._swallowed()  # it went on after a cancellation
            elif how is _YIELD:
                y = arg
            elif how is _RETURN:
                return arg
            else:
                raise arg
            if y is PARK:
                how, arg = yield from self._wait_parked()
            else:
                try:
                    arg = yield y
                    how = _SEND
                except BaseException as exc:
                    how, arg = _THROW, exc
                if self.killed:
                    how, arg = self._close()

    def _wait_parked(self) -> Generator[Any, Any, tuple[int, Any]]:
        """The task waits while the body is parked (and possibly run inline meanwhile)."""
        self.parked = True
        inbox = self.inbox
        if inbox._size and inbox.open and not self.runnable:
            self.sched.mark(self)  # messages came while it was not parked
        while True:
            fut = self.park_fut
            if fut.done():
                fut = self.park_fut = self.loop.create_future()
            fut._asyncio_future_blocking = True  # what Future.__await__ sets for the task
            try:
                yield fut
            except BaseException as exc:  # the task was cancelled (or thrown into)
                return self._interrupted(exc)
            handoff, self._handoff = self._handoff, None
            if handoff is not None:
                return handoff
            # Woken with nothing to do: the body was run inline and parked again.

    def _interrupted(self, exc: BaseException) -> tuple[int, Any]:
        """The task was woken with ``exc`` while parked (or with a hand-over pending)."""
        if self.killed:
            return self._close()
        handoff, self._handoff = self._handoff, None
        if self.parked:
            self.unpark()
        elif handoff is not None:
            kind, value = handoff
            if kind is _RETURN or kind is _RAISE:
                return handoff  # the body already ended: that is its outcome
            if kind is _YIELD and isinstance(value, asyncio.Future):
                value.cancel()  # the body was waiting on it, as a task would cancel it
        return _THROW, exc

    def _swallowed(self) -> None:
        """The body went on after a cancellation: close it unless it stops in time."""
        task = self.task
        if task is None or task.cancelling() == 0 or self._kill_handle is not None:
            return
        self._kill_handle = self.loop.call_later(CANCEL_GRACE_S, self.kill)

    def kill(self) -> None:
        """Close the body at its next resumption: it ignored cancellation."""
        self.killed = True
        task = self.task
        if task is not None and not task.done():
            task.cancel()

    def _close(self) -> tuple[int, Any]:
        if self.parked:
            self.unpark()
        try:
            self._coro.close()
        except RuntimeError:
            pass  # it ignored GeneratorExit too: it is dropped all the same
        return _RAISE, CancellationIgnoredError(
            f"ring kernel {self.kernel_id!r} went on after it was cancelled (its body caught "
            f"CancelledError) and was closed after {CANCEL_GRACE_S} s; let CancelledError "
            "propagate (re-raise it after cleaning up)"
        )

    # ---------------------------------------------------------------- the other side
    def unpark(self) -> None:
        """The body stops waiting in ``receive`` (resumed, timed out, cancelled)."""
        self.parked = False
        if self.inbox.parked is self:
            self.inbox.parked = None
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None

    def throw(self, exc: BaseException) -> None:
        """Raise ``exc`` in the parked body, through its task: a timeout or a termination."""
        self.unpark()
        self._handoff = (_THROW, exc)
        fut = self.park_fut
        if not fut.done():
            fut.set_result(None)

    def run_inline(self) -> None:
        """Hand the parked body the next queued entry and run it until it parks again.

        The body runs as its task, in its task's context; whatever it waits on next other
        than the inbox, and its end, are handed to the task.
        """
        self.unpark()
        entry = self.inbox.pop()
        loop = self.loop
        task = self.task
        sched = self.sched
        outer, sched.current = sched.current, self
        if _swap_task is None:
            prev = _current_tasks.get(loop)
            _current_tasks[loop] = task
        else:
            prev = _swap_task(loop, task)
        try:
            y = self.context.run(self._coro.send, entry)
        except StopIteration as stop:
            self._hand_to_task(_RETURN, stop.value)
        except BaseException as exc:  # the body's outcome, raised in its task
            self._hand_to_task(_RAISE, exc)
        else:
            if y is PARK:
                self.parked = True  # the task still waits on park_fut
                inbox = self.inbox
                if inbox._size and inbox.open and not self.runnable:
                    sched.mark(self)  # the gate reopened during the run
            else:
                self._hand_to_task(_YIELD, y)
        finally:
            sched.current = outer
            if _swap_task is not None:
                _swap_task(loop, prev)
            elif prev is None:
                del _current_tasks[loop]
            else:
                _current_tasks[loop] = prev

    def _hand_to_task(self, how: int, arg: Any) -> None:
        self._handoff = (how, arg)
        fut = self.park_fut
        if not fut.done():
            fut.set_result(None)


def timeout_waker(driver: BodyDriver, make_error: Callable[[], BaseException]) -> None:
    """Timer callback of ``ctx.receive(timeout=...)``: the wait ended with no message."""
    if driver.parked:
        driver.timer = None
        driver.throw(make_error())
