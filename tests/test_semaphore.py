"""The concurrency limit: `spec.synchronization.semaphores` (a ConfigMap key) in the local runner, as
Argo's controller keeps it (workflow/sync: sync_manager.go TryAcquire/prepAcquire/tryAcquireImpl,
semaphore.go checkAcquire, lock_name.go keys, controller.go getSyncLimit; operator.go marks a
Workflow that cannot take its locks Pending with the waiting message, or Failed when the
semaphore cannot be initialised; workflow_types.go SemaphoreStatus.LockWaiting/LockAcquired).

The steps here wait for a gate file, so a test decides when a Workflow ends: no sleeps.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from engine import blast_radius
from standin.argo.workflows import LocalRunner
from tests.test_localrun import executor_rbac

KEY = "default/ConfigMap/limits/workflow"
# Appends its workflow's name to $TRACE when it starts, then waits for $GATES/<name>.
GATED = """
import os, pathlib, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
with open(os.environ["TRACE"], "a") as f:
    f.write(args["name"] + "\\n")
gate = pathlib.Path(os.environ["GATES"]) / args["name"]
deadline = time.time() + 60
while not gate.exists() and time.time() < deadline:
    time.sleep(0.02)
sys.exit(0 if gate.exists() else 3)
"""


def template(sync: dict) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
        "metadata": {"name": "gated", "namespace": "default"},
        "spec": {
            "entrypoint": "main",
            "synchronization": sync,
            "templates": [
                {"name": "wait", "container": {"image": "steps:dev", "command": ["python", "-c", GATED],
                                               "args": ["--name={{workflow.name}}"]}},
                {"name": "main", "dag": {"tasks": [{"name": "wait", "template": "wait"}]}},
            ],
        },
    }


def limits(kube, data: dict[str, str] | None) -> None:
    if data is not None:
        kube.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "limits", "namespace": "default"},
                     "data": data}])


def runner_for(kube, tmp_path: Path, sync: dict) -> tuple[LocalRunner, Path, Path]:
    kube.apply(executor_rbac("default", "default"))
    build = tmp_path / "build"
    (build / "pipelines").mkdir(parents=True)
    (build / "pipelines" / "gated.yaml").write_text(yaml.safe_dump(template(sync)))
    trace, gates = tmp_path / "trace", tmp_path / "gates"
    trace.write_text("")
    gates.mkdir()
    runner = LocalRunner(kube, build, env={"TRACE": str(trace), "GATES": str(gates)}, workdir=tmp_path / "run",
                         pending_limit=60)
    return runner, trace, gates


def submit(runner: LocalRunner, kube, name: str, created_ago: int) -> None:
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name, "namespace": "default"},
          "spec": {"workflowTemplateRef": {"name": "gated"}}}
    assert runner.submit(wf)[0]
    # set-up: when the API server stamped it (its queue position: older first)
    rt = kube.store.resource_type("workflows")
    with kube.store._lock:
        stamped = datetime.now(timezone.utc) - timedelta(seconds=created_ago)
        kube.store._objects[(rt.plural, "default", name)]["metadata"]["creationTimestamp"] = \
            stamped.strftime("%Y-%m-%dT%H:%M:%SZ")


def until(condition, what: str, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def started(trace: Path) -> list[str]:
    return trace.read_text().split()


def test_beyond_the_limit_a_workflow_waits_pending_and_the_oldest_goes_next(kube, tmp_path):
    runner, trace, gates = runner_for(kube, tmp_path, {"semaphores": [{"configMapKeyRef": {"name": "limits", "key": "workflow"}}]})
    limits(kube, {"workflow": "1"})
    for name, ago in (("wf-a", 30), ("wf-b", 20), ("wf-c", 10)):
        submit(runner, kube, name, ago)
    results: dict[str, object] = {}

    def run(name: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.__setitem__(name, runner.run("default", name)))
        thread.start()
        return thread

    threads = [run("wf-a")]
    until(lambda: started(trace) == ["wf-a"], "wf-a to start")
    threads += [run("wf-c"), run("wf-b")]  # c asks first; b is older, so b is ahead of it in the queue

    def waiting(name: str) -> dict | None:
        wf = kube.get("workflows", "default", name)
        return wf if (wf.get("status") or {}).get("phase") == "Pending" else None

    for name in ("wf-b", "wf-c"):
        wf = until(lambda: waiting(name), f"{name} to wait")
        assert wf["status"]["message"] == f"Waiting for {KEY} lock. Lock status: 0/1"
        assert wf["status"]["synchronization"] == {"semaphore": {"waiting": [{"semaphore": KEY, "holders": ["default/wf-a"]}]}}
        assert wf["metadata"]["labels"]["workflows.argoproj.io/phase"] == "Pending"
        assert not wf["status"].get("nodes")
    holder = kube.get("workflows", "default", "wf-a")["status"]
    assert holder["phase"] == "Running"
    assert holder["synchronization"]["semaphore"] == {"holding": [{"semaphore": KEY, "holders": ["default/wf-a"]}]}
    assert {p["metadata"]["labels"].get("workflows.argoproj.io/workflow") for p in kube.list("pods", "default")} == {"wf-a"}

    (gates / "wf-a").touch()
    until(lambda: started(trace) == ["wf-a", "wf-b"], "wf-b (the older) to go next")
    assert waiting("wf-c")  # still waiting: one at a time
    (gates / "wf-b").touch()
    until(lambda: started(trace) == ["wf-a", "wf-b", "wf-c"], "wf-c to go last")
    (gates / "wf-c").touch()
    for thread in threads:
        thread.join(60)
    for name in ("wf-a", "wf-b", "wf-c"):
        assert results[name].phase == "Succeeded", results[name].message
        status = kube.get("workflows", "default", name)["status"]
        assert "synchronization" not in status and "message" not in status


def test_with_a_mutex_both_locks_are_taken_together(kube, tmp_path):
    """A Workflow that has room on the semaphore but not the mutex takes neither (tryAcquireImpl:
    all or nothing) and says which mutex it waits for (MutexStatus.LockWaiting)."""
    sync = {"semaphores": [{"configMapKeyRef": {"name": "limits", "key": "workflow"}}], "mutexes": [{"name": "same-pod"}]}
    runner, trace, gates = runner_for(kube, tmp_path, sync)
    limits(kube, {"workflow": "5"})
    submit(runner, kube, "wf-a", 20)
    submit(runner, kube, "wf-b", 10)
    first = threading.Thread(target=runner.run, args=("default", "wf-a"))
    first.start()
    until(lambda: started(trace) == ["wf-a"], "wf-a to start")
    second = threading.Thread(target=runner.run, args=("default", "wf-b"))
    second.start()
    wf = until(lambda: (lambda w: w if (w.get("status") or {}).get("phase") == "Pending" else None)(
        kube.get("workflows", "default", "wf-b")), "wf-b to wait")
    assert wf["status"]["message"] == "Waiting for default/Mutex/same-pod lock. Lock status: 0/1"
    assert wf["status"]["synchronization"] == {
        "semaphore": {"waiting": [{"semaphore": KEY, "holders": ["default/wf-a"]}]},
        "mutex": {"waiting": [{"mutex": "default/Mutex/same-pod", "holder": "default/wf-a"}]},
    }
    (gates / "wf-a").touch()
    (gates / "wf-b").touch()
    first.join(60)
    second.join(60)
    assert started(trace) == ["wf-a", "wf-b"]
    assert kube.get("workflows", "default", "wf-b")["status"]["phase"] == "Succeeded"


def test_a_semaphore_that_cannot_be_initialised_fails_the_workflow(kube, tmp_path):
    runner, trace, _ = runner_for(kube, tmp_path, {"semaphores": [{"configMapKeyRef": {"name": "limits", "key": "workflow"}}]})
    expected = f"Failed to acquire the synchronization lock. failed to initialize semaphore {KEY} with limit"
    for i, data in enumerate((None, {"other": "3"}, {"workflow": "0"}, {"workflow": "two"})):
        limits(kube, data)
        name = f"wf-{i}"
        submit(runner, kube, name, 0)
        result = runner.run("default", name)
        assert (result.phase, result.message) == ("Failed", expected), data
        wf = kube.get("workflows", "default", name)
        assert wf["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true"
        assert not wf["status"].get("nodes") and result.exit_handler is None
    assert started(trace) == [] and kube.list("pods", "default") == []


def test_every_response_template_takes_the_generated_semaphore(kube):
    """build/: each WorkflowTemplate names the ConfigMap key that build/namespaces holds with
    max_concurrent_responses, and the runner reads it from there (a response runs, test_owner_cap)."""
    root = Path(__file__).resolve().parents[1] / "build"
    configmap = yaml.safe_load((root / "namespaces" / f"configmap-{blast_radius.SEMAPHORE_CONFIGMAP}.yaml").read_text())
    assert configmap["data"] == {blast_radius.SEMAPHORE_KEY: "5"}
    assert kube.get("configmaps", "falco-response", blast_radius.SEMAPHORE_CONFIGMAP)["data"] == configmap["data"]
    for path in sorted((root / "pipelines").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        assert spec["synchronization"]["semaphores"] == [
            {"configMapKeyRef": {"key": blast_radius.SEMAPHORE_KEY, "name": blast_radius.SEMAPHORE_CONFIGMAP}}], path
