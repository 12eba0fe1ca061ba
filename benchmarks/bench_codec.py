"""Messages: construction and the msgpack codec, each against a baseline in the same run.

* constructing a 5-field ``@message`` (validated, coerced, with its standard fields) against
  a plain ``@dataclass`` with the same 5 fields (no validation);
* ``to_bytes`` + ``from_bytes`` of that message against ``msgpack.packb`` +
  ``msgpack.unpackb`` of the equivalent 5-key dict (no id, no tag, no validation);
* the same with a 100,000-element float32 array field against ``pickle.dumps`` +
  ``pickle.loads`` (protocol 5) of the equivalent dict holding the array (the decoded array is
  a read-only view of the bytes; the round trip with ``copy=True``, a writable copy, is in the
  row's details).

Each case runs ``ROUNDS`` rounds alternating ours and the baseline; a round takes the best of
``REPEATS`` ``timeit`` repeats (the usual way to take other processes' noise out of a
micro-benchmark), and the figure is the median over rounds. GC stays on, as in real use.
"""

from __future__ import annotations

import pickle
import statistics
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import numpy as np
import numpy.typing as npt
from _harness import Result

from pydotcompute import message

ROUNDS = 5
REPEATS = 5
ARRAY_SIZE = 100_000


@message
class Tick:
    symbol: str
    price: float
    size: int
    buy: bool
    venue: int


@dataclass
class PlainTick:
    symbol: str
    price: float
    size: int
    buy: bool
    venue: int


@message
class Frame:
    symbol: str
    price: float
    size: int
    buy: bool
    venue: int
    samples: npt.NDArray[np.float32]


def _side_by_side(
    ours: Callable[[], object], base: Callable[[], object], loops: int
) -> tuple[float, float]:
    """Median over alternating rounds of the best per-call time, in microseconds."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(ROUNDS):
        a.append(min(timeit.repeat(ours, number=loops, repeat=REPEATS)) / loops * 1e6)
        b.append(min(timeit.repeat(base, number=loops, repeat=REPEATS)) / loops * 1e6)
    return statistics.median(a), statistics.median(b)


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    results = []

    def build() -> object:
        return Tick("ACME", 101.25, 300, True, 7)

    def build_plain() -> object:
        return PlainTick("ACME", 101.25, 300, True, 7)

    a, b = _side_by_side(build, build_plain, 200_000)
    results.append(
        Result(
            "construct a 5-field @message", a, b, "us", "plain @dataclass", "<= 2x",
            a <= 2 * b,
        )
    )  # fmt: skip

    tick = build()
    as_dict = {"symbol": "ACME", "price": 101.25, "size": 300, "buy": True, "venue": 7}
    to_bytes, from_bytes = tick.to_bytes, Tick.from_bytes  # type: ignore[attr-defined]
    packb, unpackb = msgpack.packb, msgpack.unpackb
    a, b = _side_by_side(lambda: from_bytes(to_bytes()), lambda: unpackb(packb(as_dict)), 100_000)
    results.append(
        Result(
            "to_bytes + from_bytes (5 fields)", a, b, "us", "msgpack packb/unpackb of a dict",
            "<= 1.0x", a <= b,
            {"message_bytes": len(to_bytes()), "dict_bytes": len(packb(as_dict))},
        )
    )  # fmt: skip

    samples = np.random.default_rng(0).random(ARRAY_SIZE, dtype=np.float32)
    frame = Frame("ACME", 101.25, 300, True, 7, samples)
    frame_dict = {**as_dict, "samples": samples}
    frame_to, frame_from = frame.to_bytes, Frame.from_bytes  # type: ignore[attr-defined]
    dumps, loads, proto = pickle.dumps, pickle.loads, pickle.HIGHEST_PROTOCOL
    back = frame_from(frame_to())
    assert np.array_equal(back.samples, samples) and not back.samples.flags.writeable
    a, b = _side_by_side(
        lambda: frame_from(frame_to()), lambda: loads(dumps(frame_dict, protocol=proto)), 300
    )
    copied, _ = _side_by_side(lambda: frame_from(frame_to(), copy=True), lambda: None, 300)
    results.append(
        Result(
            f"to_bytes + from_bytes (5 fields + {ARRAY_SIZE:,} float32)", a, b, "us",
            "pickle dumps/loads (protocol 5) of a dict", "<= 2x", a <= 2 * b,
            {"message_bytes": len(frame_to()), "pickle_bytes": len(dumps(frame_dict, proto)),
             "from_bytes_copy_true_us": copied},
        )
    )  # fmt: skip
    return results


def breakdown() -> dict[str, float]:
    """Where the time of building and decoding a Tick goes: each step timed on its own (us).

    The steps are what the generated code does, in order, so the differences between lines
    are the cost of each step.
    """
    tick = Tick("ACME", 101.25, 300, True, 7)
    data = tick.to_bytes()  # type: ignore[attr-defined]
    items = msgpack.unpackb(data)
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    new, cls, unpackb = object.__new__, Tick, msgpack.unpackb
    info = Tick.__pdc_message__  # type: ignore[attr-defined]
    typed = Tick.from_bytes.__globals__.get("_pdc_typed")  # type: ignore[attr-defined]

    def new_only() -> object:
        return new(cls)

    def new_and_stores() -> object:
        s = new(cls)
        s.symbol, s.price, s.size, s.buy, s.venue, s.priority = "ACME", 101.25, 300, True, 7, 128
        return s

    def with_id_dict() -> object:
        s = new_and_stores()
        s.__dict__["message_id"] = data  # what decoding adds: the id's bytes, in the dict
        return s

    steps = {
        "plain @dataclass(...)": lambda: PlainTick("ACME", 101.25, 300, True, 7),
        "object.__new__": new_only,
        "+ 6 attribute stores": new_and_stores,
        "+ an id in the instance dict (decoding)": with_id_dict,
        "Tick(...) (+ checks, defaults, the call)": lambda: Tick("ACME", 101.25, 300, True, 7),
        "msgpack.unpackb(data)": lambda: unpackb(data),
    }
    if typed is not None:  # msgspec installed: its typed decoding, checks included
        steps["msgspec typed decode(data)"] = lambda: typed(data)
    steps |= {
        "Tick.from_bytes, msgpack alone": lambda: info.from_bytes_msgpack(data),
        "Tick.from_bytes(data)": lambda: Tick.from_bytes(data),  # type: ignore[attr-defined]
        "packer.pack(list)": lambda: packer.pack(items),
        "tick.to_bytes()": tick.to_bytes,  # type: ignore[attr-defined]
    }
    out = {}
    for name, fn in steps.items():
        out[name] = min(timeit.repeat(fn, number=100_000, repeat=REPEATS)) / 100_000 * 1e6
    return out


if __name__ == "__main__":
    import sys

    if "--breakdown" in sys.argv:
        for step, us in breakdown().items():
            print(f"{step:45s} {us:.3f} us")
    else:
        for r in run():
            print(r.row())
