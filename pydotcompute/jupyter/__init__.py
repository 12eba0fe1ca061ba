"""IPython extension: the ``%%ring_kernel`` and ``%ring`` magics on one notebook runtime.

Load it in a notebook (or the IPython terminal) with ``%load_ext pydotcompute``. Importing
this package does not import IPython; the magics are imported when the extension is loaded.
See ``docs/articles/guides/notebooks-and-magics.md``.
"""

from __future__ import annotations

from typing import Any

from ._session import notebook_runtime, use_runtime
from ._tracebacks import CellSyntaxError

__all__ = [
    "CellSyntaxError",
    "load_ipython_extension",
    "notebook_runtime",
    "unload_ipython_extension",
    "use_runtime",
]

_RUNTIME_NAME = "runtime"


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and bind the notebook runtime to ``runtime`` in the notebook.

    The name ``runtime`` is left alone when the notebook already uses it for something
    else; :func:`notebook_runtime` always returns the notebook runtime.
    """
    from ._complete import install as install_completion
    from ._magics import RingMagics
    from ._progress import install as install_progress
    from ._session import current_session

    ipython.register_magics(RingMagics)
    install_completion(ipython, lambda: list(current_session().runtime.kernels))
    install_progress(ipython)
    session = current_session()
    rt = session.runtime
    existing = ipython.user_ns.get(_RUNTIME_NAME, rt)
    if existing is rt:
        ipython.push({_RUNTIME_NAME: rt})
    else:
        print(
            f"pydotcompute: {_RUNTIME_NAME!r} is already defined in this notebook and was left "
            "alone; the notebook runtime is pydotcompute.jupyter.notebook_runtime()"
        )
    _enable_asyncio_gui(ipython)


def _enable_asyncio_gui(ipython: Any) -> None:
    """In the IPython terminal, run the asyncio loop while waiting for input (``%gui asyncio``).

    Without it the loop only runs while a cell runs, and host ring kernels would stall at the
    prompt. Left alone when another GUI event loop is active or the prompt is the simple one.
    """
    if getattr(ipython, "pt_app", None) is None or getattr(ipython, "simple_prompt", True):
        return
    if ipython.active_eventloop not in (None, "asyncio"):
        return
    if ipython.active_eventloop is None:
        ipython.enable_gui("asyncio")


def unload_ipython_extension(ipython: Any) -> None:
    """Terminate the notebook runtime's kernels and unbind ``runtime`` (``%unload_ext``)."""
    from ._complete import uninstall as uninstall_completion
    from ._progress import uninstall as uninstall_progress
    from ._session import _session, shutdown_session

    uninstall_progress()

    if _session is not None and ipython.user_ns.get(_RUNTIME_NAME) is _session.runtime:
        del ipython.user_ns[_RUNTIME_NAME]
    magics = ipython.magics_manager.magics
    magics["cell"].pop("ring_kernel", None)
    magics["line"].pop("ring", None)
    uninstall_completion(ipython)
    shutdown_session()
