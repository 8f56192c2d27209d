"""The stand-in API server and kubelets authenticate every caller and authorise it with RBAC from
the objects applied (build/rbac in the `kube` fixture), as a real cluster does: each test here
names the upstream function whose behaviour it pins, and would pass against a lenient stand-in
only if it were wrong."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from kubernetes import client, config

from engine import names
from standin.kube import PodPending
from tests.conftest import WORKFLOW_NAMESPACE, step_token


def api_for(kube, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kube.kubeconfig_for(token)), client_configuration=configuration)
    configuration.retries = False
    return client.ApiClient(configuration)


def status_of(call, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(client.ApiException) as info:
        call(*args, **kwargs)
    return info.value.status, json.loads(info.value.body)


@pytest.fixture
def web(kube):
    return kube.add_pod("default", "web-1", "node-1", containers=[{"name": "app", "image": "nginx:1.27"}])


def test_forbidden_is_the_real_status_body(kube, web):
    """k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go forbiddenMessage inside
    apimachinery errors.NewForbidden: verify may get pods, not list them, and not delete one."""
    core = client.CoreV1Api(api_for(kube, step_token(kube, "verify")))
    assert core.read_namespaced_pod("web-1", "default").metadata.name == "web-1"
    code, body = status_of(core.list_namespaced_pod, "default")
    assert code == 403
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods is forbidden: User "system:serviceaccount:falco-response:falco-response-verify" '
                   'cannot list resource "pods" in API group "" in the namespace "default"',
        "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403,
    }
    code, body = status_of(core.delete_namespaced_pod, "web-1", "default")
    assert code == 403 and body["details"] == {"name": "web-1", "kind": "pods"}
    assert body["message"].startswith('pods "web-1" is forbidden: User "system:serviceaccount:falco-response:')
    # delete's identity reads no node (verify's does since the evidence bundle: steps/bundle.py)
    code, body = status_of(client.CoreV1Api(api_for(kube, step_token(kube, "delete"))).read_node, "node-1")
    assert code == 403 and body["message"].endswith('cannot get resource "nodes" in API group "" at the cluster scope')


def test_a_rolebinding_to_a_clusterrole_grants_only_in_its_namespace(kube):
    """plugin/pkg/auth/authorizer/rbac/rbac.go VisitRulesFor: RoleBindings are read only in the
    request's namespace, whatever role they name."""
    kube.add_namespace("shop")
    kube.add_namespace("bank")
    kube.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": "shop"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cm-reader"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r", "namespace": "shop"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "shop"}]},
    ])
    kube.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prices", "namespace": "shop"}}])
    core = client.CoreV1Api(api_for(kube, kube.service_account_token("shop", "reader")))
    assert "prices" in [c.metadata.name for c in core.list_namespaced_config_map("shop").items]
    assert status_of(core.list_namespaced_config_map, "bank")[0] == 403
    assert status_of(core.list_config_map_for_all_namespaces)[0] == 403


def test_resource_names_and_subresources(kube, web):
    """pkg/apis/rbac/v1/evaluation_helpers.go ResourceMatches/ResourceNameMatches: `pods` does
    not grant `pods/log`, resourceNames restrict by name, and never match a list."""
    kube.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "one", "namespace": "default"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "one", "namespace": "default"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "resourceNames": ["web-1"], "verbs": ["get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "one", "namespace": "default"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one"},
         "subjects": [{"kind": "ServiceAccount", "name": "one", "namespace": "default"}]},
    ])
    kube.add_pod("default", "web-2", "node-1")
    core = client.CoreV1Api(api_for(kube, kube.service_account_token("default", "one")))
    assert core.read_namespaced_pod("web-1", "default").metadata.name == "web-1"
    assert status_of(core.read_namespaced_pod, "web-2", "default")[0] == 403
    assert status_of(core.list_namespaced_pod, "default")[0] == 403


def test_a_rolebinding_subject_without_namespace_is_the_bindings(kube):
    """pkg/registry/rbac/validation/rule.go appliesToUser: a ServiceAccount subject with no namespace
    in a RoleBinding means the RoleBinding's namespace, and only that one."""
    rbac = "rbac.authorization.k8s.io"
    kube.add_namespace("shop")
    kube.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": "default"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader", "namespace": "shop"}},
        {"apiVersion": f"{rbac}/v1", "kind": "Role", "metadata": {"name": "read-pods", "namespace": "default"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
        {"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": {"name": "read-pods", "namespace": "default"},
         "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "read-pods"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader"}]},
    ])
    url = f"{kube.url}/api/v1/namespaces/default/pods"
    for namespace, status in (("default", 200), ("shop", 403)):
        token = kube.service_account_token(namespace, "reader")
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == status


def test_unknown_and_revoked_tokens_are_401(kube):
    """A service account token stops authenticating when its ServiceAccount is deleted
    (pkg/serviceaccount/jwt.go Validate -> the validator's GetServiceAccount), and stays dead when an
    account of the same name is made again: claims.go Validate compares the account's UID with the claim."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gone", "namespace": "default"}}
    kube.apply([account])
    token = kube.service_account_token("default", "gone")
    url = f"{kube.url}/api/v1/namespaces/default/pods"
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 403
    kube.delete("serviceaccounts", "default", "gone")
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answer.status_code == 401 and answer.json()["reason"] == "Unauthorized"
    kube.apply([account])
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 401
    fresh = kube.service_account_token("default", "gone")
    assert requests.get(url, headers={"Authorization": f"Bearer {fresh}"}, timeout=5).status_code == 403


def test_the_kubelet_authorises_checkpoint_as_nodes_checkpoint(kube, web):
    """pkg/kubelet/server/auth.go GetRequestAttributes maps /checkpoint to subresource
    `checkpoint` (verb create for POST, name = the node); server.go InstallAuthFilter answers a
    denial with 403 `Forbidden (user=..., verb=..., resource=..., subresource=...)` in plain text."""
    url = f"{kube.kubelet_url('node-1')}/checkpoint/default/web-1/app"
    denied = requests.post(url, headers={"Authorization": f"Bearer {step_token(kube, 'verify')}"},
                           verify=False, timeout=10)
    assert denied.status_code == 403
    assert denied.text == ("Forbidden (user=system:serviceaccount:falco-response:falco-response-verify, verb=create, "
                           "resource=nodes, subresource=checkpoint)")
    assert requests.post(url, headers={"Authorization": "Bearer nope"}, verify=False, timeout=10).status_code == 401
    allowed = requests.post(url, headers={"Authorization": f"Bearer {step_token(kube, 'checkpoint')}"},
                            verify=False, timeout=10)
    assert allowed.status_code == 200, allowed.text


def test_service_account_admission(kube):
    """plugin/pkg/admission/serviceaccount/admission.go Admit: a missing ServiceAccount refuses
    the Pod (403); shouldAutomount takes the Pod's field, else the ServiceAccount's, else true, and
    mountServiceAccountToken adds a kube-api-access-* projected volume at the token path."""
    core = client.CoreV1Api(api_for(kube, kube.token))

    def create(name: str, account: str, automount: bool | None = None) -> client.V1Pod:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"serviceAccountName": account, "containers": [{"name": "main", "image": "busybox"}]}}
        if automount is not None:
            pod["spec"]["automountServiceAccountToken"] = automount
        return core.create_namespaced_pod(WORKFLOW_NAMESPACE, pod)

    code, body = status_of(create, "p0", "missing")
    assert code == 403 and body["message"] == (
        'pods "p0" is forbidden: error looking up service account falco-response/missing: '
        'serviceaccount "missing" not found')

    def token_mounts(pod: client.V1Pod) -> list[str]:
        return [m.name for m in pod.spec.containers[0].volume_mounts or [] if m.mount_path == names.SA_TOKEN_DIR]

    verify, copy = names.step_service_account("verify"), names.step_service_account("copy")
    assert token_mounts(create("p1", verify))[0].startswith("kube-api-access-")  # the account says true
    assert token_mounts(create("p2", copy)) == []  # the account says false
    assert token_mounts(create("p3", copy, automount=True))  # the Pod's field wins
    assert token_mounts(create("p4", verify, automount=False)) == []


def test_token_secret_is_filled_and_mounted(kube):
    """pkg/controller/serviceaccount/tokens_controller.go fills a kubernetes.io/service-account-token
    Secret of an existing account; the kubelet mounts it (pkg/volume/secret SetUpAt), and a Pod
    whose Secret is missing stays Pending with a FailedMount Event."""
    executor = names.step_service_account("executor")
    secret = kube.get("secrets", WORKFLOW_NAMESPACE, names.executor_token_secret(executor))
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert kube.identity(token).name == f"system:serviceaccount:{WORKFLOW_NAMESPACE}:{executor}"

    def pod(name: str, secret_name: str) -> None:
        core = client.CoreV1Api(api_for(kube, kube.token))
        core.create_namespaced_pod(WORKFLOW_NAMESPACE, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"serviceAccountName": names.step_service_account("copy"),
                     "volumes": [{"name": "exec-sa-token", "secret": {"secretName": secret_name}}],
                     "containers": [{"name": "wait", "image": "argoexec", "volumeMounts": [
                         {"name": "exec-sa-token", "mountPath": names.SA_TOKEN_DIR, "readOnly": True}]}]}})

    pod("good", names.executor_token_secret(executor))
    started = kube.start_pod(WORKFLOW_NAMESPACE, "good", "node-1")
    assert started.volumes["exec-sa-token"].files["token"].decode() == token
    assert kube.get("pods", WORKFLOW_NAMESPACE, "good")["status"]["phase"] == "Running"

    pod("bad", "falco-response-other.service-account-token")
    with pytest.raises(PodPending) as pending:
        kube.start_pod(WORKFLOW_NAMESPACE, "bad", "node-1")
    message = ('MountVolume.SetUp failed for volume "exec-sa-token" : '
               'secret "falco-response-other.service-account-token" not found')
    assert pending.value.reason == "ContainerCreating" and pending.value.message == message
    stuck = kube.get("pods", WORKFLOW_NAMESPACE, "bad")
    assert stuck["status"]["phase"] == "Pending"
    assert stuck["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    events = [e for e in kube.list("events", WORKFLOW_NAMESPACE) if e["involvedObject"]["name"] == "bad"]
    assert [(e["reason"], e["message"]) for e in events] == [("FailedMount", message)]


def test_a_token_secret_without_its_account_is_deleted(kube):
    """tokens_controller.go syncSecret: a kubernetes.io/service-account-token Secret whose
    ServiceAccount does not exist is deleted ("service account does not exist, deleting token"),
    and deleting an account takes its token Secrets along; a filled Secret carries the account's uid."""
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
              "metadata": {"name": "ghost-token", "namespace": "default",
                           "annotations": {"kubernetes.io/service-account.name": "ghost"}}}
    kube.apply([secret])
    assert kube.get("secrets", "default", "ghost-token") is None
    account = kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": "ghost", "namespace": "default"}}])[0]
    kube.apply([secret])
    filled = kube.get("secrets", "default", "ghost-token")
    assert filled["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == account["metadata"]["uid"]
    core = client.CoreV1Api(api_for(kube, kube.token))
    core.delete_namespaced_service_account("ghost", "default")
    assert kube.get("secrets", "default", "ghost-token") is None
