"""ServiceAccounts and RBAC: one service account per step, holding exactly what that step calls.

Pods under response live in any unprotected namespace, so pod access is cluster-wide
(ClusterRole + ClusterRoleBinding); everything about Workflows stays in the workflow namespace.
No wildcards anywhere: `tests/test_rbac.py` audits this module's output.
"""

from __future__ import annotations

from engine import names
from engine.config import Settings

Rule = dict

# What each step's code calls, beyond the executor's own needs. The RBAC audit compares these with
# the API calls the steps make against the stand-in API server.
CLUSTER_RULES: dict[str, list[Rule]] = {
    "verify": [
        # patch: isolate-first pipelines set the quarantine label in verify's pod (steps/verify.py isolate)
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
        # the blast-radius cap: a pod's ReplicaSet names the Deployment it counts against
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        # the deny-all NetworkPolicy, and list: the allow-policies that keep the pod reachable (verdict)
        # and those the evidence bundle records
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "create"]},
        # the evidence bundle, read before isolation (steps/bundle.py): logs, Events, node, owner chain
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get"]},
    ],
    "checkpoint": [
        # pods get: right before the POST, is the pod (UID) and its container (id) still verify's?
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},  # + the checkpoint path
    ],
    "copy": [],  # object storage only; its pod gets no Kubernetes token
    "analyze": [],  # object storage only (reads the archive from S3); no Kubernetes token
    "quarantine": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["list"]},
        {"apiGroups": ["apps"], "resources": ["replicasets", "statefulsets", "daemonsets"], "verbs": ["get"]},
        # list: allow-policies that select the pod would defeat the deny-all; the step detaches from them.
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "create"]},
    ],
    "delete": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}],
    "report": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ],
}
NAMESPACED_RULES: dict[str, list[Rule]] = {
    # One Lease per response, owned by its Workflow, counted per owner (steps/owner_cap.py):
    # create and list only, so verify can neither alter nor delete another response's record.
    "verify": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "list"]}],
    "report": [{"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get"]}],
}
EXECUTOR_RULES = [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
SENSOR_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "list"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"]},
]


# The doctor (WorkflowTemplate falco-doctor, engine/doctor.py): what its checks call and nothing more.
# Cluster-wide: the nodes it checks, and SubjectAccessReviews (may the checkpoint identity...?).
DOCTOR = "doctor"
DOCTOR_CLUSTER_RULES: list[Rule] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
]


def doctor_namespaced_rules(settings: Settings) -> list[Rule]:
    """In the workflow namespace: its canary pods (create, watch them run, delete), a short-lived token
    of the checkpoint identity (TokenRequest, that one account only: the canary is checkpointed as the
    pipelines checkpoint), and the kubelet CA ConfigMap the checkpoint step mounts."""
    rules: list[Rule] = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "delete"]},  # list: the exit handler
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"],
         "resourceNames": [names.step_service_account("checkpoint")]},
    ]
    tls = settings.checkpoint.kubelet_tls
    if not tls.insecure_skip_verify and tls.ca_bundle_configmap:
        rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                      "resourceNames": [tls.ca_bundle_configmap]})
    return rules


def doctor_eventsource_rules() -> list[Rule]:
    """In the EventSource's namespace: the EventBus and the EventSource exist (no Secret: the token is
    checked from outside)."""
    return [
        {"apiGroups": ["argoproj.io"], "resources": ["eventbus"], "verbs": ["get"], "resourceNames": ["default"]},
        {"apiGroups": ["argoproj.io"], "resources": ["eventsources"], "verbs": ["get"], "resourceNames": [names.EVENTSOURCE]},
    ]


def doctor(settings: Settings) -> list[dict]:
    """The doctor's ClusterRole, its Role in the workflow namespace and in the EventSource's, and bindings."""
    name, ns, es_ns = names.step_service_account(DOCTOR), settings.namespace, settings.eventsource.namespace
    ref = {"apiGroup": "rbac.authorization.k8s.io"}
    out = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(name),
         "rules": DOCTOR_CLUSTER_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
         "roleRef": {**ref, "kind": "ClusterRole", "name": name}, "subjects": [_subject(name, ns)]},
    ]
    # build/ names files by kind and name only: the second Role gets its own name
    for namespace, role, rules in ((ns, name, doctor_namespaced_rules(settings)),
                                   (es_ns, f"{name}-events", doctor_eventsource_rules())):
        out += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(role, namespace), "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(role, namespace),
             "roleRef": {**ref, "kind": "Role", "name": role}, "subjects": [_subject(name, ns)]},
        ]
    return out


def checkpoint_rule(settings: Settings) -> Rule:
    if settings.checkpoint.path == "kubelet":
        return {"apiGroups": [""], "resources": ["nodes/checkpoint"], "verbs": ["create"]}
    # nodes/proxy also lets its holder exec into any pod on any node (CIS 5.1.14): opt-in only.
    return {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["create"]}


# quarantine.mechanism admin-network-policy: the step creates one cluster-scoped AdminNetworkPolicy
# per namespace, lists the others (one that comes first could let traffic through) and reads the
# pod's namespace labels, which their subjects select by.
ADMIN_NETWORK_POLICY_RULES: list[Rule] = [
    {"apiGroups": ["policy.networking.k8s.io"], "resources": ["adminnetworkpolicies"], "verbs": ["get", "list", "create"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]


# blast_radius.on_exceeded: scale-down, through the scale subresource only (patch: no read of the
# workload, no other field of it). DaemonSets have no scale subresource.
SCALE_DOWN_RULE = {"apiGroups": ["apps"], "resources": ["deployments/scale", "replicasets/scale", "statefulsets/scale"],
                   "verbs": ["patch"]}


def cluster_rules(step: str, settings: Settings) -> list[Rule]:
    rules = [dict(r) for r in CLUSTER_RULES[step]]
    if step == "checkpoint":
        rules.append(checkpoint_rule(settings))
    if step == "verify" and settings.blast_radius.on_exceeded == "scale-down":
        rules.append(dict(SCALE_DOWN_RULE))
    if step in ("verify", "quarantine") and settings.quarantine.mechanism == "admin-network-policy":
        rules += [dict(r) for r in ADMIN_NETWORK_POLICY_RULES]
    return rules


def _meta(name: str, namespace: str | None = None) -> dict:
    meta = {"name": name, "labels": names.common_labels("rbac")}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _subject(account: str, namespace: str) -> dict:
    return {"kind": "ServiceAccount", "name": account, "namespace": namespace}


def calls_api(step: str, settings: Settings) -> bool:
    """Whether a step's own code talks to the Kubernetes API (and so its pod needs a token)."""
    return bool(cluster_rules(step, settings) or NAMESPACED_RULES.get(step))


def service_accounts(settings: Settings) -> list[dict]:
    """One per step, plus the executor's (argoexec in pods without a token) and the Sensor's.

    A step's pod gets a token exactly when its ServiceAccount says so: Argo never sets
    automountServiceAccountToken true on a Pod (workflowpod.go, setupServiceAccount), so the
    ServiceAccount's own field decides (ServiceAccount admission, shouldAutomount).
    """
    ns = settings.namespace
    out = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(names.step_service_account(step), ns),
            "automountServiceAccountToken": calls_api(step, settings),
        }
        for step in names.STEPS
    ]
    out.append(  # the doctor calls the API (engine/doctor.py): its token comes with its ServiceAccount
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(names.step_service_account(DOCTOR), ns),
         "automountServiceAccountToken": True}
    )
    executor = names.step_service_account("executor")
    out.append(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(executor, ns), "automountServiceAccountToken": False}
    )
    out.append(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(names.SENSOR_SERVICE_ACCOUNT, settings.eventsource.namespace),
        }
    )
    return out


def executor_token_secret(settings: Settings) -> dict:
    """The token Secret Argo mounts for `executor.serviceAccountName` (util/secrets TokenName):
    since Kubernetes 1.24 nothing creates it, so we do; the token controller fills it in."""
    executor = names.step_service_account("executor")
    meta = _meta(names.executor_token_secret(executor), settings.namespace)
    meta["annotations"] = {"kubernetes.io/service-account.name": executor}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/service-account-token"}


def roles(settings: Settings) -> list[dict]:
    ns = settings.namespace
    every_step_pod = [_subject(names.step_service_account(s), ns) for s in (*names.STEPS, DOCTOR, "executor")]
    out: list[dict] = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(names.step_service_account("executor"), ns), "rules": EXECUTOR_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(names.step_service_account("executor"), ns),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": names.step_service_account("executor")},
         "subjects": every_step_pod},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(names.SENSOR_SERVICE_ACCOUNT, ns), "rules": SENSOR_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(names.SENSOR_SERVICE_ACCOUNT, ns),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.SENSOR_SERVICE_ACCOUNT},
         "subjects": [_subject(names.SENSOR_SERVICE_ACCOUNT, settings.eventsource.namespace)]},
    ]
    for step, rules in NAMESPACED_RULES.items():
        name = names.step_service_account(step)
        out += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, ns), "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name, ns),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [_subject(name, ns)]},
        ]
    out += doctor(settings)
    for step in names.STEPS:
        rules = cluster_rules(step, settings)
        if not rules:
            continue
        name = names.step_service_account(step)
        out += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(name),
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
             "subjects": [_subject(name, ns)]},
        ]
    return out


def scc_use(scc: str, accounts: list[tuple[str, str]]) -> list[dict]:
    """OpenShift: `use` of SecurityContextConstraints `scc` for exactly these (namespace, ServiceAccount).

    SCC admission asks the authorizer for verb `use` on security.openshift.io securitycontextconstraints
    named `scc` in the pod's namespace (sccmatching/matcher.go authorizedForSCC), so a Role and RoleBinding
    in that namespace suffice: nothing cluster-wide."""
    rule = {"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
            "resourceNames": [scc], "verbs": ["use"]}
    out: list[dict] = []
    for namespace in sorted({ns for ns, _ in accounts}):
        name = f"{scc}-scc"
        out += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, namespace),
             "rules": [rule]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name, namespace),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [_subject(sa, ns) for ns, sa in accounts if ns == namespace]},
        ]
    return out
