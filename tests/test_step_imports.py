"""Steps import only what they use: no pydantic, YAML, policy model or `kubernetes` package on the
way to a step's first API request (issue 9, item 4). Not timed: tests/bench_steps.py times it.

Each step runs as Argo runs it, `python -m steps.<name> --flag=value ...`, with `-X importtime`,
which makes CPython log every module the process imports to stderr (Python/import.c,
import_find_and_load); the invocations are tests/bench_steps.py's, so this also proves the bench
times real runs (each API step exits 0 against the stand-in).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from engine.names import STEPS
from tests.bench_steps import analyze_argv, copy_argv, kube_steps
from tests.test_verify import ROOT, run_parallel, step_environ

FORBIDDEN = ("pydantic", "pydantic_core", "yaml", "_yaml", "engine.config", "kubernetes")


def imported(stderr: str) -> set[str]:
    """Module names from `-X importtime` lines: `import time: self | cumulative | <indent>name`."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:") and line.count("|") == 2}


def forbidden(modules: set[str]) -> list[str]:
    """The FORBIDDEN packages among `modules` (a package or any of its submodules)."""
    return sorted(f for f in FORBIDDEN if any(m == f or m.startswith(f + ".") for m in modules))


def run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_no_step_imports_pydantic_yaml_the_policy_model_or_the_kubernetes_client(kube, tmp_path):
    jobs = {}
    for step, flags in kube_steps(kube, tmp_path).items():
        argv = ["-m", f"steps.{step}", *(f"--{k}={v}" for k, v in flags.items())]
        jobs[step] = (argv, step_environ(kube, tmp_path / f"out-{step}", None, step), 0)
    with socket.socket() as closed:  # a port nobody listens on: copy gets as far as its first S3 request
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = step_environ(kube, tmp_path / "out-copy", {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "STEP_RETRY_BASE_DELAY": "0.001"}, "copy")
    jobs["copy"] = (copy_argv(tmp_path, f"http://127.0.0.1:{port}")[1:], env, 75)  # EXIT_TRANSIENT: S3 unreachable
    env = step_environ(kube, tmp_path / "out-analyze", {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "STEP_RETRY_BASE_DELAY": "0.001"}, "analyze")
    jobs["analyze"] = (analyze_argv(tmp_path, f"http://127.0.0.1:{port}")[1:], env, 75)
    empty = tmp_path / "empty"
    empty.mkdir()
    jobs["reap"] = (["-m", "steps.reap", f"--checkpoint-dir={empty}", "--retention-seconds=3600"], step_environ(kube, tmp_path / "out-reap"), 0)
    assert set(STEPS) <= set(jobs)

    names = list(jobs)
    results = dict(zip(names, run_parallel([lambda s=s: run(jobs[s][0], jobs[s][1]) for s in names])))
    for step, result in results.items():
        assert result.returncode == jobs[step][2], (step, result.stderr[-2000:])
        modules = imported(result.stderr)
        assert "steps.common" in modules, step
        assert forbidden(modules) == [], f"steps.{step} imports {forbidden(modules)}"
    assert "steps.kube" in imported(results["verify"].stderr)
    assert "botocore.client" in imported(results["copy"].stderr)  # copy did reach its S3 client


@pytest.mark.parametrize("step", ["verify", "quarantine", "delete", "report", "checkpoint", "copy", "reap"])
def test_importing_a_step_module_loads_none_of_them(step):
    """The module alone (what `python -m` imports before main runs)."""
    code = f"import sys, steps.{step}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert forbidden(set(result.stdout.split())) == []
