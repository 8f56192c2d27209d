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
    "falco-response-verify": {("", "pods", "get")},
    "falco-response-checkpoint": {("", "nodes", "get"), ("", "nodes/checkpoint", "create")},
    "falco-response-copy": set(),
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


def test_step_accounts_do_not_automount_tokens():
    for obj in _load_rbac():
        if obj["kind"] == "ServiceAccount" and obj["metadata"]["name"] != names.SENSOR_SERVICE_ACCOUNT:
            assert obj["automountServiceAccountToken"] is False
