"""quarantine step, through `python -m steps.quarantine` against the stand-in API."""

from __future__ import annotations

import copy
import json


from engine import names
from tests.test_verify import ROOT, add_web_pod, check_hostile_flags, run_batch, run_step

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
        "mechanism": "network-policy",
        "anp-priority": "0",
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
    assert run.outputs["result"] == "isolated" and run.outputs["isolated"] == "true"
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
    assert again.outputs["result"] == "isolated" and "already quarantined and detached" in again.stdout
    assert json.loads(again.outputs["removed-labels"]) == SELECTOR  # kept, not emptied
    assert pod(kube) == state
    assert [p for m, p, _ in writes(kube, before) if p.endswith("/pods/web-1")] == []
    assert runs["web-2"].rc == 0 and runs["web-2"].outputs["result"] == "isolated"
    assert kube.get("networkpolicies", "default", names.QUARANTINE_NETWORKPOLICY) == policy
    assert [s for m, p, s in kube.requests if m == "POST" and "networkpolicies" in p] == [201, 409, 409]

    # a Service created later that selects the quarantined pod: detached again, record merged
    kube.add_service("default", "frontend", selector={"tier": "frontend"})
    run = run_step(kube, "quarantine", flags(workflow="argo/falco-response-ffffffffffffffff"), tmp_path)
    assert run.rc == 0, run.stderr
    assert run.outputs["result"] == "isolated" and "was already quarantined; detached again" in run.stdout
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
    assert run.rc == 0 and run.outputs["result"] == "dry-run: isolated"
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
    networkpolicy(  # selects every pod: cannot be escaped by labels, so the pod is not isolated
        kube, "default", "all-from-monitoring",
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 9090}]}]},
    )
    run = run_step(kube, "quarantine", flags(), tmp_path)
    assert run.rc == 1
    assert json.loads(run.outputs["removed-labels"]) == {"role": "db"}  # the deny-only policy opens nothing
    assert pod(kube)["metadata"]["labels"].get("team") == "shop"
    assert "networkpolicy all-from-monitoring allows traffic to every pod it selects" in run.stdout
    # db-from-anywhere was escaped (role removed): only the policy that still selects the pod is named
    assert run.error == "error: not-isolated: NetworkPolicy default/all-from-monitoring allows ingress"


# --- dry run ----------------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_says_what_it_would_do(kube, tmp_path):
    deployment_pod(kube)
    state = copy.deepcopy(pod(kube))
    policies = copy.deepcopy(kube.list("networkpolicies", "default"))
    before = len(kube.requests)
    run = run_step(kube, "quarantine", flags(**{"dry-run": "true"}), tmp_path)
    assert run.rc == 0, run.stderr
    assert run.outputs["result"] == "dry-run: isolated"
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
            "unknown mechanism": flags(mechanism="cilium"),
            "priority out of range": flags(**{"anp-priority": "1001"}),
        },
    )
    assert errors["protected"] == "error: namespace kube-system is protected: no automated response there"
    assert "is not <namespace>/<name>" in errors["workflow without namespace"]
    assert "is not an RFC 3339 time" in errors["bad alert time"]
    assert errors["unknown mechanism"] == "error: mechanism: 'cilium' is not one of network-policy, admin-network-policy"
    assert errors["priority out of range"] == "error: anp-priority: '1001' is not an integer from 0 to 1000"


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
    assert runs["burst"].outputs["result"] == "isolated"
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


# --- isolation: the verdict and what keeps a pod reachable (issue 8, finding 3) ------------------

ALLOW_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]}


def web_in(kube, namespace: str, name: str = "web-1", **kw) -> dict:
    """A pod labelled app=web in its own namespace, selected by a Service."""
    kube.add_namespace(namespace)
    kube.add_service(namespace, "web", selector={"app": "web"})
    return add_web_pod(kube, name=name, namespace=namespace, labels={"app": "web", "tier": "frontend"}, **kw)


def test_an_allow_all_policy_keeps_the_pod_reachable_so_the_step_fails_after_applying_everything(kube, tmp_path):
    """NetworkPolicies are additive: "If any policy or policies select a pod, the pod is restricted
    to what is allowed by the union of those policies' ingress/egress rules" (Kubernetes docs,
    concepts/services-networking/network-policies.md, "Isolated and Non-isolated Pods"), so our
    deny-all takes nothing away from an allow-all. The step still labels, detaches and creates the
    deny-all, then fails with the verdict. On the previous code: exit 0, result `quarantined`."""
    deployment_pod(kube)
    networkpolicy(kube, "default", "allow-all", ALLOW_ALL)
    before = len(kube.requests)
    run = run_step(kube, "quarantine", flags(), tmp_path)
    verdict = "not-isolated: NetworkPolicy default/allow-all allows ingress and egress"
    assert run.rc == 1, run.stderr
    assert run.error == f"error: {verdict}"
    assert run.outputs == {"result": verdict, "isolated": "false", "removed-labels": json.dumps(SELECTOR, sort_keys=True)}
    labels = pod(kube)["metadata"]["labels"]
    assert labels[names.LABEL_QUARANTINED] == "true" and "app" not in labels  # applied all the same
    assert kube.get("networkpolicies", "default", names.QUARANTINE_NETWORKPOLICY) is not None
    assert [m for m, p, _ in writes(kube, before)] == ["POST", "PATCH"]


def test_host_network_policy_types_and_labels_after_the_patch_decide_the_verdict(kube, tmp_path):
    """- hostNetwork: "NetworkPolicy behaviour for hostNetwork pods is undefined" and the most common
      implementation ignores them (network-policies.md, "NetworkPolicy and hostNetwork pods");
    - policyTypes: rules count only for the types a policy covers, and an absent policyTypes is
      Ingress, plus Egress when egress rules exist (pkg/apis/networking/v1/defaults.go
      SetDefaults_NetworkPolicy; the stand-in defaults it on write);
    - selection is judged on the labels after the patch: removing `app` (the Service's label) makes
      a DoesNotExist selector select the pod, and our own label takes it out of a NotIn one.
    A dry run judges the same way, changes nothing and exits 0."""
    web_in(kube, "hostnet", host_network=True)
    web_in(kube, "types")
    for name, spec in {
        "egress-when-unlabelled": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]},
                                   "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
        "ingress-rules-of-an-egress-policy": {"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]},
        "defaulted-types": {"podSelector": {}, "egress": [{}]},
        "not-for-quarantined": {"podSelector": {"matchExpressions": [
            {"key": names.LABEL_QUARANTINED, "operator": "NotIn", "values": ["true"]}]}, "ingress": [{}]},
        "deny-all-of-the-team": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }.items():
        networkpolicy(kube, "types", name, spec)
    web_in(kube, "dryrun")
    networkpolicy(kube, "dryrun", "allow-all", ALLOW_ALL)
    state = copy.deepcopy(kube.get("pods", "dryrun", "web-1"))
    runs = run_batch(
        kube,
        "quarantine",
        {
            "hostnet": flags(namespace="hostnet"),
            "types": flags(namespace="types"),
            "dryrun": flags(namespace="dryrun", **{"dry-run": "true"}),
        },
        tmp_path,
    )
    assert runs["hostnet"].rc == 1
    assert runs["hostnet"].error == "error: not-isolated: pod uses hostNetwork (network policies do not apply)"
    assert kube.get("pods", "hostnet", "web-1")["metadata"]["labels"][names.LABEL_QUARANTINED] == "true"
    assert runs["types"].rc == 1
    assert runs["types"].outputs["result"] == (
        "not-isolated: NetworkPolicy types/defaulted-types allows egress; "
        "NetworkPolicy types/egress-when-unlabelled allows egress"
    )
    dry = runs["dryrun"]
    assert dry.rc == 0, dry.stderr
    assert dry.outputs["result"] == "dry-run: not-isolated: NetworkPolicy dryrun/allow-all allows ingress and egress"
    assert dry.outputs["isolated"] == "false"
    assert kube.get("pods", "dryrun", "web-1") == state
    assert kube.get("networkpolicies", "dryrun", names.QUARANTINE_NETWORKPOLICY) is None


def test_many_reasons_stay_one_line():
    """The verdict names at most MAX_REASONS reasons and counts the rest: it is also the error line."""
    from steps import quarantine

    reasons = [f"NetworkPolicy ns/p{i} allows ingress" for i in range(7)]
    line = quarantine.verdict(reasons)
    assert line == ("not-isolated: NetworkPolicy ns/p0 allows ingress; NetworkPolicy ns/p1 allows ingress; "
                    "NetworkPolicy ns/p2 allows ingress; and 4 more")
    assert quarantine.verdict([]) == "isolated"


# --- AdminNetworkPolicy (quarantine.mechanism: admin-network-policy) ------------------------------


def anp_rbac(kube) -> None:
    """What `make build` generates for quarantine with mechanism admin-network-policy: its
    ClusterRole (engine/rbac.py) and its ValidatingAdmissionPolicy (engine/admission.py)."""
    from engine import admission, config, rbac

    settings = config.Settings(quarantine=config.QuarantineSettings(mechanism="admin-network-policy"))
    account = names.step_service_account("quarantine")
    role = next(o for o in rbac.roles(settings) if o["kind"] == "ClusterRole" and o["metadata"]["name"] == account)
    kube.apply([role, admission.policy(settings, "quarantine")])


def anp_flags(namespace: str, **over: str) -> dict[str, str]:
    return flags(namespace=namespace, mechanism="admin-network-policy", **{"anp-priority": "5"}, **over)


def admin_network_policy(kube, name: str, priority: int, subject: dict, ingress: list[dict]) -> None:
    kube.create("adminnetworkpolicies", {"metadata": {"name": name},
                                         "spec": {"priority": priority, "subject": subject, "ingress": ingress}})


def test_admin_network_policy_comes_before_namespace_policies_and_is_checked_too(kube, tmp_path):
    """AdminNetworkPolicy (network-policy-api apis/v1alpha1): cluster-scoped, a CRD (404 until
    installed); "All AdminNetworkPolicy rules have higher precedence than NetworkPolicy" and lower
    priority values come first (AdminNetworkPolicySpec.Priority); ingress peers are only
    namespaces and pods (AdminNetworkPolicyIngressPeer), so NetworkPolicy ingress from any source
    or an ipBlock still reaches the pod; egress to networks 0.0.0.0/0 and ::/0 denies everything.
    The same namespace policies that defeat the NetworkPolicy mechanism ("np-only") are overridden
    here ("anp-ok"); an ANP that comes first and allows ("anp-first"), or a missing CRD, is named."""
    anp_rbac(kube)
    web_in(kube, "no-crd")
    missing = run_step(kube, "quarantine", anp_flags("no-crd"), tmp_path)
    assert missing.rc == 1
    assert missing.error == ("error: not-isolated: AdminNetworkPolicy falco-response-quarantine-no-crd missing: "
                             "adminnetworkpolicies.policy.networking.k8s.io not served")
    assert "install network-policy-api's CRDs" in missing.stdout
    assert kube.get("pods", "no-crd", "web-1")["metadata"]["labels"][names.LABEL_QUARANTINED] == "true"

    kube.serve_admin_network_policies()
    from_pods = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}]}], "egress": [{}]}
    for namespace, policies in {
        "np-only": {"from-frontend": from_pods},
        "anp-ok": {"from-frontend": from_pods},
        "anp-outside": {"allow-all": ALLOW_ALL},
        "anp-first": {},
    }.items():
        web_in(kube, namespace)
        for name, spec in policies.items():
            networkpolicy(kube, namespace, name, spec)
    everyone = [{"action": "Allow", "from": [{"namespaces": {}}]}]
    admin_network_policy(kube, "monitoring-first", 0,
                         {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "anp-first"}}}, everyone)
    admin_network_policy(kube, "allow-after-ours", 50, {"namespaces": {}}, everyone)
    runs = run_batch(kube, "quarantine", {
        "np-only": flags(namespace="np-only"),
        "anp-ok": anp_flags("anp-ok"),
        "anp-outside": anp_flags("anp-outside"),
        "anp-first": anp_flags("anp-first"),
    }, tmp_path)
    assert runs["np-only"].outputs["result"] == "not-isolated: NetworkPolicy np-only/from-frontend allows ingress and egress"
    assert runs["anp-ok"].rc == 0, runs["anp-ok"].stderr
    assert runs["anp-ok"].outputs["result"] == "isolated"
    assert runs["anp-outside"].outputs["result"] == (
        "not-isolated: NetworkPolicy anp-outside/allow-all allows ingress from nodes or outside addresses (no AdminNetworkPolicy peer)")
    assert runs["anp-first"].outputs["result"] == (
        "not-isolated: AdminNetworkPolicy monitoring-first (priority 0 <= 5) allows ingress")

    ours = kube.get("adminnetworkpolicies", None, "falco-response-quarantine-anp-ok")
    assert ours["spec"] == {
        "priority": 5,
        "subject": {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "anp-ok"}},
                             "podSelector": {"matchLabels": {names.LABEL_QUARANTINED: "true"}}}},
        "ingress": [{"name": "quarantine-deny-ingress", "action": "Deny", "from": [{"namespaces": {}}]}],
        "egress": [{"name": "quarantine-deny-egress", "action": "Deny",
                    "to": [{"namespaces": {}}, {"networks": ["0.0.0.0/0", "::/0"]}]}],
    }
    again = run_step(kube, "quarantine", anp_flags("anp-ok"), tmp_path)  # 409: found, checked, kept
    assert again.rc == 0 and again.outputs["result"] == "isolated"
    assert kube.get("adminnetworkpolicies", None, "falco-response-quarantine-anp-ok") == ours


def test_the_build_rbac_grants_admin_network_policies_only_with_that_mechanism(kube, tmp_path):
    """build/rbac (mechanism network-policy) has no adminnetworkpolicies verbs: the stand-in API
    server's RBAC answers 403 and the verdict says the ANP is missing, never `isolated`."""
    kube.serve_admin_network_policies()
    web_in(kube, "no-rbac")
    run = run_step(kube, "quarantine", anp_flags("no-rbac"), tmp_path)
    assert run.rc == 1
    assert run.error.startswith("error: not-isolated: AdminNetworkPolicy falco-response-quarantine-no-rbac missing: 403 ")
    assert kube.list("adminnetworkpolicies") == []


def test_the_standin_validates_admin_network_policies_as_the_crd_schema_does(kube):
    """The CRD's OpenAPI schema and CEL (apis/v1alpha1 kubebuilder markers): priority 0..1000,
    exactly one subject, action Allow|Deny|Pass, at least one peer, one field per peer, CIDRs
    either IPv4 or IPv6 (shared_types.go CIDR XValidation)."""
    import pytest

    from standin.kube import ApiError

    kube.serve_admin_network_policies()
    bad = {
        "priority": 1001,
        "subject": {"namespaces": {}, "pods": {"namespaceSelector": {}, "podSelector": {}}},
        "ingress": [{"action": "Drop", "from": []}],
        "egress": [{"action": "Deny", "to": [{"networks": ["::ffff:10.0.0.1/128"]}, {"namespaces": {}, "pods": {}}]}],
    }
    with pytest.raises(ApiError) as caught:
        kube.create("adminnetworkpolicies", {"metadata": {"name": "bad"}, "spec": bad})
    assert caught.value.code == 422
    message = caught.value.message
    assert message.startswith('AdminNetworkPolicy.policy.networking.k8s.io "bad" is invalid: [')
    for part in ("spec.priority: Invalid value: 1001: spec.priority in body should be less than or equal to 1000",
                 "spec.subject: Invalid value: 2: spec.subject in body should have at most 1 properties",
                 'spec.ingress[0].action: Invalid value: "Drop": supported values: "Allow", "Deny", "Pass"',
                 "spec.ingress[0].from: Invalid value: 0: spec.ingress[0].from in body should have at least 1 items",
                 'spec.egress[0].to[0].networks[0]: Invalid value: "::ffff:10.0.0.1/128": CIDR must be either an IPv4 or IPv6',
                 "spec.egress[0].to[1]: Invalid value: 2: spec.egress[0].to[1] in body should have at most 1 properties"):
        assert part in message, part
    from steps import quarantine

    good = quarantine.wanted_admin_network_policy("default", 0)
    assert kube.create("adminnetworkpolicies", good)["spec"] == good["spec"]


# --- the whole pipeline: the failed quarantine is visible, and escalates when configured ---------


def not_isolated_demo(tmp_path, on_not_isolated: str, policy: str | None = None):
    """The demo's alert (default/kubecon, policy interactive-intrusion: checkpoint-and-quarantine,
    or the pipeline `policy` names) against build/ made from response.yaml with
    quarantine.on_not_isolated set, in a namespace with an allow-all NetworkPolicy."""
    import io

    import yaml

    from engine import build, config
    from engine.demo import Demo, default_event

    data = yaml.safe_load((ROOT / "response.yaml").read_text())
    data["settings"].setdefault("quarantine", {})["on_not_isolated"] = on_not_isolated
    build_dir = tmp_path / f"build-{on_not_isolated}"
    build.write(config.parse(data), build_dir)
    out = io.StringIO()
    with Demo(build_dir, workdir=tmp_path / f"demo-{on_not_isolated}", out=out) as demo:
        demo.kube.add_namespace("default")
        networkpolicy(demo.kube, "default", "allow-all", ALLOW_ALL)
        result = demo.run(default_event().read_bytes(), policy=policy, source="test")
        pod_after = demo.kube.get("pods", "default", "kubecon")
        events = demo.kube.list("events", "default")
    tasks = {t.name: t for t in result.run.tasks}
    report = next(e for e in events if e.get("reason", "").startswith("FalcoResponse"))
    return result, tasks, pod_after, report["message"], out.getvalue()


def test_pipeline_fails_visibly_or_deletes_the_pod_when_quarantine_cannot_isolate(tmp_path):
    """Through the Sensor, the Workflow from build/ and every step's entrypoint (engine.demo.Demo,
    standin.argo.workflows): the quarantine node fails with its verdict and the report never says
    "quarantined". With on_not_isolated: delete, the `delete` task (depends quarantine.Failed,
    `when` on its `isolated` output: dag.go evaluateDependsLogic, resolveDependencyReferences)
    deletes the pod after the checkpoint; the Workflow then succeeds (assessDAGPhase judges the
    leaves) and the quarantine node stays Failed. On the previous code quarantine Succeeded with
    result `quarantined`, and the report said "pod quarantined"."""
    verdict = "not-isolated: NetworkPolicy default/allow-all allows ingress and egress"

    result, tasks, pod_after, message, _ = not_isolated_demo(tmp_path, "fail", policy="quarantine")  # no checkpoint: faster
    assert result.run.phase == "Failed" and "delete" not in tasks
    assert {n: t.phase for n, t in tasks.items()} == {"verify": "Succeeded", "quarantine": "Failed"}
    assert f"error: {verdict}" in tasks["quarantine"].message  # the log tail (FallbackToLogsOnError) ends with it
    assert tasks["quarantine"].outputs["result"] == verdict
    assert pod_after["metadata"]["labels"][names.LABEL_QUARANTINED] == "true"  # everything applied, still reachable
    assert "quarantined" not in message and f"pod NOT isolated, still reachable ({verdict.removeprefix('not-isolated: ')})" in message
    assert "response FAILED at step quarantine" in message

    result, tasks, pod_after, message, out = not_isolated_demo(tmp_path, "delete")
    assert {n: t.phase for n, t in tasks.items()} == {
        "verify": "Succeeded", "checkpoint": "Succeeded", "copy": "Succeeded", "quarantine": "Failed", "delete": "Succeeded",
        "analyze": "Succeeded"}
    assert f"error: {verdict}" in tasks["quarantine"].message  # the log tail (FallbackToLogsOnError) ends with it
    assert tasks["delete"].outputs["result"] == "deleted" and pod_after is None
    assert tasks["delete"].started >= tasks["checkpoint"].finished
    assert result.run.phase == "Succeeded"
    assert "quarantined" not in message and "escalated to delete: pod deleted" in message
    assert "pod default/kubecon: deleted" in out
