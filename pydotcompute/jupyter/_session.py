"""The notebook runtime: one ``RingKernelRuntime`` on IPython's event loop, per process.

In Jupyter (ipykernel) the loop is the kernel's own asyncio loop: it runs while the notebook
is idle, so host ring kernels keep working between cells, and top-level ``await`` in a cell
runs on it. In the IPython terminal it is IPython's asyncio loop (the one top-level
``await`` uses); the extension turns on ``%gui asyncio`` there so the loop also runs while
IPython waits for input.

Magics are synchronous: a magic that has to wait (``%ring receive``, a launch, a relaunch)
runs the loop until its coroutine is done. Inside Jupyter that loop is already running, so
the first such wait applies nest-asyncio2 to make it re-entrant (see
``docs/articles/guides/notebooks-and-magics.md`` for why nest-asyncio2 and not nest-asyncio).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from .._install import extra_hint
from ..errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    KernelStateError,
    PyDotComputeError,
)
from ..runtime import RingKernelRuntime

__all__ = [
    "NotebookSession",
    "current_session",
    "notebook_runtime",
    "shutdown_session",
    "use_runtime",
]

_ENDED = ("TERMINATED", "FAILED")

log = logging.getLogger("pydotcompute")

T = TypeVar("T")

_SHUTDOWN_TIMEOUT_S = 5.0
_session: NotebookSession | None = None


def _ipython_loop() -> asyncio.AbstractEventLoop:
    from IPython.core import async_helpers

    get_loop: Any = async_helpers.get_asyncio_loop
    loop: asyncio.AbstractEventLoop = get_loop()
    return loop


def _make_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Apply nest-asyncio2 to ``loop`` (once) so a magic can wait while it runs."""
    if getattr(type(loop), "_nest_asyncio2", None) is not None:
        return
    try:
        nest_asyncio2 = importlib.import_module("nest_asyncio2")
    except ImportError:
        raise BackendUnavailableError(
            "this magic has to wait for the notebook's running event loop, which needs the "
            f"nest-asyncio2 package: pip install nest-asyncio2 (or {extra_hint('jupyter')})"
        ) from None
    if getattr(type(loop), "_nest_patched", False):
        log.warning(
            "the notebook's event loop was already patched by nest_asyncio, which loses "
            "queued cells on ipykernel 7; pydotcompute's magics work best without it"
        )
    nest_asyncio2.apply(loop)


class NotebookSession:
    """The notebook runtime and the loop it runs on, for one IPython shell.

    Parameters
    ----------
    shell:
        The IPython shell (``None`` outside IPython, for tests that drive a loop directly).
    """

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self.runtime = RingKernelRuntime()
        self.closed = False

    def __repr__(self) -> str:
        return f"<NotebookSession {self.runtime!r}>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the runtime runs on (bound at first use: IPython's asyncio loop)."""
        return self.runtime.loop or _ipython_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the notebook loop from synchronous code and return its result.

        Other tasks on the loop (every host ring kernel) keep running meanwhile. On an
        interrupt (``KeyboardInterrupt``) the coroutine is cancelled and the interrupt is
        re-raised. Callers pass coroutines that are bounded by their own ``timeout``.
        """
        if self.closed:
            coro.close()
            raise PyDotComputeError(
                "the notebook runtime was shut down (the extension was unloaded); load it "
                "again with %load_ext pydotcompute"
            )
        loop = self.loop
        if loop.is_running():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                coro.close()
                raise PyDotComputeError(
                    "the notebook runtime's magics and notebook_runtime() must be used from "
                    "the notebook's own thread; from another thread use "
                    "asyncio.run_coroutine_threadsafe(coro, notebook_runtime().loop)"
                )
            _make_reentrant(loop)
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                # Interrupted while waiting: the loop processes the cancellation on its next
                # turn (right after the cell), so the wait leaves nothing behind.
                task.cancel()
            raise

    def shutdown(self, timeout: float | None = _SHUTDOWN_TIMEOUT_S) -> None:
        """Terminate every kernel of the notebook runtime (bounded by ``timeout`` each)."""
        if self.closed:
            return
        self.closed = True
        rt = self.runtime
        loop = rt.loop
        if loop is None or rt.closed:
            return
        if loop.is_closed():
            log.warning(
                "the notebook's event loop closed before its ring kernels were terminated; "
                "host kernels ended with it"
            )
            return
        if loop.is_running():
            _make_reentrant(loop)
        loop.run_until_complete(loop.create_task(rt.shutdown(timeout=timeout)))


def current_session() -> NotebookSession:
    """The session of this process, created (unbound to any loop yet) at first call."""
    global _session
    if _session is None or _session.closed:
        try:
            from IPython import get_ipython
        except ImportError:
            raise BackendUnavailableError(
                f"the notebook runtime needs IPython: {extra_hint('jupyter')}"
            ) from None
        shell = get_ipython()
        _session = NotebookSession(shell)
        if not _atexit_registered:
            _register_atexit()
    return _session


_atexit_registered = False


def _register_atexit() -> None:
    global _atexit_registered
    _atexit_registered = True
    # atexit runs handlers last-registered first: this one runs before IPython's and
    # ipykernel's own exit handlers, while the loop can still run the shutdown.
    atexit.register(_shutdown_at_exit)


def _shutdown_at_exit() -> None:
    if _session is not None:
        try:
            _session.shutdown()
        except Exception:
            log.exception("error while terminating the notebook's ring kernels at exit")


def shutdown_session(timeout: float | None = _SHUTDOWN_TIMEOUT_S) -> None:
    """Terminate the notebook runtime's kernels and forget it (used by ``%unload_ext``)."""
    global _session
    session, _session = _session, None
    if session is not None:
        session.shutdown(timeout)


def notebook_runtime() -> RingKernelRuntime:
    """Return the notebook's ring kernel runtime (the one ``%%ring_kernel`` launches on).

    It runs on IPython's event loop; use it from cells with top-level ``await``::

        rt = notebook_runtime()
        await rt.send("summer", ComputeRequest(values=[1, 2, 3]))
        reply = await rt.receive("summer", timeout=5)

    ``%load_ext pydotcompute`` also binds it to the name ``runtime`` in the notebook.

    Raises
    ------
    BackendUnavailableError
        IPython is not installed.
    """
    return current_session().runtime


def use_runtime(runtime: RingKernelRuntime) -> RingKernelRuntime:
    """Make ``runtime`` the notebook runtime: the one ``%%ring_kernel`` and ``%ring`` drive.

    For a runtime made with other arguments, a cluster runtime above all::

        from pydotcompute.cluster import RayCluster
        use_runtime(RingKernelRuntime(cluster=RayCluster(num_cpus=2)))
        %ring status     # lists the cluster's kernels, with the node each runs on

    The name ``runtime`` in the notebook follows (unless the notebook uses it for something
    else). Returns ``runtime``.

    Raises
    ------
    InvalidArgumentError
        ``runtime`` is not a ``RingKernelRuntime``.
    KernelStateError
        The current notebook runtime still runs kernels (terminate them first), or
        ``runtime`` was shut down.
    """
    if not isinstance(runtime, RingKernelRuntime):
        raise InvalidArgumentError(
            f"use_runtime() takes a RingKernelRuntime, got {type(runtime).__name__}; "
            "pass e.g. RingKernelRuntime(cluster=RayCluster())"
        )
    if runtime.closed:
        raise KernelStateError(
            "use_runtime(): this RingKernelRuntime was shut down; create a new one"
        )
    session = current_session()
    old = session.runtime
    if old is runtime:
        return runtime
    live = sorted(k for k in old.kernels if old.state(k).value not in _ENDED)
    if live:
        raise KernelStateError(
            f"use_runtime(): the notebook runtime still runs {', '.join(map(repr, live))}; "
            "terminate them first (%ring terminate ID), then switch runtimes"
        )
    session.runtime = runtime
    shell = session.shell
    if shell is not None and shell.user_ns.get("runtime") is old:
        shell.push({"runtime": runtime})
    return runtime
