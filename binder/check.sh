#!/usr/bin/env bash
# Build the Binder environment from binder/ in a fresh virtual environment, the way repo2docker
# does (requirements.txt, then postBuild from the repository root), and run the quickstart
# notebook and tutorial 10 in it with nbclient. Run from anywhere: `bash binder/check.sh`
# (or name notebooks: `bash binder/check.sh notebooks/05_dashboard.ipynb`). Used by .ci/run.
#
# What repo2docker does and this cannot: runtime.txt and apt.txt are checked against this
# machine (the Python in use must be the same minor version, the apt packages installed)
# rather than installed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binder="$root/binder"
# The quickstart, and tutorial 10 (a local Ray cluster: Binder must be able to start one).
if [ $# -gt 0 ]; then notebooks=("$@"); else
    notebooks=(notebooks/01_quickstart.ipynb notebooks/10_scaling_out.ipynb)
fi
python=${PYTHON:-python3}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pydotcompute-binder.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

want=$(sed -n 's/^python-\([0-9]*\.[0-9]*\).*/\1/p' "$binder/runtime.txt")
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want" != "$have" ]; then
    echo "binder/runtime.txt asks for Python $want but $python is $have; set PYTHON=python$want" >&2
    exit 1
fi

if command -v dpkg-query >/dev/null; then
    while read -r pkg; do
        [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            echo "binder/apt.txt lists $pkg, which is not installed here: apt-get install $pkg" >&2
            exit 1
        fi
    done <"$binder/apt.txt"
fi

echo "binder: fresh virtual environment in $tmp/venv (Python $have)"
"$python" -m venv "$tmp/venv"
export PATH="$tmp/venv/bin:$PATH"
export VIRTUAL_ENV="$tmp/venv"
python -m pip install -q --upgrade pip
python -m pip install -q -r "$binder/requirements.txt"
export PIP_QUIET=1  # postBuild as Binder runs it, with less output
(cd "$root" && bash "$binder/postBuild")

# The JupyterLab that Binder opens must see the widget extensions the dashboard needs.
extensions=$(jupyter labextension list 2>&1)
for ext in "@jupyter-widgets/jupyterlab-manager" "@bokeh/jupyter_bokeh"; do
    if ! grep -q "$ext" <<<"$extensions"; then
        echo "JupyterLab in the Binder environment lacks the $ext extension:" >&2
        echo "$extensions" >&2
        exit 1
    fi
done

cd "$root"
for notebook in "${notebooks[@]}"; do
    echo "binder: running $notebook"
    python - "$notebook" "$tmp/executed.ipynb" <<'EOF'
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

source, target = Path(sys.argv[1]), Path(sys.argv[2])
nb = nbformat.read(source, as_version=4)
client = NotebookClient(
    nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
)
client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
nbformat.write(nb, target)
cells = sum(1 for c in nb.cells if c.cell_type == "code")
print(f"binder: {source} ran: {cells} code cells, no errors")
EOF
done
