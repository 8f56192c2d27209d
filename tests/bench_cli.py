"""Benchmark: `make build` (median of 3, target under 5 s after install) and `make demo` (under 60 s).

    python -m tests.bench_cli      (make bench runs it via tests.bench)

Ends with `bench: make_build_s=<s>` and `bench: make_demo_s=<s>`; exits 1 when a target is missed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 5.0
DEMO_LIMIT_S = 60.0


def demo() -> tuple[bool, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "demo"], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    print(f"make demo: {elapsed:.2f}s, exit {proc.returncode} (limit {DEMO_LIMIT_S:.0f}s, set-up included)")
    return proc.returncode == 0 and elapsed < DEMO_LIMIT_S, elapsed


def main() -> int:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            start = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "engine.cli", "build", "--out", f"{tmp}/build{i}"],
                cwd=ROOT, check=True, capture_output=True,
            )
            times.append(time.monotonic() - start)
    median = statistics.median(times)
    print(f"make build: {' '.join(f'{t:.2f}s' for t in times)} (median {median:.2f}s, limit {LIMIT_S:.0f}s)")
    demo_ok, demo_s = demo()
    print(f"bench: make_build_s={median:.2f}")
    print(f"bench: make_demo_s={demo_s:.2f}")
    return 0 if median < LIMIT_S and demo_ok else 1


if __name__ == "__main__":
    sys.exit(main())
