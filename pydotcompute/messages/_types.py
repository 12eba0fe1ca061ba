"""Type adapters of scalars and arrays, and the adapter base class.

``adapter_for(annotation)`` (in ``_containers``) turns an annotation into an
:class:`Adapter`. An adapter coerces a value given at construction (``coerce``), turns a value
into its msgpack form when the codec cannot pack it as it is (``encode``; most adapters pack
values unchanged and let the codec's ``default`` hook handle UUIDs, arrays and messages), turns
a decoded wire value back into a field value (``decode``), and, where the type has a fixed
size, gives its numpy dtype and C type (``fixed``).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any

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
        except (ValueError, TypeError, OverflowError, RecursionError):  # ragged, too deep
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

    def decode(self, w: Any) -> Any:
        if not isinstance(w, np.ndarray):  # arrays always travel as arrays (extension 2)
            raise Invalid(w, self.expected)
        return _as_array(w, self.dtype, self.expected)


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

    def decode(self, w: Any) -> Any:
        if not isinstance(w, np.ndarray):  # arrays always travel as arrays (extension 2)
            raise Invalid(w, self.expected)
        return self.coerce(w)
