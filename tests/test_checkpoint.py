"""checkpoint step, through `python -m steps.checkpoint` against the stand-in API and kubelets.

The stand-in kubelets serve TLS as real ones do (standin.kube.pki): node-1 of the `kube` fixture
uses serverTLSBootstrap (a certificate from the cluster CA, the one in ConfigMap kube-root-ca.crt,
naming the node's hostname and addresses); a `self-signed` node has its own throwaway CA and names
only its hostname, as kubeadm's default kubelet does. The kubelet answers 404 with the gate off and
500 when the runtime cannot checkpoint, like the real one. The full pipeline (checkpoint, then copy
on the same node directory) is in test_copy.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import certifi
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = "/checkpoint/default/web/app"
PROXY = "/api/v1/nodes/node-1/proxy/checkpoint/default/web/app"


@pytest.fixture
def pod(kube):
    kube.add_pod("default", "web", "node-1", containers=[{"name": "app", "image": "nginx:1.27"}])
    return kube


@pytest.fixture
def proxy_rbac(kube):
    """The RBAC `make build` generates with `checkpoint.path: apiserver-proxy` (nodes/proxy create
    instead of nodes/checkpoint), applied over build/'s: what a cluster built that way enforces."""
    from engine import config, rbac

    settings = config.load(ROOT / "response.yaml").settings
    settings = settings.model_copy(
        update={"checkpoint": settings.checkpoint.model_copy(update={"path": "apiserver-proxy"})}
    )
    kube.apply([o for o in rbac.roles(settings) if o["metadata"]["name"] == "falco-response-checkpoint"])
    return kube


def identity(kube, namespace: str = "default", pod: str = "web", container: str = "app") -> dict[str, str]:
    """What verify outputs for the pod as it is now: its UID and the container's full id."""
    found = kube.get("pods", namespace, pod)
    if found is None:
        return {"pod_uid": "00000000-0000-4000-8000-000000000000", "container_id": "0" * 64}
    status = next(s for s in found["status"]["containerStatuses"] if s["name"] == container)
    return {"pod_uid": found["metadata"]["uid"], "container_id": status["containerID"].partition("://")[2]}


def run(kube, env: dict, outputs: Path, **flags: str) -> subprocess.CompletedProcess:
    """`python -m steps.checkpoint` for default/web/app with the identity verify saw (unless given)."""
    args = {"namespace": "default", "pod": "web", "container": "app", "node": "node-1", "timeout": "30",
            **identity(kube), **flags}  # fmt: skip
    argv = [sys.executable, "-m", "steps.checkpoint", *(f"--{k.replace('_', '-')}={v}" for k, v in args.items())]
    argv.append(f"--outputs-dir={outputs}")
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def outputs(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()} if directory.exists() else {}


def posts(kube, path: str) -> list[int]:
    return [status for method, p, status in kube.requests if method == "POST" and p == path]


def root_ca(kube, tmp_path: Path) -> Path:
    """The file the step's pod sees: ConfigMap kube-root-ca.crt, key ca.crt, of its namespace."""
    path = tmp_path / "kube-root-ca.crt"
    path.write_text(kube.get("configmaps", "falco-response", "kube-root-ca.crt")["data"]["ca.crt"])
    return path


def assert_one_error_line(result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_direct_with_ca_bundle(pod, step_env, tmp_path):
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 0, result.stderr
    out = outputs(tmp_path / "out")
    assert set(out) == {"archive", "checkpoint-time"}
    assert out["archive"].startswith("/var/lib/kubelet/checkpoints/checkpoint-web_default-app-")
    name = out["archive"].rsplit("/", 1)[1]
    assert (pod.checkpoint_dir("node-1") / name).is_file()
    assert out["checkpoint-time"].endswith("Z") and out["checkpoint-time"][:4].isdigit()
    assert posts(pod, CHECKPOINT) == [200]
    assert ("GET", "/api/v1/nodes/node-1", 200) in pod.requests
    assert "warning" not in result.stdout


def test_insecure_skip_verify_works_and_warns(pod, step_env, tmp_path):
    result = run(pod, step_env(), tmp_path / "out", insecure_skip_tls_verify="true")
    assert result.returncode == 0, result.stderr
    assert "NOT verifying the kubelet's certificate" in result.stdout
    assert posts(pod, CHECKPOINT) == [200]
    assert result.stderr == ""  # no urllib3 InsecureRequestWarning noise


def test_tls_failure_without_the_kubelet_ca(pod, step_env, tmp_path):
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=certifi.where())
    assert result.returncode == 1
    assert_one_error_line(
        result, "TLS to the kubelet of node-1 at 127.0.0.1:", "unable to get local issuer certificate",
        f"verified: the node name, CA {certifi.where()}", "kubelet_tls.ca_bundle_configmap",
    )
    assert posts(pod, CHECKPOINT) == []  # the handshake failed before any request
    assert list(pod.checkpoint_dir("node-1").iterdir()) == []
    assert outputs(tmp_path / "out") == {}


# --- kubelet TLS as real clusters serve it ---------------------------------------------------


def test_default_trusts_a_bootstrapped_kubelet_with_kube_root_ca(pod, step_env, tmp_path):
    """What the default settings do on EKS, GKE or kubeadm with serverTLSBootstrap: the bundle is
    ConfigMap kube-root-ca.crt (rootcacertpublisher/publisher.go puts the cluster CA in every
    namespace), which signed the kubelet's kubernetes.io/kubelet-serving certificate."""
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(root_ca(pod, tmp_path)), ca_configmap="kube-root-ca.crt")
    assert result.returncode == 0, result.stderr
    assert "(direct to the kubelet, InternalIP address, verifying the name node-1)" in result.stdout
    assert posts(pod, CHECKPOINT) == [200]


def test_self_signed_kubelet_is_verified_by_node_name_not_by_ip(kube, step_env, tmp_path):
    """A kubelet without serverTLSBootstrap (cmd/kubelet/app/server.go InitializeTLS ->
    client-go util/cert GenerateSelfSignedCertKey(hostname, nil, nil)) names only its hostname:
    with its CA in the bundle, the connection to its InternalIP verifies only against the node's
    name. Today's step verified the IP and failed with an IP address mismatch."""
    kube.add_node("node-2", tls="self-signed")
    kube.add_pod("default", "web", "node-2", containers=[{"name": "app", "image": "nginx:1.27"}])
    result = run(kube, step_env(), tmp_path / "out", node="node-2", ca_bundle=str(kube.node_ca("node-2")))
    assert result.returncode == 0, result.stderr
    assert posts(kube, CHECKPOINT) == [200]
    assert (kube.checkpoint_dir("node-2") / outputs(tmp_path / "out")["archive"].rsplit("/", 1)[1]).is_file()


def test_self_signed_kubelet_with_the_default_ca_fails_in_one_line_with_the_fix(kube, step_env, tmp_path):
    """kubeadm's default kubelet serves its certificate and its own CA (kubelet.crt holds both), so
    OpenSSL says "self-signed certificate in certificate chain" against kube-root-ca.crt. The one
    line says what was tried (address, name, CA source) and which settings fix it."""
    kube.add_node("node-2", tls="self-signed")
    kube.add_pod("default", "web", "node-2", containers=[{"name": "app", "image": "nginx:1.27"}])
    result = run(
        kube, step_env(), tmp_path / "out", node="node-2", ca_bundle=str(root_ca(kube, tmp_path)),
        ca_configmap="kube-root-ca.crt",
    )  # fmt: skip
    assert result.returncode == 1  # final: a retry would not change the certificate
    assert_one_error_line(
        result,
        "TLS to the kubelet of node-2 at 127.0.0.1:",
        "self-signed certificate in certificate chain",
        "verified: the node name, CA ConfigMap kube-root-ca.crt",
        "a self-signed kubelet; fix: serverTLSBootstrap: true and approved kubelet-serving CSRs",
        "kubelet_tls.ca_bundle_configmap with the kubelets' CAs",
        "kubelet_tls.insecure_skip_verify: true",
    )
    assert posts(kube, CHECKPOINT) == [] and list(kube.checkpoint_dir("node-2").iterdir()) == []


def test_address_types_pick_the_address_in_order(pod, step_env, tmp_path):
    """Like metrics-server's --kubelet-preferred-address-types: the first type the node reports
    (node-1 has InternalIP and Hostname, no ExternalIP); none of them is a one-line error."""
    ok = run(pod, step_env(), tmp_path / "a", ca_bundle=str(pod.kubelet_ca), address_types="ExternalIP,InternalIP")
    assert ok.returncode == 0, ok.stderr
    assert "InternalIP address" in ok.stdout
    none = run(pod, step_env(), tmp_path / "b", ca_bundle=str(pod.kubelet_ca), address_types="ExternalIP,ExternalDNS")
    assert none.returncode == 1
    assert_one_error_line(
        none, "node node-1 reports no usable address of types ExternalIP, ExternalDNS (it has: Hostname, InternalIP)",
        "checkpoint.kubelet_tls.address_types",
    )
    assert posts(pod, CHECKPOINT) == [200]


# --- CRIU and established TCP connections ----------------------------------------------------


def test_reverse_shell_is_refused_by_criu_and_explained_with_the_node_fix(kube, step_env, tmp_path):
    """A container holding an established TCP connection on a node whose /etc/criu/runc.conf has no
    `tcp-established`: CRIU refuses (criu/sk-inet.c can_dump_inet_sk), containerd 2.x answers
    `criu failed: type DUMP errno 0 path= <bundle>/criu-dump.log` (cmd/containerd-shim-runc-v2/
    process/init.go), the kubelet 500 (pkg/kubelet/server/server.go). One attempt, one line."""
    kube.add_pod("default", "web", "node-1", containers=[{"name": "app", "image": "alpine:3.20", "tcp_established": True}])
    result = run(kube, step_env(), tmp_path / "out", ca_bundle=str(kube.kubelet_ca))
    assert result.returncode == 1  # not 75: retrying freezes the container again for the same refusal
    cid = kube.get("pods", "default", "web")["status"]["containerStatuses"][0]["containerID"].partition("://")[2]
    assert_one_error_line(
        result,
        "CRIU on node-1 could not checkpoint default/web/app (criu failed: type DUMP errno 0)",
        '"Connected TCP socket"',
        "add a line `tcp-established` to /etc/criu/runc.conf on the node",
        f"log: /run/containerd/io.containerd.runtime.v2.task/k8s.io/{cid}/criu-dump.log on the node",
    )
    assert posts(kube, CHECKPOINT) == [500]
    assert list(kube.checkpoint_dir("node-1").iterdir()) == [] and outputs(tmp_path / "out") == {}


def test_reverse_shell_is_dumped_where_criu_allows_tcp_established(kube, step_env, tmp_path):
    """runc passes /etc/criu/runc.conf to CRIU (libcontainer/criu_linux.go
    handleCriuConfigurationFile): with `tcp-established` there the connection is dumped."""
    kube.add_node("node-2", tcp_established=True)
    kube.add_pod("default", "web", "node-2", containers=[{"name": "app", "image": "alpine:3.20", "tcp_established": True}])
    result = run(kube, step_env(), tmp_path / "out", node="node-2", ca_bundle=str(kube.kubelet_ca))
    assert result.returncode == 0, result.stderr
    assert posts(kube, CHECKPOINT) == [200]


def test_reverse_shell_on_crio_is_explained_from_criu_s_own_reason(kube, step_env, tmp_path):
    """The same refusal on a CRI-O 1.31 node with runc >= 1.2: CRI-O puts runc's whole stderr into
    its error (internal/oci/runtime_oci.go runtimeCmd, CheckpointContainer; internal/lib/
    checkpoint.go ContainerCheckpoint "failed to checkpoint container %s: %w"), and runc quotes
    dump.log's Error lines there (libcontainer/criu_linux.go logCriuErrors), so the kubelet's 500
    carries CRIU's "Connected TCP socket" line (standin.kube.kubelet.crio_criu_tcp_refusal). The
    step names the cause, not a log to read, and the node fix. One attempt, one line."""
    kube.add_node("node-2", runtime="cri-o")
    kube.add_pod("default", "web", "node-2", containers=[{"name": "app", "image": "alpine:3.20", "tcp_established": True}])
    result = run(kube, step_env(), tmp_path / "out", node="node-2", ca_bundle=str(kube.kubelet_ca))
    assert result.returncode == 1  # not 75: final
    assert result.stderr.strip() == (
        "error: CRIU on node-2 refused to checkpoint default/web/app: a process in it holds an established TCP "
        'connection (CRIU: "Connected TCP socket"; a reverse shell?); fix: add a line `tcp-established` to '
        "/etc/criu/runc.conf on the node (crun reads /etc/criu/crun.conf first if present)"
    )
    assert posts(kube, CHECKPOINT) == [500]
    assert list(kube.checkpoint_dir("node-2").iterdir()) == [] and outputs(tmp_path / "out") == {}


def test_apiserver_proxy_path(pod, proxy_rbac, step_env, tmp_path):
    result = run(pod, step_env(), tmp_path / "out", path="apiserver-proxy")
    assert result.returncode == 0, result.stderr
    assert "nodes/proxy" in result.stdout and "warning" in result.stdout
    assert posts(pod, PROXY) == [200]  # '/' not encoded as %2F
    name = outputs(tmp_path / "out")["archive"].rsplit("/", 1)[1]
    assert (pod.checkpoint_dir("node-1") / name).is_file()


def test_gate_off_404(pod, step_env, tmp_path):
    pod.set_checkpoint_behaviour("node-1", "gate-off")
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1
    assert_one_error_line(
        result,
        "checkpoint API answered 404: the ContainerCheckpoint feature gate is off on node-1, or the container is gone",
    )
    assert posts(pod, CHECKPOINT) == [404]


def test_container_gone_404_through_proxy(pod, proxy_rbac, step_env, tmp_path):
    """The pod vanishes after the step's identity check, as the request reaches the kubelet."""
    seen = identity(pod)
    remove = pod.on_request(lambda method, path: pod.delete("pods", "default", "web") if "/proxy/checkpoint/" in path else None)
    try:
        result = run(pod, step_env(), tmp_path / "out", path="apiserver-proxy", **seen)
    finally:
        remove()
    assert result.returncode == 1
    assert_one_error_line(result, "answered 404", "or the container is gone", "pod does not exist")


def test_unsupported_runtime_500_is_final(pod, step_env, tmp_path):
    pod.set_checkpoint_behaviour("node-1", "unsupported")
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1  # not 75: Argo must not retry either
    assert_one_error_line(
        result, "container runtime on node-1 cannot checkpoint: checkpointing of default/web/app failed", "Unimplemented"
    )
    assert posts(pod, CHECKPOINT) == [500]  # exactly one attempt: each one freezes the container


def test_429_burst_is_retried(pod, step_env, tmp_path):
    pod.fail_next(429, count=3, method="POST", path="^/checkpoint/")
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 0, result.stderr
    assert posts(pod, CHECKPOINT) == [429, 429, 429, 200]
    assert result.stdout.count("transient failure") == 3


def test_503_that_outlives_the_retries_exits_75(pod, proxy_rbac, step_env, tmp_path):
    pod.fail_next(503, count=50, method="POST", path="/proxy/checkpoint/")
    result = run(pod, step_env(), tmp_path / "out", path="apiserver-proxy")
    assert result.returncode == 75
    assert_one_error_line(result, "kept failing", "503")
    assert posts(pod, PROXY) == [503] * 5


def test_403_names_the_permission(pod, step_env, tmp_path):
    pod.fail_next(403, count=1, method="POST", path="^/checkpoint/")
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1
    assert_one_error_line(result, "403", "nodes/checkpoint create")
    assert posts(pod, CHECKPOINT) == [403]


def test_unknown_node_is_refused(pod, step_env, tmp_path):
    result = run(pod, step_env(), tmp_path / "out", node="node-9", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1
    assert_one_error_line(result, "node node-9 not found")
    assert [r for r in pod.requests if r[0] == "POST"] == []


# --- the container verify checked, and no other ------------------------------------------------


def test_a_container_restarted_since_verify_is_not_checkpointed(pod, step_env, tmp_path):
    """The attacker kills PID 1 between verify and checkpoint; the kubelet restarts the container
    (FakeKube.restart_container: new containerID, restartCount 1, lastState.terminated naming the
    old one, as pkg/kubelet/kuberuntime reports it). A checkpoint now would dump a fresh process
    tree under the verified name: the step reads the pod right before the POST and refuses. The
    previous step took no identity and checkpointed the new container (exit 0)."""
    seen = identity(pod)
    new_id = pod.restart_container("default", "web", "app")
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca), **seen)
    assert result.returncode == 1
    assert_one_error_line(
        result,
        f"container app of pod default/web restarted since verify (now {new_id[:12]}, restarts 1; "
        f"verified {seen['container_id'][:12]}): nothing checkpointed",
    )
    assert ("GET", "/api/v1/namespaces/default/pods/web", 200) in pod.requests
    assert posts(pod, CHECKPOINT) == [] and list(pod.checkpoint_dir("node-1").iterdir()) == []
    assert outputs(tmp_path / "out") == {}


def test_a_pod_replaced_since_verify_is_not_checkpointed(pod, proxy_rbac, step_env, tmp_path):
    """Same name, new pod (FakeKube.replace_pod: a new UID, new containers); through the API
    server's proxy too, the check comes before the POST."""
    seen = identity(pod)
    new_uid = pod.replace_pod("default", "web")["metadata"]["uid"]
    result = run(pod, step_env(), tmp_path / "out", path="apiserver-proxy", **seen)
    assert result.returncode == 1
    assert_one_error_line(
        result, f"pod default/web was replaced since verify (UID {new_uid}, verified {seen['pod_uid']}): nothing checkpointed"
    )
    assert posts(pod, PROXY) == [] and list(pod.checkpoint_dir("node-1").iterdir()) == []

    pod.delete("pods", "default", "web")
    gone = run(pod, step_env(), tmp_path / "out", path="apiserver-proxy", **seen)
    assert gone.returncode == 1
    assert_one_error_line(gone, "pod default/web is gone since verify: nothing checkpointed")
    assert posts(pod, PROXY) == []


def test_the_same_container_is_checkpointed_with_its_identity(pod, step_env, tmp_path):
    """The identity verify saw still holds: one GET of the pod, then the POST; the archive's
    config.dump names that container and status.dump that pod (containerd's CheckpointContainer)."""
    import json
    import tarfile

    seen = identity(pod)
    result = run(pod, step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca), **seen)
    assert result.returncode == 0, result.stderr
    served = [(m, p) for m, p, _ in pod.requests]
    assert served.index(("GET", "/api/v1/namespaces/default/pods/web")) < served.index(("POST", CHECKPOINT))
    name = outputs(tmp_path / "out")["archive"].rsplit("/", 1)[1]
    with tarfile.open(pod.checkpoint_dir("node-1") / name) as tar:
        config = json.load(tar.extractfile("config.dump"))
        status = json.load(tar.extractfile("status.dump"))
    assert config["id"] == status["id"] == seen["container_id"]
    assert status["labels"]["io.kubernetes.pod.uid"] == seen["pod_uid"]
    assert config["name"] == f"app_web_default_{seen['pod_uid']}_0"


HOSTILE = {
    "namespace": ["../kube-system", "x; rm -rf /", "default\n"],
    "pod": ["web/../../pods/other", "web?timeout=1", "web\nerror: forged"],
    "container": ["app/../../x", "app%2F.."],
    "node": ["node-1/proxy", "node-1:10250"],
    "path": ["https://evil.example/"],
    "timeout": ["-1", "10; rm", "99999"],
    "insecure_skip_tls_verify": ["maybe"],
    "address_types": ["Foo", "InternalIP,Evil", ","],
    "ca_configmap": ["../kube-root-ca.crt", "Bad_Name"],
    "pod_uid": ["", "x/../y", "6f1c2a3b-0000-4000-8000-00000000abcd\n"],
    "container_id": ["0123456789ab", "$(id)", "A" * 64],
}


@pytest.mark.parametrize(
    "flag,value", [(flag, value) for flag, values in HOSTILE.items() for value in values], ids=lambda v: repr(v)[:30]
)
def test_hostile_flags_are_refused_before_any_request(pod, step_env, tmp_path, flag, value):
    flags = {"ca_bundle": str(pod.kubelet_ca), flag: value}
    if flag == "insecure_skip_tls_verify":
        flags.pop("ca_bundle")
    result = run(pod, step_env(), tmp_path / "out", **flags)
    assert result.returncode == 1
    assert_one_error_line(result)
    assert pod.requests == []
    assert list(pod.checkpoint_dir("node-1").iterdir()) == []
    assert outputs(tmp_path / "out") == {}


@pytest.mark.parametrize(
    "flags,message",
    [
        ({}, "must be verified"),
        ({"ca_bundle": "CA", "insecure_skip_tls_verify": "true"}, "not both"),
        ({"ca_bundle": "/nonexistent/ca.crt"}, "cannot read"),
        ({"ca_bundle": "relative/ca.crt"}, "absolute"),
        ({"ca_bundle": "NOT_PEM"}, "no PEM certificate"),
        ({"ca_bundle": "CA", "token": "x"}, "unrecognized arguments"),
    ],
)
def test_tls_flags_are_checked_first(pod, step_env, tmp_path, flags, message):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    flags = {k: {"CA": str(pod.kubelet_ca), "NOT_PEM": str(not_pem)}.get(v, v) for k, v in flags.items()}
    result = run(pod, step_env(), tmp_path / "out", **flags)
    assert result.returncode == 1
    assert_one_error_line(result, message)
    assert pod.requests == []


# --- containment after a failed checkpoint, through a whole pipeline ---------------------------


def contained_demo(tmp_path: Path, **options):
    """The demo's pipeline from build/ (checkpoint-and-quarantine: quarantine depends on
    `checkpoint.Succeeded || checkpoint.Failed || checkpoint.Errored`) on a node set up as `options`."""
    import io

    from engine.demo import NODE, Demo, default_event

    out = io.StringIO()
    with Demo(ROOT / "build", workdir=tmp_path / "demo", out=out, **options) as demo:
        result = demo.run(default_event().read_bytes(), source="test")
        pod = demo.kube.get("pods", "default", "kubecon")
        archives = list(Path(demo.kube.checkpoint_dir(NODE)).iterdir())
    phases = {t.name: t.phase for t in result.run.tasks}
    checkpoint = next(t for t in result.run.tasks if t.name == "checkpoint")
    assert result.exit_code == 1 and result.run.phase == "Failed"
    assert phases == {"verify": "Succeeded", "checkpoint": "Failed", "copy": "Omitted", "quarantine": "Succeeded",
                      "analyze": "Omitted"}
    assert len(checkpoint.attempts) == 1  # final: not retried
    assert pod["metadata"]["labels"]["falco-response.io/quarantined"] == "true" and archives == []
    return out.getvalue()


def test_self_signed_node_still_contains_the_pod_and_shows_the_remedy(tmp_path):
    """`make demo KUBELET_TLS=self-signed`: default settings (kube-root-ca.crt) against a kubeadm-
    default kubelet; the remedy line is printed whole and the pod is quarantined all the same."""
    out = contained_demo(tmp_path, kubelet_tls="self-signed")
    assert "checkpoint: error: TLS to the kubelet of node-1 at 127.0.0.1:" in out
    assert "CA ConfigMap kube-root-ca.crt): a self-signed kubelet; fix: serverTLSBootstrap: true" in out
    assert "kubelet_tls.insecure_skip_verify: true" in out


def test_reverse_shell_still_contains_the_pod_and_shows_the_node_fix(tmp_path):
    """`make demo REVERSE_SHELL=1`: CRIU refuses the established connection (containerd's 500), the
    step says which node setting fixes it, and the quarantine runs after the failed checkpoint."""
    out = contained_demo(tmp_path, reverse_shell=True)
    assert "checkpoint: error: CRIU on node-1 could not checkpoint default/kubecon/alpine (criu failed: type DUMP" in out
    assert "add a line `tcp-established` to /etc/criu/runc.conf on the node; log: /run/containerd/" in out
    # the report's Event: no checkpoint, but the evidence bundle verify read before isolating (steps/report.py)
    assert "No checkpoint stored. Evidence bundle s3://falco-evidence/" in out and "/bundle/manifest.json." in out


def test_demo_command_takes_the_node_options():
    """The CLI `make demo` runs: --kubelet-tls and --reverse-shell reach the stand-in node."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--reverse-shell"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=180,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no tcp-established" in proc.stdout and "tcp-established` to /etc/criu/runc.conf" in proc.stdout
    assert "quarantined, detached" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--kubelet-tls", "none"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )
    assert bad.returncode == 2 and "invalid choice: 'none'" in bad.stderr
