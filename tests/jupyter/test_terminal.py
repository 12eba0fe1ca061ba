"""The extension in a real IPython terminal (prompt_toolkit on a pseudo-terminal)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._kernel import wait_until

pexpect = pytest.importorskip("pexpect")

IPYTHON = shutil.which("ipython", path=str(Path(sys.executable).parent))
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[=>])")
TIMEOUT = 60


def screen(text: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return _ESCAPES.sub("", text).replace("\r", "")


class Terminal:
    """An ``ipython`` process on a pseudo-terminal, typed into like a person would."""

    def __init__(self, cwd: Path) -> None:
        env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
        self.count = 1
        args = ["--no-banner", "--no-autoindent", "--colors=nocolor", "--no-confirm-exit"]
        self.child: Any = pexpect.spawn(
            IPYTHON,
            [*args, "--HistoryManager.enabled=False"],
            cwd=str(cwd),
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(60, 200),
        )
        self.child.expect(r"In \[1\]:")

    def run(self, *lines: str) -> str:
        """Type a cell (Esc-Enter runs a multi-line one) and return what it printed."""
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            self.child.send(line + ("\x1b\r" if last and len(lines) > 1 else "\r"))
        self.count += 1
        self.child.expect(rf"In \[{self.count}\]:")
        out = screen(self.child.before)
        # What follows the echo of the last typed line is the cell's output.
        return out.rsplit(lines[-1], 1)[-1].strip()

    def close(self) -> int:
        self.child.send("exit\r")
        self.child.expect(pexpect.EOF)
        self.child.close()
        status: int = self.child.exitstatus
        return status


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if IPYTHON is None:
        pytest.skip("the ipython command is not installed next to this interpreter")
    t = Terminal(tmp_path)
    try:
        yield t
    finally:
        if t.child.isalive():
            t.child.terminate(force=True)


def test_magics_work_in_the_ipython_terminal_and_actors_run_at_the_prompt(
    terminal: Terminal, tmp_path: Path
) -> None:
    assert terminal.run("%load_ext pydotcompute") == ""
    launched = terminal.run(
        "%%ring_kernel twice",
        "while not ctx.should_terminate:",
        "    await ctx.send(2 * await ctx.receive())",
    )
    assert launched == "ring kernel 'twice' launched on host (cpu): ACTIVE"
    terminal.run("%ring send twice 21")
    assert terminal.run("%ring receive twice --timeout 10") == "Out[4]: 42"
    assert terminal.run("await runtime.send('twice', 5)") == "Out[5]: True"
    assert terminal.run("await runtime.receive('twice', timeout=10)") == "Out[6]: 10"

    beat_file = tmp_path / "beats"
    terminal.run(f"from pathlib import Path; beat_file = Path({str(beat_file)!r})")
    terminal.run(
        "%%ring_kernel ticker",
        "import asyncio",
        "beat = 0",
        "while not ctx.should_terminate:",
        "    beat += 1",
        "    beat_file.write_text(str(beat))",
        "    await asyncio.sleep(0.01)",
    )

    def beats() -> int:
        text = beat_file.read_text() if beat_file.exists() else ""
        return int(text) if text else 0

    # Nothing is typed from here: IPython waits at its prompt, running the asyncio loop.
    start = beats()
    wait_until(lambda: beats() >= start + 20, 30.0, "20 heartbeats at the IPython prompt")
    assert "TERMINATED (graceful" in terminal.run("%ring terminate ticker")
    assert terminal.close() == 0
