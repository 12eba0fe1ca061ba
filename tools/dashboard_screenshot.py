"""Regenerate the dashboard's picture: docs/images/dashboard.png and tutorial 05's header.

Usage: ``python tools/dashboard_screenshot.py`` from the checkout. It runs the browser test
(``tests/widgets/test_browser.py``: JupyterLab in Debian's Chromium runs tutorial 05), which
saves the dashboard's picture where ``PYDOTCOMPUTE_DASHBOARD_PNG`` says, then stores that
picture as ``docs/images/dashboard.png`` and as the attachment the tutorial's first cell shows
(so the picture shows whether Jupyter's root is the repository or ``notebooks/``). Tests never
write into the checkout; this command is the only thing that updates the picture.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PICTURE = ROOT / "docs" / "images" / "dashboard.png"
NOTEBOOK = ROOT / "notebooks" / "05_dashboard.ipynb"
ATTACHMENT = "dashboard.png"


def attach(notebook: Path, png: bytes) -> None:
    """Store ``png`` as the attachment of the notebook's first cell."""
    nb = nbformat.read(notebook, as_version=4)
    cell = nb.cells[0]
    if f"attachment:{ATTACHMENT}" not in cell.source:
        raise SystemExit(f"{notebook}: the first cell does not show attachment:{ATTACHMENT}")
    cell["attachments"] = {ATTACHMENT: {"image/png": base64.b64encode(png).decode("ascii")}}
    nbformat.write(nb, notebook)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "dashboard.png"
        env = dict(
            os.environ, PYDOTCOMPUTE_DASHBOARD_PNG=str(shot), PYDOTCOMPUTE_REQUIRE_BROWSER="1"
        )
        test = "tests/widgets/test_browser.py"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            check=False,
        )
        if done.returncode != 0 or not shot.exists():
            print(f"the browser test failed; {PICTURE} is unchanged", file=sys.stderr)
            return 1
        png = shot.read_bytes()
    PICTURE.write_bytes(png)
    attach(NOTEBOOK, png)
    print(f"updated {PICTURE.relative_to(ROOT)} and the header of {NOTEBOOK.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
