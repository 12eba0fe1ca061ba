"""``RingKernelRuntime``: launch, control and message ring kernels through one API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

import numpy as np

from ._runtime_routing import RoutingVerbs
from .backends.host import HostKernel, LaunchResult, TerminateResult
from .errors import (
    KernelFailedError,
    KernelNotFoundError,
    KernelStateError,
    MessageTypeError,
    OperationTimeoutError,
    PyDotComputeError,
    ReceiveTimeoutError,
)
from .ring._context import check_max_count
from .ring._dead_letters import DeadLetterQueue
from .ring._options import KernelOptions
from .ring._outbox import EMPTY
from .ring._routing import Router
from .ring._spec import RingKernelSpec, _registry, spec_for
from .ring._state import KernelState
from .telemetry import KernelTelemetry, RuntimeSnapshot

__all__ = ["RingKernelRuntime"]

_priority = attrgetter("priority")
_DEFAULT_TERMINATE_TIMEOUT = 5.0


class RingKernelRuntime(RoutingVerbs):
    """Owns running ring kernels and routes every verb to their backend.

    Use it as an async context manager; leaving the context terminates every kernel::

        async with RingKernelRuntime() as runtime:
            await runtime.launch("summer")
            await runtime.activate("summer")
            await runtime.send("summer", ComputeRequest(values=[1, 2, 3]))
            reply = await runtime.receive("summer")

    A runtime belongs to the event loop it is first used on. It is not thread-safe: from
    another thread, hand coroutines to that loop with
    :func:`asyncio.run_coroutine_threadsafe` (see :attr:`loop`).

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
    """

    def __init__(
        self,
        device: str = "auto",
        *,
        dead_letter_capacity: int = 1024,
        unheard_topics: str = "ignore",
    ) -> None:
        from .backends.device import DEVICES, resolve_device

        if device not in DEVICES:
            raise PyDotComputeError(
                f"RingKernelRuntime(device={device!r}): expected one of 'auto', 'cuda', 'emulated'"
            )
        self._kernels: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._device = device
        self._target = resolve_device(device) if device == "cuda" else None
        self._dead = DeadLetterQueue(dead_letter_capacity)
        self._routing = Router(self._kernels, self._dead, unheard_topics)

    def __repr__(self) -> str:
        states = ", ".join(f"{k}={v.state.value}" for k, v in self._kernels.items())
        return f"<RingKernelRuntime kernels=[{states}]>"

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
        """Ids of the kernels launched in this runtime (terminated ones included)."""
        return tuple(self._kernels)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise PyDotComputeError(
                "this RingKernelRuntime runs on another event loop; use it from the loop it "
                "was first used on, or create one runtime per loop"
            )
        if self._closed:
            raise KernelStateError(
                "this RingKernelRuntime was shut down; create a new RingKernelRuntime()"
            )
        return loop

    # ---------------------------------------------------------------- lookups and errors
    def _kernel(self, kernel_id: str) -> Any:
        k = self._kernels.get(kernel_id)
        if k is None:
            raise self._missing(kernel_id)
        return k

    def _missing(self, kernel_id: str) -> PyDotComputeError:
        if kernel_id in _registry:
            return KernelStateError(
                f"ring kernel {kernel_id!r} is CREATED (registered, not launched); "
                f"call await runtime.launch({kernel_id!r}) first"
            )
        known = ", ".join(sorted(set(self._kernels) | set(_registry))) or "none"
        return KernelNotFoundError(
            f"no ring kernel {kernel_id!r} in this runtime (known: {known}); check the id or "
            "register it with @ring_kernel"
        )

    def _refused(self, kernel_id: str, k: Any) -> PyDotComputeError:
        if k is None:
            return self._missing(kernel_id)
        if k.state is KernelState.FAILED and k.error is not None:
            return KernelFailedError.caused_by(kernel_id, k.error, "The message was not queued.")
        return KernelStateError(
            f"cannot send to ring kernel {kernel_id!r}: it is {k.state.value}; sends are "
            "queued only while it is LAUNCHED, ACTIVE or DEACTIVATED"
        )

    def _wrong_type(self, k: Any, msg: Any) -> MessageTypeError:
        t = k.input_type
        return MessageTypeError(
            f"ring kernel {k.kernel_id!r} takes {t.__name__} messages, got a "
            f"{type(msg).__name__}; send a {t.__name__}"
        )

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
            The kernel is already launched and not terminated.
        """
        loop = self._bind_loop()
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
            return HostKernel(spec, loop)
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
        await self._kernel(kernel_id).activate()

    async def deactivate(self, kernel_id: str) -> None:
        """Park an active kernel; sends keep queueing and nothing is lost."""
        await self._kernel(kernel_id).deactivate()

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
        empty). Replies already in the outbox stay receivable.
        """
        return await self._kernel(kernel_id).terminate(timeout, drain)

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
        k = self._kernel(kernel_id)
        spec = None
        if func is not None:
            spec = spec_for(kernel_id, func, k.spec)
        result: LaunchResult = await k.relaunch(spec, timeout)
        self._routing.resume(k)
        return result

    async def shutdown(self, *, timeout: float | None = _DEFAULT_TERMINATE_TIMEOUT) -> None:
        """Terminate every kernel that is still alive (run by leaving ``async with``)."""
        if self._closed:
            return
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
        """
        k = self._kernels.get(kernel_id)
        if k is None or not k.accepting:
            raise self._refused(kernel_id, k)
        t = k.input_type
        if t is not None and type(msg) is not t and not isinstance(msg, t):
            raise self._wrong_type(k, msg)
        r = k.inbox.put_nowait(msg)
        if r is None:
            return await k.inbox.put_wait(msg, timeout)
        return r

    async def send_many(
        self, kernel_id: str, msgs: Iterable[Any], *, timeout: float | None = None
    ) -> int:
        """Send several messages in one call; returns how many were queued.

        All messages are type-checked before any is queued. Under ``block`` the call waits
        for space as needed (``timeout`` applies to each wait). ``msgs`` may also be a numpy
        structured array of the input type's fixed layout (``fixed_layout(In).dtype``): a
        device kernel copies it into its inbox ring in one copy per ring chunk.
        """
        k = self._kernels.get(kernel_id)
        if k is None or not k.accepting:
            raise self._refused(kernel_id, k)
        if isinstance(msgs, np.ndarray):
            if hasattr(k.inbox, "put_array"):
                return int(await k.inbox.put_array(msgs, timeout))
            msgs = _layout_for(k, k.input_type, "send_many").from_array(msgs)
        items = msgs if isinstance(msgs, list) else list(msgs)
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
        taken = inbox.put_many_nowait(items, priorities)
        while taken < len(items):
            if not k.accepting:
                raise self._refused(kernel_id, k)
            await inbox.put_wait(items[taken], timeout)
            taken += 1
            if taken < len(items):
                rest = items[taken:]
                taken += inbox.put_many_nowait(
                    rest, None if priorities is None else priorities[taken:]
                )
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
        k = self._kernels.get(kernel_id)
        if k is None:
            raise self._missing(kernel_id)
        ob = k.outbox
        msg = ob.pop_nowait()
        if msg is not EMPTY:
            return msg
        fut = ob.wait(
            timeout, None if timeout is None else self._receive_timeout(kernel_id, timeout)
        )
        try:
            return await fut
        except asyncio.CancelledError:
            ob.abandon(fut)
            raise

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
        if max_count is not None:
            check_max_count(max_count)
        k = self._kernel(kernel_id)
        ob = k.outbox
        if as_array:
            if not hasattr(ob, "pop_array"):
                layout = _layout_for(k, k.options.output_type, "receive_many(as_array=True)")
                got = await self.receive_many(kernel_id, max_count, timeout=timeout)
                return layout.to_array(got)
            if not len(ob):
                fut = ob.wait(timeout, self._receive_timeout(kernel_id, timeout))
                try:
                    ob.unget(await fut)  # put back in front: the array keeps the order
                except asyncio.CancelledError:
                    ob.abandon(fut)
                    raise
            return ob.pop_array(max_count or len(ob))
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
            No reply within ``timeout`` seconds (the send counts against it).
        KernelFailedError
            The kernel failed while handling the request.
        """
        k = self._kernel(kernel_id)
        try:
            mid = msg.message_id
        except AttributeError:
            raise MessageTypeError(
                f"call() needs a @message instance (with a message_id), got a "
                f"{type(msg).__name__}; use send() and receive() for other objects"
            ) from None
        if k.route is not None:
            return await self._call_linked(kernel_id, msg, timeout)
        ob = k.outbox
        fut = ob.expect(mid)
        try:
            async with asyncio.timeout(timeout):
                await self.send(kernel_id, msg)
                return await fut
        except OperationTimeoutError:
            raise
        except TimeoutError:
            raise OperationTimeoutError(
                f"no reply from ring kernel {kernel_id!r} to {type(msg).__name__} "
                f"{mid} within {timeout} s"
            ) from None
        finally:
            ob.forget(mid)

    # ---------------------------------------------------------------- state and telemetry
    def state(self, kernel_id: str) -> KernelState:
        """The lifecycle state of a kernel (``CREATED`` if registered but not launched)."""
        k = self._kernels.get(kernel_id)
        if k is not None:
            return k.state
        if kernel_id in _registry:
            return KernelState.CREATED
        raise self._missing(kernel_id)

    def options(self, kernel_id: str) -> KernelOptions:
        """The options a launched kernel runs with (queue sizes, message types, policies)."""
        return self._kernel(kernel_id).options

    def telemetry(self, kernel_id: str) -> KernelTelemetry:
        """A frozen telemetry snapshot of one kernel."""
        return self._routed(self._kernel(kernel_id).telemetry())

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
