"""RBAC audit of build/: no wildcards, nodes/proxy only when configured, each account's verbs = its step's."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml

from engine import config, names, rbac

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"


def _load_rbac() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((BUILD / "rbac").glob("*.yaml"))]


def _grants(objects: list[dict]) -> dict[str, set[tuple[str, str, str]]]:
    """service account -> {(apiGroup, resource, verb)} it holds through any binding."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["rules"]
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    out: dict[str, set] = defaultdict(set)
    for b in objects:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = b["roleRef"]
        rules = roles[(ref["kind"], b["metadata"].get("namespace") if ref["kind"] == "Role" else None, ref["name"])]
        for subject in b["subjects"]:
            for rule in rules:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            out[subject["name"]].add((group, resource, verb))
    return out


def test_no_wildcards_anywhere():
    for obj in _load_rbac():
        for rule in obj.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (obj["metadata"]["name"], rule)
            assert "resourceNames" not in rule or "*" not in rule["resourceNames"]


def test_no_nodes_proxy_by_default_and_checkpoint_is_least_privilege():
    grants = _grants(_load_rbac())
    assert all(r != "nodes/proxy" for account in grants.values() for _, r, _ in account)
    assert ("", "nodes/checkpoint", "create") in grants["falco-response-checkpoint"]


def test_nodes_proxy_only_when_configured():
    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["settings"]["checkpoint"]["path"] = "apiserver-proxy"
    settings = config.parse(raw).settings
    rules = rbac.cluster_rules("checkpoint", settings)
    assert {"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["create"]} in rules
    assert all("nodes/checkpoint" not in r["resources"] for r in rules)


EXPECTED = {
    "falco-response-verify": {
        ("", "pods", "get"), ("apps", "replicasets", "get"),  # the blast-radius cap (steps/owner_cap.py)
        ("coordination.k8s.io", "leases", "create"), ("coordination.k8s.io", "leases", "list"),
        # isolate-first: verify's pod applies the deny-all and the quarantine label (steps/verify.py isolate)
        ("", "pods", "patch"), ("networking.k8s.io", "networkpolicies", "get"),
        ("networking.k8s.io", "networkpolicies", "list"), ("networking.k8s.io", "networkpolicies", "create"),
        # the evidence bundle, read before isolation (steps/bundle.py; tests/test_bundle.py removes each -> 403)
        ("", "pods/log", "get"), ("", "events", "list"), ("", "nodes", "get"),
        ("apps", "deployments", "get"), ("apps", "statefulsets", "get"), ("apps", "daemonsets", "get"),
        ("batch", "jobs", "get"), ("batch", "cronjobs", "get"),
    },
    "falco-response-checkpoint": {("", "pods", "get"), ("", "nodes", "get"), ("", "nodes/checkpoint", "create")},
    "falco-response-copy": set(),
    "falco-response-analyze": set(),  # S3 only (steps/analyze.py)
    "falco-response-quarantine": {
        ("", "pods", "get"), ("", "pods", "patch"), ("", "services", "list"),
        ("apps", "replicasets", "get"), ("apps", "statefulsets", "get"), ("apps", "daemonsets", "get"),
        ("networking.k8s.io", "networkpolicies", "get"), ("networking.k8s.io", "networkpolicies", "list"),
        ("networking.k8s.io", "networkpolicies", "create"),
    },
    "falco-response-delete": {("", "pods", "get"), ("", "pods", "delete")},
    "falco-response-report": {("", "pods", "get"), ("", "events", "create"), ("argoproj.io", "workflows", "get")},
    "falco-response-executor": set(),
    "falco-response-sensor": {
        ("argoproj.io", "workflows", "create"), ("argoproj.io", "workflows", "list"),
        ("argoproj.io", "workflowtemplates", "get"),
    },
}
EXECUTOR = {("argoproj.io", "workflowtaskresults", "create"), ("argoproj.io", "workflowtaskresults", "patch")}


def test_each_account_holds_exactly_its_steps_verbs():
    grants = _grants(_load_rbac())
    for account, expected in EXPECTED.items():
        executor = set() if account == "falco-response-sensor" else EXECUTOR
        assert grants.get(account, set()) == expected | executor, account


def test_every_workflow_pod_account_exists_and_has_executor_rights():
    accounts = {o["metadata"]["name"] for o in _load_rbac() if o["kind"] == "ServiceAccount"}
    grants = _grants(_load_rbac())
    for wt in (BUILD / "pipelines").glob("*.yaml"):
        for template in yaml.safe_load(wt.read_text())["spec"]["templates"]:
            for account in (template.get("serviceAccountName"), (template.get("executor") or {}).get("serviceAccountName")):
                if account:
                    assert account in accounts
                    assert EXECUTOR <= grants[account], account


def test_a_token_is_mounted_exactly_where_a_step_calls_the_api():
    """Argo copies a template's automountServiceAccountToken onto the Pod only when it is false
    (workflow/controller/workflowpod.go, setupServiceAccount), and ServiceAccount admission then
    takes the Pod's field, else the ServiceAccount's, else true (plugin/pkg/admission/
    serviceaccount/admission.go, shouldAutomount). So the ServiceAccount decides for API-calling
    steps, and a template's `true` would be a no-op that misleads: none may say it."""
    automount = {o["metadata"]["name"]: o.get("automountServiceAccountToken") for o in _load_rbac()
                 if o["kind"] == "ServiceAccount"}
    for step in names.STEPS:
        assert automount[names.step_service_account(step)] is (step not in ("copy", "analyze")), step
    assert automount[names.step_service_account("executor")] is False
    for path in sorted((BUILD / "pipelines").glob("*.yaml")):
        for template in yaml.safe_load(path.read_text())["spec"]["templates"]:
            if "container" in template:
                assert template.get("automountServiceAccountToken") in (None, False), (path.name, template["name"])


def test_the_executor_token_secret_exists_where_an_executor_account_is_used():
    """`executor.serviceAccountName` makes the controller mount the Secret named by
    util/secrets/secret_name.go TokenNameForServiceAccount (`<sa>.service-account-token` for an
    account without `secrets`); since Kubernetes 1.24 nothing creates it, so build/ must."""
    objects = _load_rbac()
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Secret"}
    checked = 0
    for path in sorted((BUILD / "pipelines").glob("*.yaml")):
        wt = yaml.safe_load(path.read_text())
        for template in wt["spec"]["templates"]:
            executor = (template.get("executor") or {}).get("serviceAccountName")
            if template.get("automountServiceAccountToken") is False:
                assert executor, f"{path.name}: {template['name']}: Argo refuses automount false without an executor"
            if not executor:
                continue
            secret = secrets.get((wt["metadata"]["namespace"], names.executor_token_secret(executor)))
            assert secret is not None, f"{path.name}: {template['name']}: no token Secret for {executor}"
            assert secret["type"] == "kubernetes.io/service-account-token"
            assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == executor
            checked += 1
    assert checked, "no template names an executor account: nothing was checked"
