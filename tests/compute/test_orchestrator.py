"""ComputeOrchestrator: steps in order, records per step, no redundant copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pydotcompute import (
    Accelerator,
    ComputeOrchestrator,
    KernelArgumentError,
    StepRecord,
    UnifiedBuffer,
    kernel,
)
from tests.compute.conftest import gpu, run_python


@kernel
def scale(i, a, x, out):
    out[i] = a * x[i]


@kernel(reduce="sum")
def total(i, x):
    return x[i]


def test_steps_run_in_order_with_a_record_each() -> None:
    x = UnifiedBuffer.from_array(np.arange(5, dtype=np.float64), accelerator="cpu")
    y = UnifiedBuffer((5,), np.float64, accelerator="cpu")
    z = UnifiedBuffer((5,), np.float64, accelerator="cpu")
    seen = []
    pipeline = ComputeOrchestrator("cpu")
    pipeline.add_kernel(scale, 2.0, x, y, name="double")
    pipeline.add_kernel(scale, 10.0, y, z, stream="other")
    pipeline.add_host(lambda b: seen.append(b.host_view().tolist()), z, name="look")
    pipeline.add_kernel(total, z)
    records = pipeline.run(timeout=60)
    assert len(pipeline) == 4 and pipeline.records == records
    assert [r.name for r in records] == ["double", "scale", "look", "total"]
    assert [r.kind for r in records] == ["kernel", "kernel", "host", "kernel"]
    assert [r.stream for r in records] == ["default", "other", "host", "default"]
    assert seen == [[0.0, 20.0, 40.0, 60.0, 80.0]] and records[3].result == 200.0
    assert [r.waited_for for r in records] == [(), (0,), (1,), (2,)]
    assert all(isinstance(r, StepRecord) and r.duration_s >= 0 and r.copies == 0 for r in records)


def test_a_pipeline_can_run_again() -> None:
    x = UnifiedBuffer.from_array(np.ones(3), accelerator="cpu")
    pipeline = ComputeOrchestrator("cpu")
    pipeline.add_kernel(scale, 3.0, x, x)
    pipeline.run()
    pipeline.run()
    assert x.host_view().tolist() == [9.0] * 3


def test_bad_steps_are_refused(sim: Accelerator) -> None:
    pipeline = ComputeOrchestrator("cpu")
    with pytest.raises(KernelArgumentError, match="add_kernel\\(\\) takes a @kernel"):
        pipeline.add_kernel(print)  # type: ignore[arg-type]
    with pytest.raises(KernelArgumentError, match="add_host\\(\\) takes a callable"):
        pipeline.add_host(42)
    with pytest.raises(KernelArgumentError, match="give both grid and block"):
        pipeline.add_kernel(scale, 1.0, np.ones(2), np.ones(2), grid=1)
    elsewhere = UnifiedBuffer((2,), np.float32, accelerator=sim)
    with pytest.raises(KernelArgumentError, match="this orchestrator runs on cpu"):
        pipeline.add_host(print, elsewhere)


def test_buffers_pass_between_steps_without_copies_on_a_simulated_gpu(tmp_path: Path) -> None:
    code = """
        import json
        import numpy as np
        from pydotcompute import ComputeOrchestrator, UnifiedBuffer, kernel

        @kernel
        def scale(i, a, x, out):
            out[i] = a * x[i]

        acc = "cuda:0"
        x = UnifiedBuffer.from_array(np.arange(64, dtype=np.float32), accelerator=acc)
        y = UnifiedBuffer((64,), np.float32, accelerator=acc)
        z = UnifiedBuffer((64,), np.float32, accelerator=acc)
        seen = []
        pipeline = ComputeOrchestrator(acc)
        pipeline.add_kernel(scale, 2.0, x, y)
        pipeline.add_kernel(scale, 3.0, y, z, stream="second")
        pipeline.add_host(lambda b: seen.append(float(b.host[63])), z)
        pipeline.add_host(lambda b: seen.append(float(b.host[0])), z)
        records = pipeline.run(timeout=120)
        print(json.dumps({
            "copies": [[r.h2d_copies, r.d2h_copies] for r in records],
            "avoided": [r.copies_avoided for r in records],
            "waited": [list(r.waited_for) for r in records], "seen": seen,
        }))
    """
    got = run_python(code, cache=tmp_path / "c", script=tmp_path / "orch.py", sim=True)
    assert got["copies"] == [[1, 0], [0, 0], [0, 1], [0, 0]]
    assert got["avoided"][1] == 2 and got["avoided"][3] == 1
    assert got["waited"] == [[], [0], [1], [2]]
    assert got["seen"] == [6.0 * 63, 0.0]


def test_a_buffer_passed_twice_is_copied_and_counted_once(tmp_path: Path) -> None:
    code = """
        import json
        import numpy as np
        from pydotcompute import ComputeOrchestrator, UnifiedBuffer, kernel

        @kernel
        def saxpy(i, a, x, y, out):
            out[i] = a * x[i] + y[i]

        a = UnifiedBuffer.from_array(np.arange(8, dtype=np.float32), accelerator="cuda:0")
        b = UnifiedBuffer((8,), np.float32, accelerator="cuda:0")
        pipeline = ComputeOrchestrator("cuda:0")
        pipeline.add_kernel(saxpy, 2.0, a, a, b)
        records = pipeline.run(timeout=120)
        print(json.dumps({"step": [records[0].h2d_copies, records[0].d2h_copies],
                          "buffer": a.stats.h2d_copies, "b": b.host_view().tolist()}))
    """
    got = run_python(code, cache=tmp_path / "c", script=tmp_path / "twice.py", sim=True)
    assert got["step"] == [1, 0] and got["buffer"] == 1
    assert got["b"] == [3.0 * i for i in range(8)]


@pytest.mark.gpu
def test_gpu_pipeline_times_steps_with_events() -> None:
    acc = gpu()
    n = 1 << 20
    x = UnifiedBuffer.from_array(np.ones(n, dtype=np.float32), accelerator=acc)
    y = UnifiedBuffer((n,), np.float32, accelerator=acc)
    other = UnifiedBuffer.from_array(np.ones(n, dtype=np.float32), accelerator=acc)
    pipeline = ComputeOrchestrator(acc)
    pipeline.add_kernel(scale, 2.0, x, y)
    pipeline.add_kernel(scale, 5.0, other, other, stream="side")
    pipeline.add_kernel(total, y)
    records = pipeline.run(timeout=60)
    assert records[2].result == 2.0 * n and records[1].waited_for == ()
    assert [r.h2d_copies for r in records] == [1, 1, 0]
    assert all(r.duration_s > 0 for r in records)
    assert other.host_view()[0] == 5.0


def test_a_cuda_form_kernel_is_a_pipeline_step() -> None:
    from numba import cuda

    @kernel
    def add_one(x):
        i = cuda.grid(1)
        if i < x.size:
            x[i] += 1.0

    x = UnifiedBuffer.from_array(np.zeros(100), accelerator="cpu")
    pipeline = ComputeOrchestrator("cpu")
    pipeline.add_kernel(add_one, x, grid=1, block=128)
    pipeline.add_kernel(add_one, x, size=100)
    pipeline.run(timeout=60)
    assert (x.host_view() == 2.0).all()
    with pytest.raises(KernelArgumentError, match=r"threads must be a non-negative int"):
        pipeline.add_kernel(add_one, x, grid=1, block="wide")
