"""to_bytes + from_bytes of a small message (5 scalar fields) against msgpack of a dict.

Both sides are timed with ``timeit`` (best of 7 repeats of 200,000 loops, the usual way to
take the noise of other processes out of a micro-benchmark). Target: <= 1.5 us.
"""

from __future__ import annotations

import timeit

import msgpack
from _harness import Result

from pydotcompute import message

LOOPS = 200_000
REPEATS = 7


@message
class Tick:
    symbol: str
    price: float
    size: int
    buy: bool
    venue: int


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    tick = Tick("ACME", 101.25, 300, True, 7)
    as_dict = {"symbol": "ACME", "price": 101.25, "size": 300, "buy": True, "venue": 7}
    to_bytes, from_bytes = tick.to_bytes, Tick.from_bytes
    packb, unpackb = msgpack.packb, msgpack.unpackb

    def ours() -> None:
        from_bytes(to_bytes())

    def base() -> None:
        unpackb(packb(as_dict))

    a = min(timeit.repeat(ours, number=LOOPS, repeat=REPEATS)) / LOOPS * 1e6
    b = min(timeit.repeat(base, number=LOOPS, repeat=REPEATS)) / LOOPS * 1e6
    return [
        Result(
            "to_bytes + from_bytes (5 fields)", a, b, "us",
            "msgpack packb/unpackb of a dict", "<= 1.5 us", a <= 1.5,
            {"message_bytes": len(tick.to_bytes()), "dict_bytes": len(packb(as_dict))},
        )
    ]  # fmt: skip


if __name__ == "__main__":
    for r in run():
        print(r.row())
