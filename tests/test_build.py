"""build/ is complete, current, deterministic and valid: strict Argo schemas, kubernetes-validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from engine import build, config, names
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


def test_falcosidekick_values_point_at_the_eventsource_and_the_secret():
    """The token is not in the values: config.existingSecret (tests/test_falcosidekick.py checks the keys
    against the charts and follows the header to the webhook)."""
    values = yaml.safe_load((BUILD / "falcosidekick-values.yaml").read_text())
    config = values["falcosidekick"]["config"]
    assert config["webhook"] == {"address": "https://falco-eventsource-svc.argo-events.svc.cluster.local:12000/falco",
                                 "method": "POST", "minimumpriority": "debug", "checkcert": True, "mutualtls": False}
    assert config["existingSecret"] == "falcosidekick-webhook-auth"


def test_every_object_carries_the_prune_label():
    """The README's apply prunes by app.kubernetes.io/part-of=falco-response: an object without it is
    never pruned, and `-l` also skips applying it."""
    missing = [path for path, obj in _objects()
               if (obj["metadata"].get("labels") or {}).get(names.PART_OF) != names.APP]
    assert not missing, f"no {names.PART_OF}={names.APP} label: {missing}"


def test_readme_apply_command_prunes_every_kind_in_build():
    """kubectl's default prune allowlist (k8s.io/kubectl pkg/util/prune) lacks Argo's CRDs and RBAC:
    the README's command lists every kind build/ holds, exactly as build.apply_command prints it."""
    objects = [obj for _, obj in _objects()]
    command = build.apply_command(objects)
    assert command in (ROOT / "README.md").read_text(), f"README.md must show, verbatim:\n{command}"
    listed = {line.split("=", 1)[1].rstrip(" \\") for line in command.splitlines() if "--prune-allowlist=" in line}
    kinds = {(o["apiVersion"].rpartition("/")[0] or "core") + "/" + o["apiVersion"].rpartition("/")[2] + "/" + o["kind"]
             for o in objects}
    assert listed == kinds


def _build_cli(policy_file: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy_file),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)


def test_build_out_removes_only_files_it_generated(tmp_path):
    """Objects a setting no longer asks for (platform openshift -> kubernetes: the SCC and its Role)
    go with their files, and a folder left empty with them; a file we did not write stays, even one
    in a generated folder."""
    out = tmp_path / "out"
    policy = ROOT / "response.yaml"
    openshift = yaml.safe_load(policy.read_text())
    openshift["settings"]["platform"] = "openshift"
    openshift_file = tmp_path / "response.yaml"
    openshift_file.write_text(yaml.safe_dump(openshift, sort_keys=False))
    assert _build_cli(openshift_file, out).returncode == 0
    gone = ["openshift/securitycontextconstraints-falco-response-hostpath.yaml",
            "rbac/role-falco-response-hostpath-scc.yaml", "rbac/rolebinding-falco-response-hostpath-scc.yaml"]
    assert all((out / rel).is_file() for rel in gone)
    (out / "notes.txt").write_text("mine")
    (out / "sensors" / "my-sensor.yaml").write_text("kind: Sensor\n")
    done = _build_cli(policy, out)
    assert done.returncode == 0, done.stderr
    assert [rel for rel in gone if (out / rel).exists()] == [] and not (out / "openshift").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "sensors/my-sensor.yaml").exists()
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert not set(gone) & set(kustomization["resources"]) and (out / "rbac/clusterrole-falco-response-verify.yaml").is_file()


def test_build_out_refuses_to_overwrite_a_foreign_file(tmp_path):
    """One line, and nothing touched, when a file we did not write stands where a generated one goes."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "kustomization.yaml").write_text("resources: [mine.yaml]\n")
    (out / "mine.yaml").write_text("kind: ConfigMap\n")
    done = _build_cli(ROOT / "response.yaml", out)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "kustomization.yaml was not written by `make build`" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["kustomization.yaml", "mine.yaml"]


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
    analyze = next(t for t in wt["spec"]["templates"] if t["name"] == "analyze")  # S3 only: no node, no token, no hostPath
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in analyze["container"]["env"]} == env
    assert "affinity" not in analyze and not [v for v in analyze["volumes"] if "hostPath" in v]
    assert analyze["automountServiceAccountToken"] is False and analyze["executor"] == copy["executor"]
    # verify stores the evidence bundle (steps/bundle.py), analyze reads and writes beside the archive
    others = [t for t in wt["spec"]["templates"] if t["name"] not in ("copy", "analyze", "verify") and "container" in t]
    assert all("env" not in t["container"] for t in others), "only verify, copy and analyze get evidence-store credentials"


@pytest.mark.parametrize(
    "pipeline,tasks",
    [
        ("checkpoint-and-quarantine", {"verify": None, "checkpoint": "verify", "copy": "checkpoint.Succeeded",
                                       "quarantine": "checkpoint.Succeeded || checkpoint.Failed || checkpoint.Errored",
                                       "analyze": "copy.Succeeded"}),
        ("checkpoint-and-delete", {"verify": None, "checkpoint": "verify", "copy": "checkpoint.Succeeded",
                                   "delete": "checkpoint.Succeeded || checkpoint.Failed || checkpoint.Errored",
                                   "analyze": "copy.Succeeded"}),
        ("checkpoint-only", {"verify": None, "checkpoint": "verify", "copy": "checkpoint.Succeeded", "analyze": "copy.Succeeded"}),
        ("quarantine", {"verify": None, "quarantine": "verify"}),
        ("delete", {"verify": None, "delete": "verify"}),
    ],
)
def test_pipeline_dag_shape(pipeline, tasks):
    wt = yaml.safe_load((BUILD / f"pipelines/workflowtemplate-falco-{pipeline}.yaml").read_text())
    spec = wt["spec"]
    dag = next(t for t in spec["templates"] if t["name"] == "respond")["dag"]["tasks"]
    assert {t["name"]: t.get("depends") for t in dag} == tasks
    # analyze never fails the DAG (dag.go assessDAGPhase: a target task that ContinuesOn its phase)
    assert {t["name"]: t.get("continueOn") for t in dag if t.get("continueOn")} == (
        {"analyze": {"failed": True, "error": True}} if "analyze" in tasks else {})
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
