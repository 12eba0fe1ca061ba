"""Device kernel declaration, generated source, NVRTC compiles for sm_90, and the build cache."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from pydotcompute import (
    Array,
    BackendUnavailableError,
    KernelCompileError,
    KernelRegistrationError,
    LayoutError,
    PyDotComputeError,
    RingKernelRuntime,
    generated_source,
    message,
    ring_kernel,
)
from pydotcompute._cli import main
from pydotcompute._cuda import cuda_status
from pydotcompute.backends.device._codegen import GENERATOR_VERSION, generate
from pydotcompute.backends.device._compile import build_cuda, find_cxx, parse_errors
from pydotcompute.backends.device._nvrtc import Nvrtc, load_nvrtc
from tests.backends.device_kernels import Done, Job, declare, declare_parallel
from tests.conftest import within


@message
class Point:
    x: np.float32
    y: np.float32


@message
class Rich:
    where: Point
    samples: Array[np.float32, 8]
    grid: Array[np.int16, (2, 3)]
    flag: bool
    count: int
    ratio: float
    small: np.uint8
    ref: uuid.UUID


@message
class Loose:
    label: str
    values: list[float]


def nvrtc_or_skip() -> None:
    try:
        load_nvrtc()
    except BackendUnavailableError as exc:
        pytest.skip(f"NVRTC is not installed: {exc}")


# ---------------------------------------------------------------- declaration


def test_a_field_without_fixed_layout_is_refused_at_declaration() -> None:
    with pytest.raises(LayoutError, match=r"input_type Loose has no fixed layout: field 'label'"):
        ring_kernel(kernel_id="k", input_type=Loose, output_type=Done, cuda="out.n = 1;")


def test_the_layout_error_names_the_array_fix() -> None:
    @message
    class Floats:
        values: list[float]

    with pytest.raises(LayoutError, match=r"field 'values'.*Array\[np\.float32, N\]"):
        ring_kernel(kernel_id="k", input_type=Job, output_type=Floats, cuda="out.values;")


def test_parallel_mode_refuses_state() -> None:
    with pytest.raises(KernelRegistrationError, match="mode='parallel' runs stateless"):
        ring_kernel(
            kernel_id="k",
            input_type=Job,
            output_type=Done,
            state_type=Done,
            mode="parallel",
            cuda="out.n = 1;",
        )


def test_device_options_on_a_host_kernel_are_refused() -> None:
    with pytest.raises(KernelRegistrationError, match="cuda_prelude apply to device ring"):
        ring_kernel(kernel_id="k", cuda_prelude="int x;")


def test_device_kernel_needs_types_and_source() -> None:
    with pytest.raises(KernelRegistrationError, match="needs input_type="):
        ring_kernel(kernel_id="k", output_type=Done, cuda="out.n = 1;")
    with pytest.raises(KernelRegistrationError, match="cuda= must be the C\\+\\+ body"):
        ring_kernel(kernel_id="k", input_type=Job, output_type=Done, cuda="  ")
    with pytest.raises(KernelRegistrationError, match="mode='fast' is not one of"):
        ring_kernel(kernel_id="k", input_type=Job, output_type=Done, cuda="x", mode="fast")
    with pytest.raises(KernelRegistrationError, match="restart='on_failure' is not supported"):
        ring_kernel(kernel_id="k", input_type=Job, output_type=Done, cuda="x", restart="on_failure")


def test_device_spec_is_registered_and_not_callable() -> None:
    spec = declare()
    assert spec.kind == "device" and spec.device.mode == "sequential"
    with pytest.raises(KernelRegistrationError, match="is a device kernel"):
        spec(None)


# ---------------------------------------------------------------- generated source


def test_generated_source_is_readable_and_maps_user_lines() -> None:
    declare_parallel()
    text = generated_source("par")
    head = text.splitlines()[:6]
    assert head[0] == "// PyDotCompute device ring kernel 'par'"
    assert f"generator {GENERATOR_VERSION}" in head[1]
    assert "parallel" in head[2] and "input  Job" in head[3] and "output Done" in head[4]
    assert '#line 1 "par.handle"' in text and '#line 1 "par.prelude"' in text
    assert "struct Job {" in text and "struct pdc_control {" in text
    assert text.count("struct Done {") == 1


def test_generated_source_of_a_host_kernel_is_refused() -> None:
    @ring_kernel(kernel_id="host_k")
    async def body(ctx: object) -> None:
        return None

    with pytest.raises(KernelRegistrationError, match="is a host kernel"):
        generated_source("host_k")


def test_compile_errors_are_parsed_for_nvrtc_and_gcc_logs() -> None:
    gen = generate("k", declare().device)
    log = (
        'k.handle(3): error: identifier "z" is undefined\n'
        "k.prelude:4:7: error: expected ';' before '}' token\n"
        "k.cu(200): error: something in generated code\n"
    )
    assert parse_errors(log, gen) == [
        ("handle", 3, 'identifier "z" is undefined'),
        ("prelude", 4, "expected ';' before '}' token"),
    ]


# ---------------------------------------------------------------- NVRTC for sm_90


@pytest.mark.parametrize(
    ("kid", "in_t", "out_t", "state_t", "mode", "source"),
    [
        ("seq", Job, Done, Done, "sequential", "state.n += 1; out.n = state.n;"),
        ("echo", Job, Job, None, "sequential", "out = msg;"),
        (
            "rich",
            Rich,
            Point,
            Rich,
            "sequential",
            "out.x = msg.where.x + msg.samples[7] + msg.grid[1][2]; "
            "out.y = msg.flag ? msg.ratio : msg.count + msg.small; state.samples[0] += 1;",
        ),
        ("par", Point, Point, None, "parallel", "out.x = sqrtf(msg.x); out.y = msg.y;"),
    ],
)
def test_generated_source_compiles_for_sm90_with_nvrtc(
    kid: str, in_t: type, out_t: type, state_t: type | None, mode: str, source: str, nvrtc: Nvrtc
) -> None:
    spec = ring_kernel(
        kernel_id=kid,
        input_type=in_t,
        output_type=out_t,
        state_type=state_t,
        mode=mode,
        cuda=source,
    )
    build = build_cuda(generate(kid, spec.device), spec.device, "90", nvrtc)
    assert build.path.read_bytes()[:4] == b"\x7fELF" and build.compiler == nvrtc.name


EIATTR_MAX_THREADS, EIATTR_REGCOUNT = 0x05, 0x2F  # CUBIN .nv.info attributes


def cubin_attributes(cubin: bytes) -> dict[int, list[bytes]]:
    """The (attribute -> payloads) of a CUBIN's .nv.info sections (64-bit ELF)."""
    (shoff,) = struct.unpack_from("<Q", cubin, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)

    def header(i: int) -> tuple[int, ...]:
        return struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + i * shentsize)

    names = header(shstrndx)[4]
    found: dict[int, list[bytes]] = {}
    for i in range(shnum):
        name_at, *_, offset, size = header(i)[:6]
        name = cubin[names + name_at : cubin.index(b"\0", names + name_at)]
        if not name.startswith(b".nv.info"):
            continue
        p = offset
        while p < offset + size:
            fmt, attr = cubin[p], cubin[p + 1]
            if fmt == 4:  # EIFMT_SVAL: a u16 length, then the payload
                (length,) = struct.unpack_from("<H", cubin, p + 2)
                found.setdefault(attr, []).append(cubin[p + 4 : p + 4 + length])
                p += 4 + length
            else:  # EIFMT_HVAL (a u16 value) or EIFMT_NVAL (none)
                found.setdefault(attr, []).append(cubin[p + 2 : p + 4] if fmt == 3 else b"")
                p += 4 if fmt == 3 else 2
    return found


@message
class Wide:
    v: Array[np.float64, 32]


HEAVY = """
double acc[32];
for (int i = 0; i < 32; ++i) { acc[i] = msg.v[i]; }
for (int r = 0; r < 8; ++r) {
    for (int i = 0; i < 32; ++i) {
        acc[i] = acc[i] * acc[(i + r) % 32] + sin(acc[(i * 7 + r) % 32]);
    }
}
for (int i = 0; i < 32; ++i) { out.v[i] = acc[i]; }
"""


def test_parallel_blocks_get_launch_bounds_so_a_register_heavy_handler_fits(
    nvrtc: Nvrtc,
) -> None:
    spec = ring_kernel(
        kernel_id="heavy", input_type=Wide, output_type=Wide, mode="parallel",
        block_size=1024, cuda=HEAVY,
    )  # fmt: skip
    gen = generate("heavy", spec.device)
    assert 'extern "C" __global__ void __launch_bounds__(1024) pdc_ring_kernel(' in gen.text
    attrs = cubin_attributes(build_cuda(gen, spec.device, "90", nvrtc).path.read_bytes())
    assert struct.unpack("<III", attrs[EIATTR_MAX_THREADS][0]) == (1024, 1, 1)
    regs = max(struct.unpack("<II", a)[1] for a in attrs[EIATTR_REGCOUNT])
    assert regs * 1024 <= 65536  # an SM's register file: the whole block fits
    unbounded, log = nvrtc.compile(
        gen.text.replace("__launch_bounds__(1024) ", ""), "heavy.cu", ["-arch=sm_90"]
    )
    assert unbounded is not None, log
    free = max(struct.unpack("<II", a)[1] for a in cubin_attributes(unbounded)[EIATTR_REGCOUNT])
    assert free * 1024 > 65536  # the premise: without bounds this block could not launch


def test_sequential_loops_have_no_launch_bounds() -> None:
    assert "__launch_bounds__" not in generated_source(declare("plain").kernel_id)


def test_nvrtc_compiles_skip_reply_and_explains_it_in_parallel_mode(nvrtc: Nvrtc) -> None:
    seq = ring_kernel(
        kernel_id="filter", input_type=Job, output_type=Done,
        cuda="if (msg.n < 0) { skip_reply(); return; }\nout.n = msg.n;",
    )  # fmt: skip
    assert build_cuda(generate("filter", seq.device), seq.device, "90", nvrtc).path.exists()
    par = ring_kernel(
        kernel_id="pfilter", input_type=Job, output_type=Done, mode="parallel",
        cuda="out.n = msg.n;\nskip_reply();",
    )  # fmt: skip
    with pytest.raises(KernelCompileError, match=r"handle line 2: .*sequential mode only"):
        build_cuda(generate("pfilter", par.device), par.device, "90", nvrtc)


def test_nvrtc_compile_error_maps_lines_to_the_prelude(nvrtc: Nvrtc) -> None:
    spec = ring_kernel(
        kernel_id="bad",
        input_type=Job,
        output_type=Done,
        cuda_prelude="__device__ int helper()\n{\n    return missing;\n}\n",
        cuda="out.n = helper();",
    )
    with pytest.raises(KernelCompileError, match=r"(?s)NVRTC.*prelude line 3") as info:
        build_cuda(generate("bad", spec.device), spec.device, "90", nvrtc)
    assert info.value.errors == [("prelude", 3, 'identifier "missing" is undefined')]
    assert "struct pdc_control" in info.value.source


def test_cuda_build_is_cached() -> None:
    nvrtc_or_skip()
    spec = declare("cached_cuda")
    gen = generate("cached_cuda", spec.device)
    first = build_cuda(gen, spec.device, "90")
    second = build_cuda(gen, spec.device, "90")
    assert second.cache_hit and second.compile_s == 0.0 and second.path == first.path


# ---------------------------------------------------------------- emulated builds and cache

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from pydotcompute import RingKernelRuntime
    from tests.backends.device_kernels import Job, declare

    async def main():
        declare()
        async with RingKernelRuntime(device="emulated") as rt:
            result = await rt.launch("worker")
            await rt.activate("worker")
            reply = await rt.call("worker", Job(n=1, x=1.0, spin=0), timeout=30)
            print(result.cache_hit, result.compile_s == 0.0, int(reply.n))

    asyncio.run(main())
    """
)


@pytest.mark.skipif(find_cxx() is None, reason="no C++ compiler for the emulated device")
def test_a_second_process_loads_the_build_from_the_disk_cache(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    env = {"PYDOTCOMPUTE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    script = SCRIPT.format(root=root)

    def run() -> str:
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True, text=True, timeout=120, check=True, env=env,
        ).stdout.strip()  # fmt: skip

    assert run() == "False False 1"
    assert run() == "True True 1"
    assert len(list((tmp_path / "cache" / "emulated").glob("*.so"))) == 1


async def test_no_cxx_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    declare("needs_cxx")
    async with RingKernelRuntime(device="emulated") as rt:
        with pytest.raises(BackendUnavailableError, match=r"C\+\+ compiler, but none was found"):
            await within(rt.launch("needs_cxx"), 30)


# ---------------------------------------------------------------- runtime device choice


def test_runtime_device_must_be_known() -> None:
    with pytest.raises(PyDotComputeError, match="expected one of 'auto', 'cuda', 'emulated'"):
        RingKernelRuntime(device="tpu")


@pytest.mark.skipif(cuda_status().usable, reason="a usable GPU is present")
def test_cuda_device_without_gpu_raises_clearly() -> None:
    with pytest.raises(BackendUnavailableError, match="device='cuda'\\) needs a usable CUDA"):
        RingKernelRuntime(device="cuda")


@pytest.mark.skipif(find_cxx() is None, reason="no C++ compiler for the emulated device")
@pytest.mark.skipif(cuda_status().usable, reason="a usable GPU is present")
async def test_auto_falls_back_to_the_emulated_device() -> None:
    declare()
    async with RingKernelRuntime() as rt:
        result = await within(rt.launch("worker"), 60)
        assert (result.backend, result.device) == ("device", "emulated")
        snap = rt.snapshot()
        assert snap.device["device_kernels"] == {"requested": "auto", "run_on": "emulated"}
        assert snap.device["kind"] == "cpu"  # the accelerator telemetry beside it
        assert snap.kernels["worker"].device == "emulated"


def test_info_lists_cuda_and_emulated_rows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "  cuda " in out and "  emulated " in out
    usable = re.search(r"\n  emulated +usable ", out) is not None
    assert usable == (find_cxx() is not None)
