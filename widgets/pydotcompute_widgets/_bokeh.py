"""Bokeh in Jupyter: BokehJS loaded inline (offline, CI, Binder) and plots as ipywidgets."""

from __future__ import annotations

import functools
import sys
from typing import Any

__all__ = ["bokeh_widget", "load_bokehjs"]

_loaded = False


def load_bokehjs(*, force: bool = False) -> bool:
    """Publish BokehJS inline into the notebook, once per kernel.

    Every :class:`Dashboard` calls this when it is created, so it is needed only after the
    page was reloaded while the kernel kept running (pass ``force=True``). The library is
    embedded in the output (no CDN): dashboards work without network access.

    Parameters
    ----------
    force:
        Publish it again even if this kernel already did.

    Returns
    -------
    bool
        Whether BokehJS was published (``False`` outside a Jupyter kernel, where there is no
        page to load it into, and when it was already loaded).
    """
    global _loaded
    if _loaded and not force:
        return False
    if not _in_kernel():
        return False
    from bokeh.io.notebook import load_notebook
    from bokeh.resources import Resources

    # The plots use only core BokehJS (no Bokeh widgets, tables, GL or MathJax): ~1 MB.
    load_notebook(Resources(mode="inline", components=["bokeh"]), hide_banner=True)
    _loaded = True
    return True


def _in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def bokeh_widget(layout: Any) -> Any:
    """Wrap a Bokeh layout in jupyter_bokeh's ``BokehModel`` widget (synced with the browser)."""
    return _plot_widget_class()(layout)


@functools.cache
def _plot_widget_class() -> type:
    from jupyter_bokeh.widgets import BokehModel

    class PlotWidget(BokehModel):  # type: ignore[misc]
        """``BokehModel`` whose ``close()`` may run twice.

        ipywidgets calls ``close()`` again from ``__del__`` after the dashboard closed the
        widget, and ``BokehModel.close()`` raises the second time.
        """

        def close(self) -> None:
            if not self.__dict__.get("_pdc_closed"):
                self.__dict__["_pdc_closed"] = True
                super().close()

        def resync(self) -> None:
            """Send the whole current document, re-rendering every view.

            Changes reach the browser as patches applied by each *existing* view: a view
            made later starts from the document as it was last sent in full. Call this when
            the plot's structure changed (a new line) and when it is displayed again.
            """
            self.update_from_model(self._model)

    return PlotWidget
