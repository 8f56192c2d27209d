"""ValidatingAdmissionPolicies: limits on the step identities that the API server enforces, not our code.

Why: RBAC grants a verb on a resource, nothing finer. The quarantine ClusterRole's `pods patch` lets
its holder replace a container's image in any namespace, and the protected namespaces were enforced
only by the steps' Python; anyone who can create Workflows in the response namespace can run a step
with that identity. A ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in Kubernetes
1.30) sees the request, the old and the new object, and denies in the API server itself.

One policy and one binding (validationActions [Deny]) per identity a step pod can carry: each step's
ServiceAccount and the executor's (argoexec reports outputs with it). Its matchConditions select that
one user (request.userInfo.username), so nobody else's requests are evaluated. Its validations, in
the order the API server reports the first failure:

1. no write in a protected namespace, except the writes its Roles grant in the workflow namespace
   (argoexec's WorkflowTaskResults: the workflow namespace is protected too);
2. only the writes its RBAC grants (derived from engine/rbac.py, so the two never drift apart):
   checkpoint and copy write nothing but argoexec's WorkflowTaskResults; verify writes its
   owner-cap Lease and, isolating first, the quarantine label and the deny-all NetworkPolicy;
3. the shape of each granted write: a pod update changes only labels and annotations, never the
   spec (only removing labels, adding falco-response.io/ labels and setting falco-response.io/
   annotations, as quarantine and verify's isolation do); the only NetworkPolicy is the deny-all
   quarantine (or verify, isolating) creates; an Event is about a pod.

failurePolicy Fail: a policy that cannot be evaluated denies. Every message is one line naming the
step, the rule and the policy. CONNECT (exec, attach, nodes/proxy) is not matched: RBAC grants none
of it (nodes/proxy only with checkpoint.path apiserver-proxy), and the kubelet's own endpoints
(nodes/checkpoint) never pass through admission.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine import names, rbac
from engine.config import Settings

API_VERSION = "admissionregistration.k8s.io/v1"
OWN_PREFIX = f"{names.DOMAIN}/"
# RBAC write verbs -> admission operations (a PATCH is admitted as an UPDATE).
WRITE_OPERATIONS = {"create": "CREATE", "update": "UPDATE", "patch": "UPDATE", "delete": "DELETE"}
# Granted as "create" but served by the kubelet (nodes/checkpoint) or connected through (nodes/proxy):
# never an object write the API server admits.
NOT_ADMITTED = {("", "nodes/checkpoint"), ("", "nodes/proxy")}
# ObjectMeta the API server itself changes on an update (field manager, optimistic concurrency).
SERVER_METADATA = ("resourceVersion", "managedFields", "generation")
EXECUTOR = "executor"


def identities() -> tuple[str, ...]:
    """Every identity a step pod can carry: the steps' ServiceAccounts and the executor's."""
    return (*names.STEPS, EXECUTOR)


def username(settings: Settings, identity: str) -> str:
    return f"system:serviceaccount:{settings.namespace}:{names.step_service_account(identity)}"


def policy_name(identity: str) -> str:
    return names.step_service_account(identity)


@dataclass(frozen=True)
class Grant:
    """Writes RBAC grants an identity: one resource (maybe a subresource), its operations, where."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    own_namespace: bool  # granted by a Role in settings.namespace, else by a ClusterRole

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(sorted({WRITE_OPERATIONS[v] for v in self.verbs}))

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


def grants(settings: Settings, identity: str) -> list[Grant]:
    """The write verbs engine/rbac.py gives this identity: its ClusterRole (anywhere), its Role and
    the executor's Role (every step pod's account is bound to it) in the workflow namespace."""
    cluster = rbac.cluster_rules(identity, settings) if identity in names.STEPS else []
    own = [*rbac.NAMESPACED_RULES.get(identity, []), *rbac.EXECUTOR_RULES]
    out: dict[tuple[str, str, bool], set[str]] = {}
    for rules, own_namespace in ((cluster, False), (own, True)):
        for rule in rules:
            verbs = {v for v in rule["verbs"] if v in WRITE_OPERATIONS}
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    if verbs and (group, resource) not in NOT_ADMITTED:
                        out.setdefault((group, resource, own_namespace), set()).update(verbs)
    return [Grant(g, r, tuple(sorted(v)), own) for (g, r, own), v in sorted(out.items())]


# --- CEL -----------------------------------------------------------------------------------------


def _q(value: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's)."""
    return json.dumps(value)


def _list(values) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _variable(grant: Grant, operation: str) -> str:
    """`podsUpdate`, `networkpoliciesCreate`, `podsEvictionCreate`: one CEL identifier a granted write."""
    parts = grant.resource.replace("/", " ").split()
    return parts[0] + "".join(p.title() for p in parts[1:]) + operation.title()


def _request_is(grant: Grant, operation: str) -> str:
    resource, _, sub = grant.resource.partition("/")
    return " && ".join([
        f"request.resource.group == {_q(grant.group)}",
        f"request.resource.resource == {_q(resource)}",
        f"request.subResource == {_q(sub)}" if sub else "!has(request.subResource)",
        f"request.operation == {_q(operation)}",
    ])


def _pod_update_rules() -> list[tuple[str, str]]:
    """What quarantine changes on a pod, and nothing else (steps/quarantine.py plan())."""
    p = _q(OWN_PREFIX)
    kept = _list(["labels", "annotations", *SERVER_METADATA])
    return [
        ("!variables.podsUpdate || object.spec == oldObject.spec",
         "may not change a pod's spec"),
        ("!variables.podsUpdate || (\n"
         f"  object.metadata.all(k, k in {kept} || (k in oldObject.metadata && object.metadata[k] == oldObject.metadata[k])) &&\n"
         f"  oldObject.metadata.all(k, k in {kept} || k in object.metadata))",
         "may change only a pod's labels and annotations"),
        ("!variables.podsUpdate || (\n"
         "  variables.newLabels.all(k, (k in variables.oldLabels && variables.oldLabels[k] == variables.newLabels[k]) ||\n"
         f"    (k.startsWith({p}) && !(k in variables.oldLabels))) &&\n"
         f"  variables.oldLabels.all(k, k in variables.newLabels || !k.startsWith({p})))",
         f"may only remove a pod's labels and add {OWN_PREFIX} labels"),
        ("!variables.podsUpdate || (\n"
         "  variables.newAnnotations.all(k, k.startsWith(" + p + ") ||\n"
         "    (k in variables.oldAnnotations && variables.oldAnnotations[k] == variables.newAnnotations[k])) &&\n"
         f"  variables.oldAnnotations.all(k, k in variables.newAnnotations || k.startsWith({p})))",
         f"may only set {OWN_PREFIX} annotations on a pod"),
    ]


def _networkpolicy_rules() -> list[tuple[str, str]]:
    """Only quarantine's deny-all (steps/quarantine.py wanted_networkpolicy)."""
    selector = "{" + _q("matchLabels") + ": {" + _q(names.LABEL_QUARANTINED) + ": " + _q("true") + "}}"
    return [
        ("!variables.networkpoliciesCreate || (\n"
         f"  object.metadata.name == {_q(names.QUARANTINE_NETWORKPOLICY)} &&\n"
         f"  object.spec.podSelector == {selector} &&\n"
         "  has(object.spec.policyTypes) && object.spec.policyTypes.size() == 2 &&\n"
         '  "Ingress" in object.spec.policyTypes && "Egress" in object.spec.policyTypes &&\n'
         "  (!has(object.spec.ingress) || object.spec.ingress.size() == 0) &&\n"
         "  (!has(object.spec.egress) || object.spec.egress.size() == 0))",
         f"may create only the deny-all NetworkPolicy {names.QUARANTINE_NETWORKPOLICY}"),
    ]


def _admin_network_policy_rules() -> list[tuple[str, str]]:
    """quarantine.mechanism admin-network-policy: an ANP outranks every NetworkPolicy, so one that
    allows could open any namespace; only Deny rules for quarantined pods (wanted_admin_network_policy)."""
    selector = "{" + _q("matchLabels") + ": {" + _q(names.LABEL_QUARANTINED) + ": " + _q("true") + "}}"
    return [
        ("!variables.adminnetworkpoliciesCreate || (\n"
         "  has(object.spec.subject.pods) && has(object.spec.subject.pods.podSelector) &&\n"
         f"  object.spec.subject.pods.podSelector == {selector} &&\n"
         '  (!has(object.spec.ingress) || object.spec.ingress.all(r, r.action == "Deny")) &&\n'
         '  (!has(object.spec.egress) || object.spec.egress.all(r, r.action == "Deny")))',
         "may create only AdminNetworkPolicies that deny the traffic of quarantined pods"),
    ]


def _event_rules() -> list[tuple[str, str]]:
    return [
        ('!variables.eventsCreate || (has(object.involvedObject.kind) && object.involvedObject.kind == "Pod")',
         "may only create Events about pods"),
    ]


# (group, resource, operation) -> the validations every identity granted that write gets.
SHAPES = {
    ("", "pods", "UPDATE"): _pod_update_rules,
    ("networking.k8s.io", "networkpolicies", "CREATE"): _networkpolicy_rules,
    ("", "events", "CREATE"): _event_rules,
    ("policy.networking.k8s.io", "adminnetworkpolicies", "CREATE"): _admin_network_policy_rules,
}
# Variables the shape rules read, beyond the one per granted write (evaluated only when used).
SHAPE_VARIABLES = {
    ("", "pods", "UPDATE"): [
        ("newLabels", "has(object.metadata.labels) ? object.metadata.labels : {}"),
        ("oldLabels", "has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"),
        ("newAnnotations", "has(object.metadata.annotations) ? object.metadata.annotations : {}"),
        ("oldAnnotations", "has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {}"),
    ],
}


def describe(grants_: list[Grant], namespace: str) -> str:
    """`patch pods, create networkpolicies.networking.k8s.io and create or patch
    workflowtaskresults.argoproj.io in falco-response`, from the RBAC verbs."""
    def one(g: Grant) -> str:
        return f"{' or '.join(g.verbs)} {g.qualified}"

    def joined(parts: list[str]) -> str:
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    parts = [one(g) for g in grants_ if not g.own_namespace]
    own = [one(g) for g in grants_ if g.own_namespace]
    if own:
        parts.append(f"{joined(own)} in {namespace}")
    return joined(parts) if parts else "nothing"


def policy(settings: Settings, identity: str) -> dict:
    name = policy_name(identity)
    protected = _list(settings.protected_namespaces)
    granted = grants(settings, identity)
    step = identity

    def validation(expression: str, rule: str, message_expression: str | None = None) -> dict:
        out = {"expression": expression, "message": f"{names.APP}: {step} {rule} (policy {name})"}
        if message_expression:
            out["messageExpression"] = message_expression
        out["reason"] = "Forbidden"
        return out

    variables: list[dict] = []
    own, cluster, shapes = [], [], []
    for grant in granted:
        for operation in grant.operations:
            var = _variable(grant, operation)
            if any(v["name"] == var for v in variables):
                raise ValueError(f"two granted writes would share the CEL variable {var}")
            variables.append({"name": var, "expression": _request_is(grant, operation)})
            (own if grant.own_namespace else cluster).append(f"variables.{var}")
            key = (grant.group, grant.resource, operation)
            if key in SHAPES and not grant.own_namespace:
                shapes.append(key)
    own_write = "false"
    if own:
        own_write = f"has(request.namespace) && request.namespace == {_q(settings.namespace)} && ({' || '.join(own)})"
    variables.append({"name": "ownNamespaceWrite", "expression": own_write})
    if cluster:
        variables.append({"name": "clusterWrite", "expression": " || ".join(cluster)})
    for key in shapes:
        variables += [{"name": n, "expression": e} for n, e in SHAPE_VARIABLES.get(key, [])]

    prefix = _q(f"{names.APP}: {step} may not write in protected namespace ")
    validations = [
        validation(
            f"variables.ownNamespaceWrite || !has(request.namespace) || !(request.namespace in {protected})",
            "may not write in a protected namespace",
            f"{prefix} + request.namespace + {_q(f' (policy {name})')}",
        ),
        validation(
            "variables.ownNamespaceWrite" + (" || variables.clusterWrite" if cluster else ""),
            f"may only {describe(granted, settings.namespace)}" if granted else "may write nothing",
        ),
    ]
    for key in shapes:
        validations += [validation(expr, rule) for expr, rule in SHAPES[key]()]

    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": names.common_labels("admission")},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["*"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": ["*/*"],
                    }
                ],
            },
            "matchConditions": [
                {"name": "step-identity", "expression": f"request.userInfo.username == {_q(username(settings, identity))}"}
            ],
            "variables": variables,
            "validations": validations,
        },
    }


def binding(identity: str) -> dict:
    name = policy_name(identity)
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": names.common_labels("admission")},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }


def policies(settings: Settings) -> list[dict]:
    """Each identity's policy, then its binding."""
    out: list[dict] = []
    for identity in identities():
        out += [policy(settings, identity), binding(identity)]
    return out
