"""End to end: JupyterLab in a real Chromium runs tutorial 05 with "Run All".

A fresh JupyterLab (its own workspace, settings and runtime directories, a random token,
127.0.0.1 only) serves a copy of ``notebooks/05_dashboard.ipynb`` in a temporary folder (the
checkout is never written). Python Playwright drives Debian's Chromium (no downloaded browser):
after Run -> Run All Cells the dashboard must be visible and updating (a rising processed count,
four Bokeh plots), flaky's event log open with its failure, the send form's inputs inside their
column, an unparsable value explained in words, and the terminate button must make a kernel
TERMINATED. The dashboard's picture is saved under the test's tmp_path; set
``PYDOTCOMPUTE_DASHBOARD_PNG`` to a path to also save it there (``tools/dashboard_screenshot.py``
does, to regenerate ``docs/images/dashboard.png``). Every wait is bounded and the server is
always stopped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
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
SERVER_START_S = 90  # JupyterLab's first start on a cold, busy 2-core machine
KERNEL_AND_DASHBOARD_S = 120  # kernel start, the cells, BokehJS, first update
STEP_S = 30  # any later step in the page

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05_dashboard.ipynb"
SCREENSHOT_ENV = "PYDOTCOMPUTE_DASHBOARD_PNG"


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
    """A JupyterLab on 127.0.0.1 serving a fresh workspace with a copy of tutorial 05."""
    _need_browser()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(NOTEBOOK, workspace / NOTEBOOK.name)
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


def _run_all(page: Any) -> None:
    """Run -> Run All Cells, as a user does, and wait until the last cell has run.

    A run before the page is connected to the kernel is dropped silently, so it is repeated
    (bounded) until the first cell's prompt shows it queued or running.
    """
    from playwright.sync_api import TimeoutError as PageTimeout

    cells = page.locator(".jp-Notebook .jp-CodeCell")
    first = cells.first.locator(".jp-InputPrompt")
    choose = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.monotonic() + KERNEL_AND_DASHBOARD_S
    while True:
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            first.filter(has_text=re.compile(r"\[(\*|\d+)\]")).or_(choose).first.wait_for(
                timeout=5000
            )
        except PageTimeout:
            if time.monotonic() > deadline:
                raise
            continue
        if not choose.is_visible():
            break
        choose.click()  # JupyterLab asks which kernel: the notebook's is preselected
    last = cells.last.locator(".jp-InputPrompt")
    last.filter(has_text=re.compile(r"\[\d+\]")).wait_for(timeout=KERNEL_AND_DASHBOARD_S * 1000)


def _processed(page: Any, kid: str) -> int:
    text = page.locator(f'.pdc-row[data-kernel="{kid}"] .pdc-c-processed').inner_text()
    return int(text.replace(",", ""))


def _number(page: Any, selector: str) -> int:
    return int(page.locator(selector).inner_text().split("/")[0].replace(",", ""))


def test_tutorial_05_run_all_leaves_a_live_dashboard(jupyterlab: Lab, tmp_path: Path) -> None:
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
            page.goto(f"{jupyterlab.url}/lab/tree/{NOTEBOOK.name}?token={jupyterlab.token}")
            _kernel_idle(jupyterlab)
            _run_all(page)

            # After Run All the dashboard is there and keeps updating.
            dashboard = page.locator(".pdc-dashboard")
            dashboard.wait_for(timeout=KERNEL_AND_DASHBOARD_S * 1000)
            worker = '.pdc-row[data-kernel="worker"]'
            page.locator(f'{worker}[data-state="ACTIVE"]').wait_for()
            first = _processed(page, "worker")
            page.wait_for_function(
                "([sel, n]) => parseInt(document.querySelector(sel).innerText"
                ".replace(/,/g, '')) > n",
                arg=[f"{worker} .pdc-c-processed", first],
            )
            # parked was activated by the tutorial and has taken its queued jobs.
            page.locator('.pdc-row[data-kernel="parked"][data-state="ACTIVE"]').wait_for()
            assert _number(page, '.pdc-row[data-kernel="parked"] .pdc-c-inbox') == 0
            # Four Bokeh plots (throughput, queues, latency, drops) rendered from inline BokehJS.
            page.locator(".pdc-dashboard .bk-Canvas").nth(3).wait_for()
            # The tutorial opened flaky's event log: its failure is listed with its message.
            page.locator(
                '.pdc-events[data-kernel="flaky"] .pdc-failed',
                has_text="failed: ValueError: cannot handle job 499",
            ).wait_for()

            png = tmp_path / "dashboard.png"
            dashboard.screenshot(path=str(png))
            target = os.environ.get(SCREENSHOT_ENV)
            if target:
                shutil.copy(png, target)

            controls = page.locator(".pdc-controls")
            controls.locator("select").select_option("worker")
            field = controls.locator(".widget-text").first
            field.wait_for()
            box, column = field.bounding_box(), controls.bounding_box()
            assert box is not None and column is not None
            assert (
                box["x"] >= column["x"] and box["x"] + box["width"] <= column["x"] + column["width"]
            ), (box, column)
            field.locator("input").fill("twelve")
            controls.locator("button", has_text="send").click()
            controls.locator(
                ".pdc-err", has_text="twelve is a name, not a value; to send it as text"
            ).wait_for()

            controls.locator("button", has_text="terminate").click()
            page.locator(f'{worker}[data-state="TERMINATED"]').wait_for()
            controls.locator(".pdc-ok", has_text="terminate 'worker'").wait_for()
            page.locator('.pdc-row[data-kernel="flaky"][data-state="ACTIVE"]').wait_for()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"page at failure: {tmp_path / 'failure.png'}\n{jupyterlab.log_tail()}")
            raise
        finally:
            browser.close()
