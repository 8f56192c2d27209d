"""steps/kube.py, the steps' own API client, through `python -m steps.delete` as Argo runs it.

What it must do as the official client did (kubernetes/config/kube_config.py KubeConfigLoader,
config/incluster_config.py InClusterConfigLoader, client/rest.py RESTClientObject): verify the API
server's certificate against the cluster CA (kubeconfig `certificate-authority-data` or
`certificate-authority`, relative to the kubeconfig's folder; in a pod the service account's
ca.crt), present the bearer token, and fail in one line, before any request, on credentials it
cannot use. The rest of its HTTP (paths, patch types, Status errors) is exercised by every
tests/test_<step>.py against the stand-in API server.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import yaml

from standin.kube.manifests import node_addresses
from standin.kube.serving import Server
from tests.test_delete import flags
from tests.test_verify import add_web_pod, run_step, step_token

POD = "/api/v1/namespaces/default/pods/web-1"


@pytest.fixture
def https_api(kube):
    """The stand-in API server's own handler served over TLS, with a certificate for 127.0.0.1
    signed by the cluster CA (kube.kubelet_ca, kubeadm's ca.crt): what a real API server serves."""
    context = kube._pki.server_context("kube-apiserver", "cluster-ca", node_addresses("kube-apiserver"))
    server = Server(kube._api.app, context).launch()
    yield f"https://127.0.0.1:{server.port}"
    server.halt()


def kubeconfig(path: Path, server: str, token: str, **cluster: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


def one_error_line(run) -> str:
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


def test_a_step_talks_tls_to_the_api_server_and_verifies_it_against_the_cluster_ca(kube, https_api, tmp_path):
    add_web_pod(kube)
    token = step_token(kube, "delete")
    ca = base64.b64encode(kube.kubelet_ca.read_bytes()).decode()
    good = kubeconfig(tmp_path / "good.json", https_api, token, **{"certificate-authority-data": ca})
    run = run_step(kube, "delete", flags(**{"dry-run": "true"}), tmp_path, {"KUBECONFIG": str(good)})
    assert run.rc == 0, run.stderr
    assert "dry run: would delete pod default/web-1" in run.stdout
    assert ("GET", POD, 200) in kube.requests

    # A CA file, relative to the kubeconfig's folder (clientcmd), that did not sign the server's
    # certificate: the handshake fails, nothing reaches the API server, one line says why.
    kube.add_node("node-2", tls="self-signed")
    (tmp_path / "other-ca.crt").write_bytes(kube._pki.node_ca_path("node-2").read_bytes())
    wrong = kubeconfig(tmp_path / "wrong.json", https_api, token, **{"certificate-authority": "other-ca.crt"})
    before = len(kube.requests)
    run = run_step(kube, "delete", flags(**{"dry-run": "true"}), tmp_path, {"KUBECONFIG": str(wrong), "STEP_RETRY_BASE_DELAY": "0.001"})
    assert run.rc == 75  # status 0, transient as with the official client: retried, then Argo's retryStrategy
    assert "SSLError [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed" in one_error_line(run)
    assert [r for r in kube.requests[before:] if r[1] == POD] == []


def test_a_yaml_kubeconfig_is_refused_in_one_line_before_any_request(kube, tmp_path):
    """JSON only (no YAML parser at start-up); the same kubeconfig as JSON works."""
    add_web_pod(kube)
    as_json = Path(kube.kubeconfig_for(step_token(kube, "delete")))
    as_yaml = tmp_path / "config.yaml"
    as_yaml.write_text(yaml.safe_dump(json.loads(as_json.read_text())))
    before = len(kube.requests)
    run = run_step(kube, "delete", flags(**{"dry-run": "true"}), tmp_path, {"KUBECONFIG": str(as_yaml)})
    assert run.rc == 1
    assert one_error_line(run) == (
        f"error: kubeconfig {as_yaml} is not JSON: steps read only JSON kubeconfigs (in a pod they use the "
        "service account); convert one with `kubectl config view --raw --minify -o json`"
    )
    assert kube.requests[before:] == []
    assert run_step(kube, "delete", flags(**{"dry-run": "true"}), tmp_path, {"KUBECONFIG": str(as_json)}).rc == 0


@pytest.mark.skipif(os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"), reason="runs in a pod")
def test_in_a_pod_without_a_service_account_token_the_step_says_so_in_one_line(kube, tmp_path):
    """KUBERNETES_SERVICE_HOST set (every pod has it): the service account's files, never $KUBECONFIG."""
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    run = run_step(kube, "delete", flags(), tmp_path, env)
    assert run.rc == 1
    assert one_error_line(run) == (
        "error: in-cluster config: /var/run/secrets/kubernetes.io/serviceaccount/token does not exist "
        "(automountServiceAccountToken off?)"
    )
