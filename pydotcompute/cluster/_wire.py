"""How messages and errors cross process boundaries between the driver and kernel hosts.

Messages travel with the project's own codec: a ``@message`` goes as its ``to_bytes()``
(msgpack, with its type tag) and is decoded, and so validated, on arrival; a batch of a
fixed-layout type goes as one numpy structured array (Ray hands it over through its object
store). Errors raised by a host's runtime come back as a :class:`Raised` record and are
raised again in the driver as the same ``PyDotComputeError`` class with the same message.
"""

from __future__ import annotations

import copyreg
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import KernelFailedError, MessageTypeError, PyDotComputeError
from ..messages import decode_message, fixed_layout, is_message

__all__ = [
    "Raised",
    "Restarted",
    "decode",
    "decode_many",
    "encode",
    "encode_many",
    "register_types",
]


_SHARED_PACKERS = ("plain_pack", "header_pack")  # the codec's packers, by their name there


def _codec_packer(name: str) -> Any:
    """The codec's msgpack packer ``name`` of this process (what a pickled class refers to)."""
    from ..messages import _arrays

    return getattr(_arrays, name).__self__


def _reduce_packer(packer: Any) -> Any:
    for name in _SHARED_PACKERS:
        if packer is _codec_packer(name):
            return _codec_packer, (name,)
    raise pickle.PicklingError(
        "a msgpack.Packer cannot be pickled; only the message codec's own packers travel "
        "(as references to the receiving process's packers)"
    )


_META_FIELDS = (
    "gt", "ge", "lt", "le", "multiple_of", "pattern", "min_length", "max_length", "tz",
    "title", "description", "examples", "extra_json_schema", "extra",
)  # fmt: skip


def _meta(kwargs: dict[str, Any]) -> Any:
    import msgspec

    return msgspec.Meta(**kwargs)


def _reduce_meta(meta: Any) -> Any:
    """A ``msgspec.Meta`` (a C object without pickle support) as the arguments that made it."""
    kwargs = {k: v for k in _META_FIELDS if (v := getattr(meta, k, None)) is not None}
    return _meta, (kwargs,)


def _decoder(t: Any, strict: bool) -> Any:
    import msgspec

    return msgspec.msgpack.Decoder(t, strict=strict)


def _reduce_decoder(decoder: Any) -> Any:
    """A ``msgspec.msgpack.Decoder``, made again from its type in the receiving process."""
    if decoder.dec_hook is not None or decoder.ext_hook is not None:
        raise pickle.PicklingError(
            "a msgspec Decoder with hooks cannot be pickled; only the message codec's typed "
            "decoders travel (made again from their type)"
        )
    return _decoder, (decoder.type, decoder.strict)


def make_message_classes_picklable() -> None:
    """Let cloudpickle carry ``@message`` classes defined in a notebook or ``__main__``.

    A message class's generated ``to_bytes`` refers to the codec's msgpack packers, C objects
    that cannot be pickled; they travel as references to the receiving process's packers.
    Its ``from_bytes`` may hold a msgspec typed decoder (when msgspec is installed): that
    travels as its type and is made again on arrival.
    """
    copyreg.pickle(type(_codec_packer(_SHARED_PACKERS[0])), _reduce_packer)
    try:
        import msgspec
    except ImportError:  # the codec then decodes with msgpack alone: nothing more to carry
        return
    copyreg.pickle(msgspec.msgpack.Decoder, _reduce_decoder)
    copyreg.pickle(msgspec.Meta, _reduce_meta)


def register_types(*types: Any) -> None:
    """Register message classes that arrived by pickle, so their type tags decode here."""
    from ..messages._codec import register_tag

    for t in types:
        info = getattr(t, "__pdc_message__", None) if isinstance(t, type) else None
        if info is not None:
            register_tag(info.tag, t)


def encode(msg: Any) -> bytes:
    """One message as bytes (its ``to_bytes()``); anything else is refused with the fix."""
    to_bytes = getattr(msg, "to_bytes", None)
    if to_bytes is None or not is_message(type(msg)):
        raise MessageTypeError(
            f"a kernel on a cluster host takes @message instances, got a "
            f"{type(msg).__name__}; declare the type with @message so it can cross processes"
        )
    data: bytes = to_bytes()
    return data


def decode(data: bytes, t: type | None) -> Any:
    """A message from its bytes: ``t.from_bytes`` when the type is known, else by its tag."""
    if t is not None and is_message(t):
        return t.from_bytes(data)  # type: ignore[attr-defined]
    return decode_message(data)


def encode_many(msgs: Any, t: type | None) -> Any:
    """A batch: a numpy structured array passes as is; a list as bytes, or as one array.

    A list of a fixed-layout type becomes one structured array (one copy, no per-message
    msgpack) when every message is of that type.
    """
    if isinstance(msgs, np.ndarray):
        return msgs
    items = msgs if isinstance(msgs, list) else list(msgs)
    if t is not None and items and is_message(t) and all(type(m) is t for m in items):
        layout = fixed_layout(t)
        if layout is not None and all(m.priority == 128 for m in items):
            return layout.to_array(items)
    return [encode(m) for m in items]


def decode_many(batch: Any, t: type | None) -> Any:
    """The inverse of :func:`encode_many`: an array stays an array, bytes become messages."""
    if isinstance(batch, np.ndarray):
        return batch
    return [decode(b, t) for b in batch]


@dataclass(frozen=True)
class Restarted:
    """A restarted kernel host's answer about a kernel its dead predecessor ran."""

    pid: int


@dataclass(frozen=True)
class Raised:
    """An error raised in a kernel host, carried back to the driver to be raised there."""

    cls: type[PyDotComputeError]
    message: str
    attrs: dict[str, Any]
    cause: BaseException | None

    @classmethod
    def of(cls, exc: PyDotComputeError) -> Raised:
        """Capture ``exc`` (its class, message, attributes and its cause, if picklable)."""
        attrs = {k: v for k, v in vars(exc).items() if k != "error"}
        cause = exc.__cause__ if exc.__cause__ is not None else getattr(exc, "error", None)
        if cause is not None:
            try:
                pickle.dumps(cause)
            except Exception:  # an unpicklable cause travels as its text
                cause = RuntimeError(f"{type(cause).__name__}: {cause}")
        return cls(type(exc), str(exc), attrs, cause)

    def error(self) -> PyDotComputeError:
        """The error again, as its own class, with its message, attributes and cause."""
        exc = self.cls.__new__(self.cls)
        Exception.__init__(exc, self.message)
        vars(exc).update(self.attrs)
        if isinstance(exc, KernelFailedError):
            exc.error = self.cause if self.cause is not None else RuntimeError(self.message)
        if self.cause is not None:
            exc.__cause__ = self.cause
            exc.__suppress_context__ = True
        return exc


def unwrap(res: Any) -> Any:
    """A host's answer: a :class:`Raised` record is raised here as its error."""
    if type(res) is Raised:
        raise res.error()
    return res
