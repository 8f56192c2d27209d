"""`falco-response demo`: every pipeline end to end on the stand-in world, and the failure path."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from engine import names
from engine.demo import NODE, Demo, default_event

ROOT = Path(__file__).resolve().parent.parent
ALERT = default_event().read_bytes()  # Terminal shell in container, default/kubecon
NAMESPACE, POD = "default", "kubecon"


def run_demo(tmp_path: Path, policy: str | None, prepare=None):
    out = io.StringIO()
    with Demo(ROOT / "build", workdir=tmp_path / "demo", out=out) as demo:
        if prepare:
            prepare(demo)
        result = demo.run(ALERT, policy=policy, source="test")
        state = {
            "pod": demo.kube.get("pods", NAMESPACE, POD),
            "service": demo.kube.get("services", NAMESPACE, result.pod["metadata"]["labels"].get("app", "kubecon") if result.pod else "kubecon"),
            "networkpolicies": demo.kube.list("networkpolicies", NAMESPACE),
            "events": demo.kube.list("events", NAMESPACE),
            "workflow": demo.kube.get("workflows", result.workflow_namespace, result.workflow_name) if result.workflow_name else None,
            "archives": sorted(p.name for p in Path(demo.kube.checkpoint_dir(NODE)).iterdir()),
            "objects": _objects(demo),
            "uploads": demo.s3.incomplete_uploads(demo.bucket),
        }
    return result, state, out.getvalue()


def _objects(demo) -> dict[str, dict]:
    client = demo.s3.client()
    found = {}
    for version in client.list_object_versions(Bucket=demo.bucket).get("Versions", []):
        head = client.head_object(Bucket=demo.bucket, Key=version["Key"], VersionId=version["VersionId"])
        body = client.get_object(Bucket=demo.bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
        found[version["Key"]] = {"head": head, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "body": body}
    return found


def assert_only_the_bundle(state) -> None:
    """No checkpoint evidence, only verify's evidence bundle (steps/bundle.py), every file its manifest lists."""
    objects = state["objects"]
    assert objects and all("/bundle/" in k for k in objects), sorted(objects)
    manifest = json.loads(objects[next(k for k in objects if k.endswith("/bundle/manifest.json"))]["body"])
    assert sorted(f["key"] for f in manifest["files"]) == sorted(k for k in objects if not k.endswith("/manifest.json"))
    assert all(objects[f["key"]]["sha256"] == f["sha256"] for f in manifest["files"])


def assert_evidence(result, state) -> None:
    keys = sorted(state["objects"])
    own = sorted(k.rsplit("/", 1)[1] for k in keys if "/bundle/" not in k)  # bundle/: verify's evidence bundle
    assert own == sorted(["checkpoint.tar", "manifest.json", names.ANALYSIS_OBJECT, names.ANALYSIS_SUMMARY_OBJECT,
                          names.ANALYSIS_CUSTODY_OBJECT]), keys
    archive = state["objects"][next(k for k in keys if k.endswith("checkpoint.tar"))]
    manifest = json.loads(state["objects"][next(k for k in keys if k.endswith("/manifest.json") and "/bundle/" not in k)]["body"])
    assert result.evidence["verified"] and result.evidence["sha256"] == archive["sha256"]
    assert archive["head"]["Metadata"].get("sha256") == archive["sha256"]
    assert archive["head"]["ObjectLockMode"] == "GOVERNANCE" and archive["head"]["ObjectLockRetainUntilDate"]
    assert archive["sha256"] in json.dumps(manifest)
    record = json.loads(state["objects"][next(k for k in keys if k.endswith(names.ANALYSIS_CUSTODY_OBJECT))]["body"])
    assert record["verified"][0]["sha256"] == archive["sha256"]
    for item in record["objects"]:  # analysis.json and summary: hashed in the custody record, under the archive's lock
        stored = state["objects"][item["key"]]
        assert stored["sha256"] == item["sha256"]
        assert (stored["head"]["ObjectLockMode"], stored["head"]["ObjectLockRetainUntilDate"]) == (
            archive["head"]["ObjectLockMode"], archive["head"]["ObjectLockRetainUntilDate"])
    assert keys[0].startswith(f"falco-response/{NAMESPACE}/{POD}/")
    assert state["archives"] == []  # moved off the node only after the verified upload
    assert state["uploads"] == []


def assert_workflow(state, phase: str, pipeline: str) -> None:
    wf = state["workflow"]
    assert wf["status"]["phase"] == phase
    assert wf["metadata"]["labels"][names.LABEL_PIPELINE] == pipeline
    assert wf["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true"
    templates = {n.get("templateName") for n in wf["status"]["nodes"].values()}
    assert "report" in templates


def assert_quarantined(state) -> None:
    pod = state["pod"]
    assert pod is not None
    labels = pod["metadata"]["labels"]
    assert labels[names.LABEL_QUARANTINED] == "true" and "app" not in labels and "pod-template-hash" not in labels
    assert json.loads(pod["metadata"]["annotations"][names.ANNOTATION_REMOVED_LABELS])["app"] == "kubecon"
    policy = next(np for np in state["networkpolicies"] if np["metadata"]["name"] == names.QUARANTINE_NETWORKPOLICY)
    assert policy["spec"]["podSelector"] == {"matchLabels": {names.LABEL_QUARANTINED: "true"}}
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy["spec"].get("ingress") and not policy["spec"].get("egress")


def assert_event(state, reason: str) -> None:
    events = [e for e in state["events"] if e["involvedObject"].get("name") == POD]
    assert [e["reason"] for e in events] == [reason], events


def test_checkpoint_and_quarantine(tmp_path):
    result, state, out = run_demo(tmp_path, None)  # the Sensors decide: interactive-intrusion
    assert result.exit_code == 0, out
    assert result.decision.policy == "interactive-intrusion" and result.decision.pipeline == "checkpoint-and-quarantine"
    assert result.unauthenticated_status == 401 and result.posted_status == 200
    assert_workflow(state, "Succeeded", "checkpoint-and-quarantine")
    assert [(t.name, t.phase) for t in result.run.tasks] == [
        ("verify", "Succeeded"), ("checkpoint", "Succeeded"), ("copy", "Succeeded"), ("quarantine", "Succeeded"),
        ("analyze", "Succeeded")]
    assert_evidence(result, state)
    assert_quarantined(state)
    assert_event(state, "FalcoResponseSucceeded")
    assert "409 AlreadyExists: deduplicated" in out and 'hostname "node-1"' in out


def test_checkpoint_and_delete(tmp_path):
    result, state, out = run_demo(tmp_path, "checkpoint-and-delete")
    assert result.exit_code == 0, out
    assert_workflow(state, "Succeeded", "checkpoint-and-delete")
    assert_evidence(result, state)
    # isolate-first: verify's pod made the deny-all before the checkpoint; the pod is gone now
    assert state["pod"] is None and [p["metadata"]["name"] for p in state["networkpolicies"]] == [names.QUARANTINE_NETWORKPOLICY]
    assert_event(state, "FalcoResponseSucceeded")


def test_checkpoint_only(tmp_path):
    result, state, out = run_demo(tmp_path, "checkpoint-on-tag")  # the policy whose pipeline is checkpoint-only
    assert result.exit_code == 0, out
    assert_workflow(state, "Succeeded", "checkpoint-only")
    assert_evidence(result, state)
    labels = state["pod"]["metadata"]["labels"]
    assert labels["app"] == "kubecon" and names.LABEL_QUARANTINED not in labels and state["networkpolicies"] == []
    assert_event(state, "FalcoResponseSucceeded")


def test_quarantine(tmp_path):
    result, state, out = run_demo(tmp_path, "quarantine")
    assert result.exit_code == 0, out
    assert_workflow(state, "Succeeded", "quarantine")
    assert [t.name for t in result.run.tasks] == ["verify", "quarantine"]
    assert state["archives"] == []
    assert_only_the_bundle(state)  # a pipeline without a checkpoint still gets the evidence bundle
    assert_quarantined(state)
    assert_event(state, "FalcoResponseSucceeded")


def test_delete(tmp_path):
    result, state, out = run_demo(tmp_path, "delete")
    assert result.exit_code == 0, out
    assert_workflow(state, "Succeeded", "delete")
    assert state["pod"] is None
    assert_only_the_bundle(state)
    assert_event(state, "FalcoResponseSucceeded")


def test_checkpoint_unsupported_still_contains_the_pod_and_leaves_nothing_half_done(tmp_path):
    result, state, out = run_demo(tmp_path, None, prepare=lambda demo: demo.kube.set_checkpoint_behaviour(NODE, "unsupported"))
    assert result.exit_code == 1
    phases = {t.name: t.phase for t in result.run.tasks}
    assert phases == {"verify": "Succeeded", "checkpoint": "Failed", "copy": "Omitted", "quarantine": "Succeeded",
                      "analyze": "Omitted"}  # copy (a target of the DAG) takes the checkpoint's Failed: the workflow fails
    checkpoint = next(t for t in result.run.tasks if t.name == "checkpoint")
    assert len(checkpoint.attempts) == 1  # a 500 is final: the container is not frozen again
    assert_workflow(state, "Failed", "checkpoint-and-quarantine")
    assert_quarantined(state)
    assert state["archives"] == [] and state["uploads"] == []
    assert_only_the_bundle(state)  # read before the checkpoint was attempted
    assert_event(state, "FalcoResponseFailed")
    assert "response Failed" in out


def test_demo_command_runs_end_to_end_in_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for expected in ("-> 401", "-> 200 success", "FIRES", "409 AlreadyExists: deduplicated", "workflow Succeeded",
                     "re-verified", "object lock  GOVERNANCE", "quarantined, detached", "NetworkPolicy default/falco-response-quarantine",
                     "FalcoResponseSucceeded", 'hostname "node-1"'):
        assert expected in out, expected


def _cli(*args: str) -> tuple[int, str]:
    from contextlib import chdir, redirect_stderr, redirect_stdout

    from engine import cli

    err = io.StringIO()
    with chdir(ROOT), redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = cli.main(list(args))
    return code, err.getvalue()


def test_demo_refuses_an_alert_without_a_pod_before_starting_anything():
    for name in ("09_host_write_below_binary_dir.json", "06_drop_and_execute_new_binary_in_container.json"):
        code, err = _cli("demo", "--event", str(default_event().parent / name))
        assert code == 2 and "no container in a Kubernetes pod" in err


def test_demo_refuses_an_unknown_policy():
    code, err = _cli("demo", "--policy", "no-such-policy")
    assert code == 2 and "no policy or pipeline named 'no-such-policy'" in err and "checkpoint-on-tag" in err
