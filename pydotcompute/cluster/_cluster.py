"""``RayCluster``: where a cluster runtime's kernel hosts run (a local or remote Ray cluster)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailableError, InvalidArgumentError
from ._placement import Placement
from ._wire import make_message_classes_picklable

if TYPE_CHECKING:
    from ..runtime import RingKernelRuntime

__all__ = ["SYNC_TIMEOUT", "HostRef", "RayCluster"]

SYNC_TIMEOUT = 30.0  # seconds a synchronous verb (state, telemetry) waits for a host


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        from .._install import extra_hint

        raise BackendUnavailableError(
            f"pydotcompute.cluster needs Ray, which is not installed: {extra_hint('ray')}"
        ) from None
    return ray


@dataclass
class HostRef:
    """A kernel host as the driver knows it: its Ray actor, where it runs, its kernels."""

    name: str
    handle: Any
    placement: Placement | None
    where: dict[str, Any] = field(default_factory=dict)
    kernels: set[str] = field(default_factory=set)
    watch: Any = None


class RayCluster:
    """Run ring kernels on a Ray cluster: ``RingKernelRuntime(cluster=RayCluster())``.

    Parameters
    ----------
    address:
        ``None`` starts a local Ray. A process already connected to Ray (``ray.init``
        called before) keeps that connection, whatever the address;
        ``"auto"`` connects to the cluster of this machine (``ray start --head``);
        ``"ray://host:10001"`` connects through Ray Client.
    name:
        Runtimes on clusters of the same name share the kernel directory (and so reach each
        other's kernels).
    device:
        Passed to each kernel host's runtime (``"auto"``, ``"cuda"``, ``"emulated"``).
    max_restarts:
        How many times Ray restarts a kernel host process that died (``-1``: without limit).
        Kernels launched with ``restart="on_failure"`` or ``"always"`` are relaunched on it.
    **kwargs:
        Passed to ``ray.init`` (``num_cpus``, ``object_store_memory``, ``runtime_env``, ...).

    Raises
    ------
    BackendUnavailableError
        Ray is not installed.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        name: str = "default",
        device: str = "auto",
        max_restarts: int = -1,
        **kwargs: Any,
    ) -> None:
        if type(max_restarts) is not int or max_restarts < -1:
            raise InvalidArgumentError(
                f"RayCluster(max_restarts={max_restarts!r}): expected an int >= -1 (-1: restart "
                "kernel hosts without limit, 0: never)"
            )
        ray = _ray()
        make_message_classes_picklable()
        self.address = address
        self.name = name
        self.device = device
        self.max_restarts = max_restarts
        self.kwargs = kwargs
        self._started = False
        if not ray.is_initialized():
            kwargs.setdefault("namespace", "pydotcompute")
            ray.init(address=address, **kwargs)
            self._started = address is None
        self.hosts: dict[str, HostRef] = {}
        self._spread = itertools.count()
        self._gpus = itertools.count()
        self._directory: Any = None

    def __repr__(self) -> str:
        return f"RayCluster(address={self.address!r}, name={self.name!r}, hosts={len(self.hosts)})"

    def runtime_class(self) -> type[RingKernelRuntime]:
        """The runtime class that routes verbs to this cluster (``ClusterRuntime``)."""
        from ._runtime import ClusterRuntime

        return ClusterRuntime

    def nodes(self) -> list[dict[str, Any]]:
        """The alive nodes of the cluster (``NodeID``, ``NodeManagerAddress``, ``Resources``)."""
        return [n for n in _ray().nodes() if n.get("Alive")]

    @property
    def directory(self) -> Any:
        """The directory actor (named ``pydotcompute.directory.<name>``), made on first use."""
        if self._directory is None:
            from ._directory import Directory

            ray = _ray()
            self._directory = (
                ray.remote(Directory)
                .options(name=f"pydotcompute.directory.{self.name}", get_if_exists=True)
                .remote()
            )
        return self._directory

    def host_for(self, placement: Placement | None) -> HostRef:
        """The kernel host for ``placement``, started if it does not run yet."""
        default_node = None
        if placement is None or (placement.node is None and placement.host is None):
            if placement is None or (placement.group is None and not placement.resources):
                nodes = sorted(n["NodeID"] for n in self.nodes())
                if placement is not None and placement.gpu:
                    gpus = int(_ray().cluster_resources().get("GPU", 0)) or 1
                    default_node = f"gpu{next(self._gpus) % gpus}"
                elif nodes:
                    default_node = nodes[next(self._spread) % len(nodes)]
        elif placement.node is not None:
            default_node = self._node_id(placement.node)
        key = (placement or Placement()).key(default_node)
        host = self.hosts.get(key)
        if host is None:
            host = self._start_host(key, placement, default_node)
            self.hosts[key] = host
        return host

    def _node_id(self, node: str) -> str:
        for n in self.nodes():
            if node in (n["NodeID"], n["NodeManagerAddress"]):
                return str(n["NodeID"])
        known = ", ".join(f"{n['NodeID'][:12]}… ({n['NodeManagerAddress']})" for n in self.nodes())
        raise InvalidArgumentError(
            f"launch(placement=node {node!r}): no alive node has that id or IP (alive: "
            f"{known or 'none'}); pass a node id from cluster.nodes()"
        )

    def _start_host(self, key: str, placement: Placement | None, node: str | None) -> HostRef:
        from ray.util.scheduling_strategies import (
            NodeAffinitySchedulingStrategy,
            PlacementGroupSchedulingStrategy,
        )

        from ._host import KernelHost

        ray = _ray()
        opts: dict[str, Any] = {
            "name": f"pydotcompute.host.{self.name}.{key}",
            "get_if_exists": True,
            "max_restarts": self.max_restarts,
            "max_concurrency": 1000,
            "num_cpus": 0,
        }
        p = placement or Placement()
        if p.gpu:
            opts["num_gpus"] = 1
        if p.resources:
            opts["resources"] = dict(p.resources)
        if p.group is not None:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=p.group, placement_group_bundle_index=p.bundle
            )
        elif node is not None and not p.gpu:
            # A host whose node is lost cannot come back there: the runtime relaunches its
            # restartable kernels on another host.
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        handle = ray.remote(KernelHost).options(**opts).remote(key, self.device, self.name)
        return HostRef(key, handle, placement)

    def shutdown(self) -> None:
        """Stop the kernel hosts and the directory; stop Ray if this object started it."""
        ray = _ray()
        for host in self.hosts.values():
            ray.kill(host.handle, no_restart=True)
        self.hosts.clear()
        if self._directory is not None:
            ray.kill(self._directory, no_restart=True)
            self._directory = None
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False
