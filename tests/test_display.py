"""How runtimes, snapshots, telemetry and messages show themselves in notebooks and terminals."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pydotcompute import (
    KernelContext,
    KernelFailedError,
    KernelTelemetry,
    RingKernelRuntime,
    RuntimeSnapshot,
    message,
)
from tests.conftest import within

EVIL = "<script>alert('x')</script> & more"


@message
class Req:
    name: str
    values: list[float]


@message
class Samples:
    data: np.ndarray


async def echo_or_fail(ctx: KernelContext[Req, Req]) -> None:
    while not ctx.should_terminate:
        req = await ctx.receive()
        if req.name == "boom":
            raise ValueError(EVIL)
        await ctx.send(req.reply(name=req.name.upper()))


def _text(html_: str) -> str:
    """The visible text of an HTML fragment (tags and the style block removed)."""
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", html_))
    return " ".join(text.split())


def _no_raw_markup(html_: str) -> None:
    assert "<script>" not in html_ and "alert('x')" not in html_
    assert "&lt;script&gt;" in html_


async def _failed_runtime(rt: RingKernelRuntime) -> Req:
    await within(rt.launch(EVIL, func=echo_or_fail))
    await within(rt.activate(EVIL))
    reply = await within(rt.call(EVIL, Req(name="ok", values=[1, 2])))
    await within(rt.send(EVIL, Req(name="boom", values=[])))
    with pytest.raises(KernelFailedError):
        await within(rt.receive(EVIL))
    return reply


async def test_runtime_shows_a_kernel_table_in_a_notebook(runtime: RingKernelRuntime) -> None:
    await _failed_runtime(runtime)
    shown = runtime._repr_html_()
    _no_raw_markup(shown)
    text = _text(shown)
    for column in ("kernel", "where", "state", "inbox", "outbox", "processed", "msg/s",
                   "p50 µs", "p99 µs", "errors", "restarts"):  # fmt: skip
        assert column in text
    assert "RingKernelRuntime" in text and "1 kernel" in text and "FAILED" in text
    assert "host:cpu" in text and "0/1024" in text
    # the last error is a tooltip on the errors cell, escaped like everything else
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more"
    assert f'title="ValueError: {escaped}"' in shown


async def test_runtime_repr_is_one_line_with_device_and_states(
    runtime: RingKernelRuntime,
) -> None:
    assert repr(runtime) == "<RingKernelRuntime device='auto': 0 kernels>"
    assert "no kernels launched" in _text(runtime._repr_html_())
    await _failed_runtime(runtime)
    assert repr(runtime) == f"<RingKernelRuntime device='auto': 1 kernel ({EVIL} FAILED)>"
    await runtime.shutdown()
    assert "closed" in repr(runtime) and "shut down" in runtime._repr_html_()


async def test_snapshot_shows_a_table_and_keeps_its_text_table(
    runtime: RingKernelRuntime,
) -> None:
    await _failed_runtime(runtime)
    snap = runtime.snapshot()
    assert isinstance(snap, RuntimeSnapshot)
    shown = snap._repr_html_()
    _no_raw_markup(shown)
    text = _text(shown)
    assert "RuntimeSnapshot" in text and "taken " in text and "1 kernel" in text
    assert "FAILED" in text and "processed" in text
    lines = repr(snap).splitlines()
    assert re.fullmatch(r"<RuntimeSnapshot \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: 1 kernel>", lines[0])
    assert lines[1:] == snap.table().splitlines()
    assert snap.table().splitlines()[0].split()[:3] == ["kernel", "where", "state"]


async def test_kernel_telemetry_shows_its_figures_error_and_events(
    runtime: RingKernelRuntime,
) -> None:
    await _failed_runtime(runtime)
    t = runtime.telemetry(EVIL)
    assert isinstance(t, KernelTelemetry)
    shown = t._repr_html_()
    _no_raw_markup(shown)
    text = _text(shown)
    assert "2 received · 1 processed · 1 sent" in text
    assert "0 of 1,024" in text and "p50 " in text and "msg/s over" in text
    assert "1 · last:" in text and "failed: ValueError:" in text
    assert "launches 1" in text and "event " in text
    assert repr(t).startswith(f"<KernelTelemetry {EVIL!r} host:cpu FAILED: processed 1, ")
    assert "inbox 0/1024" in repr(t) and "errors 1, restarts 0>" in repr(t)
    assert "\n" not in repr(t)


def test_message_shows_short_ids_and_fields_in_a_table() -> None:
    req = Req(name=EVIL, values=[1.5, 2.5], priority=7)
    reply = req.reply(name="x")
    shown = reply._repr_html_()
    text = _text(shown)
    assert f"id {str(reply.message_id)[:8]}" in text
    assert f"reply to {str(req.message_id)[:8]}" in text
    assert str(req.message_id) not in shown  # short ids only
    assert "priority 7" in text and "Req" in text
    assert "name" in text and "values" in text and "[1.5, 2.5]" in text
    req_shown = req._repr_html_()
    _no_raw_markup(req_shown)
    assert "reply to" not in req_shown
    # the plain repr stays the dataclass one: every field, the full ids
    assert repr(req).startswith(f"Req(name={EVIL!r}, values=[1.5, 2.5], message_id=UUID(")


def test_long_field_values_are_shortened_to_one_line() -> None:
    shown = Req(name="n", values=list(range(1000)))._repr_html_()
    value = re.search(r"<td class=\"l\"><code>(\[0\.0, 1\.0, .*?)</code>", shown)
    assert value is not None and len(value.group(1)) == 120 and value.group(1).endswith("…")
    shown = Samples(data=np.arange(10_000, dtype=np.float64))._repr_html_()
    assert "array([0.000e+00, 1.000e+00, 2.000e+00, ..., 9.997e+03, 9.998e+03, 9.999e+03]" in shown


def test_a_class_with_its_own_html_keeps_it() -> None:
    @message
    class Own:
        n: int

        def _repr_html_(self) -> str:
            return "<b>mine</b>"

    assert Own(n=1)._repr_html_() == "<b>mine</b>"
