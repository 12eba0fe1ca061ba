"""Re-execute tutorial notebooks in place so their stored outputs match the code.

Outputs that only load JavaScript libraries are dropped before saving (see below).

Usage: ``python tools/execute_notebooks.py [notebooks/01_quickstart.ipynb ...]`` (default: all
of ``notebooks/*.ipynb``). Each notebook runs top to bottom in a fresh ``python3`` kernel from
the ``notebooks/`` directory; a cell that raises stops that notebook with the error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

# Outputs that only load JavaScript libraries (BokehJS, inlined so dashboards work offline) are
# code, not content: they are not stored (a stored copy would add megabytes to the notebook).
LIBRARY_MIME_TYPES = {"application/javascript", "application/vnd.bokehjs_load.v0+json"}


def _is_library_code(output: dict) -> bool:
    data = output.get("data", {})
    return (
        output.get("output_type") == "display_data"
        and bool(data)
        and (set(data) <= LIBRARY_MIME_TYPES)
    )


def execute(path: Path, timeout: int) -> None:
    """Run one notebook and write it back with its outputs."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)  # widget state of an earlier run
    resources = {"metadata": {"path": str(path.parent)}}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources=resources,
        store_widget_state=False,  # widgets are live in JupyterLab; pictures show them elsewhere
    )
    client.execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_library_code(o)]
    nbformat.write(nb, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"executing {path}", flush=True)
        execute(path, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
