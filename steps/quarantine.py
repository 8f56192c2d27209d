"""quarantine: isolate a compromised pod and detach it from its Services and controller, keep it.

1. Make sure the deny-all NetworkPolicy `falco-response-quarantine` exists in the pod's namespace
   (podSelector falco-response.io/quarantined=true, policyTypes Ingress and Egress, no rules).
   With --mechanism=admin-network-policy, also the AdminNetworkPolicy (policy.networking.k8s.io/
   v1alpha1, cluster-scoped) `falco-response-quarantine-<namespace>`: priority --anp-priority,
   subject the quarantined pods of that namespace, Deny all ingress and egress. ANP rules are
   evaluated before every NetworkPolicy, which cannot override them (network-policy-api
   apis/v1alpha1 AdminNetworkPolicySpec.Priority, AdminNetworkPolicyRuleActionDeny).
2. One patch on the pod: add falco-response.io/quarantined=true (isolated from then on), remove
   the labels that Services, the owning ReplicaSet/StatefulSet/DaemonSet and allow-NetworkPolicies
   select it by, and record the alert, the workflow, the time and the removed labels in
   annotations. The controller then releases the pod and starts a replacement, while the
   compromised pod stays for investigation.
3. Check, on the pod as patched, what still keeps it reachable:
   - `hostNetwork: true`: "NetworkPolicy behaviour for hostNetwork pods is undefined" and the
     most common implementation ignores them (Kubernetes docs, Network Policies, "NetworkPolicy
     and hostNetwork pods"); ANP subjects never include them (AdminNetworkPolicySpec.Subject);
   - any other NetworkPolicy of the namespace whose podSelector selects the pod and that has rules
     for a policy type it covers: policies are additive, "the pod is restricted to what is allowed
     by the union of those policies' ingress/egress rules" (same page, "Isolated and Non-isolated
     Pods"), so our deny-all takes nothing away from them. policyTypes defaults to Ingress, plus
     Egress when egress rules exist (pkg/apis/networking/v1/defaults.go SetDefaults_NetworkPolicy);
   - with the AdminNetworkPolicy: another ANP of higher or equal precedence (priority <= ours;
     equal is undefined) whose subject selects the pod with Allow or Pass rules; and NetworkPolicy
     ingress rules admitting sources no ANP ingress peer can name (ipBlock peers or no `from`:
     AdminNetworkPolicyIngressPeer has only namespaces and pods), which only our deny-all stops.
   The verdict is the output `result`: `isolated` or `not-isolated: <why>` (one line naming the
   policies and hostNetwork), and `isolated` (true | false). Not isolated: everything above is
   still applied, then the step fails with that line (exit 1), so the node fails visibly and the
   pipeline's escalation (settings.quarantine.on_not_isolated) can act on it.

In the isolate-first pipelines (the default order) verify has already done 1 and the labelling
of 2 in its own pod, before the checkpoint (steps/verify.py isolate calls apply() with
detach=False); this step then finds the pod quarantined, detaches it and judges as below.

Idempotent: a second run finds the pod quarantined, detaches whatever selects it again, keeps
the first run's annotations and merges the removed-labels record (never loses an entry), and
checks isolation again. --dry-run=true reads everything and logs exactly what it would do,
changing nothing: result `dry-run: isolated` or `dry-run: not-isolated: <why>`, exit 0.
Outputs: result, isolated, removed-labels (JSON object).

RBAC: pods get, patch; services list; networkpolicies get, create, list;
apps replicasets, statefulsets, daemonsets get; with the AdminNetworkPolicy also
policy.networking.k8s.io adminnetworkpolicies get, create, list and namespaces get.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence

from engine import names
from engine.patterns import DEFAULT_PROTECTED
from steps import common
from steps.common import api_status, body, Refused, StepError
from steps.common import alert_time, pod_uid, protected, rule_name

OWN_PREFIX = f"{names.DOMAIN}/"
MECHANISMS = ("network-policy", "admin-network-policy")
ANP_GROUP, ANP_VERSION, ANP_PLURAL = "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies"
ANP_PREFIX = f"{names.QUARANTINE_NETWORKPOLICY}-"  # + the namespace: one per namespace, like the NetworkPolicy
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace, immutable
EVERY_ADDRESS = ["0.0.0.0/0", "::/0"]
MAX_REASONS = 3  # the verdict stays one readable line (the error line is cut at 400 characters)
OWNER_KINDS = {"ReplicaSet": "replica_set", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
CONFLICT_ATTEMPTS = 3


def parse(argv: Sequence[str] | None):
    parser = common.Parser("quarantine", __doc__.splitlines()[0])
    parser.flag("namespace", common.dns_label)
    parser.flag("pod", common.dns_subdomain)
    parser.flag("pod-uid", pod_uid, default="")
    parser.flag("workflow", common.workflow_ref)
    parser.flag("policy", common.dns_label)
    parser.flag("rule", rule_name)
    parser.flag("priority", common.priority)
    parser.flag("alert-time", alert_time)
    parser.flag("dry-run", common.boolean, default="false")
    parser.flag("mechanism", common.one_of(*MECHANISMS), default="network-policy")
    parser.flag("anp-priority", anp_priority, default="0")
    parser.flag("protected-namespaces", default=",".join(DEFAULT_PROTECTED))
    args = parser.parse(argv)
    protected(args.namespace, args.protected_namespaces)
    return args


def anp_priority(name: str, value: object) -> int:
    """AdminNetworkPolicySpec.Priority: 0 (first) to 1000."""
    text = common.matching(re.compile(r"[0-9]{1,4}"), "an integer from 0 to 1000")(name, value)
    if int(text) > 1000:
        raise Refused(f"{name}: {text!r} is not an integer from 0 to 1000")
    return int(text)


# --- selectors -----------------------------------------------------------------------------------


def selects(selector: dict | None, labels: dict) -> bool:
    """Does a LabelSelector (matchLabels + matchExpressions) select these labels? {} selects all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def detaching_keys(selector: dict | None, labels: dict) -> set[str]:
    """Label keys whose removal makes the selector stop selecting the pod."""
    selector = selector or {}
    keys = {k for k in (selector.get("matchLabels") or {}) if k in labels}
    for expr in selector.get("matchExpressions") or []:
        if expr.get("operator") in ("In", "Exists") and expr.get("key") in labels:
            keys.add(expr["key"])
    return {k for k in keys if not k.startswith(OWN_PREFIX)}


class Cluster:
    """The reads and writes this step makes, each wrapped in common.retry."""

    def __init__(self, namespace: str, api=None) -> None:
        from steps import kube as client

        api = api or common.kube_api_client()  # verify passes the client it already has
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)  # AdminNetworkPolicy is a CRD (network-policy-api)
        self.ApiException = client.ApiException

    def get_pod(self, name: str) -> dict | None:
        try:
            return body(
                common.retry(
                    lambda: self.core.read_namespaced_pod(name, self.ns, _preload_content=False),
                    f"get pod {self.ns}/{name}",
                )
            )
        except self.ApiException as exc:
            if api_status(exc) == 404:
                return None
            raise StepError(f"cannot read pod {self.ns}/{name}: {common.describe(exc)}") from exc

    def items(self, what: str, call, forbidden_ok: str = "") -> list[dict]:
        try:
            return body(common.retry(lambda: call(self.ns, _preload_content=False), f"list {what} in {self.ns}")).get(
                "items"
            ) or []
        except self.ApiException as exc:
            if forbidden_ok and api_status(exc) == 403:
                common.log(f"quarantine: warning: not allowed to list {what} in {self.ns}: {forbidden_ok}")
                return []
            raise StepError(f"cannot list {what} in {self.ns}: {common.describe(exc)}") from exc

    def owner_selector(self, owner: dict) -> dict | None:
        kind, name = owner.get("kind"), owner.get("name")
        method = OWNER_KINDS.get(kind)
        if not method or not str(owner.get("apiVersion") or "apps/v1").startswith("apps/"):
            common.log(f"quarantine: owner {kind}/{name} is not a kind we detach from: pod stays under it")
            return None
        read = getattr(self.apps, f"read_namespaced_{method}")
        try:
            obj = body(common.retry(lambda: read(name, self.ns, _preload_content=False), f"get {kind} {self.ns}/{name}"))
        except self.ApiException as exc:
            if api_status(exc) == 404:
                common.log(f"quarantine: owner {kind} {self.ns}/{name} is gone: nothing to detach from")
                return None
            raise StepError(f"cannot read owner {kind} {self.ns}/{name}: {common.describe(exc)}") from exc
        return (obj.get("spec") or {}).get("selector") or {}


# --- the NetworkPolicy ---------------------------------------------------------------------------


def wanted_networkpolicy() -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": names.QUARANTINE_NETWORKPOLICY,
            "labels": names.common_labels("quarantine") | {names.MANAGED_BY: names.APP},
        },
        "spec": {
            "podSelector": {"matchLabels": {names.LABEL_QUARANTINED: "true"}},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def check_networkpolicy(existing: dict, namespace: str) -> None:
    spec = existing.get("spec") or {}
    selector = spec.get("podSelector") or {}
    ours = (
        (selector.get("matchLabels") or {}) == {names.LABEL_QUARANTINED: "true"}
        and not selector.get("matchExpressions")
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )
    if not ours:
        raise StepError(
            f"networkpolicy {namespace}/{names.QUARANTINE_NETWORKPOLICY} exists but is not our deny-all "
            f"(podSelector {json.dumps(selector, sort_keys=True)}, policyTypes {spec.get('policyTypes')}, "
            f"ingress/egress rules present: {bool(spec.get('ingress') or spec.get('egress'))}): "
            "quarantine would not isolate the pod; fix or delete that NetworkPolicy"
        )


def ensure_networkpolicy(cluster: Cluster, dry_run: bool) -> str:
    where = f"{cluster.ns}/{names.QUARANTINE_NETWORKPOLICY}"
    read = lambda: cluster.net.read_namespaced_network_policy(  # noqa: E731
        names.QUARANTINE_NETWORKPOLICY, cluster.ns, _preload_content=False
    )
    if dry_run:
        try:
            existing = body(common.retry(read, f"get networkpolicy {where}"))
        except cluster.ApiException as exc:
            if api_status(exc) != 404:
                raise StepError(f"cannot read networkpolicy {where}: {common.describe(exc)}") from exc
            common.log(f"quarantine: dry run: would create deny-all networkpolicy {where}")
            return "would-create"
        check_networkpolicy(existing, cluster.ns)
        common.log(f"quarantine: dry run: deny-all networkpolicy {where} already exists")
        return "exists"
    try:
        common.retry(
            lambda: cluster.net.create_namespaced_network_policy(cluster.ns, wanted_networkpolicy(), _preload_content=False),
            f"create networkpolicy {where}",
        )
        common.log(f"quarantine: created deny-all networkpolicy {where}")
        return "created"
    except cluster.ApiException as exc:
        if api_status(exc) != 409:
            raise StepError(f"cannot create networkpolicy {where}: {common.describe(exc)}") from exc
    try:
        existing = body(common.retry(read, f"get networkpolicy {where}"))
    except cluster.ApiException as exc:
        raise StepError(f"cannot read networkpolicy {where}: {common.describe(exc)}") from exc
    check_networkpolicy(existing, cluster.ns)
    common.log(f"quarantine: deny-all networkpolicy {where} already exists")
    return "exists"


# --- the AdminNetworkPolicy ----------------------------------------------------------------------


def anp_name(namespace: str) -> str:
    return f"{ANP_PREFIX}{namespace}"


def wanted_admin_network_policy(namespace: str, priority: int) -> dict:
    """Deny every ingress from pods and every egress, for the quarantined pods of one namespace.

    Ingress peers can only be namespaces or pods (AdminNetworkPolicyIngressPeer): traffic from
    nodes and from outside the cluster is left to the deny-all NetworkPolicy. Egress to
    `networks` 0.0.0.0/0 and ::/0 covers every destination, pods included (AdminNetworkPolicyEgressPeer.Networks)."""
    return {
        "apiVersion": f"{ANP_GROUP}/{ANP_VERSION}",
        "kind": "AdminNetworkPolicy",
        "metadata": {
            "name": anp_name(namespace),
            "labels": names.common_labels("quarantine") | {names.MANAGED_BY: names.APP},
        },
        "spec": {
            "priority": priority,
            "subject": {
                "pods": {
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
                    "podSelector": {"matchLabels": {names.LABEL_QUARANTINED: "true"}},
                }
            },
            "ingress": [{"name": "quarantine-deny-ingress", "action": "Deny", "from": [{"namespaces": {}}]}],
            "egress": [
                {"name": "quarantine-deny-egress", "action": "Deny", "to": [{"namespaces": {}}, {"networks": EVERY_ADDRESS}]}
            ],
        },
    }


def ensure_admin_network_policy(cluster: Cluster, priority: int, dry_run: bool) -> str | None:
    """Create (or find) our ANP; None when it is in place, else why it is not (one phrase).

    A missing ANP never stops the quarantine: the NetworkPolicy and the patch still go on, and
    the verdict says the stronger isolation is not there."""
    name = anp_name(cluster.ns)
    wanted = wanted_admin_network_policy(cluster.ns, priority)
    read = lambda: cluster.custom.get_cluster_custom_object(  # noqa: E731
        ANP_GROUP, ANP_VERSION, ANP_PLURAL, name, _preload_content=False
    )
    if not dry_run:
        try:
            common.retry(
                lambda: cluster.custom.create_cluster_custom_object(
                    ANP_GROUP, ANP_VERSION, ANP_PLURAL, wanted, _preload_content=False
                ),
                f"create adminnetworkpolicy {name}",
            )
            common.log(f"quarantine: created AdminNetworkPolicy {name} (priority {priority}, deny all ingress and egress)")
            return None
        except cluster.ApiException as exc:
            if api_status(exc) != 409:
                return anp_problem(name, exc)
    try:
        existing = body(common.retry(read, f"get adminnetworkpolicy {name}"))
    except cluster.ApiException as exc:
        if dry_run and api_status(exc) == 404 and "could not find the requested resource" not in str(exc.body or ""):
            common.log(f"quarantine: dry run: would create AdminNetworkPolicy {name} (priority {priority})")
            return None
        return anp_problem(name, exc)
    if existing.get("spec") != wanted["spec"]:
        common.log(f"quarantine: warning: AdminNetworkPolicy {name} exists but is not our deny-all (priority "
                   f"{(existing.get('spec') or {}).get('priority')}, other subject or rules): fix or delete it")
        return f"AdminNetworkPolicy {name} is not our deny-all"
    common.log(f"quarantine: {'dry run: ' if dry_run else ''}AdminNetworkPolicy {name} already exists")
    return None


def anp_problem(name: str, exc) -> str:
    if api_status(exc) == 404:
        common.log(f"quarantine: warning: this cluster does not serve {ANP_PLURAL}.{ANP_GROUP}/{ANP_VERSION}: install "
                   "network-policy-api's CRDs and a network plugin that implements them, or set quarantine.mechanism: network-policy")
        return f"AdminNetworkPolicy {name} missing: {ANP_PLURAL}.{ANP_GROUP} not served"
    return f"AdminNetworkPolicy {name} missing: {common.describe(exc)}"


# --- what keeps the pod reachable ----------------------------------------------------------------


def policy_types(spec: dict) -> list[str]:
    """spec.policyTypes, defaulted as the API server does (SetDefaults_NetworkPolicy)."""
    return list(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else [])))


def beyond_anp_peers(rules: list[dict]) -> bool:
    """Does an ingress rule admit a source an ANP ingress peer cannot name (a node, an outside address)?"""
    for rule in rules:
        peers = rule.get("from") or []
        if not peers or any("ipBlock" in peer for peer in peers):
            return True
    return False


def networkpolicy_reasons(cluster: Cluster, labels: dict, anp: bool) -> list[str]:
    """The other NetworkPolicies that select the pod and allow traffic our isolation does not stop."""
    try:
        policies = body(
            common.retry(
                lambda: cluster.net.list_namespaced_network_policy(cluster.ns, _preload_content=False),
                f"list networkpolicies in {cluster.ns}",
            )
        ).get("items") or []
    except cluster.ApiException as exc:
        return [f"NetworkPolicies in {cluster.ns} could not be checked ({common.describe(exc)})"]
    reasons = []
    for policy in sorted(policies, key=lambda p: p["metadata"]["name"]):
        name = policy["metadata"]["name"]
        spec = policy.get("spec") or {}
        if name == names.QUARANTINE_NETWORKPOLICY or not selects(spec.get("podSelector"), labels):
            continue
        types = policy_types(spec)
        if anp:  # ANP Deny rules come first; only ingress from non-pod sources falls through to NetworkPolicies
            if "Ingress" in types and beyond_anp_peers(spec.get("ingress") or []):
                reasons.append(f"NetworkPolicy {cluster.ns}/{name} allows ingress from nodes or outside addresses "
                               "(no AdminNetworkPolicy peer)")
            continue
        allowed = [t.lower() for t in ("Ingress", "Egress") if t in types and spec.get(t.lower())]
        if allowed:
            reasons.append(f"NetworkPolicy {cluster.ns}/{name} allows {' and '.join(allowed)}")
    return reasons


def admin_network_policy_reasons(cluster: Cluster, pod_labels: dict, priority: int) -> list[str]:
    """Other ANPs that come before ours (or tie with it) for this pod and let traffic through."""
    try:
        namespace = body(common.retry(lambda: cluster.core.read_namespace(cluster.ns, _preload_content=False),
                                      f"get namespace {cluster.ns}"))
        anps = body(common.retry(
            lambda: cluster.custom.list_cluster_custom_object(ANP_GROUP, ANP_VERSION, ANP_PLURAL, _preload_content=False),
            "list adminnetworkpolicies",
        )).get("items") or []
    except cluster.ApiException as exc:
        return [f"AdminNetworkPolicies could not be checked ({common.describe(exc)})"]
    ns_labels = (namespace.get("metadata") or {}).get("labels") or {}
    reasons = []
    for anp in sorted(anps, key=lambda a: ((a.get("spec") or {}).get("priority", 1000), a["metadata"]["name"])):
        name, spec = anp["metadata"]["name"], anp.get("spec") or {}
        if name == anp_name(cluster.ns) or not isinstance(spec.get("priority"), int) or spec["priority"] > priority:
            continue
        subject = spec.get("subject") or {}
        pods = subject.get("pods")
        if "namespaces" in subject:
            chosen = selects(subject["namespaces"], ns_labels)
        elif isinstance(pods, dict):
            chosen = selects(pods.get("namespaceSelector"), ns_labels) and selects(pods.get("podSelector"), pod_labels)
        else:
            chosen = False
        if not chosen:
            continue
        for direction in ("ingress", "egress"):
            actions = sorted({r.get("action") for r in spec.get(direction) or []} & {"Allow", "Pass"})
            if actions:
                verb = " and ".join({"Allow": "allows", "Pass": "passes to NetworkPolicies"}[a] for a in actions)
                reasons.append(f"AdminNetworkPolicy {name} (priority {spec['priority']} <= {priority}) {verb} {direction}")
    return reasons


def reachability(cluster: Cluster, pod: dict, labels: dict, args, anp_problem_text: str | None) -> list[str]:
    """Why the pod, labelled `labels`, is still reachable; [] when it is isolated."""
    reasons = []
    if (pod.get("spec") or {}).get("hostNetwork"):
        reasons.append("pod uses hostNetwork (network policies do not apply)")
    anp = args.mechanism == "admin-network-policy"
    if anp and anp_problem_text:
        reasons.append(anp_problem_text)
        anp = False  # judged as the NetworkPolicy alone
    if anp:
        reasons += admin_network_policy_reasons(cluster, labels, args.anp_priority)
    reasons += networkpolicy_reasons(cluster, labels, anp)
    return reasons


def verdict(reasons: list[str]) -> str:
    if not reasons:
        return "isolated"
    shown = reasons[:MAX_REASONS]
    if len(reasons) > MAX_REASONS:
        shown.append(f"and {len(reasons) - MAX_REASONS} more")
    return "not-isolated: " + "; ".join(shown)


def labels_after(labels: dict, patch: dict | None) -> dict:
    """The pod's labels once `patch` (a merge patch of metadata.labels) is applied."""
    out = dict(labels)
    for key, value in (((patch or {}).get("metadata") or {}).get("labels") or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --- detaching -----------------------------------------------------------------------------------


def labels_to_remove(cluster: Cluster, pod: dict) -> dict[str, str]:
    """Labels that Services, the owning controller and allow-NetworkPolicies select the pod by."""
    labels = pod["metadata"].get("labels") or {}
    remove: dict[str, str] = {}

    def take(keys: set[str], why: str) -> None:
        for key in sorted(keys):
            remove.setdefault(key, labels[key])
        if keys:
            common.log(f"quarantine: {why} selects the pod by {', '.join(sorted(keys))}")

    for svc in cluster.items("services", cluster.core.list_namespaced_service):
        selector = (svc.get("spec") or {}).get("selector") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            take(detaching_keys({"matchLabels": selector}, labels), f"service {svc['metadata']['name']}")

    for owner in pod["metadata"].get("ownerReferences") or []:
        if not owner.get("controller"):
            continue
        selector = cluster.owner_selector(owner)
        if selector is None:
            continue
        keys = detaching_keys(selector, labels)
        if selects(selector, labels) and not keys:
            common.log(
                f"quarantine: warning: the selector of {owner.get('kind')} {owner.get('name')} cannot be "
                "escaped by removing labels: the pod stays under its controller"
            )
        take(keys, f"{owner.get('kind')} {owner.get('name')}")

    unchecked = "allow-NetworkPolicies that select the pod were not checked (grant networkpolicies list)"
    for policy in cluster.items("networkpolicies", cluster.net.list_namespaced_network_policy, unchecked):
        name = policy["metadata"]["name"]
        spec = policy.get("spec") or {}
        if name == names.QUARANTINE_NETWORKPOLICY or not (spec.get("ingress") or spec.get("egress")):
            continue  # ours, or a policy without allow rules: it cannot open the quarantine
        selector = spec.get("podSelector") or {}
        if not selects(selector, labels):
            continue
        keys = detaching_keys(selector, labels)
        if not keys:
            common.log(
                f"quarantine: warning: networkpolicy {name} allows traffic to every pod it selects and its "
                "selector cannot be escaped by removing labels: the pod is NOT fully isolated"
            )
        take(keys, f"allow-networkpolicy {name}")
    return remove


def recorded(pod: dict) -> dict[str, str]:
    text = (pod["metadata"].get("annotations") or {}).get(names.ANNOTATION_REMOVED_LABELS) or "{}"
    try:
        value = json.loads(text)
    except ValueError:
        common.log(f"quarantine: warning: unreadable {names.ANNOTATION_REMOVED_LABELS} annotation kept as __previous__")
        return {"__previous__": text}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {"__previous__": text}


def plan(
    args, cluster: Cluster, pod: dict, detach: bool = True
) -> tuple[bool, dict[str, str], dict[str, str], dict | None]:
    """(already quarantined, labels removed now, merged record, patch or None). Without `detach`
    (verify's isolation) no label is removed: only the quarantine label and the records are set."""
    labels = pod["metadata"].get("labels") or {}
    already = labels.get(names.LABEL_QUARANTINED) == "true"
    remove = labels_to_remove(cluster, pod) if detach else {}
    previous = recorded(pod)
    merged = dict(sorted(({**remove, **previous}).items()))  # an earlier record wins: it has the original values
    patch_labels: dict[str, str | None] = {key: None for key in remove}
    annotations: dict[str, str] = {}
    if merged != previous:
        annotations[names.ANNOTATION_REMOVED_LABELS] = json.dumps(merged, sort_keys=True)
    if not already:
        patch_labels[names.LABEL_QUARANTINED] = "true"
        patch_labels[names.LABEL_POLICY] = args.policy
        annotations[names.ANNOTATION_ALERT] = json.dumps(
            {"rule": args.rule, "priority": args.priority, "time": args.alert_time}, sort_keys=True
        )
        annotations[names.ANNOTATION_WORKFLOW] = args.workflow
        annotations[names.ANNOTATION_QUARANTINED_AT] = common.now_rfc3339()
        annotations[names.ANNOTATION_REMOVED_LABELS] = json.dumps(merged, sort_keys=True)
    if not patch_labels and not annotations:
        return already, remove, merged, None
    metadata: dict = {"resourceVersion": pod["metadata"].get("resourceVersion")}
    if patch_labels:
        metadata["labels"] = patch_labels
    if annotations:
        metadata["annotations"] = annotations
    if metadata["resourceVersion"] is None:
        del metadata["resourceVersion"]
    return already, remove, merged, {"metadata": metadata}


class NotIsolated(StepError):
    """Everything was applied and the pod is still reachable: the node fails with the verdict."""


def apply(args, cluster: Cluster, pod: dict, detach: bool = True, step: str = "quarantine") -> tuple[str, list[str], dict]:
    """Isolate the pod (deny-all NetworkPolicy, ANP, the quarantine label and records) and, with
    `detach`, take off the labels that select it; then judge. (verdict, reasons, removed-labels).

    verify --isolate=true calls this with detach=False: the isolation changes no process or socket
    state, so it can come before the checkpoint (README: "Isolate first or evidence first")."""
    where = f"{args.namespace}/{args.pod}"
    ensure_networkpolicy(cluster, args.dry_run)
    anp_missing = None
    if args.mechanism == "admin-network-policy":
        anp_missing = ensure_admin_network_policy(cluster, args.anp_priority, args.dry_run)
        if anp_missing:
            common.log(f"{step}: warning: {anp_missing}")

    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        already, remove, merged, patch = plan(args, cluster, pod, detach)
        labels = labels_after(pod["metadata"].get("labels") or {}, patch)
        if args.dry_run:
            if already:
                common.log(f"{step}: dry run: pod {where} is already quarantined")
            if patch is None:
                common.log(f"{step}: dry run: nothing to change on pod {where}")
            else:
                common.log(f"{step}: dry run: would patch pod {where} with {json.dumps(patch, sort_keys=True)}")
            removed = merged
            break
        if patch is None:
            common.log(f"{step}: pod {where} is already quarantined{' and detached' if detach else ''}: nothing to change")
            removed = merged
            break
        try:
            response = common.retry(
                lambda: cluster.core.patch_namespaced_pod(args.pod, args.namespace, patch, _preload_content=False),
                f"patch pod {where}",
            )
        except cluster.ApiException as exc:
            status = api_status(exc)
            if status == 404:
                raise StepError(f"pod {where} vanished before it could be quarantined: nothing to quarantine") from None
            if status == 409 and attempt < CONFLICT_ATTEMPTS:
                common.log(f"{step}: pod {where} changed while we worked on it, reading it again")
                pod = cluster.get_pod(args.pod)
                if pod is None:
                    raise StepError(f"pod {where} vanished before it could be quarantined: nothing to quarantine") from None
                continue
            raise StepError(f"cannot patch pod {where}: {common.describe(exc)}") from exc
        pod = body(response) or pod  # the pod as the API server stored it: its labels are what policies select
        labels = pod["metadata"].get("labels") or labels
        removed_text = ", ".join(f"{k}={v}" for k, v in sorted(remove.items())) or "none"
        if already:
            common.log(f"{step}: pod {where} was already quarantined; detached again, removed labels: {removed_text}")
        elif detach:
            common.log(f"{step}: pod {where} labelled {names.LABEL_QUARANTINED}=true, removed labels: {removed_text}")
        else:
            common.log(f"{step}: pod {where} labelled {names.LABEL_QUARANTINED}=true (network-isolated; not detached yet)")
        removed = merged
        break

    reasons = reachability(cluster, pod, labels, args, anp_missing)
    result = verdict(reasons)
    if args.dry_run:
        result = f"dry-run: {result}"
    return result, reasons, removed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    where = f"{args.namespace}/{args.pod}"
    mode = "dry run: " if args.dry_run else ""
    common.log(f"quarantine: {mode}pod {where} for alert {args.rule!r} ({args.priority}), workflow {args.workflow}")
    cluster = Cluster(args.namespace)

    pod = cluster.get_pod(args.pod)
    if pod is None:
        raise StepError(f"pod {where} not found: nothing to quarantine")
    if args.pod_uid and pod["metadata"].get("uid") != args.pod_uid:
        raise Refused(f"pod {where} has uid {pod['metadata'].get('uid')}, not {args.pod_uid}: it was replaced since the alert")

    result, reasons, removed = apply(args, cluster, pod)
    common.write_output(args.outputs_dir, "result", result)
    common.write_output(args.outputs_dir, "isolated", "false" if reasons else "true")
    common.write_output(args.outputs_dir, "removed-labels", json.dumps(removed, sort_keys=True))
    common.log(f"quarantine: result {result}")
    if reasons and not args.dry_run:
        raise NotIsolated(result)
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
