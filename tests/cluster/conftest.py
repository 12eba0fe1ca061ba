"""Ray for the cluster tests: started once per module, small, and always shut down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

# Two CPUs, a 100 MiB object store and no dashboard: the CI machine has two cores.
RAY_ARGS: dict[str, Any] = {
    "num_cpus": 2,
    "object_store_memory": 100 * 1024 * 1024,
    "include_dashboard": False,
    "log_to_driver": False,
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A single-node local Ray for one test module."""
    ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install -e '.[ray]'")
    ray.init(**RAY_ARGS)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
async def cluster_runtime(local_ray: None) -> AsyncIterator[Any]:
    """A cluster runtime on the module's Ray, shut down (hosts killed) after the test."""
    from pydotcompute import RingKernelRuntime
    from pydotcompute.cluster import RayCluster

    rt = RingKernelRuntime(cluster=RayCluster())
    async with asyncio.timeout(60):
        async with rt:
            yield rt
