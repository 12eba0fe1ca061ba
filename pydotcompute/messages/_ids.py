"""Message ids: fast uuid4 generation and lazily materialized id fields.

A message's ``message_id`` is generated only when somebody reads it (or when the message is
serialized), and ids decoded from bytes stay as their 16 raw bytes until read. Both save the
cost of building a :class:`uuid.UUID` on paths that never look at the id: constructing a
message and passing it through a mailbox, or decoding it and handling its payload. Once an id
is materialized it never changes, so laziness is invisible to users.
"""

from __future__ import annotations

import os
import random
from typing import Any
from uuid import UUID, SafeUUID

_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))
_getrandbits = _rng.getrandbits

_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)

_new = object.__new__
_set_int = UUID.__dict__["int"].__set__
_set_safe = UUID.__dict__["is_safe"].__set__
_UNKNOWN = SafeUUID.unknown
_from_bytes = int.from_bytes


def random_uuid_int() -> int:
    """Return the integer of a random version-4 UUID."""
    return (_getrandbits(128) & _VERSION_MASK) | _VERSION_BITS


def uuid_from_int(value: int) -> UUID:
    """Build a :class:`uuid.UUID` from its integer without re-validating it."""
    u = _new(UUID)
    _set_int(u, value)
    _set_safe(u, _UNKNOWN)
    return u


def uuid_from_bytes(raw: bytes) -> UUID:
    """Build a :class:`uuid.UUID` from exactly 16 big-endian bytes."""
    u = _new(UUID)
    _set_int(u, _from_bytes(raw))
    _set_safe(u, _UNKNOWN)
    return u


def new_id_bytes() -> bytes:
    """Return the 16 bytes of a fresh random version-4 UUID."""
    return random_uuid_int().to_bytes(16)


class IdCoercionError(Exception):
    """Internal: a value given for an id field is not a UUID."""

    def __init__(self, value: Any, expected: str) -> None:
        super().__init__(value, expected)
        self.value = value
        self.expected = expected


def coerce_uuid(value: Any) -> UUID | bytes:
    """Accept a UUID, its canonical string, or its 16 raw bytes."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            raise IdCoercionError(value, "UUID") from None
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 16:
        return bytes(value)
    raise IdCoercionError(value, "UUID")


def _checked_uuid(obj: Any, field: str, value: Any) -> UUID | bytes:
    try:
        return coerce_uuid(value)
    except IdCoercionError:
        from ..errors import MessageValidationError

        expected = "UUID" if field == "message_id" else "UUID | None"
        raise MessageValidationError(type(obj).__name__, field, value, expected) from None


class _Auto:
    """Default of ``message_id``: a fresh random id, generated when first read."""

    def __repr__(self) -> str:
        return "<auto uuid4>"


AUTO_ID = _Auto()


class MessageIdField:
    """Data descriptor behind ``message_id``.

    The instance dict holds ``None`` (not generated yet), ``bytes`` (decoded, not yet
    materialized) or the :class:`uuid.UUID` itself.
    """

    __slots__ = ("owner_name",)

    def __init__(self) -> None:
        self.owner_name = "message"

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner_name = owner.__name__

    def __repr__(self) -> str:
        return "<auto uuid4>"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        d = obj.__dict__
        v = d.get("message_id")
        if type(v) is UUID:
            return v
        v = uuid_from_int(random_uuid_int()) if v is None else uuid_from_bytes(v)
        d["message_id"] = v
        return v

    def __set__(self, obj: Any, value: Any) -> None:
        if value is AUTO_ID or type(value) is MessageIdField:
            obj.__dict__["message_id"] = None
            return
        obj.__dict__["message_id"] = _checked_uuid(obj, "message_id", value)


class CorrelationIdField:
    """Data descriptor behind ``correlation_id``.

    The instance dict holds ``None``, ``bytes`` (decoded), a :class:`uuid.UUID`, or, when the
    runtime stamped a reply, the request message itself; the request's id is read only when
    somebody reads the correlation id.
    """

    __slots__ = ()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None
        d = obj.__dict__
        v = d.get("correlation_id")
        if v is None or type(v) is UUID:
            return v
        v = uuid_from_bytes(v) if type(v) is bytes else v.message_id
        d["correlation_id"] = v
        return v

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["correlation_id"] = (
            None if value is None else _checked_uuid(obj, "correlation_id", value)
        )


def id_bytes(d: dict[str, Any]) -> bytes:
    """Return the 16 bytes of the ``message_id`` held in a message's instance dict."""
    v = d.get("message_id")
    if type(v) is bytes:
        return v
    if v is None:
        raw = ((_getrandbits(128) & _VERSION_MASK) | _VERSION_BITS).to_bytes(16)  # new_id_bytes
        d["message_id"] = raw
        return raw
    raw = v.bytes
    return raw


def correlation_bytes(d: dict[str, Any]) -> bytes | None:
    """Return the 16 bytes of a message's ``correlation_id``, or ``None``."""
    v = d.get("correlation_id")
    if v is None or type(v) is bytes:
        return v
    if type(v) is not UUID:
        v = v.message_id
        d["correlation_id"] = v
    return v.bytes
