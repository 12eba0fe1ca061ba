"""The driver of a host kernel's body: its asyncio task, and resuming it inline from a sender.

A body is an ``async def`` run by an asyncio task, as usual, but through a :class:`BodyDriver`
that sits between the task and the body's coroutine. When the body waits in ``ctx.receive``
with an empty inbox, it *parks*: it yields :data:`PARK` to the driver instead of awaiting a
future, and the task waits on the driver's park future. A sender that finds the body parked
hands it the message and runs the body right there, in the sender's call, until the body
parks again (the way an eager task factory starts a task inline): no trip through the event
loop, so a send to an idle kernel returns with the reply already in its outbox.

What keeps this correct:

* **The body runs as its own task.** During an inline run the loop's current task is the
  kernel's task and the body runs in the task's ``contextvars`` context, so
  ``asyncio.current_task()``, ``asyncio.timeout()`` and context variables see the body's task,
  not the sender's.
* **Anything but parking goes back to the task.** If the body awaits anything else (a sleep,
  a full outbox, another kernel's reply) or ends, the inline run stops there and the task is
  woken to carry on from that point: only the hand-over of a message is inline.
* **Re-entrancy.** A body that is running (inline or in its task) is not parked, so a message
  sent to it from its own run (to itself, or by a kernel it sent to) is queued, never run
  recursively. Nested inline runs (A sends to B, which sends to C) are bounded by
  :data:`MAX_DEPTH`.
* **Fairness.** At most :data:`INLINE_BUDGET` inline runs per turn of the event loop (per
  runtime); past it a message wakes the body's task through the loop as usual, so other tasks
  and kernels get their turn.
* **Cancellation.** Cancelling the task (``terminate``'s deadline, ``asyncio.timeout`` in the
  body, ``asyncio.run`` at exit) cancels the park future; the driver throws the cancellation
  into the body where it waits. A message handed over but not yet taken is put back at the
  front of the inbox. A body that swallows the cancellation and waits again is closed after
  :data:`CANCEL_GRACE_S` (``kill``), so it can never hang ``terminate`` or ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..errors import KernelStateError

if TYPE_CHECKING:
    from ._inbox import Entry, Inbox

__all__ = [
    "CANCEL_GRACE_S",
    "INLINE_BUDGET",
    "MAX_DEPTH",
    "PARK",
    "BodyDriver",
    "CancellationIgnoredError",
    "InlineBudget",
    "park",
]

PARK: Any = object()  # yielded by a parked body to its driver
INLINE_BUDGET = 64  # inline runs per turn of the event loop, per runtime
MAX_DEPTH = 8  # nested inline runs (a body sending to a parked body, ...)
CANCEL_GRACE_S = 1.0  # how long a cancelled body may go on before it is closed

_SEND, _THROW, _YIELD, _RETURN, _RAISE = range(5)
_current_task = asyncio.current_task


@types.coroutine
def park() -> Generator[Any, Any, Any]:
    """Wait, parked, for the driver to hand over an entry (or throw into the body)."""
    return (yield PARK)


class CancellationIgnoredError(KernelStateError):
    """A host kernel's body went on after it was cancelled, so it was closed."""


class InlineBudget:
    """How many inline runs may still happen before the event loop turns (one per runtime)."""

    __slots__ = ("armed", "depth", "left", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.left = INLINE_BUDGET
        self.depth = 0
        self.armed = False

    def refill(self) -> None:
        """Run by the loop: it turned, so inline runs may go on."""
        self.left = INLINE_BUDGET
        self.armed = False


class BodyDriver:
    """Runs a body's coroutine for its task, and inline for senders while it is parked."""

    __slots__ = (
        "_cancel_seen",
        "_coro",
        "_handoff",
        "_kill_handle",
        "budget",
        "context",
        "inbox",
        "kernel_id",
        "killed",
        "loop",
        "park_fut",
        "parked",
        "task",
        "timer",
    )

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        inbox: Inbox,
        budget: InlineBudget,
        kernel_id: str,
    ) -> None:
        self._coro = coro
        self.inbox = inbox
        self.budget = budget
        self.kernel_id = kernel_id
        self.loop = budget.loop
        self.context = contextvars.copy_context()
        self.task: asyncio.Task[Any] | None = None
        self.park_fut: asyncio.Future[None] = self.loop.create_future()
        self.parked = False
        self.timer: asyncio.TimerHandle | None = None
        self._handoff: tuple[int, Any] | None = None
        self._cancel_seen = False
        self._kill_handle: asyncio.TimerHandle | None = None
        self.killed = False

    # ---------------------------------------------------------------- the task's side
    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        how: int = _SEND
        arg: Any = None
        while True:
            if how is _SEND:
                try:
                    y = coro.send(arg)
                except StopIteration as stop:
                    return stop.value
            elif how is _THROW:
                self._cancel_seen = isinstance(arg, asyncio.CancelledError)
                try:
                    y = coro.throw(arg)
                except StopIteration as stop:
                    return stop.value
                if self._cancel_seen:
                    self._swallowed()
            elif how is _YIELD:
                y = arg
            elif how is _RETURN:
                return arg
            else:
                raise arg
            if y is PARK:
                fut = self.park_fut
                if fut.done():
                    fut = self.park_fut = self.loop.create_future()
                self.parked = True
                fut._asyncio_future_blocking = True  # what Future.__await__ sets for the task
                try:
                    yield fut
                except BaseException as exc:  # the task was cancelled (or thrown into)
                    how, arg = self._interrupted(exc)
                else:
                    handoff = self._handoff
                    self._handoff = None
                    how, arg = handoff if handoff is not None else (_SEND, None)
            else:
                try:
                    arg = yield y
                    how = _SEND
                except BaseException as exc:
                    how, arg = _THROW, exc
                if self.killed:
                    how, arg = self._close()

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
            if kind is _SEND:
                self.inbox.requeue_front(value)  # handed over but never taken: keep it
            elif kind is _YIELD and isinstance(value, asyncio.Future):
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
        try:
            self._coro.close()
        except RuntimeError:
            pass  # it ignored GeneratorExit too: it is dropped all the same
        if self.inbox.parked is self:
            self.inbox.parked = None
        return _RAISE, CancellationIgnoredError(
            f"ring kernel {self.kernel_id!r} went on after it was cancelled (its body caught "
            f"CancelledError) and was closed after {CANCEL_GRACE_S} s; let CancelledError "
            "propagate (re-raise it after cleaning up)"
        )

    # ---------------------------------------------------------------- the senders' side
    def unpark(self) -> None:
        """The body stops waiting in ``receive`` (taken, timed out, cancelled)."""
        self.parked = False
        if self.inbox.parked is self:
            self.inbox.parked = None
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None

    def wake(self, how: int, arg: Any) -> None:
        """Resume the parked body through its task (one trip through the event loop)."""
        self.unpark()
        self._handoff = (how, arg)
        fut = self.park_fut
        if not fut.done():
            fut.set_result(None)

    def deliver(self, entry: Entry) -> bool:
        """Hand ``entry`` to the parked body; False if it cannot take it (queue it instead).

        Runs the body inline until it parks again, unless the budget of inline runs is
        spent or senders are nested too deep: then its task is woken to take the entry.
        """
        fut = self.park_fut
        if fut.done():
            return False  # being cancelled: the entry waits in the inbox
        self.parked = False
        self.inbox.parked = None
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        b = self.budget
        if b.left <= 0 or b.depth >= MAX_DEPTH:
            self._handoff = (_SEND, entry)
            fut.set_result(None)
            return True
        b.left -= 1
        if not b.armed:
            b.armed = True
            self.loop.call_soon(b.refill)
        self._run_inline(entry)
        return True

    def throw(self, exc: BaseException) -> None:
        """Raise ``exc`` in the parked body (from its task): a timeout or a termination."""
        self.wake(_THROW, exc)

    def send_later(self, entry: Entry) -> None:
        """Hand ``entry`` to the parked body through its task (activation, not the hot path)."""
        self.wake(_SEND, entry)

    def _run_inline(self, entry: Entry) -> None:
        loop = self.loop
        task: Any = self.task
        b = self.budget
        b.depth += 1
        sender = _current_task(loop)
        if sender is not None:
            _leave_task(loop, sender)
        _enter_task(loop, task)
        try:
            y = self.context.run(self._coro.send, entry)
        except StopIteration as stop:
            self._after_inline(_RETURN, stop.value)
        except BaseException as exc:  # the body's outcome, raised in its task
            self._after_inline(_RAISE, exc)
        else:
            if y is PARK and not self.park_fut.done():
                self.parked = True  # parked again: the task still waits on park_fut
            else:
                self._after_inline(_YIELD, y)
        finally:
            _leave_task(loop, task)
            if sender is not None:
                _enter_task(loop, sender)
            b.depth -= 1

    def _after_inline(self, how: int, arg: Any) -> None:
        if how is _YIELD and arg is PARK:
            # Parked again, but the task was cancelled meanwhile: it throws into this park.
            self.parked = True
            self.inbox.parked = self
            return
        self._handoff = (how, arg)
        fut = self.park_fut
        if not fut.done():
            fut.set_result(None)


def timeout_waker(driver: BodyDriver, make_error: Callable[[], BaseException]) -> None:
    """Timer callback of ``ctx.receive(timeout=...)``: the wait ended with no message."""
    if driver.parked:
        driver.timer = None
        driver.throw(make_error())
