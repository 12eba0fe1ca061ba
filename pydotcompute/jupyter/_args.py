"""Argument parsing of ``%%ring_kernel`` and ``%ring``; bad arguments raise a usage error.

Kept free of IPython so it can be tested without a shell: errors are
:class:`MagicUsageError`, which the magics turn into IPython's ``UsageError`` (shown
without a traceback).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from dataclasses import dataclass
from typing import NoReturn

from ..errors import PyDotComputeError
from ..ring._options import Backpressure, RestartPolicy

__all__ = [
    "CELL_OPTIONS",
    "RING_HELP",
    "RING_KERNEL_USAGE",
    "SUBCOMMANDS",
    "CellArgs",
    "MagicUsageError",
    "RingCommand",
    "parse_cell_args",
    "parse_ring_line",
    "ring_help",
    "ring_kernel_help",
    "subcommand_options",
]


class MagicUsageError(PyDotComputeError, ValueError):
    """A magic got arguments it cannot use; the message ends with the correct usage."""


RING_KERNEL_USAGE = (
    "usage: %%ring_kernel NAME [--queue-size N] [--in TYPE] [--out TYPE] "
    "[--backpressure POLICY] [--restart POLICY] [--no-activate] [--timeout S] "
    "[--cuda] [--state TYPE] [--mode sequential|parallel]"
)

RING_HELP = """\
%ring SUBCOMMAND: drive the ring kernels of the notebook runtime

  %ring status                           table of every ring kernel (state, queues, counters)
  %ring send ID EXPR [--timeout S]       send the message EXPR (evaluated in the notebook)
  %ring receive ID [--timeout S]         wait for the next reply; it is the cell's value
  %ring call ID EXPR [--timeout S]       send EXPR, wait for its correlated reply (the value)
  %ring activate ID                      let a launched or deactivated kernel take messages
  %ring deactivate ID                    park a kernel; sends keep queueing, nothing is lost
  %ring terminate ID [--timeout S] [--drain]
                                         stop a kernel gracefully (cancelled after S, default 5)
  %ring dashboard                        live dashboard (needs pydotcompute-widgets)
  %ring --help                           this help; %ring SUBCOMMAND --help: one subcommand

Without --timeout, receive and call wait until the reply comes (interrupt the kernel to stop
waiting). Define kernels with %%ring_kernel (see %%ring_kernel --help).
"""

_ID_COMMANDS = ("activate", "deactivate", "terminate", "receive")
_EXPR_COMMANDS = ("send", "call")
_BARE_COMMANDS = ("status", "dashboard")
_TIMEOUT_COMMANDS = ("send", "receive", "call", "terminate")
_SUBCOMMANDS = (*_BARE_COMMANDS, *_EXPR_COMMANDS, *_ID_COMMANDS)
#: the subcommands of ``%ring``, in the order the help lists them
SUBCOMMANDS = ("status", "send", "receive", "call", "activate", "deactivate", "terminate",
               "dashboard")  # fmt: skip


def _ring_usage(problem: str) -> MagicUsageError:
    return MagicUsageError(f"{problem}\n\n{RING_HELP}")


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--timeout {text!r}: expected a positive number of seconds, e.g. 5")
    return value


# ---------------------------------------------------------------------------- %%ring_kernel
@dataclass(frozen=True)
class CellArgs:
    """The parsed line of a ``%%ring_kernel`` cell (types are still notebook expressions)."""

    name: str
    queue_size: int | None = None
    input_type: str | None = None
    output_type: str | None = None
    backpressure: str | None = None
    restart: str | None = None
    activate: bool = True
    timeout: float = 5.0
    cuda: bool = False
    state_type: str | None = None
    mode: str | None = None
    help: bool = False


class _Parser(argparse.ArgumentParser):
    """An argparse parser that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise MagicUsageError(f"%%ring_kernel: {message}\n{RING_KERNEL_USAGE}")


def _queue_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        return _timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _make_cell_parser() -> _Parser:
    p = _Parser(
        prog="%%ring_kernel",
        usage=RING_KERNEL_USAGE.removeprefix("usage: ").replace("%", "%%"),
        description=(
            "Define a ring kernel from this cell and launch it on the notebook runtime. The "
            "cell body is the actor's body: 'ctx' is in scope, 'await' is allowed and names "
            "from the notebook are visible. With --cuda the body is the CUDA handler "
            "'handle(const In& msg, Out& out, State& state)' of a device ring kernel. Running "
            "the cell again replaces the running actor in place (hot relaunch): queued "
            "messages and telemetry are kept."
        ),
        add_help=False,
        allow_abbrev=False,
    )
    p.add_argument("name", metavar="NAME", help="kernel id")
    p.add_argument("--queue-size", type=_queue_size, metavar="N", help="capacity of both mailboxes")
    p.add_argument("--in", dest="input_type", metavar="TYPE", help="message class it takes")
    p.add_argument("--out", dest="output_type", metavar="TYPE", help="message class it sends")
    p.add_argument(
        "--backpressure",
        choices=[b.value for b in Backpressure],
        metavar="POLICY",
        help="what a send into a full inbox does: block, reject, drop_oldest, drop_newest",
    )
    p.add_argument(
        "--restart",
        choices=[r.value for r in RestartPolicy],
        metavar="POLICY",
        help="when the body is restarted: never, on_failure, always",
    )
    p.add_argument(
        "--no-activate",
        dest="activate",
        action="store_false",
        # argparse %-formats help texts: "%%" shows as "%"
        help="leave the kernel parked (it queues messages until %%ring activate NAME)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="S",
        help="seconds the previous body gets to stop on a relaunch (default 5)",
    )
    p.add_argument("--cuda", action="store_true", help="the body is a CUDA handler")
    p.add_argument("--state", dest="state_type", metavar="TYPE", help="device state type (--cuda)")
    p.add_argument(
        "--mode",
        choices=("sequential", "parallel"),
        help="device mode (--cuda): one message at a time, or batches for stateless handlers",
    )
    return p


_CELL_PARSER = _make_cell_parser()

#: option -> its choices (empty: a free value or a flag) of ``%%ring_kernel``, for completion
CELL_OPTIONS: dict[str, tuple[str, ...]] = {
    opt: tuple(action.choices or ())
    for action in _CELL_PARSER._actions
    for opt in action.option_strings
}
CELL_OPTIONS["--help"] = ()


def ring_kernel_help() -> str:
    """The full help of ``%%ring_kernel``."""
    return _CELL_PARSER.format_help()


def parse_cell_args(line: str) -> CellArgs:
    """Parse the line of a ``%%ring_kernel`` cell.

    Raises
    ------
    MagicUsageError
        The line is not valid; the message ends with the usage.
    """
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise MagicUsageError(f"%%ring_kernel: {exc} in {line!r}\n{RING_KERNEL_USAGE}") from None
    if "-h" in tokens or "--help" in tokens:
        return CellArgs(name="", help=True)
    ns = _CELL_PARSER.parse_args(tokens)
    if not ns.cuda:
        given = [f for f, v in (("--state", ns.state_type), ("--mode", ns.mode)) if v is not None]
        if given:
            raise MagicUsageError(
                f"%%ring_kernel: {' and '.join(given)} only apply to device kernels; add --cuda "
                f"or remove {' and '.join(given)}\n{RING_KERNEL_USAGE}"
            )
    return CellArgs(**vars(ns))


# ---------------------------------------------------------------------------- %ring
@dataclass(frozen=True)
class RingCommand:
    """A parsed ``%ring`` line."""

    name: str
    kernel_id: str | None = None
    expr: str | None = None
    timeout: float | None = None
    drain: bool = False
    topic: str | None = None  # for "help": the subcommand asked about


_SUBCOMMAND_HELP = {
    "status": "Print a table of every ring kernel of the notebook runtime: where it runs, state, "
    "queue depths, processed, msg/s, latency p50/p99, dropped, errors, restarts.",
    "send": "Send the message EXPR, evaluated in the notebook, to kernel ID, and say what was "
    "sent (type and short message id). Under 'block' backpressure it waits for room.",
    "receive": "Wait for the next reply of kernel ID; the reply is the cell's value "
    "('reply = %ring receive ID' works). Without --timeout it waits until a reply comes: "
    "interrupt the kernel to stop waiting (a reply that comes later is kept).",
    "call": "Send EXPR to kernel ID and wait for the reply correlated with it; the reply is the "
    "cell's value.",
    "activate": "Let a launched or deactivated kernel take messages.",
    "deactivate": "Park a kernel: sends keep queueing, nothing is lost.",
    "terminate": "Stop a kernel gracefully: the body sees ctx.should_terminate and is cancelled "
    "after the timeout.",
    "dashboard": "Show the live dashboard of the notebook runtime (the pydotcompute-widgets "
    "package registers it).",
}
_TIMEOUT_HELP = {
    "send": "seconds to wait for room in a full inbox (default: no limit)",
    "receive": "seconds to wait for the reply (default: no limit)",
    "call": "seconds to wait for the reply (default: no limit)",
    "terminate": "seconds the body gets to stop before it is cancelled (default 5)",
}


def _subcommand_parser(name: str) -> argparse.ArgumentParser:
    """The parser that documents one ``%ring`` subcommand (its help is generated from it)."""
    p = argparse.ArgumentParser(
        prog=f"%ring {name}", description=_SUBCOMMAND_HELP[name], add_help=False
    )
    if name in _ID_COMMANDS or name in _EXPR_COMMANDS:
        p.add_argument("kernel_id", metavar="ID", help="kernel id (Tab completes it)")
    if name in _EXPR_COMMANDS:
        p.add_argument(
            "expr",
            metavar="EXPR",
            help="the message, a Python expression evaluated in the notebook, kept verbatim",
        )
    if name in _TIMEOUT_COMMANDS:
        p.add_argument("--timeout", metavar="S", type=float, help=_TIMEOUT_HELP[name])
    if name == "terminate":
        p.add_argument(
            "--drain", action="store_true", help="let the body take what is queued first"
        )
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    return p


_SUBCOMMAND_PARSERS = {name: _subcommand_parser(name) for name in SUBCOMMANDS}


def subcommand_options(name: str) -> list[str]:
    """The options (``--timeout``, ...) one ``%ring`` subcommand takes, for completion."""
    parser = _SUBCOMMAND_PARSERS[name]
    return [
        opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and opt != "--help"
    ]


def ring_help(subcommand: str | None = None) -> str:
    """The help of ``%ring``: the overview and every subcommand's, or one subcommand's."""
    if subcommand is not None:
        return _SUBCOMMAND_PARSERS[subcommand].format_help()
    parts = [RING_HELP, "Subcommands", "-----------", ""]
    parts += [_SUBCOMMAND_PARSERS[name].format_help() for name in SUBCOMMANDS]
    return "\n".join(parts)


_TRAILING_OPTION = re.compile(r"\s+(--timeout(?:=|\s+)(\S+)|--drain)\s*$")


def _options(command: str, tokens: list[str]) -> tuple[float | None, bool]:
    timeout: float | None = None
    drain = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--drain" and command == "terminate":
            drain = True
        elif tok.startswith("--timeout") and command in _TIMEOUT_COMMANDS:
            if "=" in tok:
                value = tok.split("=", 1)[1]
            elif i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                raise _ring_usage(f"%ring {command}: --timeout needs a number of seconds")
            try:
                timeout = _timeout(value)
            except ValueError as exc:
                raise _ring_usage(f"%ring {command}: {exc}") from None
        else:
            raise _ring_usage(f"%ring {command}: unexpected argument {tok!r}")
        i += 1
    return timeout, drain


def parse_ring_line(line: str) -> RingCommand:
    """Parse the line of a ``%ring`` magic.

    ``EXPR`` (for ``send`` and ``call``) is everything after the id up to trailing options,
    kept verbatim so that quotes and spaces in it survive.

    Raises
    ------
    MagicUsageError
        Unknown subcommand, missing id or expression, or a bad option.
    """
    text = line.strip()
    if not text or text in ("-h", "--help", "help"):
        return RingCommand("help")
    command, _, rest = text.partition(" ")
    rest = rest.strip()
    if command not in _SUBCOMMANDS:
        raise _ring_usage(
            f"%ring: unknown subcommand {command!r}; expected one of {', '.join(_SUBCOMMANDS)}"
        )
    words = rest.split()
    if any(w in ("-h", "--help") for w in words[: 2 if command in _EXPR_COMMANDS else None]):
        return RingCommand("help", topic=command)
    if command in _BARE_COMMANDS:
        if rest:
            raise _ring_usage(f"%ring {command} takes no arguments, got {rest!r}")
        return RingCommand(command)
    kernel_id, _, rest = rest.partition(" ")
    if not kernel_id or kernel_id.startswith("--"):
        what = " ID EXPR" if command in _EXPR_COMMANDS else " ID"
        raise _ring_usage(f"%ring {command} needs a kernel id: %ring {command}{what}")
    rest = rest.strip()
    if command in _EXPR_COMMANDS:
        options: list[str] = []
        while True:
            m = _TRAILING_OPTION.search(" " + rest)
            if m is None:
                break
            options[:0] = shlex.split(m.group(1).replace("=", " ", 1))
            rest = (" " + rest)[: m.start()].strip()
        if not rest:
            raise _ring_usage(
                f"%ring {command} needs a message expression: %ring {command} {kernel_id} EXPR"
            )
        timeout, drain = _options(command, options)
        return RingCommand(command, kernel_id, rest, timeout)
    try:
        tokens = shlex.split(rest)
    except ValueError as exc:
        raise _ring_usage(f"%ring {command}: {exc}") from None
    timeout, drain = _options(command, tokens)
    return RingCommand(command, kernel_id, None, timeout, drain)
