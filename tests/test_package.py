"""The package surface: light import, exports, and the error family."""

from __future__ import annotations

import subprocess
import sys

import pydotcompute
from pydotcompute import errors


def test_import_needs_only_numpy_and_msgpack() -> None:
    code = (
        "import sys, pydotcompute; "
        "heavy = [m for m in ('cupy', 'numba', 'IPython', 'ipywidgets', 'bokeh', "
        "'pydotcompute_widgets') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "[]"


def test_all_is_sorted_and_every_name_is_documented() -> None:
    names = [n for n in pydotcompute.__all__ if n != "__version__"]
    assert names == sorted(names, key=str.lower) or names == sorted(names)
    for name in names:
        obj = getattr(pydotcompute, name)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_every_error_derives_from_the_family() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, pydotcompute.PyDotComputeError)
        assert getattr(pydotcompute, name) is cls
    assert issubclass(pydotcompute.ReceiveTimeoutError, TimeoutError)
    assert issubclass(pydotcompute.KernelNotFoundError, LookupError)
    assert issubclass(pydotcompute.MessageValidationError, ValueError)
