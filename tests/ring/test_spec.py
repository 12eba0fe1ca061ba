"""@ring_kernel declarations, options and the registry."""

from __future__ import annotations

from typing import Any

import pytest

from pydotcompute import (
    Backpressure,
    KernelContext,
    KernelNotFoundError,
    KernelOptions,
    KernelRegistrationError,
    RestartPolicy,
    RingKernelSpec,
    get_kernel_spec,
    message,
    registered_kernels,
    ring_kernel,
    unregister_kernel,
)


@message
class In:
    x: int


@message
class Out:
    y: int


def test_decorator_registers_a_callable_spec() -> None:
    @ring_kernel(kernel_id="spec-a", queue_size=16, backpressure="drop_newest")
    async def body(ctx: Any) -> None:
        """Doc of the body."""

    assert isinstance(body, RingKernelSpec) and body.kernel_id == "spec-a"
    assert body.__doc__ == "Doc of the body." and body.__name__ == "body"
    assert get_kernel_spec("spec-a") is body and "spec-a" in registered_kernels()
    opts = body.options
    assert opts.inbox_capacity == opts.outbox_capacity == 16
    assert opts.backpressure is Backpressure.DROP_NEWEST and opts.restart is RestartPolicy.NEVER


def test_kernel_id_defaults_to_the_function_name() -> None:
    @ring_kernel
    async def plain(ctx: Any) -> None: ...

    assert plain.kernel_id == "plain"


def test_context_annotation_declares_message_types() -> None:
    @ring_kernel(kernel_id="typed")
    async def typed(ctx: KernelContext[In, Out]) -> None: ...

    assert (typed.options.input_type, typed.options.output_type) == (In, Out)

    @ring_kernel(kernel_id="explicit", input_type=Out)
    async def explicit(ctx: KernelContext[In, Out]) -> None: ...

    assert explicit.options.input_type is Out


def test_separate_queue_sizes() -> None:
    @ring_kernel(kernel_id="sizes", queue_size=8, output_queue_size=2)
    async def sizes(ctx: Any) -> None: ...

    assert (sizes.options.inbox_capacity, sizes.options.outbox_capacity) == (8, 2)


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("queue_size", 0, "queue_size=0 must be an int >= 1"),
        ("input_queue_size", 1.5, "input_queue_size=1.5 must be an int"),
        ("backpressure", "wait", "backpressure='wait' is not one of 'block', 'reject'"),
        ("restart", "sometimes", "restart='sometimes' is not one of 'never'"),
        ("max_restarts", -1, "max_restarts=-1 must be an int >= 0"),
        ("within", 0, "within=0 must be a positive number"),
        ("input_type", "In", "input_type='In' must be a class"),
    ],
)
def test_invalid_options_are_refused_with_the_value(option: str, value: Any, match: str) -> None:
    with pytest.raises(KernelRegistrationError, match=match):
        KernelOptions(**{option: value})


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(KernelRegistrationError, match="unknown ring kernel option\\(s\\) colour"):
        KernelOptions().replace(colour="red")


def test_body_must_be_async_with_one_parameter() -> None:
    with pytest.raises(KernelRegistrationError, match="must be an 'async def body\\(ctx\\)'"):

        @ring_kernel(kernel_id="sync")
        def sync(ctx: Any) -> None: ...

    with pytest.raises(KernelRegistrationError, match="exactly one parameter"):

        @ring_kernel(kernel_id="two")
        async def two(ctx: Any, other: Any) -> None: ...


def test_redefinition_replaces_but_a_different_function_is_refused() -> None:
    def define() -> RingKernelSpec:
        @ring_kernel(kernel_id="dup")
        async def dup(ctx: Any) -> None: ...

        return dup

    first, second = define(), define()  # same function defined twice, as a re-run cell
    assert get_kernel_spec("dup") is second and first is not second

    with pytest.raises(KernelRegistrationError, match="'dup' is already registered by"):

        @ring_kernel(kernel_id="dup")
        async def other(ctx: Any) -> None: ...

    @ring_kernel(kernel_id="dup", replace=True)
    async def other2(ctx: Any) -> None: ...

    assert get_kernel_spec("dup") is other2


def test_unregister() -> None:
    @ring_kernel(kernel_id="gone")
    async def gone(ctx: Any) -> None: ...

    unregister_kernel("gone")
    with pytest.raises(KernelNotFoundError, match="no ring kernel 'gone' is registered"):
        get_kernel_spec("gone")
    with pytest.raises(KernelNotFoundError):
        unregister_kernel("gone")


async def test_spec_is_still_callable_as_the_body() -> None:
    calls = []

    @ring_kernel(kernel_id="callable")
    async def body(ctx: Any) -> None:
        calls.append(ctx)

    await body("fake ctx")
    assert calls == ["fake ctx"]
