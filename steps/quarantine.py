"""quarantine: isolate a compromised pod and detach it from its Services and controller, keep it.

1. Make sure the deny-all NetworkPolicy `falco-response-quarantine` exists in the pod's namespace
   (podSelector falco-response.io/quarantined=true, policyTypes Ingress and Egress, no rules).
2. One patch on the pod: add falco-response.io/quarantined=true (isolated from then on), remove
   the labels that Services, the owning ReplicaSet/StatefulSet/DaemonSet and allow-NetworkPolicies
   select it by, and record the alert, the workflow, the time and the removed labels in
   annotations. The controller then releases the pod and starts a replacement, while the
   compromised pod stays for investigation.

Idempotent: a second run finds the pod quarantined, detaches whatever selects it again, keeps
the first run's annotations and merges the removed-labels record (never loses an entry).
--dry-run=true reads everything and logs exactly what it would do, changing nothing.
Outputs: result (quarantined | already-quarantined | dry-run), removed-labels (JSON object).

RBAC: pods get, patch; services list; networkpolicies get, create, list;
apps replicasets, statefulsets, daemonsets get.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from engine import names
from engine.config import DEFAULT_PROTECTED
from steps import common
from steps.common import api_status, body, Refused, StepError
from steps.common import alert_time, pod_uid, protected, rule_name

OWN_PREFIX = f"{names.DOMAIN}/"
OWNER_KINDS = {"ReplicaSet": "replica_set", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
CONFLICT_ATTEMPTS = 3


def parse(argv: Sequence[str] | None):
    parser = common.Parser("quarantine", __doc__.splitlines()[0])
    parser.flag("namespace", common.dns_label)
    parser.flag("pod", common.dns_subdomain)
    parser.flag("pod-uid", pod_uid, default="")
    parser.flag("workflow", workflow_ref)
    parser.flag("policy", common.dns_label)
    parser.flag("rule", rule_name)
    parser.flag("priority", common.priority)
    parser.flag("alert-time", alert_time)
    parser.flag("dry-run", common.boolean, default="false")
    parser.flag("protected-namespaces", default=",".join(DEFAULT_PROTECTED))
    args = parser.parse(argv)
    protected(args.namespace, args.protected_namespaces)
    return args


def workflow_ref(name: str, value: str) -> str:
    """<namespace>/<name> of the response Workflow."""
    ns, _, wf = value.partition("/")
    try:
        common.dns_label(name, ns)
        common.dns_subdomain(name, wf)
    except Refused:
        raise Refused(f"{name}: {value[:80]!r} is not <namespace>/<name>") from None
    return value


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

    def __init__(self, namespace: str) -> None:
        from kubernetes import client

        api = common.kube_api_client()
        self.ns = namespace
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.net = client.NetworkingV1Api(api)
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


def plan(args, cluster: Cluster, pod: dict) -> tuple[bool, dict[str, str], dict[str, str], dict | None]:
    """(already quarantined, labels removed now, merged record, patch or None)."""
    labels = pod["metadata"].get("labels") or {}
    already = labels.get(names.LABEL_QUARANTINED) == "true"
    remove = labels_to_remove(cluster, pod)
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
    if (pod.get("spec") or {}).get("hostNetwork"):
        common.log(f"quarantine: warning: pod {where} uses hostNetwork: NetworkPolicy cannot isolate it")

    ensure_networkpolicy(cluster, args.dry_run)

    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        already, remove, merged, patch = plan(args, cluster, pod)
        if args.dry_run:
            if already:
                common.log(f"quarantine: dry run: pod {where} is already quarantined")
            if patch is None:
                common.log(f"quarantine: dry run: nothing to change on pod {where}")
            else:
                common.log(f"quarantine: dry run: would patch pod {where} with {json.dumps(patch, sort_keys=True)}")
            result, removed = "dry-run", merged
            break
        if patch is None:
            common.log(f"quarantine: pod {where} is already quarantined and detached: nothing to change")
            result, removed = "already-quarantined", merged
            break
        try:
            common.retry(
                lambda: cluster.core.patch_namespaced_pod(args.pod, args.namespace, patch, _preload_content=False),
                f"patch pod {where}",
            )
        except cluster.ApiException as exc:
            status = api_status(exc)
            if status == 404:
                raise StepError(f"pod {where} vanished before it could be quarantined: nothing to quarantine") from None
            if status == 409 and attempt < CONFLICT_ATTEMPTS:
                common.log(f"quarantine: pod {where} changed while we worked on it, reading it again")
                pod = cluster.get_pod(args.pod)
                if pod is None:
                    raise StepError(f"pod {where} vanished before it could be quarantined: nothing to quarantine") from None
                continue
            raise StepError(f"cannot patch pod {where}: {common.describe(exc)}") from exc
        removed_text = ", ".join(f"{k}={v}" for k, v in sorted(remove.items())) or "none"
        if already:
            common.log(f"quarantine: pod {where} was already quarantined; detached again, removed labels: {removed_text}")
            result = "already-quarantined"
        else:
            common.log(f"quarantine: pod {where} quarantined (label {names.LABEL_QUARANTINED}=true), removed labels: {removed_text}")
            result = "quarantined"
        removed = merged
        break

    common.write_output(args.outputs_dir, "result", result)
    common.write_output(args.outputs_dir, "removed-labels", json.dumps(removed, sort_keys=True))
    common.log(f"quarantine: result {result}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
