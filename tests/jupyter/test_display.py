"""In a real Jupyter kernel, a cell evaluating the runtime, a snapshot or a message shows HTML."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ._kernel import CELL_TIMEOUT, Kernel

SETUP = """\
%load_ext pydotcompute
from pydotcompute import message

@message
class Req:
    values: list[float]

@message
class Resp:
    result: float
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    try:
        k.run(SETUP).expect_ok()
        k.run(
            "%%ring_kernel adder --in Req --out Resp\n"
            "while not ctx.should_terminate:\n"
            "    r = await ctx.receive()\n"
            "    await ctx.send(Resp(result=sum(r.values)))\n"
        ).expect_ok()
        yield k
    finally:
        k.shutdown()


def _result(kernel: Kernel, code: str) -> dict[str, Any]:
    """The MIME bundle of a cell's execute_result."""
    msg_id = kernel.submit(code)
    deadline = time.monotonic() + CELL_TIMEOUT
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            msg = kernel.client.get_iopub_msg(timeout=deadline - time.monotonic())
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            pytest.fail(f"cell failed: {msg['content']['evalue']}")
        if msg["msg_type"] == "execute_result":
            data = msg["content"]["data"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return data
    raise TimeoutError(f"cell did not finish within {CELL_TIMEOUT} s")


def test_the_runtime_shows_a_kernel_table(kernel: Kernel) -> None:
    shown = _result(kernel, "runtime")
    assert shown["text/plain"] == "<RingKernelRuntime device='auto': 1 kernel (adder ACTIVE)>"
    html = shown["text/html"]
    assert html.startswith('<div class="pdc-repr">') and "<code>adder</code>" in html
    assert "<th>msg/s</th>" in html and "ACTIVE</span>" in html


def test_a_snapshot_and_telemetry_show_tables(kernel: Kernel) -> None:
    snapshot = _result(kernel, "runtime.snapshot()")
    assert "<strong>RuntimeSnapshot</strong>" in snapshot["text/html"]
    assert snapshot["text/plain"].splitlines()[1].split()[:3] == ["kernel", "where", "state"]
    telemetry = _result(kernel, "runtime.telemetry('adder')")
    assert "<strong>KernelTelemetry</strong>" in telemetry["text/html"]
    assert telemetry["text/plain"].startswith("<KernelTelemetry 'adder' host:cpu ACTIVE:")


def test_a_reply_shows_its_short_ids_and_fields(kernel: Kernel) -> None:
    shown = _result(kernel, "%ring call adder Req(values=[1, 2]) --timeout 10")
    assert shown["text/plain"].startswith("Resp(result=3.0, message_id=UUID(")
    html = shown["text/html"]
    assert "<strong>Resp</strong>" in html and " · reply to <code>" in html
    assert "<code>result</code>" in html and "<code>3.0</code>" in html
