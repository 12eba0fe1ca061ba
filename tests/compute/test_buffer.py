"""UnifiedBuffer: lazy synchronization rules, copy counting, array protocols, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pydotcompute import (
    Accelerator,
    BufferState,
    BufferStats,
    KernelArgumentError,
    OperationTimeoutError,
    UnifiedBuffer,
)
from tests.compute.conftest import gpu


def test_seed_example_runs_on_the_default_accelerator() -> None:
    buf = UnifiedBuffer((1000,), dtype=np.float32)
    buf.host[:] = np.random.randn(1000)
    assert buf.shape == (1000,) and buf.dtype == np.float32 and buf.host.std() > 0


def test_cpu_buffer_has_one_memory_and_never_copies() -> None:
    buf = UnifiedBuffer((4,), np.int64, accelerator="cpu")
    buf.host[:] = [1, 2, 3, 4]
    assert buf.device is buf.host
    assert buf.state is BufferState.SYNCHRONIZED and buf.stats == BufferStats()
    assert not buf.pinned  # nothing to page-lock for


def test_reading_host_twice_after_a_device_write_copies_once(sim: Accelerator) -> None:
    buf = UnifiedBuffer((8,), np.float32, accelerator=sim)
    buf.device[:] = 5.0
    assert buf.state is BufferState.DEVICE_DIRTY
    before = buf.stats
    assert buf.host[0] == 5.0 and buf.host[7] == 5.0
    spent = buf.stats - before
    assert spent.d2h_copies == 1 and spent.copies_avoided == 1 and spent.h2d_copies == 0
    assert buf.state is BufferState.HOST_DIRTY  # .host may be written


def test_host_write_then_device_read_copies_once(sim: Accelerator) -> None:
    buf = UnifiedBuffer((3,), np.float64, accelerator=sim)
    buf.host[:] = [1.0, 2.0, 3.0]
    before = buf.stats
    first = buf.device_view()
    second = buf.device_view()
    assert first is second and list(first) == [1.0, 2.0, 3.0]
    assert buf.stats - before == BufferStats(h2d_copies=1, h2d_bytes=24, copies_avoided=1)
    assert buf.state is BufferState.SYNCHRONIZED


def test_views_leave_the_state_synchronized(sim: Accelerator) -> None:
    buf = UnifiedBuffer((2,), np.int32, accelerator=sim)
    buf.device[:] = 7
    before = buf.stats
    view = buf.host_view()
    assert list(view) == [7, 7] and not view.flags.writeable
    assert buf.state is BufferState.SYNCHRONIZED
    buf.device_view()
    buf.host_view()
    spent = buf.stats - before
    assert spent.copies == 1 and spent.copies_avoided == 2


def test_new_buffer_needs_no_copy_in_either_direction(sim: Accelerator) -> None:
    buf = UnifiedBuffer((16,), np.float32, accelerator=sim)
    assert not buf.device_view().any() and not buf.host_view().any()
    assert buf.stats.copies == 0


def test_writes_through_a_kept_array_need_marking(sim: Accelerator) -> None:
    buf = UnifiedBuffer((2,), np.float32, accelerator=sim)
    host = buf.host
    buf.device_view()  # synchronized now
    host[:] = 9.0  # written through the kept array: not seen...
    assert buf.device_view()[0] == 0.0
    buf.mark_host_dirty()  # ...until declared
    assert buf.device_view()[0] == 9.0
    dev = buf.device_view()
    dev[:] = 4.0
    buf.mark_device_dirty()
    assert buf.host_view()[0] == 4.0


def test_explicit_copies_only_when_needed(sim: Accelerator) -> None:
    buf = UnifiedBuffer.from_array(np.arange(4, dtype=np.float32), accelerator=sim)
    assert buf.state is BufferState.HOST_DIRTY
    buf.to_device(timeout=5).to_device(stream=sim.stream())
    assert buf.stats.h2d_copies == 1 and buf.state is BufferState.SYNCHRONIZED
    buf.device[:] = 1.0
    buf.to_host(stream=sim.stream())
    buf.to_host(timeout=5)
    assert buf.stats.d2h_copies == 1 and list(buf.host_view()) == [1.0] * 4


def test_numpy_reads_through_array_protocol(sim: Accelerator) -> None:
    buf = UnifiedBuffer((3,), np.float32, accelerator=sim)
    buf.device[:] = 2.0
    arr = np.asarray(buf)
    assert arr.tolist() == [2.0] * 3 and not arr.flags.writeable
    assert np.array(buf, dtype=np.int64).dtype == np.int64
    assert np.array(buf, copy=True).flags.writeable
    assert buf.state is BufferState.SYNCHRONIZED and float(np.sum(buf)) == 6.0


def test_no_cuda_array_interface_without_cuda_memory(sim: Accelerator) -> None:
    for acc in ("cpu", sim):
        buf = UnifiedBuffer((2,), np.float32, accelerator=acc)
        assert not hasattr(buf, "__cuda_array_interface__")


def test_description_and_sizes() -> None:
    buf = UnifiedBuffer((3, 4), "int16", accelerator="cpu")
    assert (buf.size, buf.ndim, buf.nbytes, len(buf)) == (12, 2, 24, 3)
    assert "shape=(3, 4)" in repr(buf) and "int16" in repr(buf)
    assert UnifiedBuffer(5, accelerator="cpu").shape == (5,)


@pytest.mark.parametrize("shape", [(-1,), (2.5,), "ten", [None]])
def test_bad_shape_is_a_clear_error(shape: object) -> None:
    with pytest.raises(KernelArgumentError, match="shape must be an int or a tuple"):
        UnifiedBuffer(shape, accelerator="cpu")  # type: ignore[arg-type]


def test_object_dtype_is_refused() -> None:
    with pytest.raises(KernelArgumentError, match="cannot hold Python objects"):
        UnifiedBuffer((2,), object, accelerator="cpu")


def test_stats_add_and_subtract() -> None:
    a = BufferStats(1, 2, 3, 4, 5)
    assert a + a - a == a and (a + a).copies == 6


@pytest.mark.gpu
def test_pinned_buffer_is_page_locked_on_a_gpu() -> None:
    acc = gpu()
    import cupy

    buf = UnifiedBuffer((1024,), np.float32, pinned=True, accelerator=acc)
    assert buf.pinned
    attrs = cupy.cuda.runtime.pointerGetAttributes(buf.host.ctypes.data)
    assert attrs.type == cupy.cuda.runtime.memoryTypeHost
    plain = UnifiedBuffer((1024,), np.float32, accelerator=acc)
    assert not plain.pinned


@pytest.mark.gpu
def test_gpu_buffer_copies_lazily_and_asynchronously() -> None:
    acc = gpu()
    import cupy

    buf = UnifiedBuffer((1 << 20,), np.float32, pinned=True, accelerator=acc)
    buf.host[:] = 3.0
    stream = acc.stream()
    buf.to_device(stream=stream)
    dev = cupy.asarray(buf)  # through __cuda_array_interface__: may be written
    assert buf.state is BufferState.DEVICE_DIRTY
    with stream:
        dev *= 2
    buf.to_host(stream=stream)
    assert buf.host_view()[0] == 6.0 and buf.stats.copies == 2
    buf.synchronize(timeout=10)


@pytest.mark.gpu
def test_gpu_wait_times_out_cleanly() -> None:
    from pydotcompute.compute._memory import wait_event

    class Never:
        done = False

    gpu()
    with pytest.raises(OperationTimeoutError, match=r"did not finish within 0\.01 s"):
        wait_event(Never(), 0.01, "work")
