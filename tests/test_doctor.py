"""`falco-response doctor`, driven as a user types it (`python -m engine.cli doctor --kubeconfig ...`)
against the stand-in world, one failure mode per test, each asserting its PASS/WARN/FAIL line and remedy.

The world is what README's Deploy steps leave: build/ applied (RBAC enforced by the stand-in API
server and kubelets), the Argo CRDs served (Argo Events' eventsources, sensors and eventbus added as
CRDs: the stand-in serves them only once installed, as a real API server serves a CRD), the EventBus
and EventSource objects, the Secrets and ConfigMaps build/create-secrets.sh makes
(standin.falcosidekick runs the real script), Falcosidekick's Deployment as the chart renders its
envFrom (falcosidekick chart templates/deployment.yaml: the chart's Secret, then
config.existingSecret), the EventSource serving TLS with that certificate and token
(standin.argo.events.webhook, webhook.go), and moto's S3 with an Object Lock bucket.

Nothing in the stand-in runs containers, so the test plays the node's kubelet for the canary pods
(FakeKube.start_pod: volumes, Running; the container's status with a containerd id), and for the
TCP canary marks its container as holding an established connection (FakeKube.set_tcp_connection),
which the stand-in kubelet's CRIU refuses unless the node says tcp-established
(standin/kube/kubelet.py Kubelet._runtime_failure; CRIU criu/sk-inet.c can_dump_inet_sk).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from engine import names
from standin import falcosidekick
from standin.argo.events import sensors as sensorsim
from standin.argo.events.webhook import WebhookEndpoint, WebhookServer, serving_tls
from standin.kube import FakeKube
from standin.kube.manifests import pod_manifest
from standin.kube.stamps import hex64
from standin.s3 import S3Server

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
NS = "falco-response"
TOKEN = "doctor-test-token-0123456789"


class CanaryKubelet:
    """Starts the doctor's canary pods on their node as a kubelet would (the stand-in runs no
    containers): Running with a containerd id; the `tcp` canary's process holds a TCP connection."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube, self.started = kube, set()

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            for pod in self.kube.list("pods", NS):
                meta = pod["metadata"]
                kind = (meta.get("labels") or {}).get(f"{names.DOMAIN}/doctor-canary")
                if not kind or meta["name"] in self.started:
                    continue
                self.started.add(meta["name"])
                self.kube.start_pod(NS, meta["name"])
                containers = [{"name": c["name"], "image": c["image"], "id": hex64()} for c in pod["spec"]["containers"]]
                status = pod_manifest(NS, meta["name"], pod["spec"]["nodeName"], containers, {}, None, "10.244.9.9")["status"]
                self.kube.store.put_status(self.kube.store.types["pods"], NS, meta["name"], status)
                if kind == "tcp":
                    self.kube.set_tcp_connection(NS, meta["name"], "canary")

    def __enter__(self):
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


class World:
    """The stand-in world of a finished install; knobs break one thing each."""

    def __init__(self, tmp: Path, *, tls: str = "cluster-ca", tcp_established: bool = True, argo_events: bool = True,
                 argo_workflows: bool = True, eventsource_token: str | None = TOKEN, object_lock: bool = True,
                 bucket: bool = True) -> None:
        self.tmp = tmp
        self.kube = FakeKube(tmp / "kube").start()
        self.kube.add_namespace("default")
        self.kube.add_node("node-1", tls=tls, tcp_established=tcp_established)
        self.kube.apply_build(BUILD)
        if not argo_workflows:  # the CRDs were never installed: the API server does not serve them
            for plural in ("workflows", "workflowtemplates", "workflowtaskresults"):
                self.kube.store.types.pop(plural)
        if argo_events:
            for plural, kind in (("eventsources", "EventSource"), ("sensors", "Sensor"), ("eventbus", "EventBus")):
                self.kube.add_resource_type("argoproj.io", "v1alpha1", plural, kind)
            self.kube.apply([{"apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
                              "metadata": {"name": "default", "namespace": "argo-events"},
                              "spec": {"jetstream": {"version": "latest"}}}])
            self.kube.apply([d for p in sorted((BUILD / "eventsources").glob("eventsource-*.yaml"))
                             for d in yaml.safe_load_all(p.read_text()) if d])
        self.kube.apply([self.deployment("argo", "argo-workflows-workflow-controller", "quay.io/argoproj/workflow-controller:v3.6.5"),
                         self.deployment("argo-events", "argo-events-controller-manager", "quay.io/argoproj/argo-events:v1.9.6")])
        # build/create-secrets.sh, run for real against a stand-in kubectl, then applied
        self.output = falcosidekick.from_build(BUILD, TOKEN, tmp / "sidekick")
        self.kube.apply(self.output.objects)
        self.kube.apply(self.falcosidekick_install())
        self.webhook = None
        if eventsource_token is not False:
            spec = sensorsim.load_eventsource(BUILD)
            tls_files = serving_tls(BUILD, self.output.objects)
            self.webhook = WebhookServer(WebhookEndpoint(spec, eventsource_token), tls=tls_files).start()
        self.s3 = S3Server().start()
        if bucket:
            self.s3.create_bucket("falco-evidence", object_lock=object_lock)
            if object_lock:
                self.s3.client().put_object_lock_configuration(
                    Bucket="falco-evidence", ObjectLockConfiguration={
                        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        creds = self.s3.credentials
        self.kube.apply([{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                          "metadata": {"name": "evidence-store-credentials", "namespace": NS},
                          "data": {k: base64.b64encode(creds[k].encode()).decode() for k in names.EVIDENCE_SECRET_ENV}}])
        self.kubelet = CanaryKubelet(self.kube)

    @staticmethod
    def deployment(namespace: str, name: str, image: str, labels: dict | None = None, pod_spec: dict | None = None) -> dict:
        labels = labels or {"app.kubernetes.io/name": name}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": pod_spec or {"containers": [{"name": "main", "image": image}]}}}}

    def falcosidekick_install(self) -> list[dict]:
        """`helm upgrade --install falco ... -f build/falcosidekick-values.yaml`: the chart's Secret
        (templates/secrets.yaml WEBHOOK_* keys) and a Deployment loading it, then config.existingSecret."""
        values = yaml.safe_load((BUILD / "falcosidekick-values.yaml").read_text())
        env = falcosidekick.chart_secret_env(falcosidekick.subchart_values(values))
        chart_secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": "falco-falcosidekick", "namespace": "falco"},
                        "data": {k: base64.b64encode(v.encode()).decode() for k, v in env.items()}}
        sidekick = values["falcosidekick"]
        pod_spec = {"containers": [{"name": "falcosidekick", "image": "falcosecurity/falcosidekick:2.31.1",
                                    "envFrom": [{"secretRef": {"name": "falco-falcosidekick"}},
                                                {"secretRef": {"name": sidekick["config"]["existingSecret"]}}],
                                    "volumeMounts": sidekick["extraVolumeMounts"]}],
                    "volumes": sidekick["extraVolumes"]}
        labels = {"app.kubernetes.io/name": "falcosidekick", "app.kubernetes.io/instance": "falco"}
        return [chart_secret, self.deployment("falco", "falco-falcosidekick", "", labels, pod_spec)]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "KUBERNETES_SERVICE_HOST"}
        env.update(AWS_ENDPOINT_URL=self.s3.url, STEP_RETRY_BASE_DELAY="0.01",
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
        return env

    def doctor(self, *extra: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "engine.cli", "doctor", "--kubeconfig", str(kubeconfig or self.kube.kubeconfig),
                "--canary-timeout", "10"]
        if self.webhook is not None:
            argv += ["--eventsource-url", f"https://127.0.0.1:{self.webhook.address[1]}/falco"]
        with self.kubelet:
            return subprocess.run(argv + list(extra), cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120)

    def close(self) -> None:
        if self.webhook:
            self.webhook.stop()
        self.s3.stop()
        self.kube.stop()


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    """One ready world for the module (about 3 s to build); each test breaks one thing and puts it back."""
    w = World(tmp_path_factory.mktemp("doctor"))
    yield w
    w.close()


def policy_file(tmp_path: Path, **evidence) -> Path:
    """response.yaml with evidence settings changed (the doctor checks against the policy file)."""
    policy = yaml.safe_load((ROOT / "response.yaml").read_text())
    policy["settings"]["evidence"].update(evidence)
    path = tmp_path / "response.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def line(result: subprocess.CompletedProcess, check: str) -> tuple[str, str, str]:
    """(status, detail, remedy) of one check in the table."""
    lines = result.stdout.splitlines()
    for i, text in enumerate(lines):
        parts = text.split(None, 2)
        if len(parts) >= 2 and parts[1] == check and parts[0] in ("PASS", "WARN", "FAIL"):
            remedy = ""
            if i + 1 < len(lines) and lines[i + 1].strip().startswith("remedy: "):
                remedy = lines[i + 1].strip().removeprefix("remedy: ")
            return parts[0], parts[2] if len(parts) > 2 else "", remedy
    raise AssertionError(f"no check {check} in:\n{result.stdout}\n{result.stderr}")


def exec_kubeconfig(w: World, tmp_path: Path) -> Path:
    """A YAML kubeconfig whose user is an exec plugin, as EKS, GKE and AKS write them
    (client.authentication.k8s.io/v1 ExecCredential on stdout; KUBERNETES_EXEC_INFO set by the client)."""
    script = ("import json,os; assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'; "
              "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential', "
              "'status': {'token': os.environ['SSO_TOKEN']}}))")
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sso",
        "clusters": [{"name": "standin", "cluster": {"server": w.kube.url}}],
        "contexts": [{"name": "sso", "context": {"cluster": "standin", "user": "sso"}}],
        "users": [{"name": "sso", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": ["-c", script],
            "env": [{"name": "SSO_TOKEN", "value": w.kube.token}], "interactiveMode": "Never"}}}],
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    return path


def test_all_pass_on_a_ready_cluster(ready, tmp_path):
    """Everything README's Deploy steps set up, on a node whose CRIU has tcp-established: no FAIL,
    exit 0; both canaries checkpointed as falco-response-checkpoint (a TokenRequest, the identity the
    pipelines use), the archives left in the node's checkpoint directory, the canary pods deleted.
    The kubeconfig is YAML with an exec plugin, as managed clusters write it."""
    w = ready
    before = set(w.kube.checkpoint_dir("node-1").glob("checkpoint-falco-doctor-*.tar"))
    result = w.doctor(kubeconfig=exec_kubeconfig(w, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in [l.split(None, 1)[0] for l in result.stdout.splitlines() if l.strip()]
    for check in ("cluster/api-server", "argo/argo-workflows", "argo/argo-events", "argo/eventbus",
                  "eventsource/without-token", "eventsource/with-token", "falcosidekick/token", "falcosidekick/ca",
                  "falcosidekick/deployment", "node/node-1/kubelet", "node/node-1/rbac", "node/node-1/checkpoint-plain",
                  "node/node-1/checkpoint-tcp", "evidence/reachable", "evidence/object-lock", "evidence/test-object"):
        assert line(result, check)[0] == "PASS", (check, result.stdout)
    assert "v3.6.5" in line(result, "argo/argo-workflows")[1]
    assert "401 Invalid Authorization Header" in line(result, "eventsource/without-token")[1]
    assert "200 success" in line(result, "eventsource/with-token")[1]
    assert 'RBAC: allowed by ClusterRoleBinding "falco-response-checkpoint"' in line(result, "node/node-1/rbac")[1]
    detail = line(result, "node/node-1/checkpoint-tcp")[1]
    assert "stays on node-1: /var/lib/kubelet/checkpoints/checkpoint-falco-doctor-tcp-node-1-" in detail
    made = set(w.kube.checkpoint_dir("node-1").glob("checkpoint-falco-doctor-*.tar")) - before
    assert len(made) == 2 and any(f"/{p.name} " in detail for p in made)
    assert not [p for p in w.kube.list("pods", NS) if p["metadata"]["name"].startswith("falco-doctor-")]
    assert "left in place (AccessDenied" in line(result, "evidence/test-object")[1]  # the bucket's default retention
    assert w.webhook.events and all(json.loads(e)["body"]["rule"] == "falco-response doctor canary" for e in w.webhook.events)
    # --json: the same checks, machine-readable
    as_json = json.loads(w.doctor("--json", "--no-canary").stdout)
    assert {c["status"] for c in as_json["checks"]} <= {"PASS", "WARN"}
    assert as_json["summary"]["fail"] == 0
    assert next(c for c in as_json["checks"] if c["name"] == "checkpoint")["status"] == "WARN"  # --no-canary


def test_the_canary_alert_matches_no_policy():
    """The alert the doctor posts with the token reaches the Sensors and starts nothing: the event
    the EventSource publishes for it, evaluated with simulate's Argo Events semantics over
    build/sensors, fires no Sensor (it carries no pod fields: the filter admits pod alerts only)."""
    from engine import doctor, simulate

    webhook, sensors = simulate.load_build(BUILD)
    published = WebhookEndpoint(webhook, TOKEN).handle(
        "POST", webhook.endpoint, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        doctor.canary_alert())
    assert published.status == 200
    decision = simulate.decide(published.event_data, sensors, webhook)
    assert not decision.matched and decision.policy is None, decision.reason


def replaced_eventsource(w: World, spec, token):
    """Serve the EventSource differently for one doctor run (the same TLS certificate)."""
    import contextlib

    @contextlib.contextmanager
    def swap():
        original = w.webhook
        w.webhook = WebhookServer(WebhookEndpoint(spec, token), tls=serving_tls(BUILD, w.output.objects)).start()
        try:
            yield
        finally:
            w.webhook.stop()
            w.webhook = original

    return swap()


def added_node(w: World, name: str, **kwargs):
    """A node for one run (`--node` picks it), gone from the API afterwards."""
    import contextlib

    @contextlib.contextmanager
    def node():
        w.kube.add_node(name, **kwargs)
        try:
            yield name
        finally:
            w.kube.delete("nodes", None, name)
            if w.kube._nodes[name].server:
                w.kube._nodes[name].server.halt()

    return node()


# Each doctor run costs a few seconds (the CLI's start-up), so independent failures share a run: one
# module fixture per run breaks several unrelated things, puts them back, and each test reads its line.


@pytest.fixture(scope="module")
def broken_nodes(ready, tmp_path_factory):
    """One run with: the EventSource serving another token; a node whose kubelet is down; a
    kubeadm-style self-signed kubelet; node-1's CRIU without tcp-established; a bucket without
    Object Lock (response.yaml asking for none)."""
    w = ready
    ready.s3.create_bucket("falco-evidence-unlocked")
    policy = policy_file(tmp_path_factory.mktemp("nodes"), bucket="falco-evidence-unlocked")
    w.kube.set_criu_tcp_established("node-1", False)
    try:
        with replaced_eventsource(w, sensorsim.load_eventsource(BUILD), "another-token"), \
                added_node(w, "node-down") as down, added_node(w, "node-kubeadm", tls="self-signed") as kubeadm:
            w.kube._nodes[down].server.halt()  # the kubelet is gone: its port refuses
            w.kube._nodes[down].server = None
            result = w.doctor("--policy-file", str(policy), "--node", "node-1", "--node", down, "--node", kubeadm)
    finally:
        w.kube.set_criu_tcp_established("node-1", True)
    assert result.returncode == 1, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def broken_install(ready, tmp_path_factory):
    """One run with: no Argo CRDs served; an EventSource without authSecret; the checkpoint
    identity's ClusterRoleBinding removed; the evidence store unreachable."""
    import dataclasses
    import socket

    w = ready
    types = w.kube.store.types
    gone = {p: types.pop(p) for p in ("workflows", "workflowtemplates", "workflowtaskresults", "eventsources", "sensors", "eventbus")}
    binding = w.kube.get("clusterrolebindings", None, "falco-response-checkpoint")
    w.kube.delete("clusterrolebindings", None, "falco-response-checkpoint")
    with socket.socket() as probe:  # a free port, closed again: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = policy_file(tmp_path_factory.mktemp("install"), endpoint=f"http://127.0.0.1:{port}")
    open_spec = dataclasses.replace(sensorsim.load_eventsource(BUILD), auth_secret=None)
    try:
        with replaced_eventsource(w, open_spec, None):
            result = w.doctor("--policy-file", str(policy))
    finally:
        types.update(gone)
        w.kube.apply([{k: v for k, v in binding.items() if k != "status"}])
    assert result.returncode == 1, result.stdout + result.stderr
    return result


def test_no_argo_crds(broken_install):
    """Neither Argo installed: the argoproj.io resources are not served (a real API server serves a
    custom resource only while its CRD exists); FAIL with the helm command of README step 1."""
    status, detail, remedy = line(broken_install, "argo/argo-workflows")
    assert status == "FAIL" and "workflows.argoproj.io, workflowtemplates.argoproj.io" in detail
    assert remedy.startswith("helm upgrade --install argo-workflows argo/argo-workflows")
    status, detail, remedy = line(broken_install, "argo/argo-events")
    assert status == "FAIL" and "eventsources.argoproj.io, sensors.argoproj.io, eventbus.argoproj.io" in detail
    assert remedy.startswith("helm upgrade --install argo-events argo/argo-events")


def test_eventsource_without_auth_accepts_anyone(broken_install):
    """An EventSource without authSecret (webhook.go: no token check at all) accepts an alert
    without a token: FAIL, anyone reaching the Service submits alerts."""
    status, detail, remedy = line(broken_install, "eventsource/without-token")
    assert status == "FAIL" and "without a token answered 200" in detail
    assert "authSecret" in remedy and "kubectl apply -k build/" in remedy


def test_eventsource_with_another_token_refuses_ours(broken_nodes):
    """The EventSource serves with a token other than the one in its Secret (rotated without a
    restart, say): it still refuses a POST without a token, and the canary alert with the Secret's
    token gets 401 Invalid Auth token: FAIL."""
    assert line(broken_nodes, "eventsource/without-token")[0] == "PASS"
    status, detail, remedy = line(broken_nodes, "eventsource/with-token")
    assert status == "FAIL" and "401 Invalid Auth token" in detail
    assert "create-secrets.sh" in remedy and "restart the EventSource" in remedy


def test_kubelet_unreachable(broken_nodes):
    """The kubelet does not answer (stopped: its port refuses): FAIL naming the address, remedy
    about the network path; no canary is tried there."""
    status, detail, remedy = line(broken_nodes, "node/node-down/kubelet")
    assert status == "FAIL" and "unreachable" in detail and "127.0.0.1:" in detail
    assert "reach TCP" in remedy
    assert line(broken_nodes, "node/node-down/checkpoint")[0] == "FAIL"


def test_self_signed_kubelet_in_cluster_ca_mode(broken_nodes):
    """A kubeadm-style self-signed kubelet while checkpoint.kubelet_tls verifies with the cluster CA:
    FAIL with the checkpoint step's own TLS message and its fix (steps/checkpoint.py tls_failure);
    the canaries are not tried there."""
    status, detail, remedy = line(broken_nodes, "node/node-kubeadm/kubelet")
    assert status == "FAIL" and "self-signed kubelet" in detail and "ConfigMap kube-root-ca.crt" in detail
    assert remedy.startswith("serverTLSBootstrap: true and approved kubelet-serving CSRs")
    assert line(broken_nodes, "node/node-kubeadm/checkpoint")[0] == "FAIL"


def test_nodes_checkpoint_not_allowed(broken_install):
    """The checkpoint identity's ClusterRoleBinding removed: the SubjectAccessReview answers
    allowed false (standin/kube/sar.py, as pkg/registry/authorization/subjectaccessreview/rest.go);
    no canary is tried."""
    status, detail, remedy = line(broken_install, "node/node-1/rbac")
    assert status == "FAIL"
    assert "system:serviceaccount:falco-response:falco-response-checkpoint may not nodes/checkpoint create" in detail
    assert "ClusterRoleBinding falco-response-checkpoint" in remedy
    assert line(broken_install, "node/node-1/checkpoint")[0] == "FAIL"


def test_criu_refuses_the_tcp_canary(ready, broken_nodes):
    """A node whose CRIU lacks tcp-established: the plain canary passes, the one holding a TCP
    connection fails with the checkpoint step's CRIU line and the node fix; both pods deleted."""
    assert line(broken_nodes, "node/node-1/checkpoint-plain")[0] == "PASS"
    status, detail, remedy = line(broken_nodes, "node/node-1/checkpoint-tcp")
    assert status == "FAIL" and "CRIU on node-1" in detail
    assert "tcp-established" in remedy and "/etc/criu/runc.conf" in remedy
    assert not [p for p in ready.kube.list("pods", NS) if p["metadata"]["name"].startswith("falco-doctor-")]


def test_bucket_without_object_lock(broken_nodes):
    """A bucket without Object Lock while response.yaml asks for none: WARN (evidence can be
    overwritten), the test object written, read back and deleted (nothing holds it)."""
    status, detail, remedy = line(broken_nodes, "evidence/object-lock")
    assert status == "WARN" and "Object Lock not enabled" in detail and "versioning Enabled" in detail
    assert "enable Object Lock on falco-evidence-unlocked" in remedy and "evidence.object_lock" in remedy
    status, detail, _ = line(broken_nodes, "evidence/test-object")
    assert status == "PASS" and "; deleted" in detail


def test_bucket_unreachable(broken_install):
    """The evidence store does not answer (nothing listens at evidence.endpoint): FAIL on
    reachability, nothing else tried there."""
    status, detail, remedy = line(broken_install, "evidence/reachable")
    assert status == "FAIL" and "s3://falco-evidence at http://127.0.0.1:" in detail
    assert "evidence.endpoint" in remedy
    assert "evidence/test-object" not in broken_install.stdout


def test_object_lock_asked_for_but_missing(ready, tmp_path):
    """evidence.object_lock set but the bucket has no Object Lock: every copy would fail: FAIL."""
    ready.s3.create_bucket("falco-evidence-unlocked-2")
    path = policy_file(tmp_path, bucket="falco-evidence-unlocked-2", object_lock={"mode": "GOVERNANCE", "days": 30})
    result = ready.doctor("--no-canary", "--policy-file", str(path))
    assert result.returncode == 1
    status, detail, remedy = line(result, "evidence/object-lock")
    assert status == "FAIL" and "asks for GOVERNANCE" in detail
    assert "put-object-lock-configuration" in remedy


def test_bad_input_is_one_line_and_checks_nothing(ready, tmp_path):
    missing = tmp_path / "nope"
    result = subprocess.run([sys.executable, "-m", "engine.cli", "doctor", "--kubeconfig", str(missing)],
                            cwd=ROOT, env=ready.env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"error: cannot read kubeconfig {missing}: No such file or directory"


def test_the_falco_doctor_workflowtemplate_runs_the_checks_in_the_cluster(ready, tmp_path):
    """build/pipelines/workflowtemplate-falco-doctor.yaml run as Argo runs it (standin.argo.workflows:
    the pod built as workflowpod.go builds it, its ServiceAccount's token, RBAC enforced): the checks
    pass with the doctor's own least-privilege RBAC (build/rbac: nodes get/list, SubjectAccessReviews,
    canary pods and the checkpoint identity's token in falco-response, the EventBus and EventSource by
    name), the canaries are checkpointed as falco-response-checkpoint, what only an administrator may
    read is a WARN pointing to the CLI, the table is in the log and the output parameter `report`."""
    from standin.argo.workflows import LocalRunner

    runner = LocalRunner(ready.kube, BUILD, env={"AWS_ENDPOINT_URL": ready.s3.url, "STEP_RETRY_BASE_DELAY": "0.01"},
                         workdir=tmp_path / "run", backoff_scale=0)
    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": "falco-doctor-run", "namespace": NS},
                "spec": {"workflowTemplateRef": {"name": "falco-doctor"}}}
    assert runner.submit(workflow)[0]
    # a canary an earlier, killed doctor left behind: the exit handler removes it
    ready.kube.add_pod(NS, "falco-doctor-plain-left-behind", "node-1", labels={f"{names.DOMAIN}/doctor-canary": "plain"})
    with ready.kubelet:
        result = runner.run(NS, "falco-doctor-run")
    task = next(t for t in result.tasks if t.name == "doctor")
    logs = task.attempts[-1].logs
    assert result.phase == "Succeeded", (result.message, logs)
    report = task.outputs["report"]
    assert report.strip() in logs
    for check in ("node/node-1/kubelet", "node/node-1/rbac", "node/node-1/checkpoint-plain", "node/node-1/checkpoint-tcp",
                  "argo/eventbus", "argo/eventsource-object", "evidence/test-object"):
        assert f"PASS  {check}" in report, (check, report)
    assert "version not readable (403 deployments in argo)" in report  # no read of other namespaces' Deployments
    assert "WARN  eventsource/webhook" in report and "WARN  falcosidekick/config" in report
    assert result.exit_handler is not None and result.exit_handler.phase == "Succeeded"
    assert "cleanup: 1 canary pod(s) deleted in falco-response" in result.exit_handler.attempts[-1].logs
    assert ready.kube.get("pods", NS, "falco-doctor-plain-left-behind") is None


def test_the_doctor_account_holds_exactly_what_its_checks_call():
    """build/rbac: the doctor's grants, nothing cluster-wide but nodes and SubjectAccessReviews; the
    checkpoint identity's token by name only; no Secret anywhere."""
    docs = [d for p in sorted((BUILD / "rbac").glob("*doctor*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    roles = {(d["kind"], d["metadata"].get("namespace")): d["rules"] for d in docs if d["kind"] in ("Role", "ClusterRole")}
    assert roles[("ClusterRole", None)] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    own = roles[("Role", NS)]
    assert {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"],
            "resourceNames": ["falco-response-checkpoint"]} in own
    assert not any("secrets" in r["resources"] for rules in roles.values() for r in rules)
    assert all(r.get("resourceNames") for r in roles[("Role", "argo-events")])


def test_standin_subjectaccessreview_and_tokenrequest_follow_the_api(kube):
    """The stand-in's SubjectAccessReview (pkg/registry/authorization/subjectaccessreview/rest.go,
    pkg/apis/authorization/validation ValidateSubjectAccessReview) and TokenRequest
    (pkg/registry/core/serviceaccount/storage/token.go): who may ask, what is invalid, the answer."""
    import urllib3

    http = urllib3.PoolManager()

    def post(path: str, body: dict, token: str) -> tuple[int, dict]:
        r = http.request("POST", kube.url + path, body=json.dumps(body).encode(),
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        return r.status, json.loads(r.data)

    sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    user = "system:serviceaccount:falco-response:falco-response-checkpoint"
    groups = ["system:serviceaccounts", "system:serviceaccounts:falco-response", "system:authenticated"]
    attrs = {"verb": "create", "resource": "nodes", "subresource": "checkpoint", "name": "node-1"}
    status, body = post(sar, {"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                              "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}}, kube.token)
    assert status == 201 and body["status"]["allowed"] is True
    status, body = post(sar, {"spec": {"user": user, "groups": groups,
                                       "resourceAttributes": {**attrs, "subresource": "proxy"}}}, kube.token)
    assert status == 201 and body["status"] == {"allowed": False}
    status, body = post(sar, {"spec": {"resourceAttributes": attrs}}, kube.token)
    assert status == 422 and "spec.user: Invalid value" in body["message"] and "at least one of user or group" in body["message"]
    verify = kube.service_account_token(NS, "falco-response-verify")
    status, body = post(sar, {"spec": {"user": user, "resourceAttributes": attrs}}, verify)
    assert status == 403 and 'cannot create resource "subjectaccessreviews"' in body["message"]

    token_path = f"/api/v1/namespaces/{NS}/serviceaccounts/falco-response-checkpoint/token"
    status, body = post(token_path, {"spec": {"expirationSeconds": 60}}, kube.token)
    assert status == 422 and "may not specify a duration less than 10 minutes" in body["message"]
    status, body = post(token_path, {"spec": {}}, verify)
    assert status == 403
    status, body = post(token_path, {"spec": {"expirationSeconds": 600}}, kube.token)
    assert status == 201 and kube.identity(body["status"]["token"]).name == user
