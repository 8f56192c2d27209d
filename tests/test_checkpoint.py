"""checkpoint step, through `python -m steps.checkpoint` against the stand-in API and kubelet.

The kubelet of the stand-in serves HTTPS with a certificate from its own CA (kube.kubelet_ca),
answers 404 with the gate off and 500 when the runtime cannot checkpoint, like the real one.
The full pipeline (checkpoint, then copy on the same node directory) is in test_copy.py.
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


def run(env: dict, outputs: Path, **flags: str) -> subprocess.CompletedProcess:
    args = {"namespace": "default", "pod": "web", "container": "app", "node": "node-1", "timeout": "30", **flags}
    argv = [sys.executable, "-m", "steps.checkpoint", *(f"--{k.replace('_', '-')}={v}" for k, v in args.items())]
    argv.append(f"--outputs-dir={outputs}")
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def outputs(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()} if directory.exists() else {}


def posts(kube, path: str) -> list[int]:
    return [status for method, p, status in kube.requests if method == "POST" and p == path]


def assert_one_error_line(result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_direct_with_ca_bundle(pod, step_env, tmp_path):
    result = run(step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
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
    result = run(step_env(), tmp_path / "out", insecure_skip_tls_verify="true")
    assert result.returncode == 0, result.stderr
    assert "NOT verifying the kubelet's certificate" in result.stdout
    assert posts(pod, CHECKPOINT) == [200]
    assert result.stderr == ""  # no urllib3 InsecureRequestWarning noise


def test_tls_failure_without_the_kubelet_ca(pod, step_env, tmp_path):
    result = run(step_env(), tmp_path / "out", ca_bundle=certifi.where())
    assert result.returncode == 1
    assert_one_error_line(result, "TLS to the kubelet", "CERTIFICATE_VERIFY_FAILED", "--ca-bundle")
    assert posts(pod, CHECKPOINT) == []  # the handshake failed before any request
    assert list(pod.checkpoint_dir("node-1").iterdir()) == []
    assert outputs(tmp_path / "out") == {}


def test_apiserver_proxy_path(pod, step_env, tmp_path):
    result = run(step_env(), tmp_path / "out", path="apiserver-proxy")
    assert result.returncode == 0, result.stderr
    assert "nodes/proxy" in result.stdout and "warning" in result.stdout
    assert posts(pod, PROXY) == [200]  # '/' not encoded as %2F
    name = outputs(tmp_path / "out")["archive"].rsplit("/", 1)[1]
    assert (pod.checkpoint_dir("node-1") / name).is_file()


def test_gate_off_404(pod, step_env, tmp_path):
    pod.set_checkpoint_behaviour("node-1", "gate-off")
    result = run(step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1
    assert_one_error_line(
        result,
        "checkpoint API answered 404: the ContainerCheckpoint feature gate is off on node-1, or the container is gone",
    )
    assert posts(pod, CHECKPOINT) == [404]


def test_container_gone_404_through_proxy(pod, step_env, tmp_path):
    pod.delete("pods", "default", "web")
    result = run(step_env(), tmp_path / "out", path="apiserver-proxy")
    assert result.returncode == 1
    assert_one_error_line(result, "answered 404", "or the container is gone", "pod does not exist")


def test_unsupported_runtime_500_is_final(pod, step_env, tmp_path):
    pod.set_checkpoint_behaviour("node-1", "unsupported")
    result = run(step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1  # not 75: Argo must not retry either
    assert_one_error_line(
        result, "container runtime on node-1 cannot checkpoint: checkpointing of default/web/app failed", "Unimplemented"
    )
    assert posts(pod, CHECKPOINT) == [500]  # exactly one attempt: each one freezes the container


def test_429_burst_is_retried(pod, step_env, tmp_path):
    pod.fail_next(429, count=3, method="POST", path="^/checkpoint/")
    result = run(step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 0, result.stderr
    assert posts(pod, CHECKPOINT) == [429, 429, 429, 200]
    assert result.stdout.count("transient failure") == 3


def test_503_that_outlives_the_retries_exits_75(pod, step_env, tmp_path):
    pod.fail_next(503, count=50, method="POST", path="/proxy/checkpoint/")
    result = run(step_env(), tmp_path / "out", path="apiserver-proxy")
    assert result.returncode == 75
    assert_one_error_line(result, "kept failing", "503")
    assert posts(pod, PROXY) == [503] * 5


def test_403_names_the_permission(pod, step_env, tmp_path):
    pod.fail_next(403, count=1, method="POST", path="^/checkpoint/")
    result = run(step_env(), tmp_path / "out", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1
    assert_one_error_line(result, "403", "nodes/checkpoint create")
    assert posts(pod, CHECKPOINT) == [403]


def test_unknown_node_is_refused(pod, step_env, tmp_path):
    result = run(step_env(), tmp_path / "out", node="node-9", ca_bundle=str(pod.kubelet_ca))
    assert result.returncode == 1
    assert_one_error_line(result, "node node-9 not found")
    assert [r for r in pod.requests if r[0] == "POST"] == []


HOSTILE = {
    "namespace": ["../kube-system", "x; rm -rf /", "default\n"],
    "pod": ["web/../../pods/other", "web?timeout=1", "web\nerror: forged"],
    "container": ["app/../../x", "app%2F.."],
    "node": ["node-1/proxy", "node-1:10250"],
    "path": ["https://evil.example/"],
    "timeout": ["-1", "10; rm", "99999"],
    "insecure_skip_tls_verify": ["maybe"],
}


@pytest.mark.parametrize(
    "flag,value", [(flag, value) for flag, values in HOSTILE.items() for value in values], ids=lambda v: repr(v)[:30]
)
def test_hostile_flags_are_refused_before_any_request(pod, step_env, tmp_path, flag, value):
    flags = {"ca_bundle": str(pod.kubelet_ca), flag: value}
    if flag == "insecure_skip_tls_verify":
        flags.pop("ca_bundle")
    result = run(step_env(), tmp_path / "out", **flags)
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
    result = run(step_env(), tmp_path / "out", **flags)
    assert result.returncode == 1
    assert_one_error_line(result, message)
    assert pod.requests == []
