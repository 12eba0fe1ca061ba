"""Parsing of the %%ring_kernel line and of %ring lines, in-process."""

from __future__ import annotations

import pytest

from pydotcompute.jupyter._args import (
    CellArgs,
    MagicUsageError,
    RingCommand,
    parse_cell_args,
    parse_ring_line,
    ring_kernel_help,
)


def test_cell_line_with_every_host_option() -> None:
    args = parse_cell_args(
        "summer --queue-size 16 --in Req --out mod.Resp --backpressure drop_oldest "
        "--restart on_failure --no-activate --timeout 2.5"
    )
    assert args == CellArgs(
        name="summer",
        queue_size=16,
        input_type="Req",
        output_type="mod.Resp",
        backpressure="drop_oldest",
        restart="on_failure",
        activate=False,
        timeout=2.5,
    )


def test_cell_line_defaults_activate_and_leave_options_unset() -> None:
    assert parse_cell_args("  summer  ") == CellArgs(name="summer")


def test_cuda_options_are_taken_with_cuda() -> None:
    args = parse_cell_args("saxpy --cuda --in In --out Out --state Acc --mode parallel")
    assert (args.cuda, args.state_type, args.mode) == (True, "Acc", "parallel")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "the following arguments are required: NAME"),
        ("a b", "unrecognized arguments: b"),
        ("a --queue-size 0", "--queue-size: expected an int >= 1, got '0'"),
        ("a --queue-size 1.5", "--queue-size: expected an int >= 1, got '1.5'"),
        ("a --backpressure wait", "argument --backpressure: invalid choice: 'wait'"),
        ("a --restart sometimes", "argument --restart: invalid choice: 'sometimes'"),
        ("a --mode batch --cuda", "argument --mode: invalid choice: 'batch'"),
        ("a --state S", "--state only apply to device kernels; add --cuda or remove --state"),
        ("a --mode parallel", "--mode only apply to device kernels; add --cuda"),
        ("a --timeout 0", "--timeout '0': expected a positive number of seconds"),
        ("a --timeout nan", "--timeout 'nan': expected a positive number of seconds"),
        ("a --queue", "unrecognized arguments: --queue"),  # no abbreviations
        ("'a", "No closing quotation"),
    ],
)
def test_bad_cell_lines_raise_with_the_usage(line: str, message: str) -> None:
    with pytest.raises(MagicUsageError, match="usage: %%ring_kernel NAME") as info:
        parse_cell_args(line)
    assert message in str(info.value)


def test_cell_help_is_asked_for_not_parsed() -> None:
    assert parse_cell_args("--help").help
    assert parse_cell_args("summer -h").help
    text = ring_kernel_help()
    assert text.startswith("usage: %%ring_kernel NAME [--queue-size N]")
    assert "until %ring activate NAME" in " ".join(text.split())


@pytest.mark.parametrize("line", ["", "   ", "--help", "-h", "help"])
def test_ring_help(line: str) -> None:
    assert parse_ring_line(line) == RingCommand("help")


def test_ring_send_keeps_the_expression_verbatim() -> None:
    cmd = parse_ring_line("send summer Req(name='a  b', values=[1, 2])  --timeout 3")
    assert cmd == RingCommand("send", "summer", "Req(name='a  b', values=[1, 2])", 3.0)


def test_ring_call_takes_timeout_with_equals() -> None:
    assert parse_ring_line("call x make(--y) --timeout=0.5") == RingCommand(
        "call", "x", "make(--y)", 0.5
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("status", RingCommand("status")),
        ("dashboard", RingCommand("dashboard")),
        ("receive k", RingCommand("receive", "k")),
        ("receive k --timeout 2", RingCommand("receive", "k", timeout=2.0)),
        ("activate k", RingCommand("activate", "k")),
        ("deactivate k", RingCommand("deactivate", "k")),
        ("terminate k --drain --timeout 1", RingCommand("terminate", "k", timeout=1.0, drain=True)),
    ],
)
def test_ring_subcommands(line: str, expected: RingCommand) -> None:
    assert parse_ring_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("launch k", "unknown subcommand 'launch'; expected one of status"),
        ("status k", "%ring status takes no arguments, got 'k'"),
        ("receive", "%ring receive needs a kernel id: %ring receive ID"),
        ("send", "%ring send needs a kernel id: %ring send ID EXPR"),
        ("receive --timeout 1", "%ring receive needs a kernel id"),
        ("call k", "%ring call needs a message expression: %ring call k EXPR"),
        ("call k --timeout 2", "%ring call needs a message expression"),
        ("receive k --timeout", "--timeout needs a number of seconds"),
        ("receive k --timeout soon", "--timeout 'soon': expected a positive number"),
        ("receive k --drain", "%ring receive: unexpected argument '--drain'"),
        ("activate k --timeout 1", "%ring activate: unexpected argument '--timeout'"),
        ("activate k extra", "%ring activate: unexpected argument 'extra'"),
    ],
)
def test_bad_ring_lines_raise_with_the_help(line: str, message: str) -> None:
    with pytest.raises(MagicUsageError, match="%ring status") as info:
        parse_ring_line(line)
    assert message in str(info.value)
