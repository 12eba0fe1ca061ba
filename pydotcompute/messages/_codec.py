"""msgpack codec: compact array form ``[tag, field0, field1, ...]`` with a type tag.

Wire format, version 1 (readable by any msgpack implementation). Values whose type the
schema fixes are packed in their plain form (UUIDs as 16 raw bytes, nested messages as their
own arrays). Values whose type the schema leaves open (``Any``, unions, container items of
those) and every numpy array are packed self-describing through msgpack extension types, so
they decode to the same Python type:

====  ==========================================================
code  payload
====  ==========================================================
1     UUID: 16 bytes
2     numpy array: msgpack ``[dtype descr, shape, raw bytes]`` (C order)
3     numpy scalar: msgpack ``[dtype descr, raw bytes]``
4     message: its own packed bytes (the tag names the class)
====  ==========================================================

Arrays are written from the array's own buffer (one copy, into the output) and decoded as
read-only views: of the input bytes themselves for messages of scalars and arrays
(:func:`unpack_with_views`), of the extension payload msgpack copied out otherwise; or as
writable copies with ``copy=True``.

Decoding treats its input as hostile: every recursion has an explicit bound (messages nested
through extension type 4 at most :data:`MAX_MESSAGE_DEPTH` deep; msgpack's own containers
at most 1024 deep, msgpack's limit; dtype descriptions at most :data:`MAX_DTYPE_DEPTH`
deep), array headers are checked before any arithmetic, every length is bounded by the
input's size (msgpack's defaults), and every failure is a ``MessageDecodeError``.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgpack
import numpy as np

from ..errors import MessageDecodeError, MessageEncodeError, _short_repr
from ._arrays import (
    EXT_MESSAGE,
    EXT_NDARRAY,
    EXT_NPSCALAR,
    EXT_UUID,
    array_header,
    array_parts,
    descr_of,
    ext_span,
    header_pack,
    skip,
    unpack_array,
    unpack_scalar,
)
from ._ids import uuid_from_bytes

#: Messages nested inside ``Any`` values (extension type 4) deeper than this are refused.
MAX_MESSAGE_DEPTH = 16
#: msgpack lists and maps nested deeper than this are refused (msgpack's own stack).
MAX_CONTAINER_DEPTH = 1024

#: Version of the wire format described above; a change of meaning gets a new version.
WIRE_VERSION = 1


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
    cls = _registry.get(tag) if type(tag) in (int, str) else None
    shown = _short_repr(tag)
    return f"{qualified_name(cls)} (tag {shown})" if cls is not None else f"tag {shown}"


def class_for_tag(tag: Any) -> type:
    """Return the message class registered under ``tag``."""
    if type(tag) not in (int, str):
        raise MessageDecodeError(
            f"the type tag must be an int or a str, got {type(tag).__name__} "
            f"{_short_repr(tag)}; the bytes were not made by to_bytes()"
        )
    cls = _registry.get(tag)
    if cls is None:
        raise MessageDecodeError(
            f"unknown message type tag {_short_repr(tag)}; the class that encoded it must be "
            "defined (imported) in this process before decoding"
        )
    return cls


# ------------------------------------------------------------------ encoding hooks


def _make_default(depth: int) -> Callable[[Any], Any]:
    def default(obj: Any) -> Any:
        """msgpack hook for values it cannot pack itself."""
        if isinstance(obj, UUID):
            return msgpack.ExtType(EXT_UUID, obj.bytes)
        if isinstance(obj, np.ndarray):
            head, data = array_parts(obj)
            return msgpack.ExtType(EXT_NDARRAY, b"".join((head, data)))
        if isinstance(obj, np.generic):
            raw = header_pack([descr_of(obj.dtype), obj.tobytes()])
            return msgpack.ExtType(EXT_NPSCALAR, raw)
        info = getattr(type(obj), "__pdc_message__", None)
        if info is not None:
            if depth >= MAX_MESSAGE_DEPTH:
                raise MessageEncodeError(
                    f"a {type(obj).__name__} nested inside Any values more than "
                    f"{MAX_MESSAGE_DEPTH} messages deep exceeds the limit (decoding refuses "
                    "it); flatten the structure"
                )
            return msgpack.ExtType(EXT_MESSAGE, pack_nested(info.encode_list(obj), depth + 1))
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, enum.Enum):
            return obj.value
        if isinstance(obj, int):
            raise MessageEncodeError(
                f"integer {obj} does not fit in 64 bits; msgpack holds integers from -2**63 "
                "to 2**64-1 (use a float, a str, or split the value)"
            )
        raise MessageEncodeError(
            f"cannot serialize a value of type {type(obj).__name__} ({_short_repr(obj, 60)}); "
            "messages serialize None, bool, int, float, str, bytes, UUID, numpy scalars and "
            "arrays, list/tuple/dict/set of those, and nested messages"
        )

    return default


_DEFAULTS = [_make_default(d) for d in range(MAX_MESSAGE_DEPTH + 1)]
#: The encoding hook of a top-level message.
default = _DEFAULTS[0]


def pack_nested(obj: Any, depth: int = 0) -> bytes:
    """Pack with the hooks, on a fresh Packer (re-entrant and thread-safe; a Packer is not)."""
    return msgpack.Packer(default=_DEFAULTS[depth], use_bin_type=True).pack(obj)


# ------------------------------------------------------------------ decoding hooks


def _make_ext_hook(copy: bool, depth: int) -> Callable[[int, bytes], Any]:
    def ext_hook(code: int, payload: bytes) -> Any:
        if code == EXT_UUID:
            if len(payload) != 16:
                raise MessageDecodeError(f"UUID extension holds {len(payload)} bytes, not 16")
            return uuid_from_bytes(payload)
        if code == EXT_NDARRAY:
            return unpack_array(payload, copy)
        if code == EXT_NPSCALAR:
            return unpack_scalar(payload)
        if code == EXT_MESSAGE:
            if depth >= MAX_MESSAGE_DEPTH:
                raise MessageDecodeError(
                    f"messages nested inside Any values more than {MAX_MESSAGE_DEPTH} deep "
                    "exceed the limit; the bytes were not made by to_bytes()"
                )
            return decode_any(payload, copy=copy, depth=depth + 1)
        raise MessageDecodeError(f"unknown msgpack extension type {code}")

    return ext_hook


_EXT_HOOKS = {
    (c, d): _make_ext_hook(c, d) for c in (False, True) for d in range(MAX_MESSAGE_DEPTH + 1)
}
#: Extension hooks of a top-level decode: arrays as read-only views, or as copies.
VIEW_HOOK = _EXT_HOOKS[False, 0]
COPY_HOOK = _EXT_HOOKS[True, 0]


def unpack_with_views(data: Any, count: int, arrays: frozenset[int], copy: bool) -> Any:
    """Unpack a message whose items at ``arrays`` are numpy arrays and the rest scalars, its
    arrays as read-only views of ``data`` itself (or copies); no copy of their data is made.

    Returns ``None`` when ``data`` is not ``bytes`` (a mutable buffer must not back read-only
    arrays) or is not shaped that way; the caller then unpacks it as usual, which decodes
    (or refuses) it the same way with one copy of each array's data.
    """
    if type(data) is not bytes:
        return None
    end = len(data)
    n, pos = array_header(data, 0, end)
    if n != count:
        return None
    hook = COPY_HOOK if copy else VIEW_HOOK
    view = memoryview(data)
    out: list[Any] = []
    for k in range(count):
        if pos >= end:
            return None
        if k in arrays:
            span = ext_span(data, pos, end)
            if span is not None and span[0] == EXT_NDARRAY:
                out.append(unpack_array(data, copy, span[1], span[2]))
                pos = span[2]
                continue
        try:
            stop = skip(data, pos, end, 1, "not a scalar")
        except MessageDecodeError:
            return None
        out.append(msgpack.unpackb(view[pos:stop], ext_hook=hook, strict_map_key=False))
        pos = stop
    return out if pos == end else None


def unpack(data: Any, hook: Any, what: str) -> Any:
    """Unpack bytes, turning every failure into ``MessageDecodeError``."""
    try:
        return msgpack.unpackb(data, ext_hook=hook, strict_map_key=False)
    except MessageDecodeError:
        raise
    except Exception as exc:  # msgpack raises many types for malformed input
        raise decode_failure(what, exc, data) from exc


def decode_failure(what: str, exc: BaseException, data: Any) -> MessageDecodeError:
    """The error for bytes that msgpack (or a hook) refused."""
    size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else None
    given = f"{size} bytes" if size is not None else f"a {type(data).__name__}"
    if isinstance(exc, msgpack.StackError):
        return MessageDecodeError(
            f"cannot decode {what} from {given}: msgpack containers nested more than "
            f"{MAX_CONTAINER_DEPTH} deep exceed the limit; the bytes were not made by to_bytes()"
        )
    return MessageDecodeError(
        f"cannot decode {what} from {given}: {type(exc).__name__}: {exc!s:.200}; pass the "
        "exact bytes produced by to_bytes()"
    )


def decode_any(data: Any, *, copy: bool = False, depth: int = 0) -> Any:
    """Decode bytes made by any message's ``to_bytes()``, finding the class by its tag."""
    obj = unpack(data, _EXT_HOOKS[bool(copy), depth], "a message")
    if type(obj) is not list or not obj:
        raise MessageDecodeError(
            f"bytes do not hold a message (expected a tagged array, got {type(obj).__name__})"
        )
    cls = class_for_tag(obj[0])
    return cls.__pdc_message__.decode_list(obj)  # type: ignore[attr-defined]  # wraps errors
