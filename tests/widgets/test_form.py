"""The send form: fields from the input message type, values checked by the message."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pydotcompute import MessageValidationError, message
from pydotcompute_widgets import DashboardError, build_message, form_fields


@message
class Order:
    symbol: str
    quantity: int
    prices: list[float]
    note: str | None = None
    urgent: bool = False


def test_fields_follow_the_message_declaration_without_the_ids() -> None:
    fields = form_fields(Order)
    names = ["symbol", "quantity", "prices", "note", "urgent", "priority"]
    assert [f.name for f in fields] == names
    by_name = {f.name: f for f in fields}
    assert by_name["symbol"].raw_text and by_name["symbol"].required
    assert by_name["prices"].type_name == "list[float]" and not by_name["prices"].raw_text
    assert by_name["note"].default == "None" and by_name["note"].text_fallback
    assert by_name["urgent"].default == "False" and not by_name["urgent"].required
    assert by_name["priority"].default == "128"


def test_values_are_read_as_literals_and_coerced_by_the_message() -> None:
    msg = build_message(
        Order, {"symbol": "ACME", "quantity": "3", "prices": "[1, 2.5]", "note": "rush",
                "urgent": "True", "priority": "200"}
    )  # fmt: skip
    assert isinstance(msg, Order)
    assert (msg.symbol, msg.quantity, msg.prices, msg.note, msg.urgent, msg.priority) == (
        "ACME", 3, [1.0, 2.5], "rush", True, 200,
    )  # fmt: skip


def test_empty_optional_fields_take_their_defaults() -> None:
    msg = build_message(Order, {"symbol": "X", "quantity": "1", "prices": "[]", "note": ""})
    assert msg.note is None and msg.urgent is False and msg.priority == 128


def test_a_missing_required_field_says_which() -> None:
    with pytest.raises(DashboardError, match=r"field 'quantity' \(int\) is required"):
        build_message(Order, {"symbol": "X", "prices": "[]"})


def test_text_that_is_no_literal_says_how_to_type_one() -> None:
    with pytest.raises(
        DashboardError,
        match=r"field 'prices' \(list\[float\]\): cannot read '\[1, 2' as a value: it is not "
        r"valid Python",
    ):
        build_message(Order, {"symbol": "X", "quantity": "1", "prices": "[1, 2"})


def test_a_value_of_the_wrong_type_gets_the_message_own_error() -> None:
    with pytest.raises(MessageValidationError, match=r"Order\.quantity: expected int, got str"):
        build_message(Order, {"symbol": "X", "quantity": "'many'", "prices": "[]"})


def test_a_kernel_without_input_type_sends_the_literal() -> None:
    assert [f.name for f in form_fields(None)] == ["message"]
    assert build_message(None, {"message": "{'a': [1, 2]}"}) == {"a": [1, 2]}


def test_plain_dataclasses_work_and_other_classes_are_refused() -> None:
    @dataclasses.dataclass
    class Point:
        x: float
        y: float = 0.0

    assert build_message(Point, {"x": "1.5"}) == Point(1.5, 0.0)
    with pytest.raises(DashboardError, match="cannot build a int: it is not a @message"):
        form_fields(int)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("foo", "foo is a name, not a value; to send it as text, put it in quotes: 'foo'"),
        ("[1, x]", "x is a name, not a value"),
        ("2 ** 10", "it contains a calculation; the form takes plain values only"),
    ],
)
def test_text_that_is_no_literal_says_why_in_words(text: str, reason: str) -> None:
    with pytest.raises(DashboardError, match=re.escape(reason)) as info:
        build_message(Order, {"symbol": "X", "quantity": "1", "prices": text})
    assert "ast." not in str(info.value) and "0x" not in str(info.value)
