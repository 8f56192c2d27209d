"""build/ on the stand-in cluster as Argo runs it: every step Pod built the way Argo's controller
builds it, admitted and started by the stand-in API server and kubelet, RBAC enforced per
ServiceAccount token.

Upstream: workflow/controller/workflowpod.go (createWorkflowPod, setupServiceAccount,
newExecContainer), util/secrets/secret_name.go (TokenNameForServiceAccount), Kubernetes'
ServiceAccount admission (plugin/pkg/admission/serviceaccount/admission.go, shouldAutomount),
argoexec's wait container (workflow/executor/taskresult.go), operator.go and exec_control.go for
deadlines. Each test fails on the build/ of the commit before issue 7's fixes (Service Accounts
saying automountServiceAccountToken false, templates saying true, no executor token Secret).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from engine import build as build_mod, config, names
from engine.demo import Demo, default_event
from standin.argo import workflows

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
ALERT = default_event().read_bytes()  # Terminal shell in container, default/kubecon
NS = "falco-response"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
API_STEPS = {"verify", "checkpoint", "quarantine", "delete", "report"}  # copy and analyze need no API (README)
EXECUTOR_SECRET = "falco-response-executor.service-account-token"


def run_demo(build_dir: Path, workdir: Path, policy: str | None = None, prepare=None, **runner_options):
    out = io.StringIO()
    with Demo(build_dir, workdir=workdir, out=out, runner_options=runner_options) as demo:
        if prepare:
            prepare(demo.kube)
        result = demo.run(ALERT, policy=policy, source="test")
        kube = demo.kube
        state = {
            "pods": {p["metadata"]["annotations"]["workflows.argoproj.io/node-name"]: p for p in kube.list("pods", NS)},
            "reports": {r["metadata"]["name"]: r for r in kube.list("workflowtaskresults", NS)},
            "events": kube.list("events", NS),
            "workflow": kube.get("workflows", NS, result.workflow_name) if result.workflow_name else None,
        }
    return result, state, out.getvalue()


def variant(tmp_path: Path, template: str, **fields) -> Path:
    """A copy of build/ whose step template `template` has `fields` (None removes a field)."""
    build = tmp_path / "build"
    shutil.copytree(BUILD, build)
    for path in (build / "pipelines").glob("*.yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        for doc in docs:
            for t in (doc or {}).get("spec", {}).get("templates") or []:
                if t["name"] == template:
                    for key, value in fields.items():
                        if value is None:
                            t.pop(key, None)
                        else:
                            t[key] = value
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return build


def mounts_at(container: dict, path: str) -> list[str]:
    return [m["name"] for m in container.get("volumeMounts") or [] if m["mountPath"] == path]


def step(pod: dict) -> str:
    """The template a pod runs (ARGO_TEMPLATE, which the controller gives argoexec init)."""
    env = {e["name"]: e.get("value") for e in pod["spec"]["initContainers"][0]["env"]}
    return json.loads(env["ARGO_TEMPLATE"])["name"]


class Order:
    """What the pod's network looked like when each write reached the API server and when the
    checkpoint request reached the kubelet (FakeKube.on_request runs before a request is served,
    on the API server and on every kubelet alike)."""

    WORKLOAD_NS = "default"  # the demo alert's pod: default/kubecon

    def __init__(self) -> None:
        self.events: list[tuple[str, bool, bool]] = []  # (what, deny-all exists, pod labelled quarantined)

    def install(self, kube) -> None:
        def seen(method: str, path: str) -> None:
            ns = f"/namespaces/{self.WORKLOAD_NS}/"
            if method == "POST" and path.startswith(f"/checkpoint/{self.WORKLOAD_NS}/"):
                what = "checkpoint"
            elif method == "POST" and path.endswith(f"{ns}networkpolicies"):
                what = "create networkpolicy"
            elif method == "PATCH" and f"{ns}pods/" in path:
                what = "patch pod"
            elif method == "DELETE" and f"{ns}pods/" in path:
                what = "delete pod"
            else:
                return
            policy = kube.get("networkpolicies", self.WORKLOAD_NS, names.QUARANTINE_NETWORKPOLICY)
            pod = next(iter(kube.list("pods", self.WORKLOAD_NS)), None)
            labelled = bool(pod) and (pod["metadata"].get("labels") or {}).get(names.LABEL_QUARANTINED) == "true"
            self.events.append((what, policy is not None, labelled))

        kube.on_request(seen)

    def at(self, what: str) -> tuple[bool, bool]:
        return next((np, label) for w, np, label in self.events if w == what)

    def sequence(self) -> list[str]:
        return [w for w, _, _ in self.events]


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """build/ as generated, two pipelines that between them run every step; each run's Order."""
    runs, orders = {}, {}
    for policy in ("checkpoint-and-quarantine", "delete"):
        orders[policy] = Order()
        runs[policy] = run_demo(BUILD, tmp_path_factory.mktemp(policy) / "demo", policy=policy,
                                prepare=orders[policy].install)
    runs["orders"] = orders
    return runs


def test_every_api_calling_step_gets_its_own_token_and_succeeds_with_rbac_enforced(real_runs):
    """(a) setupServiceAccount leaves automount to the ServiceAccount unless a template says false;
    admission then mounts kube-api-access-* (shouldAutomount). Every step that calls the API runs
    with its own ServiceAccount's token and succeeds; copy's and analyze's mains get none, their argoexec gets the
    executor's; each wait container reports a WorkflowTaskResult (create, patch: executor RBAC)."""
    seen = set()
    for policy, (result, state, out) in ((k, v) for k, v in real_runs.items() if k != "orders"):
        assert result.run.phase == "Succeeded", (policy, out[-2000:])
        for node_name, pod in state["pods"].items():
            name, spec = step(pod), pod["spec"]
            seen.add(name)
            wait, main = spec["containers"]
            init = spec["initContainers"][0]
            assert spec["serviceAccountName"] == f"falco-response-{name}"
            assert pod["status"]["phase"] == "Succeeded", (policy, node_name)
            if name in API_STEPS:
                projected = [v["name"] for v in spec["volumes"] if "projected" in v]
                assert len(projected) == 1 and mounts_at(main, TOKEN_DIR) == projected, node_name
                assert mounts_at(wait, TOKEN_DIR) == mounts_at(init, TOKEN_DIR) == projected
            else:
                assert spec.get("automountServiceAccountToken") is False and not mounts_at(main, TOKEN_DIR)
                assert mounts_at(wait, TOKEN_DIR) == mounts_at(init, TOKEN_DIR) == ["exec-sa-token"]
                assert {"name": "exec-sa-token", "secret": {"secretName": EXECUTOR_SECRET}} in spec["volumes"]
            report = state["reports"][pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]]
            assert report["metadata"]["labels"]["workflows.argoproj.io/report-outputs-completed"] == "true"
    assert seen == API_STEPS | {"copy", "analyze"}


def test_a_template_saying_true_cannot_override_a_service_account_saying_false(real_runs, tmp_path):
    """(b) setupServiceAccount copies automountServiceAccountToken onto the Pod only when false, so
    a template's true is a no-op and the ServiceAccount's false decides (shouldAutomount): the
    verify pod gets no token anywhere, argoexec init cannot build its client (client-go's
    ErrEmptyConfig, exit code 2) and the step never runs. Control: the same step of build/ as
    generated got a token and succeeded."""
    control = next(t for t in real_runs["checkpoint-and-quarantine"][0].run.tasks if t.name == "verify")
    assert control.phase == "Succeeded"
    build = variant(tmp_path, "verify", automountServiceAccountToken=True)

    def account_says_false(kube):
        sa = yaml.safe_load((BUILD / "rbac" / "serviceaccount-falco-response-verify.yaml").read_text())
        kube.apply([{**sa, "automountServiceAccountToken": False}])

    result, state, out = run_demo(build, tmp_path / "demo", prepare=account_says_false)
    verify = next(t for t in result.run.tasks if t.name == "verify")
    assert verify.phase == "Error" and verify.message.startswith("Error (exit code 2): invalid configuration: no configuration")
    assert "no configuration has been provided" in out
    pods = [p for p in state["pods"].values() if step(p) == "verify"]
    assert pods and all(not any("projected" in v for v in p["spec"]["volumes"]) for p in pods)
    assert "automountServiceAccountToken" not in pods[0]["spec"]
    assert result.run.phase == "Error" and all(t.phase == "Omitted" for t in result.run.tasks if t.name != "verify")


def test_a_missing_executor_token_secret_leaves_copy_pending_until_the_workflow_deadline(tmp_path):
    """(c) executor.serviceAccountName makes the controller mount the Secret
    TokenNameForServiceAccount names; without it the kubelet cannot mount exec-sa-token
    (FailedMount), the copy pod stays Pending, and the deadline fails the node (the kubelet's
    activeDeadlineSeconds, derived from the workflow's, or exec_control.go's "Step exceeded its
    deadline"); quarantine still contains the pod and the exit handler still reports."""

    def no_executor_token(kube):
        assert kube.get("secrets", NS, EXECUTOR_SECRET) is not None  # build/rbac generates it
        kube.delete("secrets", NS, EXECUTOR_SECRET)

    result, state, out = run_demo(BUILD, tmp_path / "demo", prepare=no_executor_token, active_deadline_seconds=12)  # room for the other steps under load
    tasks = {t.name: t for t in result.run.tasks}
    assert tasks["checkpoint"].phase == "Succeeded", out[-2000:]
    copy = tasks["copy"]
    assert copy.phase == "Failed" and len(copy.attempts) == 1  # the expression retries only Error and exit 75
    assert copy.attempts[0].message in (workflows.KUBELET_DEADLINE, workflows.WORKFLOW_DEADLINE)
    pod = next(p for p in state["pods"].values() if step(p) == "copy")
    mount_failures = {e["message"] for e in state["events"]
                      if e["involvedObject"]["name"] == pod["metadata"]["name"] and e["reason"] == "FailedMount"}
    assert mount_failures == {f'MountVolume.SetUp failed for volume "exec-sa-token" : secret "{EXECUTOR_SECRET}" not found'}
    assert tasks["quarantine"].phase == "Succeeded" and result.run.exit_handler.phase == "Succeeded"
    assert result.run.phase == "Failed" and state["workflow"]["status"]["phase"] == "Failed"


def test_a_template_saying_false_without_an_executor_account_is_refused(real_runs, tmp_path):
    """(d) setupServiceAccount refuses automountServiceAccountToken false without an executor
    service account ("executor.serviceAccountName must not be empty if automountServiceAccountToken
    is false"; the node errors, no pod is created). Control: build/'s copy template, false with
    the executor account, runs."""
    control = next(t for t in real_runs["checkpoint-and-quarantine"][0].run.tasks if t.name == "copy")
    assert control.phase == "Succeeded"
    build = variant(tmp_path, "copy", executor=None)
    result, state, out = run_demo(build, tmp_path / "demo")
    copy = next(t for t in result.run.tasks if t.name == "copy")
    assert copy.phase == "Error" and copy.message.startswith(workflows.NO_EXECUTOR_ACCOUNT), copy.message
    assert not any(step(p) == "copy" for p in state["pods"].values())


# --- isolate first (issue 9): the order of containment and evidence -------------------------------


def tasks_of(result) -> dict:
    return {t.name: t for t in result.run.tasks}


def test_isolate_first_the_deny_all_exists_before_the_checkpoint_reaches_the_kubelet(real_runs):
    """build/'s checkpoint-and-quarantine and delete pipelines (isolate-first, the default order):
    verify's own pod creates the deny-all NetworkPolicy and labels the pod quarantined, so when the
    checkpoint request reaches the kubelet (and, for delete, when the DELETE reaches the API server)
    the pod is already cut off; quarantine then only detaches. The order is recorded as the requests
    arrive (FakeKube.on_request). On the previous build/ the first write came from quarantine, after
    the checkpoint: at the checkpoint there was no NetworkPolicy and no label."""
    order = real_runs["orders"]["checkpoint-and-quarantine"]
    result, state, out = real_runs["checkpoint-and-quarantine"]
    assert result.run.phase == "Succeeded", out[-2000:]
    assert order.at("checkpoint") == (True, True), order.events
    seq = order.sequence()
    assert seq.index("create networkpolicy") < seq.index("patch pod") < seq.index("checkpoint"), seq
    tasks = tasks_of(result)
    assert tasks["verify"].outputs["isolation"] == "isolated"
    assert tasks["quarantine"].outputs["result"] == "isolated"
    assert set(result.pod["metadata"]["labels"]) == {names.LABEL_QUARANTINED, names.LABEL_POLICY}  # detached too

    order = real_runs["orders"]["delete"]
    result, state, out = real_runs["delete"]
    assert result.run.phase == "Succeeded", out[-2000:]
    assert order.at("delete pod") == (True, True), order.events
    assert tasks_of(result)["verify"].outputs["isolation"] == "isolated"


def variant_build(tmp_path: Path, **quarantine) -> Path:
    """build/ generated from response.yaml with interactive-intrusion (the demo alert's policy)
    evidence-first, one more policy `isolating` (checkpoint-and-quarantine, the default order) and
    the given quarantine settings."""
    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["settings"]["quarantine"].update(quarantine)
    for policy in raw["policies"]:
        if policy["name"] == "interactive-intrusion":
            policy["order"] = "evidence-first"
    raw["policies"].append({"name": "isolating", "match": {"rules": ["Terminal shell in container"]},
                            "response": "checkpoint-and-quarantine"})
    out = tmp_path / "build"
    build_mod.write(config.parse(raw), out)
    return out


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory):
    """One variant build/ (quarantine.on_not_isolated: delete), two runs of the demo alert: its own
    policy (evidence-first), and policy `isolating` with a NetworkPolicy that allows all ingress to
    every pod of the namespace, which no label removal escapes."""
    root = tmp_path_factory.mktemp("variant")
    build = variant_build(root, on_not_isolated="delete")
    runs = {}
    evidence_first = Order()
    runs["evidence-first"] = (*run_demo(build, root / "ef", prepare=evidence_first.install), evidence_first)

    escalating = Order()

    def allow_all(kube) -> None:
        escalating.install(kube)
        kube.apply([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "allow-all", "namespace": Order.WORKLOAD_NS},
                     "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}}])

    runs["escalation"] = (*run_demo(build, root / "esc", policy="isolating", prepare=allow_all), escalating)
    return runs


def test_evidence_first_keeps_the_old_order(variant_runs):
    """A policy with `order: evidence-first` gets its Sensor pointed at falco-<pipeline>-evidence-first
    (engine/names.py workflow_template_name): verify changes nothing, the checkpoint reaches the kubelet
    while the pod still has its network, and quarantine isolates after it, as before issue 9."""
    result, state, out, order = variant_runs["evidence-first"]
    assert result.run.phase == "Succeeded", out[-2000:]
    assert state["workflow"]["spec"]["workflowTemplateRef"]["name"] == "falco-checkpoint-and-quarantine-evidence-first"
    assert order.at("checkpoint") == (False, False), order.events
    seq = order.sequence()
    assert seq.index("checkpoint") < seq.index("create networkpolicy") < seq.index("patch pod"), seq
    tasks = tasks_of(result)
    assert "isolation" not in tasks["verify"].outputs
    assert tasks["quarantine"].outputs["result"] == "isolated"


def test_escalation_still_deletes_a_pod_that_stays_reachable(variant_runs):
    """quarantine.on_not_isolated: delete with the isolate-first order: verify isolates before the
    checkpoint and says the pod is still reachable through allow-all; quarantine detaches, judges
    again (not-isolated, exit 1, outputs saved: workflow/executor/postmain.go) and the `delete` task
    (depends quarantine.Failed, when isolated == 'false': dag.go evaluateDependsLogic) deletes it."""
    result, state, out, order = variant_runs["escalation"]
    assert state["workflow"]["spec"]["workflowTemplateRef"]["name"] == "falco-checkpoint-and-quarantine"
    assert order.at("checkpoint") == (True, True), order.events
    tasks = tasks_of(result)
    verdict = "not-isolated: NetworkPolicy default/allow-all allows ingress"
    assert tasks["verify"].phase == "Succeeded" and tasks["verify"].outputs["isolation"] == verdict
    assert tasks["quarantine"].phase == "Failed", out[-2000:]
    assert tasks["quarantine"].outputs["isolated"] == "false" and tasks["quarantine"].outputs["result"] == verdict
    assert tasks["delete"].phase == "Succeeded" and tasks["copy"].phase == "Succeeded"
    assert "delete pod" in order.sequence() and result.pod is None


def test_pods_before_isolation_counted_from_build():
    """tests/bench_pipelines.py's count on build/: isolation in the first pod of every containing
    pipeline (default order), in the third for the evidence-first variants (the old order); the
    evidence still in S3 after three pods, deletion after at most three."""
    from tests import bench_pipelines

    got = {name: bench_pipelines.figures(wt) for name, wt in bench_pipelines.load(BUILD).items()}
    for pipeline in ("checkpoint-and-quarantine", "checkpoint-and-delete", "quarantine", "delete"):
        assert got[pipeline]["pods_before_isolation"] == 1, pipeline
    for pipeline in names.ORDERED_PIPELINES:
        assert got[pipeline + "-evidence-first"]["pods_before_isolation"] == 3
        assert got[pipeline]["pods_before_evidence"] == got[pipeline + "-evidence-first"]["pods_before_evidence"] == 3
    assert got["checkpoint-and-delete"]["pods_before_deletion"] == 3 and got["delete"]["pods_before_deletion"] == 2
    assert "pods_before_isolation" not in got["checkpoint-only"]
