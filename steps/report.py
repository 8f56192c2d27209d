"""report: the exit handler. Tell responders what happened, where they already look.

Reads its own Workflow (argoproj.io/v1alpha1) and collects each step's phase and the outputs that
matter (evidence-uri, sha256, size from copy; result from quarantine / delete; findings, the
one line of analyze, or why it has none). A missing
Workflow or missing outputs are reported as unknown, never a crash. Then:

- records a core/v1 Event on the pod (`kubectl describe pod` shows it): reason
  FalcoResponseSucceeded (Normal) or FalcoResponseFailed (Warning), with the rule, priority, what
  was done, the evidence URI and SHA-256, and the workflow; source/reportingComponent
  falco-response. The Event's name derives from the Workflow's UID, so a retried report does not
  record it twice;
- if $SLACK_WEBHOOK_URL is set, posts {"text": ...} to that Slack incoming webhook;
- if $WEBHOOK_URL is set, posts the JSON summary there (with `Authorization: Bearer
  $WEBHOOK_BEARER_TOKEN` when that is set).
Notification failures are retried, logged and never fail the report. Output: summary (JSON).

RBAC: workflows get (argoproj.io), events create, pods get.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from urllib.parse import urlsplit

from engine import names
from steps import common
from steps.common import api_status, body, StepError
from steps.common import rule_name

COMPONENT = names.APP
PIPELINE_STEPS = {
    "checkpoint-and-quarantine": ("verify", "checkpoint", "copy", "quarantine"),
    "checkpoint-and-delete": ("verify", "checkpoint", "copy", "delete"),
    "checkpoint-only": ("verify", "checkpoint", "copy"),
    "quarantine": ("verify", "quarantine"),
    "delete": ("verify", "delete"),
}
TRACKED = tuple(s for s in names.STEPS if s != "report")
WORKFLOW_STATUSES = ("Succeeded", "Failed", "Error")
KEPT_OUTPUTS = ("evidence-uri", "sha256", "size", "result", "container-name", "image", "removed-labels",
                "findings", "analysis-uri", "analysis-sha256", "bundle")
MESSAGE_LIMIT = 1024  # core/v1 Event note limit
RETRY_SUFFIX = re.compile(r"\(\d+\)$")
UNKNOWN = "unknown"


def parse(argv: Sequence[str] | None):
    parser = common.Parser("report", __doc__.splitlines()[0])
    parser.flag("namespace", common.dns_label)
    parser.flag("pod", common.dns_subdomain)
    parser.flag("policy", common.dns_label)
    parser.flag("pipeline", common.one_of(*PIPELINE_STEPS))
    parser.flag("rule", rule_name)
    parser.flag("priority", common.priority)
    parser.flag("dry-run", common.boolean, default="false")
    parser.flag("workflow-name", common.dns_subdomain)
    parser.flag("workflow-namespace", common.dns_label)
    parser.flag("workflow-status", common.one_of(*WORKFLOW_STATUSES))
    return parser.parse(argv)


# --- reading the Workflow ------------------------------------------------------------------------


def step_of(node: dict) -> str | None:
    """Which of our steps a status.nodes entry belongs to (template name first, then display name)."""
    for candidate in (
        node.get("templateName"),
        (node.get("templateRef") or {}).get("template"),
        RETRY_SUFFIX.sub("", str(node.get("displayName") or "")),
    ):
        if candidate in TRACKED:
            return candidate
    return None


def outputs_of(node: dict) -> dict[str, str]:
    params = ((node.get("outputs") or {}).get("parameters")) or []
    return {
        str(p.get("name")): str(p.get("value"))
        for p in params
        if isinstance(p, dict) and p.get("name") in KEPT_OUTPUTS and p.get("value") is not None
    }


def workflow_nodes(workflow: dict) -> dict:
    """status.nodes, or Argo's gzip+base64 `compressedNodes` of a large workflow; offloaded node
    status (persistence DB) cannot be read from the API: unknown."""
    status = workflow.get("status") or {}
    if status.get("nodes"):
        return status["nodes"]
    if status.get("compressedNodes"):
        try:
            return json.loads(gzip.decompress(base64.b64decode(status["compressedNodes"])))
        except (ValueError, OSError) as exc:
            common.log(f"report: unreadable status.compressedNodes ({type(exc).__name__}): step results unknown")
    elif status.get("offloadNodeStatusVersion"):
        common.log("report: the workflow's node status is offloaded to Argo's database: step results unknown")
    return {}


def collect(workflow: dict | None, pipeline: str) -> dict[str, dict]:
    """{step: {"phase", "message", "outputs"}} for every step of the pipeline (and any other seen)."""
    steps: dict[str, dict] = {s: {"phase": UNKNOWN if workflow is None else "not-run", "message": "", "outputs": {}} for s in PIPELINE_STEPS[pipeline]}
    if workflow is None:
        return steps
    nodes = workflow_nodes(workflow)
    grouped: dict[str, list[dict]] = {}
    for node in nodes.values() if isinstance(nodes, dict) else []:
        if not isinstance(node, dict) or node.get("type") in ("Steps", "DAG", "StepGroup", "TaskGroup"):
            continue
        step = step_of(node)
        if step:
            grouped.setdefault(step, []).append(node)
    for step, group in grouped.items():
        # The Retry node sums up its attempts; without retries the Pod node is the step.
        group.sort(key=lambda n: (n.get("type") == "Retry", str(n.get("finishedAt") or n.get("startedAt") or "")))
        main = group[-1]
        outputs = outputs_of(main)
        if not outputs:
            done = [n for n in group if n.get("phase") == "Succeeded" and outputs_of(n)]
            outputs = outputs_of(done[-1]) if done else {}
        failed = [n for n in group if n.get("phase") in ("Failed", "Error") and n.get("message")]
        message = str(main.get("message") or (failed[-1].get("message") if failed else "") or "")
        steps[step] = {"phase": str(main.get("phase") or UNKNOWN), "message": node_message(message), "outputs": outputs}
    return steps


def get_workflow(custom, args) -> dict | None:
    where = f"{args.workflow_namespace}/{args.workflow_name}"
    try:
        return body(
            common.retry(
                lambda: custom.get_namespaced_custom_object(
                    "argoproj.io", "v1alpha1", args.workflow_namespace, "workflows", args.workflow_name, _preload_content=False
                ),
                f"get workflow {where}",
            )
        )
    except Exception as exc:  # noqa: BLE001 - the report goes on without it
        common.log(f"report: workflow {where} unreadable ({common.describe(exc)}): step results unknown")
        return None


# --- the words -----------------------------------------------------------------------------------


def action_text(args, steps: dict[str, dict]) -> str:
    def result(step: str) -> str:
        return steps.get(step, {}).get("outputs", {}).get("result", UNKNOWN)

    def delete_text() -> str:
        return {
            "deleted": "pod deleted",
            "already-gone": "pod was already gone",
            "dry-run": "would have deleted the pod",
        }.get(result("delete"), f"delete {steps['delete']['phase']}, result {result('delete')}")

    parts = []
    if "quarantine" in steps:
        parts.append(quarantine_text(steps["quarantine"]["phase"], result("quarantine")))
        if steps.get("delete", {}).get("phase") not in (None, "not-run", "Omitted", "Skipped"):
            # quarantine.on_not_isolated: delete ran after a not-isolated quarantine
            parts.append("escalated to delete: " + delete_text())
    elif "delete" in steps:
        parts.append(delete_text())
    if args.pipeline == "checkpoint-only":
        parts.append("pod left running (checkpoint only)")
    return "; ".join(parts)


def quarantine_text(phase: str, result: str) -> str:
    """The quarantine outcome: "quarantined" only when the step found the pod isolated."""
    known = {
        "isolated": f"pod quarantined and isolated (deny-all NetworkPolicy {names.QUARANTINE_NETWORKPOLICY}, "
        "detached from its Services and controller, kept for investigation)",
        "dry-run: isolated": "would have quarantined the pod",
        # results of the quarantine step before it judged isolation (Workflows still running an older template)
        "quarantined": f"pod quarantined (deny-all NetworkPolicy {names.QUARANTINE_NETWORKPOLICY}, "
        "detached from its Services and controller, kept for investigation)",
        "already-quarantined": "pod was already quarantined",
        "dry-run": "would have quarantined the pod",
    }
    if result in known:
        return known[result]
    if result.startswith("not-isolated: "):
        return f"pod NOT isolated, still reachable ({result.removeprefix('not-isolated: ')}); labelled, detached, deny-all applied"
    if result.startswith("dry-run: not-isolated: "):
        return f"would have labelled and detached the pod, but it would NOT be isolated ({result.removeprefix('dry-run: not-isolated: ')})"
    return f"quarantine {phase}, result {result or UNKNOWN}"


def evidence_of(steps: dict[str, dict]) -> dict[str, str]:
    copied = steps.get("copy", {}).get("outputs", {})
    return {
        "uri": copied.get("evidence-uri", UNKNOWN),
        "sha256": copied.get("sha256", UNKNOWN),
        "size": copied.get("size", UNKNOWN),
    }


def analysis_text(steps: dict[str, dict]) -> str:
    """analyze's one line of findings, or why there is none; its failure never is the response's
    (continueOn in the DAG), so it is said here, not as the step the response failed at."""
    info = steps.get("analyze")
    if not info or info["phase"] in ("not-run", "Omitted", "Skipped"):
        return ""
    findings = info["outputs"].get("findings")
    if info["phase"] == "Succeeded" and findings:
        return common.one_line(findings, 300).rstrip(".") + "."
    why = info["message"]
    return f"Analysis {info['phase']}{': ' + why if why else ''} (containment unaffected)."


def compose(args, steps: dict[str, dict], pod_exists: bool | None) -> tuple[bool, str]:
    succeeded = args.workflow_status == "Succeeded"
    where = f"{args.namespace}/{args.pod}"
    text = f"Falco alert {args.rule!r} ({args.priority}) on pod {where}: "
    if args.dry_run:
        text = "DRY RUN, nothing was changed. " + text
    failed = next((s for s, info in steps.items() if info["phase"] in ("Failed", "Error") and s != "analyze"), None)
    if succeeded:
        text += "response succeeded"
    elif failed:
        why = steps[failed]["message"]
        text += f"response FAILED at step {failed} ({steps[failed]['phase']}{': ' + why if why else ''})"
    else:
        text += f"response {args.workflow_status.upper()}"
    actions = action_text(args, steps)
    if actions:
        text += f"; {actions}"
    text += "."
    checkpoint_stored = False
    if "copy" in steps:
        evidence = evidence_of(steps)
        if evidence["uri"] != UNKNOWN or succeeded:
            checkpoint_stored = True
            text += f" Evidence {evidence['uri']} sha256 {evidence['sha256']} ({evidence['size']} bytes)."
        else:
            text += " No checkpoint stored."
    bundle = steps.get("verify", {}).get("outputs", {}).get("bundle", "")
    if bundle.startswith("failed: "):  # verify's evidence bundle (steps/bundle.py) never stops containment
        text += f" Evidence bundle NOT stored ({common.one_line(bundle.removeprefix('failed: '), 160)}); containment unaffected."
    elif bundle.startswith("stored: ") and not checkpoint_stored:  # the only evidence: say where it is
        text += f" Evidence bundle {common.one_line(bundle.removeprefix('stored: '), 200)}."
    analysis = analysis_text(steps)
    if analysis:
        text += f" {analysis}"
    if pod_exists is False:
        text += " The pod no longer exists."
    text += " Steps: " + ", ".join(f"{s} {info['phase']}" for s, info in steps.items()) + "."
    text += f" Policy {args.policy}, pipeline {args.pipeline}, workflow {args.workflow_namespace}/{args.workflow_name} {args.workflow_status}."
    return succeeded, common.one_line(text, MESSAGE_LIMIT)


# --- the Event and the notifications -------------------------------------------------------------


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_name(args, workflow: dict | None) -> str:
    uid = ((workflow or {}).get("metadata") or {}).get("uid") or f"{args.workflow_namespace}/{args.workflow_name}/{time.time_ns()}"
    suffix = hashlib.sha256(f"{uid}/{args.namespace}/{args.pod}".encode()).hexdigest()[:16]
    return f"{args.workflow_name[: 253 - 17].rstrip('.-')}.{suffix}"


def node_message(message: str) -> str:
    """The step's own `error: …` line when the node message is a log tail (FallbackToLogsOnError)."""
    errors = [line for line in message.splitlines() if line.startswith("error: ")]
    return common.one_line(errors[-1] if errors else message, 240)


def make_event(args, name: str, succeeded: bool, message: str, pod_uid: str | None) -> dict:
    now = datetime.now(timezone.utc)
    involved = {"apiVersion": "v1", "kind": "Pod", "namespace": args.namespace, "name": args.pod}
    if pod_uid:
        involved["uid"] = pod_uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name,
            "namespace": args.namespace,
            "labels": {
                names.LABEL_POLICY: args.policy,
                names.LABEL_PIPELINE: args.pipeline,
                names.PART_OF: names.APP,
            },
            "annotations": {names.ANNOTATION_WORKFLOW: f"{args.workflow_namespace}/{args.workflow_name}"},
        },
        "involvedObject": involved,
        "reason": "FalcoResponseSucceeded" if succeeded else "FalcoResponseFailed",
        "type": "Normal" if succeeded else "Warning",
        "message": message,
        "action": f"Respond-{args.pipeline}"[:128],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": (os.environ.get("HOSTNAME") or f"{COMPONENT}-report")[:128],
        "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventTime": micro_time(now),
        "count": 1,
    }


class NotifyError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status} {text}")
        self.status = status  # common.is_transient reads it


def post_json(url: str, payload: dict, headers: dict[str, str]) -> None:
    import requests

    response = requests.post(url, json=payload, headers=headers, timeout=(5, 15), allow_redirects=False)
    if not 200 <= response.status_code < 300:
        raise NotifyError(response.status_code, common.one_line(response.text, 120))


def notify(what: str, url: str, payload: dict, headers: dict[str, str] | None = None) -> str:
    """POST, retried like every call; a failure is logged, never raised. The URL holds a secret:
    only its host is ever logged."""
    host = urlsplit(url).hostname or "?"
    if urlsplit(url).scheme not in ("http", "https"):
        common.log(f"report: {what} not sent: the URL is not http(s)")
        return "failed"
    try:
        common.retry(lambda: post_json(url, payload, headers or {}), f"{what} to {host}")
    except Exception as exc:  # noqa: BLE001 - notifications never fail the report
        detail = f"HTTP {exc.status}" if isinstance(exc, NotifyError) else type(exc).__name__
        common.log(f"report: {what} to {host} failed ({detail}); the Event and the Workflow still hold the report")
        return "failed"
    common.log(f"report: {what} sent to {host}")
    return "sent"


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- the step ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    where = f"{args.namespace}/{args.pod}"
    common.log(f"report: workflow {args.workflow_namespace}/{args.workflow_name} ended {args.workflow_status}, pod {where}")

    from steps import kube as client

    api = common.kube_api_client()
    core = client.CoreV1Api(api)
    workflow = get_workflow(client.CustomObjectsApi(api), args)
    steps = collect(workflow, args.pipeline)

    pod_uid, pod_exists = None, None
    try:
        pod = body(common.retry(lambda: core.read_namespaced_pod(args.pod, args.namespace, _preload_content=False), f"get pod {where}"))
        pod_uid, pod_exists = pod.get("metadata", {}).get("uid"), True
    except Exception as exc:  # noqa: BLE001 - the Event is recorded without a uid
        if api_status(exc) == 404:
            pod_exists = False
            common.log(f"report: pod {where} no longer exists")
        else:
            common.log(f"report: cannot read pod {where} ({common.describe(exc)}): Event recorded without its uid")

    succeeded, message = compose(args, steps, pod_exists)
    common.log(f"report: {message}")
    name = event_name(args, workflow)
    event = make_event(args, name, succeeded, message, pod_uid)
    event_error: Exception | None = None
    event_state = "recorded"
    try:
        common.retry(lambda: core.create_namespaced_event(args.namespace, event, _preload_content=False), f"create event {args.namespace}/{name}")
        common.log(f"report: recorded {event['type']} Event {event['reason']} {args.namespace}/{name} on pod {where}")
    except Exception as exc:  # noqa: BLE001 - classified below
        status = api_status(exc)
        if status == 409:
            common.log(f"report: Event {args.namespace}/{name} was already recorded by an earlier attempt")
            event_state = "already-recorded"
        elif status == 404:
            common.log(f"report: namespace {args.namespace} does not exist: no Event recorded")
            event_state = "no-namespace"
        else:
            common.log(f"report: could not record the Event ({common.describe(exc)})")
            event_error, event_state = exc, "failed"

    summary = {
        "outcome": "succeeded" if succeeded else "failed",
        "message": message,
        "workflow": {"namespace": args.workflow_namespace, "name": args.workflow_name, "status": args.workflow_status},
        "namespace": args.namespace,
        "pod": args.pod,
        "pod_uid": pod_uid,
        "pod_exists": pod_exists,
        "policy": args.policy,
        "pipeline": args.pipeline,
        "rule": args.rule,
        "priority": args.priority,
        "dry_run": args.dry_run,
        "steps": {s: info["phase"] for s, info in steps.items()},
        "results": {s: steps[s]["outputs"].get("result", UNKNOWN) for s in ("quarantine", "delete") if s in steps},
        "evidence": evidence_of(steps) if "copy" in steps else None,
        "analysis": {
            "phase": steps["analyze"]["phase"],
            "findings": steps["analyze"]["outputs"].get("findings", UNKNOWN),
            "uri": steps["analyze"]["outputs"].get("analysis-uri", UNKNOWN),
            "sha256": steps["analyze"]["outputs"].get("analysis-sha256", UNKNOWN),
        } if "analyze" in steps else None,
        "event": {"name": name, "reason": event["reason"], "type": event["type"], "state": event_state},
    }
    notified = {}
    slack = os.environ.get("SLACK_WEBHOOK_URL", "").strip()
    if slack:
        icon = ":white_check_mark:" if succeeded else ":rotating_light:"
        notified["slack"] = notify("Slack notification", slack, {"text": f"{icon} *falco-response* {slack_escape(message)}"})
    hook = os.environ.get("WEBHOOK_URL", "").strip()
    if hook:
        headers = {"User-Agent": "falco-response"}
        token = os.environ.get("WEBHOOK_BEARER_TOKEN", "").strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        notified["webhook"] = notify("webhook notification", hook, summary, headers)
    summary["notifications"] = notified
    common.write_output(args.outputs_dir, "summary", json.dumps(summary, sort_keys=True))

    if event_error is not None:
        raise StepError(f"could not record the Event on pod {where}: {common.describe(event_error)}") from event_error
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
