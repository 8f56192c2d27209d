"""The blast-radius cap per owner workload: `python -m steps.verify` with its ServiceAccount's token
from build/rbac (steps/owner_cap.py does the counting), the stand-in's scale subresource, and one
response Workflow stopped end to end by the local runner.

Upstream, for the stand-in: pkg/registry/apps/deployment/storage/storage.go (ScaleREST: an
autoscaling/v1 Scale for apps/v1, scaleFromDeployment, scaleUpdatedObjectInfo: NotFound on
`deployments/scale`, ValidateScale, the UID precondition), RequestInfoFactory (RBAC sees
`deployments/scale`), the ReplicaSet controller's ownerReferences (controller: true).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests
import yaml

from engine import admission, blast_radius, build, config, names, rbac
from standin.argo.workflows import LocalRunner
from tests.conftest import step_token
from tests.test_verify import add_web_pod, hexid, run_batch, run_step

ROOT = Path(__file__).resolve().parents[1]
NS = "falco-response"
RULE = "Terminal shell in container"


def workload(kube, app: str = "web", replicas: int = 3, namespace: str = "default") -> str:
    """Deployment -> ReplicaSet -> (pods added later), as the controllers leave them; the RS's name."""
    labels = {"app": app, "pod-template-hash": "5d4f8c7b9"}
    kube.create("deployments", {
        "metadata": {"name": app, "namespace": namespace, "labels": {"app": app}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app", "image": "x"}]}}},
        "status": {"replicas": replicas},
    })
    rs = f"{app}-5d4f8c7b9"
    kube.add_replicaset(namespace, rs, labels, labels=labels, owner={"kind": "Deployment", "name": app})
    return rs


def pod_of(kube, name: str, owner: dict | None, app: str = "web") -> None:
    add_web_pod(kube, name, labels={"app": app}, owner=owner)


def flags(pod: str, wf: str, **extra: str) -> dict[str, str]:
    return {
        "namespace": "default", "pod": pod, "container-id": hexid(f"default/{pod}/app")[:12], "rule": RULE,
        "priority": "Critical", "max-responses-per-owner": "3", "owner-window-seconds": "3600",
        "on-cap-exceeded": "stop", "pipeline": "checkpoint-and-quarantine", "dry-run": "false",
        "workflow": f"{NS}/{wf}", "workflow-uid": str(uuid.uuid4()), **extra,
    }


def leases(kube, owner_uid: str) -> list[dict]:
    return [lease for lease in kube.list("leases", NS)
            if lease["metadata"]["labels"].get(blast_radius.LABEL_OWNER_UID) == owner_uid]


def writes(kube, since: int) -> list[tuple[str, str, int]]:
    return [r for r in kube.requests[since:] if r[0] != "GET"]


def test_the_fourth_response_for_one_deployment_is_stopped_before_anything_acts(kube, tmp_path):
    """Three pods of one Deployment are responded to (concurrently: record then count cannot let
    more through); the fourth pod's verify fails with one line, writes no outputs (so checkpoint
    and containment never start), and changes nothing but its own record."""
    rs = workload(kube)
    deployment = kube.get("deployments", "default", "web")
    for i in range(1, 5):
        pod_of(kube, f"web-5d4f8c7b9-pod{i}", {"kind": "ReplicaSet", "name": rs})
    first = run_batch(kube, "verify", {f"wf-{i}": flags(f"web-5d4f8c7b9-pod{i}", f"wf-{i}") for i in (1, 2, 3)}, tmp_path)
    for name, run in first.items():
        assert run.rc == 0, (name, run.stderr)
        assert run.outputs["pod-uid"]
    assert any("response 3 of at most 3 for Deployment default/web within 3600s" in r.stdout for r in first.values())

    before = len(kube.requests)
    fourth = run_step(kube, "verify", flags("web-5d4f8c7b9-pod4", "wf-4"), tmp_path)

    assert fourth.rc == 1 and len(fourth.stderr.strip().splitlines()) == 1, fourth.stderr
    assert fourth.error == (
        "error: blast radius: 4 responses for Deployment default/web within 3600s exceed max_responses_per_owner 3: "
        "stopped; no checkpoint and no containment for pod default/web-5d4f8c7b9-pod4"
    )
    assert fourth.outputs == {}
    assert [(m, p) for m, p, _ in writes(kube, before)] == [("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")]
    assert kube.get("deployments", "default", "web")["spec"]["replicas"] == 3
    records = leases(kube, deployment["metadata"]["uid"])
    assert sorted(r["metadata"]["name"] for r in records) == ["wf-1", "wf-2", "wf-3", "wf-4"]
    record = next(r for r in records if r["metadata"]["name"] == "wf-4")
    assert record["metadata"]["annotations"][blast_radius.ANNOTATION_OWNER] == "Deployment/default/web"
    assert record["metadata"]["ownerReferences"][0]["kind"] == "Workflow"
    assert record["spec"]["leaseDurationSeconds"] == 3600


def test_counted_per_owner_within_the_window_and_a_pod_without_controller_is_not_capped(kube, tmp_path):
    rs = workload(kube)
    api = workload(kube, "api")
    deployment = kube.get("deployments", "default", "web")
    # Two responses for web long ago (outside the window), two recent ones: the next is the third.
    for name, ago in (("old-1", 7200), ("old-2", 4000), ("new-1", 60), ("new-2", 10)):
        kube.create("leases", {"metadata": {"name": name, "namespace": NS,
                                            "labels": {blast_radius.LABEL_OWNER_UID: deployment["metadata"]["uid"]}},
                               "spec": {"holderIdentity": name}})
        _created_ago(kube, name, ago)
    pod_of(kube, "web-5d4f8c7b9-a", {"kind": "ReplicaSet", "name": rs})
    pod_of(kube, "api-5d4f8c7b9-a", {"kind": "ReplicaSet", "name": api}, app="api")
    pod_of(kube, "bare", None)
    runs = run_batch(kube, "verify", {
        "web": flags("web-5d4f8c7b9-a", "wf-web"),
        "api": flags("api-5d4f8c7b9-a", "wf-api", **{"max-responses-per-owner": "1"}),
        "bare": flags("bare", "wf-bare", **{"max-responses-per-owner": "1"}),
    }, tmp_path)
    assert all(run.rc == 0 for run in runs.values()), {k: r.stderr for k, r in runs.items()}
    assert "response 3 of at most 3 for Deployment default/web within 3600s" in runs["web"].stdout
    assert "response 1 of at most 1 for Deployment default/api" in runs["api"].stdout
    assert "has no controller, nothing replaces it: not capped" in runs["bare"].stdout
    assert kube.get("leases", NS, "wf-bare") is None

    # A retried verify (the same Workflow) is recorded once: 409 on its Lease, the count unchanged.
    again = run_step(kube, "verify", flags("web-5d4f8c7b9-a", "wf-web"), tmp_path)
    assert again.rc == 0 and "recorded by an earlier attempt" in again.stdout and "response 3 of at most 3" in again.stdout


def _created_ago(kube, name: str, seconds: int) -> None:
    """Set-up: the Lease was created `seconds` ago (the store keeps what the API server stamped)."""
    from datetime import timedelta

    rt = kube.store.resource_type("leases")
    with kube.store._lock:
        stored = kube.store._objects[(rt.plural, NS, name)]
        then = datetime.now(timezone.utc) - timedelta(seconds=seconds)
        stored["metadata"]["creationTimestamp"] = then.strftime("%Y-%m-%dT%H:%M:%SZ")


def _settings(**radius) -> config.Settings:
    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["settings"]["blast_radius"] = {**(raw["settings"].get("blast_radius") or {}), **radius}
    return config.parse(raw).settings


def scale_down_build() -> list[dict]:
    """The RBAC and admission policies build/ generates with blast_radius.on_exceeded: scale-down."""
    settings = _settings(on_exceeded="scale-down")
    return rbac.roles(settings) + admission.policies(settings)


def test_scale_down_scales_the_owner_to_zero_only_with_its_rbac(kube, tmp_path):
    """on_exceeded scale-down: PATCH deployments/web/scale as verify, allowed only by the rule build/
    generates for that setting (the default build has none: 403, and the response stops)."""
    rs = workload(kube)
    for i in range(1, 4):
        pod_of(kube, f"web-5d4f8c7b9-s{i}", {"kind": "ReplicaSet", "name": rs})
    down = {"max-responses-per-owner": "1", "on-cap-exceeded": "scale-down"}
    assert run_step(kube, "verify", flags("web-5d4f8c7b9-s1", "wf-s1", **down), tmp_path).rc == 0

    refused = run_step(kube, "verify", flags("web-5d4f8c7b9-s2", "wf-s2", **down), tmp_path)
    assert refused.rc == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert ("scaling Deployment default/web to 0 failed (403 Forbidden: this step may not patch deployments/scale; "
            "build/ grants it with blast_radius.on_exceeded: scale-down)") in refused.error
    assert ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", 403) in kube.requests
    assert refused.error.endswith("stopped; no checkpoint and no containment for pod default/web-5d4f8c7b9-s2")
    assert kube.get("deployments", "default", "web")["spec"]["replicas"] == 3

    kube.apply(scale_down_build())  # what build/ holds with that setting
    before = len(kube.requests)
    scaled = run_step(kube, "verify", flags("web-5d4f8c7b9-s3", "wf-s3", **down), tmp_path)
    assert scaled.rc == 1 and len(scaled.stderr.strip().splitlines()) == 1
    assert scaled.error == (
        "error: blast radius: 3 responses for Deployment default/web within 3600s exceed max_responses_per_owner 1: "
        "scaled Deployment default/web to 0 replicas (3 running): its controller removes its pods; "
        "no checkpoint and no containment for pod default/web-5d4f8c7b9-s3"
    )
    assert ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", 200) in writes(kube, before)
    assert kube.get("deployments", "default", "web")["spec"]["replicas"] == 0
    assert scaled.outputs == {}


def test_scale_down_stops_instead_for_a_dry_run_checkpoint_only_or_an_owner_without_scale(kube, tmp_path):
    kube.apply(scale_down_build())
    rs = workload(kube)
    kube.create("statefulsets", {"metadata": {"name": "db", "namespace": "default"},
                                 "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}},
                                 "status": {"replicas": 2}})
    sts = kube.get("statefulsets", "default", "db")
    for i in range(1, 4):
        pod_of(kube, f"web-5d4f8c7b9-d{i}", {"kind": "ReplicaSet", "name": rs})
    pod_of(kube, "db-0", {"kind": "StatefulSet", "name": "db", "uid": sts["metadata"]["uid"]}, app="db")
    pod_of(kube, "agent-x1", {"kind": "DaemonSet", "name": "agent", "uid": str(uuid.uuid4())}, app="agent")
    cap = {"max-responses-per-owner": "1", "on-cap-exceeded": "scale-down"}
    assert run_step(kube, "verify", flags("web-5d4f8c7b9-d1", "wf-d1", **cap), tmp_path).rc == 0
    runs = run_batch(kube, "verify", {
        "dry-run": flags("web-5d4f8c7b9-d2", "wf-d2", **cap, **{"dry-run": "true"}),
        "checkpoint-only": flags("web-5d4f8c7b9-d3", "wf-d3", **cap, pipeline="checkpoint-only"),
    }, tmp_path)
    assert "dry run, Deployment default/web not scaled down: stopped" in runs["dry-run"].error
    assert "pipeline checkpoint-only contains nothing, Deployment default/web not scaled down: stopped" in runs["checkpoint-only"].error
    assert kube.get("deployments", "default", "web")["spec"]["replicas"] == 3

    for pod, workflow in (("db-0", "wf-db-1"), ("agent-x1", "wf-agent-1")):
        assert run_step(kube, "verify", flags(pod, workflow, **cap), tmp_path).rc == 0
    runs = run_batch(kube, "verify", {
        "statefulset": flags("db-0", "wf-db-2", **cap),
        "daemonset": flags("agent-x1", "wf-agent-2", **cap),
    }, tmp_path)
    assert "scaled StatefulSet default/db to 0 replicas (2 running)" in runs["statefulset"].error
    assert kube.get("statefulsets", "default", "db")["spec"]["replicas"] == 0
    assert "DaemonSet has no scale subresource: stopped" in runs["daemonset"].error
    assert all(run.rc == 1 and run.outputs == {} for run in runs.values())


def test_bad_cap_flags_are_refused_in_one_line_before_any_request(kube, tmp_path):
    pod_of(kube, "web-1", None)
    before = len(kube.requests)
    cases = {
        "negative": {"max-responses-per-owner": "-1"},
        "action": {"on-cap-exceeded": "kill"},
        "workflow": {"workflow": "falco-response/a/b"},
    }
    runs = run_batch(kube, "verify", {k: flags("web-1", "wf-x", **v) for k, v in cases.items()}, tmp_path)
    for name, run in runs.items():
        assert run.rc == 1 and len(run.stderr.strip().splitlines()) == 1 and run.error.startswith("error: "), (name, run.stderr)
        assert run.stdout == "" and run.outputs == {}
    assert "on-cap-exceeded: 'kill' is not one of stop, scale-down" in runs["action"].error
    assert len(kube.requests) == before


# --- the stand-in's scale subresource -----------------------------------------------------------


def test_standin_scale_subresource_follows_scale_rest(kube):
    workload(kube)
    api = f"{kube.url}/apis/apps/v1/namespaces/default/deployments"
    admin = {"Authorization": f"Bearer {kube.token}"}
    got = requests.get(f"{api}/web/scale", headers=admin, timeout=10).json()
    deployment = kube.get("deployments", "default", "web")
    assert got["kind"] == "Scale" and got["apiVersion"] == "autoscaling/v1"
    assert got["metadata"]["uid"] == deployment["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    assert got["spec"] == {"replicas": 3} and got["status"] == {"replicas": 3, "selector": "app=web"}

    merge = {**admin, "Content-Type": "application/merge-patch+json"}
    bad = requests.patch(f"{api}/web/scale", headers=merge, data=json.dumps({"spec": {"replicas": -1}}), timeout=10)
    assert bad.status_code == 422 and bad.json()["message"] == (
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0')
    stale = requests.patch(f"{api}/web/scale", headers=merge, timeout=10,
                           data=json.dumps({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}))
    assert stale.status_code == 409
    missing = requests.patch(f"{api}/nope/scale", headers=merge, data=json.dumps({"spec": {"replicas": 0}}), timeout=10)
    assert missing.status_code == 404 and missing.json()["message"] == 'deployments/scale.apps "nope" not found'
    assert requests.get(f"{api}/nope/scale", headers=admin, timeout=10).json()["message"] == 'deployments.apps "nope" not found'

    done = requests.patch(f"{api}/web/scale", headers=merge, data=json.dumps({"spec": {"replicas": 0}}), timeout=10)
    assert done.status_code == 200 and done.json()["spec"] == {} and done.json()["status"]["replicas"] == 3
    after = kube.get("deployments", "default", "web")
    assert after["spec"]["replicas"] == 0 and after["spec"]["template"] == deployment["spec"]["template"]

    # RBAC is on the subresource: patch on deployments/scale is not patch on deployments, nor get.
    verify = {"Authorization": f"Bearer {step_token(kube, 'verify')}"}
    assert requests.get(f"{api}/web/scale", headers=verify, timeout=10).status_code == 403


# --- end to end: the report says why --------------------------------------------------------------


def test_a_stopped_response_fails_at_verify_contains_nothing_and_the_report_says_why(kube, tmp_path):
    """build/ with max_responses_per_owner 1, pipeline quarantine, run by the local runner: the first
    pod of the Deployment is quarantined, the second is left alone, and its report Event says why."""
    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["settings"]["blast_radius"] = {**(raw["settings"].get("blast_radius") or {}), "max_responses_per_owner": 1}
    cfg = config.parse(raw)
    variant = tmp_path / "build"
    build.write(cfg, variant)
    rs = workload(kube)
    runner = LocalRunner(kube, variant, env={"STEP_RETRY_BASE_DELAY": "0.01"}, workdir=tmp_path / "run", backoff_scale=0)
    results = {}
    for i in (1, 2):
        pod = f"web-5d4f8c7b9-e2e{i}"
        pod_of(kube, pod, {"kind": "ReplicaSet", "name": rs})
        params = {"namespace": "default", "pod": pod, "container-id": hexid(f"default/{pod}/app")[:12],
                  "node": "node-1", "rule": RULE, "priority": "Critical", "policy": "interactive-intrusion",
                  "alert-time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
              "metadata": {"name": f"falco-response-e2e{i}", "namespace": NS},
              "spec": {"workflowTemplateRef": {"name": "falco-quarantine"},
                       "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]}}}
        assert runner.submit(wf)[0]
        results[i] = runner.run(NS, f"falco-response-e2e{i}")
    assert results[1].phase == "Succeeded", results[1].message
    second = {t.name: t for t in results[2].tasks}
    assert results[2].phase == "Failed"
    assert second["verify"].phase == "Failed" and second["quarantine"].phase == "Omitted"
    assert kube.get("pods", "default", "web-5d4f8c7b9-e2e1")["metadata"]["labels"].get(names.LABEL_QUARANTINED) == "true"
    assert names.LABEL_QUARANTINED not in kube.get("pods", "default", "web-5d4f8c7b9-e2e2")["metadata"]["labels"]
    event = next(e for e in kube.list("events", "default") if e["involvedObject"]["name"] == "web-5d4f8c7b9-e2e2")
    assert event["reason"] == "FalcoResponseFailed"
    assert "response FAILED at step verify" in event["message"]
    assert "blast radius: 2 responses for Deployment default/web within 3600s exceed max_responses_per_owner 1: stopped" \
        in event["message"]
    # every pod a response ran (exit handler included) has a deadline: the quota's Terminating scope counts it
    pods = kube.list("pods", NS)
    assert pods and all(p["spec"].get("activeDeadlineSeconds") for p in pods), [p["metadata"]["name"] for p in pods]
