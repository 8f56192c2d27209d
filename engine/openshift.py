"""`platform: openshift`: the SecurityContextConstraints for the pods that read the kubelet's archives.

On OpenShift every pod is admitted by the first SecurityContextConstraints (SCC) that its creator or
its ServiceAccount may `use` and that accepts it (openshift/apiserver-library-go,
sccadmission/admission.go computeSecurityContext). Every authenticated user may use restricted-v2
(openshift/cluster-kube-apiserver-operator bindata/bootkube/scc-manifests: ..._scc-restricted-v2.yaml,
bound to system:authenticated): no hostPath volume, and runAsUser MustRunAsRange, a UID from the
namespace's `openshift.io/sa.scc.uid-range` (user/mustrunasrange.go: any other UID, 0 or 65532, is
refused). Every step runs under it (pipelines/templates.py sets no UID) except what must read the
kubelet's 0600 root archives through a hostPath of the checkpoint directory: the copy step, and any
other pod of build/ that mounts that hostPath (found in the generated objects, not listed by hand).

The SCC allows exactly that on top of restricted-v2: hostPath volumes, any UID (the template asks for
0; RunAsAny rather than MustRunAs 0 so that Argo's own init and wait containers keep their image's
non-root user), a read-only root filesystem, no capabilities, no privilege escalation, the
runtime/default seccomp profile, the namespace's SELinux level (MustRunAs: no `spc_t`) and fsGroup
range. An SCC cannot restrict which host path is mounted (unlike PodSecurityPolicy's
allowedHostPaths): only the accounts bound to it can use it. Only those ServiceAccounts get `use` on it,
through a Role in their own namespace (engine/rbac.py scc_use): the pod's namespace is where
authorizedForSCC checks the verb.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine import names, rbac
from engine.config import Settings

SCC = f"{names.APP}-hostpath"
SCC_API_VERSION = "security.openshift.io/v1"


def _pod_specs(obj: dict) -> Iterable[tuple[str, str, dict]]:
    """(namespace, ServiceAccount, pod-level spec with the container's volumes) of every pod obj makes."""
    namespace = (obj.get("metadata") or {}).get("namespace") or "default"
    spec = obj.get("spec") or {}
    if obj.get("kind") == "WorkflowTemplate":
        for template in spec.get("templates") or []:
            if "container" in template:
                account = template.get("serviceAccountName") or spec.get("serviceAccountName") or "default"
                yield namespace, account, {"volumes": template.get("volumes") or []}
    elif obj.get("kind") in ("DaemonSet", "Deployment", "StatefulSet", "Job"):
        pod = (spec.get("template") or {}).get("spec") or {}
        yield namespace, pod.get("serviceAccountName") or "default", pod


def hostpath_accounts(objects: Iterable[dict]) -> list[tuple[str, str]]:
    """(namespace, ServiceAccount) of every pod in `objects` that mounts a hostPath volume."""
    found = set()
    for obj in objects:
        for namespace, account, pod in _pod_specs(obj):
            if any("hostPath" in v for v in pod.get("volumes") or []):
                found.add((namespace, account))
    return sorted(found)


def scc(accounts: list[tuple[str, str]]) -> dict:
    """restricted-v2 plus hostPath and any UID, nothing else (see the module docstring)."""
    who = ", ".join(f"{ns}/{sa}" for ns, sa in accounts)
    return {
        "apiVersion": SCC_API_VERSION,
        "kind": "SecurityContextConstraints",
        "metadata": {
            "name": SCC,
            "labels": names.common_labels("openshift"),
            "annotations": {
                "kubernetes.io/description": (
                    "falco-response: restricted-v2 plus hostPath volumes and any UID, for the pods that read the "
                    f"kubelet's root-only checkpoint archives ({who}); use is granted to those ServiceAccounts only."
                ),
            },
        },
        "priority": None,
        "allowHostDirVolumePlugin": True,
        "allowHostIPC": False,
        "allowHostNetwork": False,
        "allowHostPID": False,
        "allowHostPorts": False,
        "allowPrivilegeEscalation": False,
        "allowPrivilegedContainer": False,
        "allowedCapabilities": None,
        "defaultAddCapabilities": None,
        "requiredDropCapabilities": ["ALL"],
        "readOnlyRootFilesystem": True,
        "runAsUser": {"type": "RunAsAny"},
        "seLinuxContext": {"type": "MustRunAs"},
        "fsGroup": {"type": "MustRunAs"},
        "supplementalGroups": {"type": "RunAsAny"},
        "seccompProfiles": ["runtime/default"],
        "users": [],
        "groups": [],
        "volumes": ["emptyDir", "hostPath", "secret"],
    }


def manifests(settings: Settings, objects: Iterable[dict]) -> list[tuple[str, dict]]:
    """(build/ folder, object): the SCC in `openshift/`, and the Roles granting `use` in `rbac/`; nothing on
    plain Kubernetes."""
    if settings.platform != "openshift":
        return []
    accounts = hostpath_accounts(objects)
    if not accounts:
        return []
    return [("openshift", scc(accounts))] + [("rbac", obj) for obj in rbac.scc_use(SCC, accounts)]
