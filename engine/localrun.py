"""Run a submitted Workflow against its WorkflowTemplate from build/pipelines, locally.

A harness for our own manifests, not a replacement for Argo. It does what the Argo controller and
executor do with the fields our templates use, and refuses (`Unsupported`, naming the field)
anything else:

- the Workflow's arguments merged over the WorkflowTemplate's (required values, enums);
- the DAG: tasks start when every task their `depends` (or `dependencies`) names has finished;
  `depends` expressions (`X`, `X.Succeeded|Failed|Errored|Skipped|Omitted`, `&&`, `||`, `!`,
  parentheses); a false condition gives an Omitted node; the DAG phase is derived from its leaf
  tasks the way Argo does (an omitted task inherits the failure of the branch above it);
- `{{workflow.parameters.x}}`, `{{inputs.parameters.x}}`, `{{tasks.t.outputs.parameters.o}}`,
  `{{workflow.name|namespace|uid|status}}`, and the expression `{{=sprig.b64enc(<variable>)}}`;
- each attempt runs the container's real entrypoint (`python -m steps.<name> ...`, verbatim after
  substitution; `python` is this interpreter) as a subprocess with the template's env
  (secretKeyRef from the secrets the caller passes), HOME and the volumes mapped to local
  directories: emptyDir -> a fresh directory per attempt, configMap -> files from the configmaps
  the caller passes, hostPath of the kubelet checkpoint directory -> FakeKube.checkpoint_dir(node)
  of the node the pod is pinned to by nodeAffinity matchFields metadata.name; KUBECONFIG points at
  the FakeKube when automountServiceAccountToken is true;
- outputs read from valueFrom.path (default when the file is missing); retryStrategy limit,
  retryPolicy and the expression on `lastRetry.status` / `lastRetry.exitCode`;
  activeDeadlineSeconds (template and workflow); the onExit handler with `workflow.status`; the
  workflow mutex (in process).
The Workflow object in the FakeKube is updated as it runs (status.phase, status.nodes with phase,
type, templateName, displayName, inputs/outputs parameters, startedAt/finishedAt, message),
because the report step reads it. Not modelled: RBAC of the service accounts, security contexts,
resources, podGC, ttlStrategy (a finished Workflow stays), metrics.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"


class Unsupported(Exception):
    """A Workflow or template field this harness does not implement."""


class WorkflowError(Exception):
    """What Argo would report as an error of the whole Workflow (bad arguments, missing template)."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def node_id(workflow_name: str, node_name: str) -> str:
    """Argo's Workflow.NodeID: the workflow name, or <name>-<fnv32a(node name)>."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{_fnv32a(node_name)}"


# --- field checks ---------------------------------------------------------------------------------

WORKFLOW_SPEC_FIELDS = {"workflowTemplateRef", "arguments"}
TEMPLATE_SPEC_FIELDS = {
    "arguments", "entrypoint", "onExit", "templates", "activeDeadlineSeconds", "synchronization",
    "workflowMetadata", "podMetadata", "podGC", "ttlStrategy", "metrics", "securityContext", "serviceAccountName",
}
TEMPLATE_FIELDS = {
    "name", "container", "dag", "inputs", "outputs", "retryStrategy", "serviceAccountName",
    "automountServiceAccountToken", "volumes", "affinity", "tolerations", "executor", "activeDeadlineSeconds",
    "metrics", "metadata",
}
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "resources", "securityContext", "volumeMounts",
    "terminationMessagePolicy",
}
TERMINATION_LOG_LINES, TERMINATION_LOG_BYTES = 80, 2048  # the kubelet's FallbackToLogsOnError tail
DAG_TASK_FIELDS = {"name", "template", "arguments", "depends", "dependencies"}
RETRY_FIELDS = {"limit", "retryPolicy", "expression", "backoff"}
BACKOFF_FIELDS = {"duration", "factor", "maxDuration", "cap"}


def _only(obj: dict, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise Unsupported(f"{where}.{key} is not supported by the local runner")


# --- substitution ---------------------------------------------------------------------------------

_TAG = re.compile(r"\{\{(.*?)\}\}", re.S)
_B64 = re.compile(r"^=\s*sprig\.b64enc\(\s*([A-Za-z0-9_.\-]+)\s*\)\s*$")


def substitute(value: Any, scope: dict[str, str], where: str) -> Any:
    """Replace every {{tag}} in the strings of value (one pass, like Argo's fasttemplate)."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            tag = m.group(1).strip()
            if tag.startswith("="):
                expr = _B64.match(tag)
                if not expr:
                    raise Unsupported(f"{where}: expression {{{{{tag}}}}} (only sprig.b64enc(<variable>) is supported)")
                var = expr.group(1)
                if var not in scope:
                    raise WorkflowError(f"{where}: failed to evaluate expression: unknown name {var}")
                return base64.b64encode(scope[var].encode()).decode()
            if tag not in scope:
                raise WorkflowError(f"{where}: failed to resolve {{{{{tag}}}}}")
            return scope[tag]

        return _TAG.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, scope, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, scope, where) for k, v in value.items()}
    return value


# --- depends expressions -------------------------------------------------------------------------

_DEP_TOKEN = re.compile(r"\s*(?:(\|\||&&|!|\(|\))|([A-Za-z0-9_\-]+)(?:\.([A-Za-z]+))?)")
_RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned"}


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


# --- retryStrategy.expression ----------------------------------------------------------------------

_RETRY_TERM = re.compile(r"""\s*lastRetry\.(status|exitCode|message|duration)\s*(==|!=)\s*(?:'([^']*)'|"([^"]*)")\s*""")


def eval_retry_expression(expr: str, last: dict[str, str]) -> bool:
    """`lastRetry.<x> == '<v>'` terms joined by || and && (the form our templates use)."""
    def term(text: str) -> bool:
        m = _RETRY_TERM.fullmatch(text)
        if not m:
            raise Unsupported(f"retryStrategy.expression {expr!r}: term {text.strip()!r} is not supported")
        actual = last.get(m.group(1), "")
        want = m.group(3) if m.group(3) is not None else m.group(4)
        return (actual == want) if m.group(2) == "==" else (actual != want)

    if re.search(r"[()]", re.sub(r"'[^']*'|\"[^\"]*\"", "", expr)):
        raise Unsupported(f"retryStrategy.expression {expr!r}: parentheses are not supported")
    return any(all(term(t) for t in alt.split("&&")) for alt in expr.split("||"))


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    """An Argo duration: a number of seconds, or a Go duration string such as 10s, 3m, 1h30m."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    pos, total = 0, 0.0
    while pos < len(text):
        m = _GO_DURATION.match(text, pos)
        if not m:
            raise WorkflowError(f"{where}: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise WorkflowError(f"{where}: empty duration")
    return total


# --- results ----------------------------------------------------------------------------------------


@dataclass
class Attempt:
    node_id: str
    display: str
    template: str
    phase: str = "Pending"
    exit_code: int | None = None
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    argv: list[str] = field(default_factory=list)
    logs: str = ""  # stdout and stderr interleaved, as `kubectl logs` shows them
    outputs: dict[str, str] = field(default_factory=dict)
    host: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


@dataclass
class TaskRun:
    name: str  # task name, or "onExit"
    template: str | None
    phase: str = "Pending"
    message: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


@dataclass
class RunResult:
    name: str
    namespace: str
    phase: str
    message: str
    tasks: list[TaskRun]
    exit_handler: TaskRun | None
    workflow: dict | None
    duration: float


# --- the runner -------------------------------------------------------------------------------------

_MUTEXES: dict[str, threading.Lock] = {}
_MUTEXES_LOCK = threading.Lock()


class LocalRunner:
    """Runs Workflows stored in a FakeKube against the WorkflowTemplates of a build directory.

    secrets: {secret name: {key: value}} for env secretKeyRef; configmaps: {name: {key: text}} for
    configMap volumes; env: extra variables for every step (e.g. STEP_RETRY_BASE_DELAY).
    """

    def __init__(
        self,
        kube,
        build_dir: str | Path = "build",
        *,
        secrets: dict[str, dict[str, str]] | None = None,
        configmaps: dict[str, dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        workdir: str | Path | None = None,
        python: str = sys.executable,
        on_change: Callable[[TaskRun], None] | None = None,
        max_parallel: int = 4,
        backoff_scale: float = 1.0,
    ) -> None:
        self.kube = kube
        self.build_dir = Path(build_dir)
        self.secrets = secrets or {}
        self.configmaps = configmaps or {}
        self.env = dict(env or {})
        self._workdir = Path(workdir) if workdir else None
        self.python = python
        self.on_change = on_change
        self.max_parallel = max_parallel
        self.backoff_scale = backoff_scale  # <1 shortens retryStrategy.backoff waits (tests, demo)
        self._templates: dict[str, dict] | None = None
        self._api = None

    @property
    def workdir(self) -> Path:
        """Where pods get their volumes; a temporary directory unless the caller chose one."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="localrun-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    # --- inputs ---------------------------------------------------------------------------------

    def workflow_templates(self) -> dict[str, dict]:
        if self._templates is None:
            found = {}
            for path in sorted((self.build_dir / "pipelines").glob("*.yaml")):
                for doc in yaml.safe_load_all(path.read_text()):
                    if isinstance(doc, dict) and doc.get("kind") == "WorkflowTemplate":
                        found[doc["metadata"]["name"]] = doc
            self._templates = found
        return self._templates

    def custom_api(self):
        if self._api is None:
            from kubernetes import client, config

            configuration = client.Configuration()
            config.load_kube_config(config_file=str(self.kube.kubeconfig), client_configuration=configuration)
            configuration.retries = False
            self._api = client.CustomObjectsApi(client.ApiClient(configuration))
        return self._api

    # --- API ------------------------------------------------------------------------------------

    def submit(self, workflow: dict) -> tuple[bool, dict]:
        """Create the Workflow through the API: (True, object) or (False, Status) on 409 AlreadyExists."""
        from kubernetes.client.exceptions import ApiException
        import json as _json

        ns = workflow["metadata"]["namespace"]
        try:
            return True, self.custom_api().create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workflow)
        except ApiException as exc:
            if exc.status == 409:
                return False, _json.loads(exc.body or "{}")
            raise

    def _get(self, namespace: str, name: str) -> dict:
        return self.custom_api().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def _patch(self, namespace: str, name: str, patch: dict) -> None:
        self.custom_api().patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)

    # --- run ------------------------------------------------------------------------------------

    def run(self, namespace: str, name: str) -> RunResult:
        return _Run(self, namespace, name).execute()


class _Run:
    def __init__(self, runner: LocalRunner, namespace: str, name: str) -> None:
        self.r = runner
        self.namespace = namespace
        self.name = name
        self.lock = threading.RLock()
        self.nodes: dict[str, dict] = {}
        self.tasks: dict[str, TaskRun] = {}
        self.task_order: list[str] = []
        self.exit_run: TaskRun | None = None
        self.deadline: float | None = None
        self.status_message = ""

    # --- status in the FakeKube -------------------------------------------------------------------

    def push(self, extra: dict | None = None) -> None:
        with self.lock:
            status = {"nodes": copy.deepcopy(self.nodes)}
            status.update(extra or {})
            self.r._patch(self.namespace, self.name, {"status": status})

    def set_node(self, nid: str, **fields: Any) -> None:
        with self.lock:
            node = self.nodes.setdefault(nid, {"id": nid})
            for key, value in fields.items():
                if value is None:
                    node.pop(key, None)
                else:
                    node[key] = value
            self.push()

    def add_child(self, parent: str, child: str) -> None:
        with self.lock:
            children = self.nodes[parent].setdefault("children", [])
            if child not in children:
                children.append(child)

    # --- main ---------------------------------------------------------------------------------------

    def execute(self) -> RunResult:
        started = time.time()
        wf = self.r._get(self.namespace, self.name)
        spec = wf.get("spec") or {}
        _only(spec, WORKFLOW_SPEC_FIELDS, "Workflow.spec")
        ref = spec.get("workflowTemplateRef") or {}
        _only(ref, {"name"}, "Workflow.spec.workflowTemplateRef")
        template_obj = self.r.workflow_templates().get(ref.get("name"))
        if template_obj is None:
            return self.fail_early(wf, started, f'workflowtemplates.argoproj.io "{ref.get("name")}" not found')
        tspec = template_obj.get("spec") or {}
        _only(tspec, TEMPLATE_SPEC_FIELDS, f"WorkflowTemplate {ref.get('name')}.spec")
        self.templates = {t["name"]: t for t in tspec.get("templates") or []}
        for t in self.templates.values():
            _only(t, TEMPLATE_FIELDS, f"template {t['name']}")
        try:
            self.params = self.merge_arguments(tspec, spec)
        except WorkflowError as exc:
            return self.fail_early(wf, started, str(exc))
        meta = wf["metadata"]
        self.globals = {f"workflow.parameters.{k}": v for k, v in self.params.items()}
        self.globals.update({
            "workflow.name": meta["name"],
            "workflow.namespace": meta.get("namespace", self.namespace),
            "workflow.uid": meta.get("uid", ""),
            "workflow.serviceAccountName": tspec.get("serviceAccountName", "default"),
        })
        if tspec.get("activeDeadlineSeconds"):
            self.deadline = started + float(tspec["activeDeadlineSeconds"])
        labels = dict(((tspec.get("workflowMetadata") or {}).get("labels")) or {})
        labels["workflows.argoproj.io/phase"] = "Running"
        annotations = dict(((tspec.get("workflowMetadata") or {}).get("annotations")) or {})
        mutex = self.acquire_mutex(tspec)
        self.root = node_id(self.name, self.name)
        entry = tspec.get("entrypoint")
        if entry not in self.templates:
            self.release_mutex(mutex)
            return self.fail_early(wf, started, f"entrypoint template {entry!r} not found")
        with self.lock:
            self.nodes[self.root] = {
                "id": self.root, "name": self.name, "displayName": self.name, "type": "DAG",
                "templateName": entry, "phase": "Running", "startedAt": _now(),
            }
        patch: dict[str, Any] = {"metadata": {"labels": labels}, "status": {"phase": "Running", "startedAt": _now(), "nodes": self.nodes}}
        if annotations:
            patch["metadata"]["annotations"] = annotations
        if mutex:
            patch["status"]["synchronization"] = {"mutex": {"holding": [{"mutex": f"{self.namespace}/Mutex/{mutex[0]}", "holder": self.name}]}}
        self.r._patch(self.namespace, self.name, patch)
        try:
            dag_phase, dag_message = self.run_dag(self.templates[entry])
        except (Unsupported, WorkflowError) as exc:
            self.release_mutex(mutex)
            self.r._patch(self.namespace, self.name, {
                "metadata": {"labels": {"workflows.argoproj.io/phase": "Error", "workflows.argoproj.io/completed": "true"}},
                "status": {"phase": "Error", "message": str(exc), "finishedAt": _now(), "nodes": self.nodes},
            })
            raise
        self.set_node(self.root, phase=dag_phase, finishedAt=_now(), message=dag_message or None)
        phase, message = dag_phase, dag_message
        on_exit = tspec.get("onExit")
        if on_exit:
            self.exit_run = self.run_exit_handler(on_exit, phase)
            if self.exit_run.phase in ("Failed", "Error") and phase == "Succeeded":
                phase, message = "Failed", f"exit handler failed: {self.exit_run.message}"
        self.release_mutex(mutex)
        finished = {
            "phase": phase, "finishedAt": _now(), "progress": self.progress(),
            "message": message or None, "synchronization": None,
        }
        self.push(finished)
        self.r._patch(self.namespace, self.name, {"metadata": {"labels": {
            "workflows.argoproj.io/phase": phase, "workflows.argoproj.io/completed": "true"}}})
        return RunResult(
            self.name, self.namespace, phase, message, [self.tasks[t] for t in self.task_order], self.exit_run,
            self.r._get(self.namespace, self.name), time.time() - started,
        )

    def fail_early(self, wf: dict, started: float, message: str) -> RunResult:
        self.r._patch(self.namespace, self.name, {
            "metadata": {"labels": {"workflows.argoproj.io/phase": "Error", "workflows.argoproj.io/completed": "true"}},
            "status": {"phase": "Error", "message": message, "startedAt": _now(), "finishedAt": _now()},
        })
        return RunResult(self.name, self.namespace, "Error", message, [], None, self.r._get(self.namespace, self.name), time.time() - started)

    def progress(self) -> str:
        pods = [n for n in self.nodes.values() if n.get("type") == "Pod"]
        done = [n for n in pods if n.get("phase") == "Succeeded"]
        return f"{len(done)}/{len(pods)}"

    def acquire_mutex(self, tspec: dict) -> tuple[str, threading.Lock] | None:
        sync = tspec.get("synchronization")
        if not sync:
            return None
        _only(sync, {"mutexes", "mutex"}, "spec.synchronization")
        mutexes = sync.get("mutexes") or ([sync["mutex"]] if sync.get("mutex") else [])
        if len(mutexes) != 1:
            raise Unsupported("spec.synchronization with other than one mutex")
        _only(mutexes[0], {"name"}, "spec.synchronization.mutexes[0]")
        name = substitute(mutexes[0]["name"], self.globals, "spec.synchronization")
        key = f"{self.namespace}/Mutex/{name}"
        with _MUTEXES_LOCK:
            lock = _MUTEXES.setdefault(key, threading.Lock())
        lock.acquire()
        return name, lock

    @staticmethod
    def release_mutex(mutex: tuple[str, threading.Lock] | None) -> None:
        if mutex:
            mutex[1].release()

    def merge_arguments(self, tspec: dict, spec: dict) -> dict[str, str]:
        given = {}
        for p in ((spec.get("arguments") or {}).get("parameters")) or []:
            _only(p, {"name", "value"}, "Workflow.spec.arguments.parameters[]")
            given[p["name"]] = p.get("value")
        out: dict[str, str] = {}
        declared = ((tspec.get("arguments") or {}).get("parameters")) or []
        for p in declared:
            _only(p, {"name", "value", "description", "enum"}, "WorkflowTemplate.spec.arguments.parameters[]")
            value = given.get(p["name"], p.get("value"))
            if value is None:
                raise WorkflowError(f"spec.arguments.{p['name']}.value is required")
            value = str(value)
            if p.get("enum") and value not in [str(e) for e in p["enum"]]:
                raise WorkflowError(f"spec.arguments.{p['name']}.value: {value!r} is not in the enum {p['enum']}")
            out[p["name"]] = value
        for name, value in given.items():
            if name not in out:
                out[name] = "" if value is None else str(value)
        return out

    # --- the DAG ------------------------------------------------------------------------------------

    def run_dag(self, template: dict) -> tuple[str, str]:
        dag = template.get("dag")
        if not isinstance(dag, dict):
            raise Unsupported(f"entrypoint template {template['name']!r}: only a dag entrypoint is supported")
        _only(dag, {"tasks"}, f"template {template['name']}.dag")
        tasks = dag.get("tasks") or []
        by_name = {}
        deps: dict[str, list[str]] = {}
        for t in tasks:
            _only(t, DAG_TASK_FIELDS, f"template {template['name']}.dag.tasks[{t.get('name')}]")
            if t["template"] not in self.templates:
                raise WorkflowError(f"task {t['name']}: template {t['template']!r} not found")
            by_name[t["name"]] = t
            if t.get("depends") and t.get("dependencies"):
                raise WorkflowError(f"task {t['name']}: cannot use both 'depends' and 'dependencies'")
            if t.get("depends"):
                deps[t["name"]] = depends_tasks(t["depends"])
            else:
                deps[t["name"]] = list(t.get("dependencies") or [])
            for d in deps[t["name"]]:
                if d not in [x["name"] for x in tasks]:
                    raise WorkflowError(f"task {t['name']} depends on unknown task {d!r}")
        self.task_order = [t["name"] for t in tasks]
        for name in self.task_order:
            self.tasks[name] = TaskRun(name, by_name[name]["template"])
        phases: dict[str, str] = {}
        parents_of = deps
        children_of: dict[str, list[str]] = {n: [c for c in self.task_order if n in deps[c]] for n in self.task_order}
        for name in self.task_order:
            if not deps[name]:
                self.add_child(self.root, node_id(self.name, f"{self.name}.{name}"))
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.r.max_parallel, thread_name_prefix="task")
        try:
            while len(phases) < len(self.task_order):
                progressed = False
                for name in self.task_order:
                    if name in phases or name in running.values():
                        continue
                    if not all(d in phases for d in deps[name]):
                        continue
                    task = by_name[name]
                    condition = task.get("depends") or " && ".join(deps[name])
                    ok = eval_depends(condition, phases) if condition else True
                    nid = node_id(self.name, f"{self.name}.{name}")
                    for child in children_of[name]:
                        self.add_child_later(nid, node_id(self.name, f"{self.name}.{child}"))
                    if not ok:
                        phases[name] = "Omitted"
                        run = self.tasks[name]
                        run.phase, run.message = "Omitted", "omitted: depends condition not met"
                        self.set_node(nid, name=f"{self.name}.{name}", displayName=name, type="Skipped",
                                      templateName=task["template"], boundaryID=self.root, phase="Omitted",
                                      message=run.message, startedAt=_now(), finishedAt=_now())
                        self._notify(run)
                        progressed = True
                        continue
                    running[pool.submit(self.run_task, task, phases)] = name
                    progressed = True
                if len(phases) == len(self.task_order):
                    break
                if not running:
                    if not progressed:
                        raise WorkflowError("the DAG cannot make progress (a dependency cycle?)")
                    continue
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    phases[name] = fut.result()
        finally:
            pool.shutdown(wait=True)
        return self.assess(phases, parents_of, children_of)

    def add_child_later(self, parent: str, child: str) -> None:
        with self.lock:
            node = self.nodes.setdefault(parent, {"id": parent})
            children = node.setdefault("children", [])
            if child not in children:
                children.append(child)

    def assess(self, phases: dict[str, str], parents: dict[str, list[str]], children: dict[str, list[str]]) -> tuple[str, str]:
        """Argo's assessDAGPhase: leaf tasks decide; an omitted task takes its branch's phase."""
        branch: dict[str, str] = {}

        def branch_phase(name: str) -> str:
            if name in branch:
                return branch[name]
            phase = phases[name]
            if phase == "Omitted":
                inherited = [branch_phase(p) for p in parents[name]]
                bad = [p for p in inherited if p in ("Failed", "Error")]
                phase = bad[0] if bad else ("Succeeded" if inherited else "Omitted")
            branch[name] = phase
            return phase

        leaves = [n for n in self.task_order if not children[n]]
        for leaf in leaves:
            phase = branch_phase(leaf)
            if phase in ("Failed", "Error"):
                culprit = next(
                    (n for n in self.task_order if phases[n] in ("Failed", "Error")), leaf
                )
                return phase, f"task {culprit} {phases.get(culprit, phase).lower()}: {self.tasks[culprit].message}".rstrip(": ")
        return "Succeeded", ""

    def _notify(self, run: TaskRun) -> None:
        if self.r.on_change:
            self.r.on_change(run)

    # --- one task (with retries) ----------------------------------------------------------------------

    def run_task(self, task: dict, phases: dict[str, str]) -> str:
        name = task["name"]
        run = self.tasks[name]
        nid = node_id(self.name, f"{self.name}.{name}")
        scope = dict(self.globals)
        for other, other_run in self.tasks.items():
            if phases.get(other) is None:
                continue
            if other_run.phase != "Succeeded":
                continue  # Argo cannot resolve outputs of a task that did not succeed
            for key, value in other_run.outputs.items():
                scope[f"tasks.{other}.outputs.parameters.{key}"] = value
        where = f"task {name}"
        try:
            args = {}
            for p in ((task.get("arguments") or {}).get("parameters")) or []:
                _only(p, {"name", "value"}, f"{where}.arguments.parameters[]")
                args[p["name"]] = substitute(str(p.get("value", "")), scope, where)
            if set(task.get("arguments") or {}) - {"parameters"}:
                raise Unsupported(f"{where}.arguments: only parameters are supported")
        except WorkflowError as exc:
            run.phase, run.message = "Error", str(exc)
            run.started = run.finished = time.time()
            self.set_node(nid, name=f"{self.name}.{name}", displayName=name, type="Pod", templateName=task["template"],
                          boundaryID=self.root, phase="Error", message=str(exc), startedAt=_now(), finishedAt=_now())
            self._notify(run)
            return "Error"
        return self.run_template(run, nid, f"{self.name}.{name}", name, self.templates[task["template"]], args, self.globals)

    def run_exit_handler(self, template_name: str, workflow_status: str) -> TaskRun:
        run = TaskRun("onExit", template_name)
        if template_name not in self.templates:
            run.phase, run.message = "Error", f"onExit template {template_name!r} not found"
            return run
        name = f"{self.name}.onExit"
        nid = node_id(self.name, name)
        scope = dict(self.globals)
        scope["workflow.status"] = workflow_status
        self.run_template(run, nid, name, name, self.templates[template_name], {}, scope)
        return run

    def run_template(self, run: TaskRun, nid: str, node_name: str, display: str, template: dict, args: dict, scope: dict) -> str:
        tname = template["name"]
        run.started = time.time()
        retry = template.get("retryStrategy")
        base = {"name": node_name, "templateName": tname, "boundaryID": self.root if not node_name.endswith(".onExit") else None,
                "startedAt": _now()}
        try:
            inputs = self.resolve_inputs(template, args, scope)
        except WorkflowError as exc:
            run.phase, run.message, run.finished = "Error", str(exc), time.time()
            self.set_node(nid, displayName=display, type="Pod", phase="Error", message=str(exc), finishedAt=_now(), **base)
            self._notify(run)
            return "Error"
        node_inputs = {"parameters": [{"name": k, "value": v} for k, v in inputs.items()]} if inputs else None
        if retry is None:
            attempt = self.attempt(run, nid, node_name, display, template, inputs, scope, base, node_inputs)
            run.phase, run.message, run.outputs = attempt.phase, attempt.message, attempt.outputs
            run.finished = time.time()
            self._notify(run)
            return run.phase
        _only(retry, RETRY_FIELDS, f"template {tname}.retryStrategy")
        limit = int(str(retry.get("limit", "0")))
        policy = retry.get("retryPolicy") or "OnFailure"
        if policy not in ("Always", "OnFailure", "OnError", "OnTransientError"):
            raise Unsupported(f"template {tname}.retryStrategy.retryPolicy {policy!r}")
        backoff = retry.get("backoff") or {}
        _only(backoff, BACKOFF_FIELDS, f"template {tname}.retryStrategy.backoff")
        self.set_node(nid, displayName=display, type="Retry", phase="Running", inputs=node_inputs, **base)
        first_started = time.time()
        n = 0
        while True:
            child_name = f"{node_name}({n})"
            child_id = node_id(self.name, child_name)
            self.add_child_later(nid, child_id)
            attempt = self.attempt(run, child_id, child_name, f"{display}({n})", template, inputs, scope,
                                   {**base, "name": child_name, "startedAt": _now()}, node_inputs)
            if attempt.phase == "Succeeded":
                break
            retryable = {"Always": True, "OnFailure": attempt.phase == "Failed", "OnError": attempt.phase == "Error",
                         "OnTransientError": False}[policy]
            why = "retryPolicy " + policy if not retryable else ""
            if retryable and retry.get("expression"):
                retryable = eval_retry_expression(retry["expression"], {
                    "status": attempt.phase, "exitCode": str(attempt.exit_code if attempt.exit_code is not None else -1),
                    "message": attempt.message, "duration": f"{attempt.duration:.0f}",
                })
                if not retryable:
                    why = "retryStrategy.expression evaluated to false"
            if n >= limit:
                why = "No more retries left"
                retryable = False
            if not retryable:
                run.message = attempt.message + (f" ({why})" if why else "")
                break
            if self.deadline and time.time() >= self.deadline:
                run.message = "Max duration limit exceeded"
                break
            if backoff:
                delay = parse_duration(backoff.get("duration", "0"), f"template {tname}.retryStrategy.backoff.duration")
                delay *= float(str(backoff.get("factor", "1"))) ** n
                if backoff.get("cap"):
                    delay = min(delay, parse_duration(backoff["cap"], f"template {tname}.retryStrategy.backoff.cap"))
                if backoff.get("maxDuration"):
                    limit_s = parse_duration(backoff["maxDuration"], f"template {tname}.retryStrategy.backoff.maxDuration")
                    if (time.time() - first_started) * (1 / self.r.backoff_scale if self.r.backoff_scale else 1) + delay > limit_s:
                        run.message = attempt.message + " (Backoff would exceed max duration limit)"
                        break
                self.set_node(nid, message=f"Backoff for {delay:g} seconds")
                time.sleep(delay * self.r.backoff_scale)
                self.set_node(nid, message=None)
            n += 1
        run.phase = attempt.phase
        run.outputs = attempt.outputs
        if attempt.phase == "Succeeded":
            run.message = ""
        run.finished = time.time()
        outputs = self.node_outputs(template, attempt) if attempt.phase == "Succeeded" else None
        self.set_node(nid, phase=run.phase, finishedAt=_now(), message=run.message or None, outputs=outputs)
        self._notify(run)
        return run.phase

    def resolve_inputs(self, template: dict, args: dict, scope: dict) -> dict[str, str]:
        inputs = template.get("inputs") or {}
        _only(inputs, {"parameters"}, f"template {template['name']}.inputs")
        out = {}
        for p in inputs.get("parameters") or []:
            _only(p, {"name", "value", "default", "description"}, f"template {template['name']}.inputs.parameters[]")
            if p["name"] in args:
                out[p["name"]] = args[p["name"]]
            elif p.get("value") is not None:
                out[p["name"]] = substitute(str(p["value"]), scope, f"template {template['name']}")
            elif p.get("default") is not None:
                out[p["name"]] = str(p["default"])
            else:
                raise WorkflowError(f"inputs.parameters.{p['name']} was not supplied")
        return out

    @staticmethod
    def node_outputs(template: dict, attempt: Attempt) -> dict | None:
        params = []
        for p in ((template.get("outputs") or {}).get("parameters")) or []:
            if p["name"] in attempt.outputs:
                params.append({"name": p["name"], "value": attempt.outputs[p["name"]], "valueFrom": p.get("valueFrom")})
        out: dict[str, Any] = {}
        if params:
            out["parameters"] = params
        if attempt.exit_code is not None:
            out["exitCode"] = str(attempt.exit_code)
        return out or None

    # --- one attempt: one "pod" -----------------------------------------------------------------------

    def attempt(self, run: TaskRun, nid: str, node_name: str, display: str, template: dict, inputs: dict,
                scope: dict, base: dict, node_inputs: dict | None) -> Attempt:
        att = Attempt(nid, display, template["name"], phase="Running", started=time.time())
        run.attempts.append(att)
        self.set_node(nid, **{**base, "name": node_name}, displayName=display, type="Pod", phase="Running", inputs=node_inputs)
        self._notify(run)
        try:
            self.execute_pod(att, template, inputs, scope)
        except (WorkflowError, PodError) as exc:
            att.phase, att.message = "Error", str(exc)
        att.finished = time.time()
        outputs = self.node_outputs(template, att)
        self.set_node(nid, phase=att.phase, finishedAt=_now(), message=att.message or None, outputs=outputs,
                      hostNodeName=att.host)
        self._notify(run)
        return att

    def execute_pod(self, att: Attempt, template: dict, inputs: dict, scope: dict) -> None:
        tname = template["name"]
        where = f"template {tname}"
        full_scope = dict(scope)
        full_scope.update({f"inputs.parameters.{k}": v for k, v in inputs.items()})
        body = {k: v for k, v in template.items() if k not in ("metrics", "outputs", "inputs", "retryStrategy")}
        body = substitute(body, full_scope, where)
        container = body.get("container")
        if not isinstance(container, dict):
            raise Unsupported(f"{where}: only container templates can run (no script/resource/steps)")
        _only(container, CONTAINER_FIELDS, f"{where}.container")
        host = self.schedule(body, where)
        att.host = host
        pod_dir = Path(tempfile.mkdtemp(prefix=f"{tname}-", dir=self.r.workdir))
        mounts = self.mount_volumes(body, container, pod_dir, host, where)
        env = self.pod_env(body, container, pod_dir, where)
        command = list(container.get("command") or [])
        if not command:
            raise Unsupported(f"{where}.container.command: the image's entrypoint is unknown locally")
        if command[0] not in ("python", "python3"):
            raise Unsupported(f"{where}.container.command[0] {command[0]!r}: only python entrypoints run locally")
        argv = [self.r.python] + [map_path(a, mounts) for a in command[1:]] + [map_path(a, mounts) for a in container.get("args") or []]
        att.argv = argv
        timeout = None
        if template.get("activeDeadlineSeconds"):
            timeout = float(str(template["activeDeadlineSeconds"]))
        if self.deadline:
            remaining = max(0.0, self.deadline - time.time())
            timeout = remaining if timeout is None else min(timeout, remaining)
        policy = container.get("terminationMessagePolicy") or "File"
        if policy not in ("File", "FallbackToLogsOnError"):
            raise Unsupported(f"{where}.container.terminationMessagePolicy {policy!r}")
        try:
            proc = subprocess.run(argv, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            att.logs = _text(exc.stdout)
            att.phase, att.message = "Failed", "Pod was active on the node longer than the specified deadline"
            return
        except OSError as exc:
            raise PodError(f"failed to start container: {exc}") from None
        att.logs, att.exit_code = proc.stdout, proc.returncode
        att.phase = "Succeeded" if proc.returncode == 0 else "Failed"
        if proc.returncode != 0:
            # Argo takes the container's termination message when there is one: with
            # FallbackToLogsOnError the kubelet fills it with the tail of the logs.
            tail = termination_message(att.logs) if policy == "FallbackToLogsOnError" else ""
            att.message = tail or f"Error (exit code {proc.returncode})"
        att.outputs = self.read_outputs(template, mounts, att)
        shutil.rmtree(pod_dir, ignore_errors=True)

    def read_outputs(self, template: dict, mounts: list[tuple[str, Path]], att: Attempt) -> dict[str, str]:
        outputs = template.get("outputs") or {}
        _only(outputs, {"parameters"}, f"template {template['name']}.outputs")
        values = {}
        for p in outputs.get("parameters") or []:
            _only(p, {"name", "valueFrom", "globalName", "description"}, f"template {template['name']}.outputs.parameters[]")
            if p.get("globalName"):
                raise Unsupported(f"template {template['name']}.outputs.parameters[{p['name']}].globalName")
            vf = p.get("valueFrom") or {}
            _only(vf, {"path", "default"}, f"template {template['name']}.outputs.parameters[{p['name']}].valueFrom")
            if "path" not in vf:
                raise Unsupported(f"template {template['name']}.outputs.parameters[{p['name']}]: only valueFrom.path")
            local = Path(map_path(vf["path"], mounts))
            if not any(_under(vf["path"], m) for m, _ in mounts):
                raise Unsupported(f"template {template['name']}: output path {vf['path']} is not under a volume mount")
            try:
                values[p["name"]] = local.read_text()
            except OSError:
                if vf.get("default") is not None:
                    values[p["name"]] = str(vf["default"])
                elif att.phase == "Succeeded":
                    att.phase, att.message = "Error", f"open {vf['path']}: no such file or directory"
        return values

    def schedule(self, body: dict, where: str) -> str | None:
        """The node a pod is pinned to (nodeAffinity matchFields metadata.name), checked to exist."""
        affinity = body.get("affinity")
        if not affinity:
            return None
        _only(affinity, {"nodeAffinity"}, f"{where}.affinity")
        na = affinity["nodeAffinity"]
        _only(na, {"requiredDuringSchedulingIgnoredDuringExecution"}, f"{where}.affinity.nodeAffinity")
        terms = na["requiredDuringSchedulingIgnoredDuringExecution"].get("nodeSelectorTerms") or []
        if len(terms) != 1:
            raise Unsupported(f"{where}.affinity: exactly one nodeSelectorTerm is supported")
        _only(terms[0], {"matchFields"}, f"{where}.affinity.nodeSelectorTerms[0]")
        fields = terms[0]["matchFields"]
        if len(fields) != 1 or fields[0].get("key") != "metadata.name" or fields[0].get("operator") != "In" or len(fields[0].get("values") or []) != 1:
            raise Unsupported(f"{where}.affinity: only matchFields metadata.name In [<one node>] is supported")
        node = fields[0]["values"][0]
        if not node or self.r.kube.get("nodes", None, node) is None:
            raise PodError(f"0/{len(self.r.kube.list('nodes'))} nodes are available: node {node!r} does not match the pod's node affinity (unschedulable)")
        return node

    def mount_volumes(self, body: dict, container: dict, pod_dir: Path, host: str | None, where: str) -> list[tuple[str, Path]]:
        volumes = {v["name"]: v for v in body.get("volumes") or []}
        mounts = []
        for vm in container.get("volumeMounts") or []:
            _only(vm, {"name", "mountPath", "readOnly"}, f"{where}.container.volumeMounts[]")
            vol = volumes.get(vm["name"])
            if vol is None:
                raise WorkflowError(f"{where}: volume {vm['name']!r} not found")
            kinds = [k for k in vol if k != "name"]
            if kinds == ["emptyDir"]:
                local = pod_dir / "volumes" / vm["name"]
                local.mkdir(parents=True)
            elif kinds == ["configMap"]:
                cm = vol["configMap"]
                _only(cm, {"name", "optional", "items", "defaultMode"}, f"{where}.volumes[{vm['name']}].configMap")
                data = self.r.configmaps.get(cm["name"])
                if data is None and not cm.get("optional"):
                    raise PodError(f'MountVolume.SetUp failed for volume "{vm["name"]}": configmap "{cm["name"]}" not found')
                local = pod_dir / "volumes" / vm["name"]
                local.mkdir(parents=True)
                items = cm.get("items") or [{"key": k, "path": k} for k in (data or {})]
                for item in items:
                    if item["key"] not in (data or {}):
                        raise PodError(f'configmap "{cm["name"]}" has no key {item["key"]!r}')
                    (local / item["path"]).write_text(data[item["key"]])
            elif kinds == ["hostPath"]:
                hp = vol["hostPath"]
                _only(hp, {"path", "type"}, f"{where}.volumes[{vm['name']}].hostPath")
                if hp["path"].rstrip("/") != "/var/lib/kubelet/checkpoints":
                    raise Unsupported(f"{where}: hostPath {hp['path']!r} (only the kubelet checkpoint directory is mapped)")
                if host is None:
                    raise Unsupported(f"{where}: a hostPath volume without a node pin (nodeAffinity matchFields)")
                local = Path(self.r.kube.checkpoint_dir(host))
            else:
                raise Unsupported(f"{where}.volumes[{vm['name']}]: volume type {kinds} is not supported")
            mounts.append((vm["mountPath"].rstrip("/") or "/", local))
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        return mounts

    def pod_env(self, body: dict, container: dict, pod_dir: Path, where: str) -> dict[str, str]:
        home = pod_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if body.get("automountServiceAccountToken", True) is not False:
            env["KUBECONFIG"] = str(self.r.kube.kubeconfig)
        env.update(self.r.env)
        for item in container.get("env") or []:
            _only(item, {"name", "value", "valueFrom"}, f"{where}.container.env[]")
            if "valueFrom" in item:
                vf = item["valueFrom"]
                _only(vf, {"secretKeyRef"}, f"{where}.container.env[{item['name']}].valueFrom")
                ref = vf["secretKeyRef"]
                _only(ref, {"name", "key", "optional"}, f"{where}.container.env[{item['name']}].valueFrom.secretKeyRef")
                secret = self.r.secrets.get(ref["name"])
                if secret is None or ref["key"] not in secret:
                    if ref.get("optional"):
                        continue
                    what = f'secret "{ref["name"]}" not found' if secret is None else f'couldn\'t find key {ref["key"]} in Secret {ref["name"]}'
                    raise PodError(f"CreateContainerConfigError: {what}")
                env[item["name"]] = secret[ref["key"]]
            else:
                env[item["name"]] = str(item.get("value", ""))
        return env


class PodError(Exception):
    """The pod cannot start or be scheduled: Argo marks the node Error."""


def _under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def map_path(value: str, mounts: list[tuple[str, Path]]) -> str:
    """A path under a volume mount (the whole value, or the value of --flag=) -> the local directory."""
    if value.startswith("--") and "=" in value:
        flag, _, path = value.partition("=")
        return f"{flag}={_map_one(path, mounts)}"
    return _map_one(value, mounts)


def _map_one(path: str, mounts: list[tuple[str, Path]]) -> str:
    for mount, local in mounts:
        if _under(path, mount):
            return str(local) + path[len(mount):]
    return path


def termination_message(logs: str) -> str:
    """What the kubelet records for FallbackToLogsOnError: the last 80 lines, at most 2048 bytes."""
    lines = logs.splitlines(keepends=True)[-TERMINATION_LOG_LINES:]
    data = "".join(lines).encode()[-TERMINATION_LOG_BYTES:]
    return data.decode(errors="ignore")


def _text(data: Any) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)
