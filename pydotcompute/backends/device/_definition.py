"""The declaration of a device ring kernel: its CUDA handler, message layouts and mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import KernelRegistrationError, LayoutError
from ...messages._layout import FixedLayout

__all__ = ["MODES", "DeviceDefinition", "layout_of"]

MODES = ("sequential", "parallel")
DEFAULT_BLOCK = 128  # threads per block in parallel mode
MAX_BLOCK = 1024


@dataclass(frozen=True)
class DeviceDefinition:
    """What a device ring kernel runs: ``handle(const In& msg, Out& out, State& state)``.

    Attributes
    ----------
    source:
        Body of ``__device__ void handle(const In& msg, Out& out, State& state)``.
    prelude:
        Helper ``__device__`` functions placed before the handler (or ``""``).
    input_type, output_type, state_type:
        Fixed-layout message classes (``state_type`` may be ``None``: no state).
    mode:
        ``"sequential"`` (one message at a time, state kept) or ``"parallel"`` (a block
        takes a batch of messages at once; stateless handlers).
    block_size:
        Threads per block in parallel mode (1 in sequential mode).
    """

    source: str
    prelude: str
    input_type: type
    output_type: type
    state_type: type | None
    mode: str
    block_size: int

    @property
    def layouts(self) -> tuple[FixedLayout, FixedLayout, FixedLayout | None]:
        """The fixed layouts of the input, output and state types."""
        state = None if self.state_type is None else _layout(self.state_type)
        return _layout(self.input_type), _layout(self.output_type), state


def _layout(t: type) -> FixedLayout:
    layout: FixedLayout | None = t.__pdc_message__.layout  # type: ignore[attr-defined]
    assert layout is not None  # checked by layout_of at declaration
    return layout


def layout_of(kernel_id: str, role: str, t: Any) -> FixedLayout:
    """The fixed layout of a device kernel's message type, or a clear error saying the fix."""
    if t is None:
        raise KernelRegistrationError(
            f"device ring kernel {kernel_id!r} needs {role}=; pass a @message class whose "
            "fields all have a fixed size"
        )
    info = getattr(t, "__pdc_message__", None) if isinstance(t, type) else None
    if info is None:
        raise LayoutError(
            f"device ring kernel {kernel_id!r}: {role}={t!r} is not a @message class; "
            "decorate it with @message and give every field a fixed size"
        )
    layout: FixedLayout | None = info.layout
    if layout is None:
        raise LayoutError(
            f"device ring kernel {kernel_id!r}: {role} {t.__name__} has no fixed layout: "
            f"{info.layout_problem()} (for example values: Array[np.float32, 8])"
        )
    return layout


def make_definition(
    kernel_id: str,
    *,
    source: Any,
    prelude: Any,
    input_type: Any,
    output_type: Any,
    state_type: Any,
    mode: Any,
    block_size: Any,
) -> DeviceDefinition:
    """Validate a device kernel declaration and return its frozen definition."""
    if not isinstance(source, str) or not source.strip():
        raise KernelRegistrationError(
            f"device ring kernel {kernel_id!r}: cuda= must be the C++ body of "
            "'__device__ void handle(const In& msg, Out& out, State& state)', got "
            f"{source!r}"
        )
    if prelude is not None and not isinstance(prelude, str):
        raise KernelRegistrationError(
            f"device ring kernel {kernel_id!r}: cuda_prelude= must be a str of helper "
            f"__device__ functions, got {type(prelude).__name__}"
        )
    if mode not in MODES:
        raise KernelRegistrationError(
            f"device ring kernel {kernel_id!r}: mode={mode!r} is not one of 'sequential', "
            "'parallel'"
        )
    layout_of(kernel_id, "input_type", input_type)
    layout_of(kernel_id, "output_type", output_type)
    if state_type is not None:
        layout_of(kernel_id, "state_type", state_type)
        if mode == "parallel":
            raise KernelRegistrationError(
                f"device ring kernel {kernel_id!r}: mode='parallel' runs stateless handlers "
                "(the messages of a batch are handled at once by different threads), so "
                "state_type must be None; use mode='sequential' for a stateful actor"
            )
    if mode == "sequential":
        if block_size not in (None, 1):
            raise KernelRegistrationError(
                f"device ring kernel {kernel_id!r}: block_size={block_size!r} applies to "
                "mode='parallel' only (a sequential kernel handles one message at a time)"
            )
        block = 1
    else:
        block = DEFAULT_BLOCK if block_size is None else block_size
        if type(block) is not int or not 1 <= block <= MAX_BLOCK:
            raise KernelRegistrationError(
                f"device ring kernel {kernel_id!r}: block_size={block!r} must be an int "
                f"from 1 to {MAX_BLOCK}"
            )
    return DeviceDefinition(
        source=source,
        prelude=prelude or "",
        input_type=input_type,
        output_type=output_type,
        state_type=state_type,
        mode=mode,
        block_size=block,
    )
