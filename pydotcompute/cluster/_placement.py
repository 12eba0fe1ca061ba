"""Where a kernel runs on the cluster: ``launch(kernel_id, placement=...)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["Placement"]


@dataclass(frozen=True)
class Placement:
    """Where to run a kernel on a :class:`~pydotcompute.cluster.RayCluster`.

    Kernels with the same placement share one kernel host (one Ray actor process), so
    ``Placement(host="pipeline")`` keeps kernels together and their links in one process.
    Pass it as ``launch(kernel_id, placement=...)``; the shorthands are ``"driver"`` (in
    this process, no Ray call on the way), ``"node:<node id or IP>"``, ``"gpu"`` and
    ``"host:<name>"``. Without a placement, kernels are spread round-robin over the alive
    nodes, one host process per node.

    Attributes
    ----------
    node:
        A Ray node id (hex) or node IP address: the host is pinned to that node.
    gpu:
        Run on a host that holds one GPU (one host per GPU; device kernels use it).
    resources:
        Ray custom resources the host needs, e.g. ``{"accelerator_a100": 1}``.
    host:
        Name of the host: kernels with the same name run in the same process.
    group, bundle:
        A Ray placement group (``ray.util.placement_group(...)``, ``strategy="PACK"`` to keep
        kernels together, ``"SPREAD"`` / ``"STRICT_SPREAD"`` to spread them) and the bundle
        index of this kernel's host in it.
    """

    node: str | None = None
    gpu: bool = False
    resources: dict[str, float] = field(default_factory=dict)
    host: str | None = None
    group: Any = None
    bundle: int = 0
    driver: bool = False

    @classmethod
    def parse(cls, placement: Any) -> Placement | None:
        """A :class:`Placement` from what ``launch`` accepts (``None``: spread by default)."""
        if placement is None or isinstance(placement, Placement):
            return placement
        if isinstance(placement, str):
            kind, _, arg = placement.partition(":")
            if kind in ("driver", "local") and not arg:
                return cls(driver=True)
            if kind == "gpu" and not arg:
                return cls(gpu=True)
            if kind == "node" and arg:
                return cls(node=arg)
            if kind == "host" and arg:
                return cls(host=arg)
        if isinstance(placement, dict):
            try:
                return cls(**placement)
            except TypeError:
                pass
        raise InvalidArgumentError(
            f"launch(placement={placement!r}): expected 'driver', 'gpu', 'node:<node id or "
            "IP>', 'host:<name>', a Placement(...) or a dict of its fields "
            "(node, gpu, resources, host, group, bundle)"
        )

    def key(self, default_node: str | None) -> str:
        """The name of the host this placement maps to (one host per distinct key)."""
        if self.host is not None:
            return self.host
        if self.group is not None:
            return f"group-{self.group.id.hex()[:12]}-{self.bundle}"
        parts = [f"node-{(self.node or default_node or 'any')[:12]}"]
        if self.gpu:
            parts.append("gpu")
        parts.extend(f"{k}={v}" for k, v in sorted(self.resources.items()))
        return "-".join(parts)
