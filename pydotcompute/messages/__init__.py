"""Typed messages: ``@message``, fixed layouts and the msgpack codec."""

from __future__ import annotations

from typing import Any

from ._arrays import MAX_DIMS, MAX_DTYPE_DEPTH, MAX_DTYPE_ITEMS, MAX_DTYPE_STR
from ._codec import MAX_CONTAINER_DEPTH, MAX_MESSAGE_DEPTH, WIRE_VERSION, decode_any
from ._decorator import is_message, message
from ._layout import FixedLayout
from ._types import Array

__all__ = [
    "MAX_CONTAINER_DEPTH",
    "MAX_DIMS",
    "MAX_DTYPE_DEPTH",
    "MAX_DTYPE_ITEMS",
    "MAX_DTYPE_STR",
    "MAX_MESSAGE_DEPTH",
    "WIRE_VERSION",
    "Array",
    "FixedLayout",
    "decode_message",
    "fixed_layout",
    "is_message",
    "message",
]


def fixed_layout(message_type: type) -> FixedLayout | None:
    """Return the fixed layout (numpy dtype, C struct) of a message type, or ``None``.

    A message has a fixed layout when every field has a fixed size: numpy bool, int, uint
    and float scalar types, ``bool``, ``int`` (int64), ``float`` (float64), ``UUID``,
    ``Array[dtype, shape]`` and nested fixed-layout messages.

    Raises
    ------
    MessageDefinitionError
        If ``message_type`` is not a ``@message`` class.
    """
    return _info(message_type).layout


def decode_message(data: bytes | bytearray | memoryview, *, copy: bool = False) -> Any:
    """Decode bytes made by any message's ``to_bytes()``, finding its class by its type tag.

    The bytes are treated as untrusted: they are checked exactly as ``Type.from_bytes`` checks
    them (field types, the class's own ``__post_init__``, the decoding limits), and every
    failure raises ``MessageDecodeError``.

    Parameters
    ----------
    data:
        The bytes.
    copy:
        ``False`` (default): numpy arrays are read-only views of the decoded bytes (no copy of
        their data). ``True``: arrays are writable copies.

    Raises
    ------
    MessageDecodeError
        If the bytes are malformed, exceed a decoding limit, do not match the class their tag
        names, or their tag names no class defined in this process.
    """
    return decode_any(data, copy=copy)


def _info(message_type: Any) -> Any:
    from ..errors import MessageDefinitionError

    info = (
        getattr(message_type, "__pdc_message__", None) if isinstance(message_type, type) else None
    )
    if info is None:
        raise MessageDefinitionError(
            f"{message_type!r} is not a message type; decorate the class with @message"
        )
    return info
