"""The ``%%ring_kernel`` cell magic and the ``%ring`` line magic."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from .._install import widgets_hint
from ..backends.host import LaunchResult
from ..errors import KernelRegistrationError, PyDotComputeError
from ..ring._options import KernelOptions
from ..ring._spec import RingKernelSpec, _register
from ..ring._state import KernelState
from ._args import (
    RING_HELP,
    RING_KERNEL_USAGE,
    CellArgs,
    MagicUsageError,
    RingCommand,
    parse_cell_args,
    parse_ring_line,
    ring_kernel_help,
)
from ._cell import cache_cell_source, compile_body, device_spec
from ._session import NotebookSession, current_session

__all__ = ["RingMagics"]

S = KernelState
_REPLACEABLE = frozenset({S.LAUNCHED, S.ACTIVE, S.DEACTIVATED, S.FAILED})
_WIDGETS_MISSING = (
    "%ring dashboard needs the pydotcompute-widgets package (ipywidgets + Bokeh), which is not "
    f"installed: {widgets_hint()}, then run %ring dashboard again"
)


def _where(result: LaunchResult) -> str:
    return f"{result.backend} ({result.device})"


_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def _strip_traceback(exc: BaseException) -> BaseException:
    """Drop the frames inside the library (runtime, event loop) from an error we raise.

    What users need is the message and, for a failed kernel, the cause: the body's own
    traceback, kept from its first frame outside pydotcompute (the cell).
    """
    cause = exc.__cause__
    tb = None if cause is None else cause.__traceback__
    while tb is not None and tb.tb_next is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            break
        tb = tb.tb_next
    if cause is not None and tb is not None:
        cause.__traceback__ = tb
    return exc.with_traceback(None)


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
    @cell_magic
    def ring_kernel(self, line: str, cell: str) -> None:
        """Define a ring kernel from the cell and launch it (hot relaunch when re-run).

        ``%%ring_kernel NAME [--queue-size N] [--in TYPE] [--out TYPE] [--backpressure
        POLICY] [--restart POLICY] [--no-activate] [--timeout S] [--cuda] [--state TYPE]
        [--mode sequential|parallel]``

        The cell body is the actor's body: ``ctx`` is in scope, ``await`` is allowed and
        names from the notebook are visible. With ``--cuda`` it is the CUDA handler body of
        a device ring kernel. See ``%%ring_kernel --help``.
        """
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
            raise exc.with_traceback(None) from None
        except (MagicUsageError, KernelRegistrationError) as exc:
            self._say_unchanged(args.name, old, "the cell's definition is invalid")
            raise UsageError(f"{exc}\n{RING_KERNEL_USAGE}") from None
        except PyDotComputeError as exc:
            self._say_unchanged(args.name, old, "the kernel could not be defined")
            raise _strip_traceback(exc) from exc.__cause__
        try:
            if old is None:
                self._launch(session, args, spec)
            else:
                self._relaunch(session, args, spec, old)
        except PyDotComputeError as exc:
            raise _strip_traceback(exc) from exc.__cause__

    def _launch(self, session: NotebookSession, args: CellArgs, spec: RingKernelSpec) -> None:
        rt = session.runtime
        result = session.run(rt.launch(args.name, func=spec))
        if args.activate:
            session.run(rt.activate(args.name))
        print(self._line(args.name, "launched on", result, rt.state(args.name)))

    def _live_kernel(self, kernel_id: str) -> Any:
        k = self.session.runtime._kernels.get(kernel_id)
        return k if k is not None and k.state in _REPLACEABLE else None

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

    def _relaunch(self, session: NotebookSession, args: CellArgs, spec: Any, old: Any) -> None:
        rt = session.runtime
        kid = args.name
        if old.spec.kind != spec.kind:
            raise UsageError(
                f"ring kernel {kid!r} runs as a {old.spec.kind} kernel; a "
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
        queued = len(old.inbox)
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

    def _say_unchanged(self, kid: str, old: Any, why: str) -> None:
        """Tell that a running kernel was left alone (a new id needs no such note)."""
        if old is not None:
            print(
                f"ring kernel {kid!r} was not changed: {why}; it keeps running its previous "
                f"body ({old.state.value})",
                file=sys.stderr,
            )

    # ------------------------------------------------------------------ %ring
    @line_magic
    def ring(self, line: str) -> Any:
        """Drive the notebook's ring kernels: status, send, receive, call, lifecycle, dashboard.

        Run ``%ring --help`` for the subcommands.
        """
        try:
            cmd = parse_ring_line(line)
        except MagicUsageError as exc:
            raise UsageError(str(exc)) from None
        if cmd.name == "help":
            print(RING_HELP)
            return None
        __tracebackhide__ = True
        handler = getattr(self, f"_ring_{cmd.name}")
        try:
            return handler(cmd)
        except PyDotComputeError as exc:
            raise _strip_traceback(exc) from exc.__cause__

    def _ring_status(self, cmd: RingCommand) -> None:
        snap = self.session.runtime.snapshot()
        if not snap.kernels:
            print("no ring kernels in the notebook runtime; define one with %%ring_kernel NAME")
            return
        print(snap.table())

    def _ring_send(self, cmd: RingCommand) -> None:
        assert cmd.kernel_id is not None and cmd.expr is not None
        msg = self._shell.ev(cmd.expr)
        s = self.session
        if not s.run(s.runtime.send(cmd.kernel_id, msg, timeout=cmd.timeout)):
            print(
                f"ring kernel {cmd.kernel_id!r}: the message was dropped (inbox full, "
                "backpressure drop_newest)",
                file=sys.stderr,
            )

    def _ring_receive(self, cmd: RingCommand) -> Any:
        assert cmd.kernel_id is not None
        s = self.session
        return s.run(s.runtime.receive(cmd.kernel_id, timeout=cmd.timeout))

    def _ring_call(self, cmd: RingCommand) -> Any:
        assert cmd.kernel_id is not None and cmd.expr is not None
        msg = self._shell.ev(cmd.expr)
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
        try:
            widgets = importlib.import_module("pydotcompute_widgets")
        except ImportError:
            print(_WIDGETS_MISSING, file=sys.stderr)
            return None
        return widgets.Dashboard(self.session.runtime)


def _changed_options(old: KernelOptions, new: KernelOptions) -> list[str]:
    keys = ("queue_size", "input_queue_size", "output_queue_size", "input_type", "output_type",
            "backpressure", "restart", "max_restarts", "within")  # fmt: skip
    return [k for k in keys if getattr(old, k) != getattr(new, k)]
