"""Scale out on Ray: the same ``RingKernelRuntime`` verbs, kernels in kernel-host actors.

``RingKernelRuntime(cluster=RayCluster())`` runs each ring kernel in a *kernel host*, a Ray
actor process hosting a local runtime (one per node by default, one per GPU with
``placement="gpu"``). Ray is imported when a :class:`RayCluster` is made, never by
``import pydotcompute``. Install it with ``pip install -e ".[ray]"`` in a checkout.
"""

from ._cluster import RayCluster
from ._placement import Placement
from ._runtime import ClusterRuntime

__all__ = ["ClusterRuntime", "Placement", "RayCluster"]
