"""Lint at `make build`: policies that can never fire, YAML errors and repeated keys with line and
column, priorities in any case, and an output directory left alone whenever the file is refused."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine import cli as engine_cli
from engine import config, lint, simulate
from standin import shared_dir

ROOT = Path(__file__).resolve().parent.parent
EVENTS = shared_dir() / "falco-events"
SHELL = "Terminal shell in container"


def build_cli(policy: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """What `make build` runs, with another policy file and output directory."""
    return subprocess.run([sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy), "--out", str(out),
                           *extra], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120)


def build_in_process(policy: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    """engine.cli.main as build_cli runs it, without the interpreter's start-up."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = engine_cli.main(["build", "--policy-file", str(policy), "--out", str(out), *extra])
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One build of the shipped response.yaml that the refused builds below must leave as it is."""
    out = tmp_path_factory.mktemp("lint") / "build"
    assert build_in_process(ROOT / "response.yaml", out)[0] == 0
    return out


def write_policies(tmp_path: Path, policies: list[dict], settings: dict | None = None, name="response.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"settings": settings or {}, "policies": policies}, sort_keys=False))
    return path


def warnings_for(*policies: dict) -> list[str]:
    return lint.check(config.parse({"policies": list(policies)}))


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


SHADOWING = [
    {"name": "shells", "match": {"rules": [SHELL, "Read sensitive file untrusted"], "priority": ">= Notice"},
     "response": "checkpoint-and-quarantine"},
    {"name": "shells-in-shop", "match": {"rules": [SHELL], "priority": ">= Warning", "namespaces": ["shop"]},
     "response": "delete"},
]


def test_make_build_warns_about_a_shadowed_policy_and_the_warning_is_true(tmp_path):
    """The warning names the policy, the one before it and the line; it still builds. The Sensors
    built agree: an alert the later policy matches is taken by the earlier one (first match wins)."""
    policy, out = write_policies(tmp_path, SHADOWING), tmp_path / "build"
    proc = build_cli(policy, out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"warning: {policy}:10:3: policy shells-in-shop: shadowed by policy shells (policies[0]): every alert it matches, "
        "shells matches first, so it never fires"]
    alert = (EVENTS / "01_terminal_shell_in_container.falco-docs.json").read_text().replace('"default"', '"shop"')
    assert '"shop"' in alert
    webhook, sensors = simulate.load_build(out)
    body = alert.encode()
    decision = simulate.decide(simulate.sensorsim.webhook_event_data(body, simulate.sensorsim.falcosidekick_headers(body)),
                               sensors, webhook)
    assert decision.policy == "shells"


def _p(name: str, **match) -> dict:
    return {"name": name, "match": match, "response": "delete"}


@pytest.mark.parametrize("earlier,later,shadowed", [
    (_p("a"), _p("b", priority="critical"), True),  # match anything first
    (_p("a", rules=[SHELL, "x"]), _p("b", rules=[SHELL], tags=["t"]), True),
    (_p("a", tags=["t", "u"]), _p("b", tags=["t"]), True),
    (_p("a", sources=["syscall"]), _p("b", sources=["syscall"], priority="Debug"), True),
    (_p("a", exclude_namespaces=["x"]), _p("b", exclude_namespaces=["x", "y"]), True),
    (_p("a", exclude_namespaces=["kube-system"]), _p("b"), True),  # protected: the Sensor refuses it anyway
    (_p("a", namespaces=["x", "y"]), _p("b", namespaces=["x"]), True),
    (_p("a", exclude_namespaces=["z"]), _p("b", namespaces=["x", "z"], exclude_namespaces=["z"]), True),
    (_p("a", output_fields={"proc.name": ["nc", "ncat"]}), _p("b", output_fields={"proc.name": ["nc"], "user.name": ["r"]}), True),
    (_p("a", priority=">= Warning"), _p("b", priority=">= error"), True),
    # not certain, or not true: no warning
    (_p("a", priority=">= Warning"), _p("b"), False),
    (_p("a", priority=">= Warning"), _p("b", priority=">= Notice"), False),
    (_p("a", rules=[SHELL]), _p("b", rules=[SHELL, "x"]), False),
    (_p("a", rules=[SHELL]), _p("b", tags=["t"]), False),
    (_p("a", tags=["t"]), _p("b", tags=["t", "u"]), False),
    (_p("a", namespaces=["x"]), _p("b"), False),
    (_p("a", namespaces=["x"]), _p("b", namespaces=["x", "y"]), False),
    (_p("a", exclude_namespaces=["x"]), _p("b", namespaces=["x"]), False),
    (_p("a", exclude_namespaces=["x"]), _p("b"), False),
    (_p("a", output_fields={"proc.name": ["nc"]}), _p("b"), False),
    (_p("a", output_fields={"proc.name": ["nc"]}), _p("b", output_fields={"proc.name": ["nc", "ncat"]}), False),
    (_p("a", output_fields={"k8s.ns.name": ["x"]}), _p("b", namespaces=["x"]), False),  # same alerts, not proven
    (_p("a", sources=["syscall"]), _p("b"), False),
])
def test_shadowing_is_decided_from_the_match_model_only_when_certain(earlier, later, shadowed):
    found = [w for w in warnings_for(earlier, later) if "shadowed" in w]
    assert bool(found) is shadowed, found


def test_a_match_that_cannot_fire_is_named_with_why():
    """The Sensor refuses protected namespaces (sensors.policies.gating_filters) and requires
    k8s.ns.name, k8s.pod.name and container.id, which only syscall alerts carry: k8s_audit alerts
    name their target in ka.target.* (CONTRACTS.md; tests/test_simulate.py decides 07 and 08 so)."""
    found = warnings_for(
        _p("system", namespaces=["kube-system", "shop"]),
        _p("only-system", namespaces=["kube-system", "argo"]),
        _p("in-and-out", namespaces=["blog", "web"], exclude_namespaces=["web"]),
        _p("all-out", namespaces=["shop"], exclude_namespaces=["shop"]),
        _p("audit", sources=["k8s_audit"]),
        _p("mixed", sources=["syscall", "aws_cloudtrail"]),
        _p("plugin", sources=["my_plugin"]),  # unknown source: not certain, nothing said
    )
    assert found == [
        "response.yaml: policy system: kube-system is protected (settings.protected_namespaces): the Sensor refuses alerts from it",
        "response.yaml: policy only-system: kube-system, argo are protected (settings.protected_namespaces): the Sensor "
        "refuses alerts from them, so the policy never fires",
        "response.yaml: policy in-and-out: web both in namespaces and exclude_namespaces: the exclusion wins",
        "response.yaml: policy all-out: shop both in namespaces and exclude_namespaces: the exclusion wins, so the policy "
        "never fires",
        "response.yaml: policy audit: source k8s_audit (ka.* fields) never carries k8s.ns.name, k8s.pod.name and "
        "container.id, which the Sensor requires, so the policy never fires",
        "response.yaml: policy mixed: source aws_cloudtrail (ct.* fields) never carries k8s.ns.name, k8s.pod.name and "
        "container.id, which the Sensor requires",
    ]


def test_the_shipped_policy_file_has_no_warning():
    assert lint.check(config.load(ROOT / "response.yaml")) == []


def test_strict_makes_warnings_errors_and_leaves_the_output_as_it_was(built, tmp_path):
    before = snapshot(built)
    code, _, err = build_in_process(write_policies(tmp_path, SHADOWING), built, "--strict")
    assert code == 1
    assert err.splitlines()[0].startswith("error: ") and "policy shells-in-shop: shadowed by policy shells" in err
    assert err.splitlines()[-1] == f"error: 1 lint problem with --strict: {built}/ left as it was"
    assert snapshot(built) == before
    assert build_in_process(ROOT / "response.yaml", built, "--strict")[0] == 0  # no warning: --strict builds


@pytest.mark.parametrize("text,line", [
    ("policies:\n  - name: a\n    response: delete\n    match:\n      priority: Warning\n      priority: Error\n",
     ":6:7: duplicate key 'priority' (first at line 5): YAML would silently keep the last"),
    ("policies:\n  - name: a\n    name: b\n    response: delete\n", ":3:5: duplicate key 'name' (first at line 2)"),
    ("policies:\n  - name: a\n    response: [delete\n",
     ":4:1: not valid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at 3:15)"),
    ("policies:\n  - name: a\n\tresponse: delete\n", ":3:1: not valid YAML: found character '\\t' that cannot start any token"),
    ("policies:\n  - name: a\n    response: delete\n    match: {priority: '>= warn'}\n",
     ":4:13: policies[0].match.priority: unknown priority 'warn' (one of Emergency, Alert, Critical, Error, Warning, Notice, "
     "Informational, Debug, in any case)"),
    ("settings:\n  evidence:\n    buckett: x\npolicies:\n  - name: a\n    response: delete\n",
     ":3:5: settings.evidence.buckett: unknown key (check the spelling)"),
    ("policies:\n  - name: a\n", ":2:5: policies[0].response: required key is missing"),
    ("- a\n", ":1:1: the file must be a mapping with 'settings' and 'policies'"),
], ids=["duplicate-key", "duplicate-name", "syntax", "tab", "priority", "unknown-key", "missing-key", "not-a-mapping"])
def test_an_invalid_policy_file_is_one_line_naming_file_line_and_key_and_nothing_changes(built, tmp_path, text, line):
    """PyYAML's SafeLoader keeps the last of repeated keys (constructor.py construct_mapping):
    config.UniqueKeyLoader refuses them at the repeated key's mark."""
    before = snapshot(built)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    code, out, err = build_in_process(bad, built)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {bad}{line}"), err
    assert snapshot(built) == before


def test_an_invalid_policy_file_as_make_build_runs_it(built, tmp_path):
    before = snapshot(built)
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - name: a\n    response: delete\n    response: quarantine\n")
    proc = build_cli(bad, built)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"error: {bad}:4:5: duplicate key 'response' (first at line 3): YAML would silently keep the last"]
    assert snapshot(built) == before


def test_a_merge_key_may_be_overridden_without_a_duplicate_error(tmp_path):
    """`<<: *anchor` then an explicit key is YAML's override, not a repeated key."""
    text = ("x-base: &base {response: delete, match: {priority: Warning}}\n"
            "policies:\n  - <<: *base\n    name: a\n    response: checkpoint-only\n")
    data, _, _ = config.read_yaml(_write(tmp_path, text))
    assert data["policies"][0] == {"response": "checkpoint-only", "match": {"priority": "Warning"}, "name": "a"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("written,falco_form", [
    ("warning", "Warning"), ("WARNING", "Warning"), (">= warning", ">= Warning"), (">=WARNING", ">= Warning"),
    ("< ERROR", "< Error"), ("info", "Informational"), ("<= INFORMATIONAL", "<= Informational"), ("Critical", "Critical"),
])
def test_priorities_in_any_case_are_read_as_falco_reads_them(written, falco_form):
    """Falco reads a rule's priority case-insensitively, "info" for Informational
    (userspace/engine/falco_common.cpp parse_priority: strcasecmp over priority_names), and writes
    Falco's names (format_priority): so does the policy file."""
    policy = config.parse({"policies": [_p("a", priority=written)]}).policies[0]
    assert policy.match.priority == falco_form
    assert policy.match.priorities() == config.priorities_at_or_above(falco_form)


@pytest.mark.parametrize("written,message", [
    ("< debug", "policies[0].match.priority: priority '< Debug' admits no priority"),
    ("> EMERGENCY", "policies[0].match.priority: priority '> Emergency' admits no priority"),
    ("warn", "policies[0].match.priority: unknown priority 'warn' (one of Emergency, Alert, Critical, Error, Warning, "
             "Notice, Informational, Debug, in any case)"),
])
def test_priority_errors_name_falco_s_form(written, message):
    with pytest.raises(config.ConfigError) as exc:
        config.parse({"policies": [_p("a", priority=written)]})
    assert str(exc.value) == f"response.yaml: {message}"


def test_a_lowercase_priority_builds_the_same_build_as_falco_s_form(tmp_path):
    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["policies"][0]["match"]["priority"] = ">= warning"
    raw["policies"][1]["match"]["priority"] = ">=NOTICE"
    lower = tmp_path / "lower.yaml"
    lower.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert build_in_process(lower, tmp_path / "lower")[0] == 0
    sensor = "sensors/sensor-falco-response.yaml"
    assert (tmp_path / "lower" / sensor).read_text() == (ROOT / "build" / sensor).read_text()
