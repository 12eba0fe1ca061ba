"""Generate a message class's constructor, validator, encoder and decoder as straight-line Python.

One function per class and purpose, with each field's check inlined (``type(v) is float`` and
friends on the fast path, the field's adapter only when a value needs coercing) and every
decision that depends only on the class taken once here, is what keeps building, packing and
unpacking messages within a small factor of a plain dataclass and of msgpack itself.

Decoding runs the same checks as constructing, then the class's own ``__post_init__`` (with
the defaults of its ``InitVar`` fields), then the checks of ``init=False`` fields, as the
constructor does.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from ..errors import MessageDecodeError, MessageEncodeError, MessageValidationError, _short_repr
from . import _arrays, _codec
from ._construct import FACTORY, Source, constructor, initvar_defaults, late_block, validator
from ._ids import AUTO_ID, MessageIdField, _checked_uuid, correlation_bytes, id_bytes
from ._types import (
    Adapter,
    BoolAdapter,
    BytesAdapter,
    FixedArrayAdapter,
    FloatAdapter,
    IntAdapter,
    Invalid,
    NDArrayAdapter,
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
    cls: type,
    info: MessageInfo,
    fields: tuple[dataclasses.Field[Any], ...],
    user_post: Any,
    init_signature: inspect.Signature | None,
    frozen: bool,
) -> None:
    """Generate the constructor (unless the class defines its own), validator and codec."""
    name = cls.__name__
    ns: dict[str, Any] = {
        "_pdc_Invalid": Invalid,
        "_pdc_MVE": MessageValidationError,
        "_pdc_MDE": MessageDecodeError,
        "_pdc_MEE": MessageEncodeError,
        "_pdc_NAME": name,
        "_pdc_TAG": info.tag,
        "_pdc_TAGT": type(info.tag),
        "_pdc_CLS": cls,
        "_pdc_new": object.__new__,
        "_pdc_osa": object.__setattr__,
        "_pdc_idb": id_bytes,
        "_pdc_cb": correlation_bytes,
        "_pdc_cuuid": _checked_uuid,
        "_pdc_AUTO": AUTO_ID,
        "_pdc_MIF": MessageIdField,
        "_pdc_FACTORY": FACTORY,
        "_pdc_user": user_post,
        "_pdc_plain": _arrays.plain_pack,
        "_pdc_nested": _codec.pack_nested,
        "_pdc_Packer": msgpack.Packer,
        "_pdc_default": _codec.default,
        "_pdc_pack_array": _arrays.pack_array,
        "_pdc_ndarray": np.ndarray,
        "_pdc_join": b"".join,
        "_pdc_unpackb": msgpack.unpackb,
        "_pdc_VIEW": _codec.VIEW_HOOK,
        "_pdc_COPY": _codec.COPY_HOOK,
        "_pdc_failure": _codec.decode_failure,
        "_pdc_wrap_unpack": _wrap_unpack,
        "_pdc_wrap_pack": _wrap_pack,
        "_pdc_refused": _refused,
        "_pdc_type": type,  # builtins by other names: a field may be called "type"
        "_pdc_bytes": bytes,
        "_pdc_list": list,
        "_pdc_len": len,
        "_pdc_int": int,
        "_pdc_float": float,
        "_pdc_str": str,
        "_pdc_bool": bool,
        "_pdc_shape": f"{name} as [tag, {', '.join(info.names)}]",
    }
    src = Source(ns)
    checks = {f.name: _check(f.name, info.adapters[f.name], i) for i, f in enumerate(fields)}
    for i, f in enumerate(fields):
        adapter = info.adapters[f.name]
        ns[f"_pdc_c{i}"] = adapter.coerce
        ns[f"_pdc_e{i}"] = adapter.encode
        ns[f"_pdc_d{i}"] = adapter.decode
    late = [f for f in fields if not f.init and f.name not in ("message_id", "correlation_id")]
    parts = [
        validator(fields, checks, user_post, late),
        *_encoders(fields, info, init_signature is not None),
        _decoder(fields, info, checks, user_post, late, init_signature, frozen, src),
    ]
    if init_signature is not None:
        parts.append(constructor(fields, checks, user_post, late, init_signature, frozen, src))
    code = "\n\n".join("\n".join(p) for p in parts)
    exec(compile(code, f"<pydotcompute message {name}>", "exec"), ns)
    _install(cls, info, ns, init_signature)


def _install(
    cls: type, info: MessageInfo, ns: dict[str, Any], init_signature: inspect.Signature | None
) -> None:
    name = cls.__name__
    post_init = ns["__post_init__"]
    post_init.__qualname__ = f"{cls.__qualname__}.__post_init__"
    cls.__post_init__ = post_init  # type: ignore[attr-defined]
    if init_signature is not None:
        init = ns["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        init.__annotations__ = dict(getattr(cls.__dict__["__init__"], "__annotations__", {}))
        init.__doc__ = f"Build a {name}, validating and coercing every field."
        cls.__init__ = init  # type: ignore[misc]
    info.encode_list = ns["encode_list"]
    info.decode_list = ns["decode_message"]
    to_bytes = ns["to_bytes"]
    to_bytes.__doc__ = "Serialize this message to compact msgpack bytes."
    to_bytes.__qualname__ = f"{cls.__qualname__}.to_bytes"
    cls.to_bytes = to_bytes  # type: ignore[attr-defined]
    from_bytes = ns["from_bytes"]
    from_bytes.__doc__ = (
        f"Decode a {name} from bytes made by ``to_bytes()``; bad bytes raise "
        "MessageDecodeError.\n\nArrays are read-only views of the decoded bytes; pass "
        "``copy=True`` for writable copies."
    )
    from_bytes.__qualname__ = f"{cls.__qualname__}.from_bytes"
    cls.from_bytes = staticmethod(from_bytes)  # type: ignore[attr-defined]
    info.from_bytes_msgpack = ns.get("from_bytes_msgpack", from_bytes)


def _native(adapter: Adapter) -> Any:
    """The Python type an adapter stores unchanged (checked inline), or ``None``."""
    return _NATIVE.get(type(adapter))


def _check(name: str, adapter: Adapter, i: int) -> str:
    """The condition under which value ``v`` needs the adapter (``True``: always)."""
    if name == "priority":
        return "_pdc_type({v}) is not _pdc_int or {v} < 0 or {v} > 255"
    fast = _FAST_TYPES.get(_native(adapter))
    return f"_pdc_type({{v}}) is not _pdc_{fast}" if fast else "True"


def _array_field(adapter: Adapter) -> bool:
    return isinstance(adapter, (NDArrayAdapter, FixedArrayAdapter))


def _encoders(fields: tuple[Any, ...], info: MessageInfo, generated_init: bool) -> list[list[str]]:
    """``encode_list`` (the compact list) and ``to_bytes``.

    Fields that the generated ``__init__`` always stores are read from the instance dict;
    others (a class's own ``__init__``, ``init=False`` without a default) by attribute, so a
    class default serves and a missing value is an ``AttributeError`` wrapped below.
    """
    items: list[str] = ["_pdc_TAG"]
    arrays: set[int] = set()
    for i, f in enumerate(fields):
        adapter = info.adapters[f.name]
        always = generated_init and (
            f.init or f.default is not dataclasses.MISSING
            or f.default_factory is not dataclasses.MISSING
        )  # fmt: skip
        value = f"d[{f.name!r}]" if always else f"self.{f.name}"
        if f.name == "message_id":
            items.append("mid")
        elif f.name == "correlation_id":
            items.append("cid")
        elif adapter.passthrough:
            items.append(value)
            if _array_field(adapter):
                arrays.add(len(items) - 1)
        else:
            items.append(f"_pdc_e{i}({value})")
    # Ids already held as raw bytes (decoded, or packed before) are written as they are.
    # A key may be missing: an automatic id not generated yet (once per message, the rare
    # KeyError handled: a subscript is cheaper than dict.get), or a correlation id left at
    # its default None by the constructor (usual, so tested with ``in``).
    ids = [
        "    d = self.__dict__",
        "    try:",
        "        mid = d['message_id']",
        "        if _pdc_type(mid) is not _pdc_bytes:",
        "            mid = _pdc_idb(d)",
        "    except KeyError:",
        "        mid = _pdc_idb(d)",
        "    if 'correlation_id' in d:",
        "        cid = d['correlation_id']",
        "        if cid is not None and _pdc_type(cid) is not _pdc_bytes:",
        "            cid = _pdc_cb(d)",
        "    else:",
        "        cid = None",
    ]
    listed = ", ".join(items)
    encode_list = ["def encode_list(self):", *ids, f"    return [{listed}]"]
    plain = all(
        _native(info.adapters[f.name]) is not None or f.name in STANDARD_FIELDS for f in fields
    )
    if plain:
        # Plain values never call a hook, so the shared hook-less packer serves; a value
        # assigned after construction that it cannot pack takes the general path.
        pack = [
            "    try:",
            f"        return _pdc_plain([{listed}])",
            "    except (TypeError, OverflowError, ValueError):",
            f"        return _pdc_nested([{listed}])",
        ]
    elif not arrays:
        pack = [f"    return _pdc_nested([{listed}])"]
    else:
        pack = ["    p = _pdc_Packer(default=_pdc_default, use_bin_type=True).pack"]
        pieces = [repr(_list_header(len(items)))]
        run: list[str] = []
        for k, item in enumerate(items):
            if k in arrays:
                if run:
                    pieces.append(f"p([{', '.join(run)}])[{_header_size(len(run))}:]")
                    run = []
                pieces.append(
                    f"*(_pdc_pack_array(a) if _pdc_type(a := {item}) is _pdc_ndarray else (p(a),))"
                )
            else:
                run.append(item)
        if run:
            pieces.append(f"p([{', '.join(run)}])[{_header_size(len(run))}:]")
        pack.append(f"    return _pdc_join(({', '.join(pieces)}))")
    to_bytes = [
        "def to_bytes(self):",
        *ids,
        "    try:",
        *("    " + line for line in pack),
        "    except _pdc_MEE:",
        "        raise",
        "    except (TypeError, ValueError, OverflowError, AttributeError) as exc:",
        "        raise _pdc_wrap_pack(_pdc_NAME, exc) from exc",
    ]
    return [encode_list, to_bytes]


def _list_header(n: int) -> bytes:
    return bytes([0x90 + n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


def _header_size(n: int) -> int:
    return 1 if n < 16 else 3


def _decoder(
    fields: tuple[Any, ...],
    info: MessageInfo,
    checks: dict[str, str],
    user_post: Any,
    late: list[Any],
    init_signature: inspect.Signature | None,
    frozen: bool,
    src: Source,
) -> list[str]:
    """``decode_list`` (a decoded list to a message), its wrapper, and ``from_bytes``."""
    dec: list[str] = []
    for i, f in enumerate(fields):
        if f.name == "message_id":
            dec += [
                f"    if _pdc_type(v{i}) is not _pdc_bytes or _pdc_len(v{i}) != 16:",
                f"        raise _pdc_Invalid(v{i}, 'UUID as 16 bytes').within('.message_id')",
            ]
        elif f.name == "correlation_id":
            dec += [
                f"    if v{i} is not None and (_pdc_type(v{i}) is not _pdc_bytes"
                f" or _pdc_len(v{i}) != 16):",
                f"        raise _pdc_Invalid(v{i}, 'UUID as 16 bytes or nil')"
                ".within('.correlation_id')",
            ]
        else:
            cond = checks[f.name].format(v=f"v{i}")
            dec += [
                f"    if {cond}:",
                "        try:",
                f"            v{i} = _pdc_d{i}(v{i})",
                "        except _pdc_Invalid as e:",
                f"            raise e.within('.' + {f.name!r}) from None",
            ]
    n = len(fields)
    unpack = ", ".join(f"v{i}" for i in range(n))
    dict_items = ", ".join(f"{f.name!r}: v{i}" for i, f in enumerate(fields))
    if frozen or getattr(info.cls, "__setattr__", None) is not object.__setattr__:
        set_dict = [f"    _pdc_osa(s, '__dict__', {{{dict_items}}})"]
    else:
        # Plain attribute stores fill the instance's inline values, cheaper than building
        # a dict; the ids go into the dict their descriptors read.
        set_dict = [
            f"    s.{f.name} = v{i}"
            for i, f in enumerate(fields)
            if f.name not in ("message_id", "correlation_id")
        ]
        set_dict.append("    d = s.__dict__")
        set_dict += [
            f"    d[{f.name!r}] = v{i}"
            for i, f in enumerate(fields)
            if f.name in ("message_id", "correlation_id")
        ]
    decode_body = [
        "    if _pdc_type(o) is not _pdc_list:",
        "        raise _pdc_Invalid(o, _pdc_shape)",
        "    try:",
        f"        tag, {unpack}{',' if n == 1 else ''} = o",
        "    except ValueError:",  # wrong length: say whether it is even this type
        "        if o and (_pdc_type(o[0]) is not _pdc_TAGT or o[0] != _pdc_TAG):",
        "            raise _pdc_Invalid(o[0], repr(_pdc_TAG)).within('<tag>') from None",
        "        raise _pdc_Invalid(o, _pdc_shape) from None",
        "    if _pdc_type(tag) is not _pdc_TAGT or tag != _pdc_TAG:",
        "        raise _pdc_Invalid(tag, repr(_pdc_TAG)).within('<tag>')",
        *dec,
        "    s = _pdc_new(_pdc_CLS)",
        *set_dict,
    ]
    after = _after_decode(fields, checks, user_post, late, init_signature, src)
    if after:
        decode_body.append("    _pdc_after(s)")
    decode_body.append("    return s")
    decode_message = [
        "def decode_message(o):",
        "    try:",
        "        return decode_list(o)",
        "    except _pdc_Invalid as e:",
        "        raise _pdc_wrap_unpack(_pdc_NAME, e) from None",
    ]
    # Messages of plain fields never hold extension types or non-str map keys when valid, so
    # msgpack's defaults decode them (and the field checks refuse anything else).
    plain = all(_native(info.adapters[f.name]) is not None or f.name in STANDARD_FIELDS
                for f in fields)  # fmt: skip
    general = "_pdc_unpackb(data, ext_hook=_pdc_COPY if copy else _pdc_VIEW, strict_map_key=False)"
    unpacking = [f"        o = {'_pdc_unpackb(data)' if plain else general}"]
    # Scalars and array fields only: the arrays can be views of the input bytes themselves.
    arrays = frozenset(i + 1 for i, f in enumerate(fields) if _array_field(info.adapters[f.name]))
    scalars = all(
        _array_field(info.adapters[f.name]) or _native(info.adapters[f.name]) is not None
        or f.name in STANDARD_FIELDS for f in fields
    )  # fmt: skip
    if arrays and scalars:
        src.ns["_pdc_views"] = _codec.unpack_with_views
        src.ns["_pdc_ARRAYS"] = arrays
        unpacking = [
            f"        o = _pdc_views(data, {n + 1}, _pdc_ARRAYS, copy)",
            "        if o is None:",
            f"            o = {general}",
        ]
    # from_bytes repeats the decode body inline: one call less on the hot path.
    typed = _typed_decoder(fields, info) if plain else None
    name = "from_bytes_msgpack" if typed is not None else "from_bytes"
    from_bytes = [
        f"def {name}(data, *, copy=False):",
        "    try:",
        *unpacking,
        "    except _pdc_MDE:",
        "        raise",
        "    except Exception as exc:  # msgpack raises many types for malformed input",
        "        raise _pdc_failure(_pdc_NAME, exc, data) from exc",
        "    try:",
        *("    " + line for line in decode_body),
        "    except _pdc_Invalid as e:",
        "        raise _pdc_wrap_unpack(_pdc_NAME, e) from None",
    ]
    parts = [["def decode_list(o):", *decode_body], decode_message, from_bytes]
    if typed is not None:
        # msgspec checks every item's type (and the tag, the ids' length, the priority's
        # range) in C while decoding; bytes it refuses take the general path, which
        # accepts what needs coercing and words the error of what it refuses.
        src.ns["_pdc_typed"] = typed
        build = ["    s = _pdc_new(_pdc_CLS)", *set_dict]
        if after:
            build.append("    _pdc_after(s)")
        build.append("    return s")
        fast = [
            "def from_bytes(data, *, copy=False):",
            "    try:",
            f"        _, {unpack}{',' if n == 1 else ''} = _pdc_typed(data)",
            "    except Exception:",
            "        return from_bytes_msgpack(data, copy=copy)",
        ]
        if after:
            fast += ["    try:", *("    " + line for line in build),
                     "    except _pdc_Invalid as e:",
                     "        raise _pdc_wrap_unpack(_pdc_NAME, e) from None"]  # fmt: skip
        else:
            fast += build
        parts.append(fast)
    if after:
        parts.insert(0, after)
    return [line for p in parts for line in [*p, ""]]


def _typed_decoder(fields: tuple[Any, ...], info: MessageInfo) -> Any:
    """msgspec's decoder of the compact list of a message of plain fields, or ``None``.

    It takes exactly what the general path takes without coercing anything: the tag, each
    field's own msgpack type (an int for a ``float`` field too, made a float as the
    constructor does), 16 bytes for an id, 0..255 for the priority. ``None`` when msgspec is
    not installed (the core runs with numpy and msgpack only).
    """
    try:
        import msgspec
    except ImportError:
        return None
    from typing import Annotated, Literal, Optional

    raw_id = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
    items: list[Any] = [Literal[info.tag]]
    for f in fields:
        if f.name == "message_id":
            items.append(raw_id)
        elif f.name == "correlation_id":
            items.append(Optional[raw_id])  # noqa: UP045 - a runtime type expression
        elif f.name == "priority":
            items.append(Annotated[int, msgspec.Meta(ge=0, le=255)])
        else:
            items.append(_native(info.adapters[f.name]))
    try:
        return msgspec.msgpack.Decoder(tuple[tuple(items)]).decode  # type: ignore[misc]
    except (TypeError, ValueError, NotImplementedError):  # a tag msgspec cannot match
        return None  # (an int tag beyond int64): the general path serves


def _after_decode(
    fields: tuple[Any, ...],
    checks: dict[str, str],
    user_post: Any,
    late: list[Any],
    init_signature: inspect.Signature | None,
    src: Source,
) -> list[str] | None:
    """``_pdc_after(self)``: the user's ``__post_init__`` and the late checks, run on a
    decoded message as the constructor runs them (``None`` when there is nothing to run)."""
    if user_post is None and not late:
        return None
    lines = ["def _pdc_after(self):"]
    cls_name = src.ns["_pdc_NAME"]
    if user_post is not None:
        initvars = initvar_defaults(init_signature, fields)
        if isinstance(initvars, str):
            text = (
                f"cannot decode {cls_name}: its __post_init__ takes the InitVar {initvars!r}, "
                "which is not serialized and has no default; give it a default"
            )
            lines.append(f"    raise _pdc_MDE({text!r})")
        else:
            lines += [
                "    try:",
                f"        _pdc_user(self, *{src.const(initvars, 'initvars')})",
                "    except Exception as exc:",
                "        raise _pdc_refused(_pdc_NAME, exc) from exc",
            ]
    lines.append("    _pdc_d = self.__dict__")
    lines += late_block(late, fields, checks, lambda key: f"raise e.within('.' + {key}) from None")
    return lines


def _refused(name: str, exc: Exception) -> MessageDecodeError:
    return MessageDecodeError(
        f"cannot decode {name}: its __post_init__ refused the decoded values: "
        f"{type(exc).__name__}: {exc!s:.200}; the bytes hold values the constructor refuses too"
    )


def _wrap_pack(name: str, exc: Exception) -> Exception:
    return MessageEncodeError(f"cannot serialize {name}: {type(exc).__name__}: {exc!s:.200}")


def _wrap_unpack(name: str, exc: Invalid) -> Exception:
    if exc.path == "<tag>":
        return MessageDecodeError(
            f"cannot decode {name}: the bytes hold {_codec.describe_tag(exc.value)}, not a "
            f"{name}; decode them with that type's from_bytes() or decode_message()"
        )
    where = exc.path.lstrip(".") or "the encoded array"
    return MessageDecodeError(
        f"cannot decode {name}: {where}: expected {exc.expected}, got "
        f"{type(exc.value).__name__} {_short_repr(exc.value)}; the bytes do not match the "
        f"fields of {name}"
    )
