"""Benchmark: how long each step takes from process start to its first API request.

    python -m tests.bench_steps [--runs=10]      (make bench)

Every step is a fresh `python -m steps.<name>` process (one per Argo pod), so its start-up is paid
on every response, before containment. Each run takes the time just before spawning the step and
the time the server sees its first request: FakeKube's `on_request` hook for the steps that talk to
the API server, a bare HTTP listener standing for S3 for copy and analyze. reap makes no request at all (no
token, no network): its figure is one whole pass over an empty directory, process exit included,
an upper bound of its start-up. owner_cap and escalation are modules of verify: its figure covers
them. The target (issue 9, item 4) is a median of at most 250 ms per step; `python -c pass` is
shown for scale. Exits 1 when a step misses it.
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from engine.names import STEPS
from standin.kube import FakeKube
from tests.conftest import BUILD
from tests.test_verify import ROOT, add_web_pod, step_environ, verify_flags

LIMIT_MS = 250.0
PYCACHE = Path(tempfile.gettempdir()) / "bench-steps-pycache"


def compiled(env: dict) -> dict:
    """Bytecode cached, as in the image (pip compiles every module it installs): this project's
    environment sets PYTHONDONTWRITEBYTECODE, which would compile every project module from source
    on every run. The cache goes outside the tree; each step's first run (not timed) fills it."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def spawn(argv: list[str], env: dict | None, first: threading.Event, seen: list[float], ok: bool = True, timeout: float = 60.0) -> float:
    """Milliseconds from just before spawning to the first request (seen[0], set by the server).
    With `ok`, the step must also succeed: the invocation timed is a real one, not a refusal."""
    first.clear()
    seen.clear()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = first.wait(timeout)
    out, err = proc.communicate(timeout=timeout)
    if not got:
        raise SystemExit(f"{' '.join(argv[2:4])} made no request (exit {proc.returncode}): {err.decode().strip() or out.decode().strip()}")
    if ok and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:4])} failed (exit {proc.returncode}): {err.decode().strip()}")
    return (seen[0] - started) * 1000


def python_start(runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class _S3Recorder(http.server.ThreadingHTTPServer):
    """Stands for S3 only as far as its first request: records when it came, answers 503."""

    def __init__(self, first: threading.Event, seen: list[float]) -> None:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                if not recorder.first.is_set():
                    recorder.seen.append(time.perf_counter())
                    recorder.first.set()
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.first, self.seen = first, seen
        super().__init__(("127.0.0.1", 0), Handler)


def kube_steps(kube: FakeKube, tmp: Path) -> dict[str, dict[str, str]]:
    """A valid invocation of each step that talks to the API server (its first request is a read)."""
    from tests import test_delete, test_quarantine, test_report

    pod = add_web_pod(kube)
    status = pod["status"]["containerStatuses"][0]
    return {
        "verify": verify_flags(),
        "checkpoint": {
            "namespace": "default", "pod": "web-1", "container": "app", "node": "node-1", "timeout": "30",
            "pod-uid": pod["metadata"]["uid"], "container-id": status["containerID"].partition("://")[2],
            "ca-bundle": str(kube.kubelet_ca),
        },
        "quarantine": test_quarantine.flags(**{"dry-run": "true"}),
        "delete": test_delete.flags(**{"dry-run": "true"}),
        "report": test_report.flags(**{"dry-run": "true"}),
    }  # fmt: skip


def copy_argv(tmp: Path, endpoint: str) -> list[str]:
    from tests import test_copy

    node = tmp / "checkpoints"
    node.mkdir()
    test_copy.make_archive(node, 64 * 1024)

    class S3:
        url = endpoint

    flags = test_copy.flags(S3, node, tmp)
    return [sys.executable, "-m", "steps.copy", *(f"--{k}={v}" for k, v in flags.items())]


def analyze_argv(tmp: Path, endpoint: str) -> list[str]:
    """analyze as the pipeline runs it after copy (its first request: the custody record of an earlier attempt)."""
    from tests import test_copy

    flags = {
        "manifest-uri": f"s3://{test_copy.BUCKET}/{test_copy.MANIFEST}", "sha256": "0" * 64, "bucket": test_copy.BUCKET,
        "endpoint-url": endpoint, "workflow-name": "falco-response-0123456789abcdef", "workflow-namespace": "falco-response",
        "workflow-uid": test_copy.WORKFLOW_UID, "outputs-dir": str(tmp / "out-analyze"),
    }  # fmt: skip
    return [sys.executable, "-m", "steps.analyze", *(f"--{k}={v}" for k, v in flags.items())]


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="python -m tests.bench_steps")
    options.add_argument("--runs", type=int, default=10)
    runs = options.parse_args(argv).runs
    first, seen = threading.Event(), []

    def hook(method: str, path: str) -> None:
        if not first.is_set():
            seen.append(time.perf_counter())
            first.set()

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name, FakeKube(Path(tmp_name) / "kube") as kube:
        tmp = Path(tmp_name)
        kube.add_namespace("default")
        kube.add_node("node-1")
        kube.apply_build(BUILD)
        invocations = kube_steps(kube, tmp)
        kube.on_request(hook)
        for step, flags in invocations.items():
            argv = [sys.executable, "-m", f"steps.{step}", *(f"--{k}={v}" for k, v in flags.items())]
            env = compiled(step_environ(kube, tmp / f"out-{step}", None, step))
            spawn(argv, env, first, seen)  # warm-up: fills the bytecode cache
            results[step] = statistics.median(spawn(argv, env, first, seen) for _ in range(runs))

        s3 = _S3Recorder(first, seen)
        threading.Thread(target=s3.serve_forever, daemon=True).start()
        try:
            argv = copy_argv(tmp, f"http://127.0.0.1:{s3.server_address[1]}")
            env = compiled(step_environ(kube, tmp / "out-copy", {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                                                                 "STEP_RETRY_BASE_DELAY": "0.001"}, "copy"))
            spawn(argv, env, first, seen, ok=False)
            results["copy"] = statistics.median(spawn(argv, env, first, seen, ok=False) for _ in range(runs))
            argv = analyze_argv(tmp, f"http://127.0.0.1:{s3.server_address[1]}")
            env = compiled(step_environ(kube, tmp / "out-analyze", {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                                                                    "STEP_RETRY_BASE_DELAY": "0.001"}, "analyze"))
            spawn(argv, env, first, seen, ok=False)
            results["analyze"] = statistics.median(spawn(argv, env, first, seen, ok=False) for _ in range(runs))
        finally:
            s3.shutdown()

        empty = tmp / "empty"
        empty.mkdir()
        reap = [sys.executable, "-m", "steps.reap", f"--checkpoint-dir={empty}", "--retention-seconds=3600"]
        times, env = [], compiled(step_environ(kube, tmp / "out-reap"))
        subprocess.run(reap, cwd=ROOT, env=env, check=True, capture_output=True)
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(reap, cwd=ROOT, env=env, check=True, capture_output=True)
            times.append((time.perf_counter() - started) * 1000)
        results["reap"] = statistics.median(times)

    baseline = python_start(runs)
    assert set(STEPS) <= set(results), f"steps without a figure: {set(STEPS) - set(results)}"
    print(f"step start-up: process start to first API request, median of {runs} (limit {LIMIT_MS:.0f} ms)")
    print(f"  {'python -c pass':<16} {baseline:7.1f} ms")
    for step, ms in results.items():
        mark = "ok" if ms <= LIMIT_MS else "OVER"
        note = " (one whole pass: reap makes no request)" if step == "reap" else ""
        print(f"  {step:<16} {ms:7.1f} ms  {mark}{note}")
    for step, ms in results.items():
        print(f"bench: step_start_ms.{step}={ms:.0f}")
    print(f"bench: python_start_ms={baseline:.0f}")
    return 0 if all(ms <= LIMIT_MS for ms in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
