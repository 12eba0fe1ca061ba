"""``ClusterRuntime``: the runtime verbs, routed to kernel hosts on a Ray cluster.

``RingKernelRuntime(cluster=RayCluster())`` makes one of these. Kernels placed ``"driver"``
run in this process through the plain runtime's code (one dict lookup more per verb);
every other kernel runs in a kernel host and each verb is one Ray call to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from typing import Any

from ..backends.host import LaunchResult, TerminateResult
from ..errors import (
    KernelFailedError,
    KernelStateError,
    MessageTypeError,
    OperationTimeoutError,
    PyDotComputeError,
)
from ..ring._checks import check_kernel_id, check_timeout
from ..ring._options import KernelOptions
from ..ring._spec import _registry, spec_for
from ..ring._state import KernelState
from ..runtime import RingKernelRuntime, _a
from ..telemetry import KernelTelemetry, RuntimeSnapshot
from ._cluster import SYNC_TIMEOUT, HostRef, RayCluster, _ray
from ._endpoint import EndpointClient
from ._links import LinkVerbs
from ._peers import ClusterRouter, Peers
from ._placement import Placement
from ._remote import RemoteKernel
from ._wire import Raised, Restarted, decode, decode_many, encode, encode_many, unwrap

__all__ = ["ClusterRuntime"]

# The plain runtime's hot verbs, called directly for kernels in this process.
_plain_send = RingKernelRuntime.send
_plain_send_many = RingKernelRuntime.send_many
_plain_receive = RingKernelRuntime.receive
_plain_receive_many = RingKernelRuntime.receive_many
_plain_call = RingKernelRuntime.call

_ENDED = ("TERMINATED",)


class ClusterRuntime(LinkVerbs):
    """A :class:`~pydotcompute.RingKernelRuntime` whose kernels run on a Ray cluster.

    Made by ``RingKernelRuntime(cluster=RayCluster(...))``; the verbs are the runtime's,
    plus ``placement=`` on :meth:`launch`. See the "Scaling out" guide.
    """

    _cluster: RayCluster

    def __init__(self, device: str = "auto", *, cluster: RayCluster, **kwargs: Any) -> None:
        super().__init__(device, cluster=cluster, **kwargs)
        self._remote: dict[str, RemoteKernel] = {}
        self._xlinks: dict[str, tuple[str, ...]] = {}
        # Bodies of kernels placed in this process reach kernels on hosts with send_to.
        unheard = "dead_letter" if self._routing.unheard_dead else "ignore"
        self._peers = Peers(cluster.name, None, self._dead)
        self._routing = ClusterRouter(self._kernels, self._dead, self._peers, unheard)
        # Hosts reach kernels and topic receivers in this process through its endpoint.
        self._endpoint = EndpointClient(self)
        self._watches: dict[str, asyncio.Task[None]] = {}

    @property
    def cluster(self) -> RayCluster:
        """The cluster this runtime's hosts run on."""
        return self._cluster

    @property
    def kernels(self) -> tuple[str, ...]:
        """Ids of the kernels launched in this runtime, in this process and on hosts."""
        return (*self._kernels, *self._remote)

    # ---------------------------------------------------------------- lookups
    def _rk(self, kernel_id: Any) -> RemoteKernel | None:
        """The remote kernel ``kernel_id``; asks the directory for ids not known here."""
        try:
            rk = self._remote.get(kernel_id)
        except TypeError:
            return None
        if rk is None and kernel_id not in self._kernels and isinstance(kernel_id, str):
            rk = self._from_directory(kernel_id)
        return rk

    def _from_directory(self, kernel_id: str) -> RemoteKernel | None:
        if self._closed:  # its Ray may be gone: never start one to look an id up
            return None
        ray = _ray()
        entry = ray.get(self._cluster.directory.get.remote(kernel_id), timeout=SYNC_TIMEOUT)
        if entry is None or entry[0].startswith("driver-"):  # none, or in another driver
            return None
        name, in_t, out_t = entry
        host = self._cluster.hosts.get(name)
        if host is None:
            handle = ray.get_actor(f"pydotcompute.host.{self._cluster.name}.{name}")
            host = HostRef(name, handle, None)
            host.where = ray.get(handle.where.remote(), timeout=SYNC_TIMEOUT)
            self._cluster.hosts[name] = host
        rk = RemoteKernel(kernel_id, host, None)
        rk.input_type, rk.output_type = in_t, out_t
        self._remote[kernel_id] = rk
        return rk

    def _missing(self, kernel_id: str, verb: str = "") -> PyDotComputeError:
        err = super()._missing(kernel_id, verb)
        if self._remote and "known:" in str(err):
            err.args = (str(err).replace("(known: ", f"(on hosts: {', '.join(self._remote)}; "),)
        return err

    async def _ask(self, rk: RemoteKernel, ref: Any) -> Any:
        """Await a host's answer; a dead host fails its kernels and the error is raised."""
        ray = _ray()
        try:
            res = await ref
        except ray.exceptions.RayActorError as exc:
            self._host_died(rk.host, exc)
            raise self._failure(rk) from None
        if type(res) is Restarted:
            self._host_died(rk.host, None)
            raise self._failure(rk)
        return unwrap(res)

    def _get_sync(self, rk: RemoteKernel, ref: Any) -> Any:
        ray = _ray()
        try:
            res = ray.get(ref, timeout=SYNC_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise OperationTimeoutError(
                f"kernel host {rk.host.name!r} of ring kernel {rk.kernel_id!r} did not answer "
                f"within {SYNC_TIMEOUT} s"
            ) from None
        except ray.exceptions.RayActorError as exc:
            self._host_died(rk.host, exc)
            raise self._failure(rk) from None
        if type(res) is Restarted:
            self._host_died(rk.host, None)
            raise self._failure(rk)
        return unwrap(res)

    def _failure(self, rk: RemoteKernel) -> PyDotComputeError:
        return rk.failure(f"{rk.lost} message(s) inside its host were lost (see dead_letters()).")

    def _alive(self, rk: RemoteKernel) -> None:
        if rk.failed:
            raise self._failure(rk)
        if self._closed:
            raise KernelStateError(
                f"ring kernel {rk.kernel_id!r} ended when this RingKernelRuntime was shut down "
                "(its kernel hosts were stopped); create a new "
                "RingKernelRuntime(cluster=RayCluster(...))"
            )

    # ---------------------------------------------------------------- lifecycle verbs
    async def launch(
        self, kernel_id: str, func: Any = None, *, placement: Any = None, **options: Any
    ) -> LaunchResult:
        """Launch a kernel on a kernel host chosen by ``placement`` (see :class:`Placement`).

        ``placement="driver"`` runs it in this process; without a placement kernels are
        spread over the alive nodes. Otherwise as :meth:`RingKernelRuntime.launch`.
        """
        p = Placement.parse(placement)
        if p is not None and p.driver:
            if kernel_id in self._remote:
                raise self._relaunch_error(kernel_id)
            launched = await super().launch(kernel_id, func, **options)
            # Bodies on hosts reach it with send_to and publish, through this endpoint.
            name, handle = self._endpoint.ensure()
            opts = self.options(kernel_id)
            directory = self._cluster.directory
            await directory.put.remote(kernel_id, name, opts.input_type, opts.output_type, handle)
            for topic in opts.subscribes_to:
                await directory.subscribe.remote(topic, kernel_id, name)
            return launched
        self._bind_loop()
        check_kernel_id(kernel_id, "launch")
        spec = spec_for(kernel_id, func, _registry.get(kernel_id)).with_options(**options)
        old = self._remote.get(kernel_id)
        local = self._kernels.get(kernel_id)
        if (old is not None and (old.failed or self.state(kernel_id).value not in _ENDED)) or (
            local is not None and local.state is not KernelState.TERMINATED
        ):
            raise self._relaunch_error(kernel_id)
        host = self._cluster.host_for(p)
        rk = RemoteKernel(kernel_id, host, spec)
        res = await self._ask(rk, host.handle.launch.remote(kernel_id, spec, {}))
        if not host.where:
            host.where = await host.handle.where.remote()
        self._watch(host)
        host.kernels.add(kernel_id)
        self._remote[kernel_id] = rk
        await self._cluster.directory.put.remote(
            kernel_id, host.name, rk.input_type, rk.output_type, host.handle
        )
        for topic in spec.options.subscribes_to:  # subscribed there by its launch
            await self._cluster.directory.subscribe.remote(topic, kernel_id, host.name)
        return res

    def _relaunch_error(self, kernel_id: str) -> KernelStateError:
        return KernelStateError(
            f"ring kernel {kernel_id!r} is already launched ({self.state(kernel_id).value}); "
            "terminate it first (and forget() it to launch it elsewhere)"
        )

    def activate(self, kernel_id: str) -> Coroutine[Any, Any, None]:
        """Let a launched (or deactivated) kernel take messages."""
        rk = self._rk(kernel_id)
        if rk is None:
            return RingKernelRuntime.activate(self, kernel_id)
        return self._activate(rk, True)

    def deactivate(self, kernel_id: str) -> Coroutine[Any, Any, None]:
        """Park an active kernel; sends keep queueing and nothing is lost."""
        rk = self._rk(kernel_id)
        if rk is None:
            return RingKernelRuntime.deactivate(self, kernel_id)
        return self._activate(rk, False)

    async def _activate(self, rk: RemoteKernel, on: bool) -> None:
        self._on_loop()
        self._alive(rk)
        verb = rk.host.handle.activate if on else rk.host.handle.deactivate
        await self._ask(rk, verb.remote(rk.kernel_id))
        rk.active = on

    def terminate(
        self, kernel_id: str, *, timeout: float | None = 5.0, drain: bool = False
    ) -> Coroutine[Any, Any, TerminateResult]:
        """Stop a kernel gracefully, then free its mailboxes (on its host, if remote)."""
        rk = self._rk(kernel_id)
        if rk is None:
            return RingKernelRuntime.terminate(self, kernel_id, timeout=timeout, drain=drain)
        return self._terminate(rk, timeout, drain)

    async def _terminate(
        self, rk: RemoteKernel, timeout: float | None, drain: bool
    ) -> TerminateResult:
        self._on_loop()
        timeout = check_timeout(timeout, "terminate")
        if rk.failed:
            return TerminateResult(rk.kernel_id, False, 0, 0.0)
        res = await self._ask(rk, rk.host.handle.terminate.remote(rk.kernel_id, timeout, drain))
        rk.active = False
        return res

    async def relaunch(
        self, kernel_id: str, func: Any = None, *, timeout: float | None = 5.0
    ) -> LaunchResult:
        """Replace a running kernel's body in place, on its host if it runs on one."""
        rk = self._rk(kernel_id)
        if rk is None:
            return await super().relaunch(kernel_id, func, timeout=timeout)
        self._on_loop()
        timeout = check_timeout(timeout, "relaunch")
        self._alive(rk)
        spec = None if func is None else spec_for(kernel_id, func, rk.spec)
        res: LaunchResult = await self._ask(
            rk, rk.host.handle.relaunch.remote(kernel_id, spec, timeout)
        )
        if spec is not None:
            rk.spec = spec
        return res

    def options(self, kernel_id: str) -> KernelOptions:
        """The options a kernel runs with (asked of its host when it runs on one)."""
        rk = self._rk(kernel_id)
        if rk is None:
            return super().options(kernel_id)
        if rk.spec is not None:
            return rk.spec.options
        opts: KernelOptions = self._get_sync(rk, rk.host.handle.options.remote(kernel_id))
        return opts

    async def read_state(self, kernel_id: str) -> Any:
        """A device kernel's ``State`` (from its host when it runs on one)."""
        rk = self._rk(kernel_id)
        if rk is None:
            return await super().read_state(kernel_id)
        self._alive(rk)
        return await self._ask(rk, rk.host.handle.read_state.remote(kernel_id))

    async def write_state(self, kernel_id: str, value: Any) -> None:
        """Set a parked device kernel's ``State`` (on its host when it runs on one)."""
        rk = self._rk(kernel_id)
        if rk is None:
            return await super().write_state(kernel_id, value)
        self._alive(rk)
        await self._ask(rk, rk.host.handle.write_state.remote(kernel_id, value))
        return None

    async def checkpoint(self, kernel_id: str) -> Any:
        """Save a device kernel's ``State`` in this process, to restore after a host dies.

        The record (a copy of the state, as :meth:`read_state` gives it) is kept here, not
        in the host. When the kernel's host dies, a kernel with a checkpoint is launched again
        (up to its ``max_restarts``; device kernels take no ``restart`` policy, since a device
        fault may poison the context, but a dead host is no device fault) and starts from the
        last checkpoint instead of a zero state. Call it as often as the state is worth
        keeping (each call is one Ray call and a short park).

        Raises
        ------
        KernelStateError
            The kernel runs in this process (``placement="driver"``: nothing to survive), is
            a host kernel, or a device kernel without state.
        """
        rk = self._rk(kernel_id)
        if rk is None:
            check_kernel_id(kernel_id, "checkpoint")
            self._kernel(kernel_id, "checkpoint")  # an unknown id: its own error
            raise KernelStateError(
                f"checkpoint({kernel_id!r}): the kernel runs in this process, so no host can "
                "die under it; checkpoints are for kernels on kernel hosts"
            )
        record = await self.read_state(kernel_id)
        rk.checkpoint = record
        return record

    async def shutdown(self, *, timeout: float | None = 5.0) -> None:
        """Terminate every kernel, here and on the hosts, then stop the hosts."""
        timeout = check_timeout(timeout, "shutdown")
        if self._closed:
            return
        ray = _ray()
        for task in self._watches.values():
            task.cancel()
        self._watches.clear()
        hosts = list(self._cluster.hosts.values())
        results = await asyncio.gather(
            *(h.handle.shutdown.remote(timeout) for h in hosts), return_exceptions=True
        )
        try:
            self.snapshot()  # the kernels' last telemetry, kept for after the hosts stop
            await super().shutdown(timeout=timeout)
        finally:
            self._endpoint.close()
            self._cluster.shutdown()
        errors = [
            r.error()
            for r in results
            if type(r) is Raised and not isinstance(r, ray.exceptions.RayActorError)
        ]
        if errors:
            raise errors[0]

    def forget(self, kernel_id: str) -> None:
        """Drop a kernel that has ended, here or on its host."""
        rk = self._rk(kernel_id)
        if rk is None:
            RingKernelRuntime.forget(self, kernel_id)
            if self._endpoint.name is not None and not self._closed:  # hosts reached it
                self._cluster.directory.remove.remote(kernel_id)
            return None
        if not rk.failed:
            self._get_sync(rk, rk.host.handle.forget.remote(kernel_id))
        del self._remote[kernel_id]
        rk.host.kernels.discard(kernel_id)
        self._cluster.directory.remove.remote(kernel_id)
        return None

    # ---------------------------------------------------------------- messaging verbs
    def send(
        self, kernel_id: str, msg: Any, *, timeout: float | None = None
    ) -> Coroutine[Any, Any, bool]:
        """Send a message to a kernel's inbox (over Ray, encoded, when it runs on a host)."""
        try:  # a kernel in this process: straight to the runtime's own verb
            if kernel_id in self._kernels:
                return _plain_send(self, kernel_id, msg, timeout=timeout)
        except TypeError:  # unhashable: refused there with the reason
            return _plain_send(self, kernel_id, msg, timeout=timeout)
        if (rk := self._rk(kernel_id)) is None:
            return _plain_send(self, kernel_id, msg, timeout=timeout)
        return self._send(rk, msg, timeout)

    def _check_type(self, rk: RemoteKernel, msg: Any) -> None:
        t = rk.input_type
        if t is not None and not isinstance(msg, t):
            raise MessageTypeError(
                f"ring kernel {rk.kernel_id!r} takes {t.__name__} messages, got "
                f"{_a(type(msg).__name__)}; send {_a(t.__name__)}"
            )

    def _typed(self, rk: RemoteKernel, msg: Any) -> bytes:
        self._check_type(rk, msg)
        return encode(msg)

    async def _send(self, rk: RemoteKernel, msg: Any, timeout: float | None) -> bool:
        self._on_loop()
        timeout = check_timeout(timeout, "send")
        self._alive(rk)
        data = self._typed(rk, msg)
        ok = bool(await self._ask(rk, rk.host.handle.send.remote(rk.kernel_id, data, timeout)))
        rk.sent += ok
        return ok

    def send_many(
        self, kernel_id: str, msgs: Any, *, timeout: float | None = None
    ) -> Coroutine[Any, Any, int]:
        """Send many messages in one go: to a host, one Ray call carries the whole batch."""
        try:  # a kernel in this process: straight to the runtime's own verb
            if kernel_id in self._kernels:
                return _plain_send_many(self, kernel_id, msgs, timeout=timeout)
        except TypeError:  # unhashable: refused there with the reason
            return _plain_send_many(self, kernel_id, msgs, timeout=timeout)
        if (rk := self._rk(kernel_id)) is None:
            return _plain_send_many(self, kernel_id, msgs, timeout=timeout)
        return self._send_many(rk, msgs, timeout)

    async def _send_many(self, rk: RemoteKernel, msgs: Any, timeout: float | None) -> int:
        self._on_loop()
        timeout = check_timeout(timeout, "send_many")
        self._alive(rk)
        t = rk.input_type
        if not hasattr(msgs, "dtype"):
            msgs = list(msgs)
            if t is not None:
                for m in msgs:
                    if type(m) is not t:
                        self._check_type(rk, m)
        batch = encode_many(msgs, t)
        n = int(await self._ask(rk, rk.host.handle.send_many.remote(rk.kernel_id, batch, timeout)))
        rk.sent += n
        return n

    def receive(self, kernel_id: str, *, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """Take the next reply from a kernel's outbox (from its host, decoded here)."""
        try:  # a kernel in this process: straight to the runtime's own verb
            if kernel_id in self._kernels:
                return _plain_receive(self, kernel_id, timeout=timeout)
        except TypeError:  # unhashable: refused there with the reason
            return _plain_receive(self, kernel_id, timeout=timeout)
        if (rk := self._rk(kernel_id)) is None:
            return _plain_receive(self, kernel_id, timeout=timeout)
        return self._receive(rk, timeout)

    async def _receive(self, rk: RemoteKernel, timeout: float | None) -> Any:
        self._on_loop()
        timeout = check_timeout(timeout, "receive")
        self._alive(rk)
        data, progress = await self._ask(rk, rk.host.handle.receive.remote(rk.kernel_id, timeout))
        rk.progress(progress)
        return decode(data, rk.output_type)

    def receive_many(
        self,
        kernel_id: str,
        max_count: int | None = None,
        *,
        timeout: float | None = None,
        as_array: bool = False,
    ) -> Coroutine[Any, Any, Any]:
        """Take up to ``max_count`` replies (one Ray call for a host's batch)."""
        try:  # a kernel in this process: straight to the runtime's own verb
            here = kernel_id in self._kernels
        except TypeError:  # unhashable: refused there with the reason
            here = True
        if here or (rk := self._rk(kernel_id)) is None:
            return _plain_receive_many(
                self, kernel_id, max_count, timeout=timeout, as_array=as_array
            )
        return self._receive_many(rk, max_count, timeout, as_array)

    async def _receive_many(
        self, rk: RemoteKernel, max_count: int | None, timeout: float | None, as_array: bool
    ) -> Any:
        self._on_loop()
        timeout = check_timeout(timeout, "receive_many")
        self._alive(rk)
        ref = rk.host.handle.receive_many.remote(rk.kernel_id, max_count, timeout, as_array)
        batch, progress = await self._ask(rk, ref)
        rk.progress(progress)
        return decode_many(batch, rk.output_type)

    def call(
        self, kernel_id: str, msg: Any, *, timeout: float | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Send ``msg`` and wait for its reply (one Ray call to the kernel's host)."""
        try:  # a kernel in this process: straight to the runtime's own verb
            if kernel_id in self._kernels:
                return _plain_call(self, kernel_id, msg, timeout=timeout)
        except TypeError:  # unhashable: refused there with the reason
            return _plain_call(self, kernel_id, msg, timeout=timeout)
        if (rk := self._rk(kernel_id)) is None:
            return _plain_call(self, kernel_id, msg, timeout=timeout)
        return self._call(rk, msg, timeout)

    async def _call(self, rk: RemoteKernel, msg: Any, timeout: float | None) -> Any:
        self._on_loop()
        timeout = check_timeout(timeout, "call")
        self._alive(rk)
        data = self._typed(rk, msg)
        rk.sent += 1
        reply, progress = await self._ask(
            rk, rk.host.handle.call.remote(rk.kernel_id, data, timeout)
        )
        rk.progress(progress)
        # Through links, the reply is the last kernel's: its own type, found by its tag.
        return decode(reply, None if self._xlinks.get(rk.kernel_id) else rk.output_type)

    # ---------------------------------------------------------------- state and telemetry
    def state(self, kernel_id: str) -> KernelState:
        """The lifecycle state of a kernel, asked of its host when it runs on one."""
        rk = self._rk(kernel_id)
        if rk is None:
            return super().state(kernel_id)
        if self._closed:
            return KernelState.FAILED if rk.failed else KernelState.TERMINATED
        if not rk.failed:
            try:
                state: KernelState = self._get_sync(rk, rk.host.handle.state.remote(kernel_id))
                return state
            except KernelFailedError:
                if not rk.failed:  # the host is alive: its kernel failed, say why
                    raise
        return KernelState.FAILED

    def telemetry(self, kernel_id: str) -> KernelTelemetry:
        """A frozen telemetry snapshot of one kernel; ``extra["placement"]`` says where."""
        rk = self._rk(kernel_id)
        if rk is None:
            return super().telemetry(kernel_id)
        if self._closed and not rk.failed and rk.last is not None:
            return self._placed(rk, rk.last)
        if not rk.failed:
            try:
                t, progress = self._get_sync(rk, rk.host.handle.telemetry.remote(kernel_id))
            except KernelFailedError:
                if not rk.failed:
                    raise
            else:
                rk.progress(progress)
                rk.last = t
                return self._placed(rk, t)
        return self._placed(rk, rk.telemetry_when_failed())

    def _placed(self, rk: RemoteKernel, t: KernelTelemetry) -> KernelTelemetry:
        return dataclasses.replace(
            t,
            device=f"{rk.host.where.get('node_ip')}/{t.device}",
            restarts=t.restarts + rk.restarts,
            dead_letters=t.dead_letters + rk.lost,
            outputs_to=(*t.outputs_to, *self._xlinks.get(rk.kernel_id, ())),
            extra={**t.extra, "placement": rk.placed(), "lost": rk.lost},
        )

    def snapshot(self) -> RuntimeSnapshot:
        """Every kernel's telemetry (hosts asked once each); each says where it runs."""
        ray = _ray()
        snap = super().snapshot()
        kernels = dict(snap.kernels)
        dead = snap.dead_letters
        hosts = list(self._cluster.hosts.values())
        refs = [h.handle.snapshot.remote() for h in hosts]
        for host, ref in zip(hosts, refs, strict=True):
            try:
                got = ray.get(ref, timeout=SYNC_TIMEOUT)
            except ray.exceptions.RayActorError as exc:
                self._host_died(host, exc)
                continue
            dead += got["dead_letters"]
            for kid, t in got["kernels"].items():
                rk = self._remote.get(kid)
                if rk is not None and rk.host is host and not rk.failed:
                    rk.last = t
                    kernels[kid] = self._placed(rk, t)
        for kid, rk in self._remote.items():
            if rk.failed:
                kernels[kid] = self._placed(rk, rk.telemetry_when_failed())
            elif self._closed and rk.last is not None:  # as the hosts last reported
                kernels[kid] = self._placed(rk, rk.last)
        return dataclasses.replace(
            snap,
            kernels=kernels,
            dead_letters=dead,
            topics={t: list(s) for t, s in self.topics().items()},
        )
