"""msgpack codec: compact array form ``[tag, field0, field1, ...]`` with a type tag.

Values whose type the schema fixes are packed in their plain form (UUIDs as 16 raw bytes,
nested messages as their own arrays). Values whose type the schema leaves open (``Any``,
unions, container items of those) are packed self-describing through msgpack extension
types, so they decode to the same Python type:

====  ==========================================================
code  payload
====  ==========================================================
1     UUID: 16 bytes
2     numpy array: msgpack ``[dtype descr, shape, raw bytes]``
3     numpy scalar: msgpack ``[dtype descr, raw bytes]``
4     message: its own packed bytes (the tag names the class)
====  ==========================================================
"""

from __future__ import annotations

import enum
import math
import zlib
from typing import Any
from uuid import UUID

import msgpack
import numpy as np
from numpy.lib import format as npformat

from ..errors import MessageDecodeError, MessageEncodeError
from ._ids import uuid_from_bytes

EXT_UUID = 1
EXT_NDARRAY = 2
EXT_NPSCALAR = 3
EXT_MESSAGE = 4

_registry: dict[Any, type] = {}


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def default_tag(cls: type) -> int:
    """The default type tag: a 32-bit CRC of ``module.QualName`` (5 bytes on the wire)."""
    return zlib.crc32(qualified_name(cls).encode())


def register_tag(tag: Any, cls: type) -> None:
    """Map a type tag to its message class.

    A redefinition of the same class (same ``module.QualName``, say a re-run notebook cell)
    replaces the old one; a different class with the same tag is refused.
    """
    old = _registry.get(tag)
    if old is not None and qualified_name(old) != qualified_name(cls):
        from ..errors import MessageDefinitionError

        raise MessageDefinitionError(
            f"type tag {tag!r} of {qualified_name(cls)} is already used by "
            f"{qualified_name(old)}; give one of them its own @message(tag=...)"
        )
    _registry[tag] = cls


def describe_tag(tag: Any) -> str:
    """A readable form of a tag: the class it names, if known here."""
    cls = _registry.get(tag) if isinstance(tag, (int, str)) else None
    return f"{qualified_name(cls)} (tag {tag!r})" if cls is not None else f"tag {tag!r}"


def class_for_tag(tag: Any) -> type:
    """Return the message class registered under ``tag``."""
    try:
        return _registry[tag]
    except (KeyError, TypeError):
        raise MessageDecodeError(
            f"unknown message type tag {tag!r}; the class that encoded it must be defined "
            "(imported) in this process before decoding"
        ) from None


def _descr(dtype: np.dtype[Any]) -> Any:
    if dtype.hasobject:
        raise MessageEncodeError(
            f"numpy dtype {dtype} holds Python objects and cannot be serialized; "
            "use a numeric, bool, bytes or structured dtype"
        )
    return npformat.dtype_to_descr(dtype)


def _tuples(x: Any) -> Any:
    """msgpack returns lists; numpy dtype descriptions want tuples for fields."""
    if isinstance(x, list):
        return [tuple(_tuples(i) for i in item) if isinstance(item, list) else item for item in x]
    return x


def _dtype_from(descr: Any) -> np.dtype[Any]:
    try:
        if isinstance(descr, list):
            descr = [tuple(_tuples(i) for i in item) for item in descr]
        dtype = npformat.descr_to_dtype(descr)
    except Exception as exc:
        raise MessageDecodeError(f"invalid numpy dtype description {descr!r}: {exc}") from exc
    if dtype.hasobject:
        raise MessageDecodeError(f"numpy dtype {dtype} with Python objects is not accepted")
    return dtype


def _pack_nested(obj: Any) -> bytes:
    """Pack an extension payload; a Packer is not re-entrant, so hooks use a fresh one."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def _pack_array(arr: np.ndarray) -> bytes:
    descr = _descr(arr.dtype)
    return _pack_nested([descr, list(arr.shape), np.ascontiguousarray(arr).tobytes()])


def _unpack_array(payload: bytes) -> np.ndarray:
    try:
        descr, shape, raw = msgpack.unpackb(payload, strict_map_key=False)
    except (ValueError, TypeError) as exc:
        raise MessageDecodeError(f"malformed numpy array payload: {exc}") from exc
    dtype = _dtype_from(descr)
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise MessageDecodeError(f"malformed numpy array shape {shape!r}")
    if type(raw) is not bytes or len(raw) != math.prod(shape) * dtype.itemsize:
        raise MessageDecodeError(
            f"numpy array payload holds {len(raw) if isinstance(raw, bytes) else raw!r} bytes, "
            f"shape {tuple(shape)} of {dtype} needs {math.prod(shape) * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _unpack_scalar(payload: bytes) -> np.generic:
    try:
        descr, raw = msgpack.unpackb(payload)
    except (ValueError, TypeError) as exc:
        raise MessageDecodeError(f"malformed numpy scalar payload: {exc}") from exc
    dtype = _dtype_from(descr)
    if type(raw) is not bytes or len(raw) != dtype.itemsize:
        raise MessageDecodeError(f"numpy scalar payload does not match dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype)[0]


def _default(obj: Any) -> Any:
    """msgpack hook for values it cannot pack itself."""
    if isinstance(obj, UUID):
        return msgpack.ExtType(EXT_UUID, obj.bytes)
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(EXT_NDARRAY, _pack_array(obj))
    if isinstance(obj, np.generic):
        return msgpack.ExtType(EXT_NPSCALAR, _pack_nested([_descr(obj.dtype), obj.tobytes()]))
    info = getattr(type(obj), "__pdc_message__", None)
    if info is not None:
        return msgpack.ExtType(EXT_MESSAGE, _pack_nested(info.encode_list(obj)))
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, int):
        raise MessageEncodeError(
            f"integer {obj} does not fit in 64 bits; msgpack holds integers from -2**63 to "
            "2**64-1 (use a float, a str, or split the value)"
        )
    raise MessageEncodeError(
        f"cannot serialize a value of type {type(obj).__name__} ({obj!r:.60}); messages "
        "serialize None, bool, int, float, str, bytes, UUID, numpy scalars and arrays, "
        "list/tuple/dict/set of those, and nested messages"
    )


def _ext_hook(code: int, payload: bytes) -> Any:
    if code == EXT_UUID:
        if len(payload) != 16:
            raise MessageDecodeError(f"UUID extension holds {len(payload)} bytes, not 16")
        return uuid_from_bytes(payload)
    if code == EXT_NDARRAY:
        return _unpack_array(payload)
    if code == EXT_NPSCALAR:
        return _unpack_scalar(payload)
    if code == EXT_MESSAGE:
        return decode_any(payload)
    raise MessageDecodeError(f"unknown msgpack extension type {code}")


_packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=True)
_packb = _packer.pack


def unpackb(data: Any, what: str) -> Any:
    """Unpack bytes, turning every msgpack failure into ``MessageDecodeError``."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
    except MessageDecodeError:
        raise
    except Exception as exc:  # msgpack raises many types for malformed input
        size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else None
        given = f"{size} bytes" if size is not None else f"a {type(data).__name__}"
        raise MessageDecodeError(
            f"cannot decode {what} from {given}: {type(exc).__name__}: {exc}; pass the exact "
            "bytes produced by to_bytes()"
        ) from exc


def decode_any(data: bytes) -> Any:
    """Decode bytes made by any message's ``to_bytes()``, finding the class by its tag."""
    obj = unpackb(data, "a message")
    if type(obj) is not list or not obj:
        raise MessageDecodeError(
            f"bytes do not hold a message (expected a tagged array, got {type(obj).__name__})"
        )
    cls = class_for_tag(obj[0])
    return cls.__pdc_message__.decode_list(obj)  # type: ignore[attr-defined]  # wraps errors
