"""The dashboard on a live runtime: data flow, controls, the update task's lifetime."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from typing import Any

import ipywidgets
import pytest

from pydotcompute import KernelContext, KernelState, RingKernelRuntime, message
from pydotcompute_widgets import Dashboard, DashboardError
from tests.conftest import until, within


@message
class Job:
    n: int


@message
class Result:
    n: int


async def doubler(ctx: KernelContext[Job, Result]) -> None:
    while not ctx.should_terminate:
        job = await ctx.receive()
        await ctx.send(job.reply(Result, n=job.n * 2))


async def traffic(runtime: RingKernelRuntime, kid: str, count: int) -> None:
    for i in range(count):
        await runtime.send(kid, Job(n=i))
        await within(runtime.receive(kid))


def cell(dashboard: Dashboard, kid: str, key: str) -> str:
    """The text a table cell shows."""
    from pydotcompute_widgets._table import COLUMNS

    return dashboard.table.shown[kid][[k for k, _ in COLUMNS].index(key)]


async def started(runtime: RingKernelRuntime, *ids: str) -> None:
    for kid in ids:
        await runtime.launch(kid, func=doubler)
        await runtime.activate(kid)


# ------------------------------------------------------------------ arguments


def test_interval_below_a_tenth_of_a_second_is_refused() -> None:
    runtime = RingKernelRuntime()
    with pytest.raises(DashboardError, match=r"interval=0\.05 must be a number of seconds >= 0\.1"):
        Dashboard(runtime, interval=0.05)


def test_a_runtime_without_a_loop_is_refused_with_the_fix() -> None:
    with pytest.raises(DashboardError, match=r"no event loop yet.*async with RingKernelRuntime"):
        Dashboard(RingKernelRuntime())


def test_only_a_runtime_can_be_shown() -> None:
    with pytest.raises(DashboardError, match="shows a RingKernelRuntime, got dict"):
        Dashboard({})  # type: ignore[arg-type]


# ------------------------------------------------------------------ data flow


async def test_snapshot_flows_into_table_rows_and_plot_sources(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    await started(runtime, "a", "b")
    dash = open_dashboard(runtime, interval=0.1)
    assert isinstance(dash, ipywidgets.DOMWidget)
    assert list(dash.table.rows) == ["a", "b"]
    assert cell(dash, "a", "state") == "ACTIVE" and cell(dash, "a", "where") == "host · cpu"
    await traffic(runtime, "a", 25)
    await until(lambda: cell(dash, "a", "processed") == "25")
    assert cell(dash, "a", "p50") != "-" and cell(dash, "b", "processed") == "0"
    source = dash.plots.source.data
    await until(lambda: len(dash.plots.source.data["time"]) >= 2)
    assert {"rate_0", "inbox_0", "outbox_0", "rate_1"} <= set(source)
    assert max(dash.plots.source.data["rate_0"]) > 0
    assert dash.controls.picker.options == ("a", "b")


async def test_new_kernels_appear_and_terminated_ones_keep_their_final_row(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=0.1)
    await started(runtime, "late")
    await until(lambda: "late" in dash.table.rows)
    assert dash.controls.picker.options == ("a", "late")
    assert len(dash.plots.throughput.renderers) == 2
    await traffic(runtime, "a", 3)
    await runtime.terminate("a")
    await until(lambda: cell(dash, "a", "state") == "TERMINATED")
    assert cell(dash, "a", "processed") == "3"
    assert list(dash.table.root.children[1:]) == [dash.table.lines["a"], dash.table.lines["late"]]


async def test_links_and_dead_letters_show_in_the_table(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    async def sink(ctx: KernelContext[Result, Result]) -> None:
        while not ctx.should_terminate:
            await ctx.send(await ctx.receive())

    await started(runtime, "a")
    await runtime.launch("b", func=sink)
    await runtime.activate("b")
    dash = open_dashboard(runtime, interval=0.1)
    assert cell(dash, "a", "next") == "" and cell(dash, "b", "dead") == "0"
    await runtime.link("a", "b")
    await until(lambda: cell(dash, "a", "next") == "b")
    await runtime.terminate("b")
    await runtime.send("a", Job(n=1))  # a forwards it to b, which has ended: a dead letter
    await until(lambda: cell(dash, "b", "dead") == "1")
    assert [d.reason.value for d in runtime.dead_letters("b")] == ["terminated"]


async def test_an_update_with_no_kernel_changed_sends_no_kernel_data(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    await runtime.launch("idle", func=doubler)
    dash = open_dashboard(runtime, interval=60)  # the task stays asleep: updates by hand
    sent: list[str] = []
    dash.table.rows["idle"].observe(lambda change: sent.append("row"), names="value")
    dash.title.observe(lambda change: sent.append("title"), names="value")
    points = len(dash.plots.source.data["time"])
    dash.update()  # the device panel may change (this machine's memory in use moves); the
    dash.update()  # kernel table, the title and the kernel plots must not
    assert sent == [] and len(dash.plots.source.data["time"]) == points
    await runtime.activate("idle")
    assert dash.update()
    assert sent == ["row"]


# ------------------------------------------------------------------ controls


async def test_buttons_call_the_runtime_verbs(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=0.1)
    buttons = dash.controls.buttons
    assert buttons["activate"].disabled and not buttons["deactivate"].disabled
    buttons["deactivate"].click()
    await until(lambda: runtime.state("a") is KernelState.DEACTIVATED)
    await until(lambda: cell(dash, "a", "state") == "DEACTIVATED")
    await until(lambda: not buttons["activate"].disabled and buttons["deactivate"].disabled)
    buttons["activate"].click()
    await until(lambda: runtime.state("a") is KernelState.ACTIVE)
    buttons["relaunch"].click()
    await until(lambda: runtime.telemetry("a").redeploys == 1)
    buttons["terminate"].click()
    await until(lambda: cell(dash, "a", "state") == "TERMINATED")
    assert "✓ terminate 'a'" in dash.controls.status.value.replace("&#x27;", "'")
    assert all(b.disabled for b in buttons.values())


async def test_the_form_sends_a_message_built_from_the_input_type(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=0.1)
    controls = dash.controls
    assert list(controls.inputs) == ["n", "priority"]
    controls.inputs["n"].value = "21"
    controls.send_button.click()
    reply = await within(runtime.receive("a"))
    assert isinstance(reply, Result) and reply.n == 42
    await until(lambda: "queued" in controls.status.value)


async def test_errors_show_in_the_widget(runtime: RingKernelRuntime, open_dashboard: Any) -> None:
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=0.1)
    controls = dash.controls
    controls.buttons["activate"].click()  # already ACTIVE: the runtime refuses
    await until(lambda: "KernelStateError" in controls.status.value)
    assert "cannot activate ring kernel" in controls.status.value
    controls.inputs["n"].value = "'twelve'"
    controls.send_button.click()
    await until(lambda: "MessageValidationError" in controls.status.value)
    assert "Job.n: expected int, got str" in controls.status.value
    assert type(controls.last_error).__name__ == "MessageValidationError"
    controls.inputs["n"].value = "[1,"
    controls.send_button.click()
    await until(lambda: "DashboardError" in controls.status.value)


async def test_callbacks_from_another_thread_run_on_the_runtime_loop(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=0.1)
    await within(asyncio.to_thread(dash.controls.buttons["deactivate"].click))
    await until(lambda: runtime.state("a") is KernelState.DEACTIVATED)
    dash.controls.inputs["n"].value = "5"
    await within(asyncio.to_thread(dash.controls.send_button.click))
    await until(lambda: runtime.telemetry("a").inbox_depth == 1)


# ------------------------------------------------------------------ the update task


async def test_no_updates_after_close(runtime: RingKernelRuntime) -> None:
    await started(runtime, "a")
    dash = Dashboard(runtime, interval=0.1)
    task = dash._task
    assert task is not None and dash.running
    dash.close()
    assert dash.closed
    await within(asyncio.wait({task}))
    shown = dict(dash.table.shown)
    points = len(dash.plots.source.data["time"])
    await traffic(runtime, "a", 10)
    dash.controls.buttons["terminate"].click()  # a closed dashboard's controls do nothing
    for _ in range(20):  # let anything wrongly scheduled by the click run
        await asyncio.sleep(0)
    assert not dash.running and dash.table.shown == shown
    assert len(dash.plots.source.data["time"]) == points
    assert runtime.state("a") is KernelState.ACTIVE
    assert dash.comm is None and all(r.comm is None for r in dash.table.rows.values())


async def test_the_task_stops_after_showing_the_runtime_shut_down(
    open_dashboard: Any,
) -> None:
    runtime = RingKernelRuntime()
    async with runtime:
        await started(runtime, "a")
        dash = open_dashboard(runtime, interval=0.1)
        task = dash._task
    await within(asyncio.wait({task}))
    assert cell(dash, "a", "state") == "TERMINATED"
    assert "the runtime was shut down" in dash.title.value


async def test_the_task_holds_the_dashboard_weakly(runtime: RingKernelRuntime) -> None:
    await started(runtime, "a")
    dash = Dashboard(runtime, interval=0.1)
    task = dash._task
    assert task is not None
    # Drop the dashboard the way a forgotten widget goes: it leaves ipywidgets' registry,
    # but Dashboard.close() (which would cancel the task) is never called.
    ipywidgets.Widget.close(dash)
    ref = weakref.ref(dash)
    del dash
    gc.collect()
    assert ref() is None and not task.done()  # the running task did not keep it alive
    await within(asyncio.wait({task}))  # and it stops once the dashboard is gone


async def test_plots_are_sent_whole_when_lines_are_added_and_when_displayed(
    runtime: RingKernelRuntime, open_dashboard: Any
) -> None:
    # jupyter_bokeh patches only views that exist: a view made later starts from the
    # document last sent whole, which must therefore hold every line and recent point.
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=60)
    await started(runtime, "b")
    dash.update()
    assert "rate_1" in json.dumps(dash.plot_widget.render_bundle)
    await traffic(runtime, "a", 5)
    dash.update()
    newest = dash.plots.source.data["time"][-1]
    assert str(newest) not in json.dumps(dash.plot_widget.render_bundle)
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert str(newest) in json.dumps(dash.plot_widget.render_bundle)


async def test_a_dashboard_made_on_another_thread_starts_on_the_runtime_loop(
    runtime: RingKernelRuntime,
) -> None:
    await started(runtime, "a")
    dash = await within(asyncio.to_thread(Dashboard, runtime, interval=0.1))
    try:
        await until(lambda: dash.running and "a" in dash.table.rows)
        assert dash._task is not None and dash._task.get_loop() is runtime.loop
    finally:
        dash.close()


async def test_a_failing_update_is_shown_and_stops_the_task(
    runtime: RingKernelRuntime, open_dashboard: Any, caplog: pytest.LogCaptureFixture
) -> None:
    await started(runtime, "a")
    dash = open_dashboard(runtime, interval=0.1)
    task = dash._task

    def broken(snapshot: Any) -> int:
        raise RuntimeError("table exploded")

    dash.table.update = broken
    await within(asyncio.wait({task}))
    assert isinstance(dash.error, RuntimeError)
    assert "RuntimeError: table exploded" in dash.controls.status.value
    assert "updates stopped: an update failed" in dash.title.value
    assert "dashboard update failed" in caplog.text
