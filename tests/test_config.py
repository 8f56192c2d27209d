"""The policy file: defaults, thresholds, and errors that name the offending key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine import config

ROOT = Path(__file__).resolve().parents[1]


def _raw() -> dict:
    return yaml.safe_load((ROOT / "response.yaml").read_text())


def test_shipped_policy_file_loads_with_real_falco_rules():
    cfg = config.load(ROOT / "response.yaml")
    assert [p.name for p in cfg.policies] == ["drop-and-execute", "interactive-intrusion", "checkpoint-on-tag"]
    assert "Terminal shell in container" in cfg.policies[1].match.rules
    assert cfg.policies[0].response == "checkpoint-and-delete"
    assert cfg.policies[2].match.tags == ["trigger-checkpoint"]
    assert cfg.settings.checkpoint.path == "kubelet"
    assert {"kube-system", "kube-public", "kube-node-lease", "falco", "argo", "argo-events", "falco-response"} <= set(
        cfg.settings.protected_namespaces
    )


@pytest.mark.parametrize(
    "threshold,expected",
    [
        (">= Warning", ["Emergency", "Alert", "Critical", "Error", "Warning"]),
        ("Critical", ["Critical"]),
        ("> Error", ["Emergency", "Alert", "Critical"]),
        ("<= Info", ["Informational", "Debug"]),
    ],
)
def test_priority_thresholds(threshold, expected):
    assert config.priorities_at_or_above(threshold) == expected


def _error(mutate) -> str:
    raw = _raw()
    mutate(raw)
    with pytest.raises(config.ConfigError) as exc:
        config.parse(raw)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda r: r["policies"][0]["match"].update(priority=">= Warn"), "policies[0].match.priority: unknown priority 'Warn'"),
        (lambda r: r["policies"][1].update(response="nuke"), "policies[1].response: Input should be"),
        (lambda r: r["policies"][0]["match"].update(rulez=["x"]), "policies[0].match.rulez: unknown key"),
        (lambda r: r["policies"][2].update(name="checkpoint-on-tag", dry_run="maybe"), "policies[2].dry_run"),
        (lambda r: r["policies"].append(dict(r["policies"][0])), "policy name 'drop-and-execute' is used twice"),
        (lambda r: r["settings"]["checkpoint"].update(path="ssh"), "settings.checkpoint.path"),
        (lambda r: r["settings"]["checkpoint"]["kubelet_tls"].update(insecure_skip_verify=True),
         "settings.checkpoint.kubelet_tls: set either ca_bundle_configmap or insecure_skip_verify"),
        (lambda r: r["settings"]["evidence"].update(bucket="Bad_Bucket"), "settings.evidence.bucket"),
        (lambda r: r["settings"]["evidence"].update(object_lock={"mode": "FOREVER", "days": 1}),
         "settings.evidence.object_lock.mode"),
        (lambda r: r["settings"].update(protected_namespaces=["kube-system"]),
         "protected_namespaces must include the engine's own namespaces"),
        (lambda r: r["settings"]["eventsource"].update(port="twelve"), "settings.eventsource.port"),
        (lambda r: r.update(policies=[]), "policies: at least one policy is needed"),
        (lambda r: r["policies"][0]["match"].update(tags=[]), "policies[0].match.tags: must not be empty"),
        (lambda r: r["policies"][0]["match"].update(rules=['Shell "quoted" {{x}}']),
         "policies[0].match.rules: rule 'Shell \"quoted\" {{x}}' has characters the engine refuses"),
        (lambda r: r["policies"][0]["match"].update(output_fields={"proc name": ["x"]}), "output field 'proc name'"),
    ],
)
def test_errors_name_the_offending_key(mutate, expected):
    assert expected in _error(mutate)


def test_cli_reports_config_errors_in_one_line_per_problem(tmp_path):
    bad = tmp_path / "response.yaml"
    bad.write_text("policies:\n  - name: Bad Name\n    response: delete\n")
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "build", "--policy-file", str(bad), "--out", str(tmp_path / "b")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "policies[0].name: policy name 'Bad Name' is not a DNS-1123 label" in result.stderr
    assert not (tmp_path / "b").exists()


def test_not_yaml_is_a_clear_error(tmp_path):
    bad = tmp_path / "response.yaml"
    bad.write_text("policies: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(bad)
