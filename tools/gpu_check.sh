#!/usr/bin/env bash
# One call on a GPU machine: environment, the GPU probe, the gpu-marked tests and the GPU
# benchmarks, with logs and one JSON of results written into OUTDIR (5 small files).
#
#   tools/gpu_check.sh OUTDIR
#
# Run it from the repository root (it cds there). It is built for a short, bare GPU window
# (for example an H200 with Python 3.12, driver 580 / CUDA 13, cupy-cuda13x, numba,
# numba-cuda, numpy, msgpack and pytest installed, and no network) and ends in under 8
# minutes: each stage has its own time limit (GPU_CHECK_PROBE_S, GPU_CHECK_TESTS_S,
# GPU_CHECK_BENCH_S; 200 + 150 + 120 s by default).
#
# Wheels to bring along: the machine has no pytest-asyncio (the test suite's async tests need
# it). Download it here, into .whl/ (ignored by git), and carry .whl with the call:
#     python3 -m pip download --no-deps -d .whl 'pytest-asyncio==1.5.0'
# (a pure-Python wheel; for a compiled one add the --platform / --python-version flags of
# the device README). Any wheel in .whl/ is installed into a private folder before the run.
#
# The GPU's own floor and the persistent-kernel hazards come from probe.py (CuPy alone), run
# when a copy is found: $GPU_CHECK_PROBE, else .gpu-shared/probe.py, else ../shared/gpu/probe.py.
#
# The gpu-marked tests include the CUDA device links (tests/backends/test_device_links.py:
# the [cuda] cases, a 3-kernel pipeline among them; test_device_gpu.py: the link ring in GPU
# memory). The benchmarks include device_pipeline, CUDA variant only
# (PDC_BENCH_DEVICE_PIPELINE=cuda, unless set): linked against relayed through the host.
#
# Without a GPU (a dry run, as CI does) every stage still runs: the environment is printed,
# the probe is skipped with the reason, the gpu-marked tests skip with theirs and the GPU
# benchmarks report no rows. GPU_CHECK_TESTS (test paths, default "tests/backends
# tests/compute") and GPU_CHECK_BENCH (benchmarks, default "device compute device_pipeline")
# narrow a run.
#
# Files written into OUTDIR: env.log, probe.log, tests.log, bench.log, results.json.
set -uo pipefail

if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
    echo "usage: tools/gpu_check.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
out=$(cd "$1" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

python=${PYTHON:-python3}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/pdc-gpu-check.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export PYTHONPATH="$root:$root/widgets${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export PYDOTCOMPUTE_CACHE_DIR="$scratch/cache"  # fresh builds; nothing written into the checkout
started=$(date +%s)

stage() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }

# ---------------------------------------------------------------- wheels brought along
if compgen -G ".whl/*.whl" >/dev/null; then
    stage "installing the wheels in .whl/"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$scratch/site" .whl/*.whl && export PYTHONPATH="$PYTHONPATH:$scratch/site"
fi

# ---------------------------------------------------------------- environment
stage "environment" | tee "$out/env.log"
{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    echo "CUDA_MODULE_LOADING=${CUDA_MODULE_LOADING-<unset>} CUDA_LAUNCH_BLOCKING=${CUDA_LAUNCH_BLOCKING-<unset>}"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
            || echo "nvidia-smi failed"
    else
        echo "nvidia-smi: not found (no NVIDIA driver here)"
    fi
    "$python" - <<'EOF'
import importlib.metadata as md
import platform
import sys

print(f"python {platform.python_version()} at {sys.executable}")
for dist in ("numpy", "msgpack", "cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda",
             "nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc-cu12", "pytest", "pytest-asyncio"):
    try:
        print(f"  {dist:<24} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"  {dist:<24} not installed")
from pydotcompute._cli import info

info()
EOF
} 2>&1 | tee -a "$out/env.log"

if ! "$python" -c 'import pytest_asyncio' 2>/dev/null; then
    echo "WARNING: pytest-asyncio is missing: the async gpu tests cannot run; bring its wheel in .whl/ (see this script's header)" | tee -a "$out/env.log"
fi
gpu=$("$python" -c 'from pydotcompute._cuda import cuda_status as s; print("yes" if s().usable else "no: " + s().reason)' 2>&1 | tail -1)
echo "usable GPU: $gpu" | tee -a "$out/env.log"

# ---------------------------------------------------------------- the GPU probe
probe=${GPU_CHECK_PROBE:-}
for candidate in .gpu-shared/probe.py ../shared/gpu/probe.py; do
    [ -z "$probe" ] && [ -f "$candidate" ] && probe=$candidate
done
stage "probe" | tee "$out/probe.log"
probe_rc=skipped
if [ "${gpu%%:*}" != yes ]; then
    echo "skipped: no usable GPU ($gpu)" | tee -a "$out/probe.log"
elif [ -z "$probe" ]; then
    echo "skipped: no probe.py (copy shared/gpu into .gpu-shared/ and carry it)" | tee -a "$out/probe.log"
else
    timeout "${GPU_CHECK_PROBE_S:-200}" "$python" "$probe" all 2>&1 | tee -a "$out/probe.log"
    probe_rc=${PIPESTATUS[0]}
fi

# ---------------------------------------------------------------- gpu-marked tests
stage "gpu-marked tests" | tee "$out/tests.log"
read -r -a test_paths <<<"${GPU_CHECK_TESTS:-tests/backends tests/compute}"
timeout "${GPU_CHECK_TESTS_S:-150}" "$python" -m pytest -m gpu -p no:cacheprovider -q -rs \
    --junitxml="$scratch/junit.xml" "${test_paths[@]}" 2>&1 | tee -a "$out/tests.log"
tests_rc=${PIPESTATUS[0]}

# ---------------------------------------------------------------- GPU benchmarks
stage "GPU benchmarks" | tee "$out/bench.log"
read -r -a benches <<<"${GPU_CHECK_BENCH:-device compute device_pipeline}"
PDC_BENCH_DEVICE_PIPELINE=${PDC_BENCH_DEVICE_PIPELINE:-cuda} \
    timeout "${GPU_CHECK_BENCH_S:-120}" nice -n 5 "$python" benchmarks/run.py "${benches[@]}" \
    --json "$scratch/bench.json" 2>&1 | tee -a "$out/bench.log"
bench_rc=${PIPESTATUS[0]}

# ---------------------------------------------------------------- one JSON of results
stage "results" >/dev/null
"$python" - "$out/results.json" "$scratch" "$gpu" "$probe_rc" "$tests_rc" "$bench_rc" \
    "$(($(date +%s) - started))" <<'EOF'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

target, scratch, gpu, probe_rc, tests_rc, bench_rc, seconds = sys.argv[1:]
scratch = Path(scratch)
tests = {"exit_code": int(tests_rc)}
junit = scratch / "junit.xml"
if junit.exists():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    tests.update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"]
                 - counts["skipped"])
    tests["not_passed"] = [
        {"test": f"{case.get('classname')}::{case.get('name')}", "outcome": child.tag,
         "message": (child.get("message") or "")[:300]}
        for case in suite.iter("testcase") for child in case
        if child.tag in ("failure", "error", "skipped")
    ][:50]
bench_file = scratch / "bench.json"
bench = json.loads(bench_file.read_text()) if bench_file.exists() else None
record = {
    "gpu": None if not gpu.startswith("yes") else (bench or {}).get("gpu") or "yes",
    "gpu_status": gpu,
    "probe_exit_code": probe_rc,
    "tests": tests,
    "benchmarks": {"exit_code": int(bench_rc), "record": bench},
    "seconds": int(seconds),
}
Path(target).write_text(json.dumps(record, indent=1, default=str) + "\n")
t = tests
print(f"\nsummary: GPU {record['gpu_status']}; probe {probe_rc}; tests "
      f"{t.get('passed', '?')} passed, {t.get('failures', 0) + t.get('errors', 0)} failed, "
      f"{t.get('skipped', '?')} skipped; benchmark rows "
      f"{sum(len(v) for v in (bench or {}).get('results', {}).values())}; {seconds} s")
EOF
echo "files in $out: $(cd "$out" && ls | tr '\n' ' ')"
