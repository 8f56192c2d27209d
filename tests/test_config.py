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
        (lambda r: r["policies"][0].update(name="p" * 49), f"policies[0].name: policy name '{'p' * 49}' is longer than 48"),
        (lambda r: r["settings"]["checkpoint"].update(path="ssh"), "settings.checkpoint.path"),
        (lambda r: r["settings"]["checkpoint"]["kubelet_tls"].update(insecure_skip_verify=True),
         "settings.checkpoint.kubelet_tls: set either ca_bundle_configmap or insecure_skip_verify"),
        (lambda r: r["settings"]["checkpoint"]["kubelet_tls"].update(address_types=["InternalIP", "PodIP"]),
         "settings.checkpoint.kubelet_tls.address_types: address type 'PodIP' is not one of Hostname, InternalIP"),
        (lambda r: r["settings"]["checkpoint"]["kubelet_tls"].update(address_types=[]),
         "settings.checkpoint.kubelet_tls.address_types: address_types needs at least one of"),
        (lambda r: r["settings"]["checkpoint"]["kubelet_tls"].update(ca_bundle_key="../ca.crt"),
         "settings.checkpoint.kubelet_tls.ca_bundle_key: ca_bundle_key '../ca.crt' is not a ConfigMap key"),
        (lambda r: r["settings"]["checkpoint"]["kubelet_tls"].update(ca_bundle_configmap="Kubelet CA"),
         "settings.checkpoint.kubelet_tls.ca_bundle_configmap: ca_bundle_configmap 'Kubelet CA' is not a ConfigMap name"),
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


def _checkpoint_template(build_dir: Path) -> dict:
    wt = yaml.safe_load((build_dir / "pipelines" / "workflowtemplate-falco-checkpoint-only.yaml").read_text())
    return next(t for t in wt["spec"]["templates"] if t["name"] == "checkpoint")


def test_kubelet_tls_default_is_kube_root_ca_verified_by_node_name():
    """By default the step trusts ConfigMap kube-root-ca.crt (key ca.crt), which kube-controller-
    manager's root-ca-cert-publisher keeps in every namespace (pkg/controller/certificates/
    rootcacertpublisher/publisher.go), so `make build` asks for nothing to be created."""
    tls = config.load(ROOT / "response.yaml").settings.checkpoint.kubelet_tls
    assert (tls.ca_bundle_configmap, tls.ca_bundle_key, tls.insecure_skip_verify) == ("kube-root-ca.crt", "ca.crt", False)
    assert config.KubeletTLS() == tls  # response.yaml shows the defaults
    template = _checkpoint_template(ROOT / "build")
    args = template["container"]["args"]
    assert "--ca-bundle=/etc/kubelet-ca/ca.crt" in args and "--ca-configmap=kube-root-ca.crt" in args
    assert "--address-types=InternalIP,ExternalIP,Hostname" in args
    volume = next(v for v in template["volumes"] if v["name"] == "kubelet-ca")
    assert volume["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert "kube-root-ca.crt" not in (ROOT / "build" / "create-secrets.sh").read_text()


def test_readme_insecure_form_builds(tmp_path):
    """The README's `kubelet_tls: {insecure_skip_verify: true}` drops the default ConfigMap (it
    failed with "set either ca_bundle_configmap or insecure_skip_verify"); giving both explicitly
    is still refused (test_errors_name_the_offending_key)."""
    raw = _raw()
    raw["settings"]["checkpoint"]["kubelet_tls"] = {"insecure_skip_verify": True}
    policy = tmp_path / "response.yaml"
    policy.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy), "--out", str(tmp_path / "b")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "insecure_skip_verify: the kubelet's identity is not checked" in result.stdout
    template = _checkpoint_template(tmp_path / "b")
    assert "--insecure-skip-tls-verify=true" in template["container"]["args"]
    assert not [a for a in template["container"]["args"] if a.startswith(("--ca-bundle", "--ca-configmap"))]
    assert [v["name"] for v in template["volumes"]] == ["tmp"]
