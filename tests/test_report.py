"""report step (exit handler), through `python -m steps.report` against the stand-in API and a
local HTTP receiver standing for Slack and a generic webhook."""

from __future__ import annotations

import base64
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.test_verify import add_web_pod, check_hostile_flags, run_batch, run_step

WF = "falco-response-0123456789abcdef"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
URI = "s3://evidence/default/web-1/2025-11-24T13-24-56Z/checkpoint.tar"


def flags(**over: str) -> dict[str, str]:
    out = {
        "namespace": "default",
        "pod": "web-1",
        "policy": "shells",
        "pipeline": "checkpoint-and-quarantine",
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "dry-run": "false",
        "workflow-name": WF,
        "workflow-namespace": "falco-response",
        "workflow-status": "Succeeded",
    }
    out.update(over)
    return out


def params(**values: str) -> dict:
    return {"parameters": [{"name": k, "value": v} for k, v in values.items()]}


def nodes(copy_phase: str = "Succeeded", quarantine_result: str = "quarantined", WF: str = WF) -> dict:  # noqa: N803
    """status.nodes as Argo writes them: a DAG, Retry nodes with Pod children, the onExit node."""
    n = {
        WF: {"id": WF, "name": WF, "displayName": WF, "type": "DAG", "templateName": "main", "phase": "Running"},
        f"{WF}-1": {"displayName": "verify", "type": "Retry", "templateName": "verify", "phase": "Succeeded",
                    "finishedAt": "2025-11-24T13:25:01Z", "outputs": params(**{"container-name": "app", "image": "shop/app:1.2"})},
        f"{WF}-2": {"displayName": "verify(0)", "type": "Pod", "templateName": "verify", "phase": "Succeeded",
                    "finishedAt": "2025-11-24T13:25:01Z", "outputs": params(**{"container-name": "app"})},
        f"{WF}-3": {"displayName": "checkpoint", "type": "Pod", "templateName": "checkpoint", "phase": "Succeeded",
                    "finishedAt": "2025-11-24T13:25:20Z"},
        f"{WF}-4": {"displayName": "copy", "type": "Retry", "templateName": "copy", "phase": copy_phase,
                    "finishedAt": "2025-11-24T13:26:00Z",
                    "message": "" if copy_phase == "Succeeded" else "Error (exit code 1): upload checksum mismatch"},
        f"{WF}-5": {"displayName": "copy(0)", "type": "Pod", "templateName": "copy", "phase": "Failed",
                    "finishedAt": "2025-11-24T13:25:30Z", "message": "Error (exit code 75)"},
        f"{WF}-7": {"displayName": "onExit", "type": "Pod", "templateName": "report", "phase": "Running"},
    }
    if copy_phase == "Succeeded":
        n[f"{WF}-6"] = {"displayName": "copy(1)", "type": "Pod", "templateName": "copy", "phase": "Succeeded",
                        "finishedAt": "2025-11-24T13:26:00Z",
                        "outputs": params(**{"evidence-uri": URI, "sha256": SHA, "size": "1048576"})}
        n[f"{WF}-8"] = {"displayName": "quarantine", "type": "Pod", "templateName": "quarantine", "phase": "Succeeded",
                        "finishedAt": "2025-11-24T13:26:05Z",
                        "outputs": params(result=quarantine_result, **{"removed-labels": '{"app": "web"}'})}
    else:
        n[f"{WF}-8"] = {"displayName": "quarantine", "type": "Skipped", "templateName": "quarantine", "phase": "Omitted"}
    return n


def add_workflow(kube, node_map: dict, name: str = WF, compressed: str = "") -> dict:
    kube.add_namespace("falco-response")
    status = {"phase": "Running", "nodes": node_map}
    if compressed:
        status = {"phase": "Running", "compressedNodes": compressed}
    return kube.create(
        "workflows",
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name, "namespace": "falco-response"},
            "spec": {"workflowTemplateRef": {"name": "falco-checkpoint-and-quarantine"}},
            "status": status,
        },
    )


def events(kube, pod: str | None = None) -> list[dict]:
    return [e for e in kube.list("events", "default") if pod is None or e["involvedObject"]["name"] == pod]


class Receiver:
    """Records POSTs; answers `fail` 500s first on each path."""

    def __init__(self, fail: int = 0) -> None:
        self.posts: list[tuple[str, dict, dict]] = []
        self.fail = {"/slack/T000/B000/secretpart": fail, "/hook": fail}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append((self.path, dict(self.headers), data))
                if receiver.fail.get(self.path, 0) > 0:
                    receiver.fail[self.path] -= 1
                    self.send_response(500)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {
            "SLACK_WEBHOOK_URL": f"{self.url}/slack/T000/B000/secretpart",
            "WEBHOOK_URL": f"{self.url}/hook",
            "WEBHOOK_BEARER_TOKEN": "hook-token",
        }

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


# --- the Event --------------------------------------------------------------------------------


def test_success_event_says_what_was_done_with_the_evidence(kube, tmp_path):
    pod = add_web_pod(kube)
    add_workflow(kube, nodes())
    run = run_step(kube, "report", flags(), tmp_path)
    assert run.rc == 0, run.stderr

    [event] = events(kube)
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["involvedObject"]["apiVersion"] == "v1"
    assert event["involvedObject"]["namespace"] == "default"
    assert event["involvedObject"]["name"] == "web-1"
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert event["metadata"]["namespace"] == "default"
    assert event["reason"] == "FalcoResponseSucceeded"
    assert event["type"] == "Normal"
    assert event["source"] == {"component": "falco-response"}
    assert event["reportingComponent"] == "falco-response"
    assert event["reportingInstance"]
    assert event["count"] == 1 and event["eventTime"].endswith("Z") and event["firstTimestamp"]
    message = event["message"]
    assert len(message) <= 1024
    for part in (
        "Falco alert 'Terminal shell in container' (Critical) on pod default/web-1",
        "response succeeded",
        "pod quarantined",
        f"Evidence {URI} sha256 {SHA} (1048576 bytes)",
        "verify Succeeded, checkpoint Succeeded, copy Succeeded, quarantine Succeeded",
        f"workflow falco-response/{WF} Succeeded",
    ):
        assert part in message, (part, message)

    summary = json.loads(run.outputs["summary"])
    assert summary["outcome"] == "succeeded"
    assert summary["evidence"] == {"uri": URI, "sha256": SHA, "size": "1048576"}
    assert summary["results"] == {"quarantine": "quarantined"}
    assert summary["steps"] == {"verify": "Succeeded", "checkpoint": "Succeeded", "copy": "Succeeded", "quarantine": "Succeeded"}
    assert summary["pod_uid"] == pod["metadata"]["uid"]
    assert summary["event"] == {"name": event["metadata"]["name"], "reason": "FalcoResponseSucceeded", "type": "Normal", "state": "recorded"}

    # the exit handler retried: still one Event
    again = run_step(kube, "report", flags(), tmp_path)
    assert again.rc == 0, again.stderr
    assert "already recorded" in again.stdout
    assert len(events(kube)) == 1


def test_failed_unknown_and_dry_run_responses(kube, tmp_path):
    for name in ("failed", "unknown"):
        add_web_pod(kube, name=name)
    add_workflow(kube, nodes(copy_phase="Failed", WF="wf-failed"), "wf-failed")
    dry = nodes(quarantine_result="dry-run", WF="wf-dry")  # a large workflow: Argo compresses its nodes
    add_workflow(kube, {}, "wf-dry", compressed=base64.b64encode(gzip.compress(json.dumps(dry).encode())).decode())
    runs = run_batch(
        kube,
        "report",
        {
            "failed": flags(pod="failed", **{"workflow-name": "wf-failed", "workflow-status": "Failed"}),
            "unknown": flags(pod="unknown", pipeline="delete", **{"workflow-name": "wf-missing", "workflow-status": "Error"}),
            "dry-gone": flags(pod="dry-gone", **{"workflow-name": "wf-dry", "dry-run": "true"}),
            "no-namespace": flags(namespace="nowhere", **{"workflow-name": "wf-dry"}),
        },
        tmp_path,
    )
    for what, run in runs.items():
        assert run.rc == 0, (what, run.stderr)

    [event] = events(kube, "failed")
    assert event["reason"] == "FalcoResponseFailed" and event["type"] == "Warning"
    assert "response FAILED at step copy (Failed: Error (exit code 1): upload checksum mismatch)" in event["message"]
    assert "No checkpoint stored." in event["message"] and "quarantine Omitted" in event["message"]
    assert json.loads(runs["failed"].outputs["summary"])["results"] == {"quarantine": "unknown"}

    # the Workflow cannot be read: everything is unknown, nothing crashes
    assert "step results unknown" in runs["unknown"].stdout
    [event] = events(kube, "unknown")
    assert event["reason"] == "FalcoResponseFailed" and "verify unknown, delete unknown" in event["message"]
    summary = json.loads(runs["unknown"].outputs["summary"])
    assert summary["results"] == {"delete": "unknown"} and summary["evidence"] is None

    # a dry run on a pod that is gone: the Event has no uid and says both
    [event] = events(kube, "dry-gone")
    assert not event["involvedObject"].get("uid")
    assert event["reason"] == "FalcoResponseSucceeded"
    assert event["message"].startswith("DRY RUN, nothing was changed.")
    assert "would have quarantined the pod" in event["message"] and "The pod no longer exists." in event["message"]

    # a forged alert named a namespace that does not exist: nowhere to record an Event, no failure
    assert json.loads(runs["no-namespace"].outputs["summary"])["event"]["state"] == "no-namespace"
    assert "namespace nowhere does not exist: no Event recorded" in runs["no-namespace"].stdout


def test_transient_faults_are_survived_and_a_forbidden_event_fails_the_report(kube, tmp_path):
    add_web_pod(kube)
    add_web_pod(kube, name="web-2")
    add_workflow(kube, nodes())
    kube.fail_next(503, count=2, path="/workflows/")
    kube.fail_next(429, count=2, method="POST", path="/events$")
    run = run_step(kube, "report", flags(), tmp_path)
    assert run.rc == 0, run.stderr
    assert "response succeeded" in events(kube)[0]["message"]

    kube.fail_next(403, count=1, method="POST", path="/events$")
    before = len(kube.requests)
    run = run_step(kube, "report", flags(pod="web-2"), tmp_path)
    assert run.rc == 1 and "could not record the Event on pod default/web-2: 403" in run.error
    assert [s for m, p, s in kube.requests[before:] if m == "POST"] == [403]
    assert json.loads(run.outputs["summary"])["event"]["state"] == "failed"


# --- notifications ----------------------------------------------------------------------------


def test_slack_and_webhook_are_notified_with_retries(kube, tmp_path, receiver):
    add_web_pod(kube)
    add_workflow(kube, nodes())
    receiver.fail = {"/slack/T000/B000/secretpart": 1, "/hook": 2}
    run = run_step(kube, "report", flags(), tmp_path, env=receiver.env())
    assert run.rc == 0, run.stderr
    slack = [body for path, _, body in receiver.posts if path.startswith("/slack/")]
    hook = [(headers, body) for path, headers, body in receiver.posts if path == "/hook"]
    assert len(slack) == 2 and len(hook) == 3  # retried after the 500s
    assert set(slack[-1]) == {"text"}
    assert "Terminal shell in container" in slack[-1]["text"] and SHA in slack[-1]["text"]
    headers, body = hook[-1]
    assert headers["Authorization"] == "Bearer hook-token"
    assert headers["Content-Type"].startswith("application/json")
    assert body["outcome"] == "succeeded" and body["evidence"]["sha256"] == SHA
    assert body["workflow"] == {"namespace": "falco-response", "name": WF, "status": "Succeeded"}
    assert body["pod"] == "web-1" and body["rule"] == "Terminal shell in container"
    assert json.loads(run.outputs["summary"])["notifications"] == {"slack": "sent", "webhook": "sent"}
    assert "secretpart" not in run.stdout + run.stderr  # the Slack URL is a secret


def test_failing_notifications_do_not_fail_the_report(kube, tmp_path, receiver):
    add_web_pod(kube)
    add_workflow(kube, nodes())
    receiver.fail = {"/slack/T000/B000/secretpart": 100, "/hook": 0}
    env = {**receiver.env(), "WEBHOOK_URL": "http://127.0.0.1:9/unreachable"}
    run = run_step(kube, "report", flags(), tmp_path, env=env)
    assert run.rc == 0, run.stderr
    assert len(events(kube)) == 1
    assert json.loads(run.outputs["summary"])["notifications"] == {"slack": "failed", "webhook": "failed"}
    assert "Slack notification to 127.0.0.1 failed (HTTP 500)" in run.stdout
    assert "secretpart" not in run.stdout + run.stderr


# --- refusals ---------------------------------------------------------------------------------


def test_hostile_values_are_refused_without_api_calls(kube, tmp_path):
    add_web_pod(kube)
    check_hostile_flags(kube, "report", flags(), tmp_path)
    assert events(kube) == []


def test_failed_node_message_keeps_the_steps_error_line():
    """Argo's FallbackToLogsOnError message is the log tail: the Event quotes the step's error line."""
    from steps.report import node_message

    tail = "2025-11-24T13:25:01Z checkpoint: POST …\n" * 30 + "error: container runtime on node-1 cannot checkpoint\n"
    assert node_message(tail) == "error: container runtime on node-1 cannot checkpoint"
    assert node_message("Error (exit code 1)") == "Error (exit code 1)"
