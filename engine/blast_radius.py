"""The blast radius of the engine itself: what bounds the responses an attacker can set off.

Generated here (settings.blast_radius), besides the per-owner cap the verify step enforces
(steps/owner_cap.py):

- the semaphore every response Workflow takes (`spec.synchronization.semaphores`, Argo >= 3.6):
  a ConfigMap key holding `max_concurrent_responses`; Argo's controller reads it and queues the
  other Workflows (Pending, `status.synchronization.semaphore.waiting`);
- a ResourceQuota and a LimitRange in the response namespace. The quota is scoped to
  `Terminating` pods (those with activeDeadlineSeconds: every step pod, whose deadline Argo derives
  from the workflow's, and the report, whose template sets one), so the reaper DaemonSet's pods
  are not counted. Quota on cpu/memory makes the API server refuse any container without them;
  Argo's own init and wait containers have none unless the controller's `executor.resources` is
  set, so the LimitRange gives them defaults. CPU limits are neither required nor defaulted: the
  copy step hashes whole archives;
- the reaper: a DaemonSet running `python -m steps.reap` on every node, with no Kubernetes token,
  no network (a deny-all NetworkPolicy) and one hostPath, the kubelet's checkpoint directory.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from engine import names

if TYPE_CHECKING:  # steps.owner_cap imports this module: no pydantic on a step's start-up path
    from engine.config import Settings

SEMAPHORE_CONFIGMAP = "falco-response-limits"
SEMAPHORE_KEY = "concurrent-responses"
QUOTA = "falco-response-responses"
LIMIT_RANGE = "falco-response-defaults"
REAPER = "falco-response-reaper"

# What verify records per response (a Lease named after the Workflow) and counts per owner.
LABEL_OWNER_UID = f"{names.DOMAIN}/owner-uid"
ANNOTATION_OWNER = f"{names.DOMAIN}/owner"  # <Kind>/<namespace>/<name> of the top owner
ANNOTATION_POD = f"{names.DOMAIN}/pod"  # <namespace>/<name> of the pod responded to
RECORD_COMPONENT = "blast-radius"

# A response runs at most two pods at once: copy and the containment step start together after
# the checkpoint; verify, checkpoint and the report run alone.
PODS_PER_RESPONSE = 2
# Defaults for containers that set nothing: Argo's init and wait containers (argoexec).
EXECUTOR_REQUESTS = {"cpu": "10m", "memory": "64Mi"}
EXECUTOR_LIMITS = {"memory": "256Mi"}
REAPER_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}

_QUANTITY = re.compile(r"^([0-9]+)(m|Ki|Mi|Gi)?$")
_FACTORS = {None: 1, "m": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def semaphore() -> dict:
    """The `synchronization.semaphores[]` entry of every WorkflowTemplate."""
    return {"configMapKeyRef": {"name": SEMAPHORE_CONFIGMAP, "key": SEMAPHORE_KEY}}


def _meta(name: str, settings: Settings, component: str) -> dict:
    return {"name": name, "namespace": settings.namespace, "labels": names.common_labels(component)}


def semaphore_configmap(settings: Settings) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(SEMAPHORE_CONFIGMAP, settings, "limits"),
        "data": {SEMAPHORE_KEY: str(settings.blast_radius.max_concurrent_responses)},
    }


def _amount(quantity: str, resource: str) -> int:
    """millicores for cpu, bytes for memory (only the suffixes our manifests use)."""
    found = _QUANTITY.fullmatch(str(quantity))
    if not found or (resource == "cpu") != (found.group(2) in ("m", None)):
        raise ValueError(f"unsupported {resource} quantity {quantity!r}")
    value = int(found.group(1)) * _FACTORS[found.group(2)]
    return value * 1000 if resource == "cpu" and found.group(2) is None else value


def _quantity(amount: int, resource: str) -> str:
    if resource == "cpu":
        return f"{amount}m"
    return f"{amount // 1024**2}Mi" if amount % 1024**2 == 0 else str(amount)


def pod_budget(workflow_templates: list[dict]) -> dict[str, int]:
    """The most one step pod can ask for: its main container plus argoexec's wait container
    (the init container runs before them, and a pod's usage is max(init, sum of the others))."""
    budget = {"requests.cpu": 0, "requests.memory": 0, "limits.memory": 0}
    for wt in workflow_templates:
        for template in wt["spec"]["templates"]:
            resources = (template.get("container") or {}).get("resources")
            if resources is None:
                continue
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            pod = {
                "requests.cpu": _amount(requests.get("cpu", EXECUTOR_REQUESTS["cpu"]), "cpu")
                + _amount(EXECUTOR_REQUESTS["cpu"], "cpu"),
                "requests.memory": _amount(requests.get("memory", EXECUTOR_REQUESTS["memory"]), "memory")
                + _amount(EXECUTOR_REQUESTS["memory"], "memory"),
                "limits.memory": _amount(limits.get("memory", EXECUTOR_LIMITS["memory"]), "memory")
                + _amount(EXECUTOR_LIMITS["memory"], "memory"),
            }
            budget = {key: max(budget[key], pod[key]) for key in budget}
    return budget


def resource_quota(settings: Settings, workflow_templates: list[dict]) -> dict:
    pods = PODS_PER_RESPONSE * settings.blast_radius.max_concurrent_responses
    budget = pod_budget(workflow_templates)
    hard = {"pods": str(pods)}
    for key, amount in budget.items():
        hard[key] = _quantity(amount * pods, key.rsplit(".", 1)[1])
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(QUOTA, settings, "limits"),
        "spec": {"hard": hard, "scopes": ["Terminating"]},
    }


def limit_range(settings: Settings) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(LIMIT_RANGE, settings, "limits"),
        "spec": {"limits": [{"type": "Container", "defaultRequest": dict(EXECUTOR_REQUESTS),
                             "default": dict(EXECUTOR_LIMITS)}]},
    }


def reaper_labels() -> dict[str, str]:
    return {names.PART_OF: names.APP, names.COMPONENT: "reaper"}


def reaper_service_account(settings: Settings) -> dict:
    """Its own account, holding no role: the pod must not run as `default` (which others may bind)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(REAPER, settings, "reaper"),
        "automountServiceAccountToken": False,
    }


def reaper_daemonset(settings: Settings) -> dict:
    directory = settings.checkpoint.directory
    radius = settings.blast_radius
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(REAPER, settings, "reaper"),
        "spec": {
            "selector": {"matchLabels": reaper_labels()},
            "template": {
                "metadata": {"labels": names.common_labels("reaper")},
                "spec": {
                    "serviceAccountName": REAPER,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "tolerations": [{"operator": "Exists"}],  # archives are left on tainted nodes too
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "reap",
                            "image": settings.image,
                            "imagePullPolicy": settings.image_pull_policy,
                            "command": ["python", "-m", "steps.reap"],
                            "args": [
                                f"--checkpoint-dir={directory}",
                                f"--retention-seconds={radius.archive_retention_hours * 3600}",
                                f"--interval-seconds={radius.reap_interval_seconds}",
                                "--node=$(NODE_NAME)",
                            ],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "resources": REAPER_RESOURCES,
                            # root: the kubelet's archives are 0600 root in a 0700 directory.
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "privileged": False,
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": False,
                                "runAsUser": 0,
                                "runAsGroup": 0,
                            },
                            "volumeMounts": [{"name": "checkpoints", "mountPath": directory}],
                        }
                    ],
                    # Directory, not DirectoryOrCreate: the kubelet makes it 0700 at the first
                    # checkpoint; until then the pod waits (nothing to reap) rather than have the
                    # kubelet create it 0755.
                    "volumes": [{"name": "checkpoints", "hostPath": {"path": directory, "type": "Directory"}}],
                },
            },
        },
    }


def reaper_networkpolicy(settings: Settings) -> dict:
    """The reaper talks to nobody: deny all traffic both ways."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(REAPER, settings, "reaper"),
        "spec": {"podSelector": {"matchLabels": reaper_labels()}, "policyTypes": ["Ingress", "Egress"]},
    }


def manifests(settings: Settings, workflow_templates: list[dict]) -> list[tuple[str, dict]]:
    """(build/ folder, object) for everything above."""
    return [
        ("namespaces", semaphore_configmap(settings)),
        ("namespaces", resource_quota(settings, workflow_templates)),
        ("namespaces", limit_range(settings)),
        ("reaper", reaper_service_account(settings)),
        ("reaper", reaper_daemonset(settings)),
        ("reaper", reaper_networkpolicy(settings)),
    ]
