"""End to end: JupyterLab in a real Chromium runs a notebook that opens the dashboard.

A fresh JupyterLab (its own workspace, settings and runtime directories, a random token,
127.0.0.1 only) runs a notebook that launches actors and shows ``Dashboard(runtime)``.
Python Playwright drives Debian's Chromium (no downloaded browser): the table must show
ACTIVE with a rising processed count, the terminate button must make the kernel TERMINATED,
and the dashboard is saved as ``docs/images/dashboard.png``. Every wait is bounded and the
server is always stopped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
SERVER_START_S = 90  # JupyterLab's first start on a cold, busy 2-core machine
KERNEL_AND_DASHBOARD_S = 120  # kernel start, the cells, BokehJS, first update
STEP_S = 30  # any later step in the page

SETUP_CELL = '''\
import asyncio

from pydotcompute import (
    KernelContext, OperationTimeoutError, PyDotComputeError, RingKernelRuntime, message,
    ring_kernel,
)
from pydotcompute_widgets import Dashboard


@message
class Job:
    n: int


@message
class Done:
    n: int


@ring_kernel(kernel_id="worker", queue_size=256)
async def worker(ctx: KernelContext[Job, Done]):
    while not ctx.should_terminate:
        job = await ctx.receive()
        await ctx.send(job.reply(Done, n=job.n * 2))


@ring_kernel(kernel_id="summer", queue_size=64)
async def summer(ctx: KernelContext[Job, Done]):
    total = 0
    while not ctx.should_terminate:
        job = await ctx.receive()
        total += job.n
        await ctx.send(job.reply(Done, n=total))


@ring_kernel(kernel_id="flaky", restart="on_failure")
async def flaky(ctx: KernelContext[Job, Done]):
    while not ctx.should_terminate:
        job = await ctx.receive()
        if job.n in (100, 2000):
            raise ValueError(f"cannot handle job {job.n}")
        await ctx.send(job.reply(Done, n=job.n))


@ring_kernel(kernel_id="parked")
async def parked(ctx: KernelContext[Job, Done]):
    while not ctx.should_terminate:
        await ctx.send((await ctx.receive()).reply(Done, n=0))


runtime = RingKernelRuntime()
await runtime.__aenter__()
for kid in ("worker", "summer", "flaky", "parked"):
    await runtime.launch(kid)
for kid in ("worker", "summer", "flaky"):
    await runtime.activate(kid)


lost = 0


async def feed(kid, pause):
    """Keep a kernel busy until it stops taking messages."""
    global lost
    n = 0
    while True:
        try:
            await runtime.call(kid, Job(n=n), timeout=0.5)
        except OperationTimeoutError:
            lost += 1  # the job that made flaky fail gets no reply
        except PyDotComputeError:
            return  # terminated
        n += 1
        if n % 25 == 0:
            await asyncio.sleep(pause)


async def queue_up(kid, count):
    """Send to a kernel that is not active: its inbox fills up."""
    for n in range(count):
        await runtime.send(kid, Job(n=n))
        await asyncio.sleep(0.01)


feeders = [asyncio.ensure_future(feed(k, p)) for k, p in
           (("worker", 0.005), ("summer", 0.05), ("flaky", 0.02))]
feeders.append(asyncio.ensure_future(queue_up("parked", 800)))
'''

DASHBOARD_CELL = "dashboard = Dashboard(runtime, interval=0.25)\ndashboard\n"


def _notebook() -> dict[str, Any]:
    def code(source: str) -> dict[str, Any]:
        return {
            "cell_type": "code", "execution_count": None, "id": secrets.token_hex(4),
            "metadata": {}, "outputs": [], "source": source.splitlines(keepends=True),
        }  # fmt: skip

    return {
        "cells": [code(SETUP_CELL), code(DASHBOARD_CELL)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _need_browser() -> None:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    for module in ("playwright", "jupyterlab", "ipykernel"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the {module} package (pip install -e './widgets[test]')")
    if missing:
        reason = "the browser test needs " + ", ".join(missing)
        if os.environ.get("PYDOTCOMPUTE_REQUIRE_BROWSER"):
            pytest.fail(reason + " (PYDOTCOMPUTE_REQUIRE_BROWSER is set)")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab."""

    url: str
    token: str
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(lab: Lab, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)  # polling a server that is starting: nothing to await
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{lab.log_tail()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server (it shuts its kernels down), then make sure its process group is gone."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a kernel left behind in the group
    except ProcessLookupError:
        pass  # the whole group is gone, as it should be


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab on 127.0.0.1 serving a fresh workspace with the dashboard notebook."""
    _need_browser()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "dashboard.ipynb").write_text(json.dumps(_notebook(), indent=1))
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "get Jupyter news?" toast over the page, and no update check (no network here).
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    tracker = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(
        json.dumps({"autoStartDefaultKernel": True})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    port, token = _free_port(), secrets.token_hex(16)
    lab = Lab(f"http://127.0.0.1:{port}", token, tmp_path / "jupyterlab.log")
    with lab.log.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={workspace}", "--LabApp.extension_manager=readonly",
            ],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_ready(lab, proc)
        yield lab
    finally:
        _stop(proc)


def _kernel_idle(lab: Lab) -> None:
    """Wait until the notebook's kernel has started and answered (server side)."""
    deadline = time.monotonic() + KERNEL_AND_DASHBOARD_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{lab.url}/api/sessions?token={lab.token}", timeout=5) as r:
            sessions = json.load(r)
        if any(s.get("kernel", {}).get("execution_state") == "idle" for s in sessions):
            return
        time.sleep(0.25)  # polling the server: nothing to await
    pytest.fail(f"the notebook's kernel did not start:\n{lab.log_tail()}")


def _run_cell(page: Any, i: int) -> None:
    """Run cell ``i`` (Shift+Enter) and wait until it finished.

    A cell run before the page is connected to the kernel is dropped silently, so the run
    is repeated (bounded) until the prompt shows it queued or running.
    """
    from playwright.sync_api import TimeoutError as PageTimeout

    cell = page.locator(".jp-Notebook .jp-Cell").nth(i)
    prompt = cell.locator(".jp-InputPrompt")
    choose = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.monotonic() + KERNEL_AND_DASHBOARD_S
    while True:
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            prompt.filter(has_text=re.compile(r"\[(\*|\d+)\]")).or_(choose).first.wait_for(
                timeout=5000
            )
        except PageTimeout:
            if time.monotonic() > deadline:
                raise
            continue
        if not choose.is_visible():
            break
        choose.click()  # JupyterLab asks which kernel: the notebook's is preselected
    prompt.filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=KERNEL_AND_DASHBOARD_S * 1000)


def _processed(page: Any, kid: str) -> int:
    text = page.locator(f'.pdc-row[data-kernel="{kid}"] .pdc-c-processed').inner_text()
    return int(text.replace(",", ""))


def test_dashboard_in_jupyterlab_shows_live_kernels_and_terminates_one(
    jupyterlab: Lab, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            tmp_path / "chromium",  # a fresh user-data-dir
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            timeout=STEP_S * 1000,
            viewport={"width": 1600, "height": 1400},
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(STEP_S * 1000)
        try:
            page.goto(f"{jupyterlab.url}/lab/tree/dashboard.ipynb?token={jupyterlab.token}")
            _kernel_idle(jupyterlab)
            _run_cell(page, 0)
            _run_cell(page, 1)

            worker = '.pdc-row[data-kernel="worker"]'
            page.locator(f'{worker}[data-state="ACTIVE"]').wait_for(
                timeout=KERNEL_AND_DASHBOARD_S * 1000
            )
            first = _processed(page, "worker")
            page.wait_for_function(
                "([sel, n]) => parseInt(document.querySelector(sel).innerText"
                ".replace(/,/g, '')) > n",
                arg=[f"{worker} .pdc-c-processed", first],
            )
            assert _processed(page, "worker") > first
            # Messages queue for a kernel that is not active, and the table shows it.
            page.wait_for_function(
                "sel => parseInt(document.querySelector(sel).innerText.replace(/,/g, '')) >= 200",
                arg='.pdc-row[data-kernel="parked"] .pdc-c-inbox',
            )
            # The Bokeh plots rendered (BokehJS came inline, with no network).
            page.locator(".pdc-dashboard .bk-Canvas").nth(1).wait_for()

            page.locator(".pdc-controls select").select_option("worker")
            page.locator(".pdc-controls button", has_text="terminate").click()
            page.locator(f'{worker}[data-state="TERMINATED"]').wait_for()
            page.locator(".pdc-controls .pdc-ok", has_text="terminate 'worker'").wait_for()
            page.locator('.pdc-row[data-kernel="summer"][data-state="ACTIVE"]').wait_for()

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".pdc-dashboard").screenshot(path=str(SCREENSHOT))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"page at failure: {tmp_path / 'failure.png'}\n{jupyterlab.log_tail()}")
            raise
        finally:
            browser.close()
