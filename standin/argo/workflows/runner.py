"""The runner: takes a submitted Workflow from the stand-in API and runs it the way Argo's
controller (workflow/controller/operator.go) and executor do, for the fields our templates use.

Arguments merged over the WorkflowTemplate's (required values, enums); the DAG (scheduling);
substitution (templating); each attempt a Pod the controller creates in the stand-in API (pods)
and the stand-in cluster starts and runs (executor); retryStrategy (retries); activeDeadlineSeconds
(template and workflow); the onExit handler with `workflow.status`; workflow-level mutexes and
semaphores (sync: Pending while waiting, as Argo's lock manager).
The Workflow object in the API is updated as it runs (status.phase, status.nodes with phase, type,
templateName, displayName, inputs/outputs parameters, startedAt/finishedAt, message), because the
report step reads it. Not modelled: resources and security contexts (steps run as local
subprocesses), podGC (pods stay), ttlStrategy (a finished Workflow stays), metrics.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

import yaml

from standin.argo.workflows.model import (
    TEMPLATE_FIELDS,
    TEMPLATE_SPEC_FIELDS,
    WORKFLOW_SPEC_FIELDS,
    Attempt,
    RunResult,
    TaskRun,
    Unsupported,
    WorkflowError,
    node_id,
    now as _now,
    only as _only,
)
from standin.argo.workflows.executor import PodRun, Timing, WORKFLOW_DEADLINE
from standin.argo.workflows.pods import PodRefused, WorkflowContext, build_pod, token_secret_name
from standin.argo.workflows.retries import RetryStrategy
from standin.argo.workflows.sync import Item, LockManager, SyncError, configmap_limit, items as sync_items
from standin.argo.workflows.scheduling import Dag, should_execute
from standin.argo.workflows.templating import substitute

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"


# --- the runner -------------------------------------------------------------------------------------


def _sync_patch(status: dict) -> dict:
    """status.synchronization as a merge patch: what the status no longer has is removed."""
    return {kind: ({"holding": None, "waiting": None, **status[kind]} if kind in status else None)
            for kind in ("semaphore", "mutex")}


class LocalRunner:
    """Runs Workflows stored in a FakeKube against the WorkflowTemplates of a build directory.

    Acting as Argo's controller it talks to the stand-in API with the admin token (`kube.token`):
    it creates each step's Pod there (pods.build_pod), and the stand-in cluster admits and starts
    it; Secrets, ConfigMaps, ServiceAccounts and RBAC come from what was applied to the API.
    env: extra variables for every main container (e.g. STEP_RETRY_BASE_DELAY, AWS_ENDPOINT_URL:
    what a real pod would reach through the cluster's network). active_deadline_seconds overrides
    the workflow's spec.activeDeadlineSeconds (tests: nothing waits 900 s); pending_poll is how
    often a Pending pod's start is retried; pending_limit bounds a Pending pod no deadline ends.
    """

    def __init__(
        self,
        kube,
        build_dir: str | Path = "build",
        *,
        env: dict[str, str] | None = None,
        workdir: str | Path | None = None,
        python: str = sys.executable,
        on_change: Callable[[TaskRun], None] | None = None,
        max_parallel: int = 4,
        backoff_scale: float = 1.0,
        active_deadline_seconds: float | None = None,
        pending_poll: float = 0.1,
        pending_limit: float = 120.0,
    ) -> None:
        self.kube = kube
        self.build_dir = Path(build_dir)
        self.env = dict(env or {})
        self._workdir = Path(workdir) if workdir else None
        self.python = python
        self.on_change = on_change
        self.max_parallel = max_parallel
        self.backoff_scale = backoff_scale  # <1 shortens retryStrategy.backoff waits (tests, demo)
        self.active_deadline_seconds = active_deadline_seconds
        self.pending_poll = pending_poll
        self.pending_limit = pending_limit
        self._templates: dict[str, dict] | None = None
        self._api = None
        self._core = None

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
            from kubernetes import client

            api_client = _api_client(self.kube.kubeconfig)
            self._api = client.CustomObjectsApi(api_client)
            self._core = client.CoreV1Api(api_client)
        return self._api

    def core_api(self):
        self.custom_api()
        return self._core

    # --- API ------------------------------------------------------------------------------------

    def submit(self, workflow: dict, token: str | None = None) -> tuple[bool, dict]:
        """Create the Workflow through the API: (True, object) or (False, Status) on 409 AlreadyExists.

        `token`: whose identity submits (the Sensor's ServiceAccount, as Argo Events' argoWorkflow
        trigger runs `argo submit` in the Sensor pod); the admin's when not given."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = self.custom_api() if token is None else client.CustomObjectsApi(_api_client(self.kube.kubeconfig_for(token)))
        ns = workflow["metadata"]["namespace"]
        try:
            return True, api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workflow)
        except ApiException as exc:
            if exc.status == 409:
                return False, json.loads(exc.body or "{}")
            raise

    def _get(self, namespace: str, name: str) -> dict:
        return self.custom_api().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def _patch(self, namespace: str, name: str, patch: dict) -> None:
        self.custom_api().patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)

    def create_pod(self, pod: dict) -> dict:
        """submitPod: POST the Pod; the API server's answer (after admission) is what runs."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core_api().create_namespaced_pod(pod["metadata"]["namespace"], pod, _preload_content=False)
        except ApiException as exc:
            raise PodRefused(_status_message(exc)) from None
        return json.loads(response.data)

    def token_secret_name(self, namespace: str, account: str) -> str:
        """operator.go getServiceAccountTokenName: GET the executor ServiceAccount (an error fails the node)."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core_api().read_namespaced_service_account(account, namespace, _preload_content=False)
        except ApiException as exc:
            raise PodRefused(_status_message(exc)) from None
        return token_secret_name(json.loads(response.data))

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
            children = self.nodes.setdefault(parent, {"id": parent}).setdefault("children", [])
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
        labels = dict(((tspec.get("workflowMetadata") or {}).get("labels")) or {})
        labels["workflows.argoproj.io/phase"] = "Running"
        annotations = dict(((tspec.get("workflowMetadata") or {}).get("annotations")) or {})
        self.root = node_id(self.name, self.name)
        entry = tspec.get("entrypoint")
        if entry not in self.templates:
            return self.fail_early(wf, started, f"entrypoint template {entry!r} not found")
        try:
            locks = self.acquire_locks(tspec, wf)  # operator.go: workflow-level locks before markWorkflowRunning
        except SyncError as exc:
            return self.fail_sync(wf, started, exc)
        deadline_seconds = self.r.active_deadline_seconds or tspec.get("activeDeadlineSeconds")
        if deadline_seconds:  # getWorkflowDeadline: startedAt (once running) + activeDeadlineSeconds
            self.deadline = time.time() + float(deadline_seconds)
        self.wfctx = WorkflowContext(meta["name"], meta.get("namespace", self.namespace), meta.get("uid", ""),
                                     tspec, self.deadline)
        with self.lock:
            self.nodes[self.root] = {
                "id": self.root, "name": self.name, "displayName": self.name, "type": "DAG",
                "templateName": entry, "phase": "Running", "startedAt": _now(),
            }
        patch: dict[str, Any] = {"metadata": {"labels": labels}, "status": {"phase": "Running", "startedAt": _now(), "nodes": self.nodes}}
        if annotations:
            patch["metadata"]["annotations"] = annotations
        if locks:
            patch["status"]["message"] = None
            patch["status"]["synchronization"] = _sync_patch(locks[2])
        self.r._patch(self.namespace, self.name, patch)
        try:
            dag_phase, dag_message = self.run_dag(self.templates[entry])
        except (Unsupported, WorkflowError) as exc:
            self.release_locks(locks)
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
        self.release_locks(locks)
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

    def acquire_locks(self, tspec: dict, wf: dict) -> tuple[LockManager, list[Item], dict] | None:
        """TryAcquire until every workflow-level lock is held (standin/argo/workflows/sync.py); while
        waiting the Workflow is Pending with Argo's message and status.synchronization."""
        sync = tspec.get("synchronization")
        if not sync:
            return None
        wanted = sync_items(sync, self.namespace, self.globals)
        manager = LockManager.of(self.r.kube, configmap_limit(self.r.core_api()))
        holder = f"{self.namespace}/{self.name}"  # getHolderKey(wf, "")
        created = str(wf["metadata"].get("creationTimestamp") or "")

        def waiting(message: str, status: dict) -> None:  # markWorkflowPhase(Pending, msg)
            self.r._patch(self.namespace, self.name, {
                "metadata": {"labels": {"workflows.argoproj.io/phase": "Pending"}},
                "status": {"phase": "Pending", "message": message, "synchronization": _sync_patch(status)},
            })

        try:
            status = manager.acquire(holder, 0, created, wanted, waiting, self.r.pending_limit)
        except SyncError:
            manager.release(holder, wanted)
            raise
        return manager, wanted, status

    def release_locks(self, locks: tuple[LockManager, list[Item], dict] | None) -> None:
        if locks:
            locks[0].release(f"{self.namespace}/{self.name}", locks[1])

    def fail_sync(self, wf: dict, started: float, exc: SyncError) -> RunResult:
        """markWorkflowFailed("Failed to acquire the synchronization lock. ..."): no node, no exit handler."""
        message = f"Failed to acquire the synchronization lock. {exc}"
        self.r._patch(self.namespace, self.name, {
            "metadata": {"labels": {"workflows.argoproj.io/phase": "Failed", "workflows.argoproj.io/completed": "true"}},
            "status": {"phase": "Failed", "message": message, "startedAt": _now(), "finishedAt": _now(),
                       "synchronization": None},
        })
        return RunResult(self.name, self.namespace, "Failed", message, [], None, self.r._get(self.namespace, self.name),
                         time.time() - started)

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
        dag = Dag.parse(template, self.templates)
        self.dag = dag
        self.task_order = list(dag.order)
        for name in dag.order:
            self.tasks[name] = TaskRun(name, dag.tasks[name]["template"])
        for name in dag.roots():
            self.add_child(self.root, self.task_node(name))
        phases: dict[str, str] = {}
        running: dict[Future, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.r.max_parallel, thread_name_prefix="task")
        try:
            while len(phases) < len(dag.order):
                while ready := dag.ready(phases, set(running.values())):
                    for name in ready:
                        nid = self.task_node(name)
                        for child in dag.children[name]:
                            self.add_child(nid, self.task_node(child))
                        if dag.condition_holds(name, phases):
                            running[pool.submit(self.run_task, dag.tasks[name], phases)] = name
                        else:
                            self.omit(name, dag.tasks[name]["template"], phases)
                if len(phases) == len(dag.order):
                    break
                if not running:
                    raise WorkflowError("the DAG cannot make progress (a dependency cycle?)")
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    name = running.pop(fut)
                    phases[name] = fut.result()
        finally:
            pool.shutdown(wait=True)
        return dag.assess(phases, {n: r.message for n, r in self.tasks.items()})

    def omit(self, name: str, template: str, phases: dict[str, str]) -> None:
        """A task whose depends condition is false: an Omitted node of type Skipped."""
        phases[name] = "Omitted"
        run = self.tasks[name]
        run.phase, run.message = "Omitted", "omitted: depends condition not met"
        self.set_node(self.task_node(name), name=f"{self.name}.{name}", displayName=name, type="Skipped",
                      templateName=template, boundaryID=self.root, phase="Omitted",
                      message=run.message, startedAt=_now(), finishedAt=_now())
        self._notify(run)

    def task_node(self, task: str) -> str:
        return node_id(self.name, f"{self.name}.{task}")

    def _notify(self, run: TaskRun) -> None:
        if self.r.on_change:
            self.r.on_change(run)

    # --- one task (with retries) ----------------------------------------------------------------------

    def run_task(self, task: dict, phases: dict[str, str]) -> str:
        name = task["name"]
        run = self.tasks[name]
        nid = node_id(self.name, f"{self.name}.{name}")
        scope = dict(self.globals)
        # dag.go buildLocalScopeFromTask: every ancestor's outputs, whatever its phase (a failed pod's
        # outputs are saved by argoexec's PostMain too; a Retry node's are its last attempt's).
        for other in self.dag.ancestors(name):
            if phases.get(other) is None:
                continue
            for key, value in self.tasks[other].outputs.items():
                scope[f"tasks.{other}.outputs.parameters.{key}"] = value
        where = f"task {name}"
        if task.get("when"):
            # resolveDependencyReferences: `when` is substituted and evaluated before anything else
            try:
                when = substitute(task["when"], scope, f"{where}.when")
                proceed = should_execute(when)
            except WorkflowError as exc:
                run.phase, run.message = "Error", str(exc)
                run.started = run.finished = time.time()
                self.set_node(nid, name=f"{self.name}.{name}", displayName=name, type="Skipped",
                              templateName=task["template"], boundaryID=self.root, phase="Error", message=str(exc),
                              startedAt=_now(), finishedAt=_now())
                self._notify(run)
                return "Error"
            if not proceed:
                run.phase, run.message = "Skipped", f"when '{when}' evaluated false"
                run.started = run.finished = time.time()
                self.set_node(nid, name=f"{self.name}.{name}", displayName=name, type="Skipped",
                              templateName=task["template"], boundaryID=self.root, phase="Skipped",
                              message=run.message, startedAt=_now(), finishedAt=_now())
                self._notify(run)
                return "Skipped"
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
        retry = RetryStrategy.parse(template)
        if retry is None:
            attempt = self.attempt(run, nid, node_name, display, template, inputs, scope, base, node_inputs)
            run.phase, run.message, run.outputs = attempt.phase, attempt.message, attempt.outputs
            run.finished = time.time()
            self._notify(run)
            return run.phase
        self.set_node(nid, displayName=display, type="Retry", phase="Running", inputs=node_inputs, **base)
        first_started = time.time()
        n = 0
        while True:
            child_name = f"{node_name}({n})"
            child_id = node_id(self.name, child_name)
            self.add_child(nid, child_id)
            attempt = self.attempt(run, child_id, child_name, f"{display}({n})", template, inputs, scope,
                                   {**base, "name": child_name, "startedAt": _now()}, node_inputs)
            if attempt.phase == "Succeeded":
                break
            why = retry.refusal(attempt, n)
            if why is not None:
                run.message = attempt.message + f" ({why})"
                break
            if self.deadline and time.time() >= self.deadline:
                run.message = "Max duration limit exceeded"
                break
            delay = retry.delay(n)
            if delay is not None:
                elapsed = (time.time() - first_started) * (1 / self.r.backoff_scale if self.r.backoff_scale else 1)
                if retry.exceeds_max_duration(elapsed, delay):
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
        # operator.go executeTemplate: "If retry node has completed, set the output of the last child
        # node to its output", whatever its phase.
        outputs = self.node_outputs(template, attempt)
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
        att = Attempt(nid, display, template["name"], phase="Pending", started=time.time())
        run.attempts.append(att)
        self.set_node(nid, **{**base, "name": node_name}, displayName=display, type="Pod", phase="Pending", inputs=node_inputs)
        self._notify(run)
        try:
            self.run_pod(att, nid, node_name, template, inputs, scope, on_exit=run.name == "onExit")
        except (WorkflowError, PodRefused) as exc:
            att.phase, att.message = "Error", str(exc)
        att.finished = time.time()
        outputs = self.node_outputs(template, att)
        self.set_node(nid, phase=att.phase, finishedAt=_now(), message=att.message or None, outputs=outputs,
                      hostNodeName=att.host)
        self._notify(run)
        return att

    def run_pod(self, att: Attempt, nid: str, node_name: str, template: dict, inputs: dict, scope: dict,
                on_exit: bool) -> None:
        """executeContainer -> createWorkflowPod, then the pod's life in the stand-in cluster."""
        where = f"template {template['name']}"
        full_scope = dict(scope)
        full_scope.update({f"inputs.parameters.{k}": v for k, v in inputs.items()})
        body = {k: v for k, v in template.items() if k not in ("metrics", "outputs", "inputs", "retryStrategy")}
        body = substitute(body, full_scope, where)
        pod = build_pod(self.wfctx, node_name, nid, body, template, on_exit, time.time(),
                        lambda account: self.r.token_secret_name(self.namespace, account))
        if pod is None:  # the workflow deadline passed before the pod was created
            att.phase, att.message = "Failed", WORKFLOW_DEADLINE
            return
        created = self.r.create_pod(pod)
        timing = Timing(None if on_exit else self.deadline, self.r.pending_poll, self.r.pending_limit)

        def progress(phase: str, message: str) -> None:  # the pod informer's view of the node
            self.set_node(nid, phase=phase, message=message or None, hostNodeName=att.host)

        PodRun(self.r, self.wfctx, created, template, timing, progress).run(att)
        if att.phase == "Running":
            att.phase = "Error"


def _api_client(kubeconfig):
    """An API client for that kubeconfig, urllib3 retries off."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.retries = False
    return client.ApiClient(configuration)


def _status_message(exc) -> str:
    """The message of the API's Status body (what client-go's StatusError.Error() returns)."""
    try:
        return json.loads(exc.body or "{}").get("message") or f"{exc.status} {exc.reason}"
    except ValueError:
        return f"{exc.status} {exc.reason}"
