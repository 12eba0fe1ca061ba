"""msgpack codec: round trips of every supported type, and clear errors for bad bytes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any
from uuid import UUID, uuid4

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pydotcompute import (
    Array,
    MessageDecodeError,
    MessageDefinitionError,
    MessageEncodeError,
    decode_message,
    is_message,
    message,
)


class Level(IntEnum):
    LOW = 1
    HIGH = 2


@message
class Scalars:
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    nothing: None
    maybe: int | None
    u: UUID


@message
class Containers:
    items: list[int]
    pair: tuple[str, float]
    table: dict[str, float]
    keyed: dict[int, str]
    tags: frozenset[str]
    level: Level


@message
class Inner:
    value: float


@message
class Numeric:
    f32: np.float32
    u16: np.uint16
    c64: np.complex64
    arr: np.ndarray
    fixed: Array[np.int32, (2, 3)]
    inner: Inner
    inners: list[Inner]


@message
class Loose:
    anything: Any
    choice: int | str | UUID


def roundtrip(m: Any) -> Any:
    data = m.to_bytes()
    assert isinstance(data, bytes)
    back = type(m).from_bytes(data)
    assert back == m
    assert back.message_id == m.message_id
    assert decode_message(data) == m
    return back


def test_scalars_round_trip() -> None:
    roundtrip(Scalars(1, 2.5, "s", b"\x00\xff", True, None, None, uuid4()))


def test_ids_priority_and_correlation_round_trip() -> None:
    m = Inner(value=1, priority=3, correlation_id=uuid4())
    back = roundtrip(m)
    assert back.priority == 3 and back.correlation_id == m.correlation_id


def test_containers_round_trip_with_their_types() -> None:
    back = roundtrip(
        Containers([1, 2], ("a", 1.5), {"x": 1.0}, {1: "one"}, frozenset({"t"}), Level.HIGH)
    )
    assert type(back.pair) is tuple and type(back.tags) is frozenset and back.level is Level.HIGH


def test_numpy_scalars_arrays_and_nested_messages_round_trip() -> None:
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)[:, ::2]  # non-contiguous
    m = Numeric(
        f32=1.25,
        u16=65535,
        c64=1 + 2j,
        arr=arr,
        fixed=np.arange(6).reshape(2, 3),
        inner=Inner(value=2),
        inners=[Inner(value=3), Inner(value=4)],
    )
    back = roundtrip(m)
    assert back.arr.dtype == np.float16 and back.arr.shape == (3, 2)
    assert not back.arr.flags.writeable and type(back.f32) is np.float32
    copied = Numeric.from_bytes(m.to_bytes(), copy=True)
    assert copied == m and copied.arr.flags.writeable and copied.fixed.flags.writeable
    assert decode_message(m.to_bytes(), copy=True).arr.flags.writeable


def test_structured_and_zero_size_arrays_round_trip() -> None:
    rec = np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))])
    rec["a"] = [1, 2]
    roundtrip(Loose(anything=rec, choice=1))
    roundtrip(Loose(anything=np.empty((0, 3), dtype=np.int64), choice="x"))


def test_any_fields_keep_python_types() -> None:
    u = uuid4()
    payload = {"u": u, "n": np.int16(7), "arr": np.ones(2), "msg": Inner(value=1), "l": [None]}
    back = roundtrip(Loose(anything=payload, choice=u))
    assert back.anything["u"] == u and type(back.anything["n"]) is np.int16
    assert isinstance(back.anything["msg"], Inner) and back.choice == u


def test_unserializable_values_raise_encode_error() -> None:
    with pytest.raises(MessageEncodeError, match="cannot serialize a value of type object"):
        Loose(anything=object(), choice=1).to_bytes()
    with pytest.raises(MessageEncodeError, match="holds Python objects"):
        Loose(anything=np.array([object()]), choice=1).to_bytes()
    with pytest.raises(
        MessageEncodeError, match="integer 2361183241434822606848 does not fit in 64 bits"
    ):
        Scalars(2**71, 1.0, "", b"", True, None, None, uuid4()).to_bytes()


def test_truncated_bytes_raise_decode_error() -> None:
    data = Inner(value=1).to_bytes()
    with pytest.raises(MessageDecodeError, match=r"cannot decode Inner from \d+ bytes"):
        Inner.from_bytes(data[:-1])


def test_wrong_message_type_names_the_tag() -> None:
    data = Inner(value=1).to_bytes()
    with pytest.raises(
        MessageDecodeError,
        match=r"hold tests\.messages\.test_codec\.Inner \(tag \d+\), not a Scalars",
    ):
        Scalars.from_bytes(data)


def test_default_tag_is_a_compact_int_and_explicit_tags_work() -> None:
    tag = Inner.__pdc_message__.tag
    assert isinstance(tag, int) and 0 <= tag < 2**32

    @message(tag="tick.v1")
    class Tagged:
        x: int

    assert msgpack.unpackb(Tagged(x=1).to_bytes())[0] == "tick.v1"
    assert decode_message(Tagged(x=1).to_bytes()).x == 1


def test_a_tag_used_by_another_class_is_refused() -> None:
    @message(tag="shared-tag")
    class First:
        x: int

    with pytest.raises(
        MessageDefinitionError, match=r"type tag 'shared-tag' of .*Second is already"
    ):

        @message(tag="shared-tag")
        class Second:
            x: int

    with pytest.raises(MessageDefinitionError, match=r"takes an int or a str, got 1\.5"):

        @message(tag=1.5)  # type: ignore[arg-type]
        class BadTag:
            x: int


def test_unknown_tag_is_reported() -> None:
    data = msgpack.packb(["nobody.Knows", 1])
    with pytest.raises(MessageDecodeError, match=r"unknown message type tag 'nobody\.Knows'"):
        decode_message(data)


def test_fields_that_do_not_match() -> None:
    tag = Inner.__pdc_message__.tag
    good = msgpack.unpackb(Inner(value=1).to_bytes())
    with pytest.raises(MessageDecodeError, match=r"expected Inner as \[tag, value, message_id"):
        Inner.from_bytes(msgpack.packb([tag, 1.0]))
    bad = list(good)
    bad[1] = "one"
    with pytest.raises(MessageDecodeError, match=r"Inner: value: expected float, got str 'one'"):
        Inner.from_bytes(msgpack.packb(bad))
    bad = list(good)
    bad[2] = b"short"
    with pytest.raises(MessageDecodeError, match=r"message_id: expected UUID as 16 bytes"):
        Inner.from_bytes(msgpack.packb(bad))
    bad = list(good)
    bad[3] = 999
    with pytest.raises(MessageDecodeError, match=r"priority: expected int in 0\.\.255"):
        Inner.from_bytes(msgpack.packb(bad))


def test_bad_extension_payloads() -> None:
    tag = Loose.__pdc_message__.tag
    for ext, match in [
        (msgpack.ExtType(99, b""), "unknown msgpack extension type 99"),
        (msgpack.ExtType(1, b"123"), "UUID extension holds 3 bytes"),
        (msgpack.ExtType(2, msgpack.packb(["<f8", [4], b"12"])), "needs 32"),
        (msgpack.ExtType(2, msgpack.packb(["|O", [1], b""])), "invalid numpy dtype|Python objects"),
    ]:
        data = msgpack.packb([tag, ext, 1, uuid4().bytes, 128, None])
        with pytest.raises(MessageDecodeError, match=match):
            Loose.from_bytes(data)


def test_non_bytes_input() -> None:
    with pytest.raises(MessageDecodeError, match="from a int"):
        Inner.from_bytes(12)  # type: ignore[arg-type]


# ------------------------------------------------------------------ property-based


finite = st.floats(allow_nan=False)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | finite | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    i=st.integers(-(2**63), 2**64 - 1),
    f=finite,
    s=st.text(),
    b=st.binary(),
    flag=st.booleans(),
    maybe=st.none() | st.integers(-100, 100),
    u=st.uuids(),
    priority=st.integers(0, 255),
)
def test_property_scalars_round_trip(**kw: Any) -> None:
    priority = kw.pop("priority")
    roundtrip(Scalars(**kw, nothing=None, priority=priority))


@settings(max_examples=150, deadline=None)
@given(
    anything=json_like,
    arr=hnp.arrays(
        dtype=hnp.scalar_dtypes().filter(lambda d: d.kind in "biufc"),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    ),
)
def test_property_any_and_arrays_round_trip(anything: Any, arr: np.ndarray) -> None:
    m = Loose(anything={"v": anything, "arr": arr}, choice=0)
    back = type(m).from_bytes(m.to_bytes())
    assert back.anything["v"] == anything
    got = back.anything["arr"]
    assert got.dtype == arr.dtype and got.shape == arr.shape
    assert np.array_equal(got, arr, equal_nan=arr.dtype.kind in "fc")


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=64))
def test_property_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decode in (Scalars.from_bytes, Numeric.from_bytes, decode_message):
        try:
            decode(data)
        except MessageDecodeError:
            pass


def corruption_samples() -> list[Any]:
    return [
        Numeric(
            f32=1.0, u16=2, c64=3j, arr=np.ones(3), fixed=np.zeros((2, 3), dtype=np.int32),
            inner=Inner(value=1), inners=[Inner(value=2)],
        ),
        Scalars(1, 2.5, "s", b"\x00", True, None, 3, uuid4()),
        Containers([1, 2], ("a", 1.5), {"x": 1.0}, {1: "one"}, frozenset({"t"}), Level.HIGH),
        Loose(anything={"u": uuid4(), "a": np.arange(4.0), "m": Inner(value=3)}, choice="x"),
    ]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    which=st.integers(0, 3),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=3),
    keep=st.floats(0.05, 1.0),
)
def test_property_corrupted_messages_raise_only_decode_errors(
    which: int, flips: list[tuple[int, int]], keep: float
) -> None:
    m = corruption_samples()[which]
    data = bytearray(m.to_bytes())
    for pos, bits in flips:
        data[pos % len(data)] ^= bits
    corrupted = bytes(data[: max(1, int(len(data) * keep))])
    for decode in (type(m).from_bytes, decode_message):
        try:
            back = decode(corrupted)
        except MessageDecodeError:
            continue  # the only exception allowed (a PyDotComputeError)
        assert is_message(back)


def test_complex_values_with_a_bad_part_are_a_decode_error() -> None:
    good = msgpack.unpackb(corruption_samples()[0].to_bytes())
    good[3] = ["one", 2.0]
    with pytest.raises(MessageDecodeError, match=r"c64: expected np\.complex64 as \[real, imag\]"):
        Numeric.from_bytes(msgpack.packb(good))


# ------------------------------------------------------------------ the wire format (version 1)


@message
class WithArray:
    name: str
    data: np.ndarray
    n: int


def test_wire_format_of_scalar_fields_is_pinned() -> None:
    m = Inner(value=1.5, message_id=UUID(int=1), priority=3)
    tag = Inner.__pdc_message__.tag  # type: ignore[attr-defined]
    assert m.to_bytes() == msgpack.packb([tag, 1.5, UUID(int=1).bytes, 3, None])
    assert Inner.from_bytes(msgpack.packb([tag, 1.5, bytes(16), 0, UUID(int=2).bytes])) == Inner(
        value=1.5, message_id=UUID(int=0), priority=0, correlation_id=UUID(int=2)
    )


def test_wire_format_of_extension_types_is_pinned() -> None:
    u = UUID(int=7)
    m = Loose(anything=[u, np.int16(5), np.arange(3, dtype="<i2")], choice=1, message_id=u)
    ext = msgpack.ExtType
    expected = [
        Loose.__pdc_message__.tag,  # type: ignore[attr-defined]
        [
            ext(1, u.bytes),
            ext(3, msgpack.packb(["<i2", np.int16(5).tobytes()])),
            ext(2, msgpack.packb(["<i2", [3], np.arange(3, dtype="<i2").tobytes()])),
        ],
        1, u.bytes, 128, None,
    ]  # fmt: skip
    assert m.to_bytes() == msgpack.packb(expected, use_bin_type=True)
    nested = Loose(anything=Inner(value=1.0, message_id=u), choice="x", message_id=u)
    tag = Loose.__pdc_message__.tag  # type: ignore[attr-defined]
    inner = Inner(value=1.0, message_id=u).to_bytes()
    assert nested.to_bytes() == msgpack.packb([tag, ext(4, inner), "x", u.bytes, 128, None])


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 12, 13, 200, 255, 256, 16_000, 70_000])
def test_array_fields_are_packed_byte_for_byte_as_msgpack_would(size: int) -> None:
    # Array fields are written piecewise from the array's buffer: the headers must be exactly
    # msgpack's (fixext, ext 8/16/32 and bin 8/16/32 by size).
    data = np.arange(size, dtype=np.uint8)[::-1]  # not contiguous: packed in C order
    m = WithArray(name="a", data=data, n=size, message_id=UUID(int=3))
    payload = msgpack.packb(["|u1", [size], data.tobytes()], use_bin_type=True)
    tag = WithArray.__pdc_message__.tag  # type: ignore[attr-defined]
    expected = [tag, "a", msgpack.ExtType(2, payload), size, UUID(int=3).bytes, 128, None]
    packed = m.to_bytes()
    assert packed == msgpack.packb(expected, use_bin_type=True)
    back = WithArray.from_bytes(packed)
    assert back == m and not back.data.flags.writeable


def test_values_of_subclasses_assigned_after_construction_still_pack() -> None:
    class Name(str):
        pass

    @message
    class Named:  # plain fields: packed by the shared strict packer
        name: str

    for cls, field in ((Named, "name"), (Scalars, "s")):
        m = Named("n") if cls is Named else Scalars(1, 2.5, "s", b"", True, None, None, uuid4())
        setattr(m, field, Name("sub"))  # not validated: assignments after construction are not
        back = cls.from_bytes(m.to_bytes())  # type: ignore[attr-defined]
        assert getattr(back, field) == "sub" and type(getattr(back, field)) is str
