"""The package surface: light import, exports, and the error family."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pydotcompute
from pydotcompute import errors
from pydotcompute._install import extra_hint, widgets_hint


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


ROOT = Path(__file__).resolve().parents[1]
# What installs the unrelated earlier port from PyPI instead of this project.
WRONG_HINTS = re.compile(r"pip install ['\"]?pydotcompute(\[|['\"\s]|$)|pydotcompute\[\w+\]")


def _pyproject(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def test_version_is_above_the_earlier_port_on_pypi() -> None:
    major, minor, patch = (int(x) for x in pydotcompute.__version__.split("."))
    assert (major, minor, patch) > (0, 2, 0)


def test_widgets_require_exactly_this_core() -> None:
    deps = _pyproject(ROOT / "widgets" / "pyproject.toml")["project"]["dependencies"]
    core = [d for d in deps if d.startswith("pydotcompute")]
    assert core == [f"pydotcompute=={pydotcompute.__version__}"]
    from pydotcompute_widgets import __version__ as widgets_version

    assert widgets_version == pydotcompute.__version__


@pytest.mark.parametrize("folder", [".", "widgets"])
def test_license_is_an_spdx_string_with_the_license_file(folder: str) -> None:
    meta = _pyproject(ROOT / folder / "pyproject.toml")
    project = meta["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / folder / "LICENSE").read_text().startswith("MIT License")
    assert "License ::" not in " ".join(project["classifiers"])  # PEP 639: no both
    assert meta["build-system"]["requires"] == ["setuptools>=77"]
    assert set(project["urls"]) >= {"Homepage", "Repository", "Issues", "Documentation"}


def test_install_hints_never_name_the_earlier_port() -> None:
    files = [ROOT / "README.md", *ROOT.glob("notebooks/*.ipynb")]
    for folder in ("pydotcompute", "widgets", "docs", "binder", "examples"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".txt"}]
    wrong = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if WRONG_HINTS.search(line)
    ]
    assert wrong == []


def test_extra_hint_is_the_command_that_works_from_a_checkout() -> None:
    assert extra_hint("jupyter") == 'pip install -e ".[jupyter]" in a PyDotCompute checkout'
    assert extra_hint("cuda") == (
        'pip install -e ".[cuda]" (CUDA 12 driver) or -e ".[cuda13]" (CUDA 13 driver) '
        "in a PyDotCompute checkout"
    )
    assert widgets_hint() == "pip install -e ./widgets in a PyDotCompute checkout"
