"""`make bench`, pipelines: how many pods start one after another before the pod loses its network,
before it is deleted, and before the evidence is in S3, counted from build/'s WorkflowTemplates.

Each Argo step is a pod that costs seconds to start (scheduling, image, argoexec init and wait, the
controller's requeue), so the count of pods in sequence is the figure that survives any cluster.
A task's place is 1 + the largest place of the tasks its `depends` names (Argo starts a DAG task
only when its dependencies have completed: workflow/controller/dag.go executeDAGTask and
evaluateDependsLogic; the task names of `depends` come from GetTaskDependencies). What each task does comes from
its container's command (`python -m steps.<step>`) and flags:
- network isolation: quarantine, verify with --isolate=true, or delete (a deleted pod has no network);
- deletion (pipelines whose name ends in delete; quarantine's escalation does not count): delete;
- evidence in S3: copy.
Targets (issue 9), for the default (isolate-first) templates: isolation 1, deletion <= 3, evidence
<= 3. The evidence-first variants are printed for comparison, without targets.

    python -m tests.bench_pipelines [--build build]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_LABEL = "falco-response.io/pipeline"
TARGETS = {"pods_before_isolation": 1, "pods_before_deletion": 3, "pods_before_evidence": 3}
VARIANT = "-evidence-first"


def step_of(template: dict) -> str:
    """The step a container template runs: `python -m steps.<step>`."""
    command = (template.get("container") or {}).get("command") or []
    found = next((c for c in command if c.startswith("steps.")), "")
    return found.removeprefix("steps.")


def depends_on(task: dict, names: set[str]) -> set[str]:
    """Task names a `depends` expression (or a `dependencies` list) refers to."""
    words = re.split(r"[\s()&|!]+", task.get("depends") or "")
    return {w.split(".", 1)[0] for w in words if w.split(".", 1)[0] in names} | set(task.get("dependencies") or [])


def places(wt: dict) -> dict[str, tuple[int, str, list[str]]]:
    """task -> (pods in sequence up to and including it, its step, its container args)."""
    spec = wt["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    dag = templates[spec["entrypoint"]]["dag"]["tasks"]
    tasks = {t["name"]: t for t in dag}
    memo: dict[str, int] = {}

    def place(name: str, seen: tuple[str, ...] = ()) -> int:
        if name in seen:
            raise ValueError(f"{wt['metadata']['name']}: dependency cycle through {name}")
        if name not in memo:
            deps = depends_on(tasks[name], set(tasks))
            memo[name] = 1 + max((place(d, (*seen, name)) for d in deps), default=0)
        return memo[name]

    out = {}
    for name, task in tasks.items():
        template = templates[task["template"]]
        out[name] = (place(name), step_of(template), (template.get("container") or {}).get("args") or [])
    return out


def figures(wt: dict) -> dict[str, int]:
    """The pipeline's figures; a figure that does not apply (no evidence, no deletion) is absent."""
    pipeline = wt["metadata"]["labels"][PIPELINE_LABEL]
    tasks = places(wt).values()
    isolating = [n for n, step, args in tasks
                 if step in ("quarantine", "delete") or (step == "verify" and "--isolate=true" in args)]
    out = {}
    if isolating:
        out["pods_before_isolation"] = min(isolating)
    deleting = [n for n, step, _ in tasks if step == "delete"]
    if pipeline.endswith("delete") and deleting:
        out["pods_before_deletion"] = min(deleting)
    copying = [n for n, step, _ in tasks if step == "copy"]
    if copying:
        out["pods_before_evidence"] = min(copying)
    return out


def load(build: Path) -> dict[str, dict]:
    """WorkflowTemplate name (minus `falco-`) -> the template, from build/pipelines."""
    out = {}
    for path in sorted((build / "pipelines").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            # response pipelines only: falco-doctor (the preflight, pipelines/doctor.py) has no pipeline label
            if doc and doc.get("kind") == "WorkflowTemplate" and PIPELINE_LABEL in (doc["metadata"].get("labels") or {}):
                out[doc["metadata"]["name"].removeprefix("falco-")] = doc
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"), help="the build directory (default: build/)")
    args = parser.parse_args(argv)
    templates = load(Path(args.build))
    if not templates:
        print(f"error: no WorkflowTemplate in {args.build}/pipelines (run `make build`)", file=sys.stderr)
        return 1
    missed, lines = [], []
    print("pipelines: pods started in sequence before isolation / deletion / evidence in S3 (from build/)")
    for name, wt in templates.items():
        got = figures(wt)
        shown = ", ".join(f"{k.removeprefix('pods_before_')} {v}" for k, v in got.items())
        if name.endswith(VARIANT):
            print(f"  {name}: {shown} (evidence-first variant: no target)")
            continue
        print(f"  {name}: {shown}")
        for figure, value in got.items():
            lines.append(f"bench: {figure}.{name}={value}")
            if value > TARGETS[figure]:
                missed.append(f"{figure}.{name}={value} (target {'' if figure == 'pods_before_isolation' else '<='}"
                              f"{TARGETS[figure]})")
    for line in lines:
        print(line)
    if missed:
        print("missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
