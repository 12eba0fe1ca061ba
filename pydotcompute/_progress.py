"""Progress of long builds: compiling a device ring kernel or a ``@kernel`` variant.

A build reports a ``started`` event before it compiles (or loads from the disk cache) and a
``finished`` or ``failed`` event after, to every listener added with
:func:`add_build_listener`, and to the ``"pydotcompute"`` logger at ``INFO``. The Jupyter
extension listens to show "compiling ..." in the cell while it happens; the core itself never
imports IPython.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["BuildEvent", "add_build_listener", "build_step"]

log = logging.getLogger("pydotcompute")

_TARGETS = {
    "cuda": "CUDA",
    "emulated": "the emulated device",
    "cpu": "the CPU",
}

_listeners: list[Callable[[BuildEvent], None]] = []
_lock = threading.Lock()
_ids = itertools.count(1)


@dataclass(frozen=True)
class BuildEvent:
    """One step of a build: it ``started``, ``finished`` or ``failed``.

    Attributes
    ----------
    build_id:
        Number shared by the events of one build (in this process).
    what:
        What is built: ``"ring kernel 'levels'"`` or ``"@kernel saxpy"``.
    target:
        ``"cuda"``, ``"emulated"`` or ``"cpu"``.
    phase:
        ``"started"``, ``"finished"`` or ``"failed"``.
    cached:
        ``True`` when the compiled code comes from the disk cache, ``False`` when it is
        compiled; ``None`` in a ``started`` event when that is not known yet (Numba looks in
        its own cache while it compiles) and in a ``failed`` one.
    seconds:
        How long the build took (``None`` in a ``started`` event).
    detail:
        The compiler, the argument types, or the error of a failed build.
    """

    build_id: int
    what: str
    target: str
    phase: str
    cached: bool | None
    seconds: float | None = None
    detail: str = ""

    def describe(self) -> str:
        """One line saying what happens or happened, for people."""
        where = _TARGETS.get(self.target, self.target)
        detail = f" ({self.detail})" if self.detail else ""
        if self.phase == "started":
            if self.cached is None:
                how = "compiling, unless it is in the disk cache"
            else:
                how = "loading from the cache" if self.cached else "compiling"
            return f"{how}: {self.what} for {where}{detail} ..."
        if self.phase == "failed":
            return f"failed to build {self.what} for {where}{detail}"
        seconds = self.seconds or 0.0
        if self.cached:
            return f"loaded {self.what} for {where} from the cache in {seconds:.2f} s{detail}"
        return f"compiled {self.what} for {where} in {seconds:.2f} s{detail}"


def add_build_listener(listener: Callable[[BuildEvent], None]) -> Callable[[], None]:
    """Call ``listener(event)`` for every :class:`BuildEvent`; returns a function removing it.

    Listeners are called in the thread that builds (device ring kernels build in a worker
    thread, ``@kernel`` variants in the caller's), so a listener that updates a user interface
    hands the event to its own thread. An exception a listener raises propagates to the build.
    """
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _emit(event: BuildEvent) -> None:
    level = logging.DEBUG if event.phase == "started" and event.cached else logging.INFO
    if event.phase == "failed":
        level = logging.WARNING
    log.log(level, "%s", event.describe())
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event)


class BuildStep:
    """The running build handed out by :func:`build_step`; say how it ended with :meth:`done`."""

    __slots__ = ("cached", "detail")

    def __init__(self) -> None:
        self.cached: bool | None = None
        self.detail: str | None = None

    def done(self, cached: bool, detail: str | None = None) -> None:
        """Record whether the result came from the cache (and a detail for the last event)."""
        self.cached = cached
        self.detail = detail


@contextmanager
def build_step(
    what: str, target: str, *, cached: bool | None, detail: str = ""
) -> Iterator[BuildStep]:
    """Report a build: ``started`` now, then ``finished`` (or ``failed`` if the block raises)."""
    build_id = next(_ids)
    _emit(BuildEvent(build_id, what, target, "started", cached, None, detail))
    step = BuildStep()
    t0 = time.perf_counter()
    try:
        yield step
    except BaseException as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        error = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        _emit(BuildEvent(build_id, what, target, "failed", None, time.perf_counter() - t0, error))
        raise
    final = cached if step.cached is None else step.cached
    _emit(
        BuildEvent(
            build_id, what, target, "finished", bool(final), time.perf_counter() - t0,
            detail if step.detail is None else step.detail,
        )
    )  # fmt: skip
