"""A created step Pod, run locally: scheduled and started by the stand-in cluster, then argoexec's
`init`, the `main` container as a subprocess, and argoexec's `wait` reporting the outputs.

- Start: the scheduler's node (pods.schedule), then FakeKube.start_pod, the kubelet's start, which
  resolves every volume and env var from objects in the stand-in API. A pod that cannot start
  stays Pending; the node shows Argo's pending reason (operator.go getPendingReason: the waiting
  container's `reason: message`, or the scheduler's Unschedulable condition) and fails when a
  deadline passes: the kubelet's activeDeadlineSeconds, counted from the pod's start
  (pkg/kubelet/active_deadline.go: "Pod was active on the node longer than the specified
  deadline"), or the workflow's, when the controller fails its unfinished nodes
  (exec_control.go applyExecutionControl and operator.go
  failNodesWithoutCreatedPodsAfterDeadlineOrShutdown: "Step exceeded its deadline"), whichever
  comes first; the exit handler is exempt from the workflow's.
- init and wait build their API client from the token file mounted at
  /var/run/secrets/kubernetes.io/serviceaccount (client-go's in-cluster config, which
  DeferredLoadingClientConfig uses only when that file exists); without it `argoexec init` dies
  in initExecutor (checkErr: panic, exit code 2) with client-go's ErrEmptyConfig, and the pod
  fails before main starts.
- main gets KUBECONFIG only when its own container has a token mount; the token is read from the
  files the kubelet wrote for that volume. Its volumes are local directories filled from
  start_pod's answer (configMap, secret and projected files; emptyDir; the node's hostPath).
- wait (cmd/argoexec/commands/wait.go, workflow/executor/taskresult.go): InitializeOutput creates
  the WorkflowTaskResult named after the node id (labels workflows.argoproj.io/workflow and
  /report-outputs-completed=false, an ownerReference to the Workflow), SaveParameters reads each
  valueFrom.path, ReportOutputs merge-patches the outputs, FinalizeOutput patches the label to
  "true"; each call with the wait container's token. A refused call is not retried (only
  transient errors are); the first error ends wait with exit code 64 and becomes the node's
  message (operator.go inferFailedReason: the main container's failure first, then wait's).
The controller then takes the node's outputs from the WorkflowTaskResult in the API.
Messages follow v3.6 (`Error (exit code N): <message>`; v3.7 and later prefix the container name).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import requests

from standin.argo.workflows.model import Attempt, Unsupported, only
from standin.argo.workflows.pods import TOKEN_DIR, WorkflowContext, schedule

ROOT = Path(__file__).resolve().parents[3]
TERMINATION_LOG_LINES, TERMINATION_LOG_BYTES = 80, 2048  # the kubelet's FallbackToLogsOnError tail
NO_CLIENT_CONFIG = ("invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER "
                    "environment variable")
KUBELET_DEADLINE = "Pod was active on the node longer than the specified deadline"
WORKFLOW_DEADLINE = "Step exceeded its deadline"
PANIC_EXIT, WAIT_ERROR_EXIT = 2, 64
TASKRESULTS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflowtaskresults"


@dataclass
class Timing:
    """When this pod's deadlines fall (wall clock), how often to retry a Pending start, and when to give up."""

    workflow_deadline: float | None  # None for the exit handler
    poll: float = 0.1
    pending_limit: float = 120.0  # no deadline at all: Argo would wait forever; the runner gives up


class PodRun:
    """One created Pod from start to its outputs; fills an Attempt."""

    def __init__(self, runner, wf: WorkflowContext, pod: dict, template: dict, timing: Timing,
                 on_progress: Callable[[str, str], None]) -> None:
        self.r = runner
        self.kube = runner.kube
        self.wf = wf
        self.pod = pod
        self.name = pod["metadata"]["name"]
        self.namespace = pod["metadata"]["namespace"]
        self.node_id = pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
        self.template = template
        self.timing = timing
        self.on_progress = on_progress  # (node phase, message): Pending with its reason, then Running
        self.kubelet_deadline: float | None = None

    # --- start -------------------------------------------------------------------------------

    def deadline(self) -> tuple[float, str] | None:
        """The first deadline to pass and the message it gives."""
        found = []
        if self.kubelet_deadline is not None:
            found.append((self.kubelet_deadline, KUBELET_DEADLINE))
        if self.timing.workflow_deadline is not None:
            found.append((self.timing.workflow_deadline, WORKFLOW_DEADLINE))
        return min(found) if found else None

    def start(self, att: Attempt):
        """start_pod until it succeeds; None (att failed) when a deadline passes while Pending."""
        from standin.kube import PodPending

        first = time.time()
        shown = None
        ads = self.pod["spec"].get("activeDeadlineSeconds")
        while True:
            node, why = schedule(self.pod, [n["metadata"]["name"] for n in self.kube.list("nodes")])
            if node is not None:
                if self.kubelet_deadline is None and ads is not None:
                    self.kubelet_deadline = time.time() + float(ads)  # status.startTime: the kubelet's first sync
                try:
                    started = self.kube.start_pod(self.namespace, self.name, node)
                    att.host = node
                    return started
                except PodPending:
                    message = pending_reason(self.kube.get("pods", self.namespace, self.name) or {})
            else:
                message = f"Unschedulable: {why}"
            if message != shown:
                self.on_progress("Pending", message)
                shown = message
            now = time.time()
            due = self.deadline()
            if due is not None and now >= due[0]:
                att.phase, att.message = "Failed", due[1]
                if due[1] == KUBELET_DEADLINE:  # the controller's terminateContainers leaves a Pending pod be
                    self.kube.set_pod_phase(self.namespace, self.name, "Failed")
                return None
            if due is None and now - first > self.timing.pending_limit:
                att.phase = "Error"
                att.message = f"{message} (the pod stayed Pending {self.timing.pending_limit:g}s; the local runner gives up)"
                return None
            time.sleep(self.timing.poll if due is None else max(0.0, min(self.timing.poll, due[0] - now)))

    # --- the containers ------------------------------------------------------------------------

    def container(self, name: str) -> dict:
        spec = self.pod["spec"]
        return next(c for c in (spec.get("initContainers") or []) + spec["containers"] if c["name"] == name)

    def token_files(self, container: str, started) -> dict[str, bytes] | None:
        """The files of the volume mounted at the service-account token path in that container."""
        for mount in self.container(container).get("volumeMounts") or []:
            if mount["mountPath"].rstrip("/") == TOKEN_DIR:
                return started.volumes[mount["name"]].files or {}
        return None

    def run(self, att: Attempt) -> None:
        started = self.start(att)
        if started is None:
            return
        att.phase = "Running"
        self.on_progress("Running", "")
        pod_dir = Path(tempfile.mkdtemp(prefix=f"{self.template['name']}-", dir=self.r.workdir))
        try:
            init_token = (self.token_files("init", started) or {}).get("token")
            if not init_token:  # argoexec init: initExecutor -> clientConfig.ClientConfig() -> checkErr
                att.phase, att.exit_code = "Error", None
                att.message = f"Error (exit code {PANIC_EXIT}): {NO_CLIENT_CONFIG}"
                self.kube.set_pod_phase(self.namespace, self.name, "Failed")
                return
            mounts = self.mount(started, "main", pod_dir)
            wait_files = self.token_files("wait", started) or {}
            reporter = TaskResults(self.kube.url, wait_files.get("token"), (wait_files.get("namespace") or b"default").decode(),
                                   self.wf, self.node_id)
            reporter.initialize()
            self.run_main(att, started, mounts, pod_dir)
            values = self.save_parameters(mounts, reporter)
            reporter.report(values)
            reporter.finalize()
            att.outputs = self.controller_outputs()
            if att.phase == "Succeeded" and reporter.errors:
                att.phase = "Error"
                att.message = f"Error (exit code {WAIT_ERROR_EXIT}): {reporter.errors[0]}"
            self.kube.set_pod_phase(self.namespace, self.name, "Succeeded" if att.phase == "Succeeded" else "Failed")
        finally:
            shutil.rmtree(pod_dir, ignore_errors=True)

    def mount(self, started, container: str, pod_dir: Path) -> list[tuple[str, Path]]:
        """Local directories for the container's volume mounts, filled as the kubelet fills them."""
        mounts = []
        for vm in self.container(container).get("volumeMounts") or []:
            volume = started.volumes[vm["name"]]
            local = pod_dir / "volumes" / vm["name"]
            if volume.host_path is not None:
                local = Path(volume.host_path)
            elif volume.files is not None:
                if not local.exists():
                    for rel, data in volume.files.items():
                        target = local / PurePosixPath(rel)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                    local.mkdir(parents=True, exist_ok=True)
            else:
                local.mkdir(parents=True, exist_ok=True)
            if vm.get("subPath"):
                local = local / vm["subPath"]
                local.mkdir(parents=True, exist_ok=True)
            mounts.append((vm["mountPath"].rstrip("/") or "/", local))
        mounts.sort(key=lambda m: len(m[0]), reverse=True)
        return mounts

    def run_main(self, att: Attempt, started, mounts: list[tuple[str, Path]], pod_dir: Path) -> None:
        main = self.container("main")
        command = main["command"]
        command = command[command.index("--") + 1:]  # behind `argoexec emissary ... --`
        env = self.main_env(started, mounts, pod_dir)
        argv = [self.r.python] + [map_path(a, mounts) for a in command[1:]] + [map_path(a, mounts) for a in main.get("args") or []]
        att.argv = argv
        due = self.deadline()
        timeout = None if due is None else max(0.0, due[0] - time.time())
        policy = main.get("terminationMessagePolicy") or "File"
        try:
            proc = subprocess.run(argv, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            att.logs = _text(exc.stdout)
            att.phase, att.message = "Failed", due[1] if due else KUBELET_DEADLINE
            return
        except OSError as exc:
            att.phase, att.message = "Error", f"failed to start container: {exc}"
            return
        att.logs, att.exit_code = proc.stdout, proc.returncode
        att.phase = "Succeeded" if proc.returncode == 0 else "Failed"
        if proc.returncode != 0:
            # Argo takes the container's termination message when there is one: with
            # FallbackToLogsOnError the kubelet fills it with the tail of the logs.
            tail = termination_message(att.logs) if policy == "FallbackToLogsOnError" else ""
            att.message = tail or f"Error (exit code {proc.returncode})"

    def main_env(self, started, mounts: list[tuple[str, Path]], pod_dir: Path) -> dict[str, str]:
        home = pod_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(self.r.env)
        env.pop("KUBECONFIG", None)
        env.update(started.env.get("main") or {})
        token_dir = next((local for mount, local in mounts if mount == TOKEN_DIR), None)
        if token_dir is not None and (token_dir / "token").is_file():
            env["KUBECONFIG"] = str(self.kube.kubeconfig_for((token_dir / "token").read_text()))
        return env

    # --- outputs -------------------------------------------------------------------------------

    def save_parameters(self, mounts: list[tuple[str, Path]], reporter: "TaskResults") -> list[dict]:
        """argoexec SaveParameters: each output parameter's file from main's filesystem."""
        tname = self.template["name"]
        outputs = self.template.get("outputs") or {}
        only(outputs, {"parameters"}, f"template {tname}.outputs")
        values = []
        for p in outputs.get("parameters") or []:
            only(p, {"name", "valueFrom", "globalName", "description"}, f"template {tname}.outputs.parameters[]")
            if p.get("globalName"):
                raise Unsupported(f"template {tname}.outputs.parameters[{p['name']}].globalName")
            vf = p.get("valueFrom") or {}
            only(vf, {"path", "default"}, f"template {tname}.outputs.parameters[{p['name']}].valueFrom")
            if "path" not in vf:
                raise Unsupported(f"template {tname}.outputs.parameters[{p['name']}]: only valueFrom.path")
            if not any(_under(vf["path"], m) for m, _ in mounts):
                raise Unsupported(f"template {tname}: output path {vf['path']} is not under a volume mount")
            try:
                value = Path(map_path(vf["path"], mounts)).read_text()
            except OSError:
                if vf.get("default") is None:
                    reporter.errors.append(f"open {vf['path']}: no such file or directory")
                    continue
                value = str(vf["default"])
            values.append({"name": p["name"], "value": value, "valueFrom": vf})
        return values

    def controller_outputs(self) -> dict[str, str]:
        """The node's outputs as the controller reads them: from the WorkflowTaskResult, if any."""
        result = self.kube.get("workflowtaskresults", self.namespace, self.node_id)
        params = (((result or {}).get("outputs") or {}).get("parameters")) or []
        return {p["name"]: p.get("value", "") for p in params}


class TaskResults:
    """argoexec's WorkflowTaskResult calls, over HTTP with the wait container's token."""

    def __init__(self, url: str, token: bytes | None, namespace: str, wf: WorkflowContext, node_id: str) -> None:
        self.url = url + TASKRESULTS.format(ns=namespace)
        self.token = token.decode() if token else None
        self.wf = wf
        self.node_id = node_id
        self.created = False
        self.errors: list[str] = []

    def _call(self, method: str, path: str, body: dict) -> int:
        if self.token is None:
            self.errors.append(NO_CLIENT_CONFIG)
            return 0
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                   "Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
        response = requests.request(method, self.url + path, json=body, headers=headers, timeout=30)
        if response.status_code >= 400 and response.status_code != 409:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text.strip()
            self.errors.append(message)
        return response.status_code

    def _upsert(self, result: dict) -> None:
        """upsertTaskResult: create first (AlreadyExists: patch), then patch (NotFound: create)."""
        if not self.created:
            status = self._create(result)
            if status == 409:
                self._call("PATCH", f"/{self.node_id}", result)
        else:
            if self._call("PATCH", f"/{self.node_id}", result) == 404:
                self._create(result)

    def _create(self, result: dict) -> int:
        body = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTaskResult",
            "metadata": {
                "name": self.node_id,
                "labels": {"workflows.argoproj.io/workflow": self.wf.name,
                           "workflows.argoproj.io/report-outputs-completed": "false"},
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                     "name": self.wf.name, "uid": self.wf.uid}],
            },
            **result,
        }
        status = self._call("POST", "", body)
        self.created = status in (201, 409)
        return status

    def initialize(self) -> None:
        self._upsert({})

    def report(self, parameters: list[dict]) -> None:
        outputs: dict[str, Any] = {}
        if parameters:
            outputs["parameters"] = parameters
        self._upsert({"outputs": outputs})

    def finalize(self) -> None:
        self._call("PATCH", f"/{self.node_id}", {"metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "true"}}})


def pending_reason(pod: dict) -> str:
    """operator.go getPendingReason: the first waiting container's `reason: message`, else Unschedulable."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return f"{waiting['reason']}: {waiting['message']}" if waiting.get("message") else waiting.get("reason", "")
    for cond in status.get("conditions") or []:
        if cond.get("reason") == "Unschedulable":
            return f"Unschedulable: {cond['message']}" if cond.get("message") else "Unschedulable"
    return ""


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
