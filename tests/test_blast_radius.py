"""build/ for the blast radius: the quota fits the concurrency it is sized for, every step pod is
one the quota counts, the reaper is not, the settings refuse what cannot work, and verify's rights
grow only with scale-down.

Kubernetes: the quota's `Terminating` scope matches pods with spec.activeDeadlineSeconds
(pkg/quota/v1/evaluator/core/pods.go podMatchesScopeFunc); a pod's usage is max(init containers,
sum of containers) (PodUsageFunc); with cpu or memory in a quota every container must state them
(pods.go Constraints: "must specify ..."), which LimitRanger's defaults supply. Argo: every step pod
gets activeDeadlineSeconds from the workflow's deadline, an exit handler only its template's
(workflow/controller/workflowpod.go, podBuilder.build); init and wait take executor.resources,
empty by default (config/config.go GetExecutor).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from engine import build, config, rbac

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"


def load(path: str) -> dict:
    return yaml.safe_load((BUILD / path).read_text())


def amount(quantity: str) -> float:
    """A resource.Quantity of the forms build/ uses, in cores or bytes."""
    number, unit = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi)?", str(quantity)).groups()
    return float(number) * {None: 1, "m": 0.001, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


def test_the_quota_holds_max_concurrent_responses_of_the_largest_pods():
    quota = load("namespaces/resourcequota-falco-response-responses.yaml")["spec"]
    defaults = load("namespaces/limitrange-falco-response-defaults.yaml")["spec"]["limits"][0]
    concurrent = int(load("namespaces/configmap-falco-response-limits.yaml")["data"]["concurrent-responses"])
    assert concurrent == config.load(ROOT / "response.yaml").settings.blast_radius.max_concurrent_responses
    assert quota["scopes"] == ["Terminating"]
    assert int(quota["hard"]["pods"]) == 2 * concurrent  # copy and the containment run side by side
    assert "limits.cpu" not in quota["hard"] and "cpu" not in defaults.get("default", {})

    largest = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.memory": 0.0}
    for path in sorted((BUILD / "pipelines").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        for template in spec["templates"]:
            if "container" not in template:
                continue
            resources = template["container"]["resources"]
            # main + argoexec wait (LimitRange defaults); argoexec init runs alone, before them
            pod = {
                "requests.cpu": amount(resources["requests"]["cpu"]) + amount(defaults["defaultRequest"]["cpu"]),
                "requests.memory": amount(resources["requests"]["memory"]) + amount(defaults["defaultRequest"]["memory"]),
                "limits.memory": amount(resources["limits"]["memory"]) + amount(defaults["default"]["memory"]),
            }
            largest = {k: max(v, pod[k]) for k, v in largest.items()}
            # every step pod is in the quota's scope: Argo gives it the workflow's deadline, and
            # the exit handler (which ignores that deadline) has its own
            assert spec["activeDeadlineSeconds"] and (template["name"] != spec["onExit"] or template["activeDeadlineSeconds"])
    for key, value in largest.items():
        assert amount(quota["hard"][key]) >= 2 * concurrent * value - 1e-9, key


def test_the_reaper_is_outside_the_quota_and_every_response_pod_inside():
    daemonset = load("reaper/daemonset-falco-response-reaper.yaml")["spec"]["template"]["spec"]
    assert "activeDeadlineSeconds" not in daemonset  # NotTerminating: not one of the responses
    assert daemonset["containers"][0]["resources"]["requests"]  # LimitRanger would default it anyway


def _raw(radius: dict, **settings) -> dict:
    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["settings"]["blast_radius"] = {**raw["settings"]["blast_radius"], **radius}
    raw["settings"].update(settings)
    return raw


def test_settings_that_cannot_work_are_refused_naming_the_key(tmp_path):
    policy = tmp_path / "response.yaml"
    policy.write_text(yaml.safe_dump(_raw({"window_seconds": 7200})))
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    assert done.stderr.strip().splitlines() == [
        f"error: {policy}:31:1: settings: blast_radius.window_seconds (7200) must not exceed dedupe_window_seconds (3600): "
        "the responses it counts are deleted with their Workflows then"]
    cases = {  # what the same command prints for these (engine.config.parse is what it runs)
        "retention": (_raw({"archive_retention_hours": 1}, active_deadline_seconds=3600),
                      "blast_radius.archive_retention_hours must outlast active_deadline_seconds"),
        "action": (_raw({"on_exceeded": "evict"}), "settings.blast_radius.on_exceeded: Input should be 'stop' or 'scale-down'"),
        "cap": (_raw({"max_responses_per_owner": 0}), "settings.blast_radius.max_responses_per_owner: Input should be"),
    }
    for name, (raw, message) in cases.items():
        try:
            config.parse(raw)
        except config.ConfigError as exc:
            assert message in str(exc) and len(str(exc).splitlines()) == 1, (name, exc)
        else:
            raise AssertionError(f"{name}: accepted")


def test_scale_down_adds_only_patch_on_scale_subresources(tmp_path):
    out = tmp_path / "out"
    build.write(config.parse(_raw({"on_exceeded": "scale-down", "max_concurrent_responses": 2})), out)
    role = yaml.safe_load((out / "rbac/clusterrole-falco-response-verify.yaml").read_text())
    default = load("rbac/clusterrole-falco-response-verify.yaml")
    extra = [rule for rule in role["rules"] if rule not in default["rules"]]
    assert extra == [{"apiGroups": ["apps"], "resources": ["deployments/scale", "replicasets/scale", "statefulsets/scale"],
                      "verbs": ["patch"]}]
    assert rbac.SCALE_DOWN_RULE not in default["rules"]
    quota = yaml.safe_load((out / "namespaces/resourcequota-falco-response-responses.yaml").read_text())
    assert quota["spec"]["hard"]["pods"] == "4"
    verify = next(t for t in yaml.safe_load((out / "pipelines/workflowtemplate-falco-delete.yaml").read_text())["spec"]["templates"]
                  if t["name"] == "verify")
    assert "--on-cap-exceeded=scale-down" in verify["container"]["args"]
