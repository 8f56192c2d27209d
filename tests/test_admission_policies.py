"""ValidatingAdmissionPolicies of build/admission, enforced by the stand-in API server (standin/kube/vap.py).

Every request goes over HTTP with the kubernetes client and a step's own ServiceAccount token, as
the step's pod would send it; the `kube` fixture has build/namespaces, build/rbac and
build/admission applied, as a real install does. Upstream (k8s.io/apiserver/pkg/admission/plugin/
policy/validating): dispatcher.go Dispatch builds the denial
`ValidatingAdmissionPolicy '<policy>' with binding '<binding>' denied request: <message>` inside
admission.NewForbidden (`<resource> "<name>" is forbidden: ...`), with the validation's reason and
policy_decision.go reasonToCode (Forbidden -> 403, default Invalid -> 422).
"""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config

from engine import admission, config, names
from tests.conftest import BUILD, ROOT, WORKFLOW_NAMESPACE, step_token
from tests.test_verify import add_web_pod, run_step

DENIED = "ValidatingAdmissionPolicy '{p}' with binding '{p}' denied request: "


def core_as(kube, step: str | None) -> client.CoreV1Api:
    """CoreV1Api presenting a step's ServiceAccount token (None: the cluster admin's)."""
    path = kube.kubeconfig if step is None else kube.kubeconfig_for(step_token(kube, step))
    return client.CoreV1Api(kube_config.new_client_from_config(config_file=str(path)))


def refused(call, *args, **kwargs) -> tuple[int, dict]:
    with pytest.raises(client.ApiException) as caught:
        call(*args, **kwargs)
    return caught.value.status, json.loads(caught.value.body)


def denial(step: str, rule: str) -> str:
    policy = names.step_service_account(step)
    return DENIED.format(p=policy) + f"falco-response: {step} {rule} (policy {policy})"


def test_build_installs_one_policy_and_binding_per_step_identity(kube):
    """The fixture installs build/admission like build/rbac: one ValidatingAdmissionPolicy and one
    ValidatingAdmissionPolicyBinding (validationActions [Deny], failurePolicy Fail) per identity a
    step pod can carry, each matching only that user."""
    wanted = sorted(names.step_service_account(i) for i in (*names.STEPS, "executor"))
    policies = kube.list("validatingadmissionpolicies")
    assert sorted(p["metadata"]["name"] for p in policies) == wanted
    assert sorted(b["metadata"]["name"] for b in kube.list("validatingadmissionpolicybindings")) == wanted
    for policy in policies:
        spec = policy["spec"]
        assert spec["failurePolicy"] == "Fail"
        assert spec["matchConditions"] == [{
            "name": "step-identity",
            "expression": f'request.userInfo.username == "system:serviceaccount:{WORKFLOW_NAMESPACE}:'
                          f'{policy["metadata"]["name"]}"',
        }]
    for binding in kube.list("validatingadmissionpolicybindings"):
        assert binding["spec"] == {"policyName": binding["metadata"]["name"], "validationActions": ["Deny"]}


def test_quarantine_identity_cannot_change_a_container_image(kube):
    """RBAC grants quarantine `pods patch` cluster-wide (build/rbac), which can replace an image;
    the policy lets the API server refuse any change of the spec (validator.go: a false validation
    denies with its message and reason; reason Forbidden -> 403). Before build/admission existed,
    RBAC alone decided and this patch went through."""
    add_web_pod(kube, name="web", labels={"app": "web"})
    core = core_as(kube, "quarantine")
    image = {"spec": {"containers": [{"name": "app", "image": "attacker.example/backdoor:1"}]}}

    status, body = refused(core.patch_namespaced_pod, "web", "default", image)

    message = denial("quarantine", "may not change a pod's spec")
    assert status == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == f'pods "web" is forbidden: {message}'
    assert body["details"] == {"name": "web", "kind": "pods", "causes": [{"message": message}]}
    assert kube.get("pods", "default", "web")["spec"]["containers"][0]["image"] == "registry.example/shop/app:1.2"
    # RBAC allows the verb: the same identity's label patch (what quarantine does) goes through.
    core.patch_namespaced_pod("web", "default", {"metadata": {"labels": {names.LABEL_QUARANTINED: "true"}}})
    assert kube.get("pods", "default", "web")["metadata"]["labels"][names.LABEL_QUARANTINED] == "true"
    # Other users are not matched (matchConditions): the cluster admin may still change the image.
    core_as(kube, None).patch_namespaced_pod("web", "default", image)
    assert kube.get("pods", "default", "web")["spec"]["containers"][0]["image"] == "attacker.example/backdoor:1"


def test_quarantine_identity_cannot_label_a_pod_in_a_protected_namespace(kube):
    """Protected namespaces were enforced only by the steps' Python; now the API server refuses the
    write (the messageExpression names the namespace: validator.go uses it when it is a one-line string)."""
    kube.add_namespace("kube-system")
    add_web_pod(kube, name="coredns", namespace="kube-system", labels={"k8s-app": "kube-dns"})

    status, body = refused(core_as(kube, "quarantine").patch_namespaced_pod, "coredns", "kube-system",
                           {"metadata": {"labels": {names.LABEL_QUARANTINED: "true", "k8s-app": None}}})

    assert status == 403
    assert body["message"] == 'pods "coredns" is forbidden: ' + denial(
        "quarantine", "may not write in protected namespace kube-system")
    assert kube.get("pods", "kube-system", "coredns")["metadata"]["labels"] == {"k8s-app": "kube-dns"}


def test_delete_identity_cannot_delete_in_kube_system_even_with_the_step_check_bypassed(kube, tmp_path):
    """Whoever can create Workflows can run the delete step with its identity and their own flags:
    `--protected-namespaces=` other than ours switches the step's own check off, and the API server
    still refuses (DELETE: `object` is null, `oldObject` the pod, filter.go ForInput). The step
    fails with one line and nothing is deleted; the same call in an unprotected namespace works."""
    kube.add_namespace("kube-system")
    add_web_pod(kube, name="etcd-node-1", namespace="kube-system")
    add_web_pod(kube, name="web", namespace="default")

    run = run_step(kube, "delete", {"namespace": "kube-system", "pod": "etcd-node-1",
                                    "protected-namespaces": "nothing-here"}, tmp_path)

    assert run.rc != 0
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    # steps/common.describe keeps 200 characters of the Status message: the rule starts within them.
    assert "403 pods \"etcd-node-1\" is forbidden: " + DENIED.format(p="falco-response-delete") + \
        "falco-response: delete may not write in protected namespace" in run.stderr
    assert kube.get("pods", "kube-system", "etcd-node-1") is not None
    assert kube.deletions == []

    status, body = refused(core_as(kube, "delete").delete_namespaced_pod, "etcd-node-1", "kube-system")
    assert (status, body["message"]) == (403, 'pods "etcd-node-1" is forbidden: ' + denial(
        "delete", "may not write in protected namespace kube-system"))
    core_as(kube, "delete").delete_namespaced_pod("web", "default")
    assert kube.get("pods", "default", "web") is None


def test_quarantine_step_with_the_check_bypassed_changes_nothing_in_a_protected_namespace(kube, tmp_path):
    """The quarantine entrypoint, told that nothing is protected, is stopped by the API server at
    its first write (the deny-all NetworkPolicy), so nothing is created or relabelled there."""
    kube.add_namespace("argo")
    add_web_pod(kube, name="workflow-controller", namespace="argo", labels={"app": "workflow-controller"})

    run = run_step(kube, "quarantine", {
        "namespace": "argo", "pod": "workflow-controller", "workflow": "argo/falco-response-0123456789abcdef",
        "policy": "shells", "rule": "Terminal shell in container", "priority": "Critical",
        "alert-time": "2025-11-24T13:24:56.428114287Z", "protected-namespaces": "nothing-here",
    }, tmp_path)

    assert run.rc != 0
    assert "ValidatingAdmissionPolicy 'falco-response-quarantine'" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert kube.list("networkpolicies", "argo") == []
    assert kube.get("pods", "argo", "workflow-controller")["metadata"]["labels"] == {"app": "workflow-controller"}


@pytest.mark.parametrize("patch,rule", [
    ({"metadata": {"labels": {"app": "payments"}}},
     "may only remove a pod's labels and add falco-response.io/ labels"),
    ({"metadata": {"labels": {names.LABEL_QUARANTINED: None}}},
     "may only remove a pod's labels and add falco-response.io/ labels"),
    ({"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}},
     "may only set falco-response.io/ annotations on a pod"),
    ({"metadata": {"finalizers": ["example.com/keep-forever"]}},
     "may change only a pod's labels and annotations"),
    ({"spec": {"activeDeadlineSeconds": 1}},
     "may not change a pod's spec"),
], ids=["adds-a-foreign-label", "unquarantines", "foreign-annotation", "finalizer", "spec"])
def test_quarantine_identity_changes_only_what_quarantine_changes(kube, patch, rule):
    """Quarantine removes labels, adds falco-response.io/ labels and annotations (steps/quarantine.py
    plan); anything else, such as labelling a pod into another Service, is refused. The
    UPDATE's `oldObject` is the stored pod and `object` the patched one (filter.go ForInput)."""
    add_web_pod(kube, name="web", labels={"app": "web", names.LABEL_QUARANTINED: "true"})
    status, body = refused(core_as(kube, "quarantine").patch_namespaced_pod, "web", "default", patch)
    assert (status, body["message"]) == (403, 'pods "web" is forbidden: ' + denial("quarantine", rule))


def test_quarantine_identity_may_detach_and_annotate(kube):
    """What quarantine does is admitted: remove a selecting label, add its own labels and annotations
    (a strategic-merge patch; the validations see the patched pod as `object`, validator.go)."""
    add_web_pod(kube, name="web", labels={"app": "web", "tier": "frontend"})
    core_as(kube, "quarantine").patch_namespaced_pod("web", "default", {"metadata": {
        "labels": {"app": None, names.LABEL_QUARANTINED: "true", names.LABEL_POLICY: "shells"},
        "annotations": {names.ANNOTATION_REMOVED_LABELS: '{"app": "web"}'},
    }})
    assert kube.get("pods", "default", "web")["metadata"]["labels"] == {
        "tier": "frontend", names.LABEL_QUARANTINED: "true", names.LABEL_POLICY: "shells"}


@pytest.mark.parametrize("spec", [
    {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]},
    {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
], ids=["allow-all", "deny-all-for-every-pod"])
def test_quarantine_identity_creates_only_its_deny_all_networkpolicy(kube, spec):
    """RBAC's `networkpolicies create` would let it open a namespace (NetworkPolicies add up) or cut
    off every pod; the policy admits only the quarantine shape (steps/quarantine.py wanted_networkpolicy)."""
    net = client.NetworkingV1Api(kube_config.new_client_from_config(
        config_file=str(kube.kubeconfig_for(step_token(kube, "quarantine")))))
    body = {"metadata": {"name": names.QUARANTINE_NETWORKPOLICY}, "spec": spec}
    status, refusal = refused(net.create_namespaced_network_policy, "default", body)
    assert status == 403
    assert refusal["message"] == f'networkpolicies.networking.k8s.io "{names.QUARANTINE_NETWORKPOLICY}" is forbidden: ' + \
        denial("quarantine", f"may create only the deny-all NetworkPolicy {names.QUARANTINE_NETWORKPOLICY}")
    assert refusal["details"]["group"] == "networking.k8s.io"
    assert kube.list("networkpolicies", "default") == []


def test_report_identity_creates_only_events_about_pods(kube):
    """RBAC's `events create` could forge an Event about anything (a node, a Deployment); the
    report policy admits only Events whose involvedObject is a Pod (validator.go, reason Forbidden)."""
    add_web_pod(kube, name="web")
    event = {"metadata": {"name": "forged"}, "involvedObject": {"kind": "Node", "name": "node-1"},
             "reason": "NodeNotReady", "message": "forged", "type": "Warning"}
    status, body = refused(core_as(kube, "report").create_namespaced_event, "default", event)
    assert (status, body["message"]) == (403, 'events "forged" is forbidden: ' + denial(
        "report", "may only create Events about pods"))
    about_pod = {**event, "metadata": {"name": "ok"},
                 "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "web"}}
    core_as(kube, "report").create_namespaced_event("default", about_pod)


def test_verify_writes_no_configmap_even_when_rbac_would_allow(kube):
    """An over-broad grant elsewhere in the cluster (here every account of the workflow namespace may
    create ConfigMaps) does not widen a step: verify writes only what its own RBAC grants (its Lease,
    the isolation label and deny-all, argoexec's WorkflowTaskResults). Users the policies do not name (that namespace's `default` account) keep
    what RBAC gives them."""
    group = f"system:serviceaccounts:{WORKFLOW_NAMESPACE}"
    kube.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "broad"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "broad"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "broad"},
         "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}]},
    ])
    configmap = {"metadata": {"name": "dropped"}, "data": {"x": "1"}}
    status, body = refused(core_as(kube, "verify").create_namespaced_config_map, "default", configmap)
    settings = config.load(ROOT / "response.yaml").settings
    allowed = admission.describe(admission.grants(settings, "verify"), WORKFLOW_NAMESPACE)
    assert "configmaps" not in allowed and "workflowtaskresults.argoproj.io" in allowed
    assert (status, body["message"]) == (403, 'configmaps "dropped" is forbidden: ' + denial("verify", f"may only {allowed}"))
    token = kube.service_account_token(WORKFLOW_NAMESPACE, "default")
    other = client.CoreV1Api(kube_config.new_client_from_config(config_file=str(kube.kubeconfig_for(token))))
    other.create_namespaced_config_map("default", configmap)
    assert kube.get("configmaps", "default", "dropped") is not None


# --- the stand-in's evaluator: upstream semantics, and loud where cel-python falls short ----------


def admin_policy(name: str, validations: list[dict], failure_policy: str = "Fail", actions=("Deny",),
                 conditions: list[dict] | None = None) -> list[dict]:
    """A policy and binding on ConfigMaps written by the cluster admin (admission applies to
    system:masters too: only authorization is bypassed)."""
    spec = {
        "failurePolicy": failure_policy,
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                "operations": ["CREATE", "UPDATE", "DELETE"],
                                                "resources": ["configmaps"]}]},
        "matchConditions": conditions or [{"name": "admin", "expression": "request.userInfo.username == 'kubernetes-admin'"}],
        "validations": validations,
    }
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name}, "spec": spec},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name}, "spec": {"policyName": name, "validationActions": list(actions)}},
    ]


def create_configmap(kube, name: str = "cm", labels: dict | None = None):
    return core_as(kube, None).create_namespaced_config_map(
        "default", {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}})


def test_no_reason_is_invalid_422_and_the_expression_is_the_message(kube):
    """validator.go: without message or messageExpression the message is `failed expression: <expr>`;
    without reason the decision's reason is Invalid, which reasonToCode makes 422."""
    kube.apply(admin_policy("no-reason", [{"expression": "object.data.k != 'v'"}]))
    status, body = refused(create_configmap, kube)
    message = "ValidatingAdmissionPolicy 'no-reason' with binding 'no-reason' denied request: failed expression: object.data.k != 'v'"
    assert (status, body["reason"], body["message"]) == (422, "Invalid", f'configmaps "cm" is forbidden: {message}')


def test_null_object_on_delete_and_null_old_object_on_create(kube):
    """filter.go ForInput: `oldObject` is null on CREATE, `object` null on DELETE; both set on UPDATE."""
    kube.apply(admin_policy("nulls", [
        {"expression": "request.operation != 'CREATE' || (oldObject == null && object.metadata.name == 'cm')"},
        {"expression": "request.operation != 'UPDATE' || (oldObject.data.k == 'v' && object.data.k == 'w')"},
        {"expression": "request.operation != 'DELETE' || (object == null && oldObject.data.k == 'w')"},
        {"expression": "request.namespace == 'default' && request.name == 'cm' && !has(request.subResource)"},
    ]))
    core = core_as(kube, None)
    create_configmap(kube)
    core.patch_namespaced_config_map("cm", "default", {"data": {"k": "w"}})
    core.delete_namespaced_config_map("cm", "default")
    assert kube.get("configmaps", "default", "cm") is None


def test_evaluation_errors_follow_the_failure_policy(kube):
    """An error denies under Fail with `expression '<e>' resulted in error: <error>` (filter.go) and
    is ignored under Ignore (validator.go policyDecisionActionForError)."""
    kube.apply(admin_policy("fail", [{"expression": "object.nope == 1"}], conditions=[
        {"name": "one", "expression": "object.metadata.name == 'one'"}]))
    kube.apply(admin_policy("ignore", [{"expression": "object.nope == 1"}], failure_policy="Ignore"))
    status, body = refused(create_configmap, kube, "one")
    assert status == 422
    assert body["message"].endswith("denied request: expression 'object.nope == 1' resulted in error: no such key: nope")
    create_configmap(kube, "two")  # only the Ignore policy matches it (matchConditions of "fail" are false)


def test_what_cel_python_lacks_denies_whatever_the_failure_policy(kube):
    """A Kubernetes CEL library function the stand-in cannot evaluate must not pass silently: it denies
    even under Ignore, saying why."""
    kube.apply(admin_policy("lib", [{"expression": "request.userInfo.username.split(':').size() > 0"}],
                            failure_policy="Ignore"))
    status, body = refused(create_configmap, kube)
    assert status == 422 and "lacks Kubernetes' CEL library function 'split'" in body["message"]


def test_an_undeclared_name_is_a_compile_error_not_false(kube):
    """cel-go refuses an undeclared variable at compile time (cel/compile.go declares object,
    oldObject, request, namespaceObject, variables; filter.go ForInput reports `compilation error`);
    cel-python alone would evaluate `has(objekt.x)` to false and let `!has(...)` admit."""
    kube.apply(admin_policy("typo", [{"expression": "!has(objekt.metadata)"}]))
    status, body = refused(create_configmap, kube)
    assert status == 422
    assert body["message"].endswith("denied request: compilation error: undeclared reference to 'objekt' "
                                    "in '!has(objekt.metadata)'")


def test_warn_and_audit_bindings_do_not_deny(kube):
    """dispatcher.go Dispatch: only a binding's Deny action denies (Warn adds a warning, Audit an
    audit annotation; the stand-in models neither)."""
    kube.apply(admin_policy("warn", [{"expression": "false"}], actions=("Warn", "Audit")))
    create_configmap(kube)


def test_admission_manifests_are_checked_against_the_kubernetes_schema():
    """tests/test_build.py validates every file of build/ strictly with kubernetes-validate 1.30,
    which has admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy(Binding): a misspelt field is
    an error, so the schema is really used rather than skipped."""
    policy = yaml.safe_load((BUILD / "admission/validatingadmissionpolicy-falco-response-quarantine.yaml").read_text())
    kubernetes_validate.validate(policy, "1.30", strict=True)
    policy["spec"]["validations"][0]["mesage"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, "1.30", strict=True)


def test_policies_admit_exactly_the_writes_build_rbac_grants():
    """A policy admits the write verbs of the Roles and ClusterRoles build/rbac binds to its identity
    (engine/admission.py derives them from engine/rbac.py), so a verb added to a step's RBAC is not
    silently refused by admission, nor a removed one still admitted. Checked against build/ itself:
    which roles each ServiceAccount is bound to, and where."""
    settings = config.load(ROOT / "response.yaml").settings
    objects = [yaml.safe_load(p.read_text()) for p in sorted((BUILD / "rbac").glob("*.yaml"))]
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in ("Role", "ClusterRole")}
    for identity in admission.identities():
        account = names.step_service_account(identity)
        expected = set()
        for bound in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
            if not any(s.get("name") == account and s.get("namespace") == WORKFLOW_NAMESPACE for s in bound["subjects"]):
                continue
            role = roles[(bound["roleRef"]["kind"], bound["roleRef"]["name"])]
            for rule in role["rules"]:
                for verb in set(rule["verbs"]) & {"create", "update", "patch", "delete"}:
                    expected |= {(g, r, verb, bound["kind"] == "RoleBinding") for g in rule["apiGroups"]
                                 for r in rule["resources"] if r not in ("nodes/checkpoint", "nodes/proxy")}
        derived = {(g.group, g.resource, v, g.own_namespace) for g in admission.grants(settings, identity) for v in g.verbs}
        assert derived == expected, identity
        policy = yaml.safe_load((BUILD / f"admission/validatingadmissionpolicy-{account}.yaml").read_text())
        variables = {v["name"] for v in policy["spec"]["variables"]}
        for group, resource, verb, _ in expected:
            operation = admission.WRITE_OPERATIONS[verb]
            grant = admission.Grant(group, resource, (verb,), False)
            assert admission._variable(grant, operation) in variables, (identity, resource, verb)
