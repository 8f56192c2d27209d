"""quarantine step, through `python -m steps.quarantine` against the stand-in API."""

from __future__ import annotations

import copy
import json


from engine import names
from tests.test_verify import add_web_pod, check_hostile_flags, run_batch, run_step

SELECTOR = {"app": "web", "pod-template-hash": "7c9f8d"}
LABELS = {**SELECTOR, "tier": "frontend", "version": "v1"}


def flags(**over: str) -> dict[str, str]:
    out = {
        "namespace": "default",
        "pod": "web-1",
        "workflow": "argo/falco-response-0123456789abcdef",
        "policy": "shells",
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "alert-time": "2025-11-24T13:24:56.428114287Z",
        "dry-run": "false",
        "protected-namespaces": "kube-system,falco,argo",
    }
    out.update(over)
    return out


def deployment_pod(kube, name: str = "web-1") -> dict:
    rs = kube.add_replicaset("default", "web-7c9f8d", selector=dict(SELECTOR), labels=dict(SELECTOR))
    kube.add_service("default", "web", selector={"app": "web"})
    kube.add_service("default", "other", selector={"app": "other"})
    owner = {"kind": "ReplicaSet", "name": "web-7c9f8d", "uid": rs["metadata"]["uid"]}
    return add_web_pod(kube, name=name, labels=dict(LABELS), owner=owner)


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod(kube, name: str = "web-1") -> dict:
    return kube.get("pods", "default", name)


def writes(kube, since: int) -> list[tuple[str, str, int]]:
    return [r for r in kube.requests[since:] if r[0] not in ("GET",)]


# --- the real thing ---------------------------------------------------------------------------


def test_quarantine_isolates_and_detaches_from_service_and_replicaset(kube, tmp_path):
    deployment_pod(kube)
    before = len(kube.requests)
    run = run_step(kube, "quarantine", flags(), tmp_path)
    assert run.rc == 0, run.stderr
    assert run.outputs["result"] == "quarantined"
    assert json.loads(run.outputs["removed-labels"]) == SELECTOR

    after = pod(kube)
    labels, annotations = after["metadata"]["labels"], after["metadata"]["annotations"]
    assert labels == {"tier": "frontend", "version": "v1", names.LABEL_QUARANTINED: "true", names.LABEL_POLICY: "shells"}
    assert not selects({"app": "web"}, labels)  # the Service lets go: no more traffic from it
    assert not selects(kube.get("replicasets", "default", "web-7c9f8d")["spec"]["selector"]["matchLabels"], labels)
    assert json.loads(annotations[names.ANNOTATION_ALERT]) == {
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "time": "2025-11-24T13:24:56.428114287Z",
    }
    assert annotations[names.ANNOTATION_WORKFLOW] == "argo/falco-response-0123456789abcdef"
    assert annotations[names.ANNOTATION_QUARANTINED_AT].endswith("Z")
    assert json.loads(annotations[names.ANNOTATION_REMOVED_LABELS]) == SELECTOR
    assert after["status"]["phase"] == "Running"  # kept for investigation

    policy = kube.get("networkpolicies", "default", names.QUARANTINE_NETWORKPOLICY)
    assert policy["spec"]["podSelector"] == {"matchLabels": {names.LABEL_QUARANTINED: "true"}}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress") and not policy["spec"].get("egress")

    # exactly one write on the pod, and the NetworkPolicy was in place before it
    pod_writes = [(m, p) for m, p, s in writes(kube, before) if "/pods/" in p]
    assert pod_writes == [("PATCH", "/api/v1/namespaces/default/pods/web-1")]
    order = [p for m, p, _ in writes(kube, before)]
    assert "networkpolicies" in order[0]
    assert "removed labels: app=web, pod-template-hash=7c9f8d" in run.stdout


def test_reruns_are_idempotent_keep_the_record_and_reuse_our_networkpolicy(kube, tmp_path):
    deployment_pod(kube)
    add_web_pod(kube, name="web-2", labels=dict(LABELS))
    first = run_step(kube, "quarantine", flags(), tmp_path)
    assert first.rc == 0, first.stderr
    state = copy.deepcopy(pod(kube))
    policy = copy.deepcopy(kube.get("networkpolicies", "default", names.QUARANTINE_NETWORKPOLICY))
    before = len(kube.requests)

    # the same pod again (another alert, another workflow), and a second pod of the namespace
    runs = run_batch(
        kube,
        "quarantine",
        {
            "again": flags(workflow="argo/falco-response-ffffffffffffffff", rule="Other rule"),
            "web-2": flags(pod="web-2"),
        },
        tmp_path,
    )
    again = runs["again"]
    assert again.rc == 0, again.stderr
    assert again.outputs["result"] == "already-quarantined"
    assert json.loads(again.outputs["removed-labels"]) == SELECTOR  # kept, not emptied
    assert pod(kube) == state
    assert [p for m, p, _ in writes(kube, before) if p.endswith("/pods/web-1")] == []
    assert runs["web-2"].rc == 0 and runs["web-2"].outputs["result"] == "quarantined"
    assert kube.get("networkpolicies", "default", names.QUARANTINE_NETWORKPOLICY) == policy
    assert [s for m, p, s in kube.requests if m == "POST" and "networkpolicies" in p] == [201, 409, 409]

    # a Service created later that selects the quarantined pod: detached again, record merged
    kube.add_service("default", "frontend", selector={"tier": "frontend"})
    run = run_step(kube, "quarantine", flags(workflow="argo/falco-response-ffffffffffffffff"), tmp_path)
    assert run.rc == 0, run.stderr
    assert run.outputs["result"] == "already-quarantined"
    merged = {**SELECTOR, "tier": "frontend"}
    assert json.loads(run.outputs["removed-labels"]) == merged
    after = pod(kube)["metadata"]
    assert "tier" not in after["labels"] and after["labels"][names.LABEL_QUARANTINED] == "true"
    assert json.loads(after["annotations"][names.ANNOTATION_REMOVED_LABELS]) == merged
    for key in (names.ANNOTATION_ALERT, names.ANNOTATION_WORKFLOW, names.ANNOTATION_QUARANTINED_AT):
        assert after["annotations"][key] == state["metadata"]["annotations"][key]  # the first record stays

    # a dry run on the quarantined pod changes nothing at all
    state = copy.deepcopy(pod(kube))
    policies = copy.deepcopy(kube.list("networkpolicies", "default"))
    before = len(kube.requests)
    run = run_step(kube, "quarantine", flags(**{"dry-run": "true"}), tmp_path)
    assert run.rc == 0 and run.outputs["result"] == "dry-run"
    assert "already quarantined" in run.stdout
    assert pod(kube) == state and kube.list("networkpolicies", "default") == policies
    assert writes(kube, before) == []


def networkpolicy(kube, namespace: str, name: str, spec: dict) -> None:
    kube.create("networkpolicies", {"metadata": {"name": name, "namespace": namespace}, "spec": spec})


def test_allow_networkpolicies_selecting_the_pod_are_escaped(kube, tmp_path):
    add_web_pod(kube, labels={"role": "db", "team": "shop"})
    networkpolicy(
        kube, "default", "db-from-anywhere",
        {"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"], "ingress": [{}]},
    )
    networkpolicy(  # deny-only: opens nothing, leave its label alone
        kube, "default", "shop-no-egress", {"podSelector": {"matchLabels": {"team": "shop"}}, "policyTypes": ["Egress"]}
    )
    networkpolicy(  # selects every pod: cannot be escaped by labels, only warned about
        kube, "default", "all-from-monitoring",
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 9090}]}]},
    )
    run = run_step(kube, "quarantine", flags(), tmp_path)
    assert run.rc == 0, run.stderr
    assert json.loads(run.outputs["removed-labels"]) == {"role": "db"}  # the deny-only policy opens nothing
    assert pod(kube)["metadata"]["labels"].get("team") == "shop"
    assert "networkpolicy all-from-monitoring allows traffic to every pod it selects" in run.stdout
    assert "the pod is NOT fully isolated" in run.stdout


# --- dry run ----------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_says_what_it_would_do(kube, tmp_path):
    deployment_pod(kube)
    state = copy.deepcopy(pod(kube))
    policies = copy.deepcopy(kube.list("networkpolicies", "default"))
    before = len(kube.requests)
    run = run_step(kube, "quarantine", flags(**{"dry-run": "true"}), tmp_path)
    assert run.rc == 0, run.stderr
    assert run.outputs["result"] == "dry-run"
    assert json.loads(run.outputs["removed-labels"]) == SELECTOR
    assert pod(kube) == state
    assert kube.list("networkpolicies", "default") == policies == []
    assert writes(kube, before) == []
    assert "would create deny-all networkpolicy default/falco-response-quarantine" in run.stdout
    line = next(x for x in run.stdout.splitlines() if "would patch pod default/web-1 with " in x)
    patch = json.loads(line.split(" with ", 1)[1])
    assert patch["metadata"]["labels"] == {"app": None, "pod-template-hash": None, names.LABEL_QUARANTINED: "true", names.LABEL_POLICY: "shells"}


# --- failures and refusals --------------------------------------------------------------------


def test_gone_vanishing_and_replaced_pods_and_a_foreign_networkpolicy_fail_clearly(kube, tmp_path):
    deployment_pod(kube)
    add_web_pod(kube, name="doomed", labels=dict(LABELS))
    kube.add_namespace("foreign")
    add_web_pod(kube, namespace="foreign", labels=dict(LABELS))
    networkpolicy(  # someone else's policy under our name, selecting something else
        kube, "foreign", names.QUARANTINE_NETWORKPOLICY, {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}
    )

    def vanish(method: str, path: str) -> None:
        if method == "PATCH" and path.endswith("/pods/doomed"):
            kube.delete("pods", "default", "doomed")

    kube.on_request(vanish)
    states = {ns: copy.deepcopy(kube.get("pods", ns, "web-1")) for ns in ("default", "foreign")}
    runs = run_batch(
        kube,
        "quarantine",
        {
            "gone": flags(pod="gone"),
            "vanishing": flags(pod="doomed"),
            "replaced": flags(**{"pod-uid": "00000000-0000-4000-8000-000000000000"}),
            "foreign": flags(namespace="foreign"),
        },
        tmp_path,
    )
    for what, run in runs.items():
        assert run.rc == 1 and run.outputs == {}, (what, run.stderr)
        assert len(run.stderr.splitlines()) == 1, what
    assert runs["gone"].error == "error: pod default/gone not found: nothing to quarantine"
    assert runs["vanishing"].error == "error: pod default/doomed vanished before it could be quarantined: nothing to quarantine"
    assert "was replaced since the alert" in runs["replaced"].error
    assert "networkpolicy foreign/falco-response-quarantine exists but is not our deny-all" in runs["foreign"].error
    for ns, state in states.items():
        assert kube.get("pods", ns, "web-1") == state


def test_hostile_values_and_protected_namespaces_are_refused_without_api_calls(kube, tmp_path):
    deployment_pod(kube)
    errors = check_hostile_flags(
        kube,
        "quarantine",
        flags(),
        tmp_path,
        extra={
            "protected": flags(namespace="kube-system"),
            "workflow without namespace": flags(workflow="falco-response-0123456789abcdef"),
            "bad alert time": flags(**{"alert-time": "yesterday"}),
        },
    )
    assert errors["protected"] == "error: namespace kube-system is protected: no automated response there"
    assert "is not <namespace>/<name>" in errors["workflow without namespace"]
    assert "is not an RFC 3339 time" in errors["bad alert time"]


def test_transient_bursts_conflicts_are_survived_and_403_is_not_retried(kube, tmp_path):
    deployment_pod(kube)
    add_web_pod(kube, name="web-2", labels=dict(LABELS))
    add_web_pod(kube, name="web-3", labels=dict(LABELS))
    kube.fail_next(429, count=2, method="PATCH", path="/pods/web-1$")
    kube.fail_next(500, count=2, path="/services$")
    kube.fail_next(403, count=1, method="PATCH", path="/pods/web-2$")

    def meddle(method: str, path: str) -> None:  # someone else writes web-3 while we work on it
        current = kube.get("pods", "default", "web-3")
        if method == "PATCH" and path.endswith("/pods/web-3") and "meddled" not in current["metadata"]["labels"]:
            kube.delete("pods", "default", "web-3")
            current["metadata"]["labels"]["meddled"] = "yes"
            kube.create("pods", current)

    kube.on_request(meddle)
    runs = run_batch(
        kube, "quarantine", {"burst": flags(), "forbidden": flags(pod="web-2"), "conflict": flags(pod="web-3")}, tmp_path
    )
    assert runs["burst"].rc == 0, runs["burst"].stderr
    assert runs["burst"].outputs["result"] == "quarantined"
    assert [s for m, p, s in kube.requests if m == "PATCH" and p.endswith("/web-1")] == [429, 429, 200]
    assert [s for _, p, s in kube.requests if p.endswith("/services")].count(500) == 2
    assert runs["forbidden"].rc == 1 and "cannot patch pod default/web-2: 403" in runs["forbidden"].error
    assert [s for m, p, s in kube.requests if m == "PATCH" and p.endswith("/web-2")] == [403]
    assert names.LABEL_QUARANTINED not in pod(kube, "web-2")["metadata"]["labels"]
    # the stale patch is rejected (resourceVersion precondition), the pod read again, the change kept
    assert runs["conflict"].rc == 0, runs["conflict"].stderr
    assert [s for m, p, s in kube.requests if m == "PATCH" and p.endswith("/web-3")] == [409, 200]
    labels = pod(kube, "web-3")["metadata"]["labels"]
    assert labels["meddled"] == "yes" and labels[names.LABEL_QUARANTINED] == "true" and "app" not in labels
