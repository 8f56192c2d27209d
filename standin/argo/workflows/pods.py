"""The Pod Argo's controller creates for one step attempt, and the node the scheduler binds it to.

`build_pod` follows workflow/controller/workflowpod.go (createWorkflowPod -> podBuilder.build) in
the legacy layout of v3.6, v3.7 and v4 (workflowpod_layout.go, legacyLayout: an `init` and a
`wait` argoexec container around `main`):

- name from util.GeneratePodName (v2: `<workflow>-<template>-<fnv32a(node name)>`); labels
  workflows.argoproj.io/workflow and /completed=false (and /on-exit=true for the exit handler);
  annotations workflows.argoproj.io/node-name and /node-id and
  kubectl.kubernetes.io/default-container=main; a controller ownerReference to the Workflow;
- restartPolicy Never; volumes var-run-argo and tmp-dir-argo, then the template's (createVolumes,
  addVolumeReferences: a mount naming no volume is refused); activeDeadlineSeconds: the
  template's, or what is left of the workflow's deadline when that is sooner (not for the exit
  handler; no pod at all once the workflow deadline has passed);
- setupServiceAccount: serviceAccountName from the template, else the workflow;
  automountServiceAccountToken copied onto the Pod ONLY when it says false; with an executor
  service account (executorServiceAccountName: the template's, else the workflow's) a Secret
  volume `exec-sa-token` named by util/secrets TokenNameForServiceAccount of that account
  (operator.go getServiceAccountTokenName GETs it: its first `secrets` entry, else the annotation
  workflows.argoproj.io/service-account-token.name, else `<name>.service-account-token`), mounted
  by newExecContainer at /var/run/secrets/kubernetes.io/serviceaccount in `init` and `wait` only;
  false without an executor account is refused with the controller's message;
- containers `wait` then `main` (the template's container renamed, its command behind
  `/var/run/argo/argoexec emissary ... --`), initContainers `init`; executor env from
  createEnvVars (ARGO_POD_NAME and ARGO_POD_UID from the downward API, ARGO_WORKFLOW_NAME/UID)
  plus ARGO_CONTAINER_NAME, ARGO_TEMPLATE (init), ARGO_NODE_ID, ARGO_INCLUDE_SCRIPT_OUTPUT,
  ARGO_DEADLINE, ARGO_WORKFLOW_NAME on every container;
- affinity, tolerations and the pod securityContext from the template, else the workflow
  (addSchedulingConstraints); podMetadata, then the template's metadata (addMetadata).

`schedule` is the scheduler's part for what our templates ask (nodeAffinity matchFields
metadata.name, else any node); an unschedulable pod stays Pending with the scheduler's message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from standin.argo.workflows.model import CONTAINER_FIELDS, Unsupported, fnv32a, only

EXECUTOR_IMAGE = "quay.io/argoproj/argoexec:v3.6.5"
EXECUTOR_LOG_OPTS = ["--loglevel", "info", "--log-format", "text"]  # getExecutorLogLevel, executorLogFormat
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # common.ServiceAccountTokenMountPath
EXEC_TOKEN_VOLUME = "exec-sa-token"  # common.ServiceAccountTokenVolumeName
TOKEN_NAME_ANNOTATION = "workflows.argoproj.io/service-account-token.name"
VAR_RUN_ARGO = "/var/run/argo"
CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"  # the only hostPath the stand-in nodes have
NO_EXECUTOR_ACCOUNT = "executor.serviceAccountName must not be empty if automountServiceAccountToken is false"
VOLUME_KINDS = ("emptyDir", "configMap", "secret", "hostPath")


class PodRefused(Exception):
    """The controller cannot build or create the Pod: Argo marks the node Error with this message."""


@dataclass
class WorkflowContext:
    """What podBuilder reads from the Workflow: identity, the merged spec, the deadline (wall clock)."""

    name: str
    namespace: str
    uid: str
    spec: dict
    deadline: float | None = None


def pod_name(workflow: str, node_name: str, template: str) -> str:
    """util.GeneratePodName, POD_NAMES=v2 (the default)."""
    if workflow == node_name:
        return workflow
    prefix = f"{workflow}-{template}" if template else workflow
    return f"{prefix[:242]}-{fnv32a(node_name)}"


def executor_service_account(template: dict, wf_spec: dict) -> str:
    """executorServiceAccountName: the template's executor account, else the workflow's, else ""."""
    for source in (template, wf_spec):
        name = (source.get("executor") or {}).get("serviceAccountName")
        if name:
            return name
    return ""


def token_secret_name(service_account: dict) -> str:
    """util/secrets TokenNameForServiceAccount."""
    listed = service_account.get("secrets") or []
    if listed:
        return listed[0]["name"]
    annotations = (service_account.get("metadata") or {}).get("annotations") or {}
    if TOKEN_NAME_ANNOTATION in annotations:
        return annotations[TOKEN_NAME_ANNOTATION]
    return f"{service_account['metadata']['name']}.service-account-token"


def check_runnable(body: dict, where: str) -> dict:
    """What the local runner can run of a (substituted) template; returns its container."""
    container = body.get("container")
    if not isinstance(container, dict):
        raise Unsupported(f"{where}: only container templates can run (no script/resource/steps)")
    only(container, CONTAINER_FIELDS, f"{where}.container")
    command = list(container.get("command") or [])
    if not command:
        raise Unsupported(f"{where}.container.command: the image's entrypoint is unknown locally")
    if command[0] not in ("python", "python3"):
        raise Unsupported(f"{where}.container.command[0] {command[0]!r}: only python entrypoints run locally")
    policy = container.get("terminationMessagePolicy") or "File"
    if policy not in ("File", "FallbackToLogsOnError"):
        raise Unsupported(f"{where}.container.terminationMessagePolicy {policy!r}")
    for vm in container.get("volumeMounts") or []:
        only(vm, {"name", "mountPath", "readOnly"}, f"{where}.container.volumeMounts[]")
    for vol in body.get("volumes") or []:
        kinds = [k for k in vol if k != "name"]
        if len(kinds) != 1 or kinds[0] not in VOLUME_KINDS:
            raise Unsupported(f"{where}.volumes[{vol.get('name')}]: volume type {kinds} is not supported")
        if kinds == ["hostPath"] and vol["hostPath"].get("path", "").rstrip("/") != CHECKPOINT_DIR:
            raise Unsupported(f"{where}: hostPath {vol['hostPath'].get('path')!r} (only the kubelet checkpoint directory is mapped)")
    for item in container.get("env") or []:
        only(item, {"name", "value", "valueFrom"}, f"{where}.container.env[]")
        only(item.get("valueFrom") or {}, {"secretKeyRef", "configMapKeyRef"}, f"{where}.container.env[{item['name']}].valueFrom")
    if body.get("affinity"):
        node_pin(body["affinity"], where)
    return container


def node_pin(affinity: dict, where: str) -> str:
    """The one node a required nodeAffinity matchFields metadata.name In [<node>] names."""
    only(affinity, {"nodeAffinity"}, f"{where}.affinity")
    na = affinity["nodeAffinity"]
    only(na, {"requiredDuringSchedulingIgnoredDuringExecution"}, f"{where}.affinity.nodeAffinity")
    terms = na["requiredDuringSchedulingIgnoredDuringExecution"].get("nodeSelectorTerms") or []
    if len(terms) != 1:
        raise Unsupported(f"{where}.affinity: exactly one nodeSelectorTerm is supported")
    only(terms[0], {"matchFields"}, f"{where}.affinity.nodeSelectorTerms[0]")
    fields = terms[0]["matchFields"]
    if len(fields) != 1 or fields[0].get("key") != "metadata.name" or fields[0].get("operator") != "In" or len(fields[0].get("values") or []) != 1:
        raise Unsupported(f"{where}.affinity: only matchFields metadata.name In [<one node>] is supported")
    return fields[0]["values"][0]


def _exec_container(name: str, wf: WorkflowContext, executor_account: str) -> dict:
    """newExecContainer: the argoexec image, createEnvVars, the executor token mount."""
    container = {
        "name": name,
        "image": EXECUTOR_IMAGE,
        "command": ["argoexec", name, *EXECUTOR_LOG_OPTS],
        "env": [
            {"name": "ARGO_POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "ARGO_POD_UID", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}},
            {"name": "ARGO_WORKFLOW_NAME", "value": wf.name},
            {"name": "ARGO_WORKFLOW_UID", "value": wf.uid},
        ],
        "resources": {},
    }
    if executor_account:
        container["volumeMounts"] = [{"name": EXEC_TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}]
    return container


def _rfc3339(seconds: float | None) -> str:
    if seconds is None:
        return "0001-01-01T00:00:00Z"  # Go's zero time.Time
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_pod(
    wf: WorkflowContext,
    node_name: str,
    node_id: str,
    body: dict,
    template: dict,
    on_exit: bool,
    now: float,
    token_secret_for,
) -> dict | None:
    """The Pod manifest (None: the workflow deadline has passed, so no pod is created).

    body is the substituted template; template the raw one (its outputs and retryStrategy, which
    the runner does not substitute, complete ARGO_TEMPLATE).
    token_secret_for(account) -> the executor token Secret's name, as getServiceAccountTokenName.
    Raises PodRefused with the controller's message.
    """
    spec = wf.spec
    where = f"template {body['name']}"
    main = dict(check_runnable(body, where))
    tmpl_deadline = int(str(body["activeDeadlineSeconds"])) if body.get("activeDeadlineSeconds") else None
    active_deadline = tmpl_deadline
    if wf.deadline is not None and not on_exit:
        remaining = int(wf.deadline - now)
        if remaining <= 0:
            return None
        if tmpl_deadline is None or remaining < tmpl_deadline:
            active_deadline = remaining

    name = pod_name(wf.name, node_name, body["name"])
    labels = {"workflows.argoproj.io/workflow": wf.name, "workflows.argoproj.io/completed": "false"}
    if on_exit:
        labels["workflows.argoproj.io/on-exit"] = "true"
    annotations = {"workflows.argoproj.io/node-name": node_name, "workflows.argoproj.io/node-id": node_id}
    volumes = [{"name": "var-run-argo", "emptyDir": {}}, {"name": "tmp-dir-argo", "emptyDir": {}}]
    volumes += [dict(v) for v in body.get("volumes") or []]
    pod: dict = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": wf.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": wf.name, "uid": wf.uid,
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {"restartPolicy": "Never", "volumes": volumes},
    }
    if active_deadline is not None:
        pod["spec"]["activeDeadlineSeconds"] = active_deadline

    executor_account = setup_service_account(pod, body, spec, token_secret_for)

    wait = _exec_container("wait", wf, executor_account)
    init = _exec_container("init", wf, executor_account)
    main["name"] = "main"
    main["command"] = [f"{VAR_RUN_ARGO}/argoexec", "emissary", *EXECUTOR_LOG_OPTS, "--", *main["command"]]
    pod["spec"]["containers"] = [wait, main]
    pod["spec"]["initContainers"] = [init]
    annotations["kubectl.kubernetes.io/default-container"] = "main"

    for key in ("affinity", "tolerations", "securityContext"):  # addSchedulingConstraints
        value = body.get(key) or spec.get(key)
        if value:
            pod["spec"][key] = value
    for source in ((spec.get("podMetadata") or {}), (body.get("metadata") or {})):  # addMetadata
        annotations.update(source.get("annotations") or {})
        labels.update(source.get("labels") or {})

    known = {v["name"] for v in pod["spec"]["volumes"]}  # addVolumeReferences
    for vm in main.get("volumeMounts") or []:
        if vm["name"] not in known:
            raise PodRefused(f"volume '{vm['name']}' not found in workflow spec")

    init["volumeMounts"] = list(init.get("volumeMounts") or []) + [{"name": "var-run-argo", "mountPath": VAR_RUN_ARGO}]
    # the processed template without inputs.parameters (build's simplifiedTmpl)
    simplified = {**{k: v for k, v in template.items() if k != "inputs"}, **body, "inputs": {}}
    if (template.get("inputs") or {}).get("artifacts"):
        simplified["inputs"] = {"artifacts": template["inputs"]["artifacts"]}
    deadline = None if on_exit else wf.deadline
    common_env = [
        {"name": "ARGO_NODE_ID", "value": node_id},
        {"name": "ARGO_INCLUDE_SCRIPT_OUTPUT", "value": "false"},
        {"name": "ARGO_DEADLINE", "value": _rfc3339(deadline)},
        {"name": "ARGO_WORKFLOW_NAME", "value": wf.name},
    ]
    init["env"] = init["env"] + [
        {"name": "ARGO_CONTAINER_NAME", "value": "init"},
        {"name": "ARGO_TEMPLATE", "value": json.dumps(simplified, separators=(",", ":"))},
        *common_env,
    ]
    for container in (wait, main):
        container["env"] = list(container.get("env") or []) + [{"name": "ARGO_CONTAINER_NAME", "value": container["name"]}, *common_env]
    wait["volumeMounts"] = list(wait.get("volumeMounts") or []) + [
        {"name": "tmp-dir-argo", "mountPath": "/tmp", "subPath": "0"},
        {"name": "var-run-argo", "mountPath": VAR_RUN_ARGO},
    ]
    main["volumeMounts"] = list(main.get("volumeMounts") or []) + [{"name": "var-run-argo", "mountPath": VAR_RUN_ARGO}]
    return pod


def setup_service_account(pod: dict, template: dict, wf_spec: dict, token_secret_for) -> str:
    """workflowpod.go setupServiceAccount; returns the executor account ("" for none)."""
    spec = pod["spec"]
    account = template.get("serviceAccountName") or wf_spec.get("serviceAccountName")
    if account:
        spec["serviceAccountName"] = account
    automount = template.get("automountServiceAccountToken")
    if automount is None:
        automount = wf_spec.get("automountServiceAccountToken")
    if automount is False:
        spec["automountServiceAccountToken"] = False
    executor = executor_service_account(template, wf_spec)
    if executor:
        spec["volumes"].append({"name": EXEC_TOKEN_VOLUME, "secret": {"secretName": token_secret_for(executor)}})
    elif automount is False:
        raise PodRefused(NO_EXECUTOR_ACCOUNT)
    return executor


# --- the scheduler ----------------------------------------------------------------------------------


def unschedulable(nodes: int, reason: str) -> str:
    """kube-scheduler's FitError message (pkg/scheduler/schedule_one.go, FitError.Error)."""
    return (f"0/{nodes} nodes are available: {nodes} {reason}. preemption: 0/{nodes} nodes are available: "
            f"{nodes} Preemption is not helpful for scheduling.")


def schedule(pod: dict, node_names: list[str]) -> tuple[str | None, str]:
    """(node, "") for the pod, or (None, the scheduler's message) when no node fits."""
    affinity = (pod.get("spec") or {}).get("affinity")
    if affinity:
        wanted = node_pin(affinity, f"pod {pod['metadata']['name']}")
        if wanted in node_names:
            return wanted, ""
        return None, unschedulable(len(node_names), "node(s) didn't match Pod's node affinity/selector")
    if not node_names:
        return None, "no nodes available to schedule pods"
    return sorted(node_names)[0], ""
