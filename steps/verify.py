"""verify: check that a Falco alert names a real, running container before anything acts on it.

The alert's namespace, pod, container id, container name and node come from Falco's
`output_fields` and `hostname`, i.e. from whoever could POST to the webhook. This step refuses
(exit 1, nothing changed) when the namespace is protected, the alert is a host alert, the pod does
not exist, runs on another node than the one that raised the alert, has no container with that id
(or with another name than the alert says), or is not Running. Otherwise it resolves the short
container id to the full one and writes, as output parameters:
container-name, container-id (64 hex), pod-uid, node (spec.nodeName), image, image-id.

Freshness (rule max_alert_age): before any API call it refuses an alert whose --alert-time (Falco's
`time`) is more than --max-alert-age seconds old (settings.max_alert_age_seconds) or more than
MAX_FUTURE_SKEW_SECONDS in the future: a replayed, long-queued or forged alert does nothing. An
empty --alert-time is a response submitted by hand without an alert (the Sensors only fire for
alerts with a time); it is logged as such.

A response weaker than the one that already quarantined this container is refused
(steps/escalation.py). Then it applies the blast-radius cap (steps/owner_cap.py): beyond the configured number of responses
per owner workload it stops (exit 1), or scales the owner to 0 and stops.

Isolation (--isolate=true, the isolate-first pipelines that contain the pod): once every check
above passed, the same pod applies quarantine's network isolation, and only that: the deny-all
NetworkPolicy (and AdminNetworkPolicy with --mechanism=admin-network-policy), the quarantine label
and its records (steps/quarantine.py apply, detach=False). It changes no process or socket state,
so the checkpoint that follows is unaffected; detaching (labels Services and controllers select
by) stays with the quarantine step, which judges isolation again and escalates. The output
`isolation` is the verdict at this point (`isolated` or `not-isolated: <why>`); a failure to
isolate is logged and reported there, never stops the pipeline (quarantine or delete still runs).
--dry-run=true logs what it would do.

Evidence bundle (--bucket given: every generated pipeline): once every check passed and BEFORE the
isolation, it reads the pod's owner chain, Events, container logs, selecting NetworkPolicies and
node into memory, and stores them with the pod beside the checkpoint after isolating
(steps/bundle.py says why here). Outputs bundle (`stored: <uri>` or `failed: <why>`: a failure
never stops the pipeline), bundle-manifest-uri, bundle-sha256.

RBAC: pods get (in the watched namespaces), and what steps/owner_cap.py lists; with isolation,
pods patch and networkpolicies get, list, create (and the AdminNetworkPolicy rights); for the
bundle pods/log get, events list, nodes get, and get on the owner kinds (replicasets, deployments,
statefulsets, daemonsets, jobs, cronjobs).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from engine.patterns import DEFAULT_PROTECTED
from steps import bundle, common, escalation, owner_cap
from steps.common import STATUS_CONTAINER_ID, STATUS_LISTS, Refused, StepError, api_status, body, optional, protected, rule_name

DEFAULT_MAX_ALERT_AGE_SECONDS = 600  # engine.config Settings.max_alert_age_seconds
MAX_FUTURE_SKEW_SECONDS = 60  # node clocks (NTP) agree far better; more is a forged time


# --- the step ----------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None):
    parser = common.Parser("verify", __doc__.splitlines()[0])
    parser.flag("namespace", common.dns_label)
    parser.flag("pod", common.dns_subdomain)
    parser.flag("container-id", short_id)
    parser.flag("container-name", lambda n, v: optional(common.dns_label, n, v), default="")
    parser.flag("node", lambda n, v: optional(common.dns_subdomain, n, v), default="")
    parser.flag("rule", rule_name)
    parser.flag("priority", common.priority)
    parser.flag("protected-namespaces", default=",".join(DEFAULT_PROTECTED))
    parser.flag("alert-time", lambda n, v: optional(common.alert_time, n, v), default="")
    parser.flag("max-alert-age", max_alert_age, default=str(DEFAULT_MAX_ALERT_AGE_SECONDS))
    owner_cap.add_flags(parser)
    parser.flag("isolate", common.boolean, default="false")
    parser.flag("policy", lambda n, v: optional(common.dns_label, n, v), default="")
    parser.flag("mechanism", common.one_of("network-policy", "admin-network-policy"), default="network-policy")
    parser.flag("anp-priority", _anp_priority, default="0")
    bundle.add_flags(parser)
    args = parser.parse(argv)
    bundle.check(args)
    if args.isolate and not (args.workflow and args.policy):
        raise Refused("--isolate=true needs --workflow and --policy (recorded on the isolated pod)")
    protected(args.namespace, args.protected_namespaces)
    args.alert_age = fresh(args.alert_time, args.max_alert_age)
    return args


def _anp_priority(name: str, value: object) -> int:
    from steps import quarantine

    return quarantine.anp_priority(name, value)


def isolate(args, pod: dict, api) -> str:
    """Quarantine's network isolation, without detaching; the verdict, or why it failed (logged)."""
    from steps import quarantine

    try:
        cluster = quarantine.Cluster(args.namespace, api)
        result, _, _ = quarantine.apply(args, cluster, pod, detach=False, step="verify")
    except Exception as exc:  # noqa: BLE001 - any failure: quarantine or delete still runs after the checkpoint
        why = str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {common.describe(exc)}"
        result = f"not-isolated: {common.one_line(why, 300)}"
        common.log(f"verify: warning: could not isolate pod {args.namespace}/{args.pod}: {why}")
    common.log(f"verify: isolation: {result}")
    return result


def max_alert_age(name: str, value: object) -> int:
    text = common._scalar(name, value).strip()
    if not re.fullmatch(r"\d{1,7}", text) or not 60 <= int(text) <= 7 * 24 * 3600:
        raise Refused(f"{name}: {text[:40]!r} is not a number of seconds from 60 to 604800")
    return int(text)


def fresh(alert_time: str, limit: int, now: datetime | None = None) -> float | None:
    """The alert's age in seconds; Refused (rule max_alert_age) when too old or from the future."""
    if not alert_time:
        return None
    age = ((now or datetime.now(timezone.utc)) - common.alert_datetime(alert_time)).total_seconds()
    if age > limit:
        raise Refused(
            f"alert time {alert_time} is {span(age)} old, older than max_alert_age_seconds ({limit}s): "
            "stale or replayed alert, nothing done"
        )
    if age < -MAX_FUTURE_SKEW_SECONDS:
        raise Refused(
            f"alert time {alert_time} is {span(-age)} in the future, more than the {MAX_FUTURE_SKEW_SECONDS}s of clock "
            "skew max_alert_age allows: forged alert or a wrong clock, nothing done"
        )
    return age


def span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)}s"


def short_id(name: str, value: str) -> str:
    if value == "host":
        raise Refused(f"{name}: 'host' is a host alert, not a container: nothing to respond to in Kubernetes")
    return common.container_id(name, value)


def find_container(pod: dict, short_id: str) -> tuple[dict, str, str]:
    """The status whose containerID starts with `short_id`: (status, runtime, full id)."""
    status = pod.get("status") or {}
    matches, restarted = [], []
    for key in STATUS_LISTS:
        for entry in status.get(key) or []:
            found = STATUS_CONTAINER_ID.fullmatch(str(entry.get("containerID") or ""))
            if found and found.group(2).startswith(short_id):
                matches.append((entry, found.group(1), found.group(2)))
            last = ((entry.get("lastState") or {}).get("terminated") or {}).get("containerID") or ""
            previous = STATUS_CONTAINER_ID.fullmatch(str(last))
            if previous and previous.group(2).startswith(short_id):
                restarted.append(entry.get("name"))
    where = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise Refused(f"container id {short_id} is ambiguous in pod {where}: give the full 64-hex id")
    if restarted:
        raise Refused(
            f"container id {short_id} is a previous, terminated instance of container {restarted[0]!r} "
            f"in pod {where}: it restarted since the alert"
        )
    raise Refused(f"pod {where} has no container with id {short_id}: stale or forged alert")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    where = f"{args.namespace}/{args.pod}"
    common.log(f"verify: alert {args.rule!r} ({args.priority}) on pod {where}, container id {args.container_id}")
    if args.alert_age is None:
        common.log("verify: no alert time (a response submitted by hand): max_alert_age not checked")
    else:
        common.log(f"verify: the alert is {span(max(args.alert_age, 0))} old (max_alert_age_seconds {args.max_alert_age})")

    from steps import kube as client

    api = common.kube_api_client()
    core = client.CoreV1Api(api)
    try:
        pod = body(
            common.retry(
                lambda: core.read_namespaced_pod(args.pod, args.namespace, _preload_content=False),
                f"get pod {where}",
            )
        )
    except client.ApiException as exc:
        if api_status(exc) == 404:
            raise Refused(f"pod {where} not found: stale or forged alert") from None
        raise StepError(f"cannot read pod {where}: {common.describe(exc)}") from exc

    node = (pod.get("spec") or {}).get("nodeName") or ""
    if args.node and node != args.node:
        raise Refused(
            f"pod {where} runs on node {node or '(none)'}, not on {args.node} where the alert was raised: forged or misrouted alert"
        )
    phase = (pod.get("status") or {}).get("phase") or "Unknown"
    if phase != "Running":
        raise Refused(f"pod {where} is {phase}, not Running: nothing to respond to")

    entry, runtime, full_id = find_container(pod, args.container_id)
    name = entry.get("name") or ""
    if args.container_name and args.container_name != name:
        raise Refused(
            f"container id {args.container_id} belongs to container {name!r} of pod {where}, "
            f"not to {args.container_name!r} named by the alert: forged alert"
        )
    if "running" not in (entry.get("state") or {}):
        state = ", ".join(sorted((entry.get("state") or {}).keys())) or "unknown"
        common.log(f"verify: warning: container {name} is not running (state: {state}); a checkpoint will fail")

    image = entry.get("image") or next(
        (c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == name), ""
    )
    escalation.refuse_weaker(args.workflow, pod)  # a weaker response after a stronger one (steps/escalation.py)
    owner_cap.enforce(args, pod, api)  # the blast-radius cap, before any step acts on the pod
    outputs = {
        "container-name": name,
        "container-id": full_id,
        "pod-uid": pod["metadata"].get("uid", ""),
        "node": node,
        "image": image,
        "image-id": entry.get("imageID") or "",
    }
    taken = bundle.take(args, api, pod)  # the evidence bundle: read before anything changes (steps/bundle.py)
    if args.isolate:
        outputs["isolation"] = isolate(args, pod, api)
    outputs.update(bundle.store(args, pod, name, taken))  # uploaded after isolation: it never waits for S3
    for key, value in outputs.items():
        common.write_output(args.outputs_dir, key, value)
    common.log(
        f"verify: ok: pod {where} (uid {outputs['pod-uid']}) on node {node}, container {name} "
        f"({runtime}://{full_id}), image {image}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
