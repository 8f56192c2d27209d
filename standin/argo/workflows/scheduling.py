"""The DAG: which task may start, `depends` expressions, and the DAG's phase from its leaves.

Follows workflow/controller/dag.go (assessDAGPhase, the depends logic) and
workflow/common/ancestry.go (the depends grammar: `X`, `X.Succeeded|Failed|Errored|Skipped|
Omitted|Daemoned`, `&&`, `||`, `!`, parentheses). `AnySucceeded`/`AllFailed` need withItems and
are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from standin.argo.workflows.model import DAG_TASK_FIELDS, Unsupported, WorkflowError, only

_DEP_TOKEN = re.compile(r"\s*(?:(\|\||&&|!|\(|\))|([A-Za-z0-9_\-]+)(?:\.([A-Za-z]+))?)")
_RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned"}
DONE = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


def parse_depends(expr: str) -> list[tuple[str, str | None, str | None]]:
    tokens = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _DEP_TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"depends expression {expr!r}: cannot parse at {expr[pos:]!r}")
        pos = m.end()
        if m.group(1):
            tokens.append(("op", m.group(1), None))
        else:
            result = m.group(3)
            if result is not None and result not in _RESULTS:
                raise Unsupported(f"depends expression {expr!r}: result {result!r} (AnySucceeded/AllFailed need withItems)")
            tokens.append(("task", m.group(2), result))
    return tokens


def depends_tasks(expr: str) -> list[str]:
    return list(dict.fromkeys(t[1] for t in parse_depends(expr) if t[0] == "task"))


def eval_depends(expr: str, phases: dict[str, str]) -> bool:
    tokens = parse_depends(expr)
    pos = 0

    def value(name: str, result: str | None) -> bool:
        phase = phases[name]
        if result is None:
            return phase in ("Succeeded", "Skipped")
        return {"Succeeded": phase == "Succeeded", "Failed": phase == "Failed", "Errored": phase == "Error",
                "Skipped": phase == "Skipped", "Omitted": phase == "Omitted", "Daemoned": False}[result]

    def parse_or() -> bool:
        nonlocal pos
        left = parse_and()
        while pos < len(tokens) and tokens[pos][:2] == ("op", "||"):
            pos += 1
            right = parse_and()
            left = left or right
        return left

    def parse_and() -> bool:
        nonlocal pos
        left = parse_not()
        while pos < len(tokens) and tokens[pos][:2] == ("op", "&&"):
            pos += 1
            right = parse_not()
            left = left and right
        return left

    def parse_not() -> bool:
        nonlocal pos
        if pos >= len(tokens):
            raise Unsupported(f"depends expression {expr!r}: unexpected end")
        kind, text, result = tokens[pos]
        if (kind, text) == ("op", "!"):
            pos += 1
            return not parse_not()
        if (kind, text) == ("op", "("):
            pos += 1
            inner = parse_or()
            if pos >= len(tokens) or tokens[pos][:2] != ("op", ")"):
                raise Unsupported(f"depends expression {expr!r}: missing )")
            pos += 1
            return inner
        if kind == "task":
            pos += 1
            return value(text, result)
        raise Unsupported(f"depends expression {expr!r}: unexpected {text!r}")

    result = parse_or()
    if pos != len(tokens):
        raise Unsupported(f"depends expression {expr!r}: trailing tokens")
    return result


@dataclass
class Dag:
    """A dag template's tasks in declaration order, with their parents and children."""

    order: list[str]
    tasks: dict[str, dict]
    parents: dict[str, list[str]]
    children: dict[str, list[str]]

    @classmethod
    def parse(cls, template: dict, templates: dict[str, dict]) -> "Dag":
        dag = template.get("dag")
        if not isinstance(dag, dict):
            raise Unsupported(f"entrypoint template {template['name']!r}: only a dag entrypoint is supported")
        only(dag, {"tasks"}, f"template {template['name']}.dag")
        tasks = dag.get("tasks") or []
        names = [t.get("name") for t in tasks]
        by_name: dict[str, dict] = {}
        parents: dict[str, list[str]] = {}
        for t in tasks:
            only(t, DAG_TASK_FIELDS, f"template {template['name']}.dag.tasks[{t.get('name')}]")
            if t["template"] not in templates:
                raise WorkflowError(f"task {t['name']}: template {t['template']!r} not found")
            by_name[t["name"]] = t
            if t.get("depends") and t.get("dependencies"):
                raise WorkflowError(f"task {t['name']}: cannot use both 'depends' and 'dependencies'")
            parents[t["name"]] = depends_tasks(t["depends"]) if t.get("depends") else list(t.get("dependencies") or [])
            for d in parents[t["name"]]:
                if d not in names:
                    raise WorkflowError(f"task {t['name']} depends on unknown task {d!r}")
        order = [t["name"] for t in tasks]
        children = {n: [c for c in order if n in parents[c]] for n in order}
        return cls(order, by_name, parents, children)

    def roots(self) -> list[str]:
        return [n for n in self.order if not self.parents[n]]

    def ready(self, phases: dict[str, str], running: set[str]) -> list[str]:
        """Tasks not started whose parents have all finished."""
        return [n for n in self.order if n not in phases and n not in running
                and all(p in phases for p in self.parents[n])]

    def condition_holds(self, name: str, phases: dict[str, str]) -> bool:
        """The task's `depends` (or `dependencies`, read as `a && b`) on its parents' phases."""
        condition = self.tasks[name].get("depends") or " && ".join(self.parents[name])
        return eval_depends(condition, phases) if condition else True

    def assess(self, phases: dict[str, str], messages: dict[str, str]) -> tuple[str, str]:
        """Argo's assessDAGPhase: leaf tasks decide; an omitted task takes its branch's phase."""
        branch: dict[str, str] = {}

        def branch_phase(name: str) -> str:
            if name in branch:
                return branch[name]
            phase = phases[name]
            if phase == "Omitted":
                inherited = [branch_phase(p) for p in self.parents[name]]
                bad = [p for p in inherited if p in ("Failed", "Error")]
                phase = bad[0] if bad else ("Succeeded" if inherited else "Omitted")
            branch[name] = phase
            return phase

        leaves = [n for n in self.order if not self.children[n]]
        for leaf in leaves:
            phase = branch_phase(leaf)
            if phase in ("Failed", "Error"):
                culprit = next((n for n in self.order if phases[n] in ("Failed", "Error")), leaf)
                return phase, f"task {culprit} {phases.get(culprit, phase).lower()}: {messages.get(culprit, '')}".rstrip(": ")
        return "Succeeded", ""
