"""Placement on a multi-node Ray cluster on this machine (ray.cluster_utils.Cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from pydotcompute import RingKernelRuntime
from pydotcompute.cluster import Placement, RayCluster
from tests.cluster._kernels import Num, double, inc
from tests.conftest import within

ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install -e '.[ray]'")
pytestmark = pytest.mark.cluster
W = 30.0
SMALL: dict[str, Any] = {"object_store_memory": 100 * 1024 * 1024}


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[dict[str, str]]:
    """A head node and a second node with the custom resource ``side`` and one (declared)
    GPU; their node ids."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, **SMALL},
    )
    try:
        # A GPU as a Ray resource only (this machine may have none): enough for placement.
        cluster.add_node(num_cpus=1, num_gpus=1, resources={"side": 1}, **SMALL)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        nodes = {
            ("side" if "side" in n["Resources"] else "head"): n["NodeID"]
            for n in ray.nodes()
            if n["Alive"]
        }
        yield nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
async def rt(two_nodes: dict[str, str]) -> AsyncIterator[Any]:
    runtime = RingKernelRuntime(cluster=RayCluster())
    async with asyncio.timeout(60):
        async with runtime:
            yield runtime


async def launch(rt: Any, kid: str, func: Any, placement: Any = None) -> None:
    await within(rt.launch(kid, func=func, input_type=Num, output_type=Num,
                           placement=placement), W)  # fmt: skip
    await within(rt.activate(kid), W)


def node_of(rt: Any, kid: str) -> str:
    return str(rt.telemetry(kid).extra["placement"]["node_id"])


async def test_placement_on_a_named_node(rt: Any, two_nodes: dict[str, str]) -> None:
    await launch(rt, "on_side", inc, f"node:{two_nodes['side']}")
    await launch(rt, "on_head", inc, Placement(node=two_nodes["head"]))
    assert node_of(rt, "on_side") == two_nodes["side"]
    assert node_of(rt, "on_head") == two_nodes["head"]
    assert (await within(rt.call("on_side", Num(x=1), timeout=W), W)).x == 2
    rows = rt.snapshot().table()
    assert "on_side" in rows and rt.telemetry("on_side").extra["placement"]["node_ip"] in rows


async def test_placement_on_a_ray_resource(rt: Any, two_nodes: dict[str, str]) -> None:
    await launch(rt, "needs_side", inc, Placement(resources={"side": 1}))
    assert node_of(rt, "needs_side") == two_nodes["side"]


async def test_default_placement_spreads_over_the_nodes(rt: Any, two_nodes: dict[str, str]) -> None:
    await launch(rt, "one", inc)
    await launch(rt, "two", inc)
    assert {node_of(rt, "one"), node_of(rt, "two")} == set(two_nodes.values())


async def test_link_across_nodes(rt: Any, two_nodes: dict[str, str]) -> None:
    await launch(rt, "inc", inc, f"node:{two_nodes['head']}")
    await launch(rt, "double", double, f"node:{two_nodes['side']}")
    await within(rt.link("inc", "double"), W)
    await within(rt.send_many("inc", [Num(x=i) for i in range(50)]), W)
    got: list[Any] = []
    while len(got) < 50:
        got += await within(rt.receive_many("double", timeout=W), W)
    assert [m.x for m in got] == [(i + 1) * 2 for i in range(50)]


async def test_unknown_node_is_refused_with_the_alive_ones(rt: Any) -> None:
    from pydotcompute import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="no alive node has that id or IP"):
        await rt.launch("x", func=inc, placement="node:10.9.9.9")
    assert rt.kernels == ()


async def test_gpu_placement_gives_the_host_a_gpu_of_the_cluster(
    rt: Any, two_nodes: dict[str, str]
) -> None:
    await launch(rt, "on_gpu", inc, "gpu")
    place = rt.telemetry("on_gpu").extra["placement"]
    assert place["gpus"] == ["0"] and place["node_id"] == two_nodes["side"]
    assert place["host"].endswith("-gpu")
    assert (await within(rt.call("on_gpu", Num(x=1), timeout=W), W)).x == 2
    # A second GPU kernel cycles over the cluster's GPUs: one here, so the same host.
    await launch(rt, "also_gpu", inc, Placement(gpu=True))
    assert rt.telemetry("also_gpu").extra["placement"]["pid"] == place["pid"]
    assert "on_gpu" in rt.snapshot().table()


async def test_send_to_and_call_through_links_across_nodes(
    rt: Any, two_nodes: dict[str, str]
) -> None:
    from tests.cluster._kernels import Order, router

    await within(rt.launch("router", func=router, placement=f"node:{two_nodes['head']}"), W)
    await within(rt.activate("router"), W)
    await launch(rt, "inc", inc, f"node:{two_nodes['side']}")
    assert (await within(rt.call("router", Order(x=1, target="inc"), timeout=W), W)).x == 1
    assert (await within(rt.receive("inc", timeout=W), W)).x == 2
    await launch(rt, "double", double, f"node:{two_nodes['head']}")
    await within(rt.link("inc", "double"), W)
    assert (await within(rt.call("inc", Num(x=1), timeout=W), W)).x == 4
