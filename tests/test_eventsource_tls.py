"""Transport of the alert (issue 8, finding 8): the EventSource serves TLS and Falcosidekick verifies it.

Upstream, read for these tests:
- Argo Events v1.9.11 pkg/eventsources/common/webhook/webhook.go, startServer: ListenAndServeTLS with the
  files of serverCertSecret and serverKeySecret (mounted by pkg/shared/util GenerateSecretVolumeSpecs at
  /argo-events/secrets/<name>/<key>) when both are set, ListenAndServe otherwise; the route handler reads
  the authSecret file on every request (GetSecretFromVolume).
- Go net/http server.go (*conn).serve: a TLS listener answers a first record that
  tlsRecordHeaderLooksLikeHTTP ("POST " ...) with `400 Client sent an HTTP request to an HTTPS server.`
- Falcosidekick 2.31-2.34 outputs/client.go configureTransport: MinVersion TLS 1.2, RootCAs = system pool
  + TLSClient.CaCertFile (AppendCertsFromPEM), InsecureSkipVerify only when CheckCert is false; the
  http.Client is cached after the first successful configuration (read once). config.go: viper env
  TLSCLIENT_CACERTFILE, WEBHOOK_CHECKCERT.
- falcosidekick chart 0.12.1 templates/deployment.yaml (TLSCLIENT_CACERTFILE from
  config.tlsclient.cacertfile, extraVolumes/extraVolumeMounts) and templates/secrets.yaml
  (WEBHOOK_CHECKCERT from config.webhook.checkcert).
build/create-secrets.sh runs for real (sh + openssl) against the stand-in kubectl of standin.falcosidekick.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from standin import falcosidekick
from standin.argo.events.sensors import load_eventsource
from standin.argo.events.webhook import (
    PLAIN_HTTP_ANSWER, EventSourceDown, WebhookEndpoint, WebhookServer, serving_tls,
)

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SCRIPT = BUILD / "create-secrets.sh"
VALUES = yaml.safe_load((BUILD / "falcosidekick-values.yaml").read_text())
SETTINGS = yaml.safe_load((ROOT / "response.yaml").read_text())["settings"]
ES_NS = SETTINGS.get("eventsource", {}).get("namespace", "argo-events")
SIDEKICK_NS = SETTINGS.get("eventsource", {}).get("falcosidekick_namespace", "falco")
ALERT = json.dumps({"rule": "Terminal shell in container", "priority": "Notice", "output": "x",
                    "time": "2023-05-25T13:44:05.123456789Z", "output_fields": {}}).encode()
INPUTS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "FALCO_WEBHOOK_TOKEN": "t0ken-before"}
# The address of build/falcosidekick-values.yaml before issue 8 (its EventSource had no serverCertSecret).
OLD_ADDRESS = "http://falco-eventsource-svc.argo-events.svc.cluster.local:12000/falco"


def _script(tmp: Path, name: str, state: dict | None = None, **env: str) -> falcosidekick.ScriptRun:
    run = falcosidekick.run_create_secrets(SCRIPT, {**INPUTS, **env}, tmp / name, state=state)
    return run


def _secret(run, namespace: str, name: str) -> dict[str, str]:
    obj = run.get("Secret", namespace, name)
    assert obj is not None, f"no Secret {namespace}/{name}"
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def _certs(pem: str) -> list[str]:
    return falcosidekick._pem_blocks(pem)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One run of build/create-secrets.sh: the token, the EventSource's certificate, Falcosidekick's CA."""
    tmp = tmp_path_factory.mktemp("tls")
    run = _script(tmp, "first")
    assert run.returncode == 0, run.stderr
    return run


class Sniffer:
    """A TCP relay standing for the pod network: it records every byte the client sends."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.seen = target, bytearray()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    self.seen += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def test_the_build_serves_tls_and_the_token_no_longer_crosses_the_network_in_clear(cluster, tmp_path):
    """build/eventsources sets serverCertSecret/serverKeySecret on Secret falco-eventsource-tls, which
    create-secrets.sh fills; Falcosidekick, installed with build/falcosidekick-values.yaml, posts to the
    Service's https name and verifies it with the CA mounted from ConfigMap falco-eventsource-ca: 200. A
    relay in the middle sees no token. With the previous build/ (no serverCertSecret, an http address)
    the same relay read `Authorization: Bearer <token>` in clear; on that code this test fails at
    `serving_tls(...) is not None`."""
    token = _secret(cluster, ES_NS, "falco-webhook-token")["token"]
    spec = load_eventsource(BUILD)
    tls = serving_tls(BUILD, cluster.objects)
    assert tls is not None, "build/eventsources serves plain HTTP"
    sidekick = falcosidekick.deployed(VALUES, cluster.objects, SIDEKICK_NS)
    assert sidekick.address.startswith("https://") and sidekick.checkcert and sidekick.ca_pem
    with WebhookServer(WebhookEndpoint(spec, token), tls=tls) as server:
        relay = Sniffer(server.address)
        try:
            answer = falcosidekick.send(sidekick, ALERT, dial=relay.address)
        finally:
            relay.close()
        assert (answer.status_code, answer.text) == (200, "success") and len(server.events) == 1
    assert token.encode() not in relay.seen and b"Bearer" not in relay.seen and relay.seen

    old_build = tmp_path / "old-build"
    shutil.copytree(BUILD, old_build)
    es_path = next((old_build / "eventsources").glob("eventsource-*.yaml"))
    es = yaml.safe_load(es_path.read_text())
    for hook in es["spec"]["webhook"].values():
        hook.pop("serverCertSecret"), hook.pop("serverKeySecret")
    es_path.write_text(yaml.safe_dump(es))
    assert serving_tls(old_build, cluster.objects) is None  # what the previous build/ asked for
    old = dataclasses.replace(sidekick, address=OLD_ADDRESS)
    with WebhookServer(WebhookEndpoint(spec, token), tls=None) as server:
        relay = Sniffer(server.address)
        try:
            assert falcosidekick.send(old, ALERT, dial=relay.address).status_code == 200
        finally:
            relay.close()
    assert f"Authorization: Bearer {token}".encode() in relay.seen


def test_a_plain_http_post_gets_gos_400_and_publishes_nothing(cluster):
    """An http:// address (the previous values) against the TLS EventSource: Go's TLS server answers the
    plain request with 400 `Client sent an HTTP request to an HTTPS server.` and closes; no event."""
    token = _secret(cluster, ES_NS, "falco-webhook-token")["token"]
    sidekick = falcosidekick.deployed(VALUES, cluster.objects, SIDEKICK_NS)
    with WebhookServer(WebhookEndpoint(load_eventsource(BUILD), token), tls=serving_tls(BUILD, cluster.objects)) as server:
        answer = falcosidekick.send(dataclasses.replace(sidekick, address=OLD_ADDRESS), ALERT, dial=server.address)
        raw = socket.create_connection(server.address)
        raw.sendall(b"POST /falco HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        reply = raw.recv(4096)
        raw.close()
        assert server.events == [] and server.requests == []
    assert (answer.status_code, answer.text) == (400, "Client sent an HTTP request to an HTTPS server.\n")
    assert reply == PLAIN_HTTP_ANSWER


def test_without_the_ca_or_under_another_name_falcosidekick_refuses_the_certificate(cluster):
    """checkcert true with only the system roots (the CA file not mounted, or not set), or the right CA but
    another host name: the TLS handshake fails as Go's x509 says, before any header (token) is sent.
    checkcert false would accept anything, which is why the values say true."""
    token = _secret(cluster, ES_NS, "falco-webhook-token")["token"]
    sidekick = falcosidekick.deployed(VALUES, cluster.objects, SIDEKICK_NS)
    assert VALUES["falcosidekick"]["config"]["webhook"]["checkcert"] is True
    no_ca = dataclasses.replace(sidekick, ca_pem=None)
    wrong_name = dataclasses.replace(sidekick, address=sidekick.address.replace(f".{ES_NS}.", ".elsewhere."))
    with WebhookServer(WebhookEndpoint(load_eventsource(BUILD), token), tls=serving_tls(BUILD, cluster.objects)) as server:
        with pytest.raises(falcosidekick.PostError, match=r'^Post "https://.*": tls: failed to verify certificate: '
                                                          r"x509: certificate signed by unknown authority$"):
            falcosidekick.send(no_ca, ALERT, dial=server.address)
        with pytest.raises(falcosidekick.PostError, match=r"x509: certificate is not valid for falco-eventsource-svc\.elsewhere"):
            falcosidekick.send(wrong_name, ALERT, dial=server.address)
        unchecked = falcosidekick.send(dataclasses.replace(no_ca, checkcert=False), ALERT, dial=server.address)
        assert unchecked.status_code == 200 and len(server.requests) == 1  # only the unchecked POST got through


def test_falcosidekick_reads_the_ca_only_from_a_mounted_configmap(cluster):
    """The chart mounts extraVolumes with extraVolumeMounts; a cacertfile outside them is unreadable (the
    output logs it and trusts the system roots only), and a missing ConfigMap keeps the pod from starting."""
    values = copy.deepcopy(VALUES)
    values["falcosidekick"]["config"]["tlsclient"]["cacertfile"] = "/etc/ssl/not-mounted/ca.crt"
    unmounted = falcosidekick.deployed(values, cluster.objects, SIDEKICK_NS)
    assert unmounted.ca_pem is None and unmounted.ca_problem == "open /etc/ssl/not-mounted/ca.crt: no such file or directory"
    without_configmap = [o for o in cluster.objects if o["kind"] != "ConfigMap"]
    with pytest.raises(falcosidekick.ChartError, match=r'configmap "falco-eventsource-ca" not found in falco: the Falcosidekick '
                                                       r"pod stays in ContainerCreating"):
        falcosidekick.deployed(VALUES, without_configmap, SIDEKICK_NS)
    assert not falcosidekick.unknown_keys(VALUES)  # tlsclient, checkcert, extraVolumes: keys the chart reads


def test_without_the_tls_secret_the_eventsource_does_not_serve(cluster):
    """The Secret is a non-optional volume of the EventSource pod: missing, the pod never starts; a Secret
    without the key makes ListenAndServeTLS fail."""
    with pytest.raises(EventSourceDown, match=r'secret "falco-eventsource-tls" not found: the pod stays in ContainerCreating'):
        serving_tls(BUILD, [o for o in cluster.objects if o["metadata"]["name"] != "falco-eventsource-tls"])
    broken = copy.deepcopy(cluster.objects)
    for obj in broken:
        if obj["metadata"]["name"] == "falco-eventsource-tls":
            del obj["data"]["tls.key"]
    with pytest.raises(EventSourceDown, match=r"open /argo-events/secrets/falco-eventsource-tls/tls.key: no such file"):
        serving_tls(BUILD, broken)


def test_the_generated_certificate_names_the_service_and_its_ca_key_is_gone(cluster):
    """tls.crt is signed by ca.crt, names both Service names (SAN), is a server certificate; no CA key is
    stored anywhere (no other certificate can be signed with that CA)."""
    data = _secret(cluster, ES_NS, "falco-eventsource-tls")
    assert cluster.get("Secret", ES_NS, "falco-eventsource-tls")["type"] == "kubernetes.io/tls"
    assert sorted(data) == ["ca.crt", "tls.crt", "tls.key"]
    text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=data["tls.crt"], capture_output=True,
                          text=True, check=True).stdout
    assert "DNS:falco-eventsource-svc.argo-events.svc, DNS:falco-eventsource-svc.argo-events.svc.cluster.local" in text
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    stored = json.dumps(cluster.state["objects"])
    assert "PRIVATE KEY" not in stored.replace(base64.b64encode(data["tls.key"].encode()).decode(), "")
    configmap = cluster.get("ConfigMap", SIDEKICK_NS, "falco-eventsource-ca")
    assert _certs(configmap["data"]["ca.crt"]) == _certs(data["ca.crt"])


def test_renewal_trusts_old_and_new_until_the_next_run(cluster, tmp_path):
    """FALCO_WEBHOOK_TLS_RENEW=1 makes a new CA and certificate; the CA ConfigMap then holds the new CA and
    the old one, so a Falcosidekick restarted after this run accepts the EventSource before its restart
    (old certificate) and after (new). The next plain run trusts only the new CA. Without the variable
    the certificate is reused."""
    token = _secret(cluster, ES_NS, "falco-webhook-token")["token"]
    renewed = _script(tmp_path, "renew", state=cluster.state, FALCO_WEBHOOK_TLS_RENEW="1")
    assert renewed.returncode == 0, renewed.stderr
    old_tls, new_tls = serving_tls(BUILD, cluster.objects), serving_tls(BUILD, renewed.objects)
    assert old_tls.cert_pem != new_tls.cert_pem
    restarted = falcosidekick.deployed(VALUES, renewed.objects, SIDEKICK_NS)
    assert len(_certs(restarted.ca_pem)) == 2
    spec = load_eventsource(BUILD)
    for tls in (old_tls, new_tls):
        with WebhookServer(WebhookEndpoint(spec, token), tls=tls) as server:
            assert falcosidekick.send(restarted, ALERT, dial=server.address).status_code == 200
    settled = _script(tmp_path, "settled", state=renewed.state)
    assert settled.returncode == 0 and "certificate reused" in settled.stdout
    trusting_new = falcosidekick.deployed(VALUES, settled.objects, SIDEKICK_NS)
    assert _certs(trusting_new.ca_pem) == _certs(_secret(renewed, ES_NS, "falco-eventsource-tls")["ca.crt"])
    with WebhookServer(WebhookEndpoint(spec, token), tls=old_tls) as server:
        with pytest.raises(falcosidekick.PostError, match="unknown authority"):
            falcosidekick.send(trusting_new, ALERT, dial=server.address)


def test_a_cert_manager_certificate_is_reused_and_never_overwritten(cluster, tmp_path):
    """A Secret cert-manager owns (annotation cert-manager.io/certificate-name) is never overwritten:
    FALCO_WEBHOOK_TLS_RENEW=1 refuses, in one line, changing nothing (without it, it is reused like any)."""
    state = copy.deepcopy(cluster.state)
    key = f"Secret/{ES_NS}/falco-eventsource-tls"
    state["objects"][key]["metadata"].setdefault("annotations", {})["cert-manager.io/certificate-name"] = "falco-eventsource"
    refused = _script(tmp_path, "cm-renew", state=state, FALCO_WEBHOOK_TLS_RENEW="1")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.strip() == (f"create-secrets.sh: {ES_NS}/falco-eventsource-tls belongs to cert-manager (Certificate "
                                      "falco-eventsource): renew it there (cmctl renew falco-eventsource), not with this script")
    assert refused.state["objects"][key] == state["objects"][key]


def test_a_reused_certificate_for_another_name_is_refused(cluster, tmp_path):
    """A stored certificate that does not name the Service would fail every Falcosidekick POST: the script
    says so in one line instead of reusing it."""
    work = tmp_path / "other"
    work.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "30", "-subj", "/CN=elsewhere", "-addext", "subjectAltName=DNS:elsewhere.example",
                    "-keyout", str(work / "k"), "-out", str(work / "c")], check=True, capture_output=True)
    state = copy.deepcopy(cluster.state)
    data = state["objects"][f"Secret/{ES_NS}/falco-eventsource-tls"]["data"]
    pem = (work / "c").read_text()
    data.update({k: base64.b64encode(v.encode()).decode() for k, v in
                 {"tls.crt": pem, "ca.crt": pem, "tls.key": (work / "k").read_text()}.items()})
    run = _script(tmp_path, "other-run", state=state)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.strip() == (f"create-secrets.sh: {ES_NS}/falco-eventsource-tls: the certificate does not name "
                                  f"falco-eventsource-svc.{ES_NS}.svc: set FALCO_WEBHOOK_TLS_RENEW=1 to replace it")


def test_token_rotation_order_the_readme_gives(cluster, tmp_path):
    """What the README's rotation says, on the stand-ins: after create-secrets.sh with a new token the
    EventSource, re-reading its mounted Secret on every request, accepts only the new token (once the kubelet
    refreshed the volume); Falcosidekick keeps the old one (environment read at start) and gets 401 until it
    restarts; the restarted one gets 200. The window between is where alerts are lost (no retries)."""
    mounted = {"token": _secret(cluster, ES_NS, "falco-webhook-token")["token"]}
    before = falcosidekick.deployed(VALUES, cluster.objects, SIDEKICK_NS)
    rotated = _script(tmp_path, "rotate", state=cluster.state, FALCO_WEBHOOK_TOKEN="n3w-t0ken")
    assert rotated.returncode == 0, rotated.stderr
    endpoint = WebhookEndpoint(load_eventsource(BUILD), lambda: mounted["token"])
    with WebhookServer(endpoint, tls=serving_tls(BUILD, rotated.objects)) as server:
        assert falcosidekick.send(before, ALERT, dial=server.address).status_code == 200  # volume not refreshed yet
        mounted["token"] = _secret(rotated, ES_NS, "falco-webhook-token")["token"] + "\n"  # the kubelet's refresh
        stale = falcosidekick.send(before, ALERT, dial=server.address)
        after = falcosidekick.send(falcosidekick.deployed(VALUES, rotated.objects, SIDEKICK_NS), ALERT, dial=server.address)
    assert (stale.status_code, stale.text) == (401, "Invalid Auth token")
    assert (after.status_code, after.text) == (200, "success")

