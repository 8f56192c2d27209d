"""The evidence bundle (steps/bundle.py), through `python -m steps.verify` as Argo runs it, against
the stand-in API server (RBAC from build/) and the stand-in S3; and the stand-in's pods/log.

verify reads the bundle BEFORE it isolates the pod in the same process, then uploads it; so the
bundle shows the pod without the quarantine label and without our deny-all NetworkPolicy although
the pod carries both when verify exits.
"""

from __future__ import annotations

import copy as deepcopy_module
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from standin.s3 import S3Server
from tests.conftest import BUILD, step_token
from tests.test_verify import add_web_pod, assert_refused_quietly, hexid, isolate_flags, run_step

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "evidence-locked"
WORKFLOW_UID = "0b4c2d9e-1111-4222-8333-944445555666"
QUARANTINED = "falco-response.io/quarantined"


@pytest.fixture
def s3():
    with S3Server() as server:
        server.create_bucket(BUCKET, object_lock=True)
        server.requests.clear()
        yield server


def bundle_flags(s3: S3Server, **over: str) -> dict[str, str]:
    """verify's flags as build/'s isolate-first template renders them, with the stand-in S3."""
    return isolate_flags(**{
        "workflow-uid": WORKFLOW_UID, "bucket": BUCKET, "endpoint-url": s3.url, "region": "us-east-1",
        "prefix": "falco-response", "object-lock-mode": "GOVERNANCE", "object-lock-days": "1", **over,
    })  # fmt: skip


def s3_env(s3: S3Server) -> dict[str, str]:
    return {**s3.env(), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


def add_workload(kube, name: str = "web-1", namespace: str = "default") -> dict:
    """Deployment web -> ReplicaSet web-5d9 -> pod, as the controllers leave them."""
    deployment = kube.create("deployments", {
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}},
    })  # fmt: skip
    rs = kube.add_replicaset(namespace, "web-5d9", {"app": "web"},
                             owner={"kind": "Deployment", "name": "web", "uid": deployment["metadata"]["uid"]})
    return add_web_pod(kube, name, namespace, labels={"app": "web", "tier": "front"},
                       owner={"kind": "ReplicaSet", "name": "web-5d9", "uid": rs["metadata"]["uid"]})


def add_event(kube, pod: dict, reason: str, message: str, uid: str | None = None) -> dict:
    meta = pod["metadata"]
    return kube.create("events", {
        "metadata": {"name": f"{meta['name']}.{reason.lower()}{len(kube.list('events', meta['namespace']))}", "namespace": meta["namespace"]},
        "involvedObject": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": uid or meta["uid"],
                           "apiVersion": "v1"},
        "reason": reason, "message": message, "type": "Normal", "count": 1,
        "source": {"component": "kubelet", "host": "node-1"},
    })  # fmt: skip


def read(s3: S3Server, key: str) -> bytes:
    return s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


# --- the bundle through verify ---------------------------------------------------------------------


def test_the_bundle_shows_the_pod_as_it_was_before_the_same_step_isolated_it(kube, s3, tmp_path):
    """One real verify --isolate=true run with build/'s S3 flags: the pod ends labelled quarantined
    and selected by our deny-all NetworkPolicy, yet the bundle's pod.json has no quarantine label and
    networkpolicies.json lists the allow-policy that selected the pod, not ours. Its manifest lists
    every file with the SHA-256 and size of what S3 holds, each under the checkpoint's Object Lock,
    beside the checkpoint's folder; Events are this pod instance's only; the previous log of the
    restarted container is there; each log is bounded and says what was cut. Every read precedes the
    first write of the isolation (Events selected by involvedObject.name and .uid, field labels
    kubernetes/kubernetes pkg/apis/core/v1/conversion.go addFieldLabelConversionsForEvent serves: an
    Event of an older pod of the same name is left out). On the previous code verify had no --bucket
    flag (exit 1, `bad arguments: unrecognized arguments`)."""
    pod = add_workload(kube)
    kube.apply([
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-web", "namespace": "default"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "db-only", "namespace": "default"},
         "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]}},
    ])  # fmt: skip
    add_event(kube, pod, "Started", "Started container app")
    add_event(kube, pod, "Killing", "an older pod of the same name", uid="11111111-2222-4333-8444-555555555555")
    kube.write_log("default", "web-1", "app", "".join(f"request {i}\n" for i in range(50)))
    kube.restart_container("default", "web-1", "sidecar")
    kube.write_log("default", "web-1", "sidecar", "proxy died: segfault\n", previous=True)
    kube.write_log("default", "web-1", "sidecar", "x" * 5000 + "\n")
    pod = kube.get("pods", "default", "web-1")  # with the restart in its status
    container_id = hexid("default/web-1/app")[:12]

    flags = bundle_flags(s3, **{"container-id": container_id, "log-tail-lines": "20", "log-max-bytes": "4096"})
    run = run_step(kube, "verify", flags, tmp_path, s3_env(s3))
    assert run.rc == 0, run.stderr
    assert run.outputs["isolation"] == "not-isolated: NetworkPolicy default/allow-web allows ingress"
    after = kube.get("pods", "default", "web-1")
    assert after["metadata"]["labels"][QUARANTINED] == "true"
    assert kube.get("networkpolicies", "default", "falco-response-quarantine") is not None

    folder = f"falco-response/default/web-1/app/{stamp(flags)}-falco-response-0123456789abcdef-3/{WORKFLOW_UID}/bundle"
    manifest_key = f"{folder}/manifest.json"
    assert run.outputs["bundle-manifest-uri"] == f"s3://{BUCKET}/{manifest_key}"
    assert run.outputs["bundle"] == f"stored: s3://{BUCKET}/{manifest_key}"
    raw = read(s3, manifest_key)
    assert run.outputs["bundle-sha256"] == hashlib.sha256(raw).hexdigest()
    manifest = json.loads(raw)
    names = [f["name"] for f in manifest["files"]]
    assert names == sorted([
        "pod.json", "owner-1-replicaset.json", "owner-2-deployment.json", "events.json", "networkpolicies.json",
        "node.json", "logs/app.log", "logs/sidecar.log", "logs/sidecar.previous.log",
    ])  # fmt: skip
    client = s3.client()
    for entry in manifest["files"]:
        data = read(s3, entry["key"])
        assert entry["key"] == f"{folder}/{entry['name']}"
        assert (entry["sha256"], entry["size"]) == (hashlib.sha256(data).hexdigest(), len(data)), entry
        head = client.head_object(Bucket=BUCKET, Key=entry["key"])
        assert head["ObjectLockMode"] == "GOVERNANCE" and head["Metadata"]["workflow-uid"] == WORKFLOW_UID
    assert client.head_object(Bucket=BUCKET, Key=manifest_key)["ObjectLockMode"] == "GOVERNANCE"

    before = json.loads(read(s3, f"{folder}/pod.json"))
    assert QUARANTINED not in before["metadata"]["labels"] and before["metadata"]["uid"] == pod["metadata"]["uid"]
    assert before["metadata"]["labels"] == {"app": "web", "tier": "front"}
    policies = json.loads(read(s3, f"{folder}/networkpolicies.json"))
    assert [p["metadata"]["name"] for p in policies["items"]] == ["allow-web"]
    events = json.loads(read(s3, f"{folder}/events.json"))
    assert [e["reason"] for e in events["items"]] == ["Started"]
    assert json.loads(read(s3, f"{folder}/owner-2-deployment.json"))["metadata"]["name"] == "web"
    assert json.loads(read(s3, f"{folder}/node.json"))["metadata"]["name"] == "node-1"
    assert read(s3, f"{folder}/logs/app.log") == "".join(f"request {i}\n" for i in range(30, 50)).encode()
    assert read(s3, f"{folder}/logs/sidecar.previous.log") == b"proxy died: segfault\n"
    assert read(s3, f"{folder}/logs/sidecar.log") == b"x" * 4096
    assert manifest["notes"]["logs/app.log"].startswith("only the last 20 lines requested")
    assert "cut at 4096 bytes (limitBytes)" in manifest["notes"]["logs/sidecar.log"]
    assert manifest["notes"]["logs/sidecar.previous.log"] == "complete"
    assert manifest["problems"] == [] and manifest["object_lock"]["mode"] == "GOVERNANCE"
    for entry in manifest["files"]:
        assert f"verify: bundle: {entry['name']} sha256 {entry['sha256']}" in run.stdout

    # every read of the bundle came before the isolation's first write
    mine = [(m, p) for m, p, _ in kube.requests if "/namespaces/default/" in p or p.startswith("/api/v1/nodes/")]
    first_write = next(i for i, (m, _) in enumerate(mine) if m in ("POST", "PATCH"))
    reads = [i for i, (m, p) in enumerate(mine) if m == "GET" and (p.endswith("/log") or "/events" in p or "/nodes/" in p
                                                                 or "/deployments/" in p)]  # fmt: skip
    assert len(reads) == 6 and max(reads) < first_write, mine


def stamp(flags: dict[str, str]) -> str:
    """The key's YYYYMMDDTHHMMSSZ of the alert time verify was given (steps/copy.py object_keys)."""
    from steps.common import alert_datetime

    return alert_datetime(flags["alert-time"]).strftime("%Y%m%dT%H%M%SZ")


def test_a_pipeline_without_a_checkpoint_gets_the_bundle_and_a_failed_upload_never_stops_isolation(kube, s3, tmp_path):
    """The quarantine pipeline's verify (isolate, no checkpoint) stores the bundle too. With the bucket
    missing (or no credentials) the pod is isolated all the same: verify exits 0 and its output
    `bundle` says `failed: <why>` in one line, with no manifest URI for copy to name."""
    for ns in ("nobucket", "nocreds"):
        kube.add_namespace(ns)
        add_web_pod(kube, namespace=ns, labels={"app": "web"})
    add_web_pod(kube, labels={"app": "web"})
    ok = run_step(kube, "verify", bundle_flags(s3, pipeline="quarantine"), tmp_path, s3_env(s3))
    assert ok.rc == 0, ok.stderr
    assert ok.outputs["bundle"].startswith("stored: s3://") and len(ok.outputs["bundle-sha256"]) == 64

    missing = run_step(kube, "verify", bundle_flags(s3, namespace="nobucket", **{
        "container-id": hexid("nobucket/web-1/app")[:12], "bucket": "no-such-bucket"}), tmp_path, s3_env(s3))  # fmt: skip
    assert missing.rc == 0, missing.stderr
    assert missing.outputs["isolation"] == "isolated"
    assert kube.get("pods", "nobucket", "web-1")["metadata"]["labels"][QUARANTINED] == "true"
    assert missing.outputs["bundle"].startswith("failed: put s3://no-such-bucket/falco-response/nobucket/web-1/app/")
    assert "NoSuchBucket" in missing.outputs["bundle"] and "\n" not in missing.outputs["bundle"]
    assert missing.outputs["bundle-manifest-uri"] == "" and missing.outputs["bundle-sha256"] == ""
    assert "verify: warning: the evidence bundle was not stored" in missing.stdout

    env = {k: v for k, v in s3_env(s3).items() if not k.startswith("AWS_")}
    nocreds = run_step(kube, "verify", bundle_flags(s3, namespace="nocreds", **{
        "container-id": hexid("nocreds/web-1/app")[:12]}), tmp_path, {**env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})  # fmt: skip
    assert nocreds.rc == 0 and nocreds.outputs["isolation"] == "isolated", nocreds.stderr
    assert nocreds.outputs["bundle"] == (
        "failed: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the evidence-store credentials Secret)")


def test_bad_bundle_flags_are_refused_before_any_request(kube, s3, tmp_path):
    """One line, exit 1, no API request, nothing isolated, nothing stored."""
    add_web_pod(kube, labels={"app": "web"})
    before, s3_before = len(kube.requests), len(s3.requests)
    cases = {
        "bucket": ({"bucket": "Not_A_Bucket"}, "bucket: 'Not_A_Bucket' is not an S3 bucket name"),
        "lock": ({"object-lock-mode": "FOREVER"}, "object-lock-mode: 'FOREVER' is not '', GOVERNANCE or COMPLIANCE"),
        "days": ({"object-lock-days": "0"}, "object-lock-days: Object Lock mode GOVERNANCE needs 1 to 36500 days"),
        "prefix": ({"prefix": "a/../b"}, "prefix: 'a/../b' has a '.' or '..' segment"),
        "tail": ({"log-tail-lines": "-1"}, "log-tail-lines: '-1' is not a whole number from 1 to 100000"),
        "uid": ({"workflow-uid": ""}, "--bucket (the evidence bundle) needs --workflow and --workflow-uid"),
        "no bucket": ({"bucket": ""}, "bucket: the evidence bundle's S3 settings need --bucket"),
    }
    for what, (over, message) in cases.items():
        run = run_step(kube, "verify", bundle_flags(s3, **over), tmp_path, s3_env(s3))
        assert_refused_quietly(run, what)
        assert message in run.error, (what, run.error)
    assert len(kube.requests) == before and len(s3.requests) == s3_before
    assert QUARANTINED not in kube.get("pods", "default", "web-1")["metadata"]["labels"]


def test_a_retried_verify_keeps_the_bundle_of_its_first_attempt(kube, s3, tmp_path):
    """Argo retries verify (exit 75, a lost pod) with the same workflow UID: the first attempt's
    objects are kept (If-None-Match: * gives 412, HeadObject shows this run's UID), not overwritten
    by a read of the pod that is now isolated; the manifest lists what S3 holds."""
    add_web_pod(kube, labels={"app": "web"})
    flags = bundle_flags(s3)  # one alert time: the same keys
    first = run_step(kube, "verify", flags, tmp_path, s3_env(s3))
    assert first.rc == 0 and first.outputs["bundle"].startswith("stored"), first.stderr
    again = run_step(kube, "verify", flags, tmp_path, s3_env(s3))
    assert again.rc == 0, again.stderr
    assert again.outputs["bundle-sha256"] == first.outputs["bundle-sha256"]
    key = first.outputs["bundle-manifest-uri"].removeprefix(f"s3://{BUCKET}/")
    manifest = json.loads(read(s3, key))
    pod_json = json.loads(read(s3, next(f["key"] for f in manifest["files"] if f["name"] == "pod.json")))
    assert QUARANTINED not in pod_json["metadata"]["labels"]
    assert "was stored by an earlier attempt of this run: kept" in again.stdout
    other = run_step(kube, "verify", {**flags, "workflow-uid": "99999999-1111-4222-8333-944445555666"},
                     tmp_path, s3_env(s3))  # same keys but for the UID: a different folder, nothing clashes
    assert other.rc == 0 and other.outputs["bundle"].startswith("stored"), other.stderr


# --- RBAC: each new verb is needed ------------------------------------------------------------------


NEW_RULES = [
    ("", "pods/log", "get", "logs/app.log"),
    ("", "events", "list", "events.json"),
    ("", "nodes", "get", "node.json"),
    ("apps", "deployments", "get", "owner Deployment default/web"),
    ("apps", "statefulsets", "get", "owner StatefulSet default/db"),
    ("apps", "daemonsets", "get", "owner DaemonSet default/agent"),
    ("batch", "jobs", "get", "owner Job default/backup-1"),
    ("batch", "cronjobs", "get", "owner CronJob default/backup"),
]


def verify_role() -> dict:
    return yaml.safe_load((BUILD / "rbac" / "clusterrole-falco-response-verify.yaml").read_text())


def without(role: dict, group: str, resource: str, verb: str) -> dict:
    role = deepcopy_module.deepcopy(role)
    rules = []
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            rest = [r for r in rule["resources"] if r != resource]
            if rest:
                rules.append({**rule, "resources": rest})
            continue
        rules.append(rule)
    role["rules"] = rules
    return role


def test_each_new_verb_of_verify_is_needed(kube):
    """build/rbac grants verify exactly what the bundle reads: with the generated ClusterRole every
    file is read; with one rule taken away (kubectl apply of the edited ClusterRole) the API server
    answers 403 for that read and the bundle says so (and still holds the rest). Kubernetes' RBAC
    authorizer (plugin/pkg/auth/authorizer/rbac/rbac.go RuleAllows) matches pods/log as resource
    "pods", subresource "log" (staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go)."""
    from argparse import Namespace

    from steps import bundle, kube as client

    owners = {}
    for kind, plural, group_version in (("StatefulSet", "statefulsets", "apps/v1"), ("DaemonSet", "daemonsets", "apps/v1"),
                                        ("CronJob", "cronjobs", "batch/v1")):  # fmt: skip
        name = {"StatefulSet": "db", "DaemonSet": "agent", "CronJob": "backup"}[kind]
        owners[kind] = kube.create(plural, {"apiVersion": group_version, "kind": kind,
                                            "metadata": {"name": name, "namespace": "default"}, "spec": {}})
    job = kube.create("jobs", {"metadata": {"name": "backup-1", "namespace": "default", "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup", "uid": owners["CronJob"]["metadata"]["uid"], "controller": True}]},
        "spec": {}})  # fmt: skip
    pods = [add_workload(kube)]
    for pod, kind, name, uid in (("db-0", "StatefulSet", "db", owners["StatefulSet"]["metadata"]["uid"]),
                                 ("agent-x", "DaemonSet", "agent", owners["DaemonSet"]["metadata"]["uid"]),
                                 ("backup-1-abc", "Job", "backup-1", job["metadata"]["uid"])):  # fmt: skip
        pods.append(add_web_pod(kube, pod, labels={"app": pod}, owner={"kind": kind, "name": name, "uid": uid}))
    api = client.ApiClient(client.kubeconfig_config(str(kube.kubeconfig_for(step_token(kube, "verify")))))
    args = Namespace(log_tail_lines=10, log_max_bytes=4096)

    def problems() -> list[str]:
        return [p for pod in pods for p in bundle.collect(api, pod, args).problems]

    assert problems() == []
    role = verify_role()
    for group, resource, verb, what in NEW_RULES:
        kube.apply([without(role, group, resource, verb)])
        found = [p for p in problems() if p.startswith(what)]
        assert found and all(" 403 " in f" {p} " and "forbidden" in p for p in found), (resource, problems())
        assert f'cannot {verb} resource "{resource}"' in found[0], found[0]
    kube.apply([role])
    assert problems() == []


# --- the stand-in's pods/log -----------------------------------------------------------------------


def log_get(kube, pod: str, token: str | None = None, **query: str):
    from steps import kube as client

    config = client.kubeconfig_config(str(kube.kubeconfig if token is None else kube.kubeconfig_for(token)))
    try:
        response = client.ApiClient(config).request("GET", f"/api/v1/namespaces/default/pods/{pod}/log", query=query,
                                                    headers={"Accept": "text/plain"})
        return response.status, response.data
    except client.ApiException as exc:
        return exc.status, json.loads(exc.body)


def test_standin_pods_log_answers_as_the_api_server_and_kubelet_do(kube):
    """pods/log as upstream serves it (kubernetes/kubernetes):
    pkg/registry/core/pod/rest/log.go LogREST.Get (ValidatePodLogOptions -> 422 PodLogOptions),
    pkg/registry/core/pod/strategy.go LogLocation (the 400s naming the containers),
    pkg/kubelet/kubelet_pods.go validateContainerLogStatus ("previous terminated container ... not
    found", relayed as a 400 by apiserver registry/generic/rest/response_checker.go Check),
    pkg/kubelet/kuberuntime/logs/logs.go ReadLogs (tail first, then limitBytes), text/plain."""
    add_web_pod(kube, "two")
    kube.add_pod("default", "one", "node-1", containers=[{"name": "app", "image": "nginx"}])
    kube.write_log("default", "one", "app", "a\nb\nc\n")
    assert log_get(kube, "one") == (200, b"a\nb\nc\n")  # the only container, by default
    assert log_get(kube, "one", tailLines="2") == (200, b"b\nc\n")
    assert log_get(kube, "one", tailLines="2", limitBytes="3") == (200, b"b\nc")
    assert log_get(kube, "one", tailLines="0") == (200, b"")
    status, error = log_get(kube, "two")
    assert (status, error["reason"], error["message"]) == (
        400, "BadRequest", "a container name must be specified for pod two, choose one of: [app sidecar]")
    status, error = log_get(kube, "two", container="nope")
    assert (status, error["message"]) == (400, "container nope is not valid for pod two")
    status, error = log_get(kube, "one", previous="true")
    assert (status, error["reason"], error["message"]) == (
        400, "BadRequest", 'previous terminated container "app" in pod "one" not found')
    status, error = log_get(kube, "one", tailLines="-1")
    assert (status, error["reason"]) == (422, "Invalid")
    assert error["message"] == 'PodLogOptions "one" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0'
    status, error = log_get(kube, "one", limitBytes="0")
    assert status == 422 and "limitBytes: Invalid value: 0: must be greater than 0" in error["message"]
    status, error = log_get(kube, "gone")
    assert (status, error["message"]) == (404, 'pods "gone" not found')
    # a restart: the old instance's output is the previous log, the new one starts empty
    kube.restart_container("default", "one", "app")
    assert log_get(kube, "one", previous="true") == (200, b"a\nb\nc\n")
    assert log_get(kube, "one") == (200, b"")
    # RBAC: the subresource is its own grant; pods get (checkpoint's) is not enough
    status, error = log_get(kube, "one", token=step_token(kube, "checkpoint"))
    assert status == 403 and 'cannot get resource "pods/log" in API group "" in the namespace "default"' in error["message"]
    assert log_get(kube, "one", token=step_token(kube, "verify"))[0] == 200


# --- copy's custody record names the bundle ----------------------------------------------------------


def test_copys_manifest_names_the_bundle_manifest_and_its_hash(tmp_path):
    """build/'s copy task gets verify's bundle-manifest-uri and bundle-sha256 (pipelines/response.py);
    its manifest.json then carries both, so the chain of custody covers the bundle. Without them (the
    bundle failed) `bundle` is null; a reference outside the bucket or a malformed hash is refused in
    one line with nothing uploaded."""
    from tests import test_copy as tc

    node = tmp_path / "node"
    node.mkdir(mode=0o700)
    folder = f"falco-response/default/web-0/app/20240501T095958Z-falco-response-0123456789abcdef/{tc.WORKFLOW_UID}/bundle"
    uri, digest = f"s3://{tc.BUCKET}/{folder}/manifest.json", "ab" * 32
    with S3Server() as server:
        server.create_bucket(tc.BUCKET)
        tc.make_archive(node, 64 * 1024)
        for what, over, message in (
            ("outside", {"bundle-manifest-uri": f"s3://other/{folder}/manifest.json", "bundle-sha256": digest},
             "bundle-manifest-uri: 's3://other/"),
            ("hash", {"bundle-manifest-uri": uri, "bundle-sha256": "xyz"}, "bundle-sha256: 'xyz' is not a SHA-256"),
            ("half", {"bundle-manifest-uri": "", "bundle-sha256": digest}, "give both (verify's evidence bundle) or neither"),
        ):  # fmt: skip
            result = tc.run_copy(server, tc.flags(server, node, tmp_path, **over))
            assert result.returncode == 1, (what, result.stderr)
            tc.one_error_line(result, message)
        assert tc.keys(server, tc.BUCKET) == []
        result = tc.run_copy(server, tc.flags(server, node, tmp_path, **{"bundle-manifest-uri": uri, "bundle-sha256": digest}))
        assert result.returncode == 0, result.stderr
        manifest = json.loads(server.client().get_object(Bucket=tc.BUCKET, Key=tc.MANIFEST)["Body"].read())
        assert manifest["bundle"] == {"manifest_uri": uri, "manifest_sha256": digest}
        tc.make_archive(node, 64 * 1024)
        plain = tc.run_copy(server, tc.flags(server, node, tmp_path, **{"workflow-uid": "99999999-1111-4222-8333-944445555666"}))
        assert plain.returncode == 0, plain.stderr
        key = tc.MANIFEST.replace(tc.WORKFLOW_UID, "99999999-1111-4222-8333-944445555666")
        assert json.loads(server.client().get_object(Bucket=tc.BUCKET, Key=key)["Body"].read())["bundle"] is None


def test_the_report_says_when_the_bundle_was_not_stored(kube, tmp_path):
    """verify's output `bundle` = `failed: <why>` (its Retry node's outputs, as Argo records them)
    reaches the report's Event in one sentence, the response still succeeded; a stored bundle adds
    nothing to the Event (its URI is in verify's outputs and copy's manifest)."""
    from tests import test_report as tr

    add_web_pod(kube)
    failed = "failed: put s3://falco-evidence/x/bundle/events.json: S3 answered 403 AccessDenied: Access Denied"
    node_map = tr.nodes()
    node_map[f"{tr.WF}-1"]["outputs"] = tr.params(**{"container-name": "app", "bundle": failed})
    tr.add_workflow(kube, node_map)
    run = run_step(kube, "report", tr.flags(), tmp_path)
    assert run.rc == 0, run.stderr
    [event] = tr.events(kube)
    assert "response succeeded" in event["message"]
    assert ("Evidence bundle NOT stored (put s3://falco-evidence/x/bundle/events.json: S3 answered 403 AccessDenied: "
            "Access Denied); containment unaffected.") in event["message"]


def test_a_hung_kubelet_delays_the_isolation_by_the_budget_at_most(kube, s3, tmp_path):
    """Isolation waits for the bundle's reads, so they share one budget (--bundle-seconds): with the
    pods/log answers delayed 3 s (the kubelet behind them hangs), verify with a 1 s budget isolates
    the pod in about that second, and the bundle, stored all the same, names the logs it did not read."""
    import time

    add_web_pod(kube, labels={"app": "web"})
    kube.set_latency(3.0, path=r"/log$")
    started = time.monotonic()
    run = run_step(kube, "verify", bundle_flags(s3, **{"bundle-seconds": "1"}), tmp_path, s3_env(s3))
    took = time.monotonic() - started
    kube.set_latency(0, path=r"/log$")
    assert run.rc == 0 and run.outputs["isolation"] == "isolated", run.stderr
    assert run.outputs["bundle"].startswith("stored, partial (2 not read): s3://")
    manifest = json.loads(read(s3, run.outputs["bundle-manifest-uri"].removeprefix(f"s3://{BUCKET}/")))
    assert {p.split(":")[0] for p in manifest["problems"]} == {"logs/app.log", "logs/sidecar.log"}
    assert "pod.json" in [f["name"] for f in manifest["files"]]
    assert took < 6, took  # 1 s of budget (+ the interpreter and the uploads), not 2 x 2 attempts x 3 s


def test_without_the_evidence_secret_verify_still_starts_and_isolates(kube, tmp_path):
    """build/'s verify names the evidence Secret with `optional: true`: a missing Secret would
    otherwise keep its container from starting (the kubelet's CreateContainerConfigError,
    pkg/kubelet/kubelet_pods.go makeEnvironmentVariables: a non-optional secretKeyRef to a missing
    Secret is an error) and so hold the isolation back. The quarantine pipeline, run by the local
    runner from build/ in a cluster without that Secret, isolates and detaches the pod; verify's
    `bundle` output and the report's Event say the bundle was not stored."""
    from standin.argo.workflows import LocalRunner

    template = yaml.safe_load((BUILD / "pipelines" / "workflowtemplate-falco-quarantine.yaml").read_text())
    verify = next(t for t in template["spec"]["templates"] if t["name"] == "verify")
    assert {e["name"]: e["valueFrom"]["secretKeyRef"].get("optional") for e in verify["container"]["env"]} == {
        "AWS_ACCESS_KEY_ID": True, "AWS_SECRET_ACCESS_KEY": True}
    assert kube.get("secrets", "falco-response", "evidence-store-credentials") is None
    add_web_pod(kube, labels={"app": "web"})
    runner = LocalRunner(kube, BUILD, env={"STEP_RETRY_BASE_DELAY": "0.01"}, workdir=tmp_path / "run", backoff_scale=0)
    from tests.test_verify import falco_time

    params = {"namespace": "default", "pod": "web-1", "container-id": hexid("default/web-1/app")[:12], "node": "node-1",
              "rule": "Terminal shell in container", "priority": "Critical", "policy": "interactive-intrusion",
              "alert-time": falco_time()}  # fmt: skip
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "falco-response-nosecret", "namespace": "falco-response"},
          "spec": {"workflowTemplateRef": {"name": "falco-quarantine"},
                   "arguments": {"parameters": [{"name": k, "value": v} for k, v in params.items()]}}}  # fmt: skip
    assert runner.submit(wf)[0]
    result = runner.run("falco-response", "falco-response-nosecret")
    assert result.phase == "Succeeded", result.message
    verify_task = next(t for t in result.tasks if t.name == "verify")
    assert verify_task.outputs["isolation"] == "isolated"
    assert verify_task.outputs["bundle"] == (
        "failed: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the evidence-store credentials Secret)")
    assert kube.get("pods", "default", "web-1")["metadata"]["labels"][QUARANTINED] == "true"
    event = next(e for e in kube.list("events", "default") if e["reason"].startswith("FalcoResponse"))
    assert "Evidence bundle NOT stored (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set" in event["message"]
