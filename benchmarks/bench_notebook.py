"""What nest-asyncio2 costs host actors: echo round trip on a patched loop vs a plain one.

In Jupyter the notebook runtime's synchronous magics apply nest-asyncio2 to the kernel's
loop: from then on asyncio creates pure-Python tasks and the loop runs through
nest-asyncio2's own ``_run_once``. This runs ``bench_roundtrip``'s echo round trip (20,000
messages after 2,000 of warm-up) in fresh processes, alternating for several rounds: plain
(the baseline) and with ``nest_asyncio2.apply(loop)`` before the runtime starts. The median
of the rounds' p50 is reported. Target: at most 1.5x the plain loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _harness import Result, median

ROUNDS = 5

_CHILD = """
import asyncio, json, sys
sys.path.insert(0, {here!r})
from _harness import pct
from bench_roundtrip import MESSAGES, WARMUP, Ping, ours
loop = asyncio.new_event_loop()
if {patched}:
    import nest_asyncio2
    nest_asyncio2.apply(loop)
lat = loop.run_until_complete(ours([Ping(seq=i) for i in range(WARMUP + MESSAGES)]))
print(json.dumps([pct(lat, 50) / 1e3, pct(lat, 99) / 1e3]))
"""


def _round(patched: bool) -> tuple[float, float]:
    code = _CHILD.format(here=str(Path(__file__).parent), patched=patched)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    p50, p99 = json.loads(out)
    return p50, p99


def run() -> list[Result]:
    """Run the benchmark and return its result rows."""
    plain50, plain99, nest50, nest99 = [], [], [], []
    for _ in range(ROUNDS):
        a, b = _round(False), _round(True)
        plain50.append(a[0])
        plain99.append(a[1])
        nest50.append(b[0])
        nest99.append(b[1])
    p50, p99, b50, b99 = map(median, (nest50, nest99, plain50, plain99))
    base = "same echo on a plain loop"
    return [
        Result(
            "round trip p50 under nest-asyncio2", p50, b50, "us", base, "<= 1.5x", p50 <= 1.5 * b50
        ),
        Result("round trip p99 under nest-asyncio2", p99, b99, "us", base, "(shown)", True),
    ]


if __name__ == "__main__":
    for r in run():
        print(r.row())
