"""Textbook Numba CUDA kernels under @kernel, unchanged: CPU results against NumPy (and GPU)."""

from __future__ import annotations

import asyncio
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba import cuda, float32, float64, int64

from pydotcompute import Accelerator, KernelArgumentError, KernelCompileError, kernel
from pydotcompute._cuda import cuda_status
from tests.compute.conftest import gpu

TPB = 128  # threads per block of the shared-memory kernels


@kernel
def saxpy(a, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a * x[i] + y[i]


@kernel
def scale_2d(a, m, out):
    r, c = cuda.grid(2)
    if r < m.shape[0] and c < m.shape[1]:
        out[r, c] = a * m[r, c] + r - c


@kernel
def block_sum(x, partial):
    tmp = cuda.shared.array(TPB, dtype=float64)
    tid = cuda.threadIdx.x
    i = cuda.blockIdx.x * cuda.blockDim.x + tid
    tmp[tid] = x[i] if i < x.size else 0.0
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            tmp[tid] += tmp[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = tmp[0]


@kernel
def histogram(x, bins, hist):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, x.size, stride):
        k = int(x[i] * bins)
        if k >= bins:
            k = bins - 1
        cuda.atomic.add(hist, k, 1)


@kernel
def grid_stride_square(x, out):
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < x.size:
        out[i] = x[i] * x[i]
        i += stride


@kernel
def extremes(x, lo_hi):
    i = cuda.grid(1)
    if i < x.size:
        cuda.atomic.min(lo_hi, 0, x[i])
        cuda.atomic.max(lo_hi, 1, x[i])


@kernel
def matmul_tiled(a, b, c):
    sa = cuda.shared.array((16, 16), dtype=float32)
    sb = cuda.shared.array((16, 16), dtype=float32)
    x, y = cuda.grid(2)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    acc = float32(0.0)
    for t in range((a.shape[1] + 15) // 16):
        sa[tx, ty] = a[x, ty + t * 16] if x < a.shape[0] and ty + t * 16 < a.shape[1] else 0
        sb[tx, ty] = b[tx + t * 16, y] if y < b.shape[1] and tx + t * 16 < b.shape[0] else 0
        cuda.syncthreads()
        for k in range(16):
            acc += sa[tx, k] * sb[k, ty]
        cuda.syncthreads()
    if x < c.shape[0] and y < c.shape[1]:
        c[x, y] = acc


@kernel
def reverse_block(x):
    tile = cuda.shared.array(64, dtype=int64)
    t = cuda.threadIdx.x
    base = cuda.blockIdx.x * 64
    tile[t] = x[base + t]
    cuda.syncthreads()
    x[base + t] = tile[63 - t]


@cuda.jit(device=True)
def clamp(v, lo, hi):
    return min(max(v, lo), hi)


@kernel
def clamped(x, out):
    i = cuda.grid(1)
    if i >= x.size:
        return
    scratch = cuda.local.array(2, dtype=float64)
    scratch[0] = clamp(x[i], -1.0, 1.0)
    scratch[1] = cuda.threadIdx.x
    out[i] = scratch[0]


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


# ----------------------------------------------------------------------- the five textbook kernels
def run_saxpy(acc: Any) -> None:
    n = 1000
    x = _rng().random(n, dtype=np.float32)
    y = np.ones(n, np.float32)
    out = np.zeros(n, np.float32)
    blocks = (n + 255) // 256
    saxpy[blocks, 256](np.float32(2.0), *acc.put(x, y, out))
    np.testing.assert_allclose(acc.get(out), 2 * x + y, rtol=1e-6)
    out2 = np.zeros(n, np.float32)
    saxpy(np.float32(2.0), *acc.put(x, y, out2), size=n)
    np.testing.assert_allclose(acc.get(out2), 2 * x + y, rtol=1e-6)


def run_2d(acc: Any) -> None:
    m = _rng().random((37, 50))
    out = np.zeros_like(m)
    scale_2d[(3, 4), (16, 16)](2.0, *acc.put(m, out))
    rows, cols = np.indices(m.shape)
    np.testing.assert_allclose(acc.get(out), 2 * m + rows - cols)
    out2 = np.zeros_like(m)
    scale_2d(2.0, *acc.put(m, out2), size=m.shape)
    np.testing.assert_allclose(acc.get(out2), 2 * m + rows - cols)


def run_block_sum(acc: Any) -> None:
    x = _rng().random(1000)
    blocks = (x.size + TPB - 1) // TPB
    partial = np.zeros(blocks)
    block_sum[blocks, TPB](*acc.put(x, partial))
    want = [x[b * TPB : (b + 1) * TPB].sum() for b in range(blocks)]
    np.testing.assert_allclose(acc.get(partial), want)


def run_histogram(acc: Any) -> None:
    x = _rng().random(10_000)
    hist = np.zeros(16, np.int64)
    histogram[8, 128](*acc.put(x), 16, *acc.put(hist))
    want, _ = np.histogram(x, bins=16, range=(0.0, 1.0))
    assert acc.get(hist).tolist() == want.tolist()


def run_grid_stride(acc: Any) -> None:
    x = np.arange(5000, dtype=np.float64)
    for config in [(1, 32), (3, 64), (64, 128)]:  # any grid covers every element
        out = np.zeros_like(x)
        grid_stride_square[config](*acc.put(x, out))
        assert (acc.get(out) == x * x).all()


class OnCpu:
    """Arguments are the NumPy arrays themselves."""

    def put(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        self.arrays = arrays
        return arrays

    def get(self, array: np.ndarray) -> np.ndarray:
        return array


class OnGpu:
    """Arguments are CuPy copies; results are copied back."""

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy
        self.copies: dict[int, Any] = {}

    def put(self, *arrays: np.ndarray) -> tuple[Any, ...]:
        out = []
        for a in arrays:
            dev = self.cupy.asarray(a)
            self.copies[id(a)] = dev
            out.append(dev)
        return tuple(out)

    def get(self, array: np.ndarray) -> np.ndarray:
        return self.cupy.asnumpy(self.copies[id(array)])


TEXTBOOK = [run_saxpy, run_2d, run_block_sum, run_histogram, run_grid_stride]


@pytest.mark.parametrize("case", TEXTBOOK, ids=lambda f: f.__name__[4:])
def test_textbook_kernels_run_unchanged_on_the_cpu(case: Any) -> None:
    case(OnCpu())


@pytest.mark.gpu
@pytest.mark.parametrize("case", TEXTBOOK, ids=lambda f: f.__name__[4:])
def test_textbook_kernels_run_unchanged_on_the_gpu(case: Any) -> None:
    gpu()
    case(OnGpu())


# ----------------------------------------------------------------------- more of the vocabulary
def test_a_tiled_matmul_with_two_barriers_per_tile() -> None:
    rng = _rng()
    a = rng.random((40, 35), dtype=np.float32)
    b = rng.random((35, 20), dtype=np.float32)
    c = np.zeros((40, 20), np.float32)
    matmul_tiled[(3, 2), (16, 16)](a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)


def test_shared_memory_is_per_block() -> None:
    x = np.arange(256, dtype=np.int64)
    reverse_block[4, 64](x)
    want = np.concatenate([np.arange(b * 64, (b + 1) * 64)[::-1] for b in range(4)])
    assert x.tolist() == want.tolist()


def test_atomic_min_max_and_return_of_the_old_value() -> None:
    x = _rng().normal(size=3000)
    lo_hi = np.array([np.inf, -np.inf])
    extremes[12, 256](x, lo_hi)
    assert lo_hi.tolist() == [x.min(), x.max()]

    @kernel
    def tickets(counter, got):
        i = cuda.grid(1)
        if i < got.size:
            got[i] = cuda.atomic.add(counter, 0, 1)

    counter = np.zeros(1, np.int64)
    got = np.full(500, -1, np.int64)
    tickets[2, 256](counter, got)
    assert counter[0] == 500 and sorted(got.tolist()) == list(range(500))


def test_device_functions_local_arrays_and_early_return() -> None:
    x = np.linspace(-3, 3, 100)
    out = np.zeros_like(x)
    clamped[1, 128](x, out)
    np.testing.assert_allclose(out, np.clip(x, -1, 1))


def test_large_launches_run_in_parallel_and_agree() -> None:
    n = 1 << 18
    x = _rng().random(n)
    out = np.zeros_like(x)
    grid_stride_square[n // 256, 256](x, out)
    np.testing.assert_allclose(out, x * x)
    hist = np.zeros(16, np.int64)
    histogram[n // 256, 256](x, 16, hist)
    assert hist.sum() == n and hist.tolist() == np.histogram(x, 16, (0, 1))[0].tolist()
    blocks = n // TPB
    partial = np.zeros(blocks)
    block_sum[blocks, TPB](x, partial)
    assert partial.sum() == pytest.approx(x.sum())


def test_form_and_generated_cpu_launchers() -> None:
    assert saxpy.form == "cuda" and saxpy.params == ("a", "x", "y", "out")
    assert " cuda " in repr(saxpy)
    assert saxpy.source("cuda").startswith("def saxpy(a, x, y, out):\n    i = cuda.grid(1)")
    x = np.zeros(4)
    block_sum[1, TPB](x, np.zeros(1))
    text = block_sum.source("cpu")
    assert "mode: block (thread loops split at cuda.syncthreads)" in text
    assert "_pdc_v_s = _pdc_np.empty(_pdc_nt, _pdc_np.int64)" in text
    saxpy[1, 4](1.0, x, x, x)
    assert "mode: flat" in saxpy.source("cpu")

    @kernel
    def fresh(x):
        x[cuda.grid(1)] = 1

    with pytest.raises(KernelArgumentError, match="launch it on the CPU once first"):
        fresh.source("cpu")


def test_launch_configuration_errors_say_what_to_pass() -> None:
    x = np.zeros(8)
    with pytest.raises(KernelArgumentError, match=r"needs a launch configuration: saxpy\["):
        saxpy(1.0, x, x, x)
    with pytest.raises(KernelArgumentError, match="threads must be a non-negative int"):
        saxpy[1, "many"]
    with pytest.raises(KernelArgumentError, match=r"1\.\.1024 threads per block \(got 1089\)"):
        scale_2d[1, (33, 33)]
    with pytest.raises(KernelArgumentError, match="size must be a non-negative int or a tuple"):
        saxpy(1.0, x, x, x, size=(1, 2, 3, 4))
    with pytest.raises(KernelArgumentError, match=r"takes 4 arguments \(a, x, y, out\), got 2"):
        saxpy[1, 8](1.0, x)
    with pytest.raises(KernelArgumentError, match="reduce= is for the element-index form"):
        kernel(reduce="sum")(saxpy.func)
    saxpy(1.0, x, x, x, size=0)  # nothing to run


def test_what_the_cpu_cannot_translate_falls_back_to_the_simulator_with_a_warning() -> None:
    @kernel
    def warp_vote(x, out):
        i = cuda.grid(1)
        out[i] = cuda.syncthreads_count(x[i] > 0)

    x = np.array([1.0, -1.0, 2.0, 3.0])
    out = np.zeros(4)
    with pytest.warns(RuntimeWarning, match=r"Numba's CUDA simulator .*'cuda\.syncthreads_count'"):
        warp_vote[1, 4](x, out)
    assert out.tolist() == [3.0] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warp_vote[1, 4](x, out)  # warned once per kernel


def test_numba_errors_in_a_cuda_body_are_compile_errors() -> None:
    @kernel
    def bad(out):
        out[cuda.grid(1)] = object()

    with pytest.raises(KernelCompileError, match="does not compile for the CPU: TypingError"):
        bad[1, 1](np.zeros(1))

    @kernel
    def returns_value(out):
        return cuda.grid(1)

    with pytest.raises(KernelCompileError, match="returns a value; write results into"):
        returns_value[1, 1](np.zeros(1))


# ----------------------------------------------------------------------- kernels without source
FACTORY = """
def {name}(a, x, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a * x[i] + {offset}
"""


def _made_by_exec(name: str, offset: float, **namespace: Any) -> Any:
    scope: dict[str, Any] = {"cuda": cuda, **namespace}
    exec(FACTORY.format(name=name, offset=offset), scope)
    return scope[name]


def test_an_element_kernel_made_by_exec_compiles_from_bytecode(tmp_path: Path) -> None:
    scope: dict[str, Any] = {"math": math}
    exec("def root(i, x, out):\n    out[i] = math.sqrt(x[i])\n", scope)
    root = kernel(scope["root"])
    x = np.array([4.0, 9.0, 16.0])
    out = np.zeros(3)
    root(x, out)
    assert out.tolist() == [2.0, 3.0, 4.0]
    assert root.writes == ("x", "out")  # without syntax, every array may be written
    assert "no source text; compiled by Numba from its bytecode" in root.source("cpu")
    if cuda_status().usable:
        assert ".visible .entry" in root.ptx(x, out)
    else:
        with pytest.raises(KernelCompileError, match="numba-cuda needs a GPU to type a call"):
            root.ptx(x, out)

    def factory(k: float) -> Any:
        @kernel(reduce="sum")
        def scaled(i, x):
            return k * x[i]

        return scaled

    assert factory(2.0)(x) == 58.0 and factory(3.0)(x) == 87.0


def test_a_cuda_kernel_made_by_exec_compiles_for_the_gpu_and_warns_on_the_cpu() -> None:
    made = kernel(_made_by_exec("shifted", 1.0))
    x = np.arange(4, dtype=np.float64)
    assert ".visible .entry" in made.ptx(2.0, x, x)
    out = np.zeros(4)
    with pytest.warns(RuntimeWarning, match="because its source cannot be read .* made by exec"):
        made[1, 4](2.0, x, out)
    assert out.tolist() == [1.0, 3.0, 5.0, 7.0]


def test_two_exec_kernels_with_one_name_do_not_share_a_cache_entry() -> None:
    scope: dict[str, Any] = {}
    exec("def f(i, out):\n    out[i] = 1.0\n", scope)
    one = kernel(scope["f"])
    exec("def f(i, out):\n    out[i] = 2.0\n", scope)
    two = kernel(scope["f"])
    out = np.zeros(2)
    one(out)
    assert out.tolist() == [1.0, 1.0]
    two(out)
    assert out.tolist() == [2.0, 2.0]


# ----------------------------------------------------------------------- cubin and the simulator
def test_ptx_links_to_a_cubin_for_sm_90_without_a_gpu() -> None:
    pytest.importorskip("cuda.bindings.nvjitlink", reason="nvJitLink is not installed")
    x = np.zeros(8, np.float32)
    cubin = saxpy.cubin(np.float32(1.0), x, x, x, cc=(9, 0))
    assert cubin[:4] == b"\x7fELF"
    before = saxpy.stats.cache_hits
    assert saxpy.cubin(np.float32(1.0), x, x, x, cc=(9, 0)) == cubin
    assert saxpy.stats.cache_hits == before + 1  # the PTX came from the cache
    assert block_sum.cubin(x.astype(np.float64), x.astype(np.float64))[:4] == b"\x7fELF"


def test_gpu_launches_load_the_linked_cubin(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cuda.bindings.nvjitlink", reason="nvJitLink is not installed")
    from pydotcompute.compute import _targets

    loaded: list[bytes] = []

    class FakeModule:
        def load(self, data: bytes) -> None:
            loaded.append(data)

        def get_function(self, name: str) -> str:
            return name

    class FakeCupy:
        class cuda:
            @staticmethod
            def Device(index: int) -> Any:  # noqa: N802 - mirrors cupy.cuda.Device
                import contextlib

                return contextlib.nullcontext()

    import cupy.cuda.function as function

    monkeypatch.setattr(function, "Module", FakeModule)
    x = np.zeros(8, np.float32)
    keys = saxpy._example_keys("ptx", (np.float32(1.0), x, x, x))
    compiled, _dtype, _constants = saxpy._ptx(keys, (9, 0), 256)
    _module, entry = _targets.load_ptx(compiled, FakeCupy, 0, (9, 0))
    assert entry == compiled.entry and loaded[0][:4] == b"\x7fELF"
    _targets._functions.pop((compiled.key, 0))


def test_cuda_form_under_the_simulator(sim: Accelerator) -> None:
    from numba.cuda.simulator.kernel import FakeCUDAKernel  # noqa: F401 - importable

    x = np.arange(300, dtype=np.float64)
    out = np.zeros_like(x)
    grid_stride_square[2, 32](x, out, accelerator=sim)
    assert (out == x * x).all()


def test_cuda_form_arguments_flatten_like_its_ptx_parameters() -> None:
    from pydotcompute.compute._args import arg_key, check_abi, pack_args
    from pydotcompute.compute._targets import ptx_entry

    m = np.zeros((4, 3))
    _entry, params = ptx_entry(scale_2d.ptx(2.0, m, m))
    fake = {"shape": m.shape, "typestr": "<f8", "data": (0x7F0000001000, False), "version": 3}
    dev = type("Dev", (), {"__cuda_array_interface__": fake})()
    values = [2.0, dev, dev]
    keys = tuple(arg_key("scale_2d", n, v) for n, v in zip(("a", "m", "out"), values))
    check_abi("scale_2d", pack_args(keys, values), params)  # no element count in front


@pytest.mark.gpu
def test_launch_async_on_the_gpu() -> None:
    acc = gpu()
    from pydotcompute import UnifiedBuffer

    n = 1 << 16
    x = UnifiedBuffer.from_array(np.arange(n, dtype=np.float32), accelerator=acc)
    out = UnifiedBuffer((n,), np.float32, accelerator=acc)
    partial = UnifiedBuffer((n // TPB,), np.float64, accelerator=acc)
    ones = UnifiedBuffer.from_array(np.ones(n), accelerator=acc)

    async def main() -> None:  # asyncio.run: GPU machines may lack pytest-asyncio
        launch = saxpy[(n + 255) // 256, 256].launch_async
        await launch(np.float32(2.0), x, x, out, timeout=60)
        await block_sum[n // TPB, TPB].launch_async(ones, partial, timeout=60)

    asyncio.run(main())
    np.testing.assert_allclose(out.host_view(), 3 * np.arange(n, dtype=np.float32))
    assert (partial.host_view() == TPB).all()


@kernel
def first_negative(x, out):
    i = cuda.grid(1)
    if i >= out.size:
        return
    for j in range(x.shape[1]):
        if x[i, j] < 0:
            out[i] = j
            return
    out[i] = -1


@kernel
def doubled_into(a, x):
    a = a * 2  # a parameter rebound per thread
    i = cuda.grid(1)
    if i < x.size:
        x[i] = a + i


@kernel
def classify(x, out):
    i = cuda.grid(1)
    if i >= x.size:
        return
    if x[i] < 0:
        out[i] = -1
        return
    elif x[i] == 0:
        return
    out[i] = 1


def test_returns_and_rebound_parameters_in_flat_kernels() -> None:
    x = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, 6.0], [-1.0, 0.0, 0.0]])
    out = np.zeros(3, np.int64)
    first_negative[1, 32](x, out)
    assert out.tolist() == [1, -1, 0]
    assert "_pdc_thread = _pdc_inline(_pdc_thread)" in first_negative.source("cpu")
    y = np.zeros(5)
    doubled_into[2, 4](1.5, y)
    assert y.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    v = np.array([-2.0, 0.0, 5.0, 7.0])
    got = np.full(4, 9, np.int64)
    classify[1, 8](v, got)
    assert got.tolist() == [-1, 9, 1, 1]
    assert "_pdc_thread(" not in classify.source("cpu")  # pasted into the thread loop


@kernel
def scale_3d(x, out):
    i, j, k = cuda.grid(3)
    if i < x.shape[0] and j < x.shape[1] and k < x.shape[2]:
        out[i, j, k] = 2 * x[i, j, k] + cuda.gridDim.z


@kernel
def rotate_if(x, flag):
    s = cuda.shared.array(32, dtype=float64)
    t = cuda.threadIdx.x
    s[t] = x[t]
    cuda.syncthreads()
    if flag[0] > 0:  # the same for every thread: a barrier inside is allowed
        v = s[(t + 1) % 32]
        cuda.syncthreads()
        s[t] = v
        cuda.syncthreads()
    x[t] = s[t]


def test_a_3d_grid_and_a_barrier_inside_a_uniform_if() -> None:
    x = _rng().random((5, 6, 7))
    out = np.zeros_like(x)
    scale_3d[(2, 2, 2), (4, 4, 4)](x, out)
    np.testing.assert_allclose(out, 2 * x + 2)
    out3 = np.zeros_like(x)
    scale_3d(x, out3, size=x.shape)  # 8x8x8 threads per block, one block per axis here
    np.testing.assert_allclose(out3, 2 * x + 1)
    v = np.arange(32, dtype=np.float64)
    rotate_if[1, 32](v, np.array([1]))
    assert v.tolist() == [float((t + 1) % 32) for t in range(32)]
    rotate_if[1, 32](v, np.array([0]))
    assert v.tolist() == [float((t + 1) % 32) for t in range(32)]
    assert "_pdc_v_v = _pdc_np.empty(_pdc_nt, _pdc_np.float64)" in rotate_if.source("cpu")
