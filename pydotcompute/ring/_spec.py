"""``@ring_kernel``: declare a ring kernel and register it under its id."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..errors import KernelNotFoundError, KernelRegistrationError
from ._context import KernelContext
from ._options import KernelOptions

__all__ = [
    "RingKernelSpec",
    "get_kernel_spec",
    "registered_kernels",
    "ring_kernel",
    "unregister_kernel",
]

Body = Callable[[KernelContext[Any, Any]], Coroutine[Any, Any, Any]]

_registry: dict[str, RingKernelSpec] = {}


class RingKernelSpec:
    """A declared ring kernel: its id, options, and host body or device definition.

    ``@ring_kernel`` returns this object in place of the function; calling it calls the
    body, so a body can still be unit-tested directly.

    Attributes
    ----------
    kernel_id:
        The id the kernel is launched and addressed by.
    func:
        The ``async def body(ctx)`` of a host kernel (``None`` for a device kernel).
    options:
        Queue sizes, message types, backpressure and restart policy.
    kind:
        ``"host"`` or ``"device"``.
    device:
        The device definition of a device kernel (``None`` for a host kernel).
    """

    def __init__(
        self,
        kernel_id: str,
        func: Body | None,
        options: KernelOptions,
        *,
        kind: str = "host",
        device: Any = None,
    ) -> None:
        self.kernel_id = kernel_id
        self.func = func
        self.options = options
        self.kind = kind
        self.device = device
        if func is not None:
            # Look like the wrapped function in help(), tracebacks and notebooks.
            self.__doc__ = func.__doc__
            self.__wrapped__ = func
            self.__name__ = getattr(func, "__name__", kernel_id)
            self.__qualname__ = getattr(func, "__qualname__", kernel_id)
            self.__module__ = getattr(func, "__module__", None)  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<RingKernelSpec {self.kernel_id!r} kind={self.kind}>"

    def __call__(self, ctx: KernelContext[Any, Any]) -> Coroutine[Any, Any, Any]:
        if self.func is None:
            raise KernelRegistrationError(
                f"ring kernel {self.kernel_id!r} is a device kernel; launch it with a "
                "RingKernelRuntime instead of calling it"
            )
        return self.func(ctx)

    def with_func(self, func: Body) -> RingKernelSpec:
        """Return a copy running ``func`` (same id and options)."""
        _check_body(func, self.kernel_id)
        return RingKernelSpec(self.kernel_id, func, self.options)

    def with_options(self, **changes: Any) -> RingKernelSpec:
        """Return a copy with some options changed (unknown ones raise a clear error)."""
        if not changes:
            return self
        return RingKernelSpec(
            self.kernel_id,
            self.func,
            self.options.replace(**changes),
            kind=self.kind,
            device=self.device,
        )


def _check_body(func: Any, kernel_id: str) -> None:
    if not inspect.iscoroutinefunction(func):
        raise KernelRegistrationError(
            f"ring kernel {kernel_id!r}: the body must be an 'async def body(ctx)' function, "
            f"got {func!r}"
        )
    params = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(params) != 1:
        raise KernelRegistrationError(
            f"ring kernel {kernel_id!r}: the body must take exactly one parameter (ctx), "
            f"it takes {[p.name for p in params]}"
        )


def _context_types(func: Any) -> tuple[Any, Any]:
    """Input and output types from a ``ctx: KernelContext[In, Out]`` annotation."""
    param = next(iter(inspect.signature(func).parameters.values()))
    annotation = param.annotation
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(func).get(param.name)
        except NameError:
            # The annotation names a type not defined at module level; types are then
            # taken only from input_type= / output_type=.
            return None, None
    if typing.get_origin(annotation) is KernelContext:
        args = typing.get_args(annotation)
        # Any and object put no constraint on messages (on 3.11 typing.Any is a class).
        return tuple(  # type: ignore[return-value]
            a if isinstance(a, type) and a not in (typing.Any, object) else None for a in args
        )
    return None, None


def _register(spec: RingKernelSpec, replace: bool) -> None:
    old = _registry.get(spec.kernel_id)
    if old is not None and not replace and not _same_definition(old, spec):
        raise KernelRegistrationError(
            f"ring kernel id {spec.kernel_id!r} is already registered by "
            f"{old.__dict__.get('__module__')}.{old.__dict__.get('__qualname__', old.kernel_id)}; "
            "choose another kernel_id, pass replace=True, or call unregister_kernel() first"
        )
    _registry[spec.kernel_id] = spec


def _same_definition(old: RingKernelSpec, new: RingKernelSpec) -> bool:
    """A redefinition of the same function (a re-run notebook cell) replaces the old one."""
    keys = ("__module__", "__qualname__")
    return old.kind == new.kind and all(old.__dict__.get(k) == new.__dict__.get(k) for k in keys)


def ring_kernel(
    kernel_id: str | Body | None = None,
    *,
    queue_size: int = 1024,
    input_queue_size: int | None = None,
    output_queue_size: int | None = None,
    input_type: type | None = None,
    output_type: type | None = None,
    backpressure: str = "block",
    restart: str = "never",
    max_restarts: int = 3,
    within: float = 5.0,
    outputs_to: str | Sequence[str] | None = None,
    subscribes_to: str | Sequence[str] | None = None,
    replace: bool = False,
    cuda: str | None = None,
    cuda_prelude: str | None = None,
    state_type: type | None = None,
    mode: str = "sequential",
    block_size: int | None = None,
) -> Any:
    """Declare a ring kernel: a host body (decorator) or a CUDA device handler (``cuda=``).

    Host kernel: ``@ring_kernel(kernel_id=...)`` on ``async def body(ctx)``; the kernel is
    registered under ``kernel_id`` (default: the function's name) and launched by
    :meth:`RingKernelRuntime.launch`. Returns a :class:`RingKernelSpec`, which can still be
    called like the function.

    Device kernel: ``ring_kernel(kernel_id=..., input_type=In, output_type=Out,
    cuda=SOURCE)`` called directly (not as a decorator) registers a persistent device kernel
    and returns its spec. ``SOURCE`` is the body of ``__device__ void handle(const In& msg,
    Out& out, State& state)``; see ``docs/articles/guides/building-actors.md``.

    Parameters
    ----------
    kernel_id:
        Id of the kernel.
    queue_size:
        Capacity of both mailboxes unless ``input_queue_size`` / ``output_queue_size`` are set.
    input_queue_size, output_queue_size:
        Capacities of the inbox and the outbox (default ``queue_size``).
    input_type, output_type:
        Message classes the kernel takes and sends; a send of another type is refused. When
        omitted they are read from a ``ctx: KernelContext[In, Out]`` annotation.
    backpressure:
        What a send into a full inbox does: ``"block"``, ``"reject"``, ``"drop_oldest"``,
        ``"drop_newest"``.
    restart:
        ``"never"``, ``"on_failure"`` or ``"always"``; at most ``max_restarts`` restarts
        ``within`` seconds. Device kernels take ``"never"`` only.
    max_restarts, within:
        Restart intensity: more than ``max_restarts`` restarts within ``within`` seconds leave
        the kernel ``FAILED``.
    outputs_to:
        Kernel id(s) this kernel's output is linked to when it is launched (see
        :meth:`RingKernelRuntime.link`): what it sends goes into their inboxes, not its
        outbox.
    subscribes_to:
        Topic(s) the kernel is subscribed to when it is launched (see
        :meth:`RingKernelRuntime.subscribe`).
    replace:
        Replace a kernel registered under the same id by another function.
    cuda:
        Device kernels: the C++ body of the handler (makes this a device kernel).
    cuda_prelude:
        Device kernels: helper ``__device__`` functions placed before the handler.
    state_type:
        Device kernels: a fixed-layout @message class holding the kernel's state (zeroed at
        launch, kept across messages), or ``None``.
    mode:
        Device kernels: ``"sequential"`` (one message at a time, actor semantics) or
        ``"parallel"`` (a block takes a batch at once; stateless handlers).
    block_size:
        Device kernels in parallel mode: threads per block (default 128).

    Raises
    ------
    KernelRegistrationError
        An option is invalid, the body is not ``async def body(ctx)``, or the id is taken.
    LayoutError
        A device kernel's message type has a field without a fixed layout.
    """
    if cuda is not None:
        return _device_kernel(
            kernel_id,
            cuda=cuda,
            cuda_prelude=cuda_prelude,
            state_type=state_type,
            mode=mode,
            block_size=block_size,
            replace=replace,
            options=dict(
                queue_size=queue_size,
                input_queue_size=input_queue_size,
                output_queue_size=output_queue_size,
                input_type=input_type,
                output_type=output_type,
                backpressure=backpressure,
                restart=restart,
                max_restarts=max_restarts,
                within=within,
                outputs_to=outputs_to or (),
                subscribes_to=subscribes_to or (),
            ),
        )
    device_only = {"cuda_prelude": cuda_prelude, "state_type": state_type, "block_size": block_size}
    given = [name for name, value in device_only.items() if value is not None]
    if mode != "sequential":
        given.append("mode")
    if given:
        raise KernelRegistrationError(
            f"{', '.join(given)} apply to device ring kernels only; pass cuda=SOURCE to "
            "declare one, or drop them for a host kernel"
        )

    def decorate(func: Body) -> RingKernelSpec:
        kid = kernel_id if isinstance(kernel_id, str) else getattr(func, "__name__", None)
        if not kid:
            raise KernelRegistrationError("ring_kernel needs a kernel_id")
        _check_body(func, kid)
        in_t, out_t = _context_types(func)
        options = KernelOptions(
            queue_size=queue_size,
            input_queue_size=input_queue_size,
            output_queue_size=output_queue_size,
            input_type=input_type if input_type is not None else in_t,
            output_type=output_type if output_type is not None else out_t,
            backpressure=backpressure,  # type: ignore[arg-type]
            restart=restart,  # type: ignore[arg-type]
            max_restarts=max_restarts,
            within=within,
            outputs_to=outputs_to or (),  # type: ignore[arg-type]
            subscribes_to=subscribes_to or (),  # type: ignore[arg-type]
        )
        spec = RingKernelSpec(kid, func, options)
        _register(spec, replace)
        return spec

    if callable(kernel_id) and not isinstance(kernel_id, str):
        func, kernel_id = kernel_id, None
        return decorate(func)
    if kernel_id is not None and not isinstance(kernel_id, str):
        raise KernelRegistrationError(f"kernel_id must be a str, got {kernel_id!r}")
    return decorate


def _device_kernel(
    kernel_id: Any,
    *,
    cuda: str,
    cuda_prelude: str | None,
    state_type: type | None,
    mode: str,
    block_size: int | None,
    replace: bool,
    options: dict[str, Any],
) -> RingKernelSpec:
    """Register a device ring kernel (``ring_kernel(..., cuda=SOURCE)``)."""
    from ..backends.device._definition import make_definition

    if not isinstance(kernel_id, str) or not kernel_id:
        raise KernelRegistrationError(
            f"a device ring kernel needs kernel_id= (a non-empty str), got {kernel_id!r}; "
            "call ring_kernel(kernel_id='name', input_type=In, output_type=Out, cuda=SOURCE)"
        )
    if options["restart"] != "never":
        raise KernelRegistrationError(
            f"device ring kernel {kernel_id!r}: restart={options['restart']!r} is not "
            "supported for device kernels (a device fault may leave the CUDA context "
            "unusable); use restart='never' and relaunch() after a failure"
        )
    definition = make_definition(
        kernel_id,
        source=cuda,
        prelude=cuda_prelude,
        input_type=options["input_type"],
        output_type=options["output_type"],
        state_type=state_type,
        mode=mode,
        block_size=block_size,
    )
    options_ = KernelOptions(**options)
    spec = RingKernelSpec(kernel_id, None, options_, kind="device", device=definition)
    spec.__doc__ = f"Device ring kernel {kernel_id!r} ({mode})."
    # Re-running the declaring cell or module replaces it; another module taking the id fails.
    spec.__module__ = sys._getframe(2).f_globals.get("__name__")  # type: ignore[assignment]
    spec.__qualname__ = kernel_id
    _register(spec, replace)
    return spec


def spec_for(kernel_id: str, func: Any, base: RingKernelSpec | None) -> RingKernelSpec:
    """The spec to launch: ``func`` (a function or spec) overriding the registered one."""
    if isinstance(func, RingKernelSpec):
        return (
            func
            if func.kernel_id == kernel_id
            else RingKernelSpec(
                kernel_id, func.func, func.options, kind=func.kind, device=func.device
            )
        )
    if func is not None:
        _check_body(func, kernel_id)
        if base is not None:
            return base.with_func(func)
        in_t, out_t = _context_types(func)
        return RingKernelSpec(kernel_id, func, KernelOptions(input_type=in_t, output_type=out_t))
    if base is None:
        raise KernelNotFoundError(
            f"no ring kernel {kernel_id!r} is registered (known: "
            f"{', '.join(sorted(_registry)) or 'none'}); decorate its body with "
            f"@ring_kernel(kernel_id={kernel_id!r}) or pass func= to launch()"
        )
    return base


def get_kernel_spec(kernel_id: str) -> RingKernelSpec:
    """Return the registered spec of ``kernel_id``.

    Raises
    ------
    KernelNotFoundError
        No kernel is registered under that id.
    """
    return spec_for(kernel_id, None, _registry.get(kernel_id))


def registered_kernels() -> dict[str, RingKernelSpec]:
    """Return a copy of the registry: kernel id to spec."""
    return dict(_registry)


def unregister_kernel(kernel_id: str) -> None:
    """Remove a kernel from the registry (running instances are not affected).

    Raises
    ------
    KernelNotFoundError
        No kernel is registered under that id.
    """
    if _registry.pop(kernel_id, None) is None:
        raise KernelNotFoundError(f"no ring kernel {kernel_id!r} is registered")
