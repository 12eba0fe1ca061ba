"""The directory: a named Ray actor mapping kernel ids to the hosts that run them.

Every runtime on the same :class:`~pydotcompute.cluster.RayCluster` name shares it, so a
second driver (another notebook, a service) reaches kernels the first one launched; each
runtime caches what it looked up.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Directory"]


class Directory:
    """Kernel id -> (host name, input type, output type) (wrapped by ``ray.remote``)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, Any, Any]] = {}

    def put(self, kernel_id: str, host: str, input_type: Any, output_type: Any) -> None:
        """Record that ``kernel_id`` runs on ``host``."""
        self.entries[kernel_id] = (host, input_type, output_type)

    def remove(self, kernel_id: str) -> None:
        """Forget ``kernel_id``."""
        self.entries.pop(kernel_id, None)

    def get(self, kernel_id: str) -> tuple[str, Any, Any] | None:
        """Where ``kernel_id`` runs, or ``None``."""
        return self.entries.get(kernel_id)

    def ids(self) -> list[str]:
        """Every kernel id in the directory."""
        return list(self.entries)
