"""Device ring kernels: persistent CUDA kernels over pinned mapped mailboxes, and the emulated
device that runs the same generated source on the CPU.

Private modules, one concept each: ``_definition`` (the declaration), ``_codegen`` (the
generated source), ``_shim`` (CUDA names for the host compiler), ``_memory`` (control block
and ring layout), ``_compile`` / ``_nvrtc`` (builds and their disk cache), ``_records``
(messages to ring slots), ``_inbox`` / ``_outbox`` (host side of the rings), ``_native``
(the native host endpoint: doorbell stores and the reply spin), ``_waiting`` (spin, then park
or pump), ``_cuda_launch`` / ``_emulated`` (starting the loop; the emulated device runs each
kernel in ``_host_program``'s process), ``_kernel`` (the kernel the runtime drives).
"""

from __future__ import annotations

from typing import Any

from ._definition import DeviceDefinition

__all__ = ["DeviceDefinition", "generated_source", "resolve_device"]

DEVICES = ("auto", "cuda", "emulated")


def generated_source(kernel: Any) -> str:
    """Return the CUDA C++ source generated for a device ring kernel (id or spec).

    The same text is compiled by NVRTC for a GPU and by the host C++ compiler for the
    emulated device.

    Raises
    ------
    KernelNotFoundError
        No kernel is registered under that id.
    KernelRegistrationError
        The kernel is a host kernel.
    """
    from ...errors import KernelRegistrationError
    from ...ring._spec import RingKernelSpec, get_kernel_spec
    from ._codegen import generate

    spec = kernel if isinstance(kernel, RingKernelSpec) else get_kernel_spec(kernel)
    if spec.kind != "device":
        raise KernelRegistrationError(
            f"ring kernel {spec.kernel_id!r} is a host kernel; only device kernels "
            "(ring_kernel(..., cuda=SOURCE)) have generated source"
        )
    return generate(spec.kernel_id, spec.device).text


def resolve_device(requested: str) -> str:
    """``"cuda"`` or ``"emulated"`` for a runtime's ``device=`` choice.

    Raises
    ------
    BackendUnavailableError
        ``"cuda"`` was asked for and no usable GPU is present.
    """
    from ..._cuda import cuda_status
    from ...errors import BackendUnavailableError

    if requested == "emulated":
        return "emulated"
    status = cuda_status()
    if status.usable:
        return "cuda"
    if requested == "cuda":
        raise BackendUnavailableError(
            f"RingKernelRuntime(device='cuda') needs a usable CUDA GPU, but {status.reason}; "
            "use device='auto' (falls back to the emulated device) or device='emulated'"
        )
    return "emulated"


def probe_cuda() -> tuple[str, bool, str]:
    """The ``info`` row for device ring kernels on CUDA: GPU, CuPy wheel, NVRTC used."""
    from ..._cuda import cuda_status, cupy_distribution
    from ...errors import BackendUnavailableError
    from ._nvrtc import INSTALL_HINT, load_nvrtc, nvrtc_libraries

    status = cuda_status()
    wheel = cupy_distribution()
    cupy = f"{wheel[0]} {wheel[1]}" if wheel else "no CuPy"
    found = sorted(nvrtc_libraries()[0])
    try:
        used = load_nvrtc(at_most=status.driver_major)
        others = [f"NVRTC {m}" for m in found if m != used.version[0]]
        compiler = f"builds with {used.name}" + (
            f" (also found: {', '.join(others)})" if others else ""
        )
    except BackendUnavailableError:
        compiler = f"no usable NVRTC ({INSTALL_HINT})"
    if not status.usable:
        return "cuda", False, f"{status.reason}; {cupy}; {compiler}"
    driver = status.driver_version or 0
    loading = status.module_loading or "unknown"
    detail = (
        f"device ring kernels on {status}; {cupy}; driver CUDA {driver // 1000}."
        f"{driver % 1000 // 10}; module loading {loading}; {compiler}"
    )
    return "cuda", compiler.startswith("builds"), detail


def probe_emulated() -> tuple[str, bool, str]:
    """The ``info`` row for the emulated device (needs a host C++ compiler)."""
    from ._compile import find_cxx

    cxx = find_cxx()
    if cxx is None:
        return "emulated", False, "no C++ compiler found (install g++ or set CXX)"
    from ._native import endpoint_kind

    return (
        "emulated",
        True,
        f"device ring kernels on the CPU, built with {cxx}; host endpoint: {endpoint_kind()}",
    )
