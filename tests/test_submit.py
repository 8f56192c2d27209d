"""`falco-response submit`, alert storms through webhook + Sensors + submit (one Workflow per container per
severity), and escalation: a more severe alert is never deduplicated, a weaker one after it does nothing."""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import inspect
import io
import json
import shlex
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from engine import cli, names, simulate
from standin import shared_dir
from standin.argo.events import sensors as sensorsim
from standin.argo.events.webhook import MASKED, WebhookEndpoint, WebhookServer
from standin.argo.workflows import LocalRunner

ROOT = Path(__file__).resolve().parent.parent
EVENTS = shared_dir() / "falco-events"
ALERT = EVENTS / "02_terminal_shell_in_container.aks.json"


def container_hash(ns: str, pod: str, cid: str) -> str:
    return hashlib.sha256(f"{ns}/{pod}/{cid}".encode()).hexdigest()[:16]


def run_cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def test_command_from_an_alert_is_what_the_sensor_would_submit():
    code, out, err = run_cli("submit", str(ALERT))
    assert code == 0, err
    argv = shlex.split(out.strip())
    assert argv[:6] == ["argo", "submit", "--from", "workflowtemplate/falco-checkpoint-and-quarantine", "-n", "falco-response"]
    sim = json.loads(run_cli("simulate", "--json", str(ALERT))[1])
    assert argv[argv.index("--name") + 1] == sim["workflow_name"]  # the same name: a duplicate is refused
    params = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-p")
    assert params == sim["parameters"]
    assert json.loads(params["alert"]) == json.loads(ALERT.read_text())
    labels = dict(kv.split("=", 1) for kv in argv[argv.index("-l") + 1].split(","))
    assert labels == {"falco-response.io/policy": "interactive-intrusion", "falco-response.io/pipeline": "checkpoint-and-quarantine",
                      "falco-response.io/namespace": "default", "falco-response.io/pod": "hellofalco",
                      "falco-response.io/rule": "Terminal-shell-in-container", "falco-response.io/severity": "3"}


def test_overriding_the_pipeline_or_dry_run_names_the_workflow_for_that_severity():
    """--pipeline and -p dry-run change what runs, so the name's severity follows (names.SEVERITY_ORDER)."""
    key = container_hash("default", "hellofalco", "1376fe875695")
    for extra, severity in (([], 3), (["--pipeline", "delete"], 4), (["--pipeline", "checkpoint-and-delete"], 5),
                            (["--pipeline", "checkpoint-only"], 1), (["-p", "dry-run=true"], 0),
                            (["--pipeline", "delete", "-p", "dry-run=true"], 0)):
        code, out, err = run_cli("submit", str(ALERT), *extra)
        assert code == 0, err
        argv = shlex.split(out.strip())
        assert argv[argv.index("--name") + 1] == f"falco-response-{key}-{severity}", extra
        assert f"falco-response.io/severity={severity}" in argv[argv.index("-l") + 1].split(","), extra


def test_overrides_pipeline_and_validation():
    code, out, _ = run_cli("submit", str(ALERT), "--pipeline", "delete", "-p", "dry-run=true")
    argv = shlex.split(out.strip())
    assert code == 0 and "workflowtemplate/falco-delete" in argv and "dry-run=true" in argv
    assert "falco-response.io/pipeline=delete" in argv[argv.index("-l") + 1]
    code, _, err = run_cli("submit", str(ALERT), "-p", "nope=1")
    assert code == 1 and "no parameter 'nope'" in err
    code, _, err = run_cli("submit", str(ALERT), "-p", "dry-run=maybe")
    assert code == 1 and "dry-run" in err
    code, _, err = run_cli("submit", "--pipeline", "quarantine", "-p", "namespace=default")
    assert code == 1 and "parameter pod is required" in err
    code, _, err = run_cli("submit", str(EVENTS / "07_k8s_audit_attach_exec_pod.json"))
    assert code == 1 and "no Sensor fires" in err
    code, _, err = run_cli("submit", "-", stdin=b"[]")
    assert code == 2 and err.startswith("error: ")


def test_command_from_parameters_only_is_shell_quoted():
    hostile = "x'; touch /tmp/pwned; echo '$(id)"
    code, out, _ = run_cli("submit", "--pipeline", "delete", "-p", "namespace=default", "-p", "pod=web-1",
                           "-p", "container-id=0123456789ab", "-p", f"rule={hostile}")
    assert code == 0
    argv = shlex.split(out.strip())
    assert f"rule={hostile}" in argv and "policy=manual" in argv and "--name" not in argv


def _fake_argo(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    script = bin_dir / "argo"
    script.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\nsys.exit(7)\n")
    script.chmod(0o755)
    return bin_dir


def test_run_executes_argo_as_an_argv_list(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_fake_argo(tmp_path)))
    hostile = "$(touch pwned) `id` ; echo"
    code, out, err = run_cli("submit", str(ALERT), "-p", f"rule={hostile}", "--run")
    assert code == 7, err  # argo's own exit status
    received = json.loads((tmp_path / "argv.json").read_text())
    assert ["argo", *received] == shlex.split(out.strip())
    assert f"rule={hostile}" in received and not (ROOT / "pwned").exists()


def test_run_without_argo_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run_cli("submit", str(ALERT), "--run")
    assert code == 1 and "argo CLI on PATH" in err and out.startswith("argo submit")


def test_alert_storm_gives_exactly_one_workflow_per_container(kube):
    """1,000 alerts for 10 pods: webhook (real HTTP, bearer token) -> Sensors -> submit; 409 = deduplicated."""
    kube.add_namespace("falco-response")
    spec = sensorsim.load_eventsource(ROOT / "build")
    sensors = sensorsim.load_sensors(ROOT / "build")
    runner = LocalRunner(kube, ROOT / "build")
    runner.custom_api()
    outcomes: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def on_event(event_data: bytes) -> None:
        assert json.loads(event_data)["header"]["Authorization"] == [MASKED]
        decision = simulate.decide(event_data, sensors, spec)
        created, _ = runner.submit(decision.workflow)
        with lock:
            outcomes["created" if created else "deduplicated"] += 1

    base = json.loads(ALERT.read_text())
    rules = ["Terminal shell in container", "Read sensitive file untrusted"]
    bodies = []
    for i in range(1000):
        alert = copy.deepcopy(base)
        pod = i % 10
        alert.update(uuid=str(uuid.uuid4()), rule=rules[i % 2], time=f"2025-11-24T13:{i // 60 % 60:02d}:{i % 60:02d}.{i:09d}Z")
        alert["output_fields"].update({"k8s.pod.name": f"web-{pod}", "container.id": f"{pod:012x}"})
        bodies.append(json.dumps(alert).encode())

    token = "storm-token"
    with WebhookServer(WebhookEndpoint(spec, token), on_event=on_event) as server:
        session = requests.Session()
        assert session.post(server.url, data=bodies[0]).status_code == 401  # no token: refused, not counted
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"}

        def post(body: bytes) -> int:
            return session.post(server.url, data=body, headers=headers, timeout=30).status_code

        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(post, bodies))
    assert collections.Counter(statuses) == {200: 1000}
    assert outcomes == {"created": 10, "deduplicated": 990}
    workflows = kube.list("workflows", "falco-response")
    expected = {f"falco-response-{container_hash('default', f'web-{p}', f'{p:012x}')}-3" for p in range(10)}
    assert {w["metadata"]["name"] for w in workflows} == expected


def _policy_alert(base: dict, kind: str, pod: int, i: int) -> dict:
    """An alert of pod web-<pod> that the default response.yaml gives to one policy (and severity)."""
    alert = copy.deepcopy(base)
    alert.update(uuid=str(uuid.uuid4()), time=f"2025-11-24T13:{i // 60 % 60:02d}:{i % 60:02d}.{i:09d}Z")
    if kind == "tag":  # checkpoint-on-tag -> checkpoint-only, severity 1
        alert.update(rule="Clear Log Activities", priority="Warning", tags=["T1070", "trigger-checkpoint"])
    elif kind == "shell":  # interactive-intrusion -> checkpoint-and-quarantine, severity 3
        alert.update(rule="Terminal shell in container", priority="Notice")
    else:  # drop-and-execute -> checkpoint-and-delete, severity 5
        alert.update(rule="Drop and execute new binary in container", priority="Critical")
    alert["output_fields"].update({"k8s.pod.name": f"web-{pod}", "container.id": f"{pod:012x}"})
    return alert


def test_mixed_severity_storm_escalates_once_per_container_and_severity(kube):
    """600 alerts for 10 pods through the Sensors in build/, weakest policy first: every pod's later,
    more severe alerts are not suppressed by its earlier response (names end in the severity), and
    the storm still makes exactly one Workflow per container per severity (30), the rest 409."""
    kube.add_namespace("falco-response")
    spec = sensorsim.load_eventsource(ROOT / "build")
    sensors = sensorsim.load_sensors(ROOT / "build")
    runner = LocalRunner(kube, ROOT / "build")
    runner.custom_api()
    base = json.loads(ALERT.read_text())
    outcomes: collections.Counter = collections.Counter()
    kinds = ("tag", "shell", "drop")  # severities 1, 3, 5
    for i in range(600):
        alert = _policy_alert(base, kinds[min(i // 150, 2)] if i < 450 else kinds[i % 3], i % 10, i)
        decision = simulate.decide(sensorsim.event_data_for_alert(alert), sensors, spec)
        assert decision.workflow is not None and not decision.bug, decision.reason
        created, _ = runner.submit(decision.workflow)
        outcomes[(decision.policy, created)] += 1
    assert outcomes == {
        ("checkpoint-on-tag", True): 10, ("checkpoint-on-tag", False): 190,
        ("interactive-intrusion", True): 10, ("interactive-intrusion", False): 190,
        ("drop-and-execute", True): 10, ("drop-and-execute", False): 190,
    }
    workflows = kube.list("workflows", "falco-response")
    expected = {
        f"falco-response-{container_hash('default', f'web-{p}', f'{p:012x}')}-{severity}"
        for p in range(10) for severity in (1, 3, 5)
    }
    assert {w["metadata"]["name"] for w in workflows} == expected
    for w in workflows:
        key, severity = names.parse_workflow_name(w["metadata"]["name"])
        labels = w["metadata"]["labels"]
        assert labels[names.LABEL_SEVERITY] == str(severity)
        assert names.response_severity(labels[names.LABEL_PIPELINE], False) == severity


def test_weaker_alert_after_a_stronger_response_does_nothing(kube, tmp_path):
    """The pod was quarantined by the checkpoint-and-quarantine Workflow the Sensors name for it;
    a later checkpoint-only alert for the same container gets its own Workflow (another severity),
    whose verify (python -m steps.verify with --workflow, as the template passes it) refuses in one
    line before anything acts; a more severe alert's verify passes (escalation); the quarantine
    stays. steps/escalation.py; quarantine records its Workflow in falco-response.io/workflow."""
    from tests.test_verify import add_web_pod, falco_time, hexid, run_step, verify_flags

    add_web_pod(kube)
    spec = sensorsim.load_eventsource(ROOT / "build")
    sensors = sensorsim.load_sensors(ROOT / "build")
    base = json.loads(ALERT.read_text())
    base["output_fields"].update({"k8s.ns.name": "default", "k8s.pod.name": "web-1", "container.id": hexid("default/web-1/app")[:12],
                                  "container.name": "app"})
    base["hostname"] = "node-1"

    def workflow_of(kind: str) -> str:
        decision = simulate.decide(sensorsim.event_data_for_alert(_policy_alert(base, kind, 1, 0) | {"output_fields": base["output_fields"]}),
                                   sensors, spec)
        return f"falco-response/{decision.workflow_name}"

    shell, tag, drop = workflow_of("shell"), workflow_of("tag"), workflow_of("drop")
    assert [names.parse_workflow_name(w.split("/")[1])[1] for w in (tag, shell, drop)] == [1, 3, 5]
    quarantined = run_step(kube, "quarantine", {
        "namespace": "default", "pod": "web-1", "workflow": shell, "policy": "interactive-intrusion",
        "rule": "Terminal shell in container", "priority": "Notice", "alert-time": falco_time(), "dry-run": "false",
    }, tmp_path)
    assert quarantined.rc == 0, quarantined.stderr
    pod_before = kube.get("pods", "default", "web-1")
    assert pod_before["metadata"]["annotations"][names.ANNOTATION_WORKFLOW] == shell

    weaker = run_step(kube, "verify", verify_flags(workflow=tag), tmp_path)
    assert weaker.rc == 1 and weaker.outputs == {}
    error = weaker.error.splitlines()
    assert len(error) == 1 and "already quarantined for this container by " + shell in error[0]
    assert "checkpoint-only response (severity 1) is weaker" in error[0] and "rule escalation" in error[0]

    stronger = run_step(kube, "verify", verify_flags(workflow=drop), tmp_path)
    assert stronger.rc == 0, stronger.stderr  # escalation: checkpoint-and-delete goes ahead
    same = run_step(kube, "verify", verify_flags(workflow=shell), tmp_path)
    assert same.rc == 0, same.stderr  # the same severity (after the dedupe window): quarantine is idempotent
    other_container = run_step(kube, "verify", verify_flags(**{
        "workflow": "falco-response/" + names.workflow_name(container_hash("default", "web-1", hexid("default/web-1/sidecar")[:12]), 1),
        "container-id": hexid("default/web-1/sidecar")[:12], "container-name": "sidecar"}), tmp_path)
    assert other_container.rc == 0, other_container.stderr  # another container's evidence is still taken
    by_hand = run_step(kube, "verify", verify_flags(workflow="falco-response/falco-checkpoint-only-x7k2p"), tmp_path)
    assert by_hand.rc == 0, by_hand.stderr  # `argo submit --from` by a responder: not second-guessed
    pod_after = kube.get("pods", "default", "web-1")
    assert pod_after["metadata"]["labels"] == pod_before["metadata"]["labels"]
    assert pod_after["metadata"]["annotations"] == pod_before["metadata"]["annotations"]


# --- submit --rerun -------------------------------------------------------------------------------------


def argo_submit_from(argv: list[str]) -> int:
    """The argo CLI's `submit --from workflowtemplate/T -n NS [--name N] [-p k=v]... [-l labels]` in its
    kube mode, against $KUBECONFIG: server/workflow/workflow_server.go SubmitWorkflow builds the Workflow
    with common.NewWorkflowFromWorkflowTemplate (convert.go: generateName T-, the workflow-template label,
    spec.workflowTemplateRef) and util.ApplySubmitOpts (util.go: -l merged into the labels, -p parameters
    first then the rest, --name), validate.Workflow refuses a missing template and a name over 63
    characters (validate.go maxCharsInObjectName), then Workflows(ns).Create; an error is printed as
    cmd/argo/commands/submit.go wraps it ("failed to submit workflow: ...") with exit status 1.
    Not modelled: the creator labels (creator.LabelCreator), instance ids, --wait/--watch."""
    import json
    import os
    import sys

    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    assert argv[:2] == ["submit", "--from"], argv
    kind, _, template = argv[2].partition("/")
    assert kind == "workflowtemplate", argv
    namespace, name, labels, params = "default", None, {}, []
    it = iter(argv[3:])
    for flag in it:
        value = next(it)
        if flag == "-n":
            namespace = value
        elif flag == "--name":
            name = value
        elif flag == "-l":
            labels.update(kv.split("=", 1) for kv in value.split(","))
        elif flag == "-p":
            params.append(dict(zip(("name", "value"), value.split("=", 1))))
        else:
            raise AssertionError(f"argo submit: flag {flag} not modelled")
    configuration = client.Configuration()
    config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=configuration)
    custom = client.CustomObjectsApi(client.ApiClient(configuration))
    try:
        if name and len(name) > 63:
            raise ValueError(f'workflow name "{name}" must not be more than 63 characters long (currently {len(name)})')
        custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "workflowtemplates", template)
        workflow = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": f"{template}-", "namespace": namespace,
                         "labels": {"workflows.argoproj.io/workflow-template": template, **labels}},
            "spec": {"workflowTemplateRef": {"name": template}, "arguments": {"parameters": params}},
        }
        if name:
            workflow["metadata"]["name"] = name
        created = custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "workflows", workflow)
    except ApiException as exc:
        print(f"failed to submit workflow: {json.loads(exc.body)['message']}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"failed to submit workflow: {exc}", file=sys.stderr)
        return 1
    print(f"Name: {created['metadata']['name']}")
    return 0


def _argo_on_path(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "argo-bin"
    bin_dir.mkdir()
    script = bin_dir / "argo"
    # the function's own source, so that the fake CLI starts with nothing but the kubernetes client
    script.write_text(f"#!{sys.executable}\nimport sys\n\n{inspect.getsource(argo_submit_from)}\n"
                      "sys.exit(argo_submit_from(sys.argv[1:]))\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.fixture
def responded(kube, tmp_path, monkeypatch):
    """The response the Sensor submitted for ALERT (as its ServiceAccount would, through the API), the
    WorkflowTemplates of build/ applied, $KUBECONFIG the responder's (admin) and the argo CLI on PATH."""
    kube.apply_build(ROOT / "build", folders=("pipelines",))
    decision = simulate.decide(sensorsim.event_data_for_alert(json.loads(ALERT.read_text())),
                               sensorsim.load_sensors(ROOT / "build"), sensorsim.load_eventsource(ROOT / "build"))
    created, original = LocalRunner(kube, ROOT / "build").submit(decision.workflow)
    assert created, original
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    _argo_on_path(tmp_path, monkeypatch)
    return original


def test_rerun_gets_a_fresh_name_past_the_dedupe_with_the_same_parameters(kube, responded, capfd):
    """A plain re-submit of the alert is refused AlreadyExists by the API server (the deterministic
    name is the dedupe key); `submit --rerun NAME --run` creates NAME-rerun-1 from the same
    WorkflowTemplate and arguments, labelled as a re-run of NAME; the next re-run, and a re-run of
    a re-run, count on from the re-runs the API lists."""
    name, ns = responded["metadata"]["name"], responded["metadata"]["namespace"]
    capfd.readouterr()
    code, out, err = run_cli("submit", str(ALERT), "--run")
    argo_err = capfd.readouterr().err  # the argo subprocess's own stderr
    assert code == 1 and f'failed to submit workflow: workflows.argoproj.io "{name}" already exists' in argo_err, (err, argo_err)

    code, out, err = run_cli("submit", "--rerun", name, "--run")
    assert code == 0, err
    assert f"re-run of Workflow {ns}/{name}" in err
    rerun = kube.get("workflows", ns, f"{name}-rerun-1")
    assert rerun["spec"]["workflowTemplateRef"] == responded["spec"]["workflowTemplateRef"]
    assert ({p["name"]: p["value"] for p in rerun["spec"]["arguments"]["parameters"]}
            == {p["name"]: p["value"] for p in responded["spec"]["arguments"]["parameters"]})
    labels = rerun["metadata"]["labels"]
    assert labels["falco-response.io/rerun-of"] == name
    for key in LABELS_OF_A_RESPONSE:
        assert labels[key] == responded["metadata"]["labels"][key], key

    assert run_cli("submit", "--rerun", name, "--run")[0] == 0
    code, _, err = run_cli("submit", "--rerun", f"{name}-rerun-1", "--run")
    assert code == 0, err
    reruns = {w["metadata"]["name"]: w["metadata"]["labels"]["falco-response.io/rerun-of"] for w in kube.list("workflows", ns)
              if "falco-response.io/rerun-of" in w["metadata"]["labels"]}
    assert reruns == {f"{name}-rerun-{n}": name for n in (1, 2, 3)}


LABELS_OF_A_RESPONSE = ("falco-response.io/policy", "falco-response.io/pipeline", "falco-response.io/namespace",
                        "falco-response.io/pod", "falco-response.io/rule", "falco-response.io/severity")


def test_rerun_overrides_a_parameter_and_prints_the_command(kube, responded):
    """`-p alert-time=` (an alert past max_alert_age_seconds: README "For responders") changes only that
    parameter; without --run the command is printed shell-quoted, nothing is created; a dry run is
    severity 0, so the label follows (names.response_severity)."""
    name = responded["metadata"]["name"]
    code, out, err = run_cli("submit", "--rerun", name, "-p", "alert-time=", "-p", "dry-run=true")
    assert code == 0, err
    argv = shlex.split(out.strip())
    assert argv[:8] == ["argo", "submit", "--from", f"workflowtemplate/{responded['spec']['workflowTemplateRef']['name']}",
                        "-n", "falco-response", "--name", f"{name}-rerun-1"]
    params = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-p")
    assert params["alert-time"] == "" and params["dry-run"] == "true"
    assert json.loads(params["alert"]) == json.loads(ALERT.read_text())
    assert "falco-response.io/severity=0" in argv[argv.index("-l") + 1].split(",")
    assert "alert-time, dry-run overridden" in err
    assert [w["metadata"]["name"] for w in kube.list("workflows", "falco-response")] == [name]


def test_rerun_name_fits_argo_s_63_characters(kube, responded):
    """A long by-hand name (argo submit --from ... --name) is cut so that NAME-rerun-<n> passes
    validate.go's maxCharsInObjectName; rerun-of keeps the whole original name."""
    long_name = "falco-checkpoint-and-quarantine-by-hand-" + "x" * 23
    assert len(long_name) == 63
    manual = copy.deepcopy(responded)
    manual["metadata"] = {"name": long_name, "namespace": "falco-response", "labels": {}}
    manual.pop("status", None)
    assert LocalRunner(kube, ROOT / "build").submit(manual)[0]
    code, out, err = run_cli("submit", "--rerun", long_name, "--run")
    assert code == 0, err
    (rerun,) = [w for w in kube.list("workflows", "falco-response") if w["metadata"]["name"].endswith("-rerun-1")]
    assert len(rerun["metadata"]["name"]) == 63 and rerun["metadata"]["labels"]["falco-response.io/rerun-of"] == long_name


def test_rerun_errors_are_one_line_and_submit_nothing(kube, responded, tmp_path):
    """No such Workflow (404 from the API), a Workflow that runs no WorkflowTemplate of build/, an
    unknown -p, --rerun with an alert, an unusable kubeconfig, an identity RBAC does not let read
    Workflows (the API server's 403 Status message), an API server that does not answer: exit 1,
    one line, nothing created."""
    name = responded["metadata"]["name"]
    checkpoint = kube.kubeconfig_for(kube.service_account_token("falco-response", "falco-response-checkpoint"))
    unreachable = tmp_path / "unreachable.json"
    config = json.loads(Path(kube.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:1"
    unreachable.write_text(json.dumps(config))
    other = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
             "metadata": {"name": "hello", "namespace": "falco-response"},
             "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "alpine"}}]}}
    assert LocalRunner(kube, ROOT / "build").submit(other)[0]
    before = sorted(w["metadata"]["name"] for w in kube.list("workflows", "falco-response"))
    cases = [
        (("--rerun", "nope"), "no Workflow falco-response/nope: nothing to re-run"),
        (("--rerun", "hello"), "Workflow falco-response/hello is not a falco-response response: it runs no workflowTemplateRef"),
        (("--rerun", responded["metadata"]["name"], "-p", "nope=1"), "has no parameter 'nope'"),
        (("--rerun", responded["metadata"]["name"], str(ALERT)), "--rerun takes no alert"),
        (("--rerun", "nope", "--kubeconfig", str(tmp_path / "missing")), f"no usable kubeconfig {tmp_path / 'missing'}"),
        (("--rerun", name, "--kubeconfig", str(checkpoint)),
         f'cannot read Workflow falco-response/{name}: workflows.argoproj.io "{name}" is forbidden: User '
         '"system:serviceaccount:falco-response:falco-response-checkpoint" cannot get resource "workflows"'),
        (("--rerun", name, "--kubeconfig", str(unreachable)), "cannot reach the API server https://127.0.0.1:1"),
    ]
    for args, message in cases:
        code, out, err = run_cli("submit", *args, "--run")
        assert code == 1 and out == "", (args, out, err)
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (args, err)
    assert sorted(w["metadata"]["name"] for w in kube.list("workflows", "falco-response")) == before
