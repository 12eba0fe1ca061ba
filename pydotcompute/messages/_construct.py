"""Generated construction code: a message class's ``__init__`` and ``__post_init__``.

``__init__`` takes the dataclass signature (defaults, factories, keyword-only fields,
``InitVar`` parameters), checks and coerces each argument on its local variable (an inline
``type(v) is float`` first, the field's adapter only when a value needs coercing), stores the
attributes, then runs the class's own ``__post_init__`` and the checks of ``init=False``
fields. ``__post_init__`` runs the same checks on ``self.__dict__`` for an ``__init__`` not
generated here (a class's own, or a plain ``@dataclass`` subclass of a message).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from ._types import Invalid

__all__ = ["FACTORY", "Source", "constructor", "initvar_defaults", "late_block", "validator"]

FACTORY = object()  # default of a parameter whose field has a default_factory


class Source:
    """Lines of generated code and the names they refer to."""

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns

    def const(self, value: Any, hint: str) -> str:
        """A global name for ``value`` in the generated code."""
        name = f"_pdc_{hint}{len(self.ns)}"
        self.ns[name] = value
        return name


def _coerce_block(key: str, i: int, check: str, var: str, indent: str, on_error: str) -> list[str]:
    """Coerce ``var`` in place with field ``i``'s adapter when ``check`` says it must."""
    cond = check.format(v=var)
    body = [
        "try:",
        f"    {var} = _pdc_c{i}({var})",
        "except _pdc_Invalid as e:",
        f"    {on_error}",
    ]
    if cond == "True":
        return [indent + line for line in body]
    return [f"{indent}if {cond}:", *(indent + "    " + line for line in body)]


def _mve(key: str, me: str = "self") -> str:
    """Raise MessageValidationError naming the instance's own class (a subclass included)."""
    return (
        f"raise _pdc_MVE(_pdc_type({me}).__name__, {key} + e.path, e.value, e.expected) from None"
    )


def _mve_init(key: str) -> str:
    return _mve(key, "_pdc_self")


def late_block(
    late: list[dataclasses.Field[Any]], fields: tuple[Any, ...], checks: dict[str, str], err: Any
) -> list[str]:
    """Checks of ``init=False`` fields, on ``d``, after the user's ``__post_init__``."""
    out: list[str] = []
    index = {f.name: i for i, f in enumerate(fields)}
    for f in late:
        key = repr(f.name)
        out += [f"    v = _pdc_d.get({key}, _pdc_d)", "    if v is not _pdc_d:"]
        out += _coerce_block(key, index[f.name], checks[f.name], "v", "        ", err(key))
        out.append(f"        _pdc_d[{key}] = v")
    return out


def validator(
    fields: tuple[Any, ...], checks: dict[str, str], user_post: Any, late: list[Any]
) -> list[str]:
    """``__post_init__``: validation on ``self.__dict__``, for ``__init__``s not generated here
    (a class's own ``__init__``, or a plain @dataclass subclass of a message)."""
    lines = ["def __post_init__(self, *initvars):", "    _pdc_d = self.__dict__"]
    for i, f in enumerate(fields):
        if not f.init or f.name in ("message_id", "correlation_id"):
            continue  # ids: validated by their descriptors on assignment
        key = repr(f.name)
        lines += [f"    v = _pdc_d.get({key}, _pdc_d)", "    if v is not _pdc_d:"]
        lines += _coerce_block(key, i, checks[f.name], "v", "        ", _mve(key))
        lines.append(f"        _pdc_d[{key}] = v")
    if user_post is not None:
        lines.append("    _pdc_user(self, *initvars)")
    return lines + late_block(late, fields, checks, _mve)


def initvar_defaults(init_signature: inspect.Signature | None, fields: tuple[Any, ...]) -> Any:
    """Defaults of the InitVar parameters, in order, or the name of one without a default."""
    if init_signature is None:
        return ()
    names = {f.name for f in fields}
    values = []
    for p in list(init_signature.parameters.values())[1:]:
        if p.name not in names:
            if p.default is inspect.Parameter.empty:
                return p.name
            values.append(p.default)
    return tuple(values)


def constructor(
    fields: tuple[Any, ...],
    checks: dict[str, str],
    user_post: Any,
    late: list[Any],
    init_signature: inspect.Signature,
    frozen: bool,
    src: Source,
) -> list[str]:
    """``__init__``: the dataclass signature, coercion on locals, then the attributes."""
    by_name = {f.name: (i, f) for i, f in enumerate(fields)}
    params = list(init_signature.parameters.values())[1:]
    sig: list[str] = []
    defaults: dict[str, str] = {}
    star = False
    for p in params:
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            sig.append("*")
            star = True
        f = by_name.get(p.name, (None, None))[1]
        if f is not None and f.default_factory is not dataclasses.MISSING:
            sig.append(f"{p.name}=_pdc_FACTORY")
        elif p.default is not inspect.Parameter.empty:
            defaults[p.name] = src.const(p.default, "dflt")
            sig.append(f"{p.name}={defaults[p.name]}")
        else:
            sig.append(p.name)
    body: list[str] = []
    for f in fields:
        if f.init and f.default_factory is not dataclasses.MISSING:
            body += [
                f"    if {f.name} is _pdc_FACTORY:",
                f"        {f.name} = {src.const(f.default_factory, 'factory')}()",
            ]
    stores: list[str] = []
    for i, f in enumerate(fields):
        key = repr(f.name)
        if f.name in ("message_id", "correlation_id"):
            continue
        if f.init:
            check = checks[f.name]
            if check != "True" and _default_is_valid(f, src.ns[f"_pdc_c{i}"]):
                # The declared default passed the check once: skip it for that object.
                check = f"{{v}} is not {defaults[f.name]} and ({check})"
            body += _coerce_block(key, i, check, f.name, "    ", _mve_init(key))
            value = f.name
        elif f.default is not dataclasses.MISSING:
            value = src.const(f.default, "dflt")
        elif f.default_factory is not dataclasses.MISSING:
            value = f"{src.const(f.default_factory, 'factory')}()"
        else:
            continue  # set by __post_init__, or never
        stores.append(
            f"    _pdc_osa(_pdc_self, {key}, {value})"
            if frozen
            else f"    _pdc_self.{f.name} = {value}"
        )
    body += stores
    # The ids at their defaults are not stored: their descriptors read an absent key as
    # "generate when read" (message_id) and None (correlation_id). Not touching __dict__
    # leaves the instance's attribute values inline, where no dict is made for them.
    names = {f.name for f in fields}
    if "message_id" in names:
        first = f"message_id is {defaults['message_id']} or " if "message_id" in defaults else ""
        body += [
            f"    if {first}message_id is _pdc_AUTO or _pdc_type(message_id) is _pdc_MIF:",
            "        pass",
            "    else:",
            "        _pdc_self.__dict__['message_id'] = "
            "_pdc_cuuid(_pdc_self, 'message_id', message_id)",
        ]
    if "correlation_id" in names:
        body += [
            "    if correlation_id is not None:",
            "        _pdc_self.__dict__['correlation_id'] = "
            "_pdc_cuuid(_pdc_self, 'correlation_id', correlation_id)",
        ]
    if user_post is not None:
        initvars = [p.name for p in params if p.name not in names]
        body.append(f"    _pdc_user(_pdc_self{''.join(', ' + n for n in initvars)})")
    if late:
        body.append("    _pdc_d = _pdc_self.__dict__")
        body += late_block(late, fields, checks, _mve_init)
    return [f"def __init__(_pdc_self, {', '.join(sig)}):", *body]


def _default_is_valid(f: dataclasses.Field[Any], coerce: Any) -> bool:
    """Whether a field's plain default is accepted unchanged by its adapter."""
    if f.default is dataclasses.MISSING:
        return False
    try:
        return coerce(f.default) is f.default
    except Invalid:
        return False
