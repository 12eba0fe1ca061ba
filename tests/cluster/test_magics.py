"""The magics drive a cluster runtime: %%ring_kernel launches on a host, %ring lists its node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pydotcompute import RingKernelRuntime

pytest.importorskip("IPython")
pytestmark = pytest.mark.cluster


@pytest.fixture
def shell(local_ray: None) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.user_ns.pop("runtime", None)
    yield ip
    if "pydotcompute" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "pydotcompute")  # shuts the cluster runtime down
    ip.user_ns.pop("runtime", None)


def run(ip: Any, code: str) -> Any:
    result = ip.run_cell(code)
    result.raise_error()
    return result.result


def test_ring_lists_kernels_on_hosts_with_their_node(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydotcompute.cluster import RayCluster
    from pydotcompute.jupyter import use_runtime

    shell.run_line_magic("load_ext", "pydotcompute")
    rt = use_runtime(RingKernelRuntime(cluster=RayCluster()))
    run(shell, "from tests.cluster._kernels import Num")
    run(
        shell,
        "%%ring_kernel plus --in Num --out Num\nwhile not ctx.should_terminate:\n"
        "    m = await ctx.receive()\n    await ctx.send(Num(x=m.x + 1))\n",
    )
    assert rt.kernels == ("plus",)
    assert run(shell, "%ring call plus Num(x=41) --timeout 30").x == 42
    capsys.readouterr()
    run(shell, "%ring status")
    listed = capsys.readouterr().out
    where = rt.telemetry("plus").extra["placement"]
    assert "plus" in listed and where["node_ip"] in listed
