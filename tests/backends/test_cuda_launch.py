"""The CUDA launcher's logic against a fake CuPy (no GPU needed; the names are checked real)."""

from __future__ import annotations

import concurrent.futures
import gc
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pydotcompute import BackendUnavailableError, KernelRegistrationError
from pydotcompute._cuda import CudaStatus, check_ring_kernel_environment
from pydotcompute.backends.device import _cuda_launch
from pydotcompute.backends.device._cuda_launch import CudaLauncher, residency
from pydotcompute.backends.device._memory import CMD_TERMINATE, doorbell_command
from tests.backends import fake_cupy
from tests.backends.fake_cupy import FakeGpu

USABLE = CudaStatus(True, "usable", 1, "Fake GPU", "90", 13000, "EAGER")
ARGS = (0, 0, 0, 0, 0, 0)


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpu]:
    """The launcher module on a fake CuPy, with fresh bookkeeping.

    Fake launchers must never reach the real pool (a later real launch would take a fake
    block): those still registered are emptied, and the rest collected, while patched.
    """
    cp, fake = fake_cupy.make_fake_cupy()
    monkeypatch.setattr(_cuda_launch, "require_cupy", lambda feature: cp)
    monkeypatch.setattr(_cuda_launch, "cuda_status", lambda: USABLE)
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    for name, value in (("_pool", []), ("_kept", []), ("_launched", set()), ("_resident", {})):
        monkeypatch.setattr(_cuda_launch, name, value)
    yield fake
    for launcher in list(_cuda_launch._launched):
        launcher._block = None
    gc.collect()


def launch(kernel_id: str = "k", threads: int = 1, size: int = 4096) -> CudaLauncher:
    launcher = CudaLauncher(kernel_id, size)
    control = launcher.base_address
    launcher.start(Path("k.cubin"), (control, *ARGS[1:]), threads)
    return launcher


def stop(launcher: CudaLauncher) -> None:
    launcher.request_stop()
    assert not launcher.running()


def test_the_device_address_comes_from_pointer_attributes(gpu: FakeGpu) -> None:
    launcher = launch(threads=64)
    block = gpu.allocations[0]
    assert launcher.base_address == block.ptr and block.flags == 2  # hostAllocMapped
    grid, threads, args, _, devices = gpu.launches[0]
    assert (grid, threads, devices) == ((1,), (64,), [0])
    assert all(isinstance(a, np.uint64) for a in args) and gpu.functions == ["pdc_ring_kernel"]
    assert launcher.running() and launcher.fault() is None


def test_start_off_the_event_loop_names_its_device(gpu: FakeGpu) -> None:
    gpu.current_device = 1
    launcher = CudaLauncher("k", 4096)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(launcher.start, Path("k.cubin"), (launcher.base_address, *ARGS[1:]), 1)
        pool.shutdown()
    assert launcher.device == "cuda:1" and gpu.launches[0][4] == [1]


def test_released_while_starting_the_memory_is_kept_and_the_late_loop_told_to_stop(
    gpu: FakeGpu,
) -> None:
    gpu.launch_gate = threading.Event()
    launcher = CudaLauncher("slow", 4096)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = pool.submit(
            launcher.start, Path("k.cubin"), (launcher.base_address, *ARGS[1:]), 1
        )
        assert gpu.launch_entered.wait(10)
        launcher.release()  # as a start timeout would: the launch has not returned yet
        assert _cuda_launch._pool == [] and gpu.allocations[0] in _cuda_launch._kept
        gpu.launch_gate.set()
        started.result(timeout=10)
    assert _cuda_launch._launched == set()
    command = doorbell_command(launcher.memory)
    assert command == CMD_TERMINATE
    with pytest.raises(BackendUnavailableError, match="released before it started"):
        launcher.start(Path("k.cubin"), ARGS, 1)
    assert residency() == (1, 1 / 32)  # until the late loop is seen to have ended
    launch("next")
    assert residency() == (1, 1 / 32)  # the next launch noticed it and took its place


def test_only_success_and_sticky_errors_end_a_kernel(gpu: FakeGpu) -> None:
    launcher = launch()
    gpu.query_error = 1  # cudaErrorInvalidValue of some earlier call: says nothing here
    assert launcher.running() and launcher.fault() is None
    launcher.release()  # it may still run: its memory is neither pooled nor freed
    assert _cuda_launch._pool == [] and gpu.allocations[0] in _cuda_launch._kept


def test_a_sticky_error_is_final_and_says_the_context_is_lost(gpu: FakeGpu) -> None:
    launcher = launch()
    stream = gpu.launches[0][3]
    stream.code = 700
    gpu.context_lost = True
    assert not launcher.running()
    fault = launcher.fault()
    assert fault is not None and fault.cuda_error == "cudaErrorIllegalAddress"
    assert not fault.context_usable and "NOT usable" in str(fault)
    stream.code = None  # later queries cannot bring it back: the end was final
    assert not launcher.running()
    launcher.release()
    assert _cuda_launch._pool == []


def test_a_cleanly_ended_kernel_returns_its_block_to_the_pool(gpu: FakeGpu) -> None:
    first = launch()
    stop(first)
    assert first.fault() is None
    first.release()
    assert len(_cuda_launch._pool) == 1
    second = launch()
    assert second.base_address == first.base_address and len(gpu.allocations) == 1
    assert not second.memory.any()  # the old terminate command is gone


def test_a_block_too_large_for_the_handler_says_what_block_size_fits(gpu: FakeGpu) -> None:
    gpu.function_resources = (128, 512, 0)
    with pytest.raises(
        KernelRegistrationError,
        match=r"'k' cannot launch with block_size=1024 on cuda:0: its handler uses 128 "
        r"registers.*at most 512 threads fit one block; declare it with block_size=512",
    ):
        launch(threads=1024)
    assert gpu.launches == [] and residency() == (0, 0.0)
    assert _cuda_launch._pool == gpu.allocations  # refused: its block is pooled, not freed


def test_more_ring_kernels_than_stay_resident_fail_at_launch(gpu: FakeGpu) -> None:
    gpu.sms = 2
    gpu.blocks_per_sm = lambda threads: 1
    a, _ = launch("a", 1024), launch("b", 1024)
    assert residency() == (2, 2.0)
    with pytest.raises(
        BackendUnavailableError,
        match=r"keeps at most 2 ring kernels like it resident \(2 SMs x 1 blocks of 1024 "
        r"threads per SM\), and the 2 running ring kernels already hold 2.0 of its 2 SMs",
    ):
        launch("c", 1024)
    assert len(gpu.launches) == 2
    stop(a)  # an ended kernel frees its place
    launch("c", 1024)
    assert residency() == (2, 2.0)


def test_a_failed_launch_gives_its_place_back(gpu: FakeGpu) -> None:
    gpu.launch_error = 701  # cudaErrorLaunchOutOfResources
    with pytest.raises(fake_cupy.CUDARuntimeError):
        launch()
    assert residency() == (0, 0.0) and _cuda_launch._pool == gpu.allocations


def test_a_launcher_dropped_without_release_never_frees_its_block(gpu: FakeGpu) -> None:
    unused = CudaLauncher("unused", 4096)
    del unused  # never started: nothing polls it, so it is pooled
    assert _cuda_launch._pool == gpu.allocations[:1]
    running = launch("running")
    del running  # started and not released: the registry keeps it (and its memory) alive
    gc.collect()
    assert [k.kernel_id for k in _cuda_launch._launched] == ["running"]
    assert _cuda_launch._pool == []


def test_launch_blocking_is_refused_before_anything_is_allocated(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_LAUNCH_BLOCKING", "1")
    with pytest.raises(BackendUnavailableError, match=r"CUDA_LAUNCH_BLOCKING=1.*never return"):
        CudaLauncher("k", 4096)
    assert gpu.allocations == []


def test_lazy_module_loading_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_LAUNCH_BLOCKING", raising=False)
    lazy = CudaStatus(True, "usable", 1, "Fake GPU", "90", 13000, "LAZY")
    with pytest.raises(
        BackendUnavailableError,
        match=r"loads modules lazily.*start Python with CUDA_MODULE_LOADING=EAGER",
    ):
        check_ring_kernel_environment(lazy)
    check_ring_kernel_environment(USABLE)


def test_at_exit_running_kernels_stop_and_a_hung_one_is_leaked(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_cuda_launch, "EXIT_WAIT_S", 0.05)
    good, hung = launch("good"), launch("hung")
    gpu.launches[-1][3].hangs = True
    _cuda_launch._stop_all()
    assert not good.running() and hung.running()
    command = doorbell_command(hung.memory)
    assert command == CMD_TERMINATE  # it was asked
    kept = _cuda_launch._kept
    # good's block went to the pool, which is never freed (that could wait for the hung
    # kernel); nor is the hung kernel's memory
    assert gpu.allocations[0] in kept and gpu.allocations[1] in kept
    assert "'hung' did not stop within 0.05 s" in capsys.readouterr().err


EXIT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{root!r}]
    from pathlib import Path
    from pydotcompute._cuda import CudaStatus
    from pydotcompute.backends.device import _cuda_launch
    from tests.backends import fake_cupy

    cp, gpu = fake_cupy.make_fake_cupy()
    _cuda_launch.require_cupy = lambda feature: cp
    _cuda_launch.cuda_status = lambda: CudaStatus(True, "usable", 1, "F", "90", 13000, "EAGER")
    _cuda_launch.EXIT_WAIT_S = 0.05
    for name in ("stops", "hangs"):
        k = _cuda_launch.CudaLauncher(name, 4096)
        k.start(Path("k.cubin"), (k.base_address, 0, 0, 0, 0, 0), 1)
    gpu.launches[-1][3].hangs = True
    print("exiting with", len(_cuda_launch._launched), "kernels running")
    """
)


def test_interpreter_exit_with_kernels_running_returns(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", EXIT.format(root=root)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert proc.stdout.strip() == "exiting with 2 kernels running"
    assert "'hangs' did not stop within 0.05 s of interpreter exit" in proc.stderr
    assert "'stops'" not in proc.stderr
