"""The ``%%ring_kernel`` cell magic and the ``%ring`` line magic."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, NamedTuple, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .._install import widgets_hint
from ..backends.host import LaunchResult
from ..errors import KernelRegistrationError, PyDotComputeError
from ..ring._options import KernelOptions
from ..ring._spec import RingKernelSpec, _register
from ..ring._state import KernelState
from ._args import (
    RING_KERNEL_USAGE,
    CellArgs,
    MagicUsageError,
    RingCommand,
    parse_cell_args,
    parse_ring_line,
    ring_help,
    ring_kernel_help,
)
from ._cell import cache_cell_source, compile_body, device_spec
from ._session import NotebookSession, current_session
from ._tracebacks import interrupted, short, syntax_error

__all__ = ["DASHBOARD_ENTRY_POINTS", "RingMagics", "short_id"]

S = KernelState
_REPLACEABLE = frozenset({S.LAUNCHED, S.ACTIVE, S.DEACTIVATED, S.FAILED})


class _Live(NamedTuple):
    """A running kernel a %%ring_kernel cell would relaunch, as the public API shows it."""

    kind: str  # "host" or "device" (its telemetry's backend)
    options: KernelOptions
    queued: int  # messages in its inbox
    state: KernelState


#: entry-point group naming a callable ``(runtime) -> widget`` that ``%ring dashboard`` shows;
#: pydotcompute-widgets registers its ``Dashboard`` there (the core never imports it)
DASHBOARD_ENTRY_POINTS = "pydotcompute.dashboard"
_WIDGETS_MISSING = (
    "%ring dashboard needs the pydotcompute-widgets package (ipywidgets + Bokeh), which is not "
    f"installed: {widgets_hint()}, then run %ring dashboard again"
)

F = TypeVar("F", bound=Callable[..., Any])


def _where(result: LaunchResult) -> str:
    return f"{result.backend} ({result.device})"


def short_id(message: Any) -> str | None:
    """The first 8 hex digits of a message's id (``None`` for an object without one)."""
    mid = getattr(message, "message_id", None)
    return None if mid is None else mid.hex[:8]


def _with_help(summary: str, text: str) -> Callable[[F], F]:
    """Give a magic the docstring ``%name?`` shows: a summary and the generated help."""

    def decorate(func: F) -> F:
        func.__doc__ = f"{summary}\n\n::\n\n" + "\n".join(
            f"  {line}" if line else "" for line in text.splitlines()
        )
        return func

    return decorate


@contextmanager
def _short_interrupt(what: str) -> Iterator[None]:
    """Turn Ctrl-C during a magic's wait into one line saying which wait it stopped."""
    try:
        yield
    except KeyboardInterrupt:
        raise interrupted(what) from None


@magics_class
class RingMagics(Magics):
    """``%%ring_kernel`` defines and (re)launches an actor; ``%ring`` drives actors."""

    @property
    def _shell(self) -> Any:
        shell = self.shell
        if shell is None:
            raise PyDotComputeError("the ring magics are not registered with an IPython shell")
        return shell

    @property
    def session(self) -> NotebookSession:
        """The notebook runtime's session."""
        return current_session()

    # ------------------------------------------------------------------ %%ring_kernel
    @_with_help(
        "Define a ring kernel from the cell and launch it (hot relaunch when re-run).",
        ring_kernel_help(),
    )
    @cell_magic
    def ring_kernel(self, line: str, cell: str) -> None:
        try:
            args = parse_cell_args(line)
        except MagicUsageError as exc:
            raise UsageError(str(exc)) from None
        if args.help:
            print(ring_kernel_help())
            return
        __tracebackhide__ = True
        session = self.session
        old = self._live_kernel(args.name)
        try:
            spec = self._spec(args, cell, line)
        except SyntaxError as exc:
            self._say_unchanged(args.name, old, "the cell does not compile")
            raise syntax_error(self._shell, args.name, exc) from exc
        except (MagicUsageError, KernelRegistrationError) as exc:
            self._say_unchanged(args.name, old, "the cell's definition is invalid")
            raise UsageError(f"{exc}\n{RING_KERNEL_USAGE}") from None
        except PyDotComputeError as exc:
            self._say_unchanged(args.name, old, "the kernel could not be defined")
            raise short(self._shell, exc) from exc.__cause__
        verb = "launch" if old is None else "relaunch"
        try:
            with _short_interrupt(f"%%ring_kernel {args.name}: interrupted during the {verb}"):
                if old is None:
                    self._launch(session, args, spec)
                else:
                    self._relaunch(session, args, spec, old)
        except PyDotComputeError as exc:
            raise short(self._shell, exc) from exc.__cause__

    def _launch(self, session: NotebookSession, args: CellArgs, spec: RingKernelSpec) -> None:
        rt = session.runtime
        result = session.run(rt.launch(args.name, func=spec))
        if args.activate:
            session.run(rt.activate(args.name))
        print(self._line(args.name, "launched on", result, rt.state(args.name)))

    def _live_kernel(self, kernel_id: str) -> _Live | None:
        """What a relaunch needs of a running kernel ``kernel_id`` (public API only)."""
        rt = self.session.runtime
        if kernel_id not in rt.kernels:
            return None
        state = rt.state(kernel_id)
        if state not in _REPLACEABLE:
            return None
        t = rt.telemetry(kernel_id)
        return _Live(t.backend, rt.options(kernel_id), t.inbox_depth, state)

    def _spec(self, args: CellArgs, cell: str, line: str) -> RingKernelSpec:
        ns = self._shell.user_ns
        in_t = self._type(args.input_type, "--in")
        out_t = self._type(args.output_type, "--out")
        if args.cuda:
            options: dict[str, Any] = {}
            for key in ("queue_size", "backpressure", "restart"):
                value = getattr(args, key)
                if value is not None:
                    options[key] = value
            return device_spec(
                args.name,
                cell,
                input_type=in_t,
                output_type=out_t,
                state_type=self._type(args.state_type, "--state"),
                mode=args.mode or "sequential",
                options=options,
            )
        filename = cache_cell_source(self._shell, f"# %%ring_kernel {line}\n{cell}")
        body = compile_body(args.name, cell, filename=filename, namespace=ns)
        opts = KernelOptions(
            queue_size=args.queue_size or KernelOptions.queue_size,
            input_type=in_t,
            output_type=out_t,
            backpressure=args.backpressure or KernelOptions.backpressure,  # type: ignore[arg-type]
            restart=args.restart or KernelOptions.restart,  # type: ignore[arg-type]
        )
        spec = RingKernelSpec(args.name, body, opts)
        _register(spec, replace=True)
        return spec

    def _type(self, expr: str | None, option: str) -> type | None:
        if expr is None:
            return None
        try:
            value = self._shell.ev(expr)
        except Exception as exc:
            raise MagicUsageError(
                f"{option} {expr}: {type(exc).__name__}: {exc}; define the @message class in "
                "the notebook before running this cell"
            ) from None
        if not isinstance(value, type):
            raise MagicUsageError(
                f"{option} {expr}: expected a class (a @message type), got {value!r}"
            )
        return value

    def _relaunch(self, session: NotebookSession, args: CellArgs, spec: Any, old: _Live) -> None:
        rt = session.runtime
        kid = args.name
        if old.kind != spec.kind:
            raise UsageError(
                f"ring kernel {kid!r} runs as a {old.kind} kernel; a "
                f"{spec.kind} cell cannot replace it in place. It keeps running; run "
                f"%ring terminate {kid}, then this cell again"
            )
        notes = []
        if spec.kind == "host":
            changed = _changed_options(old.options, spec.options)
            if changed:
                # A relaunch swaps the body only: mailboxes and policies stay as launched.
                spec = spec.with_options(**{k: getattr(old.options, k) for k in changed})
                notes.append(
                    f"options not applied by a relaunch: {', '.join(changed)} (run %ring "
                    f"terminate {kid}, then this cell, to apply them)"
                )
        queued = old.queued
        if not args.activate and old.state is S.ACTIVE:
            session.run(rt.deactivate(kid))
        try:
            result = session.run(rt.relaunch(kid, spec, timeout=args.timeout))
        except BaseException:
            print(
                f"ring kernel {kid!r}: the relaunch failed; it is {rt.state(kid).value}",
                file=sys.stderr,
            )
            raise
        if args.activate and rt.state(kid) in (S.LAUNCHED, S.DEACTIVATED):
            session.run(rt.activate(kid))
        redeploys = rt.telemetry(kid).redeploys
        notes.insert(0, f"{queued} queued message{'s' * (queued != 1)} kept, redeploy {redeploys}")
        print(self._line(kid, "relaunched on", result, rt.state(kid)) + "; " + "; ".join(notes))

    def _line(self, kid: str, verb: str, result: LaunchResult, state: KernelState) -> str:
        text = f"ring kernel {kid!r} {verb} {_where(result)}: {state.value}"
        if result.compile_s is not None:
            text += (
                " (compiled module from cache)"
                if result.cache_hit
                else f" (compiled in {result.compile_s:.2f} s)"
            )
        return text

    def _say_unchanged(self, kid: str, old: _Live | None, why: str) -> None:
        """Tell that a running kernel was left alone (a new id needs no such note)."""
        if old is not None:
            print(
                f"ring kernel {kid!r} was not changed: {why}; it keeps running its previous "
                f"body ({old.state.value})",
                file=sys.stderr,
            )

    # ------------------------------------------------------------------ %ring
    @_with_help(
        "Drive the notebook's ring kernels: status, send, receive, call, lifecycle, dashboard.",
        ring_help(),
    )
    @line_magic
    def ring(self, line: str) -> Any:
        try:
            cmd = parse_ring_line(line)
        except MagicUsageError as exc:
            raise UsageError(str(exc)) from None
        if cmd.name == "help":
            print(ring_help(cmd.topic))
            return None
        __tracebackhide__ = True
        handler = getattr(self, f"_ring_{cmd.name}")
        target = "" if cmd.kernel_id is None else f" {cmd.kernel_id}"
        try:
            with _short_interrupt(f"%ring {cmd.name}{target}: interrupted while waiting"):
                return handler(cmd)
        except PyDotComputeError as exc:
            raise short(self._shell, exc) from exc.__cause__

    def _message(self, cmd: RingCommand) -> Any:
        """Evaluate the message expression of ``send``/``call`` in the notebook."""
        assert cmd.expr is not None
        try:
            return self._shell.ev(cmd.expr)
        except SyntaxError as exc:
            raise UsageError(
                f"%ring {cmd.name} {cmd.kernel_id}: the message expression {cmd.expr!r} is not "
                f"valid Python ({exc.msg}); write it as you would on the right of 'msg = '"
            ) from None
        except Exception as exc:
            raise UsageError(
                f"%ring {cmd.name} {cmd.kernel_id}: evaluating the message expression "
                f"{cmd.expr!r} raised {type(exc).__name__}: {exc}"
            ) from None

    def _ring_status(self, cmd: RingCommand) -> None:
        snap = self.session.runtime.snapshot()
        if not snap.kernels:
            print("no ring kernels in the notebook runtime; define one with %%ring_kernel NAME")
            return
        print(snap.table())

    def _ring_send(self, cmd: RingCommand) -> None:
        assert cmd.kernel_id is not None
        msg = self._message(cmd)
        s = self.session
        what = type(msg).__name__
        mid = short_id(msg)
        if mid is not None:
            what += f" {mid}"
        if not s.run(s.runtime.send(cmd.kernel_id, msg, timeout=cmd.timeout)):
            print(
                f"ring kernel {cmd.kernel_id!r}: {what} was dropped (inbox full, "
                "backpressure drop_newest)",
                file=sys.stderr,
            )
            return
        print(f"sent {what} to ring kernel {cmd.kernel_id!r}")

    def _ring_receive(self, cmd: RingCommand) -> Any:
        assert cmd.kernel_id is not None
        s = self.session
        return s.run(s.runtime.receive(cmd.kernel_id, timeout=cmd.timeout))

    def _ring_call(self, cmd: RingCommand) -> Any:
        assert cmd.kernel_id is not None
        msg = self._message(cmd)
        s = self.session
        return s.run(s.runtime.call(cmd.kernel_id, msg, timeout=cmd.timeout))

    def _ring_activate(self, cmd: RingCommand) -> None:
        assert cmd.kernel_id is not None
        s = self.session
        s.run(s.runtime.activate(cmd.kernel_id))
        print(f"ring kernel {cmd.kernel_id!r}: {s.runtime.state(cmd.kernel_id).value}")

    def _ring_deactivate(self, cmd: RingCommand) -> None:
        assert cmd.kernel_id is not None
        s = self.session
        s.run(s.runtime.deactivate(cmd.kernel_id))
        print(f"ring kernel {cmd.kernel_id!r}: {s.runtime.state(cmd.kernel_id).value}")

    def _ring_terminate(self, cmd: RingCommand) -> None:
        assert cmd.kernel_id is not None
        s = self.session
        timeout = 5.0 if cmd.timeout is None else cmd.timeout
        r = s.run(s.runtime.terminate(cmd.kernel_id, timeout=timeout, drain=cmd.drain))
        how = "graceful" if r.graceful else f"cancelled after {timeout} s"
        print(
            f"ring kernel {cmd.kernel_id!r}: {s.runtime.state(cmd.kernel_id).value} ({how}, "
            f"{r.discarded} queued message{'s' * (r.discarded != 1)} discarded)"
        )

    def _ring_dashboard(self, cmd: RingCommand) -> Any:
        found = sorted(entry_points(group=DASHBOARD_ENTRY_POINTS), key=lambda ep: ep.name)
        if not found:
            print(_WIDGETS_MISSING, file=sys.stderr)
            return None
        try:
            make = found[0].load()
        except ImportError as exc:
            print(
                f"%ring dashboard: the dashboard {found[0].value!r} could not be imported "
                f"({type(exc).__name__}: {exc}); reinstall it: {widgets_hint()}",
                file=sys.stderr,
            )
            return None
        return make(self.session.runtime)


def _changed_options(old: KernelOptions, new: KernelOptions) -> list[str]:
    keys = ("queue_size", "input_queue_size", "output_queue_size", "input_type", "output_type",
            "backpressure", "restart", "max_restarts", "within")  # fmt: skip
    return [k for k in keys if getattr(old, k) != getattr(new, k)]
