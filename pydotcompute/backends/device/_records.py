"""Pack messages into ring slots and read replies out of them, one record or many.

Single messages take a ``struct`` fast path (one ``pack_into`` / ``unpack_from``, no numpy
call) when every field is a scalar or a UUID, through a pack and an unpack function generated
for the layout (straight-line code: no loop over fields on the round-trip path); other
layouts (fixed arrays, nested messages) go through the layout's numpy conversion. Batches
always use numpy: one copy per batch.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ...messages._ids import correlation_bytes, id_bytes, uuid_from_bytes
from ...messages._layout import FixedLayout

__all__ = ["RecordCodec"]

_ZERO = bytes(16)
_FORMATS = {
    "b1": "?",
    "i1": "b",
    "u1": "B",
    "i2": "h",
    "u2": "H",
    "i4": "i",
    "u4": "I",
    "i8": "q",
    "u8": "Q",
    "f4": "f",
    "f8": "d",
}


class RecordCodec:
    """Converts between messages and records of one fixed layout."""

    def __init__(self, layout: FixedLayout) -> None:
        self.layout = layout
        self.dtype = layout.dtype
        self.itemsize = layout.itemsize
        self.message_type = layout.message_type
        self._struct: struct.Struct | None = None
        self._readers: list[tuple[str, str, Any]] = []
        fmt = "<"
        pos = 0
        for col in layout._columns:
            offset = layout.dtype.fields[col.name][1]  # type: ignore[index]
            dt = layout.dtype.fields[col.name][0]  # type: ignore[index]
            if col.kind in ("array", "nested"):
                return  # no struct fast path; numpy handles these layouts
            fmt += "x" * (offset - pos)
            if col.kind in ("uuid", "optional_uuid"):
                fmt += "16s"
                reader = "id" if col.name in ("message_id", "correlation_id") else col.kind
                self._readers.append((col.name, reader, None))
            else:
                fmt += _FORMATS[f"{dt.kind}{dt.itemsize}"]
                scalar = None if col.python_scalar else dt.type
                self._readers.append((col.name, "plain", scalar))
            pos = offset + dt.itemsize
        fmt += "x" * (layout.itemsize - pos)
        self._struct = struct.Struct(fmt)
        assert self._struct.size == layout.itemsize
        self._generate(self._struct)

    def _generate(self, s: struct.Struct) -> None:
        """Compile straight-line ``pack_into`` / ``unpack_from`` for this layout."""
        env: dict[str, Any] = {
            "_pack": s.pack_into,
            "_unpack": s.unpack_from,
            "_new": object.__new__,
            "_T": self.message_type,
            "_Z": _ZERO,
            "_id": id_bytes,
            "_corr": correlation_bytes,
            "_uuid": uuid_from_bytes,
        }
        packed, names, values = [], [], []
        for i, (name, reader, scalar) in enumerate(self._readers):
            key = repr(name)
            v = f"v{i}"
            names.append(v)
            if reader == "plain":
                packed.append(f"d[{key}]")
                if scalar is None:
                    values.append(f"{key}: {v}")
                else:
                    env[f"_s{i}"] = scalar
                    values.append(f"{key}: _s{i}({v})")
            elif name == "message_id":
                packed.append("_id(d)")
                values.append(f"{key}: None if {v} == _Z else {v}")
            elif name == "correlation_id":
                packed.append("_corr(d) or _Z")
                values.append(f"{key}: None if {v} == _Z else {v}")
            else:
                packed.append(f"(_Z if d[{key}] is None else d[{key}].bytes)")
                if reader == "optional_uuid":
                    values.append(f"{key}: None if {v} == _Z else _uuid({v})")
                else:
                    values.append(f"{key}: _uuid({v})")
        code = (
            "def pack_into(buf, offset, msg):\n"
            "    d = msg.__dict__\n"
            f"    _pack(buf, offset, {', '.join(packed)})\n"
            "def unpack_from(buf, offset):\n"
            f"    {', '.join(names)}, = _unpack(buf, offset)\n"
            "    obj = _new(_T)\n"
            f"    obj.__dict__ = {{{', '.join(values)}}}\n"
            "    return obj\n"
        )
        exec(compile(code, f"<records of {self.message_type.__name__}>", "exec"), env)
        self.pack_into = env["pack_into"]  # type: ignore[method-assign]
        self.unpack_from = env["unpack_from"]  # type: ignore[method-assign]

    def pack_into(self, buf: Any, offset: int, msg: Any) -> None:
        """Write ``msg`` as one record at byte ``offset`` of ``buf``."""
        s = self._struct
        if s is None:
            np.frombuffer(buf, np.uint8, self.itemsize, offset)[:] = np.frombuffer(
                self.layout.to_array([msg]).tobytes(), np.uint8
            )
            return
        d = msg.__dict__
        values = []
        for name, reader, _ in self._readers:
            if reader == "plain":
                values.append(d[name])
            elif name == "message_id":
                values.append(id_bytes(d))
            elif name == "correlation_id":
                values.append(correlation_bytes(d) or _ZERO)
            else:
                v = d[name]
                values.append(_ZERO if v is None else v.bytes)
        s.pack_into(buf, offset, *values)

    def unpack_from(self, buf: Any, offset: int) -> Any:
        """Build the message held by the record at byte ``offset`` of ``buf``."""
        s = self._struct
        if s is None:
            record = np.frombuffer(buf, self.dtype, 1, offset)
            return self.layout.from_array(record)[0]
        d: dict[str, Any] = {}
        for (name, reader, scalar), v in zip(self._readers, s.unpack_from(buf, offset)):
            if reader == "plain":
                d[name] = v if scalar is None else scalar(v)
            elif reader == "id":
                d[name] = None if v == _ZERO else v
            elif reader == "optional_uuid" and v == _ZERO:
                d[name] = None
            else:
                d[name] = uuid_from_bytes(v)
        obj: Any = object.__new__(self.message_type)
        obj.__dict__ = d
        return obj

    def to_array(self, msgs: list[Any]) -> np.ndarray:
        """Records of ``msgs`` (one numpy conversion)."""
        return self.layout.to_array(msgs)

    def from_array(self, records: np.ndarray) -> list[Any]:
        """Messages of ``records``."""
        return self.layout.from_array(records)
