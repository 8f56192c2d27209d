"""`falco-response simulate`: every real alert through every Sensor in build/, as the cluster would decide."""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine import build, config, simulate
from engine import cli as engine_cli
from standin import shared_dir
from standin.argo.events import sensors as sensorsim

ROOT = Path(__file__).resolve().parent.parent
EVENTS = shared_dir() / "falco-events"
CQ = "checkpoint-and-quarantine"

# (file, matched, policy, pipeline, node) with the default response.yaml
EXPECTED = [
    ("01_terminal_shell_in_container.falco-docs.json", True, "interactive-intrusion", CQ, "falco-xczjd"),
    ("02_terminal_shell_in_container.aks.json", True, "interactive-intrusion", CQ, "aks-aksnp0lab-30954262-vmss000002"),
    ("03_read_sensitive_file_untrusted.aks.json", True, "interactive-intrusion", CQ, "aks-aksnp0lab-30954262-vmss000002"),
    ("04_read_sensitive_file_untrusted.kind.json", True, "interactive-intrusion", CQ, "mfernd-k8s-security-control-plane"),
    ("05_netcat_remote_code_execution_in_container.json", False, None, None, None),  # no k8s fields
    ("06_drop_and_execute_new_binary_in_container.json", False, None, None, None),  # k8s fields null
    ("07_k8s_audit_attach_exec_pod.json", False, None, None, None),
    ("08_k8s_audit_disallowed_k8s_user.json", False, None, None, None),
    ("09_host_write_below_binary_dir.json", False, None, None, None),
    ("10_falcosidekick_test_event.json", False, None, None, None),
    ("11_terminal_shell_in_container.flux-blog.json", True, "interactive-intrusion", CQ, ""),  # old Falco, no hostname
]


def subprocess_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=60)


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout.encode(), stderr.encode()


def cli(*args: str, stdin: bytes | None = None) -> Result:
    """engine.cli.main in this process (the same code path as `python -m engine.cli`, without the start-up)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""))
    try:
        with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = engine_cli.main(list(args))
    finally:
        sys.stdin = saved
    return Result(code, out.getvalue(), err.getvalue())


def _one_object(proc) -> dict:
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode().strip().splitlines()
    assert len(out) == 1, out  # ONE object
    return json.loads(out[0])


def simulate_json(*args: str, stdin: bytes | None = None) -> dict:
    return _one_object(cli("simulate", "--json", *args, stdin=stdin))


def workflow_name(ns: str, pod: str, cid: str, severity: int = 3) -> str:
    """falco-response-<sha256(ns/pod/cid)[:16]>-<severity> (3: checkpoint-and-quarantine)."""
    return "falco-response-" + hashlib.sha256(f"{ns}/{pod}/{cid}".encode()).hexdigest()[:16] + f"-{severity}"


@pytest.mark.parametrize("name,matched,policy,pipeline,node", EXPECTED, ids=[e[0][:2] for e in EXPECTED])
def test_every_real_alert_gets_its_decision(name, matched, policy, pipeline, node):
    result = _one_object(subprocess_cli("simulate", "--json", str(EVENTS / name)))
    alert = json.loads((EVENTS / name).read_text())
    assert set(result) == {"matched", "policy", "pipeline", "workflow_name", "parameters", "reason"}
    assert result["matched"] is matched, result["reason"]
    assert result["policy"] == policy and result["pipeline"] == pipeline
    if not matched:
        assert result["workflow_name"] is None and result["parameters"] == {}
        assert "no Sensor fires" in result["reason"]
        return
    fields = alert["output_fields"]
    params = result["parameters"]
    assert params["node"] == node
    assert params["namespace"] == fields["k8s.ns.name"] and params["pod"] == fields["k8s.pod.name"]
    assert params["container-id"] == fields["container.id"]
    assert params["container-name"] == fields.get("container.name", "")
    assert (params["rule"], params["priority"], params["alert-time"]) == (alert["rule"], alert["priority"], alert["time"])
    assert params["policy"] == policy and params["dry-run"] == "false"
    assert json.loads(params["alert"]) == alert  # the whole alert, as compacted JSON text
    assert result["workflow_name"] == workflow_name(fields["k8s.ns.name"], fields["k8s.pod.name"], fields["container.id"])


def test_reasons_name_the_first_failing_filter():
    r = simulate_json(str(EVENTS / "06_drop_and_execute_new_binary_in_container.json"))
    assert "k8s\\.ns\\.name" in r["reason"] and "''" in r["reason"]  # null reads as ""
    r = simulate_json(str(EVENTS / "05_netcat_remote_code_execution_in_container.json"))
    assert "does not exist" in r["reason"]


def test_human_output_shows_the_workflow_yaml():
    proc = cli("simulate", str(EVENTS / "02_terminal_shell_in_container.aks.json"))
    assert proc.returncode == 0
    out = proc.stdout.decode()
    wf = yaml.safe_load(out.split("\n---\n", 1)[1])
    assert wf["kind"] == "Workflow" and wf["spec"]["workflowTemplateRef"]["name"] == f"falco-{CQ}"
    assert wf["metadata"]["labels"]["events.argoproj.io/sensor"] == "falco-response"  # one Sensor for every policy
    assert wf["metadata"]["labels"]["falco-response.io/policy"] == "interactive-intrusion"
    assert "Sensor falco-response: FIRES" in out and "policy interactive-intrusion (Sensor falco-response, policy 2 of 3)" in out


def test_dotted_keys_are_read_as_keys_not_nested_objects(tmp_path):
    alert = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    alert["output_fields"]["k8s"] = {"ns": {"name": "kube-system"}, "pod": {"name": "evil"}}
    alert["output_fields"]["proc.aname[2]"] = "systemd"
    result = simulate_json("-", stdin=json.dumps(alert).encode())
    assert result["matched"] and result["parameters"]["namespace"] == "default" and result["parameters"]["pod"] == "hellofalco"


def test_protected_namespace_and_forged_fields_do_not_fire():
    alert = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    for mutate in (
        lambda a: a["output_fields"].__setitem__("k8s.ns.name", "kube-system"),
        lambda a: a["output_fields"].__setitem__("container.id", "host"),
        lambda a: a.__setitem__("rule", "Terminal shell in container {{workflow.name}}"),
        lambda a: a.__setitem__("hostname", "Node_1"),  # Lua: optional fields must be well-formed
        lambda a: a.__setitem__("priority", "NotNotice"),
    ):
        forged = copy.deepcopy(alert)
        mutate(forged)
        result = simulate_json("-", stdin=json.dumps(forged).encode())
        assert not result["matched"], forged


def test_first_match_wins_between_default_policies():
    # Drop and execute (policy 1) AND tagged trigger-checkpoint (policy 3): the earlier policy takes it
    alert = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    alert.update(rule="Drop and execute new binary in container", priority="Critical", tags=["container", "trigger-checkpoint"])
    result = simulate_json("-", stdin=json.dumps(alert).encode())
    assert (result["policy"], result["pipeline"]) == ("drop-and-execute", "checkpoint-and-delete")
    alert["rule"] = "Some other rule"
    result = simulate_json("-", stdin=json.dumps(alert).encode())
    assert (result["policy"], result["pipeline"]) == ("checkpoint-on-tag", "checkpoint-only")


def _custom_build(tmp_path: Path, policies: list[dict]) -> Path:
    out = tmp_path / "build"
    build.write(config.parse({"policies": policies}), out)
    return out


def test_first_match_wins_with_a_custom_response_yaml(tmp_path):
    out = _custom_build(tmp_path, [
        {"name": "shells", "match": {"rules": ["Terminal shell in container"]}, "response": "quarantine"},
        {"name": "anything-notice", "match": {"priority": ">= Notice"}, "response": "delete"},
        {"name": "tagged", "match": {"tags": ["container"]}, "response": "checkpoint-only"},
    ])
    shell = simulate_json("--build-dir", str(out), str(EVENTS / "02_terminal_shell_in_container.aks.json"))
    assert (shell["policy"], shell["pipeline"]) == ("shells", "quarantine")
    read = simulate_json("--build-dir", str(out), str(EVENTS / "03_read_sensitive_file_untrusted.aks.json"))
    assert (read["policy"], read["pipeline"]) == ("anything-notice", "delete")
    # the same policies in another order: the broad one now takes everything
    out2 = _custom_build(tmp_path / "2", [
        {"name": "anything-notice", "match": {"priority": ">= Notice"}, "response": "delete"},
        {"name": "shells", "match": {"rules": ["Terminal shell in container"]}, "response": "quarantine"},
    ])
    shell = simulate_json("--build-dir", str(out2), str(EVENTS / "02_terminal_shell_in_container.aks.json"))
    assert (shell["policy"], shell["pipeline"]) == ("anything-notice", "delete")


def test_two_firing_sensors_are_reported_as_a_generator_bug(tmp_path):
    out = _custom_build(tmp_path, [
        {"name": "first", "match": {"rules": ["Terminal shell in container"]}, "response": "quarantine"},
        {"name": "second", "match": {"priority": ">= Notice"}, "response": "delete"},
    ])
    sensors = list((out / "sensors").glob("*.yaml"))
    assert [p.name for p in sensors] == ["sensor-falco-response.yaml"]
    obj = yaml.safe_load(sensors[0].read_text())
    obj["metadata"]["name"] = "falco-response-second"  # a second Sensor someone added by hand
    (out / "sensors" / "sensor-falco-response-second.yaml").write_text(yaml.safe_dump(obj))
    proc = cli("simulate", "--json", "--build-dir", str(out), str(EVENTS / "02_terminal_shell_in_container.aks.json"))
    assert proc.returncode == simulate.EXIT_BUG
    assert "GENERATOR BUG" in proc.stderr.decode() and "falco-response-second" in proc.stderr.decode()
    assert "GENERATOR BUG" in json.loads(proc.stdout)["reason"]


def test_unsupported_filter_kinds_in_build_fail_loudly(tmp_path):
    out = _custom_build(tmp_path, [{"name": "p", "match": {"priority": ">= Notice"}, "response": "delete"}])
    path = out / "sensors" / "sensor-falco-response.yaml"
    obj = yaml.safe_load(path.read_text())
    obj["spec"]["dependencies"][0]["filters"]["exprs"] = [{"expr": "a == 'b'", "fields": [{"name": "a", "path": "body.rule"}]}]
    path.write_text(yaml.safe_dump(obj))
    proc = cli("simulate", "--build-dir", str(out), str(EVENTS / "02_terminal_shell_in_container.aks.json"))
    assert proc.returncode == 1 and "exprs" in proc.stderr.decode()


@pytest.mark.parametrize(
    "payload,why",
    [
        (b"not json", "not JSON"),
        (b'["an", "array"]', "JSON object"),
        (b'"a string"', "JSON object"),
        (b"", "not JSON"),
        (b'{"rule": "x", "output": "' + b"a" * 70000 + b'"}', "maxPayloadSize"),
    ],
    ids=["text", "array", "string", "empty", "too-large"],
)
def test_malformed_input_exits_2_with_one_line(payload, why):
    proc = cli("simulate", "--json", "-", stdin=payload)
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert err.startswith("error: ") and why in err and len(err.splitlines()) == 1
    assert proc.stdout == b""


def test_malformed_input_exits_2_as_a_subprocess_too():
    proc = subprocess_cli("simulate", "--json", "-", stdin=b"{not json")
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().startswith("error: the alert is not JSON")


def test_missing_file_exits_2():
    proc = cli("simulate", "/nonexistent/alert.json")
    assert proc.returncode == 2 and proc.stderr.decode().startswith("error: cannot read")


def test_max_payload_size_comes_from_the_eventsource(tmp_path):
    out = tmp_path / "build"
    build.write(config.parse({"settings": {"eventsource": {"max_payload_size": 1024}}, "policies": [
        {"name": "p", "match": {"priority": ">= Notice"}, "response": "delete"}]}), out)
    body = (EVENTS / "02_terminal_shell_in_container.aks.json").read_bytes()
    assert len(body) > 1024
    proc = cli("simulate", "--json", "--build-dir", str(out), "-", stdin=body)
    assert proc.returncode == 2 and "1024" in proc.stderr.decode()


def test_workflow_name_is_deterministic_per_namespace_pod_container():
    spec = sensorsim.load_eventsource(ROOT / "build")
    sensors = sensorsim.load_sensors(ROOT / "build")
    base = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())

    def name(**changes) -> str:
        alert = copy.deepcopy(base)
        for key, value in changes.items():
            if key in ("ns", "pod", "cid"):
                alert["output_fields"][{"ns": "k8s.ns.name", "pod": "k8s.pod.name", "cid": "container.id"}[key]] = value
            else:
                alert[key] = value
        decision = simulate.decide(sensorsim.event_data_for_alert(alert), sensors, spec)
        return decision.workflow_name

    first = name()
    assert first == workflow_name("default", "hellofalco", "1376fe875695")
    assert name(time="2030-01-01T00:00:00Z", rule="Read sensitive file untrusted", priority="Critical", uuid="x") == first
    assert len({first, name(ns="other"), name(pod="hellofalco-2"), name(cid="1376fe875696")}) == 4


def test_simulated_workflows_are_valid_argo_workflows():
    from tests import argo_schema

    spec = sensorsim.load_eventsource(ROOT / "build")
    sensors = sensorsim.load_sensors(ROOT / "build")
    for name, matched, *_ in EXPECTED:
        if matched:
            decision = simulate.decide(sensorsim.event_data_for_alert(json.loads((EVENTS / name).read_text())), sensors, spec)
            assert argo_schema.errors(decision.workflow) == [], name


# --- hostile JSON: first match wins whatever the alert's JSON ------------------------------------


def _hostile(kind: str) -> bytes:
    """The aks shell alert (interactive-intrusion), tagged trigger-checkpoint (checkpoint-on-tag),
    made hostile: text edits, because a JSON encoder never writes a key twice."""
    alert = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    alert["tags"] = alert["tags"] + ["trigger-checkpoint"]
    if kind == "quoted-tag":
        alert.update(rule="Clear Log Activities", tags=['"trigger-checkpoint'])
    if kind == "tags-object":
        alert.update(rule="Clear Log Activities", tags={"trigger-checkpoint": False})
    text = json.dumps(alert)
    edits = {
        # the filters read "Terminal shell", Lua "Clear Log Activities": before, Lua said no earlier policy took it
        "duplicate-rule": ('"rule": "Terminal shell in container"', '"rule": "Terminal shell in container", "rule": "Clear Log Activities"'),
        # the filters read Notice (>= Notice), Lua Debug
        "duplicate-priority": ('"priority": "Notice"', '"priority": "Notice", "priority": "Debug"'),
        # the filters and the templates read default; Lua (and a step decoding the alert) kube-system
        "duplicate-namespace": ('"k8s.ns.name": "default"', '"k8s.ns.name": "default", "k8s.ns.name": "kube-system"'),
        # the Lua checks the last hostname (well-formed), the node parameter's template reads the first
        "duplicate-hostname": ('"hostname": "aks-aksnp0lab-30954262-vmss000002"',
                               '"hostname": "{{workflow.name}}", "hostname": "aks-aksnp0lab-30954262-vmss000002"'),
        # the same key spelled with an escape: GJSON and Go decode both to "rule"
        "escaped-duplicate-rule": ('"rule": "Terminal shell in container"',
                                   '"rule": "Terminal shell in container", "ru\\u006ce": "Clear Log Activities"'),
    }
    if kind in edits:
        old, new = edits[kind]
        assert old in text
        text = text.replace(old, new)
    return text.encode()


HOSTILE_JSON = [
    ("duplicate-rule", "key 'rule' appears 2 times at the top level", "data filter #1 (body.@keys): 'repeated-key'"),
    ("duplicate-priority", "key 'priority' appears 2 times at the top level", "data filter #1 (body.@keys): 'repeated-key'"),
    ("duplicate-namespace", "key 'k8s.ns.name' appears 2 times in output_fields", "data filter #2 (body.output_fields.@keys)"),
    ("duplicate-hostname", "key 'hostname' appears 2 times at the top level", "data filter #1 (body.@keys)"),
    ("escaped-duplicate-rule", 'key "ru\\u006ce" at the top level is written with JSON escapes', "data filter #1 (body.@keys): 'escaped-key'"),
    ("quoted-tag", 'tags holds "\\"trigger-checkpoint", not a plain string', "data filter #3 (body.[tags])"),
    ("tags-object", 'tags is {"trigger-checkpoint":false}, not an array of tags', "data filter #3 (body.[tags])"),
]


@pytest.mark.parametrize("kind,why,where", HOSTILE_JSON, ids=[h[0] for h in HOSTILE_JSON])
def test_hostile_json_fires_no_sensor_and_simulate_says_why_in_one_line(kind, why, where):
    """With the Sensors of the previous build/ each of these made two Sensors fire (duplicate rule,
    priority), or one fire while its Lua saw another alert (duplicate namespace: Lua saw kube-system),
    or put a value only the Lua checks, unchecked, in a parameter (duplicate hostname: node
    `{{workflow.name}}`), or fired on a tag that is not one (quoted tag, tags object). Now every
    Sensor refuses it at the same JSON filter, and simulate says so once."""
    result = simulate_json("-", stdin=_hostile(kind))
    assert not result["matched"] and result["workflow_name"] is None
    reason = result["reason"]
    assert len(reason.splitlines()) == 1
    assert reason.startswith(f"no Sensor fires: {why}") and f"the Sensor's {where}" in reason, reason
    human = cli("simulate", "-", stdin=_hostile(kind))
    assert human.returncode == 0 and human.stdout.decode().count("no match") == 1
    assert human.stdout.decode().rstrip().splitlines()[-1] == reason


def test_the_json_filters_are_what_keeps_the_lua_and_the_templates_on_one_alert(tmp_path):
    """The same build without the three JSON filters (sensors.policies.json_filters): an alert
    whose first `rule` is one no policy takes and whose last is a shell passes the Lua filter (Go's
    json.Unmarshal: the last) while the trigger's first-match templates (gjson Value(): the first)
    find no policy, so the trigger fails with the Sensor already committed. With the filters (the
    real build/) the Sensor refuses it at data filter #1."""
    alert = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    text = json.dumps(alert).replace('"rule": "Terminal shell in container"',
                                     '"rule": "Clear Log Activities", "rule": "Terminal shell in container"')
    out = tmp_path / "build"
    build.write(config.load(ROOT / "response.yaml"), out)
    for path in (out / "sensors").glob("*.yaml"):
        obj = yaml.safe_load(path.read_text())
        data = obj["spec"]["dependencies"][0]["filters"]["data"]
        assert [f["path"] for f in data[:3]] == ["body.@keys", "body.output_fields.@keys", "body.[tags]"]
        del data[:3]
        path.write_text(yaml.safe_dump(obj))
    proc = cli("simulate", "--json", "--build-dir", str(out), "-", stdin=text.encode())
    assert proc.returncode == simulate.EXIT_UNSUPPORTED
    assert "passed its filters but trigger respond failed" in json.loads(proc.stdout)["reason"]
    real = simulate_json("-", stdin=text.encode())
    assert not real["matched"] and "data filter #1 (body.@keys)" in real["reason"]


def _mutations(base: dict) -> list[bytes]:
    """Alerts whose JSON GJSON and Go's json.Unmarshal (Lua) could read differently, deterministic."""
    import random

    rng = random.Random(8)
    sane = {  # what the default policies match on
        "rule": ["Terminal shell in container", "Drop and execute new binary in container", "Clear Log Activities"],
        "priority": ["Notice", "Critical", "Debug", "Info"],
        "k8s.ns.name": ["default", "kube-system", "shop"],
        "tags": [["trigger-checkpoint"], ["container", "trigger-checkpoint"], ["container"], []],
    }
    values = {
        "rule": sane["rule"] + [7, None, True],
        "priority": sane["priority"] + [5, None],
        "k8s.ns.name": sane["k8s.ns.name"] + [12, None, ["default"]],
        "tags": sane["tags"] + [[None, "trigger-checkpoint"], [["trigger-checkpoint"]], [1, "trigger-checkpoint"],
                                ["trigger-checkpoin\u0074"], {"0": "trigger-checkpoint"}, ["<b>", "trigger-checkpoint"],
                                "trigger-checkpoint", None],
    }
    out = []
    for _ in range(160):
        alert = copy.deepcopy(base)
        pairs = []  # (key, first, second)
        for key, choices in values.items():
            first = rng.choice(sane[key] if rng.random() < 0.75 else choices)
            target = alert["output_fields"] if key == "k8s.ns.name" else alert
            target[key] = first
            if rng.random() < 0.2:
                pairs.append((key, first, rng.choice(choices)))
        text = json.dumps(alert)
        for key, first, second in pairs:  # add a second occurrence right after the first
            old = json.dumps({key: first})[1:-1]
            text = text.replace(old, old + ", " + json.dumps({key: second})[1:-1], 1)
        out.append(text.encode())
    for tags in values["tags"]:
        out.append(json.dumps({**base, "tags": tags, "rule": "Clear Log Activities"}).encode())
    return out


def test_at_most_one_sensor_fires_and_it_reads_what_its_filters_checked_for_any_json():
    """170 alerts mixing repeated keys (both orders), non-string values and odd tags: never two
    Sensors, never a failed trigger (the Lua and the templates agree on a policy), and a Workflow's parameters are the values both GJSON (first occurrence) and Lua's Go
    map (last occurrence) see: nothing a filter did not check reaches a template."""
    spec = sensorsim.load_eventsource(ROOT / "build")
    sensors = sensorsim.load_sensors(ROOT / "build")
    base = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    fired = collections.Counter()
    for body in _mutations(base):
        decision = simulate.decide(sensorsim.webhook_event_data(body), sensors, spec)
        assert len(decision.fired) <= 1, (decision.reason, body)
        assert decision.error is None, (decision.reason, body)
        fired[decision.policy if decision.matched else None] += 1
        if not decision.matched:
            continue
        root = sensorsim.parse_json(body.decode())
        first, last = root.value(), sensorsim.go_unmarshal(root)
        params = decision.parameters
        for view in (first, last):
            assert params["rule"] == view["rule"] and params["priority"] == view["priority"]
            assert params["namespace"] == view["output_fields"]["k8s.ns.name"] != "kube-system"
    assert all(fired[p] for p in (None, "drop-and-execute", "interactive-intrusion", "checkpoint-on-tag")), fired


def test_policy_output_fields_are_read_alike_by_the_filters_and_lua(tmp_path):
    """A data filter reads any JSON value as text (gjson String(): 1 and 1.0 read "1", null ""),
    Lua a typed Go value: the generated one_of compares the same way, and an object or array in a
    policy's output field is refused by every Sensor. Exactly the first policy that matches fires."""
    out = _custom_build(tmp_path, [
        {"name": "pid-one", "match": {"output_fields": {"proc.pid": ["1", "true"]}}, "response": "quarantine"},
        {"name": "anything", "match": {"priority": ">= Notice"}, "response": "delete"},
    ])
    base = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    expected = [(1, "pid-one"), ("1", "pid-one"), (1.0, "pid-one"), (True, "pid-one"), ("true", "pid-one"),
                ("01", "anything"), (2, "anything"), (None, "anything"), ([1], None), ({"1": 1}, None)]
    for value, policy in expected:
        alert = copy.deepcopy(base)
        alert["output_fields"]["proc.pid"] = value
        result = simulate_json("--build-dir", str(out), "-", stdin=json.dumps(alert).encode())  # 1.0 stays "1.0"
        assert result["policy"] == policy, (value, result["reason"])


def test_first_match_templates_and_lua_agree_on_numbers_bools_and_nulls(tmp_path):
    """One Sensor: its Lua filter passes when any policy matches, the trigger's templates pick the
    first (sensors.policies). Both compare a policy output field as a data filter on it would
    read it (gjson String()): a number equals a value written as Go's FormatFloat(v, 'f', -1) ("1"
    for 1 and 1.0; "1e3" and "01" match no number), a bool its name, null ""; a missing field
    also reads "" (Lua cannot tell it from null). The trigger never fails: they always agree."""
    out = _custom_build(tmp_path, [
        {"name": "pid", "match": {"output_fields": {"proc.pid": ["1", "2.5", "1e3", "true", ""]}}, "response": "quarantine"},
        {"name": "tagged", "match": {"tags": ["trigger-checkpoint"]}, "response": "checkpoint-only", "dry_run": True},
        {"name": "rest", "match": {"priority": ">= Notice"}, "response": "delete"},
    ])
    base = json.loads((EVENTS / "02_terminal_shell_in_container.aks.json").read_text())
    base["tags"] = base["tags"] + ["trigger-checkpoint"]
    expected = [(1, "pid"), (1.0, "pid"), (2.5, "pid"), ("1e3", "pid"), (1000, "tagged"), ("01", "tagged"),
                (True, "pid"), (False, "tagged"), (None, "pid"), ("", "pid"), ("x", "tagged"), (3, "tagged")]
    for value, policy in expected:
        alert = copy.deepcopy(base)
        alert["output_fields"]["proc.pid"] = value
        result = simulate_json("--build-dir", str(out), "-", stdin=json.dumps(alert).encode())
        assert result["policy"] == policy, (value, result["reason"])
        if policy == "tagged":
            assert result["parameters"]["dry-run"] == "true" and result["workflow_name"].endswith("-0")
    del alert["output_fields"]["proc.pid"]
    assert simulate_json("--build-dir", str(out), "-", stdin=json.dumps(alert).encode())["policy"] == "pid"


def test_forcing_a_policy_uses_its_values_whatever_the_alert(tmp_path):
    """simulate.force (make demo POLICY=...): the trigger with the forced policy's values in place of
    its first-match templates, read from the Sensor's policy table (names.ANNOTATION_POLICIES)."""
    sensors = sensorsim.load_sensors(ROOT / "build")
    spec = sensorsim.load_eventsource(ROOT / "build")
    body = (EVENTS / "02_terminal_shell_in_container.aks.json").read_bytes()  # interactive-intrusion's
    decision = simulate.force(sensorsim.webhook_event_data(body), sensors, spec, "checkpoint-on-tag")
    assert decision.error is None and decision.policy == "checkpoint-on-tag" and decision.pipeline == "checkpoint-only"
    assert decision.parameters["policy"] == "checkpoint-on-tag" and decision.workflow_name.endswith("-1")
    assert decision.workflow["spec"]["workflowTemplateRef"]["name"] == "falco-checkpoint-only"
    with pytest.raises(simulate.InputError, match="no policy or pipeline"):
        simulate.force(sensorsim.webhook_event_data(body), sensors, spec, "nope")
