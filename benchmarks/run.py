"""Run benchmarks and print a Markdown section for docs/benchmarks.md.

Usage: ``python benchmarks/run.py [roundtrip throughput codec ...]`` (default: the host ones),
``python benchmarks/run.py --all``, and ``--json FILE`` to also save the results (the date, the
machine, the GPU if any, and every row with its baseline) for ``notebooks/09_benchmarks.ipynb``.
Each figure comes with its baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import gpu, machine, today

HOST = ["roundtrip", "hostpath", "throughput", "pipeline", "codec"]
ALL = [
    *HOST,
    "emulated",
    "device_pipeline",
    "compute",
    "notebook",
    "dashboard",
    "device",
    "cluster",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks (default {HOST})")
    parser.add_argument("--all", action="store_true", help=f"run all of {ALL}")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = ALL if args.all else (args.names or HOST)
    print(f"### {today()}: {machine()}")
    if g := gpu():
        print(f"\nGPU: {g}")
    print("\n| benchmark | ours | baseline (same run) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    results: dict[str, list[dict[str, object]]] = {}
    for name in names:
        module = importlib.import_module(f"bench_{name}")
        rows = module.run()
        for r in rows:
            print(r.row(), flush=True)
        results[name] = [dict(r.__dict__) for r in rows]
    if args.json:
        record = {
            "date": today(),
            "machine": machine(),
            "gpu": gpu(),
            "python": platform.python_version(),
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
