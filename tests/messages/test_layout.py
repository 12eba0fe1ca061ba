"""Fixed layouts: numpy structured dtype, C struct checked by a real compiler, packing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest

from pydotcompute import Array, LayoutError, MessageDefinitionError, fixed_layout, message


@message
class Point:
    x: np.float32
    y: np.float32


@message
class Reading:
    sensor: np.int32
    value: float
    count: int
    ok: bool
    samples: Array[np.float32, 4]
    grid: Array[np.uint8, (2, 3)]
    where: Point
    origin: UUID


@message
class Variable:
    name: str


def test_fixed_layout_dtype_follows_declaration_order_and_alignment() -> None:
    layout = fixed_layout(Reading)
    assert layout is not None
    dt = layout.dtype
    assert dt.names == (
        "sensor", "value", "count", "ok", "samples", "grid", "where", "origin",
        "message_id", "priority", "correlation_id",
    )  # fmt: skip
    assert dt["value"] == np.float64 and dt["count"] == np.int64 and dt["ok"] == np.bool_
    assert dt["samples"].shape == (4,) and dt["grid"].shape == (2, 3)
    assert dt["priority"] == np.uint8 and dt["message_id"] == np.dtype("V16")
    assert dt.fields["value"][1] % 8 == 0 and dt.isalignedstruct
    assert layout.itemsize == dt.itemsize


def test_message_with_variable_field_has_no_layout() -> None:
    assert fixed_layout(Variable) is None
    assert "field 'name' of type str has no fixed size" in Variable.__pdc_message__.layout_problem()


def test_fixed_layout_of_non_message_is_a_clear_error() -> None:
    with pytest.raises(MessageDefinitionError, match="not a message type"):
        fixed_layout(int)


def test_to_array_and_back_keeps_every_field() -> None:
    layout = fixed_layout(Reading)
    assert layout is not None
    msgs = [
        Reading(
            sensor=i, value=i / 2, count=-i, ok=bool(i % 2), samples=[i] * 4,
            grid=np.full((2, 3), i), where=Point(x=i, y=-i), origin=uuid4(),
            priority=i, correlation_id=uuid4() if i else None,
        )
        for i in range(5)
    ]  # fmt: skip
    arr = layout.to_array(msgs)
    assert arr.dtype == layout.dtype and arr.shape == (5,)
    assert arr["where"]["y"][3] == -3
    back = layout.from_array(arr)
    assert back == msgs
    assert back[0].correlation_id is None and back[1].correlation_id == msgs[1].correlation_id
    assert type(back[0].value) is float and type(back[0].sensor) is np.int32


def test_from_array_accepts_user_built_records_with_zero_ids() -> None:
    layout = fixed_layout(Point)
    assert layout is not None
    arr = np.zeros(3, dtype=layout.dtype)
    arr["x"] = [1, 2, 3]
    arr["priority"] = 128
    pts = layout.from_array(arr)
    assert [p.x for p in pts] == [1, 2, 3]
    assert len({p.message_id for p in pts}) == 3  # fresh ids, not the zero id
    assert all(p.correlation_id is None for p in pts)


def test_layout_errors() -> None:
    layout = fixed_layout(Point)
    assert layout is not None
    with pytest.raises(LayoutError, match="item 1 is a Variable, not a Point"):
        layout.to_array([Point(x=1, y=2), Variable(name="v")])
    with pytest.raises(LayoutError, match="does not have the fields of Point"):
        layout.from_array(np.zeros(2, dtype=[("a", "f4")]))


def test_cpp_keyword_field_has_no_layout() -> None:
    @message
    class Keyword:
        new: np.int32

    assert fixed_layout(Keyword) is None
    assert "C++ keyword" in Keyword.__pdc_message__.layout_problem()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler (g++)")
def test_generated_c_struct_compiles_with_matching_offsets(tmp_path: Path) -> None:
    layout = fixed_layout(Reading)
    assert layout is not None
    src = tmp_path / "layout.cpp"
    src.write_text(
        "#include <cstdint>\n#include <cstddef>\n"
        + layout.c_source()
        + f"\nint main() {{ return sizeof({layout.c_name}) == {layout.itemsize} ? 0 : 1; }}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run(["g++", "-std=c++17", str(src), "-o", str(exe)], check=True, timeout=120)
    assert subprocess.run([str(exe)], timeout=30).returncode == 0
