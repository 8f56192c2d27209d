"""The DAG: which task may start, `depends` expressions, `when`, and the DAG's phase from its leaves.

Follows workflow/controller/dag.go (assessDAGPhase, the depends logic) and
workflow/common/ancestry.go (the depends grammar: `X`, `X.Succeeded|Failed|Errored|Skipped|
Omitted|Daemoned`, `&&`, `||`, `!`, parentheses). `AnySucceeded`/`AllFailed` need withItems and
are refused. `when` (steps.go shouldExecute) is govaluate after substitution, with every bare
word read as a string; only one comparison (`==`, `!=`) of strings, numbers and booleans, or a
lone boolean, is evaluated here, anything else is refused. `dag.target` names the tasks whose
phases decide the DAG's (all tasks must be targets or their dependencies); `continueOn` keeps a
target's failure from failing it (DAGTask.ContinuesOn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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


def _when_tokens(expr: str) -> list[tuple[str, Any]]:
    """govaluate's lexer (parsing.go readToken) for the token kinds `should_execute` evaluates."""
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(expr):
        ch = expr[pos]
        if ch.isspace():
            pos += 1
        elif ch.isdigit() or ch == ".":
            end = pos
            while end < len(expr) and (expr[end].isdigit() or expr[end] == "."):
                end += 1
            try:
                tokens.append(("value", float(expr[pos:end])))
            except ValueError:
                raise WorkflowError(f"Invalid 'when' expression '{expr}': Unable to parse numeric value '{expr[pos:end]}' to float64") from None
            pos = end
        elif ch.isalpha():
            end = pos
            while end < len(expr) and (expr[end].isalnum() or expr[end] == "_"):
                end += 1
            word = expr[pos:end]
            if word in ("in", "IN"):
                raise Unsupported(f"when expression {expr!r}: operator 'in'")
            # a VARIABLE token: Argo's shouldExecute turns every variable into a string
            tokens.append(("value", {"true": True, "false": False}.get(word, word)))
            pos = end
        elif ch in "'\"":
            out, end = [], pos + 1
            while end < len(expr) and expr[end] not in "'\"":  # either quote ends it (isNotQuote)
                if expr[end] == "\\" and end + 1 < len(expr):
                    end += 1
                out.append(expr[end])
                end += 1
            if end >= len(expr):
                raise WorkflowError(f"Invalid 'when' expression '{expr}': Unclosed string literal")
            tokens.append(("value", "".join(out)))
            pos = end + 1
        else:
            end = pos
            while end < len(expr) and not (expr[end].isalnum() or expr[end] in "()'\"" or expr[end].isspace()):
                end += 1
            op = expr[pos:end] or ch
            if op not in ("==", "!="):
                raise Unsupported(f"when expression {expr!r}: {op!r} (only one ==/!= comparison is evaluated locally)")
            tokens.append(("op", op))
            pos = max(end, pos + 1)
    return tokens


def should_execute(expr: str) -> bool:
    """steps.go shouldExecute on an already substituted `when`: "" runs; `a == b` compares with
    govaluate's equality (reflect.DeepEqual: a string never equals a number or a boolean)."""
    if not expr.strip():
        return True
    tokens = _when_tokens(expr)
    if len(tokens) == 1 and tokens[0][0] == "value" and isinstance(tokens[0][1], bool):
        return tokens[0][1]
    if len(tokens) != 3 or [t[0] for t in tokens] != ["value", "op", "value"]:
        raise Unsupported(f"when expression {expr!r}: only `<value> == <value>`, `!=`, or a boolean is evaluated locally")
    left, op, right = tokens[0][1], tokens[1][1], tokens[2][1]
    equal = type(left) is type(right) and left == right
    return equal if op == "==" else not equal


@dataclass
class Dag:
    """A dag template's tasks in declaration order, with their parents and children."""

    order: list[str]
    tasks: dict[str, dict]
    parents: dict[str, list[str]]
    children: dict[str, list[str]]
    targets: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, template: dict, templates: dict[str, dict]) -> "Dag":
        dag = template.get("dag")
        if not isinstance(dag, dict):
            raise Unsupported(f"entrypoint template {template['name']!r}: only a dag entrypoint is supported")
        only(dag, {"tasks", "target"}, f"template {template['name']}.dag")
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
        # dag.target (executeDAG: space-separated names, else the leaves; validate.go validateDAGTargets)
        targets = [n for n in (dag.get("target") or "").split(" ") if n]
        for name in targets:
            if name not in by_name:
                raise WorkflowError(f"templates.{template['name']}.targets: target '{name}' is not defined")
        if targets:  # only targets and their dependencies run (executeDAGTask recurses into dependencies)
            reached, todo = set(), list(targets)
            while todo:
                if (name := todo.pop()) not in reached:
                    reached.add(name)
                    todo += parents[name]
            if set(order) - reached:
                raise Unsupported(f"template {template['name']}: tasks outside dag.target ({sorted(set(order) - reached)}) are not modelled")
        for t in tasks:  # ContinueOn{error, failed} (workflow_types.go); legacy `dependencies` of such a
            # task would be expanded with its failure (ancestry.go expandDependency): not modelled
            only(t.get("continueOn") or {}, {"error", "failed"}, f"template {template['name']}.dag.tasks[{t['name']}].continueOn")
            if t.get("continueOn") and any(t["name"] in (o.get("dependencies") or []) for o in tasks):
                raise Unsupported(f"task {t['name']}: continueOn with a dependent's `dependencies` (use `depends`)")
        return cls(order, by_name, parents, children, targets)

    def roots(self) -> list[str]:
        return [n for n in self.order if not self.parents[n]]

    def ready(self, phases: dict[str, str], running: set[str]) -> list[str]:
        """Tasks not started whose parents have all finished."""
        return [n for n in self.order if n not in phases and n not in running
                and all(p in phases for p in self.parents[n])]

    def ancestors(self, name: str) -> list[str]:
        """Every task `name` depends on, directly or not (common.GetTaskAncestry): the tasks whose
        outputs its arguments and `when` may read."""
        seen: list[str] = []
        todo = list(self.parents[name])
        while todo:
            task = todo.pop()
            if task not in seen:
                seen.append(task)
                todo += self.parents[task]
        return seen

    def condition_holds(self, name: str, phases: dict[str, str]) -> bool:
        """The task's `depends` (or `dependencies`, read as `a && b`) on its parents' phases."""
        condition = self.tasks[name].get("depends") or " && ".join(self.parents[name])
        return eval_depends(condition, phases) if condition else True

    def continues_on(self, name: str, phase: str) -> bool:
        """DAGTask.ContinuesOn (workflow_types.go continues): continueOn.failed for Failed, .error for Error."""
        allowed = self.tasks[name].get("continueOn") or {}
        return allowed.get("failed") is True if phase == "Failed" else phase == "Error" and allowed.get("error") is True

    def assess(self, phases: dict[str, str], messages: dict[str, str]) -> tuple[str, str]:
        """Argo's assessDAGPhase: the target tasks (dag.target, else the leaves) decide; an omitted or
        skipped task takes its branch's phase (NodePhase.Completed is false for Skipped and Omitted,
        so they keep their parents'); a target whose continueOn covers its phase does not fail the DAG."""
        branch: dict[str, str] = {}

        def branch_phase(name: str) -> str:
            if name in branch:
                return branch[name]
            phase = phases[name]
            if phase in ("Omitted", "Skipped"):
                inherited = [branch_phase(p) for p in self.parents[name]]
                bad = [p for p in inherited if p in ("Failed", "Error")]
                phase = bad[0] if bad else ("Succeeded" if inherited else "Omitted")
            branch[name] = phase
            return phase

        leaves = self.targets or [n for n in self.order if not self.children[n]]
        for leaf in leaves:
            phase = branch_phase(leaf)
            if phase in ("Failed", "Error") and not self.continues_on(leaf, phase):
                culprit = next((n for n in self.order if phases[n] in ("Failed", "Error")
                                and not self.continues_on(n, phases[n])), leaf)
                return phase, f"task {culprit} {phases.get(culprit, phase).lower()}: {messages.get(culprit, '')}".rstrip(": ")
        return "Succeeded", ""
