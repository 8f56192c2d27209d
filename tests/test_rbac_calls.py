"""Each step's service account holds what that step calls: every request a step sends to the
stand-in API server (and kubelet), mapped to RBAC (apiGroup, resource, verb), is granted by
build/'s RBAC to that step's service account. Complements the static audit in test_rbac.py."""

from __future__ import annotations

import re

from tests.test_rbac import _grants, _load_rbac
from tests.test_report import add_workflow, nodes
from tests.test_report import flags as report_flags
from tests.test_quarantine import flags as quarantine_flags
from tests.test_verify import add_web_pod, run_step, verify_flags

_CORE = re.compile(r"^/api/v1/(?:namespaces/[^/]+/)?(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?")
_GROUP = re.compile(
    r"^/apis/(?P<group>[^/]+)/[^/]+/(?:namespaces/[^/]+/)?(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?"
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def rbac_of(method: str, path: str) -> tuple[str, str, str]:
    path = path.split("?")[0]
    if path.startswith("/checkpoint/"):
        return ("", "nodes/checkpoint", "create")  # the kubelet authorises through SubjectAccessReview
    m = _CORE.match(path) or _GROUP.match(path)
    assert m, f"unmapped request path {path}"
    group = m.groupdict().get("group") or ""
    resource = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
    verb = _VERBS.get(method) or ("get" if m["name"] else "list")
    return (group, resource, verb)


def _calls(kube, run) -> set[tuple[str, str, str]]:
    before = len(kube.requests)
    result = run()
    assert result.rc == 0, result.stderr
    return {rbac_of(method, path) for method, path, _ in kube.requests[before:]}


def test_mapping_of_request_paths():
    assert rbac_of("GET", "/api/v1/namespaces/default/pods/web") == ("", "pods", "get")
    assert rbac_of("GET", "/api/v1/namespaces/default/services") == ("", "services", "list")
    assert rbac_of("POST", "/apis/networking.k8s.io/v1/namespaces/d/networkpolicies") == (
        "networking.k8s.io", "networkpolicies", "create")
    assert rbac_of("POST", "/api/v1/nodes/node-1/proxy/checkpoint/a/b/c") == ("", "nodes/proxy", "create")
    assert rbac_of("GET", "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows/wf") == ("argoproj.io", "workflows", "get")


def test_every_step_call_is_granted_to_its_service_account(kube, tmp_path):
    grants = _grants(_load_rbac())
    add_web_pod(kube, labels={"app": "web"})
    kube.add_service("default", "web", {"app": "web"})
    used: dict[str, set] = {}

    used["verify"] = _calls(kube, lambda: run_step(kube, "verify", verify_flags(), tmp_path))
    used["quarantine"] = _calls(kube, lambda: run_step(kube, "quarantine", quarantine_flags(), tmp_path))
    add_workflow(kube, nodes())
    used["report"] = _calls(kube, lambda: run_step(kube, "report", report_flags(), tmp_path))
    used["delete"] = _calls(kube, lambda: run_step(kube, "delete", {"namespace": "default", "pod": "web-1"}, tmp_path))
    kube.add_pod("default", "web-2", "node-1", containers=[{"name": "app", "image": "nginx:1.27"}])
    used["checkpoint"] = _calls(
        kube,
        lambda: run_step(
            kube, "checkpoint",
            {"namespace": "default", "pod": "web-2", "container": "app", "node": "node-1",
             "ca-bundle": str(kube.kubelet_ca)},
            tmp_path,
        ),
    )
    for step, calls in used.items():
        assert calls, step
        missing = calls - grants[f"falco-response-{step}"]
        assert not missing, f"{step} calls {missing} that its service account is not granted"
