"""The blast-radius cap, run by the verify step before anything is checkpointed or contained.

Quarantine detaches a pod and delete removes it; either way its controller starts another. If the
image itself trips the rule, every replacement is responded to in turn and pods (and archives)
multiply without end. So verify finds the pod's top owner (the controller in its ownerReferences;
for a ReplicaSet, the ReplicaSet's own controller, a Deployment), records this response as a
Lease in the Workflow's namespace (named after the Workflow, labelled with the owner's UID, owned
by the Workflow so that it goes with it), then counts the owner's Leases created within the
window. Record first, count second: of responses running at once, the last to count sees every
other record, so no more than the cap go ahead. Beyond the cap:

- stop: verify fails with one line; nothing is checkpointed or contained; the report says why;
- scale-down: the owner is scaled to 0 through its scale subresource (Deployment, StatefulSet,
  ReplicaSet), so its controller removes the pods and starts no more; then verify fails the same
  way. A dry run, a pipeline that contains nothing (checkpoint-only) or an owner without a scale
  subresource (DaemonSet, Job, ...) stops instead.

A pod without a controller is not capped: nothing replaces it. Leases are compared with the
server's clock (the Date of its list answer), not the pod's.

RBAC: replicasets get; leases create, list (the Workflow's namespace); with scale-down,
deployments/scale, statefulsets/scale, replicasets/scale patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from engine import blast_radius, names
from steps import common
from steps.common import Refused, StepError, api_status, body

ON_EXCEEDED = ("stop", "scale-down")
CONTAINING = ("checkpoint-and-quarantine", "checkpoint-and-delete", "quarantine", "delete")
SCALABLE = {"Deployment": "deployment", "StatefulSet": "stateful_set", "ReplicaSet": "replica_set"}


@dataclass(frozen=True)
class Owner:
    kind: str
    api_version: str
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def add_flags(parser: common.Parser) -> None:
    """verify's flags for the cap; without --max-responses-per-owner (0) there is no cap."""
    parser.flag("max-responses-per-owner", common.whole(0, 1000), default="0")
    parser.flag("owner-window-seconds", common.whole(60, 7 * 24 * 3600), default="3600")
    parser.flag("on-cap-exceeded", common.one_of(*ON_EXCEEDED), default="stop")
    parser.flag("pipeline", lambda n, v: common.optional(common.dns_label, n, v), default="")
    parser.flag("dry-run", common.boolean, default="false")
    parser.flag("workflow", lambda n, v: common.optional(common.workflow_ref, n, v), default="")
    parser.flag("workflow-uid", common.pod_uid, default="")


# --- the owner ------------------------------------------------------------------------------------


def _controller(obj: dict) -> dict | None:
    return next((ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)


def _owner(ref: dict, namespace: str) -> Owner:
    return Owner(str(ref.get("kind")), str(ref.get("apiVersion")), namespace, str(ref.get("name")), str(ref.get("uid")))


def top_owner(api, pod: dict) -> Owner | None:
    """The workload that replaces this pod: its controller, or that ReplicaSet's controller."""
    from steps import kube as client

    namespace = pod["metadata"]["namespace"]
    ref = _controller(pod)
    if ref is None:
        return None
    owner = _owner(ref, namespace)
    if owner.kind != "ReplicaSet" or owner.api_version != "apps/v1":
        return owner
    apps = client.AppsV1Api(api)
    try:
        replicaset = body(
            common.retry(
                lambda: apps.read_namespaced_replica_set(owner.name, namespace, _preload_content=False),
                f"get replicaset {namespace}/{owner.name}",
            )
        )
    except client.ApiException as exc:
        if api_status(exc) == 404:
            return owner  # gone: the ReplicaSet is the last owner we know
        raise StepError(f"blast radius: cannot read {owner}: {common.describe(exc)}") from exc
    if replicaset["metadata"].get("uid") != owner.uid:
        return owner  # a new ReplicaSet under the old name does not own this pod
    above = _controller(replicaset)
    return _owner(above, namespace) if above else owner


# --- record, then count -----------------------------------------------------------------------------


def _created(obj: dict) -> datetime | None:
    text = str(obj["metadata"].get("creationTimestamp") or "")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def lease(args, owner: Owner, pod: dict) -> dict:
    namespace, _, workflow = args.workflow.partition("/")
    meta: dict = {
        "name": workflow,
        "labels": {**names.common_labels(blast_radius.RECORD_COMPONENT), blast_radius.LABEL_OWNER_UID: owner.uid},
        "annotations": {
            blast_radius.ANNOTATION_OWNER: f"{owner.kind}/{owner.namespace}/{owner.name}",
            blast_radius.ANNOTATION_POD: f"{pod['metadata']['namespace']}/{pod['metadata']['name']}",
            names.ANNOTATION_WORKFLOW: args.workflow,
        },
    }
    if args.workflow_uid:  # garbage-collected with the Workflow (its TTL: the dedupe window)
        meta["ownerReferences"] = [
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": workflow, "uid": args.workflow_uid}
        ]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {"holderIdentity": workflow, "leaseDurationSeconds": args.owner_window_seconds, "acquireTime": common.now_rfc3339()},
    }


def record_and_count(api, args, owner: Owner, pod: dict) -> int:
    """Create this response's Lease, then count the owner's Leases of the window (this one included)."""
    from steps import kube as client

    coordination = client.CoordinationV1Api(api)
    namespace, _, workflow = args.workflow.partition("/")
    try:
        common.retry(
            lambda: coordination.create_namespaced_lease(namespace, lease(args, owner, pod), _preload_content=False),
            f"create lease {namespace}/{workflow}",
        )
    except client.ApiException as exc:
        if api_status(exc) != 409:
            raise StepError(f"blast radius: cannot record this response (lease {namespace}/{workflow}): "
                            f"{common.describe(exc)}") from exc
        common.log(f"verify: blast radius: lease {namespace}/{workflow} exists: recorded by an earlier attempt")
    selector = f"{blast_radius.LABEL_OWNER_UID}={owner.uid}"
    try:
        response = common.retry(
            lambda: coordination.list_namespaced_lease(namespace, label_selector=selector, _preload_content=False),
            f"list leases in {namespace}",
        )
    except client.ApiException as exc:
        raise StepError(f"blast radius: cannot count the responses for {owner}: {common.describe(exc)}") from exc
    items = body(response).get("items") or []
    now = _server_time(response)
    since = now - timedelta(seconds=args.owner_window_seconds)
    return sum(1 for item in items if (_created(item) or now) > since)


def _server_time(response) -> datetime:
    """The API server's clock (its Date header), which stamped the creationTimestamps compared with it."""
    try:
        when = parsedate_to_datetime(response.headers.get("Date") or "")
    except (TypeError, ValueError, AttributeError):
        when = None
    return when.astimezone(timezone.utc) if when and when.tzinfo else datetime.now(timezone.utc).replace(microsecond=0)


# --- beyond the cap -----------------------------------------------------------------------------------


def scale_to_zero(api, owner: Owner) -> str:
    """PATCH <owner>/scale {"spec": {"replicas": 0}}: what was done, for the one-line refusal."""
    from steps import kube as client

    apps = client.AppsV1Api(api)
    patch = getattr(apps, f"patch_namespaced_{SCALABLE[owner.kind]}_scale")
    try:
        scale = body(
            common.retry(
                lambda: patch(owner.name, owner.namespace, {"spec": {"replicas": 0}}, _preload_content=False),
                f"scale {owner} to 0",
            )
        )
    except client.ApiException as exc:
        if api_status(exc) == 403:
            why = (f"403 Forbidden: this step may not patch {owner.kind.lower()}s/scale; "
                   "build/ grants it with blast_radius.on_exceeded: scale-down")
        else:
            why = common.one_line(common.describe(exc), 150)
        raise StepError(f"scaling {owner} to 0 failed ({why}): stopped") from exc
    running = (scale.get("status") or {}).get("replicas", "?")
    return f"scaled {owner} to 0 replicas ({running} running): its controller removes its pods"


def enforce(args, pod: dict, api) -> None:
    """Refuse (exit 1) when this response would go beyond the owner's cap; otherwise log the count.

    `api` is verify's own API client (one connection, one credentials read per step).
    """
    cap = args.max_responses_per_owner
    if not cap:
        return
    where = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    if not args.workflow:
        raise Refused("workflow: required with max-responses-per-owner (the response is recorded under its name)")
    owner = top_owner(api, pod)
    if owner is None:
        common.log(f"verify: blast radius: pod {where} has no controller, nothing replaces it: not capped")
        return
    count = record_and_count(api, args, owner, pod)
    window = args.owner_window_seconds
    if count <= cap:
        common.log(f"verify: blast radius: response {count} of at most {cap} for {owner} within {window}s")
        return
    why = f"blast radius: {count} responses for {owner} within {window}s exceed max_responses_per_owner {cap}"
    after = f"no checkpoint and no containment for pod {where}"
    if args.on_cap_exceeded == "stop":
        raise Refused(f"{why}: stopped; {after}")
    if args.dry_run:
        raise Refused(f"{why}: dry run, {owner} not scaled down: stopped; {after}")
    if args.pipeline not in CONTAINING:
        raise Refused(f"{why}: pipeline {args.pipeline or '(none)'} contains nothing, {owner} not scaled down: stopped; {after}")
    if owner.kind not in SCALABLE or owner.api_version != "apps/v1":
        raise Refused(f"{why}: {owner.kind} has no scale subresource: stopped; {after}")
    try:
        done = scale_to_zero(api, owner)
    except StepError as exc:
        raise StepError(f"{why}: {exc}; {after}") from exc.__cause__
    raise StepError(f"{why}: {done}; {after}")
