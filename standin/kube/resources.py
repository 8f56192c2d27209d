"""The resources served: where each lives in the API and which of the server's rules apply to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4",
    "gitCommit": "a78aa47129b8539636eb86a9d00e31b2720fe06b",
    "gitTreeState": "clean",
    "buildDate": "2024-12-10T11:36:49Z",
    "goVersion": "go1.22.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ResourceType:
    """What the API server knows about one resource: where it lives and which rules apply."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    name_rule: str = "subdomain"  # subdomain | label | dns1035 (Services)
    builtin: bool = True  # only built-in kinds accept strategic-merge patches
    has_status: bool = False  # a status subresource: the main resource cannot write .status
    unconditional_update: bool = True  # custom resources demand a resourceVersion on PUT
    returns_object_on_delete: bool = False  # pods answer a DELETE with the pod, others with a Status
    field_labels: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`pods`, `networkpolicies.networking.k8s.io`: how messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def details(self, name: str, **extra: Any) -> dict:
        details = {"name": name}
        if self.group:
            details["group"] = self.group
        details["kind"] = self.plural
        details.update(extra)
        return details


RESOURCE_TYPES = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, name_rule="label", has_status=True),
    ResourceType("", "v1", "nodes", "Node", namespaced=False, has_status=True),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        has_status=True,
        returns_object_on_delete=True,
        field_labels=("spec.nodeName", "status.phase"),
    ),
    ResourceType("", "v1", "services", "Service", name_rule="dns1035", has_status=True),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
    ResourceType("", "v1", "secrets", "Secret", field_labels=("type",)),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType(
        "",
        "v1",
        "events",
        "Event",
        field_labels=(
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ),
    ),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", has_status=True),
    ResourceType("apps", "v1", "deployments", "Deployment", has_status=True),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", has_status=True),  # scale: standin/kube/scale.py
    # Stored (no controller runs them): the owner chain an evidence bundle records (steps/bundle.py)
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", has_status=True),
    ResourceType("batch", "v1", "jobs", "Job", has_status=True),
    ResourceType("batch", "v1", "cronjobs", "CronJob", has_status=True),
    # Stored, not enforced: no quota admission or LimitRanger defaulting (engine/blast_radius.py generates them)
    ResourceType("", "v1", "resourcequotas", "ResourceQuota", has_status=True),
    ResourceType("", "v1", "limitranges", "LimitRange"),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", name_rule="path"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", name_rule="path"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False, name_rule="path"),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False, name_rule="path"
    ),
    # ValidatingAdmissionPolicy (standin/kube/vap.py evaluates them on every write)
    ResourceType(
        "admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy",
        namespaced=False, has_status=True,
    ),
    ResourceType(
        "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding",
        namespaced=False,
    ),
    ResourceType("argoproj.io", "v1alpha1", "workflows", "Workflow", builtin=False, unconditional_update=False),
    ResourceType(
        "argoproj.io", "v1alpha1", "workflowtaskresults", "WorkflowTaskResult", builtin=False, unconditional_update=False
    ),
    ResourceType(
        "argoproj.io", "v1alpha1", "workflowtemplates", "WorkflowTemplate", builtin=False, unconditional_update=False
    ),
)

OWNER_API_VERSIONS = {
    "ReplicaSet": "apps/v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Workflow": "argoproj.io/v1alpha1",
}

# AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1, kubernetes-sigs/network-policy-api): a CRD,
# cluster-scoped with a status subresource (apis/v1alpha1/adminnetworkpolicy_types.go kubebuilder
# markers). Not served until installed: FakeKube.serve_admin_network_policies().
ADMIN_NETWORK_POLICY = ResourceType(
    "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", "AdminNetworkPolicy",
    namespaced=False, builtin=False, has_status=True, unconditional_update=False,
)
