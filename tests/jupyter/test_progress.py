"""A device kernel built in a notebook cell shows "compiling ..." in that cell while it builds.

Driven through a real ipykernel: the display is created empty, shows the build while it runs and
is emptied when it ends (so stored notebooks do not depend on the cache).
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pydotcompute.backends.device._compile import find_cxx

from ._kernel import Kernel

pytestmark = pytest.mark.skipif(find_cxx() is None, reason="the emulated device needs g++/clang++")

SETUP = """\
%load_ext pydotcompute
import numpy as np
from pydotcompute import message

@message
class Num:
    x: np.float32

@message
class Twice:
    y: np.float32
"""
CELL = "%%ring_kernel twice --cuda --in Num --out Twice\nout.y = 2.0f * msg.x;\n"


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    saved = os.environ.get("PYDOTCOMPUTE_CACHE_DIR")
    os.environ["PYDOTCOMPUTE_CACHE_DIR"] = str(tmp_path / "cache")  # the kernel inherits it
    try:
        k = Kernel(tmp_path)
    finally:
        if saved is None:
            del os.environ["PYDOTCOMPUTE_CACHE_DIR"]
        else:
            os.environ["PYDOTCOMPUTE_CACHE_DIR"] = saved
    try:
        k.run(SETUP).expect_ok()
        yield k
    finally:
        k.shutdown()


def _displays(kernel: Kernel, code: str, timeout: float = 300) -> list[tuple[str, str, dict]]:
    """(message type, display id, data) of each display message of one cell, in order."""
    msg_id = kernel.submit(code)
    found: list[tuple[str, str, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kernel.client.get_iopub_msg(timeout=deadline - time.monotonic())
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            return found
        if kind == "error":
            pytest.fail(f"cell failed: {content['ename']}: {content['evalue']}")
        if kind in ("display_data", "update_display_data"):
            display_id = content.get("transient", {}).get("display_id", "")
            found.append((kind, display_id, content["data"]))
    raise TimeoutError(f"cell did not finish within {timeout} s")


def test_a_device_build_shows_its_progress_in_the_cell(kernel: Kernel) -> None:
    compiled = _displays(kernel, CELL)
    assert [(kind, data.get("text/plain", "")[:40]) for kind, _, data in compiled] == [
        ("display_data", ""),
        ("update_display_data", "compiling: ring kernel 'twice' for the e"),
        ("update_display_data", ""),
    ]
    assert len({display_id for _, display_id, _ in compiled}) == 1
    shown = compiled[1][2]
    assert shown["text/html"].startswith('<div style="color:#777">&#8987; compiling: ring')
    assert compiled[0][2] == compiled[2][2] == {}  # nothing left behind in the stored cell

    # The same source again relaunches it: the build now comes from the cache.
    cached = _displays(kernel, CELL)
    assert cached[1][2]["text/plain"].startswith("loading from the cache: ring kernel 'twice'")
    assert cached[2][2] == {}
    reply = kernel.run("reply = %ring call twice Num(x=3) --timeout 20\nfloat(reply.y)")
    assert reply.expect_ok().result == "6.0"


def test_a_kernel_variant_shows_its_build_in_the_cell(kernel: Kernel) -> None:
    pytest.importorskip("numba", reason="@kernel needs Numba")
    code = (
        "from pydotcompute import kernel\n"
        "@kernel(parallel=False)\n"
        "def bump(i, x):\n"
        "    x[i] += 1.0\n"
        "x = np.zeros(3)\n"
        "bump(x)\n"
    )
    shown = _displays(kernel, code)
    texts = [data.get("text/plain", "") for _, _, data in shown]
    assert texts[0] == texts[2] == ""
    assert texts[1].startswith("compiling, unless it is in the disk cache: @kernel bump for the")
    assert kernel.run("x.tolist()").expect_ok().result == "[1.0, 1.0, 1.0]"
