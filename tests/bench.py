"""`make bench`: run every tests/bench_*.py module, then print all their summary lines last.

    python -m tests.bench [name ...]      (names: cli, copy, ... ; default: every module, by name)

Each module runs as `python -m tests.bench_<name>` in a process of its own, its output shown as it
comes. A module prints its figures as lines `bench: <name>=<value>`; this runner gathers them and
re-prints them together at the very end (issue 9, item 5: one machine-readable line per figure), so
a new module needs nothing but those lines. Exits 1 when a module failed (missed a target, or
crashed), after the summary, naming the modules.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"^bench: ([A-Za-z0-9_.\-]+)=(\S+)\s*$")


def modules(names: list[str]) -> list[str]:
    found = sorted(p.stem for p in (ROOT / "tests").glob("bench_*.py"))
    if not names:
        return found
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in names]
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise SystemExit(f"no such bench module: {', '.join(unknown)} (there are: {', '.join(found)})")
    return wanted


def main(argv: list[str] | None = None) -> int:
    figures: list[str] = []
    failed: list[str] = []
    for module in modules(list(sys.argv[1:] if argv is None else argv)):
        print(f"== {module}", flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", f"tests.{module}"], cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if FIGURE.match(line):
                figures.append(line.strip())
        code = proc.wait()
        print(f"== {module}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(f"{module} (exit {code})")
    if failed:
        print(f"\n== FAILED: {', '.join(failed)}")
    print("\n== summary")
    for line in figures:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
