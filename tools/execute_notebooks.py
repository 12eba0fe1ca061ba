"""Re-execute tutorial notebooks in place so their stored outputs match the code.

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


def execute(path: Path, timeout: int) -> None:
    """Run one notebook and write it back with its outputs."""
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
    client.execute()
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
