"""`falco-response submit`, and an alert storm through webhook + Sensors + submit: one Workflow per container."""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import io
import json
import shlex
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from engine import cli, simulate
from standin import shared_dir
from standin.argo.events import sensors as sensorsim
from standin.argo.events.webhook import MASKED, WebhookEndpoint, WebhookServer
from standin.argo.workflows import LocalRunner

ROOT = Path(__file__).resolve().parent.parent
EVENTS = shared_dir() / "falco-events"
ALERT = EVENTS / "02_terminal_shell_in_container.aks.json"


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
                      "falco-response.io/rule": "Terminal-shell-in-container"}


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
    expected = {"falco-response-" + hashlib.sha256(f"default/web-{p}/{p:012x}".encode()).hexdigest()[:16] for p in range(10)}
    assert {w["metadata"]["name"] for w in workflows} == expected
