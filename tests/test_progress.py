"""Builds report their progress: started (compiling or from the cache), finished, failed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pydotcompute import (
    BuildEvent,
    KernelCompileError,
    RingKernelRuntime,
    add_build_listener,
    kernel,
    message,
    ring_kernel,
)
from pydotcompute.backends.device._compile import find_cxx
from tests.conftest import WAIT, within

needs_cxx = pytest.mark.skipif(find_cxx() is None, reason="the emulated device needs g++/clang++")


@message
class Num:
    x: np.float32


@message
class Twice:
    y: np.float32


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BuildEvent]]:
    """Events of this test's builds, into an empty cache (every first build compiles)."""
    monkeypatch.setenv("PYDOTCOMPUTE_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[BuildEvent] = []
    remove = add_build_listener(seen.append)
    yield seen
    remove()


def _phases(events: list[BuildEvent]) -> list[tuple[str, bool | None]]:
    return [(e.phase, e.cached) for e in events]


async def _launch_twice(kernel_id: str) -> None:
    async with RingKernelRuntime(device="emulated") as rt:
        await within(rt.launch(kernel_id), WAIT * 12)
        await within(rt.activate(kernel_id))
        reply = await within(rt.call(kernel_id, Num(x=np.float32(2.5))))
        assert reply.y == 5.0


@needs_cxx
async def test_a_device_kernel_reports_compiling_then_the_cache(
    events: list[BuildEvent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pydotcompute")
    ring_kernel(kernel_id="twice", input_type=Num, output_type=Twice, cuda="out.y = 2.0f * msg.x;")
    threads: list[str] = []
    remove = add_build_listener(lambda e: threads.append(threading.current_thread().name))
    try:
        await _launch_twice("twice")  # compiles: the cache is empty
        await _launch_twice("twice")  # a new runtime loads the same build from the cache
    finally:
        remove()
    assert _phases(events) == [
        ("started", False), ("finished", False), ("started", True), ("finished", True),
    ]  # fmt: skip
    first = events[0]
    assert first.build_id == events[1].build_id != events[2].build_id
    assert first.what == "ring kernel 'twice'" and first.target == "emulated"
    assert first.describe().startswith("compiling: ring kernel 'twice' for the emulated device (")
    assert events[1].seconds is not None and events[1].seconds > 0
    assert events[1].describe().startswith("compiled ring kernel 'twice' for the emulated device")
    assert events[3].describe().startswith("loaded ring kernel 'twice' for the emulated device")
    # device kernels build in a worker thread, not on the event loop's
    assert threading.main_thread().name not in threads
    logged = [r.getMessage() for r in caplog.records if r.name == "pydotcompute"]
    assert logged[:2] == [first.describe(), events[1].describe()]
    assert all(r.levelno == logging.INFO for r in caplog.records if "'twice'" in r.getMessage())


@needs_cxx
async def test_a_build_that_fails_reports_the_error(events: list[BuildEvent]) -> None:
    ring_kernel(kernel_id="broken", input_type=Num, output_type=Twice, cuda="out.y = nope;")
    async with RingKernelRuntime(device="emulated") as rt:
        with pytest.raises(KernelCompileError, match="broken"):
            await within(rt.launch("broken"), WAIT * 12)
    assert _phases(events) == [("started", False), ("failed", None)]
    assert events[1].detail.startswith("KernelCompileError: ")
    assert events[1].describe().startswith("failed to build ring kernel 'broken' for the emulated")


def test_a_kernel_variant_reports_its_build_in_the_callers_thread(
    events: list[BuildEvent],
) -> None:
    pytest.importorskip("numba", reason="@kernel needs Numba")
    threads: list[str] = []
    remove = add_build_listener(lambda e: threads.append(threading.current_thread().name))

    @kernel(parallel=False)
    def scale(i, a, x, out):  # type: ignore[no-untyped-def]
        out[i] = a * x[i]

    x = np.arange(4, dtype=np.float64)
    out = np.zeros_like(x)
    try:
        scale(2.0, x, out)
        scale(3.0, x, out)  # the variant is ready: no build
    finally:
        remove()
    assert out.tolist() == [0.0, 3.0, 6.0, 9.0]
    assert _phases(events) == [("started", None), ("finished", False)]
    assert events[0].what == "@kernel scale" and events[0].target == "cpu"
    assert "float64" in events[0].detail
    assert events[0].describe() == (
        f"compiling, unless it is in the disk cache: @kernel scale for the CPU "
        f"({events[0].detail}) ..."
    )
    assert threads == [threading.current_thread().name] * 2


def test_a_removed_listener_hears_nothing() -> None:
    heard: list[BuildEvent] = []
    remove = add_build_listener(heard.append)
    remove()
    remove()  # removing twice is harmless
    from pydotcompute._progress import build_step

    with build_step("thing", "cpu", cached=False) as step:
        step.done(False)
    assert heard == []
