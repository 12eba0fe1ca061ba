"""The magics through a real Jupyter kernel (ipykernel driven by jupyter_client).

One kernel serves the whole module (kernel startup is slow on a busy machine); each test uses
its own kernel ids. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._kernel import Kernel, wait_until

SETUP = """\
%load_ext pydotcompute
import asyncio
from pathlib import Path
from pydotcompute import message

@message
class Req:
    values: list[float]

@message
class Resp:
    result: float

scale = 2
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    try:
        k.run(SETUP).expect_ok()
        yield k
    finally:
        k.shutdown()


def test_cell_defines_an_actor_that_answers_magics_and_top_level_await(kernel: Kernel) -> None:
    out = kernel.run(
        "%%ring_kernel summer --in Req --out Resp\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=sum(r.values) * scale))\n"
    ).expect_ok()
    assert out.stdout == "ring kernel 'summer' launched on host (cpu): ACTIVE\n"

    sent = kernel.run("%ring send summer Req(values=[1, 2, 3])").expect_ok().stdout
    assert re.fullmatch(r"sent Req [0-9a-f]{8} to ring kernel 'summer'\n", sent), sent
    received = kernel.run("%ring receive summer --timeout 10").expect_ok().result
    assert received is not None and received.startswith("Resp(result=12.0")
    called = kernel.run("%ring call summer Req(values=[4]) --timeout 10").expect_ok().result
    assert called is not None and called.startswith("Resp(result=8.0")

    awaited = kernel.run(
        "await runtime.send('summer', Req(values=[5]))\n"
        "(await runtime.receive('summer', timeout=10)).result"
    ).expect_ok()
    assert awaited.result == "10.0"
    same = kernel.run(
        "from pydotcompute.jupyter import notebook_runtime\nnotebook_runtime() is runtime"
    )
    assert same.expect_ok().result == "True"

    status = kernel.run("%ring status").expect_ok().stdout
    row = next(line for line in status.splitlines() if line.startswith("summer"))
    assert row.split()[:3] == ["summer", "host:cpu", "ACTIVE"]


def test_rerun_relaunches_in_place_keeping_queued_messages_and_telemetry(kernel: Kernel) -> None:
    v1 = (
        "%%ring_kernel echo{opts} --in Req --out Resp\n"
        "try:\n"
        "    while not ctx.should_terminate:\n"
        "        r = await ctx.receive()\n"
        "        await ctx.send(Resp(result=r.values[0] + {offset}))\n"
        "finally:\n"
        "    echo_log.append('v{version} stopped')\n"
    )
    kernel.run("echo_log = []").expect_ok()
    first = kernel.run(v1.format(opts=" --no-activate", offset=0, version=1)).expect_ok()
    assert first.stdout == "ring kernel 'echo' launched on host (cpu): LAUNCHED\n"
    kernel.run("for v in (1, 2, 3):\n    await runtime.send('echo', Req(values=[v]))").expect_ok()

    second = kernel.run(v1.format(opts="", offset=100, version=2)).expect_ok()
    assert second.stdout == (
        "ring kernel 'echo' relaunched on host (cpu): ACTIVE; 3 queued messages kept, redeploy 1\n"
    )
    replies = kernel.run(
        "replies = []\n"
        "for _ in range(3):\n"
        "    replies.append((await runtime.receive('echo', timeout=10)).result)\n"
        "replies"
    ).expect_ok()
    assert replies.result == "[101.0, 102.0, 103.0]"
    assert kernel.run("echo_log").expect_ok().result == "['v1 stopped']"
    telemetry = kernel.run(
        "t = runtime.telemetry('echo')\n"
        "(t.redeploys, t.launches, t.received, t.processed, "
        "[what for _, what in t.events if what == 'redeployed'])"
    ).expect_ok()
    assert telemetry.result == "(1, 1, 3, 3, ['redeployed'])"


def test_relaunch_names_the_options_it_could_not_apply(kernel: Kernel) -> None:
    cell = (
        "%%ring_kernel resized --queue-size {n}\n"
        "while not ctx.should_terminate:\n"
        "    await ctx.send(await ctx.receive())\n"
    )
    kernel.run(cell.format(n=8)).expect_ok()
    out = kernel.run(cell.format(n=16)).expect_ok().stdout
    assert out == (
        "ring kernel 'resized' relaunched on host (cpu): ACTIVE; 0 queued messages kept, "
        "redeploy 1; options not applied by a relaunch: queue_size (run %ring terminate "
        "resized, then this cell, to apply them)\n"
    )
    capacity = kernel.run("runtime.telemetry('resized').inbox_capacity").expect_ok()
    assert capacity.result == "8"
    kernel.run("%ring terminate resized").expect_ok()
    relaunched = kernel.run(cell.format(n=16)).expect_ok()
    assert relaunched.stdout == "ring kernel 'resized' launched on host (cpu): ACTIVE\n"
    capacity = kernel.run("runtime.telemetry('resized').inbox_capacity").expect_ok()
    assert capacity.result == "16"


def test_cell_that_does_not_compile_leaves_the_old_actor_running(kernel: Kernel) -> None:
    kernel.run(
        "%%ring_kernel keeper --in Req --out Resp\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=r.values[0]))\n"
    ).expect_ok()
    broken = kernel.run(
        "%%ring_kernel keeper --in Req --out Resp\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=r.values[0]) +)\n"
    )
    assert broken.ename == "CellSyntaxError"
    # Only the cell's line, as IPython shows a syntax error in any cell: no library frames.
    lines = broken.traceback.splitlines()
    assert [lines[0], lines[1], lines[2].strip(), lines[3]] == [
        f"  Cell In[{broken.count}], line 4",
        "    await ctx.send(Resp(result=r.values[0]) +)",
        "^",
        "SyntaxError: invalid syntax",
    ]
    assert len(lines) == 4
    assert broken.stderr == (
        "ring kernel 'keeper' was not changed: the cell does not compile; it keeps running "
        "its previous body (ACTIVE)\n"
    )
    still = kernel.run("%ring call keeper Req(values=[7]) --timeout 10").expect_ok()
    assert still.result is not None and still.result.startswith("Resp(result=7.0")
    assert kernel.run("runtime.telemetry('keeper').redeploys").expect_ok().result == "0"


def test_failing_actor_shows_the_cells_traceback_on_the_next_call(kernel: Kernel) -> None:
    defined = kernel.run(
        "%%ring_kernel divider --in Req --out Resp\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=1 / r.values[0]))\n"
    ).expect_ok()
    assert kernel.run("%ring call divider Req(values=[4]) --timeout 10").expect_ok().result
    failed = kernel.run("%ring call divider Req(values=[0]) --timeout 10")
    assert failed.ename == "KernelFailedError"
    expected = "ring kernel 'divider' failed: ZeroDivisionError: float division by zero"
    assert expected in failed.evalue
    tb = failed.traceback
    assert f"Cell In[{defined.count}], line 4, in divider(ctx)" in tb
    assert re.search(r"----> 4 +await ctx\.send\(Resp\(result=1 / r\.values\[0\]\)\)", tb)
    assert "The above exception was the direct cause of the following exception" in tb
    assert "site-packages" not in tb and "pydotcompute/" not in tb  # the cell's frames only
    assert tb.rstrip().splitlines()[-1].startswith(f"KernelFailedError: {expected}")
    again = kernel.run("%ring receive divider --timeout 10")
    assert again.ename == "KernelFailedError"
    assert kernel.run("runtime.state('divider').value").expect_ok().result == "'FAILED'"

    # A failed kernel refuses sends; fixing the cell and running it again brings it back.
    assert kernel.run("%ring send divider Req(values=[1])").ename == "KernelFailedError"
    fixed = kernel.run(
        "%%ring_kernel divider --in Req --out Resp\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=1 / r.values[0] if r.values[0] else 0.0))\n"
    ).expect_ok()
    assert fixed.stdout.startswith("ring kernel 'divider' relaunched on host (cpu): ACTIVE")
    after = kernel.run("reply = %ring call divider Req(values=[0]) --timeout 10\nreply.result")
    assert after.expect_ok().result == "0.0"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%%ring_kernel\npass", "the following arguments are required: NAME"),
        ("%%ring_kernel bad1 --queue-size zero\npass", "expected an int >= 1, got 'zero'"),
        ("%%ring_kernel bad2 --backpressure sideways\npass", "invalid choice: 'sideways'"),
        ("%%ring_kernel bad3 --mode parallel\npass", "--mode only apply to device kernels"),
        ("%%ring_kernel bad4 --in NoSuchType\npass", "--in NoSuchType: NameError"),
        ("%%ring_kernel bad5 --frobnicate\npass", "unrecognized arguments: --frobnicate"),
        ("%ring frobnicate", "unknown subcommand 'frobnicate'"),
        ("%ring receive", "%ring receive needs a kernel id"),
        ("%ring send summer", "%ring send needs a message expression"),
        ("%ring receive summer --timeout -1", "expected a positive number of seconds"),
    ],
)
def test_bad_arguments_give_the_usage(kernel: Kernel, cell: str, expected: str) -> None:
    out = kernel.run(cell)
    assert out.ename is None  # a UsageError: printed without a traceback
    assert out.stderr.startswith("UsageError: ")
    assert expected in out.stderr
    assert "usage: %%ring_kernel NAME" in out.stderr or "%ring status" in out.stderr
    launched = kernel.run("sorted(k for k in runtime.kernels if k.startswith('bad'))")
    assert launched.expect_ok().result == "[]"


def test_help_prints_the_usage_of_both_magics(kernel: Kernel) -> None:
    ring = kernel.run("%ring --help").expect_ok().stdout
    for sub in ("status", "send ID EXPR", "receive ID", "call ID EXPR", "terminate ID"):
        assert f"%ring {sub}" in ring
    cell = kernel.run("%%ring_kernel --help\npass").expect_ok().stdout
    assert cell.startswith("usage: %%ring_kernel NAME")
    assert "--backpressure POLICY" in cell and "--no-activate" in cell
    one = kernel.run("%ring terminate --help").expect_ok().stdout
    assert one.startswith("usage: %ring terminate [--timeout S] [--drain] [-h] ID")
    assert "--drain      let the body take what is queued first" in one


def test_question_mark_pages_the_generated_help_of_every_subcommand(kernel: Kernel) -> None:
    (ring,) = kernel.run("%ring?").expect_ok().pages
    for sub in ("status", "send", "receive", "call", "activate", "deactivate", "terminate",
                "dashboard"):  # fmt: skip
        assert f"usage: %ring {sub} " in ring, sub
    assert "--timeout S  seconds the body gets to stop before it is cancelled" in ring
    (cell,) = kernel.run("%%ring_kernel?").expect_ok().pages
    assert "usage: %%ring_kernel NAME" in cell
    for option in ("--queue-size N", "--backpressure POLICY", "--restart POLICY", "--cuda",
                   "--mode {sequential,parallel}"):  # fmt: skip
        assert option in cell, option


def test_tab_completes_subcommands_kernel_ids_and_options(kernel: Kernel) -> None:
    kernel.run("%%ring_kernel completer_a\nawait ctx.receive()\n").expect_ok()
    assert kernel.complete("%ring rec") == ["receive"]
    assert "completer_a" in kernel.complete("%ring receive ")
    assert kernel.complete("%ring activate completer_") == ["completer_a"]
    # Jedi's guesses at Python names may come too (IPython never suppresses them).
    assert "--drain" in kernel.complete("%ring terminate completer_a --d")
    assert {"drop_oldest", "drop_newest"} <= set(
        kernel.complete("%%ring_kernel x --backpressure drop_")
    )
    assert {"Req", "Resp"} <= set(kernel.complete("%%ring_kernel x --in Re"))
    assert {"Req", "Resp"} <= set(kernel.complete("%ring send completer_a Re"))
    kernel.run("%ring terminate completer_a").expect_ok()


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            "%ring send summer Req(values=)",
            "%ring send summer: the message expression 'Req(values=)' is not valid Python",
        ),
        (
            "%ring call summer Req(values=nope)",
            "raised NameError: name 'nope' is not defined",
        ),
    ],
)
def test_a_bad_message_expression_is_a_usage_error(
    kernel: Kernel, cell: str, expected: str
) -> None:
    out = kernel.run(cell)
    assert out.ename is None and out.stderr.startswith("UsageError: ")
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_runtime_errors_show_one_line(kernel: Kernel) -> None:
    kernel.run(
        "%%ring_kernel silent\nwhile not ctx.should_terminate:\n    await ctx.receive()\n"
    ).expect_ok()
    timeout = kernel.run("%ring receive silent --timeout 0.2")
    assert timeout.ename == "ReceiveTimeoutError"
    assert timeout.traceback.strip() == (
        "ReceiveTimeoutError: no message from ring kernel 'silent' within 0.2 s"
    )
    missing = kernel.run("%ring activate nosuch")
    assert missing.ename == "KernelNotFoundError"
    assert len(missing.traceback.strip().splitlines()) == 1
    wrong = kernel.run("%ring send silent 5")
    assert wrong.ename is None  # silent takes anything: the send is confirmed
    assert wrong.stdout == "sent int to ring kernel 'silent'\n"
    kernel.run("%ring terminate silent").expect_ok()


def test_dashboard_shows_the_widget_or_says_how_to_install_it(kernel: Kernel) -> None:
    out = kernel.run("%ring dashboard").expect_ok()
    if importlib.util.find_spec("pydotcompute_widgets") is None:
        assert out.result is None
        assert out.stderr.startswith("%ring dashboard needs the pydotcompute-widgets package")
        assert "pip install -e ./widgets in a PyDotCompute checkout" in out.stderr
    else:
        assert out.stderr == ""
        assert out.result is not None or out.displays  # the widget is the cell's value


def test_actor_keeps_working_between_cells_while_the_notebook_is_idle(
    kernel: Kernel, tmp_path: Path
) -> None:
    beat_file = tmp_path / "beats"
    kernel.run(f"beat_file = Path({str(beat_file)!r})").expect_ok()
    kernel.run(
        "%%ring_kernel ticker\n"
        "beat = 0\n"
        "while not ctx.should_terminate:\n"
        "    beat += 1\n"
        "    beat_file.write_text(str(beat))\n"
        "    await asyncio.sleep(0.01)\n"
    ).expect_ok()

    def beats() -> int:
        text = beat_file.read_text() if beat_file.exists() else ""
        return int(text) if text else 0

    # No cell runs from here on: only the idle kernel's event loop can move the actor.
    start = beats()
    wait_until(lambda: beats() >= start + 20, 30.0, "20 heartbeats of an idle notebook's actor")
    kernel.run("%ring terminate ticker").expect_ok()


def test_waiting_magic_keeps_other_actors_running(kernel: Kernel) -> None:
    kernel.run(
        "%%ring_kernel doubler --in Req --out Resp\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=2 * r.values[0]))\n"
    ).expect_ok()
    kernel.run(
        "%%ring_kernel feeder --no-activate\n"
        "await ctx.wait_active()\n"
        "for v in range(3):\n"
        "    await runtime.send('doubler', Req(values=[v]))\n"
        "    await asyncio.sleep(0)\n"
        "while not ctx.should_terminate:\n"
        "    await ctx.receive()\n"
    ).expect_ok()
    # Within one cell: both actors only run while the synchronous magics wait.
    out = kernel.run(
        "ip = get_ipython()\n"
        "ip.run_line_magic('ring', 'activate feeder')\n"
        "[ip.run_line_magic('ring', 'receive doubler --timeout 10').result for _ in range(3)]"
    ).expect_ok()
    assert out.result == "[0.0, 2.0, 4.0]"


def test_interrupting_a_waiting_receive_loses_no_message(kernel: Kernel, tmp_path: Path) -> None:
    kernel.run(
        "%%ring_kernel quiet --in Req --out Resp --no-activate\n"
        "while not ctx.should_terminate:\n"
        "    r = await ctx.receive()\n"
        "    await ctx.send(Resp(result=r.values[0]))\n"
    ).expect_ok()
    # The sentinel can only see 'armed' once the cell below runs the loop, i.e. once the
    # receive is waiting; it then tells the test, which interrupts the wait.
    sentinel = tmp_path / "waiting"
    kernel.run(f"armed = []\nsentinel_file = Path({str(sentinel)!r})").expect_ok()
    kernel.run(
        "%%ring_kernel sentinel\n"
        "while not armed:\n"
        "    await asyncio.sleep(0.005)\n"
        "sentinel_file.write_text('waiting')\n"
        "await ctx.receive()\n"
    ).expect_ok()
    waiting = kernel.submit("armed.append(True)\n%ring receive quiet")
    wait_until(sentinel.exists, 30.0, "the receive's wait")
    kernel.manager.interrupt_kernel()
    interrupted = kernel.collect(waiting)
    assert interrupted.ename == "KeyboardInterrupt"
    assert interrupted.traceback == (
        "KeyboardInterrupt: %ring receive quiet: interrupted while waiting"
    )
    kernel.run("%ring activate quiet\n%ring send quiet Req(values=[5])").expect_ok()
    got = kernel.run("%ring receive quiet --timeout 10").expect_ok().result
    assert got is not None and got.startswith("Resp(result=5.0")


def test_cuda_cell_runs_a_device_kernel_and_relaunches_it(kernel: Kernel) -> None:
    kernel.run(
        "import numpy as np\n"
        "@message\nclass Num:\n    x: np.float32\n"
        "@message\nclass Doubled:\n    y: np.float32\n"
    ).expect_ok()
    cell = "%%ring_kernel scaler --cuda --in Num --out Doubled\nout.y = msg.x * {factor}f;\n"
    launched = kernel.run(cell.format(factor="2.0"), timeout=300).expect_ok()
    assert re.match(
        r"ring kernel 'scaler' launched on device \((emulated|cuda:\d+)\): ACTIVE", launched.stdout
    ), launched.stdout
    assert call_scaler(kernel) == "6.0"

    relaunched = kernel.run(cell.format(factor="3.0"), timeout=300).expect_ok()
    assert "ring kernel 'scaler' relaunched on device" in relaunched.stdout
    assert call_scaler(kernel) == "9.0"

    broken = kernel.run(
        "%%ring_kernel scaler --cuda --in Num --out Doubled\n"
        "float z = msg.x;\n"
        "out.y = msg.x * no_such_name;\n",
        timeout=300,
    )
    assert broken.ename is not None
    # The compiler's line numbers are the cell's: the error is on line 3.
    assert re.search(r"line 3\b|\(3\)|:3:", broken.evalue + broken.traceback)
    assert call_scaler(kernel) == "9.0"  # the previous handler still runs


def call_scaler(kernel: Kernel) -> str | None:
    reply = kernel.run("reply = %ring call scaler Num(x=3) --timeout 20\nfloat(reply.y)")
    return reply.expect_ok().result


def test_kernel_shutdown_terminates_the_actors_gracefully(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    k = Kernel(tmp_path)
    try:
        k.run(SETUP).expect_ok()
        k.run(f"marker = Path({str(marker)!r})").expect_ok()
        k.run(
            "%%ring_kernel lastone\n"
            "try:\n"
            "    while not ctx.should_terminate:\n"
            "        await ctx.receive()\n"
            "finally:\n"
            # A coroutine closed by the garbage collector at exit would also run this
            # block, but only a terminate sets should_terminate.
            "    marker.write_text(f'should_terminate={ctx.should_terminate}')\n"
        ).expect_ok()
        process = k.manager.provisioner.process  # type: ignore[union-attr]
    finally:
        k.shutdown()
    # shutdown_kernel waits a bounded time, then kills: a hang would show as a kill.
    assert process.wait(timeout=30) == 0
    assert marker.read_text() == "should_terminate=True"
