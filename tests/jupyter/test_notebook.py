"""The tutorial notebook, executed top to bottom by nbclient in a real kernel."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from ._kernel import STARTUP_TIMEOUT, plain, write_kernelspec

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04_magics.ipynb"


def tagged(nb: Any, tag: str) -> Any:
    return next(c for c in nb.cells if tag in c.metadata.get("tags", []))


def text_of(cell: Any) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "execute_result":
            parts.append(out.data["text/plain"])
        elif out.output_type == "error":
            parts.append(plain("\n".join(out.traceback)))
    return "".join(parts)


def test_tutorial_notebook_runs_and_shows_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    write_kernelspec(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))  # finds the test kernelspec there
    client = NotebookClient(
        nb,
        kernel_name="pydotcompute-test",
        timeout=60,
        startup_timeout=int(STARTUP_TIMEOUT),
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    assert text_of(tagged(nb, "launch")) == (
        "ring kernel 'summer' launched on host (cpu): ACTIVE\n"
    )
    assert text_of(tagged(nb, "receive")).startswith("ComputeResponse(result=15.0")
    assert text_of(tagged(nb, "await")) == "30.0"
    assert text_of(tagged(nb, "relaunch")) == (
        "ring kernel 'summer' relaunched on host (cpu): ACTIVE; 3 queued messages kept, "
        "redeploy 1\n"
    )
    assert text_of(tagged(nb, "after-relaunch")) == "[0.0, 10.0, 20.0]"
    status = text_of(tagged(nb, "status"))
    assert re.search(r"^summer\s+host:cpu\s+ACTIVE\b", status, re.M)
    assert re.search(r"^running\s+device:emulated\s+ACTIVE\b", status, re.M) or "cuda" in status
    assert text_of(tagged(nb, "cuda-launch")).startswith(
        "ring kernel 'running' launched on device ("
    )
    assert text_of(tagged(nb, "terminate")).startswith("ring kernel 'summer': TERMINATED")
