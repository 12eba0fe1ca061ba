"""How to install an optional part of PyDotCompute, said the same way everywhere.

PyDotCompute installs from a checkout (``pip install -e .``): the ``pydotcompute`` name on PyPI
belongs to an unrelated earlier port (0.2.0), so messages never suggest installing
``pydotcompute`` by name (with or without extras): that would install the other project.
"""

from __future__ import annotations

__all__ = ["extra_hint", "widgets_hint"]


def extra_hint(extra: str) -> str:
    """The command that installs one extra (``cuda``, ``jupyter``, ``dev``, ``docs``)."""
    return f'pip install -e ".[{extra}]" in a PyDotCompute checkout'


def widgets_hint() -> str:
    """The command that installs the dashboard distribution."""
    return "pip install -e ./widgets in a PyDotCompute checkout"
