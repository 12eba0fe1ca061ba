"""The pydotcompute_widgets surface: exports documented, core untouched by it."""

from __future__ import annotations

import subprocess
import sys

import pydotcompute_widgets


def test_all_is_sorted_and_every_name_is_documented() -> None:
    names = [n for n in pydotcompute_widgets.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in names:
        assert (getattr(pydotcompute_widgets, name).__doc__ or "").strip(), name


def test_importing_the_widgets_does_not_load_bokehjs_or_a_kernel() -> None:
    code = (
        "import sys, pydotcompute_widgets as w; print(w.load_bokehjs(), 'ipykernel' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.split() == ["False", "False"]
