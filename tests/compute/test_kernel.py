"""@kernel: the CPU target, PTX generation and its cache, the CUDA simulator, errors."""

from __future__ import annotations

import gc
import math
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pydotcompute import (
    Accelerator,
    BufferState,
    Kernel,
    KernelArgumentError,
    KernelCompileError,
    UnifiedBuffer,
    kernel,
)
from pydotcompute.compute._args import arg_key, check_abi, pack_args
from pydotcompute.compute._targets import ptx_entry
from tests.compute.conftest import gpu, run_python

SCALE = 3.0


@kernel
def saxpy(i, a, x, y, out):
    out[i] = a * x[i] + y[i]


@kernel(reduce="sum")
def sum_squares(i, x):
    return x[i] * x[i]


@kernel(reduce="min")
def smallest(i, x):
    return x[i]


@kernel(reduce="max")
def largest(i, x):
    return x[i]


@kernel
def copy2d(i, a, x, out):
    r = i // x.shape[1]
    c = i % x.shape[1]
    out[r, c] = a * x[r, c]


@kernel
def scaled_root(i, x, out):
    out[i] = SCALE * math.sqrt(x[i])


def test_saxpy_on_numpy_arrays_runs_on_the_cpu() -> None:
    x = np.arange(1000, dtype=np.float32)
    y = np.ones(1000, dtype=np.float32)
    out = np.empty_like(x)
    assert saxpy(2.0, x, y, out) is None
    np.testing.assert_allclose(out, 2.0 * x + y)
    assert "cpu" in saxpy.stats.targets and saxpy.stats.launches >= 1


def test_globals_and_math_work_in_a_body() -> None:
    x = np.array([4.0, 9.0, 16.0])
    out = np.zeros(3)
    scaled_root(x, out)
    assert out.tolist() == [6.0, 9.0, 12.0]


def test_size_limits_the_indices() -> None:
    x = np.ones(10, dtype=np.float64)
    out = np.zeros(10)
    saxpy(1.0, x, x, out, size=4)
    assert out.tolist() == [2.0] * 4 + [0.0] * 6


def test_launch_configuration_is_accepted_on_the_cpu() -> None:
    x = np.arange(8, dtype=np.float32)
    out = np.zeros(8, dtype=np.float32)
    saxpy[4, 32](1.0, x, x, out)
    assert out.tolist() == (2 * x).tolist()


def test_buffers_are_used_in_place_on_the_cpu() -> None:
    x = UnifiedBuffer.from_array(np.arange(6, dtype=np.float32), accelerator="cpu")
    out = UnifiedBuffer((6,), np.float32, accelerator="cpu")
    saxpy(np.float32(0.5), x, x, out)
    assert out.host_view().tolist() == [1.5 * v for v in range(6)]
    assert out.stats.copies == 0


def test_reductions_return_numpy_scalars() -> None:
    x = np.array([3.0, -1.5, 2.0, 8.0], dtype=np.float32)
    total = sum_squares(x)
    assert isinstance(total, np.float32) and total == pytest.approx(9 + 2.25 + 4 + 64)
    assert smallest(x) == -1.5 and largest(x) == 8.0
    ints = np.arange(1, 101, dtype=np.int64)
    assert sum_squares(ints) == sum(v * v for v in range(1, 101))
    assert sum_squares(x, size=2) == pytest.approx(11.25)


def test_empty_reductions() -> None:
    x = np.zeros(0, dtype=np.float64)
    assert sum_squares(x) == 0.0
    with pytest.raises(KernelArgumentError, match="a min reduction over size=0 has no value"):
        smallest(x)


def test_written_arrays_are_read_from_the_body() -> None:
    assert saxpy.writes == ("out",) and saxpy.params == ("a", "x", "y", "out")
    assert sum_squares.writes == ()

    @kernel
    def through_alias(i, m, out):
        row = m[i]
        row[0] = 1.0
        out[i] = 0.0

    assert set(through_alias.writes) == {"m", "out"}
    assert "writes=['out']" in repr(saxpy)


def test_generated_launchers_are_readable() -> None:
    cpu = saxpy.source("cpu")
    assert cpu.startswith("# PyDotCompute @kernel launcher")
    assert "for _pdc_i in prange(_pdc_n):" in cpu and "out[i] = a * x[i] + y[i]" in cpu
    cuda = sum_squares.source("cuda")
    assert "cuda.grid(1)" in cuda and "cuda.atomic.add(_pdc_result, 0" in cuda
    with pytest.raises(KernelArgumentError, match="target must be 'cpu' or 'cuda'"):
        saxpy.source("tpu")


def test_unsupported_argument_names_it() -> None:
    out = np.zeros(3)
    with pytest.raises(KernelArgumentError, match=r"saxpy\(\): argument 'x' is a list"):
        saxpy(1.0, [1.0, 2.0, 3.0], out, out)
    with pytest.raises(KernelArgumentError, match="argument 'a' is a str"):
        saxpy("two", out, out, out)
    with pytest.raises(KernelArgumentError, match="argument 'x' has dtype <U1"):
        saxpy(1.0, np.array(["a"]), out, out)
    with pytest.raises(KernelArgumentError, match="does not fit in int64"):
        saxpy(2**70, out, out, out)


def test_wrong_argument_count_and_size() -> None:
    out = np.zeros(3)
    with pytest.raises(KernelArgumentError, match=r"takes 4 arguments \(a, x, y, out\)"):
        saxpy(1.0, out)
    with pytest.raises(KernelArgumentError, match="size must be a non-negative int"):
        saxpy(1.0, out, out, out, size=-1)

    @kernel
    def fill(i, value, out):
        out[i] = value

    fill(7.0, out)
    assert out.tolist() == [7.0] * 3


def test_size_is_needed_without_arrays() -> None:
    @kernel(reduce="sum")
    def count(i, k):
        return i * k

    assert count(2, size=5) == 20
    with pytest.raises(KernelArgumentError, match="pass size=N"):
        count(2)


def test_gpu_array_on_the_cpu_is_refused() -> None:
    class FakeDeviceArray:
        __cuda_array_interface__: dict[str, Any] = {
            "shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3,
        }  # fmt: skip

    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(KernelArgumentError, match="argument 'y' is a GPU array"):
        saxpy(1.0, x, FakeDeviceArray(), x, accelerator="cpu")


def test_buffer_on_another_accelerator_is_refused(sim: Accelerator) -> None:
    buf = UnifiedBuffer((3,), np.float32, accelerator=sim)
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(KernelArgumentError, match="'out' is a UnifiedBuffer on cuda:0, but"):
        saxpy(1.0, x, x, buf, accelerator="cpu")


def test_what_cannot_be_a_kernel_is_said_at_decoration() -> None:
    with pytest.raises(KernelCompileError, match="parameter 'a' has a default"):

        @kernel
        def with_default(i, a=1.0):
            pass

    with pytest.raises(KernelCompileError, match="is variadic positional"):

        @kernel
        def variadic(i, *xs):
            pass

    with pytest.raises(KernelCompileError, match="takes no parameters"):

        @kernel
        def nothing():
            pass

    with pytest.raises(KernelCompileError, match="expected a Python function"):
        kernel(print)
    with pytest.raises(KernelArgumentError, match="expected one of sum, min, max"):
        kernel(reduce="mean")(saxpy.func)


def test_numba_errors_become_compile_errors() -> None:
    @kernel
    def bad(i, out):
        out[i] = object()

    with pytest.raises(KernelCompileError, match=r"does not compile for the CPU: TypingError"):
        bad(np.zeros(2))


def test_kernel_object_keeps_the_function() -> None:
    assert isinstance(saxpy, Kernel) and saxpy.name == "saxpy" and saxpy.__doc__ is None
    assert saxpy.func.__name__ == "saxpy"
    with pytest.raises(KernelArgumentError, match=r"expected \[blocks, threads\]"):
        saxpy["x"]
    with pytest.raises(KernelArgumentError, match=r"1\.\.1024 threads per block \(got 2048\)"):
        saxpy[1, 2048]
    with pytest.raises(KernelArgumentError, match="power of two"):
        sum_squares[1, 100]


# ------------------------------------------------------------------------------- PTX
def _fake_device(arr: np.ndarray) -> Any:
    class Dev:
        __cuda_array_interface__ = {
            "shape": arr.shape, "typestr": arr.dtype.str, "data": (0x7F0000001000, False),
            "strides": None, "version": 3,
        }  # fmt: skip

    return Dev()


def test_ptx_is_built_without_a_gpu() -> None:
    x = np.zeros(4, dtype=np.float32)
    ptx = saxpy.ptx(np.float32(2.0), x, x, x, cc=(8, 0))
    assert ".target sm_80" in ptx and ".visible .entry" in ptx
    assert ".target sm_75" in sum_squares.ptx(x)


def test_packed_arguments_match_the_ptx_parameters() -> None:
    x = np.zeros((4, 3), dtype=np.float64)
    ptx = copy2d.ptx(np.float32(2.0), x, x)
    _entry, params = ptx_entry(ptx)
    values = [np.float32(2), _fake_device(x), _fake_device(x)]
    keys = tuple(arg_key("copy2d", n, v) for n, v in zip("axo", values))
    packed = [np.int64(12), *pack_args(keys, values)]
    assert len(params) == 1 + 1 + 2 * (5 + 2 + 2)
    check_abi("copy2d", packed, params)
    assert packed[2 + 2] == 12 and packed[2 + 3] == 8  # nitems, itemsize of x
    assert packed[2 + 7] == 24 and packed[2 + 8] == 8  # strides of x in bytes
    with pytest.raises(KernelArgumentError, match="flatten to 2 values"):
        check_abi("copy2d", packed[:2], params)
    out = np.zeros_like(x)
    copy2d(2.0, np.ones_like(x), out)
    assert (out == 2.0).all()


def test_bool_and_complex_scalars_flatten_like_numba() -> None:
    keys = (arg_key("k", "b", True), arg_key("k", "c", np.complex64(1 + 2j)))
    packed = pack_args(keys, [True, np.complex64(1 + 2j)])
    assert [p.dtype.itemsize for p in packed] == [1, 4, 4]
    assert float(packed[2]) == 2.0


def test_ptx_cache_is_used_by_a_new_process(tmp_path: Path) -> None:
    code = """
        import json
        import numpy as np
        from pydotcompute import kernel

        @kernel
        def axpy(i, a, x, y):
            y[i] += a * x[i]

        x = np.zeros(8, dtype=np.float32)
        ptx = axpy.ptx(np.float32(1), x, x, cc=(7, 5))
        s = axpy.stats
        print(json.dumps({"hits": s.cache_hits, "compiles": s.compiles, "n": len(ptx)}))
    """
    cache = tmp_path / "cache"
    first = run_python(code, cache=cache, script=tmp_path / "ptx_job.py")
    second = run_python(code, cache=cache, script=tmp_path / "ptx_job.py")
    assert (first["hits"], first["compiles"]) == (0, 1)
    assert (second["hits"], second["compiles"]) == (1, 0) and second["n"] == first["n"]
    assert len(list((cache / "ptx").glob("*.ptx"))) == 1


def test_cpu_compilation_is_cached_for_a_new_process(tmp_path: Path) -> None:
    code = """
        import json
        import numpy as np
        from pydotcompute import kernel

        @kernel(reduce="sum")
        def total(i, x):
            return x[i]

        value = total(np.arange(10, dtype=np.int64))
        s = total.stats
        print(json.dumps({"hits": s.cache_hits, "compiles": s.compiles, "value": int(value)}))
    """
    cache = tmp_path / "cache"
    first = run_python(code, cache=cache, script=tmp_path / "cpu_job.py")
    second = run_python(code, cache=cache, script=tmp_path / "cpu_job.py")
    assert first == {"hits": 0, "compiles": 1, "value": 45}
    assert second == {"hits": 1, "compiles": 0, "value": 45}


def test_numba_cache_stays_in_the_checked_cache_directory(tmp_path: Path) -> None:
    code = """
        import json
        import numpy as np
        from numba import cuda
        from pydotcompute import kernel

        @kernel
        def double(x):
            i = cuda.grid(1)
            if i < x.size:
                x[i] *= 2

        x = np.ones(10)
        double[1, 32](x)
        print(json.dumps({"hits": double.stats.cache_hits, "ok": bool((x == 2).all())}))
    """
    cache = tmp_path / "cache"
    elsewhere = tmp_path / "numba-elsewhere"
    env = {"NUMBA_CACHE_DIR": str(elsewhere)}
    first = run_python(code, cache=cache, script=tmp_path / "nc_job.py", env=env)
    second = run_python(code, cache=cache, script=tmp_path / "nc_job.py", env=env)
    assert first == {"hits": 0, "ok": True} and second == {"hits": 1, "ok": True}
    assert list((cache / "cpu").glob("*.nbi")) and list((cache / "cpu").glob("*.nbc"))
    assert not elsewhere.exists() or not any(elsewhere.rglob("*"))


def test_repeated_launches_take_new_values_and_keep_no_array_alive() -> None:
    x = np.arange(4.0)
    out = np.zeros(4)
    saxpy(1.0, x, x, out)
    saxpy(3.0, x, x, out)  # same arrays, a new number
    assert out.tolist() == (4 * x).tolist()
    saxpy(np.float32(0.5), x, x, out)  # another number type: another variant
    assert out.tolist() == (1.5 * x).tolist()
    other = np.ones(4)
    saxpy(1.0, other, x, out)  # another array
    assert out.tolist() == (1 + x).tolist()
    ref = weakref.ref(other)
    del other
    gc.collect()
    assert ref() is None
    with pytest.raises(KernelArgumentError, match="does not fit in int64"):
        saxpy(2**70, x, x, out)


def test_cuda_path_runs_under_the_simulator(tmp_path: Path) -> None:
    code = """
        import json
        import numpy as np
        from pydotcompute import Accelerator, UnifiedBuffer, kernel

        @kernel
        def saxpy(i, a, x, y, out):
            out[i] = a * x[i] + y[i]

        @kernel(reduce="sum")
        def total(i, x):
            return x[i]

        @kernel(reduce="max")
        def peak(i, x):
            return x[i]

        acc = Accelerator("cuda:0")
        n = 300
        x = UnifiedBuffer.from_array(np.arange(n, dtype=np.float32), accelerator=acc)
        y = UnifiedBuffer.from_array(np.ones(n, dtype=np.float32), accelerator=acc)
        out = UnifiedBuffer((n,), np.float32, accelerator=acc)
        saxpy(2.0, x, y, out)
        state = out.state.value
        ok = bool(np.allclose(out.host_view(), 2 * np.arange(n) + 1))
        saxpy[2, 16](1.0, x, y, out)  # any grid covers every element (grid-stride)
        ok2 = bool(np.allclose(out.host_view(), np.arange(n) + 1))
        plain = np.zeros(4, dtype=np.float32)
        saxpy(1.0, plain + 1, plain + 2, plain, accelerator=acc)
        print(json.dumps({
            "simulated": acc.simulated, "state": state, "ok": ok, "ok2": ok2,
            "total": float(total(x)), "peak": float(peak(x)), "block_total": float(total[1, 64](x)),
            "x": [x.stats.h2d_copies, x.stats.d2h_copies],
            "out": [out.stats.h2d_copies, out.stats.d2h_copies],
            "plain": plain.tolist(), "targets": saxpy.stats.targets,
        }))
    """
    got = run_python(code, cache=tmp_path / "cache", script=tmp_path / "sim_job.py", sim=True)
    assert got["simulated"] and got["state"] == "device_dirty" and got["ok"] and got["ok2"]
    assert got["total"] == sum(range(300)) and got["peak"] == 299.0
    assert got["block_total"] == got["total"]
    assert got["x"] == [1, 0]  # x went to the device once and was only read there
    assert got["out"] == [0, 2]  # out came back once per kernel that wrote it
    assert got["plain"] == [3.0] * 4 and got["targets"] == ["cuda-simulator"]


# ------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_saxpy_and_reductions_on_the_gpu() -> None:
    acc = gpu()
    import cupy

    n = 1 << 20
    x = UnifiedBuffer.from_array(np.arange(n, dtype=np.float32) / n, accelerator=acc)
    y = UnifiedBuffer.from_array(np.ones(n, dtype=np.float32), accelerator=acc)
    out = UnifiedBuffer((n,), np.float32, accelerator=acc)
    saxpy(2.0, x, y, out)
    assert out.state is BufferState.DEVICE_DIRTY
    np.testing.assert_allclose(out.host_view(), 2 * np.arange(n, dtype=np.float32) / n + 1)
    assert x.stats.h2d_copies == 1 and out.stats.d2h_copies == 1
    assert sum_squares(x, timeout=30) == pytest.approx(float((x.host_view() ** 2).sum()), 1e-3)
    assert largest(x) == x.host_view().max() and smallest(x) == 0.0
    dev = cupy.arange(10, dtype=cupy.float64)
    cout = cupy.zeros(10)
    saxpy[1, 32](1.0, dev, dev, cout)
    assert cupy.asnumpy(cout).tolist() == [2.0 * v for v in range(10)]
    with pytest.raises(KernelArgumentError, match="is a NumPy array in host memory"):
        saxpy(1.0, np.zeros(3), dev, cout, accelerator=acc)
    assert "cuda" in saxpy.stats.targets


@pytest.mark.gpu
def test_gpu_launch_loads_cached_ptx_in_a_new_process(tmp_path: Path) -> None:
    gpu()
    code = """
        import json
        import numpy as np
        from pydotcompute import UnifiedBuffer, kernel

        @kernel
        def twice(i, x):
            x[i] *= 2

        x = UnifiedBuffer.from_array(np.ones(1000, dtype=np.float32), accelerator="cuda:0")
        twice(x)
        s = twice.stats
        print(json.dumps({"hits": s.cache_hits, "ok": bool((x.host_view() == 2).all())}))
    """
    cache = tmp_path / "cache"
    first = run_python(code, cache=cache, script=tmp_path / "gpu_job.py")
    second = run_python(code, cache=cache, script=tmp_path / "gpu_job.py")
    assert first == {"hits": 0, "ok": True} and second == {"hits": 1, "ok": True}


def test_large_launches_run_in_parallel_and_agree() -> None:
    n = 1 << 17  # at or above PARALLEL_MIN: the prange launchers run
    x = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    saxpy(2.0, x, x, out)
    assert (out == 3 * x).all()
    assert sum_squares(x) == pytest.approx(float((x * x).sum()))
    assert largest(x) == n - 1 and smallest(x) == 0.0
