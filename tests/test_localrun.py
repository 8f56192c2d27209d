"""standin.argo.workflows (the local runner): DAG order, depends, Omitted, retries, outputs, onExit, volumes, env; loud refusals."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import yaml

from standin.argo import workflows
from standin.argo.workflows import LocalRunner, eval_depends, map_path, parse_duration

# A step: writes --value to <outputs>/out, appends its name to the $TRACE file, exits with --exit
# (or 75 while the counter file $COUNTER holds less than --flaky).
STEP = """
import os, pathlib, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
trace = os.environ.get("TRACE")
if trace:
    with open(trace, "a") as f:
        f.write(args.get("name", "?") + "|" + args.get("value", "") + "|" + os.environ.get("SEEN", "") + "\\n")
out = pathlib.Path(args["outputs-dir"])
out.mkdir(parents=True, exist_ok=True)
if "value" in args:
    (out / "out").write_text(args["value"])
flaky = int(args.get("flaky", "0"))
if flaky:
    counter = pathlib.Path(os.environ["COUNTER"])
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n < flaky:
        sys.exit(75)
if args.get("sleep"):
    import time; time.sleep(float(args["sleep"]))
sys.exit(int(args.get("exit", "0")))
"""


def step_template(name: str, *args: str, retry: dict | None = None, **extra) -> dict:
    t = {
        "name": name,
        "inputs": {"parameters": [{"name": "value", "value": ""}, {"name": "exit", "value": "0"}]},
        "container": {
            "image": "steps:dev",
            "command": ["python", "-c", STEP],
            "args": [f"--name={name}", "--outputs-dir=/tmp/outputs", "--value={{inputs.parameters.value}}",
                     "--exit={{inputs.parameters.exit}}", *args],
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/outputs/out", "default": "none"}}]},
    }
    if retry is not None:
        t["retryStrategy"] = retry
    t.update(extra)
    return t


RETRY = {"limit": "2", "retryPolicy": "Always", "expression": "lastRetry.status == 'Error' || lastRetry.exitCode == '75'",
         "backoff": {"duration": "10s", "factor": "2", "maxDuration": "3m"}}


def workflow_template(tasks: list[dict], templates: list[dict], name: str = "wt", **spec) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "who", "value": "world"}, {"name": "alert", "value": "{}"}]},
            "templates": templates + [{"name": "main", "dag": {"tasks": tasks}}],
            **spec,
        },
    }


def executor_rbac(namespace: str, *accounts: str) -> list[dict]:
    """What Argo's docs (docs/workflow-rbac.md) require of every workflow pod's ServiceAccount:
    workflowtaskresults create and patch, for argoexec's wait container."""
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "executor", "namespace": namespace},
         "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "executor", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "executor"},
         "subjects": [{"kind": "ServiceAccount", "name": a, "namespace": namespace} for a in accounts]},
    ]


def secret(name: str, data: dict[str, str], namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.fixture
def world(kube, tmp_path):
    """(runner factory, trace file): a build dir with the given WorkflowTemplate, run against the FakeKube.

    The namespace's `default` ServiceAccount (which every pod without serviceAccountName runs as)
    may report outputs, as Argo's docs require."""
    trace = tmp_path / "trace"
    kube.apply(executor_rbac("default", "default"))

    def make(wt: dict, **kwargs) -> LocalRunner:
        build = tmp_path / "build"
        (build / "pipelines").mkdir(parents=True, exist_ok=True)
        (build / "pipelines" / f"{wt['metadata']['name']}.yaml").write_text(yaml.safe_dump(wt))
        env = {"TRACE": str(trace), "COUNTER": str(tmp_path / "counter"), **kwargs.pop("env", {})}
        return LocalRunner(kube, build, env=env, workdir=tmp_path / "run", backoff_scale=0, **kwargs)

    return make, trace


def submit_and_run(runner: LocalRunner, template: str = "wt", params: dict | None = None, name: str = "wf-1"):
    wf = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"workflowTemplateRef": {"name": template},
                 "arguments": {"parameters": [{"name": k, "value": v} for k, v in (params or {}).items()]}},
    }
    created, _ = runner.submit(wf)
    assert created
    return runner.run("default", name)


def nodes_by_display(result) -> dict[str, dict]:
    return {n["displayName"]: n for n in result.workflow["status"]["nodes"].values()}


def test_dag_order_depends_omitted_outputs_and_exit_handler(world, kube):
    make, trace = world
    tasks = [
        {"name": "a", "template": "ok", "arguments": {"parameters": [{"name": "value", "value": "hello {{workflow.parameters.who}}"}]}},
        {"name": "b", "template": "ok", "depends": "a",
         "arguments": {"parameters": [{"name": "exit", "value": "1"}, {"name": "value", "value": "b"}]}},
        {"name": "c", "template": "ok", "depends": "b.Succeeded", "arguments": {"parameters": [{"name": "value", "value": "c"}]}},
        {"name": "d", "template": "ok", "depends": "b.Succeeded || b.Failed || b.Errored",
         "arguments": {"parameters": [{"name": "value", "value": "{{tasks.a.outputs.parameters.out}}!"}]}},
    ]
    exit_t = step_template("report", "--status={{workflow.status}}")
    exit_t["container"]["args"][2] = "--value={{workflow.status}} {{workflow.name}}"
    wt = workflow_template(tasks, [step_template("ok"), exit_t], onExit="report")
    result = submit_and_run(make(wt), params={"who": "falco"})
    assert result.phase == "Failed"  # c is a leaf omitted under a failed b
    phases = {t.name: t.phase for t in result.tasks}
    assert phases == {"a": "Succeeded", "b": "Failed", "c": "Omitted", "d": "Succeeded"}
    outputs = {t.name: t.outputs.get("out") for t in result.tasks}
    assert outputs["a"] == "hello falco" and outputs["d"] == "hello falco!"
    assert result.exit_handler.phase == "Succeeded" and result.exit_handler.outputs["out"] == "Failed wf-1"
    ran = [line.split("|")[1] for line in trace.read_text().splitlines()]
    assert ran == ["hello falco", "b", "hello falco!", "Failed wf-1"]  # a, b, d, then the exit handler; never c
    # the Workflow object in the API, as Argo keeps it
    wf = kube.get("workflows", "default", "wf-1")
    assert wf["status"]["phase"] == "Failed" and wf["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true"
    nodes = nodes_by_display(result)
    assert nodes["wf-1"]["type"] == "DAG" and nodes["wf-1"]["phase"] == "Failed"
    assert nodes["c"]["type"] == "Skipped" and nodes["c"]["phase"] == "Omitted"
    assert nodes["b"]["type"] == "Pod" and nodes["b"]["message"] == "Error (exit code 1)"
    assert nodes["a"]["outputs"]["parameters"][0] == {"name": "out", "value": "hello falco",
                                                      "valueFrom": {"path": "/tmp/outputs/out", "default": "none"}}
    assert nodes["wf-1.onExit"]["templateName"] == "report"
    assert all(n.get("startedAt") and n.get("finishedAt") for n in nodes.values())
    assert nodes["a"]["id"] == workflows.node_id("wf-1", "wf-1.a")


def test_a_failure_handled_by_a_downstream_leaf_still_fails_unless_every_leaf_branch_succeeds(world):
    make, _ = world
    tasks = [
        {"name": "a", "template": "ok", "arguments": {"parameters": [{"name": "exit", "value": "3"}]}},
        {"name": "cleanup", "template": "ok", "depends": "a.Failed"},
    ]
    result = submit_and_run(make(workflow_template(tasks, [step_template("ok")])))
    assert [t.phase for t in result.tasks] == ["Failed", "Succeeded"]
    assert result.phase == "Succeeded"  # the only leaf succeeded: Argo judges the DAG by its leaves


def test_when_reads_a_failed_tasks_outputs_and_a_skipped_leaf_keeps_the_failed_branch(world):
    """dag.go: `when` is substituted from the ancestors' outputs, a failed pod's included
    (buildLocalScopeFromTask -> buildLocalScope; argoexec saves outputs whatever the exit code,
    executor/postmain.go PostMain; a Retry node's are its last attempt's, operator.go) and
    evaluated by govaluate (steps.go shouldExecute); false: a Skipped node "when '...' evaluated
    false". A Skipped leaf is not Completed (NodePhase.Completed), so assessDAGPhase gives it its
    branch's phase: the failure stays; a leaf that runs and succeeds ends the DAG Succeeded."""
    make, _ = world
    retry = copy.deepcopy(RETRY)

    def tasks(value: str) -> list[dict]:
        return [
            {"name": "a", "template": "ok", "arguments": {"parameters": [{"name": "exit", "value": "1"},
                                                                            {"name": "value", "value": value}]}},
            {"name": "fix", "template": "ok", "depends": "a.Failed",
             "when": "'{{tasks.a.outputs.parameters.out}}' == 'false'",
             "arguments": {"parameters": [{"name": "value", "value": "fixed after {{tasks.a.outputs.parameters.out}}"}]}},
        ]

    ran = submit_and_run(make(workflow_template(tasks("false"), [step_template("ok", retry=retry)])), name="wf-ran")
    assert [(t.phase, t.outputs.get("out")) for t in ran.tasks] == [("Failed", "false"), ("Succeeded", "fixed after false")]
    assert nodes_by_display(ran)["a"]["outputs"]["parameters"][0]["value"] == "false"  # the Retry node's
    assert ran.phase == "Succeeded"  # the only leaf succeeded

    runner = make(workflow_template(tasks("true"), [step_template("ok", retry=retry)], name="wt2"))
    skipped = submit_and_run(runner, "wt2", name="wf-skipped")
    assert [t.phase for t in skipped.tasks] == ["Failed", "Skipped"]
    node = nodes_by_display(skipped)["fix"]
    assert node["type"] == "Skipped" and node["message"] == "when ''true' == 'false'' evaluated false"
    assert skipped.phase == "Failed"  # the skipped leaf inherits its failed branch


def test_retry_on_exit_75_with_backoff_until_success(world):
    make, trace = world
    tasks = [{"name": "f", "template": "flaky"}]
    result = submit_and_run(make(workflow_template(tasks, [step_template("flaky", "--flaky=2", retry=RETRY)])))
    task = result.tasks[0]
    assert result.phase == "Succeeded" and task.phase == "Succeeded"
    assert [a.exit_code for a in task.attempts] == [75, 75, 0]
    nodes = nodes_by_display(result)
    assert nodes["f"]["type"] == "Retry" and len(nodes["f"]["children"]) == 3
    assert [nodes[f"f({i})"]["phase"] for i in range(3)] == ["Failed", "Failed", "Succeeded"]


def test_retry_limit_and_expression(world):
    make, _ = world
    wt = workflow_template(
        [{"name": "busy", "template": "flaky"}, {"name": "broken", "template": "broken"}],
        [step_template("flaky", "--flaky=9", retry=RETRY),
         step_template("broken", retry=RETRY, inputs={"parameters": [{"name": "value", "value": ""}, {"name": "exit", "value": "1"}]})],
    )
    result = submit_and_run(make(wt))
    busy, broken = result.tasks
    assert len(busy.attempts) == 3 and busy.phase == "Failed" and "No more retries left" in busy.message
    assert len(broken.attempts) == 1 and "expression evaluated to false" in broken.message


def test_fallback_to_logs_on_error_makes_the_log_tail_the_node_message(world):
    make, _ = world
    t = step_template("noisy")
    t["container"]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    t["container"]["command"][2] = "import sys\nfor i in range(200): print('line', i, flush=True)\nprint('error: boom', file=sys.stderr)\nsys.exit(1)"
    plain = step_template("plain", inputs={"parameters": [{"name": "value", "value": ""}, {"name": "exit", "value": "4"}]})
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "noisy"}, {"name": "b", "template": "plain"}], [t, plain])))
    noisy, quiet = result.tasks
    assert noisy.message.endswith("error: boom\n") and "line 199" in noisy.message and "line 119" not in noisy.message
    assert len(noisy.message.encode()) <= 2048 and len(noisy.message.splitlines()) <= 80
    assert quiet.message == "Error (exit code 4)"
    assert "error: boom" in noisy.attempts[0].logs and "line 0\n" in noisy.attempts[0].logs


def test_template_deadline_fails_the_pod(world):
    make, _ = world
    wt = workflow_template([{"name": "slow", "template": "slow"}], [step_template("slow", "--sleep=5", activeDeadlineSeconds=1)])
    result = submit_and_run(make(wt))
    assert result.tasks[0].phase == "Failed" and "deadline" in result.tasks[0].message


def test_expression_workflow_variables_and_env_from_a_secret_in_the_api(world, kube):
    make, trace = world
    kube.apply([secret("creds", {"KEY": "s3cr3t"})])
    t = step_template("ok")
    t["container"]["args"][2] = "--value={{=sprig.b64enc(workflow.parameters.alert)}}|{{workflow.name}}|{{workflow.namespace}}|{{workflow.uid}}"
    t["container"]["env"] = [
        {"name": "SEEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}},
        {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}}},
    ]
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [t])), params={"alert": '{"rule": "x"}'})
    value = result.tasks[0].outputs["out"]
    b64, name, ns, uid = value.split("|")
    assert base64.b64decode(b64) == b'{"rule": "x"}' and (name, ns) == ("wf-1", "default")
    assert uid == kube.get("workflows", "default", "wf-1")["metadata"]["uid"]
    fields = trace.read_text().strip().split("|")
    assert (fields[0], fields[-1]) == ("ok", "s3cr3t")


def test_missing_secret_leaves_the_pod_pending_until_the_deadline(world, kube):
    """A container env from a missing Secret: the kubelet waits with CreateContainerConfigError
    (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables); the node shows it (operator.go
    getPendingReason) and fails when the deadline passes (the kubelet's activeDeadlineSeconds,
    which the controller derives from the workflow's, or operator.go's "Step exceeded its deadline")."""
    make, _ = world
    t = step_template("ok")
    t["container"]["env"] = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}}]
    runner = make(workflow_template([{"name": "a", "template": "ok"}], [t]), active_deadline_seconds=1.5)
    result = submit_and_run(runner)
    task = result.tasks[0]
    assert task.phase == "Failed" and task.message in (workflows.KUBELET_DEADLINE, workflows.WORKFLOW_DEADLINE)
    assert result.phase == "Failed"
    pod = kube.get("pods", "default", workflows.pod_name("wf-1", "wf-1.a", "ok"))
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'secret "creds" not found'}
    assert pod["spec"]["activeDeadlineSeconds"] <= 1  # what was left of the workflow's 1.5 s
    # the kubelet fails the pod itself; the controller's deadline leaves it Pending (terminateContainers)
    assert pod["status"]["phase"] == ("Failed" if task.message == workflows.KUBELET_DEADLINE else "Pending")


def test_unresolvable_reference_is_a_node_error(world):
    make, _ = world
    tasks = [{"name": "a", "template": "ok", "arguments": {"parameters": [{"name": "value", "value": "{{tasks.zz.outputs.parameters.out}}"}]}}]
    result = submit_and_run(make(workflow_template(tasks, [step_template("ok")])))
    assert result.tasks[0].phase == "Error" and "failed to resolve {{tasks.zz.outputs.parameters.out}}" in result.tasks[0].message


def test_required_argument_and_enum(world):
    make, _ = world
    wt = workflow_template([{"name": "a", "template": "ok"}], [step_template("ok")])
    wt["spec"]["arguments"]["parameters"] += [{"name": "pod"}, {"name": "dry-run", "value": "false", "enum": ["true", "false"]}]
    runner = make(wt)
    result = submit_and_run(runner)
    assert result.phase == "Error" and "spec.arguments.pod.value is required" in result.message
    result = submit_and_run(runner, params={"pod": "p", "dry-run": "maybe"}, name="wf-2")
    assert result.phase == "Error" and "enum" in result.message


def test_hostpath_is_the_pinned_nodes_checkpoint_dir_and_configmaps_are_files(world, kube):
    make, _ = world
    t = step_template("pinned")
    t["container"]["args"] = ["--outputs-dir=/var/lib/kubelet/checkpoints/out", "--value={{inputs.parameters.value}}"]
    t["container"]["volumeMounts"].append({"name": "cp", "mountPath": "/var/lib/kubelet/checkpoints"})
    t["volumes"].append({"name": "cp", "hostPath": {"path": "/var/lib/kubelet/checkpoints", "type": "Directory"}})
    t["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["{{inputs.parameters.node}}"]}]}]}}}
    t["inputs"]["parameters"].append({"name": "node"})
    t["outputs"] = {}
    c = step_template("ca")
    c["container"]["args"] = ["--outputs-dir=/tmp/outputs", "--value=x"]
    c["container"]["command"][2] = "import sys, pathlib; pathlib.Path(sys.argv[1].split('=')[1]).mkdir(parents=True); (pathlib.Path(sys.argv[1].split('=')[1]) / 'out').write_text(open('/etc/ca/ca.crt'.replace('/etc/ca', sys.argv[3].split('=')[1])).read())"
    c["container"]["args"].append("--ca-dir=/etc/ca")
    c["container"]["volumeMounts"].append({"name": "ca", "mountPath": "/etc/ca", "readOnly": True})
    c["volumes"].append({"name": "ca", "configMap": {"name": "kubelet-serving-ca"}})
    tasks = [
        {"name": "here", "template": "pinned", "arguments": {"parameters": [{"name": "node", "value": "node-1"}, {"name": "value", "value": "v"}]}},
        {"name": "nowhere", "template": "pinned", "arguments": {"parameters": [{"name": "node", "value": "node-9"}]}},
        {"name": "ca", "template": "ca"},
    ]
    kube.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubelet-serving-ca", "namespace": "default"},
                 "data": {"ca.crt": "PEM"}}])
    result = submit_and_run(make(workflow_template(tasks, [t, c]), active_deadline_seconds=4))
    here, nowhere, ca = result.tasks
    assert here.phase == "Succeeded" and (kube.checkpoint_dir("node-1") / "out" / "out").read_text() == "v"
    assert nodes_by_display(result)["here"]["hostNodeName"] == "node-1"
    # no node-9: the scheduler leaves the pod Pending (Unschedulable) until the deadline
    assert nowhere.phase == "Failed" and nowhere.message == workflows.WORKFLOW_DEADLINE
    assert kube.get("pods", "default", workflows.pod_name("wf-1", "wf-1.nowhere", "pinned"))["status"]["phase"] == "Pending"
    assert ca.phase == "Succeeded" and ca.outputs["out"] == "PEM"


# --- the Pod, as Argo's controller builds it, in the stand-in cluster -----------------------------

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBECONFIG_SEEN = STEP.replace('args.get("name", "?")', 'args.get("name", "?") + "|kubeconfig=" + str("KUBECONFIG" in os.environ)')


def token_step(name: str, **extra) -> dict:
    """A step that records whether it was given a KUBECONFIG."""
    t = step_template(name, **extra)
    t["container"]["command"][2] = KUBECONFIG_SEEN
    return t


def service_account(name: str, automount: bool | None = None, namespace: str = "default") -> dict:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    if automount is not None:
        sa["automountServiceAccountToken"] = automount
    return sa


def token_secret(account: str, namespace: str = "default") -> dict:
    """A legacy token Secret, filled by the token controller (what Argo's executor SA needs)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": f"{account}.service-account-token", "namespace": namespace,
                         "annotations": {"kubernetes.io/service-account.name": account}}}


def created_pod(kube, node: str, template: str, wf: str = "wf-1") -> dict:
    return kube.get("pods", "default", workflows.pod_name(wf, f"{wf}.{node}", template))


def mounts_at(container: dict, path: str) -> list[str]:
    return [m["name"] for m in container.get("volumeMounts") or [] if m["mountPath"] == path]


def test_the_step_pod_is_argos_pod_and_wait_reports_a_workflowtaskresult(world, kube):
    """workflowpod.go createWorkflowPod/podBuilder.build (legacy layout: init, wait, main),
    util.GeneratePodName v2; ServiceAccount admission adds kube-api-access-* to every container
    (plugin/pkg/admission/serviceaccount); argoexec wait creates the WorkflowTaskResult named after
    the node id (workflow/executor/taskresult.go createTaskResult) and marks it complete
    (FinalizeOutput); the controller takes the node's outputs from it."""
    make, trace = world
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok", "arguments": {
        "parameters": [{"name": "value", "value": "v"}]}}], [token_step("ok")])))
    assert result.phase == "Succeeded" and result.tasks[0].outputs == {"out": "v"}
    nid = workflows.node_id("wf-1", "wf-1.a")
    pod = created_pod(kube, "a", "ok")
    assert pod["metadata"]["name"] == f"wf-1-ok-{workflows.model.fnv32a('wf-1.a')}"
    assert pod["metadata"]["labels"] == {"workflows.argoproj.io/workflow": "wf-1", "workflows.argoproj.io/completed": "false"}
    assert pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"] == nid
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "main"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Workflow", "wf-1", True)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default" and "automountServiceAccountToken" not in spec
    assert [c["name"] for c in spec["containers"]] == ["wait", "main"] and [c["name"] for c in spec["initContainers"]] == ["init"]
    main = spec["containers"][1]
    assert main["command"][:2] == ["/var/run/argo/argoexec", "emissary"] and main["command"][-3:] == ["python", "-c", KUBECONFIG_SEEN]
    projected = [v["name"] for v in spec["volumes"] if "projected" in v]
    assert len(projected) == 1 and projected[0].startswith("kube-api-access-")
    assert all(mounts_at(c, TOKEN_DIR) == projected for c in spec["containers"] + spec["initContainers"])
    assert pod["status"]["phase"] == "Succeeded"
    assert trace.read_text().split("|")[1] == "kubeconfig=True"
    report = kube.get("workflowtaskresults", "default", nid)
    assert report["metadata"]["labels"] == {"workflows.argoproj.io/workflow": "wf-1",
                                            "workflows.argoproj.io/report-outputs-completed": "true"}
    assert report["metadata"]["ownerReferences"][0]["uid"] == kube.get("workflows", "default", "wf-1")["metadata"]["uid"]
    assert report["outputs"]["parameters"] == [{"name": "out", "value": "v", "valueFrom": {"path": "/tmp/outputs/out", "default": "none"}}]


@pytest.mark.parametrize(
    "template_says,account_says,pod_field,token",
    [(None, None, None, True), (True, None, None, True), (None, False, None, False),
     (True, False, None, False),  # the template's true is not copied: the ServiceAccount's false wins
     (False, True, False, False)],
)
def test_automount_is_copied_onto_the_pod_only_when_false(world, kube, template_says, account_says, pod_field, token):
    """workflowpod.go setupServiceAccount copies automountServiceAccountToken only when false;
    admission's shouldAutomount then takes the Pod's field, else the ServiceAccount's, else true.
    The executor account (exec-sa-token) keeps argoexec working when main gets no token."""
    make, trace = world
    kube.apply([service_account("step", account_says), service_account("argo-executor", False), token_secret("argo-executor")]
               + executor_rbac("default", "default", "argo-executor"))
    extra = {"serviceAccountName": "step", "executor": {"serviceAccountName": "argo-executor"}}
    if template_says is not None:
        extra["automountServiceAccountToken"] = template_says
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [token_step("ok", **extra)])))
    assert result.phase == "Succeeded", result.tasks[0].message
    spec = created_pod(kube, "a", "ok")["spec"]
    assert spec.get("automountServiceAccountToken") == pod_field
    main, wait, init = spec["containers"][1], spec["containers"][0], spec["initContainers"][0]
    assert mounts_at(wait, TOKEN_DIR) == mounts_at(init, TOKEN_DIR) == ["exec-sa-token"]
    assert {"name": "exec-sa-token", "secret": {"secretName": "argo-executor.service-account-token"}} in spec["volumes"]
    assert bool(mounts_at(main, TOKEN_DIR)) is token
    assert trace.read_text().split("|")[1] == f"kubeconfig={token}"


def test_without_any_token_argoexec_init_fails_before_main(world, kube):
    """A ServiceAccount with automount false, a template saying true, no executor account: the Pod
    has no token anywhere; argoexec init (initExecutor, clientConfig.ClientConfig, checkErr) dies
    with client-go's ErrEmptyConfig and exit code 2, so main never runs (operator.go
    inferFailedReason: init's failure, node Error)."""
    make, trace = world
    kube.apply([service_account("step", False)])
    t = token_step("ok", serviceAccountName="step", automountServiceAccountToken=True)
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [t])))
    task = result.tasks[0]
    assert task.phase == "Error" and task.message == (
        "Error (exit code 2): invalid configuration: no configuration has been provided, "
        "try setting KUBERNETES_MASTER environment variable")
    assert not trace.exists()
    spec = created_pod(kube, "a", "ok")["spec"]
    assert not any("projected" in v for v in spec["volumes"])


def test_automount_false_without_an_executor_account_is_refused(world, kube):
    """setupServiceAccount: "executor.serviceAccountName must not be empty if
    automountServiceAccountToken is false" (a BadRequest: the node errors, no pod is created)."""
    make, trace = world
    t = token_step("ok", automountServiceAccountToken=False)
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [t])))
    assert result.tasks[0].phase == "Error" and result.tasks[0].message == workflows.NO_EXECUTOR_ACCOUNT
    assert created_pod(kube, "a", "ok") is None and not trace.exists()


def test_an_executor_token_secret_that_is_missing_keeps_the_pod_pending(world, kube):
    """exec-sa-token names `<executor>.service-account-token` (util/secrets TokenNameForServiceAccount);
    without that Secret the kubelet cannot mount it (FailedMount, pod Pending) until the deadline."""
    make, trace = world
    kube.apply([service_account("argo-executor", False)])
    t = token_step("ok", automountServiceAccountToken=False, executor={"serviceAccountName": "argo-executor"})
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [t]), active_deadline_seconds=1.5))
    assert result.tasks[0].phase == "Failed"
    assert result.tasks[0].message in (workflows.KUBELET_DEADLINE, workflows.WORKFLOW_DEADLINE)
    pod = created_pod(kube, "a", "ok")
    events = [e for e in kube.list("events", "default") if e["involvedObject"]["name"] == pod["metadata"]["name"]]
    assert events and {e["reason"] for e in events} == {"FailedMount"}
    assert events[0]["message"] == ('MountVolume.SetUp failed for volume "exec-sa-token" : '
                                    'secret "argo-executor.service-account-token" not found')
    assert not trace.exists()


def test_an_executor_account_that_is_missing_fails_the_node(world, kube):
    """operator.go getServiceAccountTokenName GETs the executor ServiceAccount; its error fails the node."""
    make, _ = world
    t = token_step("ok", executor={"serviceAccountName": "ghost"})
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [t])))
    assert result.tasks[0].phase == "Error" and result.tasks[0].message == 'serviceaccounts "ghost" not found'


def test_a_missing_service_account_is_refused_by_admission(world, kube):
    """ServiceAccount admission refuses the Pod (403); submitPod's error is not transient: node Error."""
    make, _ = world
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok"}], [token_step("ok", serviceAccountName="ghost")])))
    name = workflows.pod_name("wf-1", "wf-1.a", "ok")
    assert result.tasks[0].phase == "Error" and result.tasks[0].message == (
        f'pods "{name}" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found')


def test_wait_without_rbac_for_workflowtaskresults_errors_the_node(world, kube):
    """argoexec wait: InitializeOutput's create is refused (403 is not transient, so not retried);
    the first error ends wait with exit code 64 (cmd/argoexec/main.go) and, main having succeeded,
    becomes the node's Error message (inferFailedReason); no outputs reach the node."""
    make, trace = world
    kube.apply([service_account("nobody")])
    result = submit_and_run(make(workflow_template([{"name": "a", "template": "ok", "arguments": {
        "parameters": [{"name": "value", "value": "v"}]}}], [token_step("ok", serviceAccountName="nobody")])))
    task = result.tasks[0]
    assert task.phase == "Error" and task.message == (
        'Error (exit code 64): workflowtaskresults.argoproj.io is forbidden: User "system:serviceaccount:default:nobody" '
        'cannot create resource "workflowtaskresults" in API group "argoproj.io" in the namespace "default"')
    assert trace.read_text().startswith("ok|kubeconfig=True|v")  # main ran
    assert task.outputs == {} and kube.get("workflowtaskresults", "default", workflows.node_id("wf-1", "wf-1.a")) is None


def test_build_pod_token_secret_name_and_deadlines():
    """util/secrets TokenNameForServiceAccount: secrets[0], else the annotation, else <name>.service-account-token;
    podBuilder.build: activeDeadlineSeconds is the template's or what is left of the workflow's, whichever
    is sooner (exit handlers keep the template's), and no pod once the workflow's has passed."""
    from standin.argo.workflows.pods import token_secret_name

    sa = {"metadata": {"name": "ex"}}
    assert token_secret_name(sa) == "ex.service-account-token"
    assert token_secret_name({**sa, "metadata": {"name": "ex", "annotations": {
        "workflows.argoproj.io/service-account-token.name": "mine"}}}) == "mine"
    assert token_secret_name({**sa, "secrets": [{"name": "first"}, {"name": "second"}]}) == "first"
    wf = workflows.WorkflowContext("wf", "ns", "uid", {"serviceAccountName": "wf-sa"}, deadline=1000.0)
    body = {"name": "t", "activeDeadlineSeconds": 60, "container": {"image": "i", "command": ["python", "-c", "pass"]}}
    pod = workflows.build_pod(wf, "wf.t", "wf-1", body, body, False, 900.5, lambda a: a)
    assert pod["spec"]["activeDeadlineSeconds"] == 60 and pod["spec"]["serviceAccountName"] == "wf-sa"
    assert workflows.build_pod(wf, "wf.t", "wf-1", body, body, False, 960.5, lambda a: a)["spec"]["activeDeadlineSeconds"] == 39
    assert workflows.build_pod(wf, "wf.t", "wf-1", body, body, True, 999.5, lambda a: a)["spec"]["activeDeadlineSeconds"] == 60
    assert workflows.build_pod(wf, "wf.t", "wf-1", body, body, False, 999.5, lambda a: a) is None
    with pytest.raises(workflows.PodRefused, match="executor.serviceAccountName must not be empty"):
        workflows.build_pod(wf, "wf.t", "wf-1", {**body, "automountServiceAccountToken": False}, body, False, 0, lambda a: a)


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda wt: wt["spec"]["templates"][0].__setitem__("podSpecPatch", "{}"), "podSpecPatch"),
        (lambda wt: wt["spec"]["templates"][-1]["dag"]["tasks"][0].__setitem__("when", "1 < 2"), "when expression"),
        (lambda wt: wt["spec"]["templates"][0]["container"].__setitem__("workingDir", "/"), "workingDir"),
        (lambda wt: wt["spec"].__setitem__("volumeClaimTemplates", []), "volumeClaimTemplates"),
        (lambda wt: wt["spec"]["templates"][0]["retryStrategy"].__setitem__("affinity", {}), "affinity"),
        (lambda wt: wt["spec"]["templates"][0]["container"]["args"].append("{{=toJson(inputs)}}"), "expression"),
        (lambda wt: wt["spec"]["templates"][0]["volumes"].append({"name": "tmp2", "nfs": {}}) or
         wt["spec"]["templates"][0]["container"]["volumeMounts"].append({"name": "tmp2", "mountPath": "/x"}), "volume type"),
    ],
    ids=["podSpecPatch", "when", "workingDir", "volumeClaimTemplates", "retry.affinity", "expression", "nfs"],
)
def test_unsupported_fields_fail_loudly_naming_them(world, kube, mutate, field):
    make, _ = world
    wt = workflow_template([{"name": "a", "template": "ok"}], [step_template("ok", retry=copy.deepcopy(RETRY))])
    mutate(wt)
    with pytest.raises(workflows.Unsupported, match=field):
        submit_and_run(make(wt))


def test_submit_twice_is_409_already_exists(world):
    make, _ = world
    runner = make(workflow_template([{"name": "a", "template": "ok"}], [step_template("ok")]))
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "dup", "namespace": "default"},
          "spec": {"workflowTemplateRef": {"name": "wt"}}}
    assert runner.submit(wf)[0] is True
    created, status = runner.submit(wf)
    assert created is False and status["reason"] == "AlreadyExists" and status["code"] == 409


# --- pieces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,phases,want",
    [
        ("a", {"a": "Succeeded"}, True),
        ("a", {"a": "Failed"}, False),
        ("a", {"a": "Skipped"}, True),
        ("a.Succeeded || a.Failed || a.Errored", {"a": "Error"}, True),
        ("a.Succeeded || a.Failed || a.Errored", {"a": "Omitted"}, False),
        ("a.Omitted", {"a": "Omitted"}, True),
        ("a && !b.Failed", {"a": "Succeeded", "b": "Failed"}, False),
        ("(a.Failed || b) && !(b.Errored)", {"a": "Succeeded", "b": "Succeeded"}, True),
        ("task-1.Succeeded && task-2", {"task-1": "Succeeded", "task-2": "Succeeded"}, True),
    ],
)
def test_depends_expressions(expr, phases, want):
    assert eval_depends(expr, phases) is want


def test_depends_refuses_what_it_cannot_evaluate():
    with pytest.raises(workflows.Unsupported):
        eval_depends("a.AnySucceeded", {"a": "Succeeded"})
    with pytest.raises(workflows.Unsupported):
        eval_depends("a ||", {"a": "Succeeded"})


def test_retry_expression():
    expr = "lastRetry.status == 'Error' || lastRetry.exitCode == '75'"
    assert workflows.eval_retry_expression(expr, {"status": "Failed", "exitCode": "75"})
    assert workflows.eval_retry_expression(expr, {"status": "Error", "exitCode": "-1"})
    assert not workflows.eval_retry_expression(expr, {"status": "Failed", "exitCode": "1"})
    with pytest.raises(workflows.Unsupported):
        workflows.eval_retry_expression("asInt(lastRetry.exitCode) > 1", {})


def test_paths_under_mounts_are_mapped():
    mounts = [("/var/lib/kubelet/checkpoints", Path("/L/cp")), ("/tmp", Path("/L/tmp"))]
    assert map_path("--outputs-dir=/tmp/outputs", mounts) == "--outputs-dir=/L/tmp/outputs"
    assert map_path("--checkpoint-dir=/var/lib/kubelet/checkpoints", mounts) == "--checkpoint-dir=/L/cp"
    assert map_path("/tmp", mounts) == "/L/tmp"
    assert map_path("--x=/tmpfoo", mounts) == "--x=/tmpfoo"
    assert map_path("--workflow=falco-response/wf", mounts) == "--workflow=falco-response/wf"


def test_durations():
    assert parse_duration("10s", "x") == 10 and parse_duration("3m", "x") == 180 and parse_duration(30, "x") == 30
    assert parse_duration("1h30m", "x") == 5400 and parse_duration("500ms", "x") == 0.5
    with pytest.raises(workflows.WorkflowError):
        parse_duration("ten", "x")
