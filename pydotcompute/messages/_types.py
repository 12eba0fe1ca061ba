"""Type adapters: one per field annotation, for validation, coercion, wire form and layout.

``adapter_for(annotation)`` turns an annotation into an :class:`Adapter`. An adapter coerces
a value given at construction (``coerce``), turns a value into its msgpack form when the
codec cannot pack it as it is (``encode``; most adapters pack values unchanged and let the
codec's ``default`` hook handle UUIDs, arrays and messages), turns a decoded wire value back
into a field value (``decode``), and, where the type has a fixed size, gives its numpy dtype
and C type (``fixed``).
"""

from __future__ import annotations

import enum
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np

from ..errors import MessageDefinitionError
from ._ids import IdCoercionError, coerce_uuid, uuid_from_bytes


class Invalid(Exception):  # noqa: N818 - internal signal, never escapes the package
    """Internal: a value does not fit an adapter.

    ``path`` is built while the error unwinds through containers (``[2]``, ``.inner``), so
    the success path never formats a string.
    """

    def __init__(self, value: Any, expected: str) -> None:
        super().__init__(value, expected)
        self.path = ""
        self.value = value
        self.expected = expected

    def within(self, prefix: str) -> Invalid:
        """Prefix the path with ``prefix`` and return self, for re-raising."""
        self.path = prefix + self.path
        return self


@dataclass(frozen=True)
class FixedType:
    """Fixed-size storage of a field: numpy dtype, C element type and array shape."""

    dtype: np.dtype[Any]
    c_type: str
    shape: tuple[int, ...] = ()
    nested: Any = None  # the message class, for nested fixed-layout messages


@dataclass(frozen=True)
class ArraySpec:
    """Metadata of ``Array[dtype, shape]``: a fixed-size numpy array field."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    def __repr__(self) -> str:
        dims = self.shape[0] if len(self.shape) == 1 else self.shape
        return f"Array[{self.dtype.name}, {dims}]"


class Array:
    """Annotation of a fixed-size numpy array field: ``Array[np.float32, 16]``.

    The second argument is the length, or a tuple for several dimensions
    (``Array[np.float64, (4, 4)]``). Fields of this type have a fixed layout, so messages made
    only of them (and of numpy scalars, ``bool``, ``int``, ``float``) can travel through
    device ring kernels.
    """

    def __class_getitem__(cls, params: Any) -> Any:
        if not isinstance(params, tuple) or len(params) != 2:
            raise MessageDefinitionError(
                f"Array takes a dtype and a shape, got {params!r}; "
                "write Array[np.float32, 16] or Array[np.float64, (4, 4)]"
            )
        dtype_arg, shape_arg = params
        try:
            dtype = np.dtype(dtype_arg)
        except TypeError as exc:
            raise MessageDefinitionError(
                f"Array dtype {dtype_arg!r} is not a numpy dtype; use e.g. np.float32"
            ) from exc
        shape = (shape_arg,) if isinstance(shape_arg, int) else tuple(shape_arg)
        if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
            raise MessageDefinitionError(
                f"Array shape {shape_arg!r} must be a positive int or a tuple of them"
            )
        return typing.Annotated[np.ndarray, ArraySpec(dtype.newbyteorder("="), shape)]


_C_TYPES = {
    "b1": "bool",
    "i1": "int8_t",
    "i2": "int16_t",
    "i4": "int32_t",
    "i8": "int64_t",
    "u1": "uint8_t",
    "u2": "uint16_t",
    "u4": "uint32_t",
    "u8": "uint64_t",
    "f4": "float",
    "f8": "double",
}


def c_type_of(dtype: np.dtype[Any]) -> str | None:
    """Return the C type of a numpy scalar dtype, or ``None`` if it has none."""
    return _C_TYPES.get(f"{dtype.kind}{dtype.itemsize}")


def type_name(tp: Any) -> str:
    """Readable name of an annotation, for error messages."""
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("numpy.", "np.")


class Adapter:
    """Base adapter: accepts nothing. Subclasses override what they support."""

    expected = "?"
    fixed: FixedType | None = None
    #: encode() is the identity: values pack as they are (or through the default hook)
    passthrough = True

    def coerce(self, v: Any) -> Any:
        raise Invalid(v, self.expected)

    def encode(self, v: Any) -> Any:
        return v

    def decode(self, w: Any) -> Any:
        return self.coerce(w)


class AnyAdapter(Adapter):
    expected = "Any"

    def coerce(self, v: Any) -> Any:
        return v


class NoneAdapter(Adapter):
    expected = "None"

    def coerce(self, v: Any) -> Any:
        if v is None:
            return None
        raise Invalid(v, self.expected)


class BoolAdapter(Adapter):
    expected = "bool"
    fixed = FixedType(np.dtype(np.bool_), "bool")

    def coerce(self, v: Any) -> Any:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        raise Invalid(v, self.expected)


class IntAdapter(Adapter):
    expected = "int"
    fixed = FixedType(np.dtype(np.int64), "int64_t")

    def coerce(self, v: Any) -> Any:
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            return int(v)
        raise Invalid(v, self.expected)


class PriorityAdapter(Adapter):
    expected = "int in 0..255"
    fixed = FixedType(np.dtype(np.uint8), "uint8_t")

    def coerce(self, v: Any) -> Any:
        is_int = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
        if is_int and 0 <= v <= 255:
            return int(v)
        raise Invalid(v, self.expected)


class FloatAdapter(Adapter):
    expected = "float"
    fixed = FixedType(np.dtype(np.float64), "double")

    def coerce(self, v: Any) -> Any:
        if isinstance(v, (float, int, np.floating, np.integer)) and not isinstance(
            v, (bool, np.bool_)
        ):
            return float(v)
        raise Invalid(v, self.expected)


class StrAdapter(Adapter):
    expected = "str"

    def coerce(self, v: Any) -> Any:
        if isinstance(v, str):
            return str(v)
        raise Invalid(v, self.expected)


class BytesAdapter(Adapter):
    expected = "bytes"

    def coerce(self, v: Any) -> Any:
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v)
        raise Invalid(v, self.expected)


class UUIDAdapter(Adapter):
    expected = "UUID"
    fixed = FixedType(np.dtype("V16"), "pdc_uuid")
    passthrough = False

    def coerce(self, v: Any) -> Any:
        try:
            u = coerce_uuid(v)
        except IdCoercionError:
            raise Invalid(v, self.expected) from None
        return uuid_from_bytes(u) if type(u) is bytes else u

    def encode(self, v: Any) -> Any:
        return v.bytes


class NumpyScalarAdapter(Adapter):
    """A numpy scalar type such as ``np.float32``: values are stored as that scalar."""

    passthrough = False

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.scalar = dtype.type
        self.expected = f"np.{dtype.name}"
        c_type = c_type_of(dtype)
        self.fixed = FixedType(dtype, c_type) if c_type else None
        self.info: Any = np.iinfo(dtype) if dtype.kind in "iu" else None

    def coerce(self, v: Any) -> Any:
        if type(v) is self.scalar:
            return v
        kind = self.dtype.kind
        is_bool = isinstance(v, (bool, np.bool_))
        if kind == "b":
            if is_bool:
                return self.scalar(v)
        elif is_bool:
            pass
        elif kind in "iu":
            if isinstance(v, (int, np.integer)) and self.info.min <= int(v) <= self.info.max:
                return self.scalar(v)
        elif kind == "f":
            if isinstance(v, (float, int, np.floating, np.integer)):
                with np.errstate(over="ignore"):
                    out = self.scalar(v)
                if math.isfinite(float(out)) or not math.isfinite(float(v)):
                    return out
        elif kind == "c" and isinstance(v, (complex, float, int, np.number)):
            with np.errstate(over="ignore", invalid="ignore"):
                out = self.scalar(v)
            if np.isfinite(out) or not np.isfinite(complex(v)):
                return out
        raise Invalid(v, self.expected)

    def encode(self, v: Any) -> Any:
        item = v.item()
        return [item.real, item.imag] if isinstance(item, complex) else item

    def decode(self, w: Any) -> Any:
        if self.dtype.kind == "c" and type(w) is list:  # complex values travel as [re, im]
            if len(w) != 2 or not all(type(x) in (int, float) for x in w):
                raise Invalid(w, f"{self.expected} as [real, imag]")
            w = complex(w[0], w[1])
        return self.coerce(w)


def _as_array(v: Any, dtype: np.dtype[Any] | None, expected: str) -> np.ndarray:
    """Turn ``v`` into an ndarray of ``dtype`` without lossy or string conversions."""
    if isinstance(v, np.ndarray):
        arr = v
    elif isinstance(v, (list, tuple, np.generic)):
        try:
            arr = np.asarray(v)
        except ValueError:
            raise Invalid(v, expected) from None
        if arr.dtype.kind not in "biufc":
            raise Invalid(v, expected)
    else:
        raise Invalid(v, expected)
    if dtype is not None and arr.dtype != dtype:
        if not np.can_cast(arr.dtype, dtype, "same_kind") and not _ints_fit(arr, dtype):
            raise Invalid(v, expected)
        with np.errstate(over="ignore", invalid="ignore"):
            cast = arr.astype(dtype)
        # A finite value that becomes infinite (1e300 as float32) does not fit: refuse it.
        if cast.dtype.kind in "fc" and not np.all(np.isfinite(cast) | ~np.isfinite(arr)):
            raise Invalid(v, f"{expected} (a value is out of the range of {dtype.name})")
        arr = cast
    return arr


def _ints_fit(arr: np.ndarray, dtype: np.dtype[Any]) -> bool:
    """Integer to integer casts are allowed when every value fits (no wrap-around)."""
    if arr.dtype.kind not in "iu" or dtype.kind not in "iu":
        return False
    if arr.size == 0:
        return True
    info = np.iinfo(dtype)
    return bool(info.min <= arr.min() and arr.max() <= info.max)


class NDArrayAdapter(Adapter):
    """``np.ndarray`` or ``numpy.typing.NDArray[dtype]``: any shape."""

    def __init__(self, dtype: np.dtype[Any] | None) -> None:
        self.dtype = dtype
        self.expected = "np.ndarray" if dtype is None else f"np.ndarray of {dtype.name}"

    def coerce(self, v: Any) -> Any:
        return _as_array(v, self.dtype, self.expected)


class FixedArrayAdapter(Adapter):
    """``Array[dtype, shape]``: an ndarray of exactly that dtype and shape."""

    def __init__(self, spec: ArraySpec) -> None:
        self.spec = spec
        self.expected = repr(spec)
        c_type = c_type_of(spec.dtype)
        self.fixed = FixedType(spec.dtype, c_type, spec.shape) if c_type else None

    def coerce(self, v: Any) -> Any:
        arr = _as_array(v, self.spec.dtype, self.expected)
        if arr.shape != self.spec.shape:
            raise Invalid(v, f"{self.expected} (shape {self.spec.shape}, got {arr.shape})")
        return arr


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
        return frozenset(items) if self.frozen else set(items)

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
                raise exc.within(f"[key {k!r}]") from None
            try:
                out[key] = vf(x)
            except Invalid as exc:
                raise exc.within(f"[{k!r}]") from None
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
        except (ValueError, TypeError):
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
    if tp in (list, tuple, set, frozenset, dict):
        return adapter_for(tp[Any] if tp is not tuple else tuple[Any, ...], where)
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
