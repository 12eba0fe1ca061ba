"""The send form: fields from a kernel's input message type, values checked by the message.

Text typed into a field is read as a Python literal (``[1, 2, 3]``, ``2.5``, ``True``,
``"text"``), except for ``str`` fields, which take the text as it is. The message class then
validates and coerces the values itself, so the form accepts exactly what code could pass and
its errors are the message's own (``ComputeRequest.values[1]: expected float, got str ...``).
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import DashboardError

__all__ = ["ANY_FIELD", "FormField", "build_message", "form_fields"]

_SKIPPED = ("message_id", "correlation_id")  # made by the message itself
ANY_FIELD = "message"  # the one field of a kernel that takes any object


@dataclass(frozen=True)
class FormField:
    """One input of the send form."""

    name: str
    type_name: str  # the annotation, as shown next to the input
    default: str  # text the input starts with ("" for a required field)
    required: bool
    raw_text: bool  # a str field: the text is the value, not a literal
    text_fallback: bool = False  # a union with str: text that is no literal is the string


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _takes_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and str in typing.get_args(annotation)


def form_fields(message_type: type | None) -> list[FormField]:
    """The inputs of the send form for a kernel taking ``message_type`` (``None``: anything).

    Raises
    ------
    DashboardError
        ``message_type`` is a class the form cannot build (not a dataclass or ``@message``).
    """
    if message_type is None:
        return [FormField(ANY_FIELD, "any Python literal", "", True, raw_text=False)]
    if not dataclasses.is_dataclass(message_type):
        raise DashboardError(
            f"the send form cannot build a {message_type.__name__}: it is not a @message or "
            "dataclass type; send it from code with await runtime.send(...)"
        )
    try:
        hints = typing.get_type_hints(message_type)
    except NameError:
        # Annotations naming types local to a function: show them as written.
        hints = {}
    out: list[FormField] = []
    for f in dataclasses.fields(message_type):
        if not f.init or f.name in _SKIPPED:
            continue
        annotation = hints.get(f.name, f.type)
        raw = annotation is str
        if f.default is not dataclasses.MISSING:
            default = f.default if raw and isinstance(f.default, str) else repr(f.default)
        else:
            default = ""
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fallback = _takes_str(annotation)
        out.append(FormField(f.name, _type_name(annotation), default, required, raw, fallback))
    return out


_KINDS = {
    ast.Call: "a function call",
    ast.Attribute: "an attribute lookup",
    ast.BinOp: "a calculation",
    ast.BoolOp: "a logical expression",
    ast.Compare: "a comparison",
    ast.Subscript: "an indexing expression",
    ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
}


def _why_not_a_literal(text: str) -> str:
    """Why ``ast.literal_eval`` refused ``text``, in words (its own error names AST nodes)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return f"it is not valid Python ({exc.msg})"
    node = tree.body
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            return (
                f"{sub.id} is a name, not a value; to send it as text, put it in quotes: {sub.id!r}"
            )
    for sub in ast.walk(node):
        kind = _KINDS.get(type(sub))
        if kind is not None:
            return f"it contains {kind}; the form takes plain values only"
    return "it is not a plain value"


def _parse(f: FormField, text: str) -> Any:
    if f.raw_text:
        return text
    stripped = text.strip()
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if f.text_fallback:
            return text  # e.g. str | None: unquoted text is the string
        raise DashboardError(
            f"field {f.name!r} ({f.type_name}): cannot read {text!r} as a value: "
            f"{_why_not_a_literal(stripped)}; type a literal such as 42, 2.5, [1.0, 2.0], "
            "True or 'text'"
        ) from None


def build_message(message_type: type | None, texts: Mapping[str, str]) -> Any:
    """Build the message the form describes, validated by the message class itself.

    Parameters
    ----------
    message_type:
        The kernel's input type (``None``: the ``message`` field's value is sent as it is).
    texts:
        Field name to the text typed in its input.

    Raises
    ------
    DashboardError
        A required field is empty or a value is not a Python literal.
    MessageValidationError
        A value does not fit its field (the message's own check).
    """
    fields = form_fields(message_type)
    values: dict[str, Any] = {}
    for f in fields:
        text = texts.get(f.name, "")
        if not text.strip() and not (f.raw_text and text):
            if f.required:
                raise DashboardError(
                    f"field {f.name!r} ({f.type_name}) is required; type a value for it"
                )
            continue
        values[f.name] = _parse(f, text)
    if message_type is None:
        return values[ANY_FIELD]
    return message_type(**values)
