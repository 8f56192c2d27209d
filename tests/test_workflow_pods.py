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

from engine.demo import Demo, default_event
from standin.argo import workflows

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
ALERT = default_event().read_bytes()  # Terminal shell in container, default/kubecon
NS = "falco-response"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
API_STEPS = {"verify", "checkpoint", "quarantine", "delete", "report"}  # copy alone needs no API (README)
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


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """build/ as generated, two pipelines that between them run every step."""
    runs = {}
    for policy in ("checkpoint-and-quarantine", "delete"):
        runs[policy] = run_demo(BUILD, tmp_path_factory.mktemp(policy) / "demo", policy=policy)
    return runs


def test_every_api_calling_step_gets_its_own_token_and_succeeds_with_rbac_enforced(real_runs):
    """(a) setupServiceAccount leaves automount to the ServiceAccount unless a template says false;
    admission then mounts kube-api-access-* (shouldAutomount). Every step that calls the API runs
    with its own ServiceAccount's token and succeeds; copy's main gets none, its argoexec gets the
    executor's; each wait container reports a WorkflowTaskResult (create, patch: executor RBAC)."""
    seen = set()
    for policy, (result, state, out) in real_runs.items():
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
    assert seen == API_STEPS | {"copy"}


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
