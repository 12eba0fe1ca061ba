"""How to install an optional part of PyDotCompute, said the same way everywhere.

PyDotCompute installs from a checkout (``pip install -e .``): the ``pydotcompute`` name on PyPI
belongs to an unrelated earlier port (0.2.0), so messages never suggest installing
``pydotcompute`` by name (with or without extras): that would install the other project.
"""

from __future__ import annotations

__all__ = ["extra_hint", "widgets_hint"]

#: The extra of each CUDA toolchain: one CuPy wheel each (they cannot be installed together).
CUDA_EXTRAS = {12: "cuda", 13: "cuda13"}


def extra_hint(extra: str) -> str:
    """The command that installs one extra (``cuda``, ``cuda13``, ``jupyter``, ``dev``, ``docs``).

    For ``cuda`` it names both toolchains' extras: ``cuda`` (CUDA 12) and ``cuda13``.
    """
    if extra == "cuda":
        return (
            'pip install -e ".[cuda]" (CUDA 12 driver) or -e ".[cuda13]" (CUDA 13 driver) '
            "in a PyDotCompute checkout"
        )
    return f'pip install -e ".[{extra}]" in a PyDotCompute checkout'


def widgets_hint() -> str:
    """The command that installs the dashboard distribution."""
    return "pip install -e ./widgets in a PyDotCompute checkout"
