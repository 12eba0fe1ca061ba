"""What the cluster runtime does when a kernel host dies: fail, count, restart, watch."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..ring._dead_letters import DeadLetterReason
from ..ring._options import RestartPolicy
from ..runtime import RingKernelRuntime
from ._cluster import SYNC_TIMEOUT, HostRef, RayCluster, _ray
from ._remote import RemoteKernel
from ._wire import unwrap

__all__ = ["HostFailures"]


class HostFailures(RingKernelRuntime):
    """Failure handling of :class:`~pydotcompute.cluster.ClusterRuntime` (a base of it)."""

    _cluster: RayCluster
    _remote: dict[str, RemoteKernel]
    _xlinks: dict[str, tuple[str, ...]]
    _watches: dict[str, asyncio.Task[None]]

    if TYPE_CHECKING:  # provided by the links verbs

        async def _link_remote(self, rk: RemoteKernel, target: str) -> None: ...

    def _host_died(self, host: HostRef, exc: BaseException | None) -> None:
        """Fail the host's kernels, count what was inside it, restart per their policy.

        ``exc`` is Ray's error about the dead actor (``None`` when the host answered from
        its restarted process): it becomes the cause of the kernels' error.
        """
        cause = RuntimeError(
            f"kernel host {host.name!r} (node {host.where.get('node_ip')}, pid "
            f"{host.where.get('pid')}) died"
            + (f": {type(exc).__name__}" if exc is not None else "; Ray restarted it empty")
        )
        cause.__cause__ = exc
        for kid in sorted(host.kernels):
            rk = self._remote.get(kid)
            if rk is None or rk.failed or rk.host is not host:
                continue
            rk.failed = True
            rk.error = cause
            lost = rk.inside()
            rk.lost += lost
            for _ in range(lost):
                self._dead.add(None, DeadLetterReason.FAILED, kid)
            policy = rk.spec.options.restart if rk.spec is not None else RestartPolicy.NEVER
            limit = rk.spec.options.max_restarts if rk.spec is not None else 0
            # A checkpoint asks for the kernel back too: device kernels take no restart
            # policy (a device fault may poison its context), but a dead host is no fault.
            wanted = policy is not RestartPolicy.NEVER or rk.checkpoint is not None
            if wanted and rk.restarts < limit and not self._closed:
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    loop.create_task(self._restart(rk))

    async def _restart(self, rk: RemoteKernel) -> None:
        """Relaunch a kernel of a dead host on its restarted host (or another live one)."""
        ray = _ray()
        host = rk.host
        try:
            host.where = await asyncio.wait_for(host.handle.where.remote(), SYNC_TIMEOUT)
        except (ray.exceptions.RayActorError, TimeoutError):
            self._cluster.hosts.pop(host.name, None)
            host = self._cluster.host_for(None)
            host.where = await host.handle.where.remote()
        assert rk.spec is not None
        unwrap(await host.handle.launch.remote(rk.kernel_id, rk.spec, {}))
        if rk.checkpoint is not None:  # parked after launch: its State can be set
            unwrap(await host.handle.write_state.remote(rk.kernel_id, rk.checkpoint))
        if rk.active:
            unwrap(await host.handle.activate.remote(rk.kernel_id))
        rk.host.kernels.discard(rk.kernel_id)
        host.kernels.add(rk.kernel_id)
        rk.host = host
        directory = self._cluster.directory
        # Its subscriptions died with the host: subscribe it there again, then say where.
        for topic, subs in (await directory.table.remote()).items():
            if any(kid == rk.kernel_id for kid, _, _ in subs):
                unwrap(await host.handle.subscribe.remote(rk.kernel_id, topic))
        await directory.put.remote(
            rk.kernel_id, host.name, rk.input_type, rk.output_type, host.handle
        )
        rk.sent = rk.processed = rk.outbox = 0
        rk.restarts += 1
        rk.failed = False
        self._watch(host)
        for target in self._xlinks.get(rk.kernel_id, ()):
            await self._link_remote(rk, target)

    def _watch(self, host: HostRef) -> None:
        """Keep one call pending on ``host``: its failure says the host died, at once."""
        task = self._watches.get(host.name)
        if task is not None and not task.done():
            return
        loop = self._bind_loop()
        self._watches[host.name] = loop.create_task(self._watching(host))

    async def _watching(self, host: HostRef) -> None:
        ray = _ray()
        try:
            await host.handle.watch.remote()
        except ray.exceptions.RayActorError as exc:
            self._host_died(host, exc)
