"""Device links on CUDA against a fake CuPy: the link ring in GPU memory and its switching.

The loops are not run here (the gpu-marked tests of test_device_links.py run them on a GPU):
a stand-in kernel has a real control block in a fake launcher's pinned memory, and a fake
"device" acknowledges the link generations the host publishes, as the generated loop does.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pydotcompute import OperationTimeoutError, fixed_layout, ring_kernel
from pydotcompute.backends.device import _cuda_launch, _links
from pydotcompute.backends.device._codegen import generate
from pydotcompute.backends.device._compile import build_cuda
from pydotcompute.backends.device._cuda_launch import CudaLauncher
from pydotcompute.backends.device._links import DeviceLink
from pydotcompute.backends.device._memory import CONTROL_BYTES, LINK_HEADER_BYTES, LINK_WORD, WORD
from pydotcompute.backends.device._native import PythonEndpoint
from pydotcompute.backends.device._nvrtc import Nvrtc
from pydotcompute.backends.device._records import RecordCodec
from pydotcompute.telemetry import KernelMetrics
from tests.backends import fake_cupy
from tests.backends.device_kernels import Job
from tests.backends.fake_cupy import FakeGpu
from tests.backends.test_cuda_launch import USABLE

JOB: Any = fixed_layout(Job)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpu]:
    """The launcher module on a fake CuPy, with fresh bookkeeping and no link arenas.

    As in test_cuda_launch.py: fake launchers must never reach the real pool.
    """
    cp, fake = fake_cupy.make_fake_cupy()
    monkeypatch.setattr(_cuda_launch, "require_cupy", lambda feature: cp)
    monkeypatch.setattr(_cuda_launch, "cuda_status", lambda: USABLE)
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    for name, value in (
        ("_pool", []),
        ("_kept", []),
        ("_launched", set()),
        ("_resident", {}),
        ("_arenas", {}),
    ):
        monkeypatch.setattr(_cuda_launch, name, value)
    yield fake
    for launcher in list(_cuda_launch._launched):
        launcher._block = None
    gc.collect()


class FakeWaits:
    """``DeviceWaits.until`` for a stand-in: each poll lets the fake device take a step."""

    def __init__(self, step: Callable[[], None], launcher: CudaLauncher) -> None:
        self.step = step
        self.launcher = launcher

    async def until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        start = time.perf_counter()
        while True:
            self.step()
            if done():
                return True
            if not self.launcher.running():
                return bool(done())
            if timeout is not None and time.perf_counter() - start > timeout:
                return False
            await asyncio.sleep(0.001)


class Stub:
    """What DeviceLink uses of a DeviceKernel, over a fake CUDA launcher's control block."""

    def __init__(self, kernel_id: str, capacity: int = 8) -> None:
        self.kernel_id = kernel_id
        self._launcher = CudaLauncher(kernel_id, 4096)
        self._launcher.start(Path("k.cubin"), (self._launcher.base_address, 0, 0, 0, 0, 0), 1)
        self.device = self._launcher.device
        self._ctl = memoryview(self._launcher.memory[:CONTROL_BYTES]).cast("Q")
        self._endpoint = PythonEndpoint(self._ctl)
        self.acks = True  # the fake device acknowledges link generations
        self._waits = FakeWaits(self._device_step, self._launcher)
        self.metrics = KernelMetrics()
        self.inbox = SimpleNamespace(capacity=capacity)
        self.outbox = SimpleNamespace(codec=RecordCodec(JOB))  # type: ignore[arg-type]

    def _device_step(self) -> None:
        """What the generated loop does with the link words (pdc_switch_links)."""
        if self.acks:
            for side in ("out", "in"):
                self._ctl[WORD[f"link_{side}_ack"]] = self._ctl[WORD[f"link_{side}_gen"]]

    def word(self, name: str) -> int:
        return int(self._ctl[WORD[name]])


def write_ring(gpu: FakeGpu, ring: int, jobs: list[Job], head: int = 0) -> None:
    """Be the upstream loop: put ``jobs`` into the ring's slots from ``head`` and publish."""
    memory = gpu.device_memory[ring]
    slots = (memory.size - LINK_HEADER_BYTES) // JOB.itemsize
    records = JOB.to_array(jobs).view(np.uint8)
    size = JOB.itemsize
    for i in range(len(jobs)):
        at = LINK_HEADER_BYTES + (head + i) % slots * size
        memory[at : at + size] = records[i * size : (i + 1) * size]
    words = memory[:LINK_HEADER_BYTES].view(np.uint64)
    words[LINK_WORD["head"]] = head
    words[LINK_WORD["tail"]] = head + len(jobs)


def kernel_streams(*stubs: Stub) -> set[int]:
    return {s._launcher._stream.ptr for s in stubs}


async def test_a_link_ring_is_device_memory_named_by_its_address(gpu: FakeGpu) -> None:
    up, down = Stub("up"), Stub("down", capacity=6)
    link = DeviceLink(up, down)
    [(ring, size, devices)] = gpu.mallocs
    assert link.offset == ring and devices == [0]
    assert size == LINK_HEADER_BYTES + 8 * JOB.itemsize
    memory = gpu.device_memory[ring]
    assert not memory[:LINK_HEADER_BYTES].any()  # the header was zeroed by a copy...
    assert (memory[LINK_HEADER_BYTES:] == 0xAB).all()  # ... the slots need not be
    await link.open()
    # The loops add the ring to link_base, which stays 0 on a GPU: the descriptor is the
    # device address itself.
    assert (down.word("link_in_ring"), down.word("link_in_mask"), down.word("link_in_gen")) == (
        ring,
        7,
        1,
    )
    assert (up.word("link_out_ring"), up.word("link_out_mask"), up.word("link_out_gen")) == (
        ring,
        7,
        1,
    )
    assert up.word("link_base") == down.word("link_base") == 0
    assert up.word("link_out_ack") == down.word("link_in_ack") == 1  # open waited for both
    assert link.opened and not link.closed
    assert up.word("link_in_gen") == down.word("link_out_gen") == 0
    # The host's copies run on a stream of their own; it never waits for a kernel's stream.
    copy_streams = {stream for _, stream, _ in gpu.copies}
    assert copy_streams and not copy_streams & kernel_streams(up, down)
    assert set(gpu.synchronized) == copy_streams


async def test_closing_waits_for_both_loops_then_returns_the_ring_in_order(gpu: FakeGpu) -> None:
    up, down = Stub("up"), Stub("down")
    link = DeviceLink(up, down)
    await link.open()
    jobs = [Job(n=n, x=float(n), spin=0) for n in range(3)]
    write_ring(gpu, link.offset, jobs, head=6)  # wraps around the 8-slot ring
    assert link.depth() == 3
    gpu.on_copy = lambda: (up.word("link_out_ack"), down.word("link_in_ack"))
    left = await asyncio.wait_for(link.close(), 5)
    assert [(int(m.n), float(m.x)) for m in left] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    # Switched off (ring 0, generation 2) and acknowledged before the ring was read.
    assert (up.word("link_out_ring"), up.word("link_out_gen")) == (0, 2)
    assert (down.word("link_in_ring"), down.word("link_in_gen")) == (0, 2)
    kind, _, acks = gpu.copies[-1]
    assert kind == 2 and acks == (2, 2)  # device to host, after both acknowledged
    # The ring goes back to the arena's pool, never to cudaFree (which waits for every kernel).
    again = DeviceLink(up, down)
    assert again.offset == link.offset and len(gpu.mallocs) == 1 and gpu.frees == []
    assert not gpu.device_memory[link.offset][:LINK_HEADER_BYTES].any()  # zeroed again


async def test_a_loop_that_does_not_let_go_keeps_its_ring_out_of_the_pool(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_links, "LINK_ACK_S", 0.05)
    up, down = Stub("up"), Stub("down")
    link = DeviceLink(up, down)
    await link.open()
    up.acks = False  # a handler that never returns: the loop never reaches a boundary
    with pytest.raises(OperationTimeoutError, match="'up' did not let go of its device link"):
        await asyncio.wait_for(link.close(), 5)
    other = DeviceLink(Stub("up2"), Stub("down2"))
    assert other.offset != link.offset and len(gpu.mallocs) == 2  # never reused


async def test_opening_does_not_wait_forever_for_a_busy_loop(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_links, "LINK_ACK_S", 0.05)
    up, down = Stub("up"), Stub("down")
    up.acks = False  # busy in a long handler: it switches at its next message boundary
    link = DeviceLink(up, down)
    await asyncio.wait_for(link.open(), 5)
    assert up.word("link_out_gen") == 1 and up.word("link_out_ack") == 0
    assert any("did not switch within 0.05 s" in e for _, e in up.metrics.events)
    assert down.word("link_in_ack") == 1 and down.metrics.events == []


async def test_a_loop_that_ended_needs_no_acknowledgement(gpu: FakeGpu) -> None:
    up, down = Stub("up"), Stub("down")
    link = DeviceLink(up, down)
    await link.open()
    write_ring(gpu, link.offset, [Job(n=5, x=0.0, spin=0)])
    up.acks = down.acks = False
    up._launcher.request_stop()  # the fake loop ends (its stream completes)
    down._launcher.request_stop()
    left = await asyncio.wait_for(link.close(), 5)
    assert [int(m.n) for m in left] == [5]


async def test_a_ring_lost_with_the_cuda_context_is_reported_on_both_kernels(
    gpu: FakeGpu,
) -> None:
    up, down = Stub("up"), Stub("down")
    link = DeviceLink(up, down)
    await link.open()
    gpu.context_lost = True
    assert link.depth() == 0
    assert await asyncio.wait_for(link.close(), 5) == []
    for k in (up, down):
        assert any("lost with the CUDA context" in e for _, e in k.metrics.events)


def test_a_device_without_room_for_a_ring_says_so(gpu: FakeGpu) -> None:
    up, down = Stub("up"), Stub("down", capacity=1 << 20)
    gpu.context_lost = True  # any malloc failure
    with pytest.raises(MemoryError, match=r"cuda:0 has no room for a .*-byte device link ring"):
        DeviceLink(up, down)


def test_a_kernel_on_a_gpu_uses_its_gpus_arena(gpu: FakeGpu) -> None:
    stub: Any = Stub("k")
    assert _links.arena_of(stub) is _cuda_launch.cuda_link_arena(0)
    stub.device = "emulated"
    assert _links.arena_of(stub) is _links.link_arena()


# ---------------------------------------------------------------- the generated link code


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_link_code_compiles_for_sm90_with_device_scope_link_words(mode: str, nvrtc: Nvrtc) -> None:
    kid = f"linked-{mode}"
    spec = ring_kernel(
        kernel_id=kid, input_type=Job, output_type=Job, mode=mode,
        cuda="out = msg;\nout.x = msg.x + 1.0f;",
        **({"block_size": 128} if mode == "parallel" else {}),
    )  # fmt: skip
    text = generate(kid, spec.device).text
    # Link ring words: device scope (both loops on one GPU); control words: system scope.
    assert 'asm volatile("ld.acquire.gpu.u64' in text and 'asm volatile("st.release.gpu.u64' in text
    assert 'asm volatile("ld.acquire.sys.u64' in text
    assert "pdc_load_acquire(&links" not in text and "pdc_store_release(&links" not in text
    assert "pdc_switch_links(ctl, c, links);" in text  # both loops switch links
    assert "pdc_link_publish(links.out, links.out_tail);" in text
    build = build_cuda(generate(kid, spec.device), spec.device, "90", nvrtc)
    assert build.path.read_bytes()[:4] == b"\x7fELF" and build.compiler == nvrtc.name
