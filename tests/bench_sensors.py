"""`make bench`, Sensors (issue 9 item 3): Sensor count, build/sensors size, largest script and
`make build` time at 5, 20, 50 and 100 policies. Fails if the count grows with the policies or
the size grows faster than linearly.

Run: python -m tests.bench_sensors
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SIZES = (5, 20, 50, 100)
PIPELINES = ("checkpoint-and-quarantine", "checkpoint-and-delete", "checkpoint-only", "quarantine", "delete")
RULES = (
    "Terminal shell in container", "Drop and execute new binary in container", "Read sensitive file untrusted",
    "Clear Log Activities", "Search Private Keys or Passwords", "Netcat Remote Code Execution in Container",
)
PRIORITIES = (">= Warning", ">= Notice", "Critical", "> Error")
# Per-policy size may vary a little with n (longer names, more digits): allow this much growth
# of bytes per policy from the smallest to the largest run; quadratic growth is about 20x here.
LINEAR_SLACK = 1.5


def policy(i: int) -> dict:
    """Varied matches: rules, priorities, tags, namespaces, output fields, exclusions, dry runs."""
    match: dict = {}
    kind = i % 6
    if kind in (0, 3):
        match["rules"] = [RULES[i % len(RULES)], RULES[(i + 2) % len(RULES)]]
    if kind in (0, 1, 4):
        match["priority"] = PRIORITIES[i % len(PRIORITIES)]
    if kind in (1, 5):
        match["tags"] = [f"tag-{i}", "trigger-checkpoint"] if kind == 1 else [f"team-{i}"]
    if kind in (2, 3):
        match["namespaces"] = [f"shop-{i}", f"payments-{i}"]
    if kind == 4:
        match["exclude_namespaces"] = [f"sandbox-{i}"]
        match["sources"] = ["syscall"]
    if kind in (2, 5):
        match["output_fields"] = {"proc.name": [f"tool{i}", "nc"], "user.uid": [str(i)]}
    return {
        "name": f"policy-{i:03d}",
        "description": f"generated policy {i}",
        "match": match,
        "response": PIPELINES[i % len(PIPELINES)],
        "dry_run": i % 9 == 8,
    }


def measure(n: int, work: Path) -> dict:
    policy_file = work / f"response-{n}.yaml"
    policy_file.write_text(yaml.safe_dump({"policies": [policy(i) for i in range(n)]}, sort_keys=False))
    out = work / f"build-{n}"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy_file), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True,
    )
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"build with {n} policies failed: {proc.stderr.strip()}")
    files = sorted((out / "sensors").glob("*.yaml"))
    sensors = []
    for path in files:
        sensors += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") == "Sensor"]
    scripts = [
        len((((dep.get("filters") or {}).get("script")) or "").encode())
        for s in sensors for dep in (s.get("spec") or {}).get("dependencies") or []
    ]
    templates = [
        len(str(((param.get("src") or {}).get("dataTemplate")) or "").encode())
        for s in sensors for t in (s.get("spec") or {}).get("triggers") or []
        for param in [*(t.get("parameters") or []), *(((t.get("template") or {}).get("argoWorkflow") or {}).get("parameters") or [])]
    ]
    return {
        "largest_template": max(templates, default=0),
        "n": n,
        "count": len(sensors),
        "bytes": sum(p.stat().st_size for p in files),
        "largest_script": max(scripts, default=0),
        "build_s": elapsed,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp)) for n in SIZES]
    for r in rows:
        print(
            f"{r['n']:>3} policies: make build {r['build_s']:.2f}s, {r['count']} Sensor(s), "
            f"build/sensors {r['bytes'] / 1024:.1f} KiB ({r['bytes'] / r['n']:.0f} B per policy), "
            f"largest script {r['largest_script'] / 1024:.1f} KiB, largest dataTemplate {r['largest_template'] / 1024:.1f} KiB"
        )
    first, last = rows[0], rows[-1]
    problems = []
    if any(r["count"] != first["count"] for r in rows):
        problems.append("the Sensor count grows with the number of policies")
    growth = (last["bytes"] / last["n"]) / (first["bytes"] / first["n"])
    if growth > LINEAR_SLACK:
        problems.append(f"bytes per policy grew {growth:.2f}x from {first['n']} to {last['n']} policies (limit {LINEAR_SLACK}x): not linear")
    for p in problems:
        print(f"FAIL: {p}")
    for r in rows:
        print(f"bench: sensors_at_{r['n']}={r['count']}")
        print(f"bench: sensor_bytes_at_{r['n']}={r['bytes']}")
        print(f"bench: largest_script_bytes_at_{r['n']}={r['largest_script']}")
        print(f"bench: largest_template_bytes_at_{r['n']}={r['largest_template']}")
        print(f"bench: build_s_at_{r['n']}={r['build_s']:.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
