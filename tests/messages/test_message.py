"""@message: both seed forms, standard fields, validation and coercion, reply, ids."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal
from uuid import UUID, uuid4

import numpy as np
import numpy.typing as npt
import pytest

from pydotcompute import (
    Array,
    MessageDefinitionError,
    MessageValidationError,
    PyDotComputeError,
    is_message,
    message,
)


@message
class ComputeResponse:
    result: float


@message
@dataclass
class Request:
    data: str
    message_id: UUID = field(default_factory=uuid4)
    priority: int = 128
    correlation_id: UUID | None = None


class Color(Enum):
    RED = "red"
    BLUE = "blue"


def test_plain_class_gets_standard_fields_as_keyword_only() -> None:
    names = [f.name for f in dataclasses.fields(ComputeResponse)]
    assert names == ["result", "message_id", "priority", "correlation_id"]
    sig = inspect.signature(ComputeResponse)
    assert sig.parameters["priority"].kind is inspect.Parameter.KEYWORD_ONLY
    r = ComputeResponse(3.5)
    assert isinstance(r.message_id, UUID) and r.message_id.version == 4
    assert r.priority == 128 and r.correlation_id is None


def test_stacked_on_dataclass_keeps_declared_fields_positional() -> None:
    u = uuid4()
    r = Request("hello", u, 7)
    assert (r.data, r.message_id, r.priority, r.correlation_id) == ("hello", u, 7, None)
    assert is_message(Request) and is_message(r) and not is_message(object())


def test_dataclass_without_standard_fields_gets_them() -> None:
    @message
    @dataclass(frozen=True)
    class Frozen:
        x: int

    f = Frozen(1)
    assert f.priority == 128 and isinstance(f.message_id, UUID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.x = 2  # type: ignore[misc]
    assert hash(f) == hash(copy.copy(f))


def test_float_field_coerces_int_as_in_the_seed() -> None:
    assert ComputeResponse(result=15).result == 15.0
    assert type(ComputeResponse(result=np.int32(4)).result) is float


def test_string_for_float_names_class_field_value_and_type() -> None:
    with pytest.raises(
        MessageValidationError,
        match=r"ComputeResponse\.result: expected float, got str 'abc'",
    ) as info:
        ComputeResponse(result="abc")
    err = info.value
    assert (err.message_type, err.field, err.value, err.expected) == (
        "ComputeResponse",
        "result",
        "abc",
        "float",
    )
    assert isinstance(err, PyDotComputeError) and isinstance(err, ValueError)


@pytest.mark.parametrize("bad", [-1, 256, 1.5, True, "5"])
def test_priority_outside_0_255_is_refused(bad: Any) -> None:
    with pytest.raises(MessageValidationError, match=r"ComputeResponse\.priority: expected int"):
        ComputeResponse(result=1.0, priority=bad)


@pytest.mark.parametrize("good", [0, 255, np.uint8(9)])
def test_priority_bounds_are_accepted(good: Any) -> None:
    assert ComputeResponse(result=1.0, priority=good).priority == int(good)


def test_bool_is_not_an_int_or_float() -> None:
    @message
    class Counts:
        n: int

    with pytest.raises(MessageValidationError, match=r"Counts\.n: expected int, got bool"):
        Counts(n=True)
    with pytest.raises(MessageValidationError, match=r"expected float, got bool"):
        ComputeResponse(result=False)


def test_list_items_are_coerced_and_errors_name_the_index() -> None:
    @message
    class ComputeRequest:
        values: list[float]

    assert ComputeRequest(values=[1, 2, 3]).values == [1.0, 2.0, 3.0]
    assert ComputeRequest(values=(1.5,)).values == [1.5]
    with pytest.raises(
        MessageValidationError, match=r"ComputeRequest\.values\[2\]: expected float"
    ):
        ComputeRequest(values=[1, 2, "x"])
    with pytest.raises(MessageValidationError, match=r"values: expected list\[float\], got str"):
        ComputeRequest(values="123")


def test_containers_optional_union_literal_enum() -> None:
    @message
    class Mixed:
        pair: tuple[int, str]
        many: tuple[float, ...]
        table: dict[str, list[int]]
        tags: set[str]
        maybe: int | None
        either: int | str
        mode: Literal["fast", "slow"]
        color: Color

    m = Mixed(
        pair=[1, "a"],
        many=[1, 2],
        table={"k": (1, 2)},
        tags=["a", "b"],
        maybe=None,
        either="x",
        mode="fast",
        color="red",
    )
    assert m.pair == (1, "a") and m.many == (1.0, 2.0) and m.table == {"k": [1, 2]}
    assert m.tags == {"a", "b"} and m.color is Color.RED
    with pytest.raises(MessageValidationError, match=r"Mixed\.mode: expected 'fast' \| 'slow'"):
        dataclasses.replace(m, mode="medium")
    with pytest.raises(
        MessageValidationError, match=r"Mixed\.pair: expected tuple\[int, str\] \(2"
    ):
        dataclasses.replace(m, pair=(1, "a", 3))
    with pytest.raises(MessageValidationError, match=r"Mixed\.table\['k'\]\[1\]: expected int"):
        dataclasses.replace(m, table={"k": [1, "no"]})


def test_numpy_scalars_and_arrays() -> None:
    @message
    class Numeric:
        small: np.int8
        x: np.float32
        arr: npt.NDArray[np.float64]
        fixed: Array[np.float32, 4]

    n = Numeric(small=5, x=1.5, arr=[1, 2], fixed=[1, 2, 3, 4])
    assert type(n.small) is np.int8 and type(n.x) is np.float32
    assert n.arr.dtype == np.float64 and n.fixed.dtype == np.float32 and n.fixed.shape == (4,)
    with pytest.raises(
        MessageValidationError, match=r"Numeric\.small: expected np\.int8, got int 300"
    ):
        dataclasses.replace(n, small=300)
    with pytest.raises(MessageValidationError, match=r"shape \(4,\), got \(3,\)"):
        dataclasses.replace(n, fixed=[1, 2, 3])
    with pytest.raises(
        MessageValidationError, match=r"Numeric\.arr: expected np\.ndarray of float64"
    ):
        dataclasses.replace(n, arr=["a", "b"])
    with pytest.raises(MessageValidationError, match="fixed: expected Array"):
        dataclasses.replace(n, fixed=np.ones(4, dtype=np.complex64))


def test_values_out_of_the_range_of_a_float_dtype_are_refused() -> None:
    @message
    class Narrow:
        x: np.float32
        z: np.complex64
        a: Array[np.float32, 2]

    ok = Narrow(x=1.0, z=1 + 2j, a=[1.0, float("inf")])  # infinities stay infinities
    assert np.isinf(ok.a[1])
    with pytest.raises(MessageValidationError, match=r"Narrow\.x: expected np\.float32"):
        Narrow(x=1e300, z=0, a=[0, 0])
    with pytest.raises(MessageValidationError, match=r"Narrow\.z: expected np\.complex64"):
        Narrow(x=0, z=1e300, a=[0, 0])
    with pytest.raises(MessageValidationError, match=r"Narrow\.a: .*out of the range of float32"):
        Narrow(x=0, z=0, a=[1e300, 0])


def test_nested_messages_accept_instances_or_dicts() -> None:
    @message
    class Outer:
        inner: ComputeResponse

    o = Outer(inner={"result": 2})
    assert o.inner.result == 2.0
    with pytest.raises(MessageValidationError, match=r"Outer\.inner\.result: expected float"):
        Outer(inner={"result": "two"})


def test_ids_accept_uuid_strings_and_reject_garbage() -> None:
    u = uuid4()
    r = ComputeResponse(result=1, message_id=str(u), correlation_id=u.bytes)
    assert r.message_id == u and r.correlation_id == u
    with pytest.raises(MessageValidationError, match=r"ComputeResponse\.message_id: expected UUID"):
        ComputeResponse(result=1, message_id="not-a-uuid")
    with pytest.raises(MessageValidationError, match=r"correlation_id: expected UUID \| None"):
        r.correlation_id = 12


def test_message_id_is_fixed_once_read_and_kept_by_copy_and_pickle() -> None:
    r = ComputeResponse(result=1)
    c = copy.copy(r)  # copied before anyone read the id
    assert c.message_id == r.message_id
    assert pickle.loads(pickle.dumps(r)) == r
    assert ComputeResponse(result=1).message_id != ComputeResponse(result=1).message_id


def test_default_ids_are_read_copied_and_serialized_without_being_stored_first() -> None:
    # The constructor leaves a default correlation id (and an automatic message id) out of
    # the instance dict; every way of reading the message still sees them.
    r = ComputeResponse(result=1, correlation_id=None)
    assert "correlation_id" not in vars(r) and "message_id" not in vars(r)
    assert dataclasses.asdict(r)["correlation_id"] is None
    assert "correlation_id=None" in repr(r)
    assert dataclasses.replace(r, result=2).correlation_id is None
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.correlation_id is None and back.message_id == r.message_id
    decoded = ComputeResponse.from_bytes(ComputeResponse(result=3).to_bytes())  # type: ignore[attr-defined]
    assert decoded.correlation_id is None and decoded.result == 3.0
    u = uuid4()
    assert ComputeResponse(result=1, correlation_id=u).correlation_id == u


def test_reply_correlates_and_inherits_priority() -> None:
    req = Request("q", priority=200)
    same = req.reply(data="a")
    assert isinstance(same, Request) and same.data == "a"
    assert same.correlation_id == req.message_id and same.message_id != req.message_id
    assert same.priority == 200
    other = req.reply(ComputeResponse, result=3, priority=5)
    assert other.correlation_id == req.message_id and other.priority == 5
    with pytest.raises(MessageDefinitionError, match="reply\\(\\) needs a @message class"):
        req.reply(dict, a=1)


def test_equality_compares_arrays_by_value() -> None:
    @message
    class Blob:
        a: np.ndarray

    x = Blob(a=np.arange(3))
    y = copy.deepcopy(x)
    assert x == y
    y.a[0] = 9
    assert x != y


def test_user_post_init_runs_after_validation() -> None:
    seen = []

    @message
    class Checked:
        x: float

        def __post_init__(self) -> None:
            seen.append(type(self.x))

    Checked(x=3)
    assert seen == [float]


def test_definition_errors_are_clear() -> None:
    with pytest.raises(MessageDefinitionError, match="field name 'reply' is taken"):

        @message
        class Bad:
            reply: int

    with pytest.raises(MessageDefinitionError, match="standard field priority must be"):

        @message
        class BadPriority:
            priority: str

    with pytest.raises(MessageDefinitionError, match="slots=True"):

        @message
        @dataclass(slots=True)
        class Slotted:
            x: int

    with pytest.raises(MessageDefinitionError, match="decorates a class"):
        message(42)  # type: ignore[call-overload]


def test_arbitrary_classes_are_checked_with_isinstance() -> None:
    class Thing:
        pass

    @message
    class Holder:
        thing: Thing

    Holder(thing=Thing())
    with pytest.raises(MessageValidationError, match=r"Holder\.thing: expected Thing, got int"):
        Holder(thing=1)


def test_generated_init_keeps_dataclass_semantics() -> None:
    @message
    @dataclass(kw_only=True)
    class Options:
        name: str
        tags: list[str] = field(default_factory=list)
        weight: float = 1
        derived: int = field(init=False, default=0)

        def __post_init__(self) -> None:
            self.derived = len(self.tags)

    a, b = Options(name="a"), Options(name="b", tags=("x", "y"), weight=2)
    assert a.tags == [] and a.tags is not Options(name="c").tags  # a fresh list each time
    assert a.weight == 1.0 and type(a.weight) is float  # the default is coerced too
    assert b.tags == ["x", "y"] and b.derived == 2 and b.weight == 2.0
    params = inspect.signature(Options).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert "derived" not in params
    with pytest.raises(TypeError, match="positional"):
        Options("a")  # type: ignore[misc]
    assert Options.from_bytes(b.to_bytes()) == b  # type: ignore[attr-defined]


def test_init_false_fields_are_validated_after_post_init() -> None:
    @message
    @dataclass
    class Late:
        x: int
        half: float = field(init=False)

        def __post_init__(self) -> None:
            self.half = self.x / 2 if self.x >= 0 else "negative"  # type: ignore[assignment]

    assert Late(3).half == 1.5
    with pytest.raises(MessageValidationError, match=r"Late\.half: expected float, got str"):
        Late(-1)


def test_frozen_messages_build_and_decode() -> None:
    @message
    @dataclass(frozen=True)
    class Point:
        x: float
        y: float

    p = Point(1, 2)
    back = Point.from_bytes(p.to_bytes())  # type: ignore[attr-defined]
    assert back == p and hash(back) == hash(p) and type(back.x) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.x = 3.0  # type: ignore[misc]


def test_a_class_with_its_own_init_keeps_it() -> None:
    @message
    class Custom:
        x: float

        def __init__(self, value: str) -> None:
            self.x = float(value)
            self.__post_init__()

    c = Custom("2")
    assert c.x == 2.0 and c.priority == 128 and isinstance(c.message_id, UUID)
    back = Custom.from_bytes(c.to_bytes())  # type: ignore[attr-defined]
    assert back.x == 2.0 and back.message_id == c.message_id


def test_a_custom_setattr_still_decodes() -> None:
    seen: list[str] = []

    @message
    class Watched:
        x: int

        def __setattr__(self, name: str, value: Any) -> None:
            seen.append(name)
            object.__setattr__(self, name, value)

    w = Watched(x=1)
    assert "x" in seen
    assert Watched.from_bytes(w.to_bytes()).x == 1  # type: ignore[attr-defined]


def test_a_plain_dataclass_subclass_of_a_message_is_validated() -> None:
    @dataclass
    class Sub(ComputeResponse):
        extra: int = 0

    s = Sub(result=2, extra=1)
    assert s.result == 2.0 and type(s.result) is float
    with pytest.raises(MessageValidationError, match=r"Sub\.result: expected float"):
        Sub(result="x")


def test_fields_may_be_named_like_builtins_and_generated_locals() -> None:
    @message
    class Odd:
        type: str
        self: int
        e: float
        v: list[int]
        d: dict[str, int]
        o: bytes

    m = Odd(type="t", self=1, e=2, v=(3,), d={"k": 4}, o=b"5")
    assert (m.type, m.self, m.e, m.v, m.d, m.o) == ("t", 1, 2.0, [3], {"k": 4}, b"5")
    assert Odd.from_bytes(m.to_bytes()) == m  # type: ignore[attr-defined]
    with pytest.raises(MessageValidationError, match=r"Odd\.e: expected float, got str"):
        Odd(type="t", self=1, e="x", v=[], d={}, o=b"")
