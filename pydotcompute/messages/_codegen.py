"""Generate a message class's validator, encoder and decoder as straight-line Python.

One function per class, with each field's check inlined (``type(v) is float`` and friends on
the fast path, the field's adapter only when a value needs coercing), is what keeps building,
packing and unpacking messages within a microsecond or two.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import msgpack

from ..errors import MessageDecodeError, MessageEncodeError, MessageValidationError
from . import _codec
from ._ids import correlation_bytes, id_bytes
from ._types import (
    Adapter,
    BoolAdapter,
    BytesAdapter,
    FloatAdapter,
    IntAdapter,
    Invalid,
    StrAdapter,
)

if TYPE_CHECKING:
    from ._decorator import MessageInfo

__all__ = ["STANDARD_FIELDS", "generate"]

STANDARD_FIELDS = ("message_id", "priority", "correlation_id")
_FAST_TYPES = {int: "int", float: "float", str: "str", bool: "bool", bytes: "bytes"}
_NATIVE = {
    IntAdapter: int,
    FloatAdapter: float,
    StrAdapter: str,
    BoolAdapter: bool,
    BytesAdapter: bytes,
}


def generate(
    cls: type, info: MessageInfo, fields: tuple[dataclasses.Field[Any], ...], user_post: Any
) -> None:
    """Generate the validator, encoder and decoder of a message class."""
    name = cls.__name__
    ns: dict[str, Any] = {
        "_Invalid": Invalid,
        "_MVE": MessageValidationError,
        "_MDE": MessageDecodeError,
        "_MEE": MessageEncodeError,
        "_NAME": name,
        "_TAG": info.tag,
        "_CLS": cls,
        "_new": object.__new__,
        "_idb": id_bytes,
        "_cb": correlation_bytes,
        "_user": user_post,
        "_packb": _codec._packb,
        "_unpackb": msgpack.unpackb,
        "_ext_hook": _codec._ext_hook,
        "_wrap_unpack": _wrap_unpack,
        "_wrap_pack": _wrap_pack,
        "_bytes": bytes,
        "_list": list,
        "_len": len,
        "_int": int,
        "_float": float,
        "_str": str,
        "_bool": bool,
        "_shape": f"{name} as [tag, {', '.join(info.names)}]",
    }
    validate: list[str] = ["def __post_init__(self, *initvars):", "    d = self.__dict__"]
    late: list[str] = []
    enc_items: list[str] = ["_TAG"]
    dec: list[str] = []
    for i, f in enumerate(fields):
        adapter = info.adapters[f.name]
        ns[f"_c{i}"] = adapter.coerce
        ns[f"_e{i}"] = adapter.encode
        ns[f"_d{i}"] = adapter.decode
        key = repr(f.name)
        fast = _FAST_TYPES.get(_native(adapter))
        # --- validation at construction
        if f.name in ("message_id", "correlation_id"):
            pass  # validated by their descriptors on assignment
        else:
            if f.name == "priority":
                check = "if type(v) is not _int or v < 0 or v > 255:"
            elif fast:
                check = f"if type(v) is not _{fast}:"
            else:
                check = "if True:"
            block = [
                f"    v = d.get({key}, d)",
                "    if v is not d:",
                f"        {check}",
                "            try:",
                f"                d[{key}] = _c{i}(v)",
                "            except _Invalid as e:",
                f"                raise _MVE(_NAME, {key} + e.path, e.value, e.expected) from None",
            ]
            (validate if f.init else late).extend(block)
        # --- encoding
        if f.name == "message_id":
            enc_items.append("mid")
        elif f.name == "correlation_id":
            enc_items.append("cid")
        elif adapter.passthrough:
            enc_items.append(f"d[{key}]")
        else:
            enc_items.append(f"_e{i}(d[{key}])")
        # --- decoding
        if f.name == "message_id":
            dec += [
                f"    if type(v{i}) is not _bytes or _len(v{i}) != 16:",
                f"        raise _Invalid(v{i}, 'UUID as 16 bytes').within('.message_id')",
            ]
        elif f.name == "correlation_id":
            dec += [
                f"    if v{i} is not None and (type(v{i}) is not _bytes or _len(v{i}) != 16):",
                f"        raise _Invalid(v{i}, 'UUID as 16 bytes or nil')"
                ".within('.correlation_id')",
            ]
        else:
            check = (
                f"type(v{i}) is not _int or v{i} < 0 or v{i} > 255"
                if f.name == "priority"
                else f"type(v{i}) is not _{fast}"
                if fast
                else "True"
            )
            dec += [
                f"    if {check}:",
                "        try:",
                f"            v{i} = _d{i}(v{i})",
                "        except _Invalid as e:",
                f"            raise e.within('.' + {key}) from None",
            ]
    if user_post is not None:
        validate.append("    _user(self, *initvars)")
    validate += late
    n = len(fields)
    unpack = ", ".join(f"v{i}" for i in range(n))
    dict_items = ", ".join(f"{f.name!r}: v{i}" for i, f in enumerate(fields))
    decode_body = [
        "    if type(o) is not _list:",
        "        raise _Invalid(o, _shape)",
        "    try:",
        f"        tag, {unpack}{',' if n == 1 else ''} = o",
        "    except ValueError:",  # wrong length: say whether it is even this type
        "        if o and o[0] != _TAG:",
        "            raise _Invalid(o[0], repr(_TAG)).within('<tag>') from None",
        "        raise _Invalid(o, _shape) from None",
        "    if tag != _TAG:",
        "        raise _Invalid(tag, repr(_TAG)).within('<tag>')",
        *dec,
        "    s = _new(_CLS)",
        f"    s.__dict__ = {{{dict_items}}}",
        "    return s",
    ]
    # Ids already held as raw bytes (decoded, or packed before) are written as they are.
    ids = [
        "    mid = d['message_id']",
        "    if type(mid) is not _bytes:",
        "        mid = _idb(d)",
        "    cid = d['correlation_id']",
        "    if cid is not None and type(cid) is not _bytes:",
        "        cid = _cb(d)",
    ]
    items = ", ".join(enc_items)
    encode_list = ["def encode_list(self):", "    d = self.__dict__", *ids, f"    return [{items}]"]
    to_bytes = [
        "def to_bytes(self):",
        "    d = self.__dict__",
        *ids,
        "    try:",
        f"        return _packb([{items}])",
        "    except _MEE:",
        "        raise",
        "    except (TypeError, ValueError, OverflowError) as exc:",
        "        raise _wrap_pack(_NAME, exc) from exc",
    ]
    decode_message = [
        "def decode_message(o):",
        "    try:",
        "        return decode_list(o)",
        "    except _Invalid as e:",
        "        raise _wrap_unpack(_NAME, e) from None",
    ]
    # Messages of plain fields never hold extension types or non-str map keys when valid, so
    # msgpack's defaults decode them (and the field checks refuse anything else).
    plain = all(_native(a) is not None or f.name in STANDARD_FIELDS
                for f, a in zip(fields, info.adapters.values()))  # fmt: skip
    unpack_call = (
        "_unpackb(data)" if plain else ("_unpackb(data, ext_hook=_ext_hook, strict_map_key=False)")
    )
    # from_bytes repeats the decode body inline: one call less on the hot path.
    from_bytes = [
        "def from_bytes(data):",
        "    try:",
        f"        o = {unpack_call}",
        "    except _MDE:",
        "        raise",
        "    except Exception as exc:  # msgpack raises many types for malformed input",
        "        raise _wrap_unpack(_NAME, exc, data) from exc",
        "    try:",
        *("    " + line for line in decode_body),
        "    except _Invalid as e:",
        "        raise _wrap_unpack(_NAME, e) from None",
    ]
    parts = [validate, encode_list, to_bytes, ["def decode_list(o):", *decode_body]]
    src = "\n\n".join("\n".join(p) for p in [*parts, decode_message, from_bytes])
    exec(compile(src, f"<pydotcompute message {name}>", "exec"), ns)
    post_init = ns["__post_init__"]
    post_init.__qualname__ = f"{cls.__qualname__}.__post_init__"
    cls.__post_init__ = post_init  # type: ignore[attr-defined]
    info.encode_list = ns["encode_list"]
    info.decode_list = ns["decode_message"]
    to_bytes = ns["to_bytes"]
    to_bytes.__doc__ = "Serialize this message to compact msgpack bytes."
    to_bytes.__qualname__ = f"{cls.__qualname__}.to_bytes"
    cls.to_bytes = to_bytes  # type: ignore[attr-defined]
    from_bytes = ns["from_bytes"]
    from_bytes.__doc__ = (
        f"Decode a {name} from bytes made by ``to_bytes()``; bad bytes raise MessageDecodeError."
    )
    from_bytes.__qualname__ = f"{cls.__qualname__}.from_bytes"
    cls.from_bytes = staticmethod(from_bytes)  # type: ignore[attr-defined]


def _native(adapter: Adapter) -> Any:
    """The Python type an adapter stores unchanged (checked inline), or ``None``."""
    return _NATIVE.get(type(adapter))


def _wrap_pack(name: str, exc: Exception) -> Exception:
    return MessageEncodeError(f"cannot serialize {name}: {type(exc).__name__}: {exc}")


def _wrap_unpack(name: str, exc: Exception, data: Any = None) -> Exception:
    if isinstance(exc, Invalid):
        if exc.path == "<tag>":
            return MessageDecodeError(
                f"cannot decode {name}: the bytes hold {_codec.describe_tag(exc.value)}, not a "
                f"{name}; decode them with that type's from_bytes() or decode_message()"
            )
        where = exc.path.lstrip(".") or "the encoded array"
        return MessageDecodeError(
            f"cannot decode {name}: {where}: expected {exc.expected}, got "
            f"{type(exc.value).__name__} {exc.value!r:.80}; the bytes do not match the fields "
            f"of {name}"
        )
    size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else None
    given = f"{size} bytes" if size is not None else f"a {type(data).__name__}"
    return MessageDecodeError(
        f"cannot decode {name} from {given}: {type(exc).__name__}: {exc}; pass the exact "
        "bytes produced by to_bytes()"
    )
