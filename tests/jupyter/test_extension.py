"""Loading and unloading the extension in an in-process IPython shell (no running loop).

This is the IPython terminal's situation: between cells the loop is not running, so magics
run it directly and nest-asyncio2 is not needed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pydotcompute import (
    InvalidArgumentError,
    KernelState,
    KernelStateError,
    RingKernelRuntime,
)
from pydotcompute.jupyter import _session, notebook_runtime, use_runtime

pytest.importorskip("IPython")


@pytest.fixture
def shell() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.user_ns.pop("runtime", None)
    yield ip
    if "pydotcompute" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "pydotcompute")
    ip.user_ns.pop("runtime", None)


def run(ip: Any, code: str) -> Any:
    result = ip.run_cell(code)
    result.raise_error()
    return result.result


def test_importing_the_extension_package_does_not_import_ipython() -> None:
    code = "import sys, pydotcompute.jupyter; print('IPython' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def test_load_registers_the_magics_and_binds_runtime(shell: Any) -> None:
    shell.run_line_magic("load_ext", "pydotcompute")
    magics = shell.magics_manager.magics
    assert "ring_kernel" in magics["cell"] and "ring" in magics["line"]
    assert shell.user_ns["runtime"] is notebook_runtime()


def test_a_notebook_name_runtime_is_left_alone(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.user_ns["runtime"] = "mine"
    shell.run_line_magic("load_ext", "pydotcompute")
    assert shell.user_ns["runtime"] == "mine"
    assert "'runtime' is already defined in this notebook and was left alone" in (
        capsys.readouterr().out
    )


def test_magics_run_the_loop_themselves_when_it_is_not_running(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("load_ext", "pydotcompute")
    run(
        shell,
        "%%ring_kernel twice\nwhile not ctx.should_terminate:\n"
        "    await ctx.send(2 * await ctx.receive())\n",
    )
    assert capsys.readouterr().out == "ring kernel 'twice' launched on host (cpu): ACTIVE\n"
    run(shell, "%ring send twice 21")
    assert run(shell, "%ring receive twice --timeout 5") == 42
    loop = notebook_runtime().loop
    assert loop is not None and not loop.is_running()
    assert getattr(type(loop), "_nest_asyncio2", None) is None  # no re-entrance was needed


def test_unload_terminates_the_kernels_and_removes_the_magics(shell: Any) -> None:
    shell.run_line_magic("load_ext", "pydotcompute")
    run(shell, "%%ring_kernel idle\nawait ctx.receive()\n")
    rt = notebook_runtime()
    shell.run_line_magic("unload_ext", "pydotcompute")
    assert rt.state("idle") is KernelState.TERMINATED
    assert rt.closed
    assert "runtime" not in shell.user_ns
    assert "ring" not in shell.magics_manager.magics["line"]
    assert _session._session is None

    shell.run_line_magic("load_ext", "pydotcompute")
    assert notebook_runtime() is not rt
    assert shell.user_ns["runtime"] is notebook_runtime()


def test_use_runtime_makes_the_magics_drive_another_runtime(shell: Any) -> None:
    shell.run_line_magic("load_ext", "pydotcompute")
    run(shell, "%%ring_kernel idle\nawait ctx.receive()\n")
    mine = RingKernelRuntime()
    with pytest.raises(KernelStateError, match=r"still runs 'idle'; terminate them first"):
        use_runtime(mine)
    assert notebook_runtime() is not mine  # refused: nothing changed
    run(shell, "%ring terminate idle")
    assert use_runtime(mine) is mine
    assert notebook_runtime() is mine and shell.user_ns["runtime"] is mine
    run(
        shell,
        "%%ring_kernel twice\nwhile not ctx.should_terminate:\n"
        "    await ctx.send(2 * await ctx.receive())\n",
    )
    assert mine.kernels == ("twice",)
    run(shell, "%ring send twice 4")
    assert run(shell, "%ring receive twice --timeout 5") == 8


def test_use_runtime_refuses_what_is_not_a_runtime() -> None:
    with pytest.raises(InvalidArgumentError, match="takes a RingKernelRuntime, got str"):
        use_runtime("runtime")  # type: ignore[arg-type]
