"""A real Jupyter kernel (ipykernel through jupyter_client) for tests, with bounded waits."""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

STARTUP_TIMEOUT = 120.0  # kernel startup is slow on a busy 2-core machine
CELL_TIMEOUT = 60.0
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """Text without ANSI colour codes."""
    return _ANSI.sub("", text)


@dataclass
class Outcome:
    """What one executed cell produced."""

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    ename: str | None = None
    evalue: str = ""
    traceback: str = ""
    displays: list[dict[str, Any]] = field(default_factory=list)
    count: int | None = None  # the cell's execution count (In[count])
    pages: list[str] = field(default_factory=list)  # what the cell paged (e.g. %ring?)

    @property
    def ok(self) -> bool:
        return self.ename is None

    def expect_ok(self) -> Outcome:
        assert self.ok, f"cell failed: {self.ename}: {self.evalue}\n{self.traceback}"
        return self


def write_kernelspec(directory: Path) -> Path:
    """A kernelspec running ipykernel with this test run's interpreter."""
    spec = directory / "kernels" / "pydotcompute-test"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "pydotcompute test", "language": "python"})
    )
    return directory / "kernels"


class Kernel:
    """One ipykernel process and a blocking client; ``run(code)`` returns an :class:`Outcome`."""

    def __init__(self, workdir: Path) -> None:
        kernels = write_kernelspec(workdir)
        self.manager = KernelManager(
            kernel_name="pydotcompute-test",
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]),
        )
        env = dict(os.environ)
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        self.manager.start_kernel(cwd=str(workdir), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=STARTUP_TIMEOUT)

    def submit(self, code: str) -> str:
        """Queue a cell without waiting; returns its message id."""
        msg_id: str = self.client.execute(code, allow_stdin=False, stop_on_error=False)
        return msg_id

    def collect(self, msg_id: str, timeout: float = CELL_TIMEOUT) -> Outcome:
        """Gather the outputs of a submitted cell until the kernel reports it idle."""
        out = Outcome()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell {msg_id} did not finish within {timeout} s")
            try:
                msg = self.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                self._read_reply(msg_id, out, deadline)
                return out
            if kind == "execute_input":
                out.count = content["execution_count"]
            elif kind == "stream":
                if content["name"] == "stdout":
                    out.stdout += content["text"]
                else:
                    out.stderr += content["text"]
            elif kind == "execute_result":
                out.result = content["data"].get("text/plain")
            elif kind == "display_data":
                out.displays.append(content["data"])
            elif kind == "error":
                out.ename = content["ename"]
                out.evalue = plain(content["evalue"])
                out.traceback = plain("\n".join(content["traceback"]))

    def _read_reply(self, msg_id: str, out: Outcome, deadline: float) -> None:
        """Read the cell's execute_reply: its payloads carry what ``?`` and pagers show."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no execute_reply for cell {msg_id}")
            try:
                msg = self.client.get_shell_msg(timeout=left)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            for payload in msg["content"].get("payload", []):
                if payload.get("source") == "page":
                    out.pages.append(plain(payload["data"].get("text/plain", "")))
            return

    def complete(self, line: str, timeout: float = CELL_TIMEOUT) -> list[str]:
        """What Tab offers at the end of ``line`` (a complete_request)."""
        msg_id = self.client.complete(line, len(line))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete_reply for {line!r}")
            try:
                msg = self.client.get_shell_msg(timeout=left)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                matches: list[str] = msg["content"]["matches"]
                return matches

    def run(self, code: str, timeout: float = CELL_TIMEOUT) -> Outcome:
        """Execute a cell and return what it produced."""
        return self.collect(self.submit(code), timeout)

    def shutdown(self) -> None:
        """Ask the kernel to shut down and wait (bounded) for its process to end."""
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` (state outside the kernel, which cannot be awaited) until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)
