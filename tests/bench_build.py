"""`make bench`, part 1: how long `make build`'s command takes (target: under 5 s after install)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 5.0


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
    return 0 if median < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
