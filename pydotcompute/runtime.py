"""``RingKernelRuntime``: launch, control and message ring kernels through one API."""

from __future__ import annotations

import asyncio
import threading
import time
from asyncio import _get_running_loop
from collections import deque
from collections.abc import Callable, Iterable
from operator import attrgetter
from threading import get_ident
from time import perf_counter_ns
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import _display
from ._runtime_routing import RoutingVerbs
from .backends.host import HostKernel, LaunchResult, TerminateResult
from .errors import (
    KernelFailedError,
    KernelNotFoundError,
    KernelStateError,
    MessageTypeError,
    OperationTimeoutError,
    PyDotComputeError,
    QueueFullError,
    ReceiveTimeoutError,
)
from .ring._checks import check_kernel_id, check_timeout, id_list
from .ring._context import check_max_count
from .ring._dead_letters import DeadLetterQueue
from .ring._driver import Scheduler
from .ring._inbox import _LAT_PHASE, DEFAULT_PRIORITY, Entry, Inbox
from .ring._options import KernelOptions
from .ring._outbox import EMPTY, Outbox
from .ring._routing import Router
from .ring._spec import RingKernelSpec, _registry, spec_for
from .ring._state import KernelState
from .ring._waiters import expire
from .telemetry import KernelTelemetry, RuntimeSnapshot

__all__ = ["ClusterBackend", "RingKernelRuntime"]

_priority = attrgetter("priority")
_DEFAULT_TERMINATE_TIMEOUT = 5.0


@runtime_checkable
class ClusterBackend(Protocol):
    """What ``RingKernelRuntime(cluster=...)`` accepts: a backend that runs kernels elsewhere.

    The core never imports a cluster engine: the backend (``pydotcompute.cluster.RayCluster``)
    names the ``RingKernelRuntime`` subclass that routes the verbs to it.
    """

    def runtime_class(self) -> type[RingKernelRuntime]:
        """The runtime class whose verbs route kernels to this backend."""
        ...


class RingKernelRuntime(RoutingVerbs):
    """Owns running ring kernels and routes every verb to their backend.

    Use it as an async context manager; leaving the context terminates every kernel::

        async with RingKernelRuntime() as runtime:
            await runtime.launch("summer")
            await runtime.activate("summer")
            await runtime.send("summer", ComputeRequest(values=[1, 2, 3]))
            reply = await runtime.receive("summer")

    A runtime belongs to the event loop it is first used on. It is not thread-safe: every verb
    called from another loop or thread raises ``KernelStateError`` and changes nothing; from
    another thread, hand coroutines to that loop with
    :func:`asyncio.run_coroutine_threadsafe` (see :attr:`loop`).

    Every verb checks its arguments before it acts: a kernel id is a non-empty ``str``, and a
    ``timeout`` is ``None`` or ``math.inf`` (no limit), ``0`` (do not wait) or a number of
    seconds; anything else raises ``InvalidArgumentError`` and nothing changes.

    Host kernels' bodies run inline: a body waiting in ``ctx.receive`` that has been sent a
    message runs in the caller's own call as soon as the caller would wait (``receive``,
    ``call``), or at the next turn of the event loop, with no task switch through the loop.

    Parameters
    ----------
    device:
        Where device ring kernels run: ``"auto"`` (a usable CUDA GPU, else the emulated
        device), ``"cuda"`` (raises ``BackendUnavailableError`` without a GPU) or
        ``"emulated"`` (the host C++ build of the same kernel source). Host kernels always
        run on asyncio.
    dead_letter_capacity:
        How many dead letters :meth:`dead_letters` keeps (the oldest are forgotten first;
        the counts in telemetry keep growing).
    unheard_topics:
        What :meth:`publish` does with a message for a topic that has no subscriber:
        ``"ignore"`` (it returns 0) or ``"dead_letter"`` (it is also kept as a dead letter).
    cluster:
        Run kernels on a cluster with the same verbs: ``cluster=RayCluster()`` (from
        ``pydotcompute.cluster``). See the "Scaling out" guide.
    """

    def __new__(cls, *args: Any, cluster: Any = None, **kwargs: Any) -> RingKernelRuntime:
        """Make the runtime; with ``cluster=`` the backend's runtime class, which routes to it."""
        if cluster is not None and cls is RingKernelRuntime:
            if not isinstance(cluster, ClusterBackend):
                raise PyDotComputeError(
                    f"RingKernelRuntime(cluster={cluster!r}): expected a cluster backend such "
                    "as pydotcompute.cluster.RayCluster(), or None to run in this process"
                )
            cls = cluster.runtime_class()
        return super().__new__(cls)

    def __init__(
        self,
        device: str = "auto",
        *,
        dead_letter_capacity: int = 1024,
        unheard_topics: str = "ignore",
        cluster: ClusterBackend | None = None,
    ) -> None:
        from .backends.device import DEVICES, resolve_device

        if device not in DEVICES:
            raise PyDotComputeError(
                f"RingKernelRuntime(device={device!r}): expected one of 'auto', 'cuda', 'emulated'"
            )
        self._kernels: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ""  # name of the thread whose loop this runtime runs on
        self._ident = -1  # and its id
        self._loop_running: Callable[[], bool] = bool
        # Runnable parked host bodies, run inline before a caller waits.
        self._sched: Scheduler | None = None
        self._closed = False
        self._device = device
        self._target = resolve_device(device) if device == "cuda" else None
        self._dead = DeadLetterQueue(dead_letter_capacity)
        self._routing = Router(self._kernels, self._dead, unheard_topics)
        self._cluster = cluster

    def __repr__(self) -> str:
        return _display.runtime_repr(self, self._device)

    def _repr_html_(self) -> str:
        """A table of the kernels, shown when a notebook cell evaluates the runtime."""
        return _display.runtime_html(self, self._device, self._target)

    async def __aenter__(self) -> RingKernelRuntime:
        self._bind_loop()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this runtime runs on (``None`` before first use)."""
        return self._loop

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has run."""
        return self._closed

    @property
    def kernels(self) -> tuple[str, ...]:
        """Ids of the kernels launched in this runtime (ended ones included, until forgotten)."""
        return tuple(self._kernels)

    def _on_loop(self) -> None:
        """Refuse a call made from another event loop (or thread), or after the loop closed.

        In this runtime's thread, with its loop running, the running loop can only be that
        one: two cheap checks instead of asking asyncio (which calls getpid()).
        """
        if get_ident() != self._ident or not self._loop_running():
            loop = _get_running_loop()
            if loop is not self._loop or loop is None:
                self._other_loop(loop)

    def _on_loop_or_idle(self) -> None:
        """For synchronous verbs: refuse another thread (or loop) while this loop runs."""
        if self._loop is not None and self._loop.is_running():
            self._on_loop()

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The runtime's loop, checked to be the running one and the runtime not shut down."""
        loop = _get_running_loop()
        if loop is not self._loop or loop is None:
            loop = self._other_loop(loop)
        if self._closed:
            raise KernelStateError(
                "this RingKernelRuntime was shut down; create a new RingKernelRuntime()"
            )
        return loop

    def _other_loop(self, loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
        """Bind to ``loop`` on first use; otherwise say why this call cannot run here."""
        if loop is not None and self._loop is None:
            self._loop = loop
            self._ident = get_ident()
            self._loop_running = loop.is_running
            self._sched = Scheduler(loop)
            self._thread = threading.current_thread().name
            return loop
        if self._loop is not None and self._loop.is_closed():
            raise KernelStateError(
                "the event loop this RingKernelRuntime ran on is closed (its asyncio.run() "
                "returned), and its kernels ended with it; create a new RingKernelRuntime() "
                "on the running loop"
            )
        if loop is None and get_ident() != self._ident:
            raise KernelStateError(
                f"this RingKernelRuntime runs on the event loop of thread {self._thread!r} and "
                f"was called from another thread ({threading.current_thread().name!r}); hand "
                "the call to its loop: asyncio.run_coroutine_threadsafe(runtime.send(...), "
                "runtime.loop), or runtime.loop.call_soon_threadsafe(...) for a plain call"
            )
        if loop is None:
            raise KernelStateError(
                "RingKernelRuntime verbs are coroutines of its event loop and no loop is "
                "running here; await them on that loop (or use asyncio.run_coroutine_threadsafe"
                "(coro, runtime.loop) from another thread)"
            )
        here = threading.current_thread().name
        where = (
            f"another event loop in another thread ({here!r})"
            if here != self._thread
            else "another event loop in the same thread"
        )
        raise KernelStateError(
            f"this RingKernelRuntime runs on the event loop of thread {self._thread!r} and was "
            f"called from {where}; use it from the loop it was first used on (from another "
            "thread: asyncio.run_coroutine_threadsafe(runtime.send(...), runtime.loop)), or "
            "create one runtime per loop"
        )

    # ---------------------------------------------------------------- lookups and errors
    def _flush(self) -> None:
        """Run parked host bodies that have messages, before this caller waits."""
        s = self._sched
        if s is not None and s.runnable and not s.flushing:
            s.flush()

    def _get(self, kernel_id: str) -> Any:
        """The kernel launched under ``kernel_id``, or ``None``."""
        try:
            return self._kernels.get(kernel_id)
        except TypeError:  # unhashable: certainly not a kernel id
            return None

    def _kernel(self, kernel_id: str, verb: str) -> Any:
        """The kernel launched under ``kernel_id``, checked as ``verb``'s argument."""
        k = self._get(kernel_id)
        if k is None:
            raise self._missing(kernel_id, verb)
        return k

    def _missing(self, kernel_id: str, verb: str = "") -> PyDotComputeError:
        if verb:
            check_kernel_id(kernel_id, verb)
        if kernel_id in _registry:
            return KernelStateError(
                f"ring kernel {kernel_id!r} is CREATED (registered, not launched); "
                f"call await runtime.launch({kernel_id!r}) first"
            )
        known = id_list(set(self._kernels) | set(_registry))
        return KernelNotFoundError(
            f"no ring kernel {kernel_id!r} in this runtime (known: {known}); check the id or "
            "register it with @ring_kernel"
        )

    def _refused(self, kernel_id: str, k: Any, verb: str) -> PyDotComputeError:
        if k is None:
            return self._missing(kernel_id, verb)
        if k.state is KernelState.FAILED and k.error is not None:
            return KernelFailedError.caused_by(kernel_id, k.error, "The message was not queued.")
        return KernelStateError(
            f"cannot send to ring kernel {kernel_id!r}: it is {k.state.value}; sends are "
            "queued only while it is LAUNCHED, ACTIVE or DEACTIVATED"
        )

    def _wrong_type(self, k: Any, msg: Any) -> MessageTypeError:
        t = k.input_type
        return MessageTypeError(
            f"ring kernel {k.kernel_id!r} takes {t.__name__} messages, got "
            f"{_a(type(msg).__name__)}; send {_a(t.__name__)}"
        )

    @staticmethod
    def _no_reply(k: Any, msg: Any, timeout: float) -> Any:
        def make() -> BaseException:
            return OperationTimeoutError(
                f"no reply from ring kernel {k.kernel_id!r} to {type(msg).__name__} "
                f"{msg.message_id} within {timeout} s"
            )

        return make

    @staticmethod
    def _receive_timeout(kernel_id: str, timeout: float | None) -> Any:
        if timeout is None:
            return None

        def make() -> BaseException:
            return ReceiveTimeoutError(
                f"no message from ring kernel {kernel_id!r} within {timeout} s"
            )

        return make

    # ---------------------------------------------------------------- lifecycle verbs
    async def launch(self, kernel_id: str, func: Any = None, **options: Any) -> LaunchResult:
        """Allocate a kernel's mailboxes and start it, parked until :meth:`activate`.

        Parameters
        ----------
        kernel_id:
            Id of a kernel registered with ``@ring_kernel`` (or any id, with ``func``).
        func:
            An ``async def body(ctx)`` (or a spec) to run instead of the registered body.
        **options:
            Options overriding the declared ones (``queue_size``, ``backpressure``, ...).

        Raises
        ------
        KernelNotFoundError
            Nothing is registered under ``kernel_id`` and no ``func`` was given.
        KernelStateError
            The kernel is already launched and not terminated, or the runtime was shut down
            or is used from another event loop.
        InvalidArgumentError
            ``kernel_id`` is not a non-empty ``str``.
        """
        loop = self._bind_loop()
        check_kernel_id(kernel_id, "launch")
        spec = spec_for(kernel_id, func, _registry.get(kernel_id)).with_options(**options)
        old = self._kernels.get(kernel_id)
        if old is not None and old.state is not KernelState.TERMINATED:
            raise KernelStateError(
                f"ring kernel {kernel_id!r} is already launched ({old.state.value}); "
                "terminate it first, or use relaunch() to replace its body"
            )
        self._routing.check_launch(spec)
        kernel = self._make_kernel(spec, loop)
        result: LaunchResult = await kernel.launch()
        self._kernels[kernel_id] = kernel
        self._routing.attach(kernel)
        return result

    def _make_kernel(self, spec: RingKernelSpec, loop: asyncio.AbstractEventLoop) -> Any:
        if spec.kind == "host":
            if self._sched is None:
                self._sched = Scheduler(loop)
            return HostKernel(spec, loop, self._sched)
        if spec.kind == "device":
            from .backends.device import resolve_device
            from .backends.device._kernel import DeviceKernel

            if self._target is None:
                self._target = resolve_device(self._device)
            return DeviceKernel(spec, loop, self._target)
        raise KernelStateError(
            f"ring kernel {spec.kernel_id!r} is of kind {spec.kind!r}, which this runtime "
            "cannot run"
        )

    async def activate(self, kernel_id: str) -> None:
        """Let a launched (or deactivated) kernel take messages."""
        self._on_loop()
        await self._kernel(kernel_id, "activate").activate()

    async def deactivate(self, kernel_id: str) -> None:
        """Park an active kernel; sends keep queueing and nothing is lost."""
        self._on_loop()
        await self._kernel(kernel_id, "deactivate").deactivate()

    async def terminate(
        self,
        kernel_id: str,
        *,
        timeout: float | None = _DEFAULT_TERMINATE_TIMEOUT,
        drain: bool = False,
    ) -> TerminateResult:
        """Stop a kernel gracefully, then free its mailboxes.

        ``should_terminate`` turns true and a blocked ``receive`` wakes; the body gets
        ``timeout`` seconds to finish, then it is cancelled. With ``drain=True`` the body
        first takes what is still queued (``should_terminate`` turns true once the inbox is
        empty). Replies already in the outbox stay receivable. ``timeout=None`` (or
        ``math.inf``) waits for the body without limit.

        A body that ignores the cancellation (catches ``CancelledError`` and goes on) is
        closed after a short grace period: the result says ``graceful=False`` and telemetry
        counts the error. ``terminate`` never hangs on such a body.
        """
        self._on_loop()
        timeout = check_timeout(timeout, "terminate")
        return await self._kernel(kernel_id, "terminate").terminate(timeout, drain)

    async def relaunch(
        self,
        kernel_id: str,
        func: Any = None,
        *,
        timeout: float | None = _DEFAULT_TERMINATE_TIMEOUT,
    ) -> LaunchResult:
        """Replace a running kernel's body in place (hot redeploy).

        The old body is stopped gracefully (cancelled after ``timeout``), the new one takes
        the same id and state, messages waiting in the inbox are kept, and telemetry keeps its
        history with the redeploy counted. Without ``func`` the current body restarts.
        """
        self._on_loop()
        timeout = check_timeout(timeout, "relaunch")
        k = self._kernel(kernel_id, "relaunch")
        spec = None
        if func is not None:
            spec = spec_for(kernel_id, func, k.spec)
        result: LaunchResult = await k.relaunch(spec, timeout)
        self._routing.resume(k)
        return result

    async def shutdown(self, *, timeout: float | None = _DEFAULT_TERMINATE_TIMEOUT) -> None:
        """Terminate every kernel that is still alive (run by leaving ``async with``).

        ``timeout`` applies to each kernel, as in :meth:`terminate`.
        """
        timeout = check_timeout(timeout, "shutdown")
        if self._closed:
            return
        self._on_loop()
        live = [
            k
            for k in self._kernels.values()
            if k.state not in (KernelState.TERMINATED, KernelState.TERMINATING)
        ]
        results = await asyncio.gather(
            *(k.terminate(timeout, False, if_alive=True) for k in live), return_exceptions=True
        )
        self._closed = True
        self._routing.close()
        errors = [r for r in results if isinstance(r, BaseException)]
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("errors while shutting down ring kernels", errors)

    # ---------------------------------------------------------------- messaging verbs
    async def send(self, kernel_id: str, msg: Any, *, timeout: float | None = None) -> bool:
        """Send a message to a kernel's inbox.

        Returns ``True`` once queued, ``False`` if the kernel's ``drop_newest`` policy
        discarded it.

        Raises
        ------
        MessageTypeError
            ``msg`` is not of the kernel's ``input_type``.
        QueueFullError
            The inbox is full and the policy is ``reject``; ``SendTimeoutError`` (also a
            ``QueueFullError``) when ``block`` waited ``timeout`` seconds.
        KernelStateError, KernelFailedError
            The kernel does not take messages now.
        InvalidArgumentError
            ``timeout`` or ``kernel_id`` is not valid (nothing is queued).
        """
        try:  # on asyncio's loops: running, and in this thread (one C call)
            here = self._loop._thread_id == get_ident()  # type: ignore[union-attr]
        except AttributeError:  # not bound yet, or another loop class (uvloop)
            here = False
        if not here:
            self._on_loop()
        if timeout is not None:
            timeout = check_timeout(timeout, "send")
        try:  # a subscript (the KeyError is rare) is cheaper than dict.get's call
            k = self._kernels[kernel_id]
        except (KeyError, TypeError):  # unknown, or unhashable: refused below with the reason
            k = None
        if k is None or not k.accepting:
            raise self._refused(kernel_id, k, "send")
        t = k.input_type
        if t is not None and type(msg) is not t and not isinstance(msg, t):
            raise self._wrong_type(k, msg)
        ib = k.inbox
        if type(ib) is Inbox and ib._size < ib.capacity:
            # A host inbox's put_nowait, common case inlined: more of a priority already queued.
            try:  # an attribute read, specialized by the interpreter, beats getattr's call
                p = msg.priority
            except AttributeError:
                p = DEFAULT_PRIORITY
            bucket: deque[Entry] | None
            if p is DEFAULT_PRIORITY:
                bucket = ib._default
            else:
                bucket = ib._buckets.get(p) if type(p) is int else None
            if bucket:
                n = ib.received = ib.received + 1  # also the arrival sequence
                bucket.append((n, perf_counter_ns() if n & _LAT_PHASE == 1 else 0, msg))
                ib._size += 1
                return True
        r = ib.put_nowait(msg)
        if r is None:
            self._flush()  # the kernel may make room right here
            return await ib.put_wait(msg, timeout)
        return r

    async def send_many(
        self, kernel_id: str, msgs: Iterable[Any], *, timeout: float | None = None
    ) -> int:
        """Send several messages in one call; returns how many were queued.

        All messages are type-checked before any is queued. Under ``block`` the call waits
        for space as needed (``timeout`` applies to each wait). ``msgs`` may also be a numpy
        structured array of the input type's fixed layout (``fixed_layout(In).dtype``): a
        device kernel copies it into its inbox ring in one copy per ring chunk.

        Raises
        ------
        QueueFullError
            Under ``reject``, the batch did not fit: the messages before the first one that
            did not fit stay queued (the kernel may already be handling them), the rest are
            not; ``err.queued`` says how many were queued, so a retry sends
            ``msgs[err.queued:]``.
        MessageTypeError
            ``msgs`` is not iterable, or one of them is not of the input type (then none is
            queued).
        """
        self._on_loop()
        timeout = check_timeout(timeout, "send_many")
        k = self._get(kernel_id)
        if k is None or not k.accepting:
            raise self._refused(kernel_id, k, "send_many")
        if isinstance(msgs, np.ndarray):
            if hasattr(k.inbox, "put_array"):
                return int(await k.inbox.put_array(msgs, timeout))
            msgs = _layout_for(k, k.input_type, "send_many").from_array(msgs)
        if isinstance(msgs, list):
            items = msgs
        else:
            try:
                items = list(msgs)
            except TypeError:
                if hasattr(msgs, "__iter__"):
                    raise  # an iterable that failed while iterating: its own error
                raise MessageTypeError(
                    f"send_many({kernel_id!r}, msgs=...): expected an iterable of messages (a "
                    f"list, a generator) or a numpy structured array, got a "
                    f"{type(msgs).__name__}; to send one message use send()"
                ) from None
        if not items:
            return 0
        t = k.input_type
        if t is not None and set(map(type, items)) != {t}:
            for m in items:
                if not isinstance(m, t):
                    raise self._wrong_type(k, m)
        priorities = _priorities(items, t)
        inbox = k.inbox
        before = inbox.received
        try:
            taken = inbox.put_many_nowait(items, priorities)
            while taken < len(items):
                if not k.accepting:
                    raise self._refused(kernel_id, k, "send_many")
                self._flush()
                await inbox.put_wait(items[taken], timeout)
                taken += 1
                if taken < len(items):
                    rest = items[taken:]
                    taken += inbox.put_many_nowait(
                        rest, None if priorities is None else priorities[taken:]
                    )
        except QueueFullError as exc:
            raise _partial(exc, inbox.received - before, len(items)) from None
        return inbox.received - before

    async def receive(self, kernel_id: str, *, timeout: float | None = None) -> Any:
        """Take the next reply from a kernel's outbox, waiting while none is there.

        Raises
        ------
        ReceiveTimeoutError
            Nothing arrived within ``timeout`` seconds.
        KernelFailedError
            The kernel's body raised (and was not restarted); the body's exception, with its
            traceback, is the cause. Replies sent before the failure are returned first.
        KernelStateError
            The kernel is terminated and its outbox is empty.
        """
        try:  # on asyncio's loops: running, and in this thread (one C call)
            here = self._loop._thread_id == get_ident()  # type: ignore[union-attr]
        except AttributeError:  # not bound yet, or another loop class (uvloop)
            here = False
        if not here:
            self._on_loop()
        if timeout is not None:
            timeout = check_timeout(timeout, "receive")
        try:
            k = self._kernels[kernel_id]
        except (KeyError, TypeError):  # unknown, or unhashable: refused below with the reason
            k = None
        if k is None:
            raise self._missing(kernel_id, "receive")
        ob = k.outbox
        q = ob._q
        if q and type(ob) is Outbox:  # a host outbox's pop_nowait, inlined
            msg = q.popleft()
            if ob._putters:
                ob._wake_putter()
            return msg
        msg = ob.pop_nowait()
        if msg is not EMPTY:
            return msg
        s = self._sched
        if s is not None and s.runnable and not s.flushing:
            s.flush()  # run parked bodies that have messages, here, instead of waiting
            msg = ob.pop_nowait()
            if msg is not EMPTY:
                return msg
        fut = ob.wait(None, None)
        if timeout is None:
            try:
                return await fut
            except asyncio.CancelledError:
                ob.abandon(fut)
                raise
        # One timer handle, cancelled on success: a timeout that does not fire costs little.
        handle = k._loop.call_later(timeout, expire, fut, self._receive_timeout(kernel_id, timeout))
        try:
            return await fut
        except asyncio.CancelledError:
            ob.abandon(fut)
            raise
        finally:
            handle.cancel()

    async def receive_many(
        self,
        kernel_id: str,
        max_count: int | None = None,
        *,
        timeout: float | None = None,
        as_array: bool = False,
    ) -> Any:
        """Take up to ``max_count`` replies (all queued ones if ``None``), waiting for one.

        With ``as_array=True`` the replies come as one numpy structured array of the output
        type's fixed layout instead of a list (a device kernel's ring is copied out once).
        """
        self._on_loop()
        timeout = check_timeout(timeout, "receive_many")
        if max_count is not None:
            check_max_count(max_count)
        k = self._kernel(kernel_id, "receive_many")
        ob = k.outbox
        if as_array:
            if not hasattr(ob, "pop_array"):
                layout = _layout_for(k, k.options.output_type, "receive_many(as_array=True)")
                got = await self.receive_many(kernel_id, max_count, timeout=timeout)
                return layout.to_array(got)
            self._flush()
            if not len(ob):
                fut = ob.wait(timeout, self._receive_timeout(kernel_id, timeout))
                try:
                    ob.unget(await fut)  # put back in front: the array keeps the order
                except asyncio.CancelledError:
                    ob.abandon(fut)
                    raise
            return ob.pop_array(max_count or len(ob))
        self._flush()
        if len(ob):
            return ob.pop_many(max_count or len(ob))
        fut = ob.wait(timeout, self._receive_timeout(kernel_id, timeout))
        try:
            first = await fut
        except asyncio.CancelledError:
            ob.abandon(fut)
            raise
        if max_count == 1 or not len(ob):
            return [first]
        rest = ob.pop_many(len(ob) if max_count is None else max_count - 1)
        return [first, *rest]

    async def call(self, kernel_id: str, msg: Any, *, timeout: float | None = None) -> Any:
        """Send ``msg`` and wait for the reply whose ``correlation_id`` is its ``message_id``.

        Other replies stay receivable in order. Replies made with ``request.reply(...)`` or
        sent by ``ctx.send`` while handling the request are correlated automatically, and a
        body that echoes the request object itself answers the call too. When the kernel's
        output is linked, the reply is the one the end of its links (a kernel with no link
        of its own) sends for the request's message: the correlation is carried along.

        Raises
        ------
        OperationTimeoutError
            No reply within ``timeout`` seconds (the send counts against it);
            ``SendTimeoutError`` (also an ``OperationTimeoutError``) when a ``block`` inbox
            stayed full for all of it.
        KernelFailedError
            The kernel failed while handling the request.
        """
        try:  # on asyncio's loops: running, and in this thread (one C call)
            here = self._loop._thread_id == get_ident()  # type: ignore[union-attr]
        except AttributeError:  # not bound yet, or another loop class (uvloop)
            here = False
        if not here:
            self._on_loop()
        if timeout is not None:
            timeout = check_timeout(timeout, "call")
        try:
            k = self._kernels[kernel_id]
        except (KeyError, TypeError):  # unknown, or unhashable: refused below with the reason
            k = None
        if k is None:
            raise self._missing(kernel_id, "call")
        tm = type(msg)
        if (
            getattr(tm, "__pdc_message__", None) is None  # any @message has a message_id
            and not hasattr(tm, "message_id")
            and not hasattr(msg, "message_id")
        ):
            raise MessageTypeError(
                f"call() needs a @message instance (with a message_id), got "
                f"{_a(type(msg).__name__)}; use send() and receive() for other objects"
            )
        if not k.accepting:
            raise self._refused(kernel_id, k, "call")
        t = k.input_type
        if t is not None and tm is not t and not isinstance(msg, t):
            raise self._wrong_type(k, msg)
        if k.route is not None:
            return await self._call_linked(kernel_id, msg, timeout)
        ob = k.outbox
        key = ob.expect_reply_to(msg)
        loop = k._loop
        deadline = None
        try:
            queued = k.inbox.put_nowait(msg)
            if queued is None:  # full, under block: a full inbox counts against the timeout
                if timeout is not None:
                    deadline = loop.time() + timeout
                self._flush()
                queued = await k.inbox.put_wait(msg, timeout)
            if not queued:
                raise QueueFullError(
                    f"the request to ring kernel {kernel_id!r} was dropped: its inbox is full "
                    f"({k.inbox.capacity} messages) and its backpressure is 'drop_newest', so "
                    "no reply will come; receive faster, raise queue_size, or use 'block'"
                )
            s = self._sched
            if s is not None and s.runnable and not s.flushing:
                s.flush()  # an idle host kernel replies here: no suspension
        except BaseException:
            ob.forget(key)
            raise
        reply = ob.arrived(key)
        if reply is not EMPTY:  # the reply came already (arrived took it: nothing to forget)
            return reply
        try:
            fut = ob.reply_future(key)
            if timeout is None:
                return await fut
            if deadline is None:
                deadline = loop.time() + timeout
            # One timer handle, cancelled on success (no asyncio.timeout per call).
            handle = loop.call_at(deadline, expire, fut, self._no_reply(k, msg, timeout))
            try:
                return await fut
            finally:
                handle.cancel()
        finally:
            ob.forget(key)

    # ---------------------------------------------------------------- state and telemetry
    def state(self, kernel_id: str) -> KernelState:
        """The lifecycle state of a kernel (``CREATED`` if registered but not launched)."""
        k = self._get(kernel_id)
        if k is not None:
            return k.state
        check_kernel_id(kernel_id, "state")
        if kernel_id in _registry:
            return KernelState.CREATED
        raise self._missing(kernel_id)

    def options(self, kernel_id: str) -> KernelOptions:
        """The options a launched kernel runs with (queue sizes, message types, policies)."""
        return self._kernel(kernel_id, "options").options

    def telemetry(self, kernel_id: str) -> KernelTelemetry:
        """A frozen telemetry snapshot of one kernel."""
        return self._routed(self._kernel(kernel_id, "telemetry").telemetry())

    def forget(self, kernel_id: str) -> None:
        """Drop a kernel that has ended (``TERMINATED``, or a host kernel ``FAILED``).

        Its id, telemetry and anything left in its mailboxes go (replies nobody received
        are discarded); the id can be launched again. Long sessions that launch many
        uniquely named kernels call this to keep the runtime from growing.

        Once the runtime's event loop has closed, every kernel can be forgotten (they ended
        with it). ``forget`` is synchronous: call it on the runtime's thread.

        Raises
        ------
        KernelStateError
            The kernel is still alive (terminate it first), or the call came from another
            thread while the runtime's loop runs.
        """
        loop = self._loop
        gone = loop is not None and loop.is_closed()  # its kernels ended with their loop
        if not gone:
            self._on_loop_or_idle()
        k = self._kernel(kernel_id, "forget")
        if not gone and not k.ended():
            raise KernelStateError(
                f"cannot forget ring kernel {kernel_id!r}: it is {k.state.value} and may still "
                f"run; await runtime.terminate({kernel_id!r}) first"
            )
        del self._kernels[kernel_id]

    def get_telemetry(self, kernel_id: str) -> KernelTelemetry:
        """Return :meth:`telemetry` of one kernel (the earlier port's name, kept as an alias).

        Code written for the unrelated ``pydotcompute`` 0.2.0 on PyPI runs unchanged; new code
        uses :meth:`telemetry`. See ``docs/migration.md``.
        """
        return self.telemetry(kernel_id)

    def snapshot(self) -> RuntimeSnapshot:
        """A frozen snapshot of every kernel's telemetry (``as_dict()`` gives plain data).

        ``device`` holds the telemetry of the accelerator in use (the first GPU this process
        opened, else the CPU) as plain data: see :class:`~pydotcompute.DeviceTelemetry`.
        """
        from .compute import device_snapshot

        return RuntimeSnapshot(
            timestamp=time.time(),
            kernels={kid: self._routed(k.telemetry()) for kid, k in self._kernels.items()},
            device={
                **device_snapshot(),
                "device_kernels": {"requested": self._device, "run_on": self._target},
            },
            dead_letters=self._dead.total,
            topics={
                topic: [s if isinstance(s, str) else "<host>" for s in subs]
                for topic, subs in self._routing.topics.items()
            },
        )


def _a(name: str) -> str:
    """``name`` with its indefinite article: "an int", "a Num" (by the first letter)."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _layout_for(k: Any, t: type | None, verb: str) -> Any:
    """The fixed layout used to convert arrays for a host kernel's batch verbs."""
    from .errors import LayoutError
    from .messages import fixed_layout

    layout = fixed_layout(t) if t is not None else None
    if layout is None:
        raise LayoutError(
            f"{verb} with a numpy array needs ring kernel {k.kernel_id!r} to declare a "
            "message type with a fixed layout; pass a list of messages instead"
        )
    return layout


def _partial(exc: QueueFullError, queued: int, total: int) -> QueueFullError:
    """The error of a batch that only partly fitted: how many were queued, and what to do."""
    err = QueueFullError(
        f"{exc} ({queued} of the {total} messages of this send_many were queued, the first "
        f"{queued}; they stay queued: resend msgs[{queued}:])"
    )
    err.queued = queued
    return err


def _priorities(items: list[Any], t: type | None) -> list[int] | None:
    """Priorities of a batch, or ``None`` when all are the default (or not messages)."""
    if t is None or "__pdc_message__" not in t.__dict__:
        from .ring._inbox import priority_of

        prios = [priority_of(m) for m in items]
    else:
        prios = list(map(_priority, items))
    if prios and min(prios) == 128 == max(prios):
        return None
    return prios
