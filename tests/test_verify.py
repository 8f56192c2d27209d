"""verify step, through `python -m steps.verify` against the stand-in API.

Also holds the helpers the other response-step tests import: run_step (one real run),
run_batch (independent scenarios concurrently), check_hostile_flags (every flag x every hostile
value refused with zero API requests), add_web_pod, hexid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from standin import shared_dir
from standin.kube import FakeKube
from tests.conftest import step_token

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = [
    "x; rm -rf / #",
    "$(touch /tmp/pwned)",
    "`id`|cat&",
    "../..",
    "../../etc/passwd",
    "{{workflow.parameters.pod}}",
    "{{ }}",
    "a" * 10_000,
    "pöd-ünïcødé",
    "\u202egnp.exe",
    "ｄｅｆａｕｌｔ",
    "--other-flag",
    "--other-flag=1",
    "pod\nerror: injected line",
    "web-1\n",  # a trailing newline slips through a `$`-anchored pattern
    " leading-space",
    "-",
]


def hexid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    outputs: dict[str, str]

    @property
    def error(self) -> str:
        return self.stderr.strip()


def step_environ(kube: FakeKube, outputs: Path, extra: dict[str, str] | None = None, step: str = "verify") -> dict[str, str]:
    """A step's environment: it authenticates as its own ServiceAccount from build/rbac."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBERNETES_SERVICE_HOST", "SLACK_WEBHOOK_URL", "WEBHOOK_URL", "WEBHOOK_BEARER_TOKEN")
    }
    env.update(kube.env(step_token(kube, step)))
    env.update(
        STEP_RETRY_BASE_DELAY="0.01",
        STEP_OUTPUTS_DIR=str(outputs),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra or {})
    return env


def run_step(kube: FakeKube, step: str, flags: dict[str, str] | list[str], tmp_path: Path, env: dict | None = None) -> Run:
    """Run `python -m steps.<step> --flag=value ...` as Argo would; outputs read back from files."""
    outputs = Path(tempfile.mkdtemp(dir=tmp_path, prefix=f"out-{step}-"))
    argv = flags if isinstance(flags, list) else [f"--{k}={v}" for k, v in flags.items()]
    proc = subprocess.run(
        [sys.executable, "-m", f"steps.{step}", *argv],
        cwd=ROOT,
        env=step_environ(kube, outputs, env, step),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    files = {p.name: p.read_text() for p in outputs.iterdir()}
    return Run(proc.returncode, proc.stdout, proc.stderr, files)


def run_parallel(jobs: list, workers: int = 4) -> list:
    """Run independent step invocations concurrently (each is a subprocess): [callable] -> results."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


def run_batch(kube: FakeKube, step: str, cases: dict[str, dict], tmp_path: Path, env: dict | None = None) -> dict[str, Run]:
    """Independent scenarios (distinct pods / namespaces) of one step, run concurrently: the
    interpreter and client start-up dominate a step's run time."""
    names = list(cases)
    runs = run_parallel([lambda n=n: run_step(kube, step, cases[n], tmp_path, env) for n in names])
    return dict(zip(names, runs, strict=True))


# The full matrix (every flag x every hostile value) runs main() through common.run in ONE
# interpreter (the same code `python -m` runs, minus the interpreter start-up); a sample of it
# also goes through the real `python -m steps.<step>` entrypoint.
MATRIX_RUNNER = r"""
import contextlib, importlib, io, json, sys
from steps import common
job = json.loads(sys.stdin.read())
module = importlib.import_module("steps." + job["step"])
results = []
for argv in job["argvs"]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = common.run(module.main, argv)
    results.append({"rc": rc, "stderr": err.getvalue(), "stdout": out.getvalue()})
print(json.dumps(results))
"""


def hostile_argvs(base: dict[str, str]) -> list[tuple[str, list[str]]]:
    cases = []
    for flag in base:
        for value in HOSTILE:
            argv = [f"--{k}={value if k == flag else v}" for k, v in base.items()]
            cases.append((f"--{flag}={value[:30]!r}", argv))
        # the value as a separate word, the way a naive template would pass it
        argv = [a for a in (f"--{k}={v}" for k, v in base.items()) if not a.startswith(f"--{flag}=")]
        cases.append((f"--{flag} --other-flag", [*argv, f"--{flag}", "--other-flag"]))
    cases.append(("unknown flag", [*(f"--{k}={v}" for k, v in base.items()), "--other-flag=1"]))
    return cases


def assert_refused_quietly(run: Run | dict, what: str) -> None:
    rc, stdout, stderr = (run.rc, run.stdout, run.stderr) if isinstance(run, Run) else (run["rc"], run["stdout"], run["stderr"])
    assert rc == 1, (what, rc, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (what, stderr)
    assert len(lines[0]) < 600, what
    assert stdout == "", (what, stdout)  # refused before it even logged an action


def check_hostile_flags(
    kube: FakeKube, step: str, base: dict[str, str], tmp_path: Path, extra: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """Every flag x every hostile value (and the `extra` flag sets) -> exit 1, one line, no output,
    zero API requests. Returns the error line of each `extra` case."""
    before = len(kube.requests)
    cases = hostile_argvs(base) + [(what, [f"--{k}={v}" for k, v in flags.items()]) for what, flags in (extra or {}).items()]
    outputs = Path(tempfile.mkdtemp(dir=tmp_path, prefix="out-matrix-"))
    proc = subprocess.run(
        [sys.executable, "-c", MATRIX_RUNNER],
        input=json.dumps({"step": step, "argvs": [argv for _, argv in cases]}),
        cwd=ROOT,
        env=step_environ(kube, outputs, step=step),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    errors = {}
    for (what, _), result in zip(cases, json.loads(proc.stdout), strict=True):
        assert_refused_quietly(result, what)
        errors[what] = result["stderr"].strip()
    # a sample through the real entrypoint: four flags, each with another hostile value
    keys = list(base)
    sample = {keys[i * (len(keys) - 1) // 3]: HOSTILE[(i * 5 + len(step)) % len(HOSTILE)] for i in range(4)}
    jobs = [lambda f=f, v=v: run_step(kube, step, {**base, f: v}, tmp_path) for f, v in sample.items()]
    for flag, run in zip(sample, run_parallel(jobs), strict=True):
        assert_refused_quietly(run, f"entrypoint --{flag}")
        assert run.outputs == {}
    assert list(outputs.iterdir()) == []
    assert len(kube.requests) == before, kube.requests[before:]
    return {what: errors[what] for what in (extra or {})}


def add_web_pod(kube: FakeKube, name: str = "web-1", namespace: str = "default", node: str = "node-1", **kw) -> dict:
    containers = kw.pop("containers", None) or [
        {"name": "app", "image": "registry.example/shop/app:1.2", "id": hexid(f"{namespace}/{name}/app")},
        {"name": "sidecar", "image": "registry.example/mesh/proxy:3", "id": hexid(f"{namespace}/{name}/sidecar")},
    ]
    return kube.add_pod(namespace, name, node, containers=containers, **kw)


def falco_time(moment: datetime | None = None) -> str:
    """RFC 3339 with nanoseconds, as Falco writes `time`; now by default."""
    moment = moment or datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def verify_flags(**over: str) -> dict[str, str]:
    flags = {
        "namespace": "default",
        "pod": "web-1",
        "container-id": hexid("default/web-1/app")[:12],
        "container-name": "app",
        "node": "node-1",
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "alert-time": falco_time(),
        "max-alert-age": "600",
        "protected-namespaces": "kube-system,falco,argo",
    }
    flags.update(over)
    return flags


# --- real Falco alerts -------------------------------------------------------------------------


def sensor_flags(alert: dict) -> dict[str, str]:
    """Map an alert to verify's flags as the Sensor does (absent / null field -> '')."""
    fields = alert.get("output_fields") or {}

    def text(value) -> str:
        return "" if value is None else str(value)

    return {
        "namespace": text(fields.get("k8s.ns.name")),
        "pod": text(fields.get("k8s.pod.name")),
        "container-id": text(fields.get("container.id")),
        "container-name": text(fields.get("container.name")),
        "node": text(alert.get("hostname")),
        "rule": text(alert.get("rule")),
        "priority": text(alert.get("priority")),
        "protected-namespaces": "kube-system,falco,argo",
    }


def test_real_alerts_only_pod_alerts_whose_pod_exists_pass(kube, tmp_path):
    alerts = {p.name: json.loads(p.read_text()) for p in sorted((shared_dir() / "falco-events").glob("*.json"))}
    assert len(alerts) >= 11
    # The pods of three of the alerts exist, on the node the alert names (or node-1 without one).
    # kubecon (01) does not exist: its alert is stale.
    existing = {}
    for name, alert in alerts.items():
        fields = alert.get("output_fields") or {}
        ns, pod, cid = fields.get("k8s.ns.name"), fields.get("k8s.pod.name"), fields.get("container.id")
        if not (ns and pod and cid) or pod == "kubecon" or (ns, pod) in existing:
            continue
        node = alert.get("hostname") or "node-1"
        if kube.get("namespaces", None, ns) is None:
            kube.add_namespace(ns)
        if kube.get("nodes", None, node) is None:
            kube.add_node(node)
        full = cid + hexid(name)[:52]
        kube.add_pod(ns, pod, node, containers=[{"name": fields.get("container.name") or "main", "image": "alpine:3.20", "id": full}])
        existing[(ns, pod)] = full

    names = list(alerts)
    runs = dict(zip(names, run_parallel([lambda a=alerts[n]: run_step(kube, "verify", sensor_flags(a), tmp_path) for n in names])))
    passed = {n for n, r in runs.items() if r.rc == 0}
    assert passed == {
        "02_terminal_shell_in_container.aks.json",
        "03_read_sensitive_file_untrusted.aks.json",
        "04_read_sensitive_file_untrusted.kind.json",
        "11_terminal_shell_in_container.flux-blog.json",
    }
    for name in passed:
        fields = alerts[name]["output_fields"]
        out = runs[name].outputs
        assert out["container-id"] == existing[(fields["k8s.ns.name"], fields["k8s.pod.name"])]
        assert out["container-name"] == (fields.get("container.name") or "main")
        assert out["node"] == (alerts[name].get("hostname") or "node-1")
    for name in set(names) - passed:
        assert_refused_quietly(Run(runs[name].rc, "", runs[name].stderr, {}), name)
        assert runs[name].outputs == {}
    assert "pod default/kubecon not found: stale or forged alert" in runs["01_terminal_shell_in_container.falco-docs.json"].error
    for name in names[4:10]:  # no k8s fields: docker host, null fields, k8s audit, host, test event
        assert "namespace: '' is not a DNS-1123 label" in runs[name].error, name


# --- outputs ----------------------------------------------------------------------------------


def test_verified_alerts_output_full_id_uid_node_and_image(kube, tmp_path):
    pod = add_web_pod(kube)
    runs = run_batch(
        kube,
        "verify",
        {
            "short-id": verify_flags(),
            # no hostname and no container.name in the alert; a full 64-hex id
            "bare": verify_flags(**{"node": "", "container-name": "", "container-id": hexid("default/web-1/sidecar")}),
        },
        tmp_path,
    )
    run = runs["short-id"]
    assert run.rc == 0, run.stderr
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "app")
    assert run.outputs == {
        "container-name": "app",
        "container-id": hexid("default/web-1/app"),
        "pod-uid": pod["metadata"]["uid"],
        "node": "node-1",
        "image": status["image"],
        "image-id": status["imageID"],
    }
    assert "@sha256:" in status["imageID"]
    assert "verify: ok: pod default/web-1" in run.stdout
    assert runs["bare"].rc == 0, runs["bare"].stderr
    assert runs["bare"].outputs["container-name"] == "sidecar"
    assert runs["bare"].outputs["container-id"] == hexid("default/web-1/sidecar")
    assert [m for m, _, _ in kube.requests] == ["GET", "GET"]  # read-only


# --- refusals ---------------------------------------------------------------------------------


def test_hostile_values_host_alerts_and_protected_namespaces_are_refused_without_api_calls(kube, tmp_path):
    kube.add_namespace("kube-system")
    add_web_pod(kube, namespace="kube-system")
    add_web_pod(kube)
    errors = check_hostile_flags(
        kube,
        "verify",
        verify_flags(),
        tmp_path,
        extra={
            "host": verify_flags(**{"container-id": "host"}),
            "custom-protected": verify_flags(**{"protected-namespaces": "default"}),
            "missing": {k: v for k, v in verify_flags().items() if k != "pod"},
        },
    )
    assert "host alert" in errors["host"]
    assert "namespace default is protected" in errors["custom-protected"]
    assert "--pod" in errors["missing"]
    before = len(kube.requests)
    run = run_step(kube, "verify", verify_flags(namespace="kube-system"), tmp_path)
    assert_refused_quietly(run, "protected")
    assert run.error == "error: namespace kube-system is protected: no automated response there"
    assert len(kube.requests) == before


def test_forged_stale_mismatched_and_idle_alerts_are_refused(kube, tmp_path):
    kube.add_node("node-2")
    add_web_pod(kube)
    add_web_pod(kube, name="gone")
    kube.delete("pods", "default", "gone")
    done = add_web_pod(kube, name="done")
    kube.delete("pods", "default", "done")
    done["status"]["phase"] = "Succeeded"
    kube.create("pods", done)
    runs = run_batch(
        kube,
        "verify",
        {
            "other-node": verify_flags(node="node-2"),
            "unknown-id": verify_flags(**{"container-id": "0123456789ab"}),
            "wrong-name": verify_flags(**{"container-name": "sidecar"}),
            "gone": verify_flags(pod="gone", **{"container-id": hexid("default/gone/app")[:12]}),
            "no-namespace": verify_flags(namespace="nowhere"),
            "not-running": verify_flags(pod="done", **{"container-id": hexid("default/done/app")[:12]}),
        },
        tmp_path,
    )
    for what, run in runs.items():
        assert run.rc == 1, what
        assert len(run.stderr.splitlines()) == 1 and run.outputs == {}, what
    assert "runs on node node-1, not on node-2 where the alert was raised" in runs["other-node"].error
    assert "has no container with id 0123456789ab: stale or forged alert" in runs["unknown-id"].error
    assert "belongs to container 'app'" in runs["wrong-name"].error and "'sidecar'" in runs["wrong-name"].error
    assert runs["gone"].error == "error: pod default/gone not found: stale or forged alert"
    assert "pod nowhere/web-1 not found" in runs["no-namespace"].error
    assert runs["not-running"].error == "error: pod default/done is Succeeded, not Running: nothing to respond to"
    assert {m for m, _, _ in kube.requests} == {"GET"}


# --- retries ----------------------------------------------------------------------------------


def test_transient_bursts_are_survived_403_is_final_and_an_outage_exits_75(kube, tmp_path):
    for name in ("burst", "forbidden", "outage"):
        add_web_pod(kube, name=name)
    kube.fail_next(429, count=2, method="GET", path="/pods/burst$")
    kube.fail_next(500, count=2, method="GET", path="/pods/burst$")
    kube.fail_next(403, count=1, path="/pods/forbidden$")
    kube.fail_next(503, count=20, path="/pods/outage$")
    cases = {
        name: verify_flags(pod=name, **{"container-id": hexid(f"default/{name}/app")[:12]})
        for name in ("burst", "forbidden", "outage")
    }
    runs = run_batch(kube, "verify", cases, tmp_path)

    def statuses(name: str) -> list[int]:
        return [s for _, p, s in kube.requests if p.endswith(f"/pods/{name}")]

    assert runs["burst"].rc == 0, runs["burst"].stderr
    assert statuses("burst") == [429, 429, 500, 500, 200]
    assert runs["burst"].stdout.count("transient failure") == 4
    assert runs["forbidden"].rc == 1 and runs["forbidden"].outputs == {}
    assert statuses("forbidden") == [403]  # never retried
    assert "cannot read pod default/forbidden: 403" in runs["forbidden"].error
    assert runs["outage"].rc == 75 and runs["outage"].outputs == {}  # Argo's retryStrategy takes over
    assert statuses("outage") == [503] * 5


# --- freshness (max_alert_age) ----------------------------------------------------------------------


def verify_argv_from_build(alert: dict, outputs: Path) -> list[str]:
    """verify's argv as Argo renders build/'s template with the Sensor's parameters for `alert`."""
    path = ROOT / "build" / "pipelines" / "workflowtemplate-falco-checkpoint-and-quarantine.yaml"
    template = next(t for t in yaml.safe_load(path.read_text())["spec"]["templates"] if t["name"] == "verify")
    inputs = {**sensor_flags(alert), "alert-time": alert["time"]}
    workflow = {"parameters.dry-run": "false", "parameters.policy": "terminal-shell", "namespace": "falco-response", "name": "falco-response-0123456789abcdef",
                "uid": "0b4c2d9e-1111-4222-8333-944445555666"}  # fmt: skip

    def render(arg: str) -> str:
        arg = re.sub(r"\{\{inputs\.parameters\.([a-z-]+)\}\}", lambda m: inputs[m.group(1)], arg)
        arg = re.sub(r"\{\{workflow\.([a-z.-]+)\}\}", lambda m: workflow[m.group(1)], arg)
        assert "{{" not in arg, arg
        return f"--outputs-dir={outputs}" if arg.startswith("--outputs-dir=") else arg

    return [render(a) for a in template["container"]["args"]]


def test_stale_and_future_alerts_are_refused_before_any_api_call(kube, tmp_path):
    """Rule max_alert_age: build/'s verify gets the alert's `time` and settings.max_alert_age_seconds
    (600) and refuses, in one line naming the rule, an alert timed 2001 (as Falcosidekick's test
    event, falco-events/10, is), the demo alert's own 2023 time, and one an hour in the future,
    before any API call, though the pod exists. On the previous build/ verify was not given the
    time and verified the same alert (exit 0)."""
    alert = json.loads((shared_dir() / "falco-events" / "01_terminal_shell_in_container.falco-docs.json").read_text())
    fields = alert["output_fields"]
    kube.add_node(alert["hostname"])
    kube.add_pod("default", "kubecon", alert["hostname"],
                 containers=[{"name": "alpine", "image": "alpine:3.20", "id": fields["container.id"] + hexid("kubecon")[:52]}])  # fmt: skip
    test_event = json.loads((shared_dir() / "falco-events" / "10_falcosidekick_test_event.json").read_text())
    assert test_event["time"].startswith("2001-")
    future = falco_time(datetime.now(timezone.utc) + timedelta(hours=1))
    cases = {"2001": test_event["time"], "2023": alert["time"], "future": future}
    before = len(kube.requests)
    runs = run_parallel([
        lambda t=t: run_step(kube, "verify", verify_argv_from_build({**alert, "time": t}, tmp_path / "out"), tmp_path)
        for t in cases.values()
    ])  # fmt: skip
    runs = dict(zip(cases, runs, strict=True))
    for what, run in runs.items():
        assert run.rc == 1, (what, run.stdout, run.stderr)
        assert_refused_quietly(run, what)
        assert run.outputs == {} and not (tmp_path / "out").exists()
    assert runs["2001"].error == (
        "error: alert time 2001-01-01T01:10:00Z is "
        f"{(datetime.now(timezone.utc) - datetime(2001, 1, 1, 1, 10, tzinfo=timezone.utc)).days} days old, "
        "older than max_alert_age_seconds (600s): stale or replayed alert, nothing done"
    )
    assert "alert time 2023-05-25T13:44:05.478445995Z is" in runs["2023"].error
    assert "in the future, more than the 60s of clock skew max_alert_age allows" in runs["future"].error
    assert len(kube.requests) == before  # nothing asked of the API server

    fresh = run_step(kube, "verify", verify_argv_from_build({**alert, "time": falco_time()}, tmp_path / "fresh"), tmp_path)
    assert "max_alert_age" not in fresh.stderr and "the alert is" in fresh.stdout, fresh.stderr


def test_max_alert_age_comes_from_the_settings(kube, tmp_path):
    """settings.max_alert_age_seconds reaches verify as --max-alert-age; an alert 5 minutes old is
    fresh for the default 600 s and stale for 120 s; a value outside 60..604800 is refused, and so is
    a time of the right form on a day that does not exist."""
    from engine import config
    from pipelines import templates

    raw = yaml.safe_load((ROOT / "response.yaml").read_text())
    raw["settings"]["max_alert_age_seconds"] = 120
    args = templates.verify(config.parse(raw).settings).args
    assert "--max-alert-age=120" in args and "--alert-time={{inputs.parameters.alert-time}}" in args
    raw["settings"]["max_alert_age_seconds"] = 30
    with pytest.raises(config.ConfigError, match="settings.max_alert_age_seconds"):
        config.parse(raw)

    add_web_pod(kube)
    five_minutes = falco_time(datetime.now(timezone.utc) - timedelta(minutes=5))
    runs = run_batch(kube, "verify", {
        "default": verify_flags(**{"alert-time": five_minutes}),
        "strict": verify_flags(**{"alert-time": five_minutes, "max-alert-age": "120"}),
        "by hand": verify_flags(**{"alert-time": ""}),
        "bad limit": verify_flags(**{"max-alert-age": "5"}),
        "no such day": verify_flags(**{"alert-time": "2026-02-30T00:00:00.5Z"}),
    }, tmp_path)  # fmt: skip
    assert runs["default"].rc == 0, runs["default"].stderr
    assert "verify: the alert is 5 minutes old (max_alert_age_seconds 600)" in runs["default"].stdout
    assert_refused_quietly(runs["strict"], "strict")
    assert "is 5 minutes old, older than max_alert_age_seconds (120s)" in runs["strict"].error
    assert runs["by hand"].rc == 0 and "no alert time (a response submitted by hand)" in runs["by hand"].stdout
    assert_refused_quietly(runs["bad limit"], "bad limit")
    assert "max-alert-age: '5' is not a number of seconds from 60 to 604800" in runs["bad limit"].error
    assert_refused_quietly(runs["no such day"], "no such day")  # RFC 3339's form, no such date (common.alert_datetime)
    assert runs["no such day"].error == "error: alert-time: '2026-02-30T00:00:00.5Z' is not a valid time"


# --- isolation in verify's pod (--isolate=true, isolate-first pipelines) ------------------------

WORKFLOW_REF = "falco-response/falco-response-0123456789abcdef-3"


def isolate_flags(namespace: str = "default", pod: str = "web-1", **over: str) -> dict[str, str]:
    return verify_flags(**{
        "namespace": namespace, "pod": pod, "container-id": hexid(f"{namespace}/{pod}/app")[:12],
        "isolate": "true", "policy": "terminal-shell", "workflow": WORKFLOW_REF, "pipeline": "checkpoint-and-quarantine",
        **over,
    })  # fmt: skip


def test_isolate_applies_the_deny_all_and_the_label_only_after_every_check_passed(kube, tmp_path):
    """verify --isolate=true (build/'s isolate-first templates) applies quarantine's isolation in its
    own pod, through the quarantine code (steps/quarantine.py apply, detach=False): the deny-all
    NetworkPolicy is created and the pod labelled falco-response.io/quarantined=true with the
    records quarantine writes, but no label is taken off (detaching stays with the quarantine step
    after the checkpoint). An alert that fails a check (pod on another node) isolates nothing; a
    dry run only says what it would do. On the previous code verify had no --isolate flag (exit 1,
    unknown flag) and its identity could not patch pods."""
    for ns in ("refused", "dry"):
        kube.add_namespace(ns)
    add_web_pod(kube, labels={"app": "web", "tier": "front"})
    add_web_pod(kube, namespace="refused", labels={"app": "web"})
    add_web_pod(kube, namespace="dry", labels={"app": "web"})
    runs = run_batch(kube, "verify", {
        "isolate": isolate_flags(),
        "refused": isolate_flags("refused", node="node-2"),
        "dry": isolate_flags("dry", **{"dry-run": "true"}),
    }, tmp_path)  # fmt: skip

    run = runs["isolate"]
    assert run.rc == 0, run.stderr
    assert run.outputs["isolation"] == "isolated" and run.outputs["pod-uid"]
    policy = kube.get("networkpolicies", "default", "falco-response-quarantine")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"falco-response.io/quarantined": "true"}}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    pod = kube.get("pods", "default", "web-1")
    labels, notes = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels == {"app": "web", "tier": "front", "falco-response.io/quarantined": "true",
                      "falco-response.io/policy": "terminal-shell"}  # fmt: skip
    assert notes["falco-response.io/workflow"] == WORKFLOW_REF and notes["falco-response.io/removed-labels"] == "{}"
    assert "verify: isolation: isolated" in run.stdout
    # the checks first: the pod read precedes every write of the isolation
    mine = [(m, p) for m, p, _ in kube.requests if "/namespaces/default/" in p]
    get_pod = mine.index(("GET", "/api/v1/namespaces/default/pods/web-1"))
    create_np = mine.index(("POST", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies"))
    patch_pod = mine.index(("PATCH", "/api/v1/namespaces/default/pods/web-1"))
    assert get_pod < create_np < patch_pod

    assert runs["refused"].rc == 1 and "runs on node node-1, not on node-2" in runs["refused"].error
    assert kube.list("networkpolicies", "refused") == []
    assert "falco-response.io/quarantined" not in kube.get("pods", "refused", "web-1")["metadata"]["labels"]

    dry = runs["dry"]
    assert dry.rc == 0 and dry.outputs["isolation"] == "dry-run: isolated", dry.stderr
    assert "would create deny-all networkpolicy dry/falco-response-quarantine" in dry.stdout
    assert kube.list("networkpolicies", "dry") == []
    assert kube.get("pods", "dry", "web-1")["metadata"]["labels"] == {"app": "web"}


def test_isolate_reports_not_isolated_and_never_stops_the_pipeline(kube, tmp_path):
    """The verdict at verify's time is the output `isolation`: an allow-NetworkPolicy that selects
    the pod keeps it reachable until quarantine detaches it (policies are additive: Kubernetes docs,
    Network Policies, "Isolated and Non-isolated Pods"), and a NetworkPolicy of our name that is not
    our deny-all stops the isolation (quarantine's own check). Neither fails verify: the checkpoint
    and the quarantine step (which judges again and escalates) still run."""
    for ns in ("allow", "squat"):
        kube.add_namespace(ns)
        add_web_pod(kube, namespace=ns, labels={"app": "web"})
    kube.apply([
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-web", "namespace": "allow"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "falco-response-quarantine", "namespace": "squat"},
         "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}},
    ])  # fmt: skip
    runs = run_batch(kube, "verify", {"allow": isolate_flags("allow"), "squat": isolate_flags("squat")}, tmp_path)
    assert runs["allow"].rc == 0, runs["allow"].stderr
    assert runs["allow"].outputs["isolation"] == "not-isolated: NetworkPolicy allow/allow-web allows ingress"
    assert kube.get("pods", "allow", "web-1")["metadata"]["labels"]["falco-response.io/quarantined"] == "true"
    squat = runs["squat"]
    assert squat.rc == 0 and squat.outputs["container-name"] == "app", squat.stderr
    assert squat.outputs["isolation"].startswith(
        "not-isolated: networkpolicy squat/falco-response-quarantine exists but is not our deny-all")
    assert "verify: warning: could not isolate pod squat/web-1" in squat.stdout
    assert "falco-response.io/quarantined" not in kube.get("pods", "squat", "web-1")["metadata"]["labels"]


def test_isolate_needs_the_policy_and_the_workflow(kube, tmp_path):
    """What the isolation records on the pod must be given: refused before any API request."""
    before = len(kube.requests)
    run = run_step(kube, "verify", isolate_flags(policy=""), tmp_path)
    assert_refused_quietly(run, "no policy")
    assert run.error == "error: --isolate=true needs --workflow and --policy (recorded on the isolated pod)"
    assert len(kube.requests) == before


def test_the_verify_identity_writes_only_what_isolation_writes(kube):
    """RBAC now grants verify `pods patch` and `networkpolicies create` cluster-wide (engine/rbac.py);
    the generated ValidatingAdmissionPolicy (engine/admission.py, derived from RBAC) applies the same
    shape rules as to quarantine: no change of a pod's spec, no NetworkPolicy but the deny-all.
    Kubernetes evaluates them in the API server (staging/src/k8s.io/apiserver/pkg/admission/plugin/
    policy/validating/validator.go): a false validation denies with its message, reason Forbidden."""
    from kubernetes import client

    from tests.test_admission_policies import core_as, denial, refused

    add_web_pod(kube, name="web", labels={"app": "web"})
    core = core_as(kube, "verify")
    image = {"spec": {"containers": [{"name": "app", "image": "attacker.example/backdoor:1"}]}}
    status, body = refused(core.patch_namespaced_pod, "web", "default", image)
    assert (status, body["message"]) == (403, 'pods "web" is forbidden: ' + denial("verify", "may not change a pod's spec"))
    net = client.NetworkingV1Api(core.api_client)
    allow = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "falco-response-quarantine"},
             "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}}  # fmt: skip
    status, body = refused(net.create_namespaced_network_policy, "default", allow)
    assert status == 403 and body["message"].endswith(
        denial("verify", "may create only the deny-all NetworkPolicy falco-response-quarantine"))
