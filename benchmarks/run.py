"""Run benchmarks and print a Markdown section for docs/benchmarks.md.

Usage: ``python benchmarks/run.py [roundtrip throughput codec ...]`` (default: all host ones).
Each figure comes with its baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import gpu, machine, today

HOST = ["roundtrip", "throughput", "codec"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=HOST, help=f"benchmarks (default {HOST})")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    print(f"### {today()}: {machine()}")
    if g := gpu():
        print(f"\nGPU: {g}")
    print("\n| benchmark | ours | baseline (same run) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    raw = []
    for name in args.names:
        module = importlib.import_module(f"bench_{name}")
        for r in module.run():
            print(r.row(), flush=True)
            raw.append(r.__dict__)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
