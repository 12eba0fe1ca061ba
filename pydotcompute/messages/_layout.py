"""Fixed layouts: a numpy structured dtype and a matching C struct for a message type.

A message whose fields all have a fixed size (``bool``, ``int`` as int64, ``float`` as
float64, numpy bool/int/uint/float scalar types, ``Array[dtype, shape]``, UUIDs and nested
fixed-layout messages) gets a :class:`FixedLayout`. Fields keep their declaration order and
C alignment (numpy ``align=True``), so the struct generated for device kernels has exactly
the dtype's offsets; ``static_assert`` lines in the generated C check it at compile time.
UUIDs are 16 raw bytes (``pdc_uuid``), the all-zero id standing for "none"; ``priority`` is
a ``uint8``.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LayoutError
from ._ids import correlation_bytes, id_bytes, uuid_from_bytes
from ._types import NumpyScalarAdapter

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ._decorator import MessageInfo

__all__ = ["FixedLayout"]

_CPP_KEYWORDS = frozenset(
    [
        "alignas",
        "alignof",
        "and",
        "asm",
        "auto",
        "bool",
        "break",
        "case",
        "catch",
        "char",
        "class",
        "const",
        "constexpr",
        "const_cast",
        "continue",
        "decltype",
        "default",
        "delete",
        "do",
        "double",
        "dynamic_cast",
        "else",
        "enum",
        "explicit",
        "export",
        "extern",
        "false",
        "float",
        "for",
        "friend",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "mutable",
        "namespace",
        "new",
        "noexcept",
        "not",
        "nullptr",
        "operator",
        "or",
        "private",
        "protected",
        "public",
        "register",
        "reinterpret_cast",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "static_assert",
        "static_cast",
        "struct",
        "switch",
        "template",
        "this",
        "throw",
        "true",
        "try",
        "typedef",
        "typeid",
        "typename",
        "union",
        "unsigned",
        "using",
        "virtual",
        "void",
        "volatile",
        "wchar_t",
        "while",
        "msg",
        "out",
        "state",
    ]
)

_ZERO_ID = bytes(16)

PDC_UUID_C = """struct pdc_uuid {
    unsigned char bytes[16];  // big-endian UUID; all zero means "none"
};"""


@dataclass(frozen=True, eq=False)
class _Column:
    name: str
    kind: str  # "plain", "uuid", "optional_uuid", "array", "nested"
    c_type: str
    shape: tuple[int, ...]
    nested: Any
    python_scalar: bool = False  # bool/int/float fields: read back as Python scalars


class FixedLayout:
    """The fixed-size record layout of a message type.

    Attributes
    ----------
    message_type:
        The message class.
    dtype:
        Aligned numpy structured dtype, one field per message field, in declaration order.
    itemsize:
        Bytes per record (``dtype.itemsize``).
    c_name:
        Name of the generated C struct.
    """

    def __init__(self, info: MessageInfo, columns: list[_Column], dtype: np.dtype[Any]) -> None:
        self.message_type = info.cls
        self._info = info
        self._columns = columns
        self.dtype = dtype
        self.itemsize = dtype.itemsize
        self.c_name = info.cls.__name__

    def __repr__(self) -> str:
        return f"FixedLayout({self.c_name}, itemsize={self.itemsize}, dtype={self.dtype})"

    @property
    def nested_types(self) -> list[type]:
        """Nested message types this layout embeds, innermost first, without duplicates."""
        seen: list[type] = []
        for col in self._columns:
            if col.kind == "nested":
                for t in [*col.nested.__pdc_message__.layout.nested_types, col.nested]:
                    if t not in seen:
                        seen.append(t)
        return seen

    def c_struct(self) -> str:
        """Return the C/C++ definition of this struct alone (nested structs not included)."""
        lines = [f"struct {self.c_name} {{"]
        for col in self._columns:
            dims = "".join(f"[{n}]" for n in col.shape)
            offset = self.dtype.fields[col.name][1]  # type: ignore[index]
            lines.append(f"    {col.c_type} {col.name}{dims};  // offset {offset}")
        lines.append("};")
        lines.append(
            f"static_assert(sizeof({self.c_name}) == {self.itemsize}, "
            f'"size of {self.c_name} must match its numpy dtype");'
        )
        for col in self._columns:
            offset = self.dtype.fields[col.name][1]  # type: ignore[index]
            lines.append(
                f"static_assert(offsetof({self.c_name}, {col.name}) == {offset}, "
                f'"offset of {self.c_name}::{col.name}");'
            )
        return "\n".join(lines)

    def c_source(self) -> str:
        """Return C/C++ definitions of ``pdc_uuid``, nested structs and this struct."""
        parts = ["#ifndef PDC_UUID_DEFINED", "#define PDC_UUID_DEFINED", PDC_UUID_C, "#endif"]
        for t in self.nested_types:
            nested = _info(t).layout
            assert nested is not None  # a nested field has a fixed size only if its type does
            parts.append(nested.c_struct())
        parts.append(self.c_struct())
        return "\n".join(parts)

    def to_array(self, messages: Sequence[Any] | Iterable[Any]) -> np.ndarray:
        """Pack messages into a structured array of this layout, one record each."""
        msgs = list(messages)
        cls = self.message_type
        for i, m in enumerate(msgs):
            if type(m) is not cls:
                raise LayoutError(
                    f"to_array: item {i} is a {type(m).__name__}, not a {cls.__name__}; "
                    f"pass only {cls.__name__} messages"
                )
        out = np.zeros(len(msgs), dtype=self.dtype)
        self._fill(out, [m.__dict__ for m in msgs])
        return out

    def _fill(self, out: np.ndarray, dicts: list[dict[str, Any]]) -> None:
        for col in self._columns:
            name = col.name
            if col.kind in ("uuid", "optional_uuid"):
                if name == "message_id":
                    raws = [id_bytes(d) for d in dicts]
                elif name == "correlation_id":
                    raws = [correlation_bytes(d) or _ZERO_ID for d in dicts]
                else:
                    raws = [_ZERO_ID if d[name] is None else d[name].bytes for d in dicts]
                out[name] = np.frombuffer(b"".join(raws), dtype="V16")
            elif col.kind == "nested":
                sub = col.nested.__pdc_message__.layout
                sub._fill(out[name], [d[name].__dict__ for d in dicts])
            else:
                try:
                    out[name] = [d[name] for d in dicts]
                except (OverflowError, ValueError) as exc:
                    raise LayoutError(
                        f"{self.c_name}.{name}: a value does not fit {out.dtype[name]}: {exc}"
                    ) from exc

    def from_array(self, records: np.ndarray) -> list[Any]:
        """Build messages from a structured array of this layout (or a compatible one)."""
        arr = np.asarray(records)
        if arr.dtype != self.dtype:
            if arr.dtype.names != self.dtype.names:
                raise LayoutError(
                    f"from_array: dtype {arr.dtype} does not have the fields of "
                    f"{self.c_name} ({self.dtype.names}); build it with layout.dtype"
                )
            arr = arr.astype(self.dtype)
        return [self._make(d) for d in self._dicts(arr.reshape(-1))]

    def _dicts(self, arr: np.ndarray) -> list[dict[str, Any]]:
        n = len(arr)
        dicts: list[dict[str, Any]] = [{} for _ in range(n)]
        for col in self._columns:
            name = col.name
            column = arr[name]
            if col.kind in ("uuid", "optional_uuid"):
                raw = column.tobytes()
                chunks = [raw[i * 16 : i * 16 + 16] for i in range(n)]
                if name in ("message_id", "correlation_id"):
                    # Kept as raw bytes; the id fields materialize them when read.
                    values: list[Any] = [None if c == _ZERO_ID else c for c in chunks]
                else:
                    values = [
                        None
                        if (c == _ZERO_ID and col.kind == "optional_uuid")
                        else uuid_from_bytes(c)
                        for c in chunks
                    ]
            elif col.kind == "nested":
                sub = col.nested.__pdc_message__.layout
                values = [sub._make(d) for d in sub._dicts(column)]
            elif col.kind == "array":
                block = column.copy()
                values = list(block)
            elif col.python_scalar:
                values = column.tolist()
            else:
                values = list(column)
            for d, v in zip(dicts, values):
                d[name] = v
        return dicts

    def _make(self, d: dict[str, Any]) -> Any:
        obj: Any = object.__new__(self.message_type)
        obj.__dict__ = d
        return obj


def _info(cls: Any) -> MessageInfo:
    return cls.__pdc_message__


def build_layout(info: MessageInfo) -> FixedLayout | None:
    """Return the fixed layout of a message type, or ``None`` if a field has no fixed size."""
    columns: list[_Column] = []
    fields: list[tuple[str, Any]] = []
    for name, adapter in info.adapters.items():
        fixed = adapter.fixed
        if fixed is None or keyword.iskeyword(name) or name in _CPP_KEYWORDS:
            return None
        if fixed.nested is not None:
            kind = "nested"
        elif fixed.c_type == "pdc_uuid":
            kind = "optional_uuid" if adapter.expected.endswith("| None") else "uuid"
        else:
            kind = "array" if fixed.shape else "plain"
        python_scalar = not isinstance(adapter, NumpyScalarAdapter)
        columns.append(_Column(name, kind, fixed.c_type, fixed.shape, fixed.nested, python_scalar))
        fields.append((name, (fixed.dtype, fixed.shape) if fixed.shape else fixed.dtype))
    dtype = np.dtype(fields, align=True)
    return FixedLayout(info, columns, dtype)


def layout_problem(info: MessageInfo) -> str | None:
    """Explain why a message type has no fixed layout (``None`` if it has one)."""
    for name, adapter in info.adapters.items():
        if keyword.iskeyword(name) or name in _CPP_KEYWORDS:
            return f"field {name!r} is a C++ keyword or a reserved handler name; rename it"
        if adapter.fixed is None:
            return (
                f"field {name!r} of type {adapter.expected} has no fixed size; use a numpy "
                "scalar type (np.float32, np.int64, ...), bool, int, float, UUID, a nested "
                "fixed-layout message, or Array[np.float32, N] for arrays"
            )
    return None
