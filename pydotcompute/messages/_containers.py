"""Type adapters of containers, unions, literals, enums, classes and nested messages.

``adapter_for(annotation)`` turns any supported annotation into its :class:`Adapter`.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import numpy as np

from ..errors import MessageDefinitionError, _short_repr
from ._types import (
    Adapter,
    AnyAdapter,
    ArraySpec,
    BoolAdapter,
    BytesAdapter,
    FixedArrayAdapter,
    FixedType,
    FloatAdapter,
    IntAdapter,
    Invalid,
    NDArrayAdapter,
    NoneAdapter,
    NumpyScalarAdapter,
    StrAdapter,
    UUIDAdapter,
)

__all__ = ["adapter_for"]


def _is_sequence(v: Any) -> bool:
    return isinstance(v, (Sequence, np.ndarray)) and not isinstance(
        v, (str, bytes, bytearray, memoryview)
    )


def _map_items(fn: Any, items: Any) -> list[Any]:
    """``[fn(x) for x in items]``, naming the failing index in the error path."""
    out = []
    for i, x in enumerate(items):
        try:
            out.append(fn(x))
        except Invalid as exc:
            raise exc.within(f"[{i}]") from None
    return out


_EXACT_NATIVE = {IntAdapter: int, FloatAdapter: float, StrAdapter: str, BoolAdapter: bool}


class ListAdapter(Adapter):
    def __init__(self, item: Adapter) -> None:
        self.item = item
        self.expected = f"list[{item.expected}]"
        self.exact = _EXACT_NATIVE.get(type(item))
        self.passthrough = item.passthrough

    def coerce(self, v: Any) -> Any:
        if not _is_sequence(v):
            raise Invalid(v, self.expected)
        exact = self.exact
        if exact is not None and type(v) is list:
            for x in v:
                if type(x) is not exact:
                    break
            else:
                return v
        return _map_items(self.item.coerce, v)

    def encode(self, v: Any) -> Any:
        e = self.item.encode
        return [e(x) for x in v]

    def decode(self, w: Any) -> Any:
        if type(w) is not list:
            raise Invalid(w, self.expected)
        return _map_items(self.item.decode, w)


class TupleAdapter(Adapter):
    def __init__(self, items: list[Adapter] | None, variadic: Adapter | None) -> None:
        self.items = items
        self.variadic = variadic
        if variadic is not None:
            self.expected = f"tuple[{variadic.expected}, ...]"
            self.passthrough = variadic.passthrough
        else:
            assert items is not None
            self.expected = f"tuple[{', '.join(a.expected for a in items)}]"
            self.passthrough = all(a.passthrough for a in items)

    def _convert(self, v: Any, method: str) -> tuple[Any, ...]:
        if self.variadic is not None:
            return tuple(_map_items(getattr(self.variadic, method), v))
        assert self.items is not None
        if len(v) != len(self.items):
            raise Invalid(v, f"{self.expected} ({len(self.items)} items, got {len(v)})")
        out = []
        for i, (a, x) in enumerate(zip(self.items, v)):
            try:
                out.append(getattr(a, method)(x))
            except Invalid as exc:
                raise exc.within(f"[{i}]") from None
        return tuple(out)

    def coerce(self, v: Any) -> Any:
        if not _is_sequence(v):
            raise Invalid(v, self.expected)
        return self._convert(v, "coerce")

    def encode(self, v: Any) -> Any:
        return list(self._convert(v, "encode"))

    def decode(self, w: Any) -> Any:
        if type(w) is not list:
            raise Invalid(w, self.expected)
        return self._convert(w, "decode")


class SetAdapter(Adapter):
    def __init__(self, item: Adapter, frozen: bool) -> None:
        self.item = item
        self.frozen = frozen
        self.expected = f"{'frozenset' if frozen else 'set'}[{item.expected}]"
        self.passthrough = False

    def _build(self, items: list[Any]) -> set[Any] | frozenset[Any]:
        try:
            return frozenset(items) if self.frozen else set(items)
        except TypeError:  # an unhashable item: name the first one
            for i, x in enumerate(items):
                try:
                    hash(x)
                except TypeError:
                    raise Invalid(x, f"a hashable item of {self.expected}").within(
                        f"[{i}]"
                    ) from None
            raise

    def coerce(self, v: Any) -> Any:
        if not isinstance(v, (set, frozenset, list, tuple)):
            raise Invalid(v, self.expected)
        return self._build(_map_items(self.item.coerce, v))

    def encode(self, v: Any) -> Any:
        e = self.item.encode
        return [e(x) for x in v]

    def decode(self, w: Any) -> Any:
        if type(w) is not list:
            raise Invalid(w, self.expected)
        return self._build(_map_items(self.item.decode, w))


class DictAdapter(Adapter):
    def __init__(self, key: Adapter, value: Adapter) -> None:
        self.key = key
        self.value = value
        self.expected = f"dict[{key.expected}, {value.expected}]"
        self.passthrough = key.passthrough and value.passthrough

    def _convert(self, v: Mapping[Any, Any], kf: Any, vf: Any) -> dict[Any, Any]:
        out = {}
        for k, x in v.items():
            try:
                key = kf(k)
            except Invalid as exc:
                raise exc.within(f"[key {_short_repr(k, 40)}]") from None
            try:
                out[key] = vf(x)
            except Invalid as exc:
                raise exc.within(f"[{_short_repr(k, 40)}]") from None
        return out

    def coerce(self, v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise Invalid(v, self.expected)
        return self._convert(v, self.key.coerce, self.value.coerce)

    def encode(self, v: Any) -> Any:
        ek, ev = self.key.encode, self.value.encode
        return {ek(k): ev(x) for k, x in v.items()}

    def decode(self, w: Any) -> Any:
        if type(w) is not dict:
            raise Invalid(w, self.expected)
        return self._convert(w, self.key.decode, self.value.decode)


class OptionalAdapter(Adapter):
    def __init__(self, inner: Adapter) -> None:
        self.inner = inner
        self.expected = f"{inner.expected} | None"
        self.passthrough = inner.passthrough
        if isinstance(inner, UUIDAdapter):
            self.fixed = inner.fixed  # the all-zero id stands for None

    def coerce(self, v: Any) -> Any:
        return None if v is None else self.inner.coerce(v)

    def encode(self, v: Any) -> Any:
        return None if v is None else self.inner.encode(v)

    def decode(self, w: Any) -> Any:
        return None if w is None else self.inner.decode(w)


class UnionAdapter(Adapter):
    """``A | B``: the first option that accepts the value wins; wire form self-describing."""

    def __init__(self, options: list[Adapter]) -> None:
        self.options = options
        self.expected = " | ".join(a.expected for a in options)

    def coerce(self, v: Any) -> Any:
        for a in self.options:
            try:
                return a.coerce(v)
            except Invalid:
                continue
        raise Invalid(v, self.expected)

    def decode(self, w: Any) -> Any:
        for a in self.options:
            try:
                return a.decode(w)
            except Invalid:
                continue
        raise Invalid(w, self.expected)


class LiteralAdapter(Adapter):
    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values
        self.expected = " | ".join(repr(x) for x in values)

    def coerce(self, v: Any) -> Any:
        for x in self.values:
            if type(v) is type(x) and v == x:
                return x
        raise Invalid(v, self.expected)


class EnumAdapter(Adapter):
    def __init__(self, cls: type[enum.Enum]) -> None:
        self.cls = cls
        self.expected = cls.__name__
        self.passthrough = False

    def coerce(self, v: Any) -> Any:
        if isinstance(v, self.cls):
            return v
        try:
            return self.cls(v)
        except Exception:  # ValueError, or whatever the enum's own _missing_ raises
            raise Invalid(v, self.expected) from None

    def encode(self, v: Any) -> Any:
        return v.value


class InstanceAdapter(Adapter):
    """Any other class: an isinstance check. Serializable only if the codec knows the value."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.expected = cls.__name__

    def coerce(self, v: Any) -> Any:
        if isinstance(v, self.cls):
            return v
        raise Invalid(v, self.expected)


class MessageAdapter(Adapter):
    """A nested ``@message`` class: stored as an instance, packed as its compact list."""

    passthrough = False

    def __init__(self, cls: type) -> None:
        self.cls: Any = cls
        self.expected = cls.__name__

    @property
    def info(self) -> Any:
        return self.cls.__pdc_message__

    @property
    def fixed(self) -> FixedType | None:  # type: ignore[override]
        layout = self.info.layout
        if layout is None:
            return None
        return FixedType(layout.dtype, layout.c_name, nested=self.cls)

    def coerce(self, v: Any) -> Any:
        if isinstance(v, self.cls):
            return v
        if isinstance(v, Mapping):
            from ..errors import MessageValidationError

            try:
                return self.cls(**v)
            except MessageValidationError as exc:
                err = Invalid(exc.value, exc.expected)
                err.path = f".{exc.field}"
                raise err from None
            except TypeError:
                raise Invalid(v, f"{self.expected} or a dict of its fields") from None
        raise Invalid(v, self.expected)

    def encode(self, v: Any) -> Any:
        return self.info.encode_list(v)

    def decode(self, w: Any) -> Any:
        if isinstance(w, self.cls):
            return w
        return self.info.decode_list(w)


_SCALAR_ADAPTERS: dict[Any, Adapter] = {
    Any: AnyAdapter(),
    object: AnyAdapter(),
    type(None): NoneAdapter(),
    None: NoneAdapter(),
    bool: BoolAdapter(),
    int: IntAdapter(),
    float: FloatAdapter(),
    str: StrAdapter(),
    bytes: BytesAdapter(),
    UUID: UUIDAdapter(),
}


def _ndarray_dtype(args: tuple[Any, ...]) -> np.dtype[Any] | None:
    """The dtype of ``np.ndarray[shape, np.dtype[X]]`` (what ``NDArray[X]`` expands to)."""
    if len(args) == 2:
        dt_arg = typing.get_args(args[1])
        if dt_arg and dt_arg[0] is not Any and not isinstance(dt_arg[0], typing.TypeVar):
            try:
                return np.dtype(dt_arg[0])
            except TypeError:
                return None
    return None


def adapter_for(tp: Any, where: str) -> Adapter:
    """Return the adapter of annotation ``tp``; ``where`` names the field for errors."""
    try:
        scalar = _SCALAR_ADAPTERS.get(tp)
    except TypeError:  # an annotation with unhashable metadata
        scalar = None
    if scalar is not None:
        return scalar
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        for meta in tp.__metadata__:
            if isinstance(meta, ArraySpec):
                return FixedArrayAdapter(meta)
        return adapter_for(args[0], where)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) < len(args) and len(non_none) == 1:
            return OptionalAdapter(adapter_for(non_none[0], where))
        union = UnionAdapter([adapter_for(a, where) for a in non_none])
        return OptionalAdapter(union) if len(non_none) < len(args) else union
    if origin is typing.Literal:
        return LiteralAdapter(args)
    if origin in (list, Sequence):
        return ListAdapter(adapter_for(args[0] if args else Any, where))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return TupleAdapter(None, adapter_for(args[0], where))
        if not args:
            return TupleAdapter(None, AnyAdapter())
        return TupleAdapter([adapter_for(a, where) for a in args], None)
    if origin in (set, frozenset):
        return SetAdapter(adapter_for(args[0] if args else Any, where), origin is frozenset)
    if origin in (dict, Mapping):
        k, v = args if args else (Any, Any)
        return DictAdapter(adapter_for(k, where), adapter_for(v, where))
    if origin is np.ndarray:
        return NDArrayAdapter(_ndarray_dtype(args))
    if tp is list:  # bare containers mean their Any forms
        return ListAdapter(AnyAdapter())
    if tp is tuple:
        return TupleAdapter(None, AnyAdapter())
    if tp in (set, frozenset):
        return SetAdapter(AnyAdapter(), tp is frozenset)
    if tp is dict:
        return DictAdapter(AnyAdapter(), AnyAdapter())
    if tp is np.ndarray:
        return NDArrayAdapter(None)
    if isinstance(tp, type):
        if hasattr(tp, "__pdc_message__"):
            return MessageAdapter(tp)
        if issubclass(tp, enum.Enum):
            return EnumAdapter(tp)
        if issubclass(tp, np.generic) and np.dtype(tp).kind in "biufc":
            return NumpyScalarAdapter(np.dtype(tp))
        return InstanceAdapter(tp)
    raise MessageDefinitionError(
        f"{where}: annotation {tp!r} is not supported; use a class, a numpy scalar type, "
        "Array[dtype, n], or list/tuple/dict/set/Optional/Union/Literal of those"
    )
