"""The dashboard's error: bad dashboard arguments and send-form values."""

from __future__ import annotations

from pydotcompute import PyDotComputeError

__all__ = ["DashboardError"]


class DashboardError(PyDotComputeError, ValueError):
    """A dashboard argument or a value typed into the send form is not usable."""
