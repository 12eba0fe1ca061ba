"""msgpack framing, and the numpy extension payloads of the wire format (types 2 and 3).

Encoding takes an array's data from its own buffer; decoding checks a payload's header
completely (item counts, dtype description size and depth, dimensions, the element count
against the data's size, multiplying step by step) before building a read-only view of the
data. Nothing here recurses on the input without an explicit bound, and every failure is a
``MessageDecodeError``.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
from numpy.lib import format as npformat

from ..errors import MessageDecodeError, MessageEncodeError, _short_repr

EXT_UUID = 1
EXT_NDARRAY = 2
EXT_NPSCALAR = 3
EXT_MESSAGE = 4

#: Arrays with more dimensions than this are refused (numpy's own limit).
MAX_DIMS = 64
#: Structured dtype descriptions nested deeper than this are refused.
MAX_DTYPE_DEPTH = 8
#: msgpack items (names, fields, shapes) in one dtype description, at most.
MAX_DTYPE_ITEMS = 4096
#: Characters in one dtype string (``"<f4"``, ``"|S10"``), at most.
MAX_DTYPE_STR = 256

# ------------------------------------------------------------------ msgpack framing

# Shared packers must never run Python code while packing (another thread could then use them
# half way): no hook, and for message fields strict types, so that a subclass whose items()
# or __iter__ is Python is refused (and packed on a fresh Packer by the caller) instead.
#: Packs the items of a message of plain fields: exact int, float, str, bytes, bool, None.
plain_pack = msgpack.Packer(use_bin_type=True, autoreset=True, strict_types=True).pack
#: Packs headers this module builds itself (dtype descriptions, shapes, raw bytes).
header_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

# Bytes that follow each msgpack type byte before its payload, and the payload length's size.
_FIXED_SIZE = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4,
               0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5,
               0xD7: 9, 0xD8: 17}  # fmt: skip
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin, str: length bytes
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}  # ext: length bytes, then the type byte
_CONTAINER = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # length bytes, items


def skip(buf: bytes | memoryview, pos: int, end: int, max_items: int, too_many: str) -> int:
    """Return the offset just past the msgpack object at ``buf[pos]``.

    Iterative (no recursion), linear in the bytes walked; refuses truncated input and more
    than ``max_items`` objects in all (containers count their items), saying ``too_many``.
    """
    pending = 1
    items = 0
    while pending:
        if pos >= end:
            raise MessageDecodeError("truncated msgpack data inside an extension payload")
        b = buf[pos]
        pending -= 1
        items += 1
        if items > max_items:
            raise MessageDecodeError(f"{too_many}; the bytes were not made by to_bytes()")
        if b <= 0x7F or b >= 0xE0:
            pos += 1
        elif b <= 0x8F:
            pending += 2 * (b & 0x0F)
            pos += 1
        elif b <= 0x9F:
            pending += b & 0x0F
            pos += 1
        elif b <= 0xBF:
            pos += 1 + (b & 0x1F)
        elif b in _FIXED_SIZE:
            pos += 1 + _FIXED_SIZE[b]
        elif b in _SIZED:
            k = _SIZED[b]
            pos += 1 + k + int.from_bytes(buf[pos + 1 : pos + 1 + k], "big")
        elif b in _EXT:
            k = _EXT[b]
            pos += 2 + k + int.from_bytes(buf[pos + 1 : pos + 1 + k], "big")
        elif b in _CONTAINER:
            k, per = _CONTAINER[b]
            pending += per * int.from_bytes(buf[pos + 1 : pos + 1 + k], "big")
            pos += 1 + k
        else:  # 0xC1, never used
            raise MessageDecodeError(f"invalid msgpack type byte 0x{b:02x}")
        if pending > end - pos:  # every pending object needs at least one byte
            raise MessageDecodeError("truncated msgpack data inside an extension payload")
    if pos > end:
        raise MessageDecodeError("truncated msgpack data inside an extension payload")
    return pos


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xc6" + n.to_bytes(4, "big")
    raise MessageEncodeError(
        f"a numpy array of {n} bytes does not fit in one msgpack bin (at most 4 GiB); "
        "split it over several messages"
    )


_FIXEXT = {1: b"\xd4", 2: b"\xd5", 4: b"\xd6", 8: b"\xd7", 16: b"\xd8"}


def ext_header(code: int, n: int) -> bytes:
    """The msgpack header of an extension object of type ``code`` with ``n`` payload bytes."""
    t = code.to_bytes(1, "big")
    if n in _FIXEXT:
        return _FIXEXT[n] + t
    if n < 0x100:
        return b"\xc7" + n.to_bytes(1, "big") + t
    if n < 0x10000:
        return b"\xc8" + n.to_bytes(2, "big") + t
    if n < 0x100000000:
        return b"\xc9" + n.to_bytes(4, "big") + t
    raise MessageEncodeError(f"an extension payload of {n} bytes exceeds msgpack's 4 GiB")


# ------------------------------------------------------------------ numpy arrays and scalars


def descr_of(dtype: np.dtype[Any]) -> Any:
    if dtype.hasobject:
        raise MessageEncodeError(
            f"numpy dtype {dtype} holds Python objects and cannot be serialized; "
            "use a numeric, bool, bytes or structured dtype"
        )
    if dtype.itemsize == 0:
        raise MessageEncodeError(f"numpy dtype {dtype} has no size and cannot be serialized")
    return npformat.dtype_to_descr(dtype)


def array_parts(arr: np.ndarray) -> tuple[bytes, memoryview]:
    """The extension payload of an array: its msgpack header and its data (not copied)."""
    head = b"\x93" + header_pack(descr_of(arr.dtype)) + header_pack(list(arr.shape))
    c = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    data = memoryview(c.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    return head + _bin_header(c.nbytes), data


def pack_array(arr: np.ndarray) -> list[bytes | memoryview]:
    """An array as an extension object: the pieces to join, the data as a view of ``arr``."""
    head, data = array_parts(arr)
    return [ext_header(EXT_NDARRAY, len(head) + len(data)) + head, data]


def _descr_spec(descr: Any, depth: int) -> Any:
    """A decoded dtype description in the form numpy takes (lists of fields as tuples)."""
    if type(descr) is str:
        if len(descr) > MAX_DTYPE_STR:
            raise MessageDecodeError(
                f"numpy dtype string of {len(descr)} characters exceeds the limit of "
                f"{MAX_DTYPE_STR}"
            )
        return descr
    if type(descr) is not list:
        raise MessageDecodeError(f"invalid numpy dtype description {_short_repr(descr)}")
    if depth >= MAX_DTYPE_DEPTH:
        raise MessageDecodeError(
            f"numpy dtype description nested more than {MAX_DTYPE_DEPTH} deep exceeds the limit"
        )
    fields = []
    for f in descr:
        if type(f) is not list or not 2 <= len(f) <= 3:
            raise MessageDecodeError(f"invalid numpy dtype field {_short_repr(f)}")
        name = tuple(f[0]) if type(f[0]) is list else f[0]
        spec: tuple[Any, ...] = (name, _descr_spec(f[1], depth + 1))
        if len(f) == 3:
            if type(f[2]) is not list or not all(type(n) is int for n in f[2]):
                raise MessageDecodeError(f"invalid numpy dtype field shape {_short_repr(f[2])}")
            spec += (tuple(f[2]),)
        fields.append(spec)
    return fields


def _dtype_from(descr: Any) -> np.dtype[Any]:
    spec = _descr_spec(descr, 0)
    try:
        dtype = npformat.descr_to_dtype(spec)
    except Exception as exc:  # numpy raises several types for bad descriptions
        raise MessageDecodeError(
            f"invalid numpy dtype description {_short_repr(descr)}: {exc!s:.200}"
        ) from None
    if dtype.hasobject:
        raise MessageDecodeError(f"numpy dtype {dtype} with Python objects is not accepted")
    if dtype.itemsize == 0:
        raise MessageDecodeError(f"numpy dtype {dtype} has no size; it is not accepted")
    return dtype


def element_count(shape: Any, dtype: np.dtype[Any], nbytes: int) -> int:
    """Check a decoded shape against the data's size before any large arithmetic."""
    if type(shape) is not list:
        raise MessageDecodeError(f"numpy array shape must be a list, got {_short_repr(shape)}")
    if len(shape) > MAX_DIMS:
        raise MessageDecodeError(
            f"numpy array with {len(shape)} dimensions exceeds the limit of {MAX_DIMS}"
        )
    for n in shape:
        if type(n) is not int or n < 0:
            raise MessageDecodeError(f"malformed numpy array shape {_short_repr(shape)}")
    count = 1
    exact = True
    if 0 in shape:
        count = 0
    else:
        limit = nbytes // dtype.itemsize
        for k, n in enumerate(shape):  # each step stays below nbytes * 2**64: no huge integers
            count *= n
            if count > limit:
                exact = k == len(shape) - 1
                break
    need = count * dtype.itemsize
    if need != nbytes:
        needs = f"needs {need}" if exact else f"needs more than {nbytes}"
        raise MessageDecodeError(
            f"numpy array payload holds {nbytes} bytes; shape {_short_repr(tuple(shape))} of "
            f"{dtype} {needs}"
        )
    return count


_ITEM_LIMITS = [
    (MAX_DTYPE_ITEMS, f"a numpy dtype description of more than {MAX_DTYPE_ITEMS} items "
                      "exceeds the limit"),
    (MAX_DIMS + 1, f"a numpy array shape of more than {MAX_DIMS} dimensions exceeds the limit"),
    (1, "numpy data must be one msgpack bin"),
]  # fmt: skip


def array_header(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The item count of the msgpack array header at ``buf[pos]`` and its size (-1, 0 if none)."""
    b = buf[pos] if pos < end else 0
    k = 0 if 0x90 <= b <= 0x9F else {0xDC: 2, 0xDD: 4}.get(b, -1)
    if k < 0 or pos + 1 + k > end:
        return -1, 0
    n = b & 0x0F if k == 0 else int.from_bytes(buf[pos + 1 : pos + 1 + k], "big")
    return n, 1 + k


def _payload_items(payload: bytes, count: int, what: str, pos: int = 0, end: int = -1) -> list[int]:
    """Offsets of the ``count`` items of the msgpack array at ``payload[pos:end]``, and its end.

    The items are a dtype description, then (arrays) a shape, then the data.
    """
    end = len(payload) if end < 0 else end
    n, size = array_header(payload, pos, end)
    if n != count:
        raise MessageDecodeError(f"malformed {what} payload: expected a msgpack array of {count}")
    offsets = [pos + size]
    limits = _ITEM_LIMITS if count == 3 else [_ITEM_LIMITS[0], _ITEM_LIMITS[2]]
    for max_items, too_many in limits:
        offsets.append(skip(payload, offsets[-1], end, max_items, too_many))
    if offsets[-1] != end:
        raise MessageDecodeError(f"malformed {what} payload: {end - offsets[-1]} bytes left over")
    return offsets


def _bin_span(payload: bytes, start: int, end: int, what: str) -> tuple[int, int]:
    b = payload[start]
    k = _SIZED.get(b) if b in (0xC4, 0xC5, 0xC6) else None
    if k is None:
        raise MessageDecodeError(f"malformed {what} payload: its data is not msgpack bin")
    return start + 1 + k, end


def unpack_array(payload: bytes, copy: bool, pos: int = 0, end: int = -1) -> np.ndarray:
    """An array from its extension payload (``payload[pos:end]``): a read-only view, or a copy."""
    o = _payload_items(payload, 3, "numpy array", pos, end)
    dtype = _dtype_from(msgpack.unpackb(payload[o[0] : o[1]]))
    shape = msgpack.unpackb(payload[o[1] : o[2]])
    start, end = _bin_span(payload, o[2], o[3], "numpy array")
    count = element_count(shape, dtype, end - start)
    arr = np.frombuffer(payload, dtype=dtype, count=count, offset=start).reshape(shape)
    return arr.copy() if copy else arr


def unpack_scalar(payload: bytes) -> np.generic:
    o = _payload_items(payload, 2, "numpy scalar")
    dtype = _dtype_from(msgpack.unpackb(payload[o[0] : o[1]]))
    start, end = _bin_span(payload, o[1], o[2], "numpy scalar")
    if end - start != dtype.itemsize:
        raise MessageDecodeError(
            f"numpy scalar payload holds {end - start} bytes; dtype {dtype} needs {dtype.itemsize}"
        )
    return np.frombuffer(payload, dtype=dtype, count=1, offset=start).copy()[0]


_FIXEXT_SIZES = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def ext_span(buf: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """``(code, start, stop)`` of the extension object at ``buf[pos]``, or ``None``."""
    b = buf[pos]
    if b in _FIXEXT_SIZES:
        n, start = _FIXEXT_SIZES[b], pos + 2
    elif b in _EXT:
        k = _EXT[b]
        n, start = int.from_bytes(buf[pos + 1 : pos + 1 + k], "big"), pos + 2 + k
    else:
        return None
    if start + n > end:
        return None
    return buf[start - 1], start, start + n
