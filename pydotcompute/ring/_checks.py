"""Arguments every runtime verb shares: timeouts and kernel ids, checked in one place.

A refused argument raises before the verb changes anything, so a caller that retries with a
corrected argument never gets a duplicate.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["check_kernel_id", "check_timeout", "id_list"]

_INF = math.inf


def check_timeout(timeout: Any, verb: str) -> float | None:
    """Return ``timeout`` as seconds to wait, or ``None`` to wait without limit.

    ``None`` and ``math.inf`` both mean "no limit"; ``0`` means "do not wait" (the call
    fails at once if it would have to wait). NaN, negative numbers, bools and anything that
    is not a real number are refused with :class:`InvalidArgumentError`.
    """
    if timeout is None:
        return None
    t = type(timeout)
    if (t is float or t is int) and 0 <= timeout < _INF:  # NaN fails both comparisons
        return timeout
    return _slow_timeout(timeout, verb)


def _slow_timeout(timeout: Any, verb: str) -> float | None:
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise InvalidArgumentError(
            f"{verb}(timeout={timeout!r}): expected a number of seconds >= 0 or None, got a "
            f"{type(timeout).__name__}; pass e.g. timeout=5.0, or None to wait without limit"
        )
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise InvalidArgumentError(
            f"{verb}(timeout={timeout!r}): expected a number of seconds >= 0 or None; pass "
            "e.g. timeout=5.0, timeout=0 not to wait, or None to wait without limit"
        )
    return None if value == _INF else value


def check_kernel_id(kernel_id: Any, verb: str) -> None:
    """Refuse a kernel id that is not a non-empty ``str``."""
    if type(kernel_id) is str and kernel_id:
        return
    if isinstance(kernel_id, str) and kernel_id:
        return  # a str subclass is still a str
    got = "an empty str" if kernel_id == "" else f"a {type(kernel_id).__name__}"
    raise InvalidArgumentError(
        f"{verb}(kernel_id={_short(kernel_id)}): a kernel id is a non-empty str, got {got}; "
        'pass the name the kernel was registered or launched under, e.g. "summer"'
    )


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def id_list(ids: Any) -> str:
    """Kernel ids for an error message, sorted (as strings, so mixed keys never fail)."""
    return ", ".join(sorted(map(str, ids))) or "none"
