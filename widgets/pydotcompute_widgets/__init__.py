"""pydotcompute-widgets: the live JupyterLab dashboard of PyDotCompute ring kernels.

``Dashboard(runtime)`` shows every kernel of a runtime (table, streaming Bokeh plots, the
accelerator's telemetry) with controls. Its parts are components with ``root`` (the widget
or Bokeh layout) and ``update(snapshot)``, to lay out in your own widgets.
"""

from ._bokeh import load_bokehjs
from ._controls import Controls
from ._dashboard import Dashboard
from ._device import DevicePanel, DeviceReading, read_device
from ._errors import DashboardError
from ._form import build_message, form_fields
from ._plots import KernelPlots
from ._table import KernelTable
from ._version import __version__

__all__ = [
    "Controls",
    "Dashboard",
    "DashboardError",
    "DevicePanel",
    "DeviceReading",
    "KernelPlots",
    "KernelTable",
    "__version__",
    "build_message",
    "form_fields",
    "load_bokehjs",
    "read_device",
]
