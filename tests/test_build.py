"""build/ is complete, current, deterministic and valid: strict Argo schemas, kubernetes-validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from engine import build, config
from tests import argo_schema

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
ARGO_KINDS = {"Workflow", "WorkflowTemplate", "EventSource", "Sensor"}


def _objects() -> list[tuple[str, dict]]:
    files = sorted(p for p in BUILD.rglob("*.yaml") if p.name not in ("kustomization.yaml", "falcosidekick-values.yaml"))
    return [(str(p.relative_to(BUILD)), yaml.safe_load(p.read_text())) for p in files]


def test_build_dir_is_current():
    """A stale build/ fails here: regenerate with `make build` and commit."""
    expected = build.render(config.load(ROOT / "response.yaml"))
    on_disk = {str(p.relative_to(BUILD)): p.read_text() for p in BUILD.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(expected), "build/ has missing or extra files: run make build"
    stale = [path for path, text in expected.items() if on_disk[path] != text]
    assert not stale, f"stale files in build/: {stale}: run make build"


def test_make_build_is_byte_identical(tmp_path):
    """The command `make build` runs reproduces build/ byte for byte (its speed: `make bench`)."""
    out = tmp_path / "build"
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "build", "--out", str(out)], cwd=ROOT, check=True, capture_output=True
    )
    for path in BUILD.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(BUILD)).read_bytes() == path.read_bytes(), path


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((BUILD / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(path for path, _ in _objects())


@pytest.mark.parametrize("path,obj", _objects(), ids=[p for p, _ in _objects()])
def test_manifest_is_valid(path, obj):
    if obj["kind"] in ARGO_KINDS:
        assert argo_schema.errors(obj) == []
    else:
        kubernetes_validate.validate(obj, "1.30", strict=True)


def test_strict_schema_catches_a_typo():
    """The validation above can fail: a misspelt field is an error in strict mode."""
    obj = yaml.safe_load((BUILD / "eventsources/eventsource-falco.yaml").read_text())
    obj["spec"]["webhook"]["falco-alert"]["maxPayloadSzie"] = 10
    assert any("maxPayloadSzie" in e for e in argo_schema.errors(obj))
    wt = yaml.safe_load((BUILD / "pipelines/workflowtemplate-falco-checkpoint-and-quarantine.yaml").read_text())
    wt["spec"]["templates"][0]["container"]["nodeName"] = "node-1"
    assert argo_schema.errors(wt)


def test_eventsource_matches_contract():
    es = yaml.safe_load((BUILD / "eventsources/eventsource-falco.yaml").read_text())
    hook = es["spec"]["webhook"]["falco-alert"]
    assert hook["port"] == "12000" and hook["endpoint"] == "/falco" and hook["url"] == ""
    assert isinstance(hook["maxPayloadSize"], int)
    assert hook["authSecret"] == {"key": "token", "name": "falco-webhook-token"}
    assert es["spec"]["service"]["ports"][0]["port"] == 12000
    assert "webhookContext" not in hook


def test_falcosidekick_values_use_the_map_form():
    values = yaml.safe_load((BUILD / "falcosidekick-values.yaml").read_text())
    hook = values["falcosidekick"]["config"]["webhook"]
    assert hook["address"] == "http://falco-eventsource-svc.argo-events.svc.cluster.local:12000/falco"
    assert hook["customheaders"]["Authorization"].startswith("Bearer ")


def test_copy_step_is_pinned_without_nodename():
    wt = yaml.safe_load((BUILD / "pipelines/workflowtemplate-falco-checkpoint-and-delete.yaml").read_text())
    copy = next(t for t in wt["spec"]["templates"] if t["name"] == "copy")
    term = copy["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["{{inputs.parameters.node}}"]}]
    assert copy["automountServiceAccountToken"] is False
    assert copy["executor"] == {"serviceAccountName": "falco-response-executor"}
    assert [v["hostPath"]["path"] for v in copy["volumes"] if "hostPath" in v] == ["/var/lib/kubelet/checkpoints"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in copy["container"]["env"]}
    assert env == {"AWS_ACCESS_KEY_ID": "evidence-store-credentials", "AWS_SECRET_ACCESS_KEY": "evidence-store-credentials"}
    others = [t for t in wt["spec"]["templates"] if t["name"] != "copy" and "container" in t]
    assert all("env" not in t["container"] for t in others), "only copy gets evidence-store credentials"


@pytest.mark.parametrize(
    "pipeline,tasks",
    [
        ("checkpoint-and-quarantine", {"verify": None, "checkpoint": "verify", "copy": "checkpoint.Succeeded",
                                       "quarantine": "checkpoint.Succeeded || checkpoint.Failed || checkpoint.Errored"}),
        ("checkpoint-and-delete", {"verify": None, "checkpoint": "verify", "copy": "checkpoint.Succeeded",
                                   "delete": "checkpoint.Succeeded || checkpoint.Failed || checkpoint.Errored"}),
        ("checkpoint-only", {"verify": None, "checkpoint": "verify", "copy": "checkpoint.Succeeded"}),
        ("quarantine", {"verify": None, "quarantine": "verify"}),
        ("delete", {"verify": None, "delete": "verify"}),
    ],
)
def test_pipeline_dag_shape(pipeline, tasks):
    wt = yaml.safe_load((BUILD / f"pipelines/workflowtemplate-falco-{pipeline}.yaml").read_text())
    spec = wt["spec"]
    dag = next(t for t in spec["templates"] if t["name"] == "respond")["dag"]["tasks"]
    assert {t["name"]: t.get("depends") for t in dag} == tasks
    assert spec["onExit"] == "report"
    assert spec["synchronization"]["mutexes"] == [{"name": "{{workflow.parameters.namespace}}-{{workflow.parameters.pod}}"}]
    assert spec["ttlStrategy"]["secondsAfterCompletion"] == 3600
    assert spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert spec["activeDeadlineSeconds"] == 900
    for template in spec["templates"]:
        if "container" not in template:
            continue
        sc = template["container"]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["runAsNonRoot"] is (template["name"] != "copy")
        assert template["serviceAccountName"] == f"falco-response-{template['name']}"
        assert template["container"]["command"] == ["python", "-m", f"steps.{template['name']}"]
        assert all(a.startswith("--") and "=" in a for a in template["container"]["args"]), "flags only as --k=v"
        assert template["retryStrategy"]["expression"] == "lastRetry.status == 'Error' || lastRetry.exitCode == '75'"


def test_alert_reaches_steps_only_base64_encoded():
    """Alert text is never substituted into a template as-is (it could hold {{ }})."""
    for path in (BUILD / "pipelines").glob("*.yaml"):
        text = path.read_text()
        assert "{{workflow.parameters.alert}}" not in text, path
        assert "{{inputs.parameters.alert}}" not in text, path
