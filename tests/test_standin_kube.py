"""The stand-in cluster, driven only as the steps drive a real one: the official `kubernetes`
client through a kubeconfig, and `requests` over HTTPS for the kubelet."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import subprocess
import sys
import tarfile
import time

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from standin import shared_dir
from standin.kube import FakeKube

CID = "a" * 64
ARCHIVE_NAME = re.compile(r"^checkpoint-web-1_default-app-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)\.tar$")


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def api(kube):
    """The official client, configured as the steps' own (steps/kube.py) behaves: no urllib3
    retries (a 429 with Retry-After would otherwise be retried invisibly)."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=configuration)
    configuration.retries = False
    api_client = client.ApiClient(configuration)
    yield api_client
    api_client.close()


@pytest.fixture
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture
def web(kube):
    return kube.add_pod(
        "default",
        "web-1",
        "node-1",
        containers=[{"name": "app", "image": "nginx:1.27", "id": CID}],
        labels={"app": "web", "tier": "front"},
    )


def failure(call, *args, **kwargs) -> tuple[int, dict, ApiException]:
    """Call, expect an ApiException; return its status, its decoded Status body, the exception."""
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body), caught.value


def raw(api, method: str, path: str, body=None, content_type: str = "application/json", query=None):
    """A request the typed API cannot make (choice of patch Content-Type, node proxy with a query)."""
    return api.call_api(
        path,
        method,
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        query_params=query or [],
        body=body,
        auth_settings=["BearerToken"],
        response_type="object",
        _return_http_data_only=True,
    )


def kubelet_post(kube, path: str, token: str | None = "standin-token", node: str = "node-1", verify=True):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{kube.kubelet_url(node)}{path}", headers=headers, verify=str(kube.kubelet_ca) if verify else True, timeout=10
    )


# --- core objects ---------------------------------------------------------------------------


def test_pod_looks_like_a_running_pod(kube, core, web):
    pod = core.read_namespaced_pod("web-1", "default")
    assert pod.spec.node_name == "node-1" and pod.status.phase == "Running"
    status = pod.status.container_statuses[0]
    assert status.container_id == f"containerd://{CID}"
    assert re.fullmatch(r"docker\.io/library/nginx@sha256:[0-9a-f]{64}", status.image_id)
    assert pod.metadata.uid and pod.metadata.resource_version == web["metadata"]["resourceVersion"]
    listed = core.list_namespaced_pod("default")
    assert listed.kind == "PodList" and int(listed.metadata.resource_version) >= int(pod.metadata.resource_version)
    assert [p.metadata.name for p in listed.items] == ["web-1"]


def test_missing_object_is_a_404_status(core):
    code, body, _ = failure(core.read_namespaced_pod, "ghost", "default")
    assert code == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "kind": "pods"},
        "code": 404,
    }


def test_wrong_or_missing_token_is_401(kube):
    configuration = client.Configuration()
    configuration.host = kube.url
    configuration.api_key = {"authorization": "not-the-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(configuration) as wrong:
        code, body, _ = failure(client.CoreV1Api(wrong).list_namespace)
    assert code == 401 and body["reason"] == "Unauthorized" and body["kind"] == "Status"
    assert requests.get(f"{kube.url}/api/v1/namespaces", timeout=5).status_code == 401


def test_create_in_a_missing_namespace_is_404(core):
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    code, body, _ = failure(core.create_namespaced_pod, "nowhere", pod)
    assert code == 404 and body["message"] == 'namespaces "nowhere" not found'


def test_bad_name_and_bad_label_are_422(core, web):
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="Bad_Name"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    code, body, _ = failure(core.create_namespaced_pod, "default", pod)
    assert code == 422 and body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Pod" and body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["message"].startswith(
        'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123'
    )
    code, body, _ = failure(
        core.patch_namespaced_pod, "web-1", "default", {"metadata": {"labels": {"at": "2024-01-01T00:00:00Z"}}}
    )
    assert code == 422 and body["details"]["causes"][0]["field"] == "metadata.labels"


def test_pod_delete_takes_grace_period_from_query_or_body(kube, core, web):
    kube.add_pod("default", "web-2", "node-1")
    deleted = core.delete_namespaced_pod("web-1", "default", grace_period_seconds=5)
    assert deleted.metadata.name == "web-1" and deleted.metadata.deletion_grace_period_seconds == 5
    assert deleted.metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("web-2", "default", body=client.V1DeleteOptions(grace_period_seconds=0))
    assert [(d["name"], d["gracePeriodSeconds"]) for d in kube.deletions] == [("web-1", 5), ("web-2", 0)]
    assert failure(core.read_namespaced_pod, "web-1", "default")[0] == 404
    assert kube.get("pods", "default", "web-2") is None


def test_delete_precondition_mismatch_is_409(core, web):
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="not-the-uid"))
    code, body, _ = failure(core.delete_namespaced_pod, "web-1", "default", body=options)
    assert code == 409 and "Precondition failed" in body["message"]


def test_nodes_namespaces_services_replicasets(kube, api, core):
    kube.add_replicaset("default", "web-7d9", selector={"app": "web"})
    kube.add_service("default", "web", selector={"app": "web"})
    node = core.read_node("node-1")
    assert node.status.daemon_endpoints.kubelet_endpoint.port == int(kube.kubelet_url("node-1").rsplit(":", 1)[1])
    assert [(a.type, a.address) for a in node.status.addresses] == [("InternalIP", "127.0.0.1"), ("Hostname", "node-1")]
    assert [n.metadata.name for n in core.list_node().items] == ["node-1"]
    assert "default" in [n.metadata.name for n in core.list_namespace().items]
    assert core.read_namespaced_service("web", "default").spec.selector == {"app": "web"}
    replicaset = client.AppsV1Api(api).read_namespaced_replica_set("web-7d9", "default")
    assert replicaset.spec.selector.match_labels == {"app": "web"}
    assert client.AppsV1Api(api).list_namespaced_replica_set("default", label_selector="app=web").items


def test_owner_reference_points_at_the_replicaset(kube, core):
    replicaset = kube.add_replicaset("default", "web-7d9", selector={"app": "web"})
    kube.add_pod(
        "default", "web-7d9-x", "node-1", labels={"app": "web"}, owner={"kind": "ReplicaSet", "name": "web-7d9"}
    )
    (owner,) = core.read_namespaced_pod("web-7d9-x", "default").metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name, owner.uid) == (
        "apps/v1",
        "ReplicaSet",
        "web-7d9",
        replicaset["metadata"]["uid"],
    )


# --- selectors ------------------------------------------------------------------------------


@pytest.fixture
def labelled(kube):
    kube.add_node("node-2")
    kube.add_pod("default", "a", "node-1", labels={"app": "web", "tier": "front"})
    kube.add_pod("default", "b", "node-1", labels={"app": "web", "tier": "back"})
    kube.add_pod("default", "c", "node-2", labels={"app": "db"})


@pytest.mark.parametrize(
    "selector, names",
    [
        ("app=web", ["a", "b"]),
        ("app==web,tier=front", ["a"]),
        ("app!=web", ["c"]),
        ("tier in (front, back)", ["a", "b"]),
        ("tier notin (front)", ["b", "c"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c"]),
        ("app in (web,db),!tier", ["c"]),
    ],
)
def test_label_selectors(core, labelled, selector, names):
    assert [p.metadata.name for p in core.list_namespaced_pod("default", label_selector=selector).items] == names


@pytest.mark.parametrize(
    "selector, names",
    [
        ("spec.nodeName=node-1", ["a", "b"]),
        ("spec.nodeName!=node-1", ["c"]),
        ("metadata.name==b", ["b"]),
        ("metadata.namespace=default,status.phase=Running", ["a", "b", "c"]),
        ("status.phase=Pending", []),
    ],
)
def test_field_selectors(core, labelled, selector, names):
    assert [p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=selector).items] == names


def test_bad_selectors_are_400(core, labelled):
    assert failure(core.list_namespaced_pod, "default", label_selector="tier in (a")[0] == 400
    code, body, _ = failure(core.list_namespaced_pod, "default", field_selector="spec.hostname=x")
    assert code == 400 and body["reason"] == "BadRequest"


def test_list_pages_with_limit_and_continue(core, labelled):
    first = core.list_namespaced_pod("default", limit=2)
    assert len(first.items) == 2 and first.metadata._continue and first.metadata.remaining_item_count == 1
    rest = core.list_namespaced_pod("default", limit=2, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["c"] and not rest.metadata._continue


# --- patches and resourceVersion ------------------------------------------------------------


def test_strategic_merge_patch_deletes_a_label_with_null(core, web):
    before = web["metadata"]["resourceVersion"]
    patched = core.patch_namespaced_pod(
        "web-1",
        "default",
        {"metadata": {"labels": {"tier": None, "quarantine": "true"}, "annotations": {"why": "falco"}}},
    )
    assert patched.metadata.labels == {"app": "web", "quarantine": "true"}
    assert patched.metadata.annotations == {"why": "falco"}
    assert int(patched.metadata.resource_version) > int(before)


def test_merge_patch_and_json_patch(api, web):
    path = "/api/v1/namespaces/default/pods/web-1"
    merged = raw(api, "PATCH", path, {"metadata": {"labels": {"app": None, "x": "1"}}}, "application/merge-patch+json")
    assert merged["metadata"]["labels"] == {"tier": "front", "x": "1"}
    operations = [
        {"op": "test", "path": "/metadata/labels/x", "value": "1"},
        {"op": "add", "path": "/metadata/labels/quarantine", "value": "true"},
        {"op": "remove", "path": "/metadata/labels/x"},
    ]
    patched = client.CoreV1Api(api).patch_namespaced_pod("web-1", "default", operations)
    assert patched.metadata.labels == {"tier": "front", "quarantine": "true"}
    code, body, _ = failure(
        raw,
        api,
        "PATCH",
        path,
        [{"op": "test", "path": "/metadata/labels/x", "value": "1"}],
        "application/json-patch+json",
    )
    assert code == 422


def test_patch_with_plain_json_or_strategic_on_a_custom_resource_is_415(api, web):
    code, body, _ = failure(
        raw, api, "PATCH", "/api/v1/namespaces/default/pods/web-1", {"metadata": {}}, "application/json"
    )
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", "default", "workflows", {"metadata": {"name": "wf"}, "spec": {}}
    )
    path = "/apis/argoproj.io/v1alpha1/namespaces/default/workflows/wf"
    assert failure(raw, api, "PATCH", path, {"spec": {"x": 1}}, "application/strategic-merge-patch+json")[0] == 415


def test_stale_resource_version_is_409_and_a_noop_keeps_it(core, web):
    pod = core.read_namespaced_pod("web-1", "default")
    core.patch_namespaced_pod("web-1", "default", {"metadata": {"labels": {"seen": "yes"}}})
    pod.metadata.labels["stale"] = "write"
    code, body, _ = failure(core.replace_namespaced_pod, "web-1", "default", pod)
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"].startswith('Operation cannot be fulfilled on pods "web-1": the object has been modified')
    fresh = core.read_namespaced_pod("web-1", "default")
    again = core.patch_namespaced_pod("web-1", "default", {"metadata": {"labels": {"seen": "yes"}}})
    assert again.metadata.resource_version == fresh.metadata.resource_version
    fresh.metadata.labels["replaced"] = "ok"
    assert core.replace_namespaced_pod("web-1", "default", fresh).metadata.labels["replaced"] == "ok"


def test_pod_spec_is_immutable(core, web):
    code, body, _ = failure(core.patch_namespaced_pod, "web-1", "default", {"spec": {"nodeName": "node-9"}})
    assert code == 422 and "pod updates may not change fields" in body["message"]


# --- other kinds ----------------------------------------------------------------------------


def _quarantine_policy(name: str = "quarantine-web-1") -> client.V1NetworkPolicy:
    return client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name=name, labels={"falco-response": "quarantine"}),
        spec=client.V1NetworkPolicySpec(pod_selector=client.V1LabelSelector(match_labels={"app": "web"}), egress=[]),
    )


def test_network_policies(api):
    net = client.NetworkingV1Api(api)
    created = net.create_namespaced_network_policy("default", _quarantine_policy())
    assert created.spec.policy_types == ["Ingress"] and created.metadata.uid
    code, body, _ = failure(net.create_namespaced_network_policy, "default", _quarantine_policy())
    assert code == 409 and body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "quarantine-web-1", "group": "networking.k8s.io", "kind": "networkpolicies"}
    assert [
        p.metadata.name for p in net.list_namespaced_network_policy("default", label_selector="falco-response").items
    ] == ["quarantine-web-1"]
    status = net.delete_namespaced_network_policy("quarantine-web-1", "default")
    assert status.status == "Success"
    code, body, _ = failure(net.read_namespaced_network_policy, "quarantine-web-1", "default")
    assert body["message"] == 'networkpolicies.networking.k8s.io "quarantine-web-1" not found'


def test_dry_run_stores_nothing(kube, api):
    client.NetworkingV1Api(api).create_namespaced_network_policy("default", _quarantine_policy(), dry_run="All")
    assert kube.list("networkpolicies") == []


def test_workflows_custom_objects(api):
    custom = client.CustomObjectsApi(api)
    args = ("argoproj.io", "v1alpha1", "default", "workflows")
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "respond-abc", "labels": {"rule": "shell"}},
        "spec": {"workflowTemplateRef": {"name": "respond"}},
    }
    created = custom.create_namespaced_custom_object(*args, workflow)
    assert created["metadata"]["resourceVersion"] and created["kind"] == "Workflow"
    code, body, _ = failure(custom.create_namespaced_custom_object, *args, workflow)
    assert (
        code == 409
        and body["reason"] == "AlreadyExists"
        and body["message"] == 'workflows.argoproj.io "respond-abc" already exists'
    )
    generated = custom.create_namespaced_custom_object(*args, {"metadata": {"generateName": "respond-"}, "spec": {}})
    assert re.fullmatch(r"respond-[a-z0-9]{5}", generated["metadata"]["name"])
    listed = custom.list_namespaced_custom_object(*args, label_selector="rule=shell")
    assert listed["kind"] == "WorkflowList" and [w["metadata"]["name"] for w in listed["items"]] == ["respond-abc"]
    patched = custom.patch_namespaced_custom_object(*args, "respond-abc", {"metadata": {"labels": {"phase": "done"}}})
    assert patched["metadata"]["labels"] == {"rule": "shell", "phase": "done"}
    assert (
        failure(custom.replace_namespaced_custom_object, *args, "respond-abc", workflow)[0] == 422
    )  # no resourceVersion
    stale = {
        **workflow,
        "metadata": {**workflow["metadata"], "resourceVersion": created["metadata"]["resourceVersion"]},
    }
    assert failure(custom.replace_namespaced_custom_object, *args, "respond-abc", stale)[0] == 409
    assert custom.delete_namespaced_custom_object(*args, "respond-abc")["status"] == "Success"
    assert failure(custom.get_namespaced_custom_object, *args, "respond-abc")[0] == 404


def test_leases_and_events(api):
    leases = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(
        "default",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="node-1-web-1"), spec=client.V1LeaseSpec(holder_identity="wf-1")
        ),
    )
    lease.spec.holder_identity = "wf-2"
    assert leases.replace_namespaced_lease("node-1-web-1", "default", lease).spec.holder_identity == "wf-2"
    lease.spec.holder_identity = "wf-3"
    assert failure(leases.replace_namespaced_lease, "node-1-web-1", "default", lease)[0] == 409
    core = client.CoreV1Api(api)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="web-1."),
        involved_object=client.V1ObjectReference(kind="Pod", name="web-1", namespace="default"),
        reason="Quarantined",
        message="falco-response quarantined the pod",
        type="Warning",
    )
    core.create_namespaced_event("default", event)
    found = core.list_namespaced_event("default", field_selector="involvedObject.name=web-1,reason=Quarantined")
    assert [e.message for e in found.items] == ["falco-response quarantined the pod"]


def test_version_and_unknown_paths(api, kube):
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    response = requests.get(
        f"{kube.url}/apis/example.com/v1/things", headers={"Authorization": "Bearer standin-token"}, timeout=5
    )
    assert (
        response.status_code == 404 and response.json()["message"] == "the server could not find the requested resource"
    )


# --- the kubelet checkpoint endpoint --------------------------------------------------------


def test_checkpoint_direct_writes_a_realistic_archive(kube, web):
    response = kubelet_post(kube, "/checkpoint/default/web-1/app?timeout=60")
    assert response.status_code == 200, response.text
    (item,) = response.json()["items"]
    directory = kube.checkpoint_dir("node-1")
    assert item.startswith("/var/lib/kubelet/checkpoints/") and ARCHIVE_NAME.match(item.rsplit("/", 1)[1])
    archive = directory / item.rsplit("/", 1)[1]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600 and stat.S_IMODE(directory.stat().st_mode) == 0o700
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        config_dump = json.load(tar.extractfile("config.dump"))
        spec_dump = json.load(tar.extractfile("spec.dump"))
        images = {n: tar.extractfile(n).read() for n in names if n.startswith("checkpoint/") and n != "checkpoint"}
        with tarfile.open(fileobj=io.BytesIO(tar.extractfile("rootfs-diff.tar").read())) as inner:
            assert inner.getnames()
    assert {"config.dump", "spec.dump", "rootfs-diff.tar", "stats-dump", "container.log", "status"} <= names
    # containerd's makeContainerName: <container>_<pod>_<namespace>_<pod uid>_<attempt>
    assert config_dump["id"] == CID and config_dump["name"] == f"app_web-1_default_{web['metadata']['uid']}_0"
    assert config_dump["rootfsImageName"] == "nginx:1.27"
    assert {"runtime", "createdTime"} <= set(config_dump)
    annotations = spec_dump["annotations"]
    assert (
        annotations["io.kubernetes.cri.sandbox-name"],
        annotations["io.kubernetes.cri.sandbox-namespace"],
        annotations["io.kubernetes.cri.container-name"],
    ) == ("web-1", "default", "app")
    sums = dict(
        reversed(line.split()) for line in (shared_dir() / "criu-sample" / "SHA256SUMS").read_text().splitlines()
    )
    # standin.criu.scenario: the sample's process keeps its images byte for byte, renamed to its pid in the tree
    from standin.criu.scenario import SAMPLE_PID, SLEEP_PID

    kept = {n: n.replace(f"-{SAMPLE_PID}.", f"-{SLEEP_PID}.") for n in sums if n.endswith(".img")}
    kept = {old: new for old, new in kept.items() if not old.startswith(("core-", "pstree", "files"))}
    assert len(kept) == 9 and all(hashlib.sha256(images[f"checkpoint/{new}"]).hexdigest() == sums[old] for old, new in kept.items())


def test_kubelet_tls_verification_needs_the_ca(kube, web):
    with pytest.raises(requests.exceptions.SSLError):
        kubelet_post(kube, "/checkpoint/default/web-1/app", verify=False)


def test_checkpoint_refusals_answer_like_the_kubelet(kube, web):
    kube.add_node("node-2")
    assert (r := kubelet_post(kube, "/checkpoint/default/web-1/app", token=None)).status_code == 401
    assert kubelet_post(kube, "/checkpoint/default/web-1/app", token="wrong").status_code == 401
    assert (
        r := kubelet_post(kube, "/checkpoint/default/web-1/app", node="node-2")
    ).status_code == 404 and r.text == "pod does not exist"
    assert (
        r := kubelet_post(kube, "/checkpoint/default/web-1/nope")
    ).status_code == 404 and r.text == "container nope does not exist"
    assert kubelet_post(kube, "/checkpoint/default/web-1/app?timeout=1m").status_code == 404
    kube.set_checkpoint_behaviour("node-1", "gate-off")
    assert (
        r := kubelet_post(kube, "/checkpoint/default/web-1/app")
    ).status_code == 404 and r.text == "404 page not found"
    kube.set_checkpoint_behaviour("node-1", "unsupported")
    r = kubelet_post(kube, "/checkpoint/default/web-1/app")
    assert r.status_code == 500
    assert r.text.startswith("checkpointing of default/web-1/app failed (rpc error: code = Unimplemented desc = ")
    assert list(kube.checkpoint_dir("node-1").iterdir()) == []


def test_checkpoint_through_the_api_server_proxy(kube, api, web):
    path = "/api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}"
    answer = api.call_api(
        path,
        "POST",
        path_params={"node": "node-1", "namespace": "default", "pod": "web-1", "container": "app"},
        query_params=[("timeout", 30)],
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        response_type="object",
        _return_http_data_only=True,
    )
    (item,) = answer["items"]
    assert (kube.checkpoint_dir("node-1") / item.rsplit("/", 1)[1]).is_file()
    code, body, _ = failure(raw, api, "POST", "/api/v1/nodes/node-9/proxy/checkpoint/default/web-1/app")
    assert code == 404 and body["message"] == 'nodes "node-9" not found'
    assert ("POST", "/api/v1/nodes/node-1/proxy/checkpoint/default/web-1/app", 200) in kube.requests


def test_checkpoint_padding_makes_bigger_archives(kube, web):
    kube.set_checkpoint_padding("node-1", 3_000_000)
    (item,) = kubelet_post(kube, "/checkpoint/default/web-1/app").json()["items"]
    archive = kube.checkpoint_dir("node-1") / item.rsplit("/", 1)[1]
    assert archive.stat().st_size > 3_000_000
    with tarfile.open(archive) as tar:
        assert tar.getmember("checkpoint/pages-2.img").size == 3_000_000


# --- kubelet serving certificates, kube-root-ca.crt, CRIU and TCP ---------------------------


def _peer(kube, node: str, cafile, server_hostname: str):
    """TLS handshake with the node's kubelet: (leaf certificate, None) or (None, the SSL error)."""
    import socket
    import ssl

    from cryptography import x509

    port = int(kube.kubelet_url(node).rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with context.wrap_socket(sock, server_hostname=server_hostname) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)), None
    except ssl.SSLCertVerificationError as exc:
        return None, exc.verify_message


def _sans(cert) -> list[str]:
    from cryptography import x509

    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted([f"DNS:{n}" for n in names.get_values_for_type(x509.DNSName)]
                  + [f"IP:{n}" for n in names.get_values_for_type(x509.IPAddress)])


def test_kube_root_ca_is_published_in_every_namespace(kube, core):
    """kube-controller-manager's root-ca-cert-publisher (pkg/controller/certificates/
    rootcacertpublisher/publisher.go, syncNamespace): ConfigMap kube-root-ca.crt, data ca.crt = the
    cluster CA (the one that signs serverTLSBootstrap kubelets), annotation kubernetes.io/description,
    in namespaces old and new; a changed or deleted copy is put back (configMapUpdated/configMapDeleted
    queue the ConfigMap's namespace)."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    ca = kube.kubelet_ca.read_text()
    for namespace in ("default", "shop", "falco-response"):
        cm = core.read_namespaced_config_map("kube-root-ca.crt", namespace)
        assert cm.data == {"ca.crt": ca}
        assert cm.metadata.annotations["kubernetes.io/description"].startswith("Contains a CA bundle")
    core.patch_namespaced_config_map("kube-root-ca.crt", "shop", {"data": {"ca.crt": "forged"}})
    assert core.read_namespaced_config_map("kube-root-ca.crt", "shop").data == {"ca.crt": ca}
    uid = core.read_namespaced_config_map("kube-root-ca.crt", "default").metadata.uid
    core.delete_namespaced_config_map("kube-root-ca.crt", "default")
    back = core.read_namespaced_config_map("kube-root-ca.crt", "default")
    assert back.data == {"ca.crt": ca} and back.metadata.uid != uid


def test_kubelet_certificates_are_made_as_real_clusters_make_them(kube):
    """cluster-ca (serverTLSBootstrap; pkg/kubelet/certificate/kubelet.go: subject system:node:<name>
    / system:nodes, SANs from the node's addresses, addressesToHostnamesAndIPs) verifies with
    kube-root-ca.crt by name and by IP. self-signed (cmd/kubelet/app/server.go InitializeTLS ->
    client-go util/cert GenerateSelfSignedCertKey(hostname, nil, nil)): CN <host>@<time> from CA
    <host>-ca@<time>, served with the certificate; only the hostname, so no IP verifies."""
    kube.add_node("node-2", tls="self-signed")
    root = kube.workdir / "root-ca.crt"
    root.write_text(kube.get("configmaps", "default", "kube-root-ca.crt")["data"]["ca.crt"])
    for name in ("node-1", "127.0.0.1"):
        cert, error = _peer(kube, "node-1", root, name)
        assert error is None, error
    assert _sans(cert) == ["DNS:node-1", "IP:127.0.0.1"]
    assert cert.subject.rfc4514_string() == "CN=system:node:node-1,O=system:nodes"
    for name in ("node-2", "127.0.0.1"):
        assert _peer(kube, "node-2", root, name) == (None, "self-signed certificate in certificate chain")
    cert, error = _peer(kube, "node-2", kube.node_ca("node-2"), "node-2")
    assert error is None, error
    assert _sans(cert) == ["DNS:node-2"]
    assert re.fullmatch(r"CN=node-2@\d+", cert.subject.rfc4514_string())
    assert re.fullmatch(r"CN=node-2-ca@\d+", cert.issuer.rfc4514_string())
    assert _peer(kube, "node-2", kube.node_ca("node-2"), "127.0.0.1")[1].startswith("IP address mismatch")
    with pytest.raises(ValueError, match="kubelet TLS mode"):
        kube.add_node("node-3", tls="insecure")


def test_criu_refuses_an_established_tcp_connection_unless_the_node_allows_it(kube):
    """containerd 2.x + runc, CRIU without tcp-established (criu/sk-inet.c can_dump_inet_sk):
    the kubelet's 500 (pkg/kubelet/server/server.go) carries containerd's message, which names the
    copy of CRIU's log, not CRIU's reason (standin.kube.kubelet.criu_tcp_refusal cites each layer)."""
    kube.add_pod("default", "shell-1", "node-1",
                 containers=[{"name": "app", "image": "alpine:3.20", "id": CID, "tcp_established": True}])
    r = kubelet_post(kube, "/checkpoint/default/shell-1/app")
    assert r.status_code == 500
    assert r.text == (
        'checkpointing of default/shell-1/app failed (rpc error: code = Unknown desc = checkpointing container '
        f'"{CID}" failed: runc did not terminate successfully: exit status 1: criu failed: type DUMP errno 0 '
        f"path= /run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}/criu-dump.log: unknown)"
    )
    assert list(kube.checkpoint_dir("node-1").iterdir()) == []
    kube.set_criu_tcp_established("node-1", True)  # `tcp-established` in /etc/criu/runc.conf
    assert kubelet_post(kube, "/checkpoint/default/shell-1/app").status_code == 200
    kube.set_criu_tcp_established("node-1", False)
    kube.set_tcp_connection("default", "shell-1", "app", connected=False)  # the shell hung up
    assert kubelet_post(kube, "/checkpoint/default/shell-1/app").status_code == 200



def test_crio_node_answers_checkpoint_refusals_with_crio_s_texts(kube):
    """runtime="cri-o": CRI-O 1.31 with runc >= 1.2 (standin.kube.kubelet.crio_criu_tcp_refusal
    cites each layer). The TCP refusal carries runc's whole stderr (cri-o internal/oci/
    runtime_oci.go runtimeCmd "`%v %v` failed: %v %v: %w", CheckpointContainer "running %q %q
    failed: %w"; internal/lib/checkpoint.go "failed to checkpoint container %s: %w"), in which
    runc quotes dump.log's Error lines in logrus text (libcontainer/criu_linux.go logCriuErrors,
    utils.go fatal). CRI-O without CRIU: server/container_checkpoint.go "checkpoint/restore support
    not available", gRPC Unknown. The kubelet reports the runtime as cri-o://<version>
    (nodestatus/setters.go VersionInfo; cri-o server/version.go)."""
    kube.add_node("node-2", runtime="cri-o")
    assert kube.get("nodes", "", "node-2")["status"]["nodeInfo"]["containerRuntimeVersion"] == "cri-o://1.31.13"
    assert kube.get("nodes", "", "node-1")["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://2.0.2"
    kube.add_pod("default", "shell-2", "node-2",
                 containers=[{"name": "app", "image": "alpine:3.20", "id": CID, "tcp_established": True}])
    r = kubelet_post(kube, "/checkpoint/default/shell-2/app", node="node-2")
    assert r.status_code == 500
    when = re.search(r'time="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"', r.text).group(1)
    d = f"/var/lib/containers/storage/overlay-containers/{CID}/userdata"
    warn = f'time="{when}" level=warning msg='
    assert r.text == (
        "checkpointing of default/shell-2/app failed (rpc error: code = Unknown desc = failed to checkpoint container "
        f'{CID}: running "/usr/libexec/crio/runc" ["checkpoint" "--file-locks" "--image-path" "{d}/checkpoint" '
        f'"--work-path" "{d}" "--leave-running" "{CID}"] failed: `/usr/libexec/crio/runc --root /run/runc '
        f"--systemd-cgroup checkpoint --file-locks --image-path {d}/checkpoint --work-path {d} --leave-running {CID}` "
        f'failed: {warn}"--- Quoting \\"{d}/dump.log\\""\n'
        f'{warn}"1952:(00.063251) sid=1 pgid=1 pid=1"\n'
        f'{warn}"1953:(00.063298) "\n'
        f'{warn}"1954:(00.063304) Dumping opened files (pid: 17508)"\n'
        f'{warn}"1955:(00.063306) ----------------------------------------"\n'
        f'{warn}"1956:(00.063361) 17508 fdinfo 0: pos:                0 flags:                2/0"\n'
        f'{warn}"1957:(00.063420) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using '
        '--tcp-established option."\n'
        f'{warn}"1958:(00.063431) ----------------------------------------"\n'
        f'{warn}"1959:(00.063479) Error (criu/cr-dump.c:1698): Dump files (pid: 17508) failed with -1"\n'
        f"{warn}...\n"
        f'{warn}"2011:(00.068501) Waiting for 17508 to trap"\n'
        f'{warn}"2012:(00.068543) Daemon 17508 exited trapping"\n'
        f'{warn}"2013:(00.070992) Unlock network"\n'
        f'{warn}"2014:(00.071110) Unfreezing tasks into 1"\n'
        f'{warn}"2015:(00.071115) \\tUnseizing 17508 into 1"\n'
        f'{warn}"2016:(00.071391) Error (criu/cr-dump.c:2128): Dumping FAILED."\n'
        f"{warn}---\n"
        f'time="{when}" level=error msg="criu failed: type DUMP errno 0"\n'
        " : exit status 1)"
    )
    assert list(kube.checkpoint_dir("node-2").iterdir()) == []
    kube.set_criu_tcp_established("node-2", True)
    assert kubelet_post(kube, "/checkpoint/default/shell-2/app", node="node-2").status_code == 200
    kube.set_checkpoint_behaviour("node-2", "unsupported")
    r = kubelet_post(kube, "/checkpoint/default/shell-2/app", node="node-2")
    assert (r.status_code, r.text) == (
        500,
        "checkpointing of default/shell-2/app failed (rpc error: code = Unknown desc = checkpoint/restore support "
        "not available)",
    )
    with pytest.raises(ValueError, match="container runtime must be one of"):
        kube.add_node("node-3", runtime="docker")

# --- fault injection ------------------------------------------------------------------------


def test_fail_next_hits_matching_requests_only(kube, core, web):
    kube.fail_next(503, count=2, method="GET", path=r"/pods/web-1$")
    core.list_namespaced_pod("default")  # does not match: served
    for _ in range(2):
        code, body, _ = failure(core.read_namespaced_pod, "web-1", "default")
        assert code == 503 and body["reason"] == "ServiceUnavailable"
    assert core.read_namespaced_pod("web-1", "default").metadata.name == "web-1"
    assert [s for m, p, s in kube.requests if p.endswith("/pods/web-1")] == [503, 503, 200]
    kube.fail_next(429)
    code, body, exc = failure(core.list_node)
    assert code == 429 and body["reason"] == "TooManyRequests" and exc.headers["Retry-After"] == "0"


def test_fail_next_reaches_the_kubelet(kube, web):
    kube.fail_next(500, path=r"^/checkpoint/")
    assert kubelet_post(kube, "/checkpoint/default/web-1/app").status_code == 500
    assert kubelet_post(kube, "/checkpoint/default/web-1/app").status_code == 200
    assert [s for m, p, s in kube.requests if p.startswith("/checkpoint/")] == [500, 200]


def test_latency_and_request_hooks(kube, core, web):
    kube.set_latency(0.3, path=r"/nodes$")
    started = time.monotonic()
    core.list_node()
    assert time.monotonic() - started >= 0.3
    kube.set_latency(0, path=r"/nodes$")
    seen = []
    remove = kube.on_request(
        lambda method, path: (
            seen.append((method, path)) or (path.endswith("/pods/web-1") and kube.delete("pods", "default", "web-1"))
        )
    )
    assert failure(core.read_namespaced_pod, "web-1", "default")[0] == 404  # vanished mid-request
    remove()
    core.list_namespace()
    assert seen == [("GET", "/api/v1/namespaces/default/pods/web-1")]


def test_context_manager_stops_servers(tmp_path):
    with FakeKube(tmp_path) as kube:
        url = kube.url
        assert requests.get(f"{url}/version", headers={"Authorization": "Bearer standin-token"}, timeout=5).ok
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/version", timeout=2)


def test_step_env_reaches_the_standin_from_a_subprocess(kube, step_env, web):
    code = (
        "from steps import kube; from steps.common import body, kube_api_client; "
        "print(body(kube.CoreV1Api(kube_api_client()).read_namespaced_pod('web-1', 'default'))['metadata']['name'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=step_env(step="verify"), cwd=kube.workdir, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "web-1"
