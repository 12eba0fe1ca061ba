"""Hostile bytes: structure-aware fuzzing of the decoders and regressions of known attacks.

Valid messages are taken apart at the msgpack level (extension payloads included), mutated
(values replaced, numpy headers rewritten, containers and messages nested deep), put back
together and decoded. The only failure allowed is ``MessageDecodeError``: no other
exception, no crash, no unbounded recursion. Checks of "no slower than linear" are
structural (sizes of the integers the decoder multiplies, limits hit before any work that
grows with a claimed size), never timings.
"""

from __future__ import annotations

import sys
from dataclasses import InitVar
from enum import IntEnum
from typing import Any
from uuid import UUID, uuid4

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydotcompute import (
    Array,
    MessageDecodeError,
    MessageDefinitionError,
    MessageValidationError,
    PyDotComputeError,
    decode_message,
    is_message,
    message,
)
from pydotcompute.messages import _arrays, _codec

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Mode(IntEnum):
    A = 1
    B = 2


@message
class Leaf:
    x: float
    name: str


@message
class Bag:
    ints: list[int]
    table: dict[str, float]
    tags: set[str]
    frozen: frozenset[int]
    pair: tuple[int, str]
    mode: Mode
    maybe: UUID | None


@message
class Arrays:
    vec: Array[np.float32, 4]
    any_arr: np.ndarray
    f16: np.float16
    c64: np.complex64
    leaf: Leaf
    leaves: list[Leaf]


@message
class Open:
    anything: Any
    either: int | str | bytes
    items: set  # type: ignore[type-arg]
    table: dict  # type: ignore[type-arg]


@message
class Checked:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")


@message
class Samples:
    name: str
    vec: Array[np.float32, 4]
    data: np.ndarray
    n: int


def samples() -> list[Any]:
    return [
        Leaf(x=1.5, name="leaf"),
        Bag([1, 2], {"a": 1.0}, {"t"}, frozenset({3}), (4, "four"), Mode.B, uuid4()),
        Arrays(
            vec=[1, 2, 3, 4], any_arr=np.arange(6, dtype=np.int16).reshape(2, 3), f16=1.5,
            c64=1 + 2j, leaf=Leaf(x=2, name="in"), leaves=[Leaf(x=3, name="l")],
        ),
        Open(
            anything={"u": uuid4(), "a": np.ones(3), "s": np.int8(3), "m": Leaf(x=4, name="m"),
                      "rec": np.zeros(2, dtype=[("p", "<i4"), ("q", "<f8", (2,))])},
            either=b"raw", items={1, "two"}, table={"k": [1, 2]},
        ),
        Checked(low=1, high=2),
        Samples(name="s", vec=[1, 2, 3, 4], data=np.arange(12.0).reshape(3, 4).T, n=5),
    ]  # fmt: skip


# ------------------------------------------------------------------ taking bytes apart


def parse(data: bytes) -> Any:
    """msgpack structure of ``data``, extension payloads parsed where they hold msgpack."""
    return _open(msgpack.unpackb(data, ext_hook=msgpack.ExtType, strict_map_key=False))


def _open(obj: Any) -> Any:
    if isinstance(obj, msgpack.ExtType) and obj.code in (2, 3, 4):
        inner = msgpack.unpackb(obj.data, ext_hook=msgpack.ExtType, strict_map_key=False)
        return ("ext", obj.code, _open(inner))
    if isinstance(obj, list):
        return [_open(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _open(v) for k, v in obj.items()}
    return obj


def build(obj: Any) -> Any:
    """Turn a (mutated) structure back into packable values."""
    if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == "ext":
        return msgpack.ExtType(obj[1], msgpack.packb(build(obj[2]), use_bin_type=True))
    if isinstance(obj, list):
        return [build(x) for x in obj]
    if isinstance(obj, dict):
        return {k: build(v) for k, v in obj.items()}
    return obj


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, tuple) and len(obj) == 3 and obj[0] == "ext":
        out += paths(obj[2], (*prefix, "ext"))
    elif isinstance(obj, list):
        for i, x in enumerate(obj):
            out += paths(x, (*prefix, i))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, ("key", k)))
    return out


def replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head == "ext":
        return ("ext", obj[1], replace(obj[2], rest, value))
    if isinstance(head, tuple):
        out = dict(obj)
        out[head[1]] = replace(obj[head[1]], rest, value)
        return out
    out_list = list(obj)
    out_list[head] = replace(obj[head], rest, value)
    return out_list


# ------------------------------------------------------------------ hostile values

big_ints = st.sampled_from(
    [0, 1, -1, 255, 256, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63), 2**64 - 1]
)
scalars = (
    st.none() | st.booleans() | big_ints | st.integers(-(2**63), 2**64 - 1)
    | st.floats() | st.text(max_size=8) | st.binary(max_size=24)
)  # fmt: skip
descrs = st.sampled_from(
    ["<f8", "<f4", "|u1", "|b1", "<i4", ">i2", "|O", "|V0", "<U2", "|S3", "<M8[s]", "xyz", "",
     [["a", "<i4"]], [["a", "<i4", [2]]], [["", "|V4"]], [[["t", "n"], "<f4"]], [["a", "|O"]],
     [["a", [["b", "<i2"]]]], [["a"]], [[1, "<i4"]], [["a", "<i4", [2**63]]], [], "<f4" * 90]
)  # fmt: skip
shapes = st.lists(big_ints | st.integers(-3, 6), max_size=80) | scalars
ndarray_payloads = st.builds(
    lambda d, s, raw: ("ext", 2, [d, s, raw]), descrs, shapes, st.binary(max_size=64)
)
scalar_payloads = st.builds(lambda d, raw: ("ext", 3, [d, raw]), descrs, st.binary(max_size=16))
raw_exts = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=20))
leaves = scalars | ndarray_payloads | scalar_payloads | raw_exts
hostile = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(scalars.filter(lambda k: isinstance(k, (str, int))), inner, max_size=3)
        | st.builds(lambda v: [v, v], inner)
    ),
    max_leaves=10,
)


def nest_messages(data: bytes, depth: int) -> bytes:
    """``data`` as the ``anything`` of ``depth`` Open messages, each inside the next."""
    tag = Open.__pdc_message__.tag  # type: ignore[attr-defined]
    for _ in range(depth):
        ext = msgpack.ExtType(4, data)
        data = msgpack.packb([tag, ext, 1, [], {}, uuid4().bytes, 128, None], use_bin_type=True)
    return data


def outcome(decode: Any, data: Any, copy: bool) -> str:
    """What decoding gives: the message's repr, or the error's text; nothing else may escape."""
    try:
        out = decode(data, copy=copy)
    except MessageDecodeError as exc:  # a PyDotComputeError: the only one allowed
        text = str(exc)
        assert len(text) < 2000  # the message is bounded, whatever the input
        return "error: " + text
    assert is_message(out)
    return repr(out)


def decode_all(data: bytes, cls: Any) -> None:
    """Every decoder, both array modes, bytes and a bytearray: the same outcome for both."""
    for decode in (cls.from_bytes, decode_message):
        for copy in (False, True):
            # bytes may decode arrays as views of the input; a bytearray never does
            assert outcome(decode, data, copy) == outcome(decode, bytearray(data), copy)


@FUZZ
@given(which=st.integers(0, 5), data=st.data(), value=hostile)
def test_fuzz_values_replaced_anywhere_decode_or_raise_decode_error(
    which: int, data: st.DataObject, value: Any
) -> None:
    m = samples()[which]
    tree = parse(m.to_bytes())
    path = data.draw(st.sampled_from(paths(tree)))
    mutated = replace(tree, path, value)
    decode_all(msgpack.packb(build(mutated), use_bin_type=True), type(m))


@FUZZ
@given(which=st.integers(0, 5), data=st.data(), depth=st.integers(0, 1100))
def test_fuzz_deep_lists_anywhere(which: int, data: st.DataObject, depth: int) -> None:
    m = samples()[which]
    tree = parse(m.to_bytes())
    path = data.draw(st.sampled_from(paths(tree)))
    leaf = data.draw(leaves)
    marker = b"\x00pdc-fuzz-marker\x00"
    packed = msgpack.packb(build(replace(tree, path, marker)), use_bin_type=True)
    deep = b"\x91" * depth + msgpack.packb(build(leaf), use_bin_type=True)
    decode_all(packed.replace(msgpack.packb(marker, use_bin_type=True), deep, 1), type(m))


@FUZZ
@given(
    which=st.integers(0, 5),
    cuts=st.lists(st.integers(0, 5000), max_size=3),
    flips=st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 255)), max_size=4),
)
def test_fuzz_truncated_and_flipped_bytes(
    which: int, cuts: list[int], flips: list[tuple[int, int]]
) -> None:
    m = samples()[which]
    data = bytearray(m.to_bytes())
    for pos, bits in flips:
        data[pos % len(data)] ^= bits
    for cut in cuts:
        data = data[: max(1, cut % (len(data) + 1))]
    decode_all(bytes(data), type(m))


@FUZZ
@given(depth=st.integers(0, 40), inner=hostile)
def test_fuzz_messages_nested_in_any_values(depth: int, inner: Any) -> None:
    tag = Open.__pdc_message__.tag  # type: ignore[attr-defined]
    seed = msgpack.packb(
        [tag, build(inner), 1, [], {}, uuid4().bytes, 128, None], use_bin_type=True
    )
    decode_all(nest_messages(seed, depth), Open)


# ------------------------------------------------------------------ regressions (issue 11)


def test_deep_message_nesting_is_refused_at_the_limit_not_by_a_crash() -> None:
    tag = Open.__pdc_message__.tag  # type: ignore[attr-defined]
    seed = msgpack.packb([tag, 1, 1, [], {}, uuid4().bytes, 128, None])
    ok = nest_messages(seed, _codec.MAX_MESSAGE_DEPTH)
    depth = 0
    m = Open.from_bytes(ok)
    while isinstance(m.anything, Open):
        m, depth = m.anything, depth + 1
    assert depth == _codec.MAX_MESSAGE_DEPTH
    for levels in (_codec.MAX_MESSAGE_DEPTH + 1, 200, 2000):  # 200 used to segfault
        with pytest.raises(MessageDecodeError, match=r"more than 16 deep exceed the limit"):
            Open.from_bytes(nest_messages(seed, levels))
        with pytest.raises(MessageDecodeError, match=r"more than 16 deep exceed the limit"):
            decode_message(nest_messages(seed, levels))


def test_nesting_beyond_the_limit_is_refused_when_encoding_too() -> None:
    m: Any = Open(anything=1, either=1, items=set(), table={})
    for _ in range(_codec.MAX_MESSAGE_DEPTH + 1):
        m = Open(anything=m, either=1, items=set(), table={})
    with pytest.raises(PyDotComputeError, match=r"more than 16 messages deep exceeds the limit"):
        m.to_bytes()


def test_a_long_shape_list_is_refused_before_any_arithmetic() -> None:
    # 527 KiB of shape took 21 s of big-integer products; the limit refuses it at once.
    tag = Open.__pdc_message__.tag  # type: ignore[attr-defined]
    payload = msgpack.packb(["<f8", [2**62] * 60_000, b""])
    data = msgpack.packb([tag, msgpack.ExtType(2, payload), 1, [], {}, uuid4().bytes, 128, None])
    assert len(data) > 500_000
    with pytest.raises(MessageDecodeError, match=r"more than 64 dimensions exceeds the limit"):
        Open.from_bytes(data)
    with pytest.raises(MessageDecodeError, match=r"more than 64 dimensions exceeds the limit"):
        decode_message(data)


@settings(max_examples=200, deadline=None, database=None)
@given(shape=st.lists(big_ints | st.integers(0, 2**64 - 1), max_size=64),
       itemsize=st.sampled_from(["|u1", "<f8", "|V40"]), nbytes=st.integers(0, 10**6))  # fmt: skip
def test_shape_arithmetic_never_grows_past_the_data_size(
    shape: list[int], itemsize: str, nbytes: int
) -> None:
    """Every product the shape check forms stays below nbytes * 2**64 (a few machine words)."""
    dtype = np.dtype(itemsize)
    biggest = 0

    def watch(frame: Any, event: str, arg: Any) -> Any:
        nonlocal biggest
        if frame.f_code is _arrays.element_count.__code__ and event == "line":
            count = frame.f_locals.get("count", 0)
            biggest = max(biggest, count if isinstance(count, int) else 0)
        return watch

    sys.settrace(watch)
    try:
        count = _arrays.element_count(shape, dtype, nbytes)
    except MessageDecodeError:
        pass
    else:
        assert count * dtype.itemsize == nbytes
    finally:
        sys.settrace(None)
    assert biggest.bit_length() <= max(nbytes, 1).bit_length() + 64


def test_an_unhashable_item_for_a_set_field_is_a_decode_error() -> None:
    good = parse(Open(anything=1, either=1, items={1}, table={}).to_bytes())
    good[3] = [[1, 2]]
    with pytest.raises(MessageDecodeError, match=r"items\[0\]: expected a hashable item of set"):
        Open.from_bytes(msgpack.packb(build(good)))
    bad = Bag.from_bytes  # a typed set refuses a list item as not a str first
    tree = parse(samples()[1].to_bytes())
    tree[3] = [["x"]]
    with pytest.raises(MessageDecodeError, match=r"tags\[0\]: expected str, got list"):
        bad(msgpack.packb(build(tree)))
    with pytest.raises(MessageValidationError, match=r"Open\.items\[0\]: expected a hashable"):
        Open(anything=1, either=1, items=[[1]], table={})


@pytest.mark.parametrize(
    "tag",
    [
        msgpack.ExtType(2, msgpack.packb(["<f8", [2], b"\0" * 16])),
        msgpack.ExtType(3, msgpack.packb([[["a", "<i4"]], b"\0" * 4])),
        msgpack.ExtType(3, msgpack.packb(["<f8", b"\0" * 8])),
        [1, 2],
        {"a": 1},
        1.5,
        None,
        True,
    ],
)
def test_anything_but_an_int_or_str_where_the_tag_belongs_is_a_decode_error(tag: Any) -> None:
    good = msgpack.unpackb(Leaf(x=1, name="n").to_bytes())
    data = msgpack.packb([tag, *good[1:]])
    with pytest.raises(MessageDecodeError, match=r"type tag must be an int or a str"):
        decode_message(data)
    with pytest.raises(MessageDecodeError, match=r"cannot decode Leaf: the bytes hold tag"):
        Leaf.from_bytes(data)
    with pytest.raises(MessageDecodeError, match=r"cannot decode Open: the bytes hold tag"):
        Open.from_bytes(data)


def test_post_init_checks_run_when_decoding() -> None:
    good = msgpack.unpackb(Checked(low=1, high=2).to_bytes())
    good[1], good[2] = 5, 1
    with pytest.raises(ValueError, match="low 5 > high 1"):
        Checked(low=5, high=1)
    for decode in (Checked.from_bytes, decode_message):
        with pytest.raises(
            MessageDecodeError,
            match=r"cannot decode Checked: its __post_init__ refused the decoded values: "
            r"ValueError: low 5 > high 1",
        ) as info:
            decode(msgpack.packb(good))
        assert isinstance(info.value.__cause__, ValueError)


def test_post_init_checks_run_for_nested_messages_too() -> None:
    @message
    class Holder:
        inner: Checked
        anything: Any

    bad = msgpack.unpackb(Checked(low=1, high=2).to_bytes())
    bad[1] = 9
    outer = msgpack.unpackb(Holder(inner=Checked(low=0, high=1), anything=None).to_bytes())
    typed = [outer[0], bad, *outer[2:]]
    with pytest.raises(MessageDecodeError, match=r"Checked: its __post_init__ refused"):
        Holder.from_bytes(msgpack.packb(typed))
    untyped = [outer[0], outer[1], msgpack.ExtType(4, msgpack.packb(bad)), *outer[3:]]
    with pytest.raises(MessageDecodeError, match=r"Checked: its __post_init__ refused"):
        Holder.from_bytes(msgpack.packb(untyped))


def test_init_var_defaults_reach_post_init_when_decoding() -> None:
    @message
    class Scaled:
        x: float
        scale: InitVar[float] = 2.0

        def __post_init__(self, scale: float) -> None:
            self.x *= scale

    m = Scaled(x=1.0, scale=3.0)
    assert m.x == 3.0
    assert Scaled.from_bytes(m.to_bytes()).x == 6.0  # as Scaled(x=3.0) would be

    @message
    class NeedsIt:
        x: float
        scale: InitVar[float]

        def __post_init__(self, scale: float) -> None:
            self.x *= scale

    with pytest.raises(MessageDecodeError, match=r"InitVar 'scale', which is not serialized"):
        NeedsIt.from_bytes(NeedsIt(x=1.0, scale=2.0).to_bytes())


def test_containers_nested_beyond_msgpacks_stack_are_a_decode_error() -> None:
    tag = Open.__pdc_message__.tag  # type: ignore[attr-defined]
    deep = b"\x98" + msgpack.packb(tag) + b"\x91" * 5000 + b"\xc0" + msgpack.packb(1)
    deep += msgpack.packb([]) + msgpack.packb({}) + msgpack.packb(uuid4().bytes) + b"\xcc\x80\xc0"
    for decode in (Open.from_bytes, decode_message):
        with pytest.raises(
            MessageDecodeError, match=r"nested more than 1024 deep exceed the limit"
        ):
            decode(deep)


def test_error_messages_of_deep_values_are_bounded() -> None:
    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    good = msgpack.unpackb(Leaf(x=1, name="n").to_bytes())
    good[1] = deep
    with pytest.raises(MessageDecodeError, match=r"x: expected float, got list \[\[\[\[") as info:
        Leaf.from_bytes(msgpack.packb(good))
    assert len(str(info.value)) < 300
    with pytest.raises(MessageValidationError, match=r"expected float, got list") as err:
        Leaf(x=deep, name="n")
    assert len(str(err.value)) < 300


def test_bare_container_annotations_mean_their_any_forms() -> None:
    @message
    class Bare:
        d: dict  # type: ignore[type-arg]
        li: list  # type: ignore[type-arg]
        s: set  # type: ignore[type-arg]
        fs: frozenset  # type: ignore[type-arg]
        t: tuple  # type: ignore[type-arg]

    m = Bare(d={"a": [1]}, li=[1, "x"], s={1, "y"}, fs=[2], t=[1, "z"])
    assert type(m.fs) is frozenset and m.t == (1, "z")
    assert Bare.from_bytes(m.to_bytes()) == m
    with pytest.raises(MessageValidationError, match=r"Bare\.d: expected dict\[Any, Any\]"):
        Bare(d=[1], li=[], s=set(), fs=frozenset(), t=())


def test_arrays_and_dtypes_with_bad_headers() -> None:
    tag = Open.__pdc_message__.tag  # type: ignore[attr-defined]

    def with_array(payload: bytes) -> bytes:
        return msgpack.packb(
            [tag, msgpack.ExtType(2, payload), 1, [], {}, uuid4().bytes, 128, None]
        )

    cases = [
        (msgpack.packb(["<f8", [2**63, 2**63], b""]), r"needs more than 0"),
        (msgpack.packb(["<f8", [-1], b""]), r"malformed numpy array shape"),
        (msgpack.packb(["<f8", [1]]), r"expected a msgpack array of 3"),
        (msgpack.packb(["<f8", [1], "not-bin"]), r"its data is not msgpack bin"),
        (msgpack.packb(["x" * 300, [1], b""]), r"dtype string of 300 characters"),
        (msgpack.packb([[["a", "|V0"]], [1], b""]), r"has no size"),
        (msgpack.packb(["<f8", [1], b"\0" * 8]) + b"\0", r"1 bytes left over"),
        (msgpack.packb([[["a", [["b", [["c", "<i4"]]]]]], [1], b""]), r"needs 4"),
    ]
    deep: Any = "<i4"
    for _ in range(20):
        deep = [["f", deep]]
    cases.append((msgpack.packb([deep, [1], b""]), r"nested more than 8 deep exceeds the limit"))
    wide = [[f"f{i}", "<i1"] for i in range(3000)]
    cases.append((msgpack.packb([wide, [1], b""]), r"more than 4096 items exceeds the limit"))
    for payload, match in cases:
        with pytest.raises(MessageDecodeError, match=match):
            Open.from_bytes(with_array(payload))


def test_typed_array_fields_take_only_arrays_from_the_wire() -> None:
    tree = msgpack.unpackb(samples()[2].to_bytes(), ext_hook=msgpack.ExtType)
    tree[1] = [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(MessageDecodeError, match=r"vec: expected Array\[float32, 4\], got list"):
        Arrays.from_bytes(msgpack.packb(tree))


def test_definition_errors_stay_definition_errors() -> None:
    with pytest.raises(MessageDefinitionError, match="not supported"):

        @message
        class Bad:
            x: 3  # type: ignore[valid-type]


def _owner(arr: np.ndarray) -> Any:
    base: Any = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return base


def test_array_fields_decode_as_read_only_views_of_the_input_bytes() -> None:
    m = Samples(name="s", vec=[1, 2, 3, 4], data=np.arange(6.0).reshape(2, 3), n=1)
    data = m.to_bytes()
    back = Samples.from_bytes(data)
    assert back == m
    for arr in (back.vec, back.data):
        assert _owner(arr) is data and not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        back.data[0, 0] = 9.0
    copied = Samples.from_bytes(data, copy=True)
    assert copied == m and copied.data.flags.writeable and _owner(copied.data) is not data
    # A mutable buffer never backs the arrays: changing it later changes nothing decoded.
    buf = bytearray(data)
    from_buf = Samples.from_bytes(buf)
    assert _owner(from_buf.data) is not buf and not from_buf.data.flags.writeable
    buf[:] = bytes(len(buf))
    assert from_buf == m


def test_arrays_inside_any_values_are_read_only_unless_copied() -> None:
    m = Open(anything={"a": np.arange(3)}, either=1, items=set(), table={})
    assert not Open.from_bytes(m.to_bytes()).anything["a"].flags.writeable
    assert Open.from_bytes(m.to_bytes(), copy=True).anything["a"].flags.writeable


# ------------------------------------------------------------------ msgspec's typed decoding


@message
class Scalars:
    symbol: str
    price: float
    size: int
    buy: bool
    raw: bytes


PLAIN = [Leaf(x=1.5, name="leaf"), Checked(low=1, high=2), Scalars("s", 1.0, -3, True, b"r")]


def same_outcome_on_both_paths(m: Any, data: bytes) -> None:
    info = type(m).__pdc_message__
    assert info.from_bytes_msgpack is not type(m).from_bytes  # msgspec decodes first
    for copy in (False, True):
        assert outcome(type(m).from_bytes, data, copy) == outcome(
            info.from_bytes_msgpack, data, copy
        )


@FUZZ
@given(which=st.integers(0, 2), data=st.data(), value=hostile | big_ints | scalars)
def test_fuzz_plain_messages_decode_alike_through_msgspec_and_msgpack_alone(
    which: int, data: st.DataObject, value: Any
) -> None:
    m = PLAIN[which]
    tree = parse(m.to_bytes())
    path = data.draw(st.sampled_from(paths(tree)))
    same_outcome_on_both_paths(m, msgpack.packb(build(replace(tree, path, value))))


@FUZZ
@given(
    which=st.integers(0, 2),
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3),
)
def test_fuzz_plain_messages_truncated_or_flipped_decode_alike_on_both_paths(
    which: int, cut: int, flips: list[tuple[int, int]]
) -> None:
    m = PLAIN[which]
    data = bytearray(m.to_bytes())
    for pos, bits in flips:
        data[pos % len(data)] ^= bits
    same_outcome_on_both_paths(m, bytes(data[: max(1, cut % (len(data) + 1))]))


def test_plain_messages_decode_without_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec raises ImportError

    @message
    class Bare:
        price: float
        size: int

    info = Bare.__pdc_message__  # type: ignore[attr-defined]
    assert info.from_bytes_msgpack is Bare.from_bytes  # type: ignore[attr-defined]
    m = Bare(price=2, size=3)
    assert Bare.from_bytes(m.to_bytes()) == m  # type: ignore[attr-defined]
    tag = info.tag
    with pytest.raises(MessageDecodeError, match=r"Bare: size: expected int, got str 'x'"):
        Bare.from_bytes(msgpack.packb([tag, 1.0, "x", uuid4().bytes, 128, None]))  # type: ignore[attr-defined]


def test_msgspec_decodes_what_needs_no_coercing_the_msgpack_path_the_rest() -> None:
    tag = Scalars.__pdc_message__.tag  # type: ignore[attr-defined]
    mid = uuid4().bytes
    # an int for a float field: msgspec makes it a float, as the constructor does
    back = Scalars.from_bytes(msgpack.packb([tag, "s", 2, 3, False, b"", mid, 255, mid]))  # type: ignore[attr-defined]
    assert type(back.price) is float and back.price == 2.0 and back.priority == 255
    assert back.correlation_id == UUID(bytes=mid) and back.message_id == UUID(bytes=mid)
    with pytest.raises(MessageDecodeError, match=r"priority: expected int in 0..255, got int 256"):
        Scalars.from_bytes(msgpack.packb([tag, "s", 2.0, 3, False, b"", mid, 256, None]))  # type: ignore[attr-defined]
    with pytest.raises(MessageDecodeError, match=r"message_id: expected UUID as 16 bytes"):
        Scalars.from_bytes(msgpack.packb([tag, "s", 2.0, 3, False, b"", mid[:15], 1, None]))  # type: ignore[attr-defined]
    with pytest.raises(MessageDecodeError, match=r"the bytes hold .*not a Scalars"):
        Scalars.from_bytes(msgpack.packb([tag + 1, "s", 2.0, 3, False, b"", mid, 1, None]))  # type: ignore[attr-defined]
