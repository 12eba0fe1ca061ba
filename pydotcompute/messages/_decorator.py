"""``@message``: turn an annotated class (or a dataclass) into a typed, serializable message."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
import uuid
from typing import Any, TypeVar, overload

import numpy as np

from ..errors import (
    MessageDefinitionError,
)
from . import _codec
from ._codegen import generate
from ._containers import adapter_for
from ._ids import AUTO_ID, CorrelationIdField, MessageIdField
from ._layout import FixedLayout, build_layout, layout_problem
from ._types import Adapter, PriorityAdapter

__all__ = ["is_message", "message"]

T = TypeVar("T")

_RESERVED = ("to_bytes", "from_bytes", "reply")
# Methods that @dataclass writes into a class; rebuilt when @message is stacked on @dataclass.
_DATACLASS_GENERATED = (
    "__init__", "__repr__", "__eq__", "__lt__", "__le__", "__gt__", "__ge__",
    "__setattr__", "__delattr__", "__hash__", "__match_args__", "__replace__",
)  # fmt: skip


class MessageInfo:
    """Everything PyDotCompute knows about a message class (``cls.__pdc_message__``)."""

    def __init__(self, cls: type, tag: Any, adapters: dict[str, Adapter]) -> None:
        self.cls = cls
        self.tag = tag
        self.adapters = adapters
        self.names = tuple(adapters)
        self._layout: FixedLayout | bool | None = False
        self.encode_list: Any = None
        self.decode_list: Any = None
        #: ``from_bytes`` on msgpack alone (the fallback of msgspec's typed decoding).
        self.from_bytes_msgpack: Any = None

    @property
    def layout(self) -> FixedLayout | None:
        """The fixed layout, or ``None`` when a field has no fixed size (computed once)."""
        if self._layout is False:
            self._layout = build_layout(self)
        return self._layout  # type: ignore[return-value]

    def layout_problem(self) -> str | None:
        """Why this message has no fixed layout, or ``None`` if it has one."""
        return layout_problem(self)


@overload
def message(cls: type[T], /) -> type[T]: ...
@overload
def message(*, tag: str | int | None = None) -> typing.Callable[[type[T]], type[T]]: ...


@typing.dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def message(cls: type[T] | None = None, /, *, tag: str | int | None = None) -> Any:
    """Make a class a typed message: validated fields, ids, priority and a msgpack codec.

    Works on a plain annotated class and stacked on ``@dataclass``. Adds ``message_id: UUID``
    (a random uuid4), ``priority: int = 128`` (0..255, higher is received first) and
    ``correlation_id: UUID | None = None`` unless the class declares them (the added ones
    are keyword-only). Field values are validated and coerced at construction (``15`` for a
    ``float`` field becomes ``15.0``); a value that cannot be coerced raises
    :class:`~pydotcompute.MessageValidationError`.

    Parameters
    ----------
    cls:
        The class to decorate (when used as ``@message`` without parentheses).
    tag:
        Type tag written into serialized messages (an int or a str); defaults to a 32-bit
        CRC of ``"module.QualName"``.

    Examples
    --------
    >>> @message
    ... class ComputeResponse:
    ...     result: float
    >>> ComputeResponse(result=15).result
    15.0
    """
    # Annotations may name classes local to the defining function (with postponed
    # evaluation they are strings), so they are resolved in the caller's namespace too.
    caller = sys._getframe(1)
    localns = dict(caller.f_locals) if caller.f_code.co_name != "<module>" else {}
    if cls is None:
        return lambda c: _build(c, tag, localns)
    return _build(cls, tag, localns)


def is_message(obj: Any) -> bool:
    """Return whether ``obj`` is a message class or a message instance."""
    target = obj if isinstance(obj, type) else type(obj)
    return "__pdc_message__" in target.__dict__


def _is_generated(value: Any) -> bool:
    code = getattr(value, "__code__", None)
    return value is None or (code is not None and code.co_filename == "<string>")


def _undo_dataclass(cls: type) -> Any:
    """Strip what @dataclass generated so the class can be processed again with our fields."""
    if "__slots__" in cls.__dict__:
        raise MessageDefinitionError(
            f"@message cannot rebuild {cls.__name__}: it uses slots=True; "
            "remove slots=True from @dataclass"
        )
    params = cls.__dict__["__dataclass_params__"]
    own = inspect.get_annotations(cls)
    for f in dataclasses.fields(cls):
        if f.name in own:
            setattr(cls, f.name, _copy_field(f))
    for name in _DATACLASS_GENERATED:
        if name in cls.__dict__ and _is_generated(cls.__dict__[name]):
            delattr(cls, name)
    for name in ("__dataclass_fields__", "__dataclass_params__"):
        delattr(cls, name)
    return params


def _copy_field(f: dataclasses.Field[Any], **changes: Any) -> Any:
    kwargs: dict[str, Any] = {
        "init": f.init,
        "repr": f.repr,
        "hash": f.hash,
        "compare": f.compare,
        "metadata": f.metadata,
        "kw_only": f.kw_only,
    }
    if f.default is not dataclasses.MISSING:
        kwargs["default"] = f.default
    if f.default_factory is not dataclasses.MISSING:
        kwargs["default_factory"] = f.default_factory
    kwargs.update(changes)
    return dataclasses.field(**kwargs)


def _declared_fields(cls: type) -> dict[str, Any]:
    """Fields the class will have: inherited dataclass fields and its own annotations."""
    out: dict[str, Any] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in getattr(base, "__dataclass_fields__", {}).values():
            out[f.name] = f
    for name in inspect.get_annotations(cls):
        out[name] = cls.__dict__.get(name, dataclasses.MISSING)
    return out


def _check_standard(cls: type, hints: dict[str, Any]) -> None:
    expected = {
        "message_id": (uuid.UUID,),
        "priority": (int,),
        "correlation_id": (typing.Optional[uuid.UUID], uuid.UUID | None),  # noqa: UP045
    }
    for name, allowed in expected.items():
        if name in hints and hints[name] not in allowed:
            raise MessageDefinitionError(
                f"{cls.__name__}.{name} is declared as {hints[name]!r}; the standard field "
                f"{name} must be {allowed[-1]!r}, or leave it out and @message adds it"
            )


def _prepare_standard_fields(cls: type) -> None:
    """Add the missing standard fields; make a uuid4 ``message_id`` lazily generated."""
    declared = _declared_fields(cls)
    annotations = dict(inspect.get_annotations(cls))
    own = inspect.get_annotations(cls)
    if "message_id" not in declared:
        annotations["message_id"] = uuid.UUID
        cls.message_id = dataclasses.field(default=MessageIdField(), kw_only=True)  # type: ignore[attr-defined]
    elif "message_id" in own:
        current = cls.__dict__.get("message_id", dataclasses.MISSING)
        if isinstance(current, dataclasses.Field) and current.default_factory is uuid.uuid4:
            cls.message_id = _copy_field(  # type: ignore[attr-defined]
                current, default_factory=dataclasses.MISSING, default=MessageIdField()
            )
        elif current is AUTO_ID:
            cls.message_id = MessageIdField()  # type: ignore[attr-defined]
    if "priority" not in declared:
        annotations["priority"] = int
        cls.priority = dataclasses.field(default=128, kw_only=True)  # type: ignore[attr-defined]
    if "correlation_id" not in declared:
        annotations["correlation_id"] = typing.Optional[uuid.UUID]  # noqa: UP045
        cls.correlation_id = dataclasses.field(default=None, kw_only=True)  # type: ignore[attr-defined]
    cls.__annotations__ = annotations


def _resolve_hints(cls: type, localns: dict[str, Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(
            cls, include_extras=True, localns={**localns, cls.__name__: cls}
        )
    except NameError as exc:
        raise MessageDefinitionError(
            f"cannot resolve the annotations of {cls.__name__}: {exc}; define the types it "
            "uses before the class"
        ) from exc


def _build(cls: type, tag: Any, localns: dict[str, Any]) -> type:
    if not isinstance(cls, type):
        raise MessageDefinitionError(f"@message decorates a class, got {cls!r}")
    if "__pdc_message__" in cls.__dict__:
        return cls
    params = None
    if "__dataclass_fields__" in cls.__dict__:
        params = _undo_dataclass(cls)
    elif "__slots__" in cls.__dict__:
        raise MessageDefinitionError(
            f"@message cannot use {cls.__name__}: it defines __slots__; remove __slots__"
        )
    for name in _RESERVED:
        if name in inspect.get_annotations(cls):
            raise MessageDefinitionError(
                f"{cls.__name__}.{name}: the field name {name!r} is taken by a message "
                f"method; rename the field (reserved: {', '.join(_RESERVED)})"
            )
    user_post_init = cls.__dict__.get("__post_init__")
    own_init = "__init__" in cls.__dict__
    _prepare_standard_fields(cls)
    hints = _resolve_hints(cls, localns)
    _check_standard(cls, hints)
    cls.__post_init__ = _placeholder_post_init  # type: ignore[attr-defined]
    try:
        dataclasses.dataclass(
            cls,
            init=True,
            repr=params.repr if params else True,
            eq=False,
            order=params.order if params else False,
            unsafe_hash=params.unsafe_hash if params else False,
            frozen=params.frozen if params else False,
        )
    except (TypeError, ValueError) as exc:
        raise MessageDefinitionError(f"cannot make {cls.__name__} a message: {exc}") from exc
    cls.message_id = MessageIdField()  # type: ignore[attr-defined]
    cls.correlation_id = CorrelationIdField()  # type: ignore[attr-defined]

    fields = dataclasses.fields(cls)
    adapters: dict[str, Adapter] = {}
    for f in fields:
        if f.name == "priority":
            adapters[f.name] = PriorityAdapter()
        else:
            adapters[f.name] = adapter_for(hints[f.name], f"{cls.__name__}.{f.name}")
    if tag is None:
        tag = _codec.default_tag(cls)
    elif not isinstance(tag, (int, str)) or isinstance(tag, bool):
        raise MessageDefinitionError(f"@message(tag=...) takes an int or a str, got {tag!r}")
    info = MessageInfo(cls, tag, adapters)
    base_post = _inherited_user_post_init(cls) if user_post_init is None else user_post_init
    frozen = bool(params.frozen) if params else False
    init_signature = None if own_init else inspect.signature(cls.__dict__["__init__"])
    generate(cls, info, fields, base_post, init_signature, frozen)
    eq = params.eq if params else True
    if eq:
        cls.__eq__ = _make_eq(info)  # type: ignore[method-assign]
        if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
            cls.__hash__ = _make_hash(info) if frozen else None  # type: ignore[assignment]
    if "__getstate__" not in cls.__dict__:
        cls.__getstate__ = _getstate  # type: ignore[assignment,method-assign]
    cls.reply = _reply  # type: ignore[attr-defined]
    if getattr(cls, "_repr_html_", None) is None:
        cls._repr_html_ = _repr_html  # type: ignore[attr-defined]
    cls.__pdc_user_post_init__ = base_post  # type: ignore[attr-defined]
    cls.__pdc_message__ = info  # type: ignore[attr-defined]
    _codec.register_tag(tag, cls)
    return cls


def _placeholder_post_init(self: Any, *initvars: Any) -> None:  # replaced after processing
    raise AssertionError("unreachable")


def _inherited_user_post_init(cls: type) -> Any:
    for base in cls.__mro__[1:]:
        if "__pdc_user_post_init__" in base.__dict__:
            return base.__dict__["__pdc_user_post_init__"]
        if "__post_init__" in base.__dict__:
            return base.__dict__["__post_init__"]
    return None


def _values_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b))
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_values_equal(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_values_equal(a[k], b[k]) for k in a)
        )
    return bool(a == b)


def _make_eq(info: MessageInfo) -> Any:
    names = tuple(f.name for f in dataclasses.fields(info.cls) if f.compare)

    def __eq__(self: Any, other: Any) -> Any:  # noqa: N807 - installed as the method
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(_values_equal(getattr(self, n), getattr(other, n)) for n in names)

    __eq__.__qualname__ = f"{info.cls.__qualname__}.__eq__"
    return __eq__


def _make_hash(info: MessageInfo) -> Any:
    names = tuple(f.name for f in dataclasses.fields(info.cls) if f.compare)

    def __hash__(self: Any) -> int:  # noqa: N807 - installed as the method
        return hash(tuple(getattr(self, n) for n in names))

    __hash__.__qualname__ = f"{info.cls.__qualname__}.__hash__"
    return __hash__


def _getstate(self: Any) -> dict[str, Any]:
    """Pickle/copy state, with the lazily made ids fixed first so copies keep them."""
    _ = self.message_id, self.correlation_id
    return self.__dict__


def _reply(self: Any, response_type: type | None = None, /, **fields: Any) -> Any:
    """Build a reply whose ``correlation_id`` is this message's ``message_id``.

    Parameters
    ----------
    response_type:
        Message class of the reply. Omitted: a copy of this message with ``fields`` changed.
    **fields:
        Field values of the reply. ``priority`` defaults to this message's priority.

    Returns
    -------
    The reply message, with a fresh ``message_id``.
    """
    cls = type(self) if response_type is None else response_type
    if not is_message(cls):
        raise MessageDefinitionError(
            f"reply() needs a @message class, got {cls!r}; decorate it with @message"
        )
    if response_type is None:
        base = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(cls)
            if f.init and f.name not in ("message_id", "correlation_id")
        }
        base.update(fields)
        fields = base
    fields.setdefault("priority", self.priority)
    explicit = "correlation_id" in fields
    out = cls(**fields)
    if not explicit:
        out.__dict__["correlation_id"] = self  # resolved to self.message_id when read
    return out


def _repr_html(self: Any) -> str:
    """The message's type, short ids and fields as a small table (Jupyter's rich display)."""
    from .._display import message_html

    return message_html(self)
