"""Code written for the earlier port (pydotcompute 0.2.0 on PyPI) runs here unchanged.

The three examples under ``tests/oldport/`` are that project's own, copied unmodified (Apache
License 2.0, see ``tests/oldport/README.md``); each runs as a script against this checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pydotcompute import KernelContext, RingKernelRuntime, message
from tests.conftest import within

ROOT = Path(__file__).resolve().parents[1]
OLDPORT = ROOT / "tests" / "oldport"


def _run(script: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(OLDPORT / script)],
        capture_output=True, text=True, timeout=120, cwd=OLDPORT, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return [line.strip() for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("script", ["vector_add.py", "pagerank_actor.py", "streaming_pipeline.py"])
def test_the_fixtures_are_the_earlier_ports_files_unmodified(script: str) -> None:
    text = (OLDPORT / script).read_text()
    assert text.startswith('"""\n') and "from pydotcompute import RingKernelRuntime" in text
    assert "runtime.get_telemetry(" in text and "telemetry.messages_processed" in text


def test_vector_add_example_runs_unchanged() -> None:
    out = _run("vector_add.py")
    sums = ("1.0 + 2.0 = 3.0", "10.5 + 20.5 = 31.0", "-5.0 + 5.0 = 0.0", "100.0 + 200.0 = 300.0")
    for line in sums:
        assert f"Received: {line}" in out
    assert "Messages processed: 5" in out
    assert any(line.startswith("Throughput: ") and line.endswith(" msg/s") for line in out)
    assert "Example completed successfully!" in out


def test_pagerank_example_runs_unchanged() -> None:
    out = _run("pagerank_actor.py")
    assert "Converged: True" in out and "Requests processed: 2" in out
    ranks = [float(line.split(":")[1]) for line in out if line.startswith("Node ")]
    assert len(ranks) == 3 and abs(sum(ranks) - 1.0) < 1e-5
    assert "PageRank example completed!" in out


def test_streaming_pipeline_example_runs_unchanged() -> None:
    out = _run("streaming_pipeline.py")
    assert "50.0 -> normalized=0.500, score=0.250, class=low" in out
    assert "150.0 -> normalized=1.000, score=1.000, class=high" in out
    summary = [o for o in out if o.startswith(("high:", "low:", "medium:"))]
    assert summary == ["high: 3", "low: 5", "medium: 1"]
    assert "normalizer: 9 messages processed" in out and "scorer: 9 messages processed" in out


@message
class Ping:
    n: int


async def echo(ctx: KernelContext[Ping, Ping]) -> None:
    while not ctx.should_terminate:
        await ctx.send((await ctx.receive()).reply())


async def test_aliases_return_our_own_telemetry() -> None:
    async with RingKernelRuntime() as rt:
        await within(rt.launch("echo", func=echo))
        await within(rt.activate("echo"))
        for n in range(3):
            await within(rt.call("echo", Ping(n=n)))
        old = rt.get_telemetry("echo")
        assert type(old) is type(rt.telemetry("echo"))
        assert old.messages_processed == old.processed == 3
        assert "messages_processed" not in old.as_dict()  # plain data keeps our names only


def test_migration_page_lists_the_earlier_ports_api() -> None:
    page = (ROOT / "docs" / "migration.md").read_text()
    for name in ("get_telemetry", "messages_processed", "RingKernelMessage", "get_kernel_state",
                 "kernel_ids", "reactivate", "UnifiedBuffer.allocate()", "send_and_receive",
                 "RingKernelConfig", "auto_register", "gpu_kernel", "MemoryPool"):  # fmt: skip
        assert re.search(rf"`[^`]*\b{re.escape(name)}", page), name
