"""Benchmark: the copy step on a 1 GiB archive against `sha256sum` + a plain boto3 upload_file.

    python -m tests.bench_copy [--size-mib=1024]      (make bench)

The stand-in S3 runs in a process of its own (`python -m standin.s3`), so moto's memory is not
counted. Each contender runs as a fresh subprocess; its wall time and peak RSS come from
os.wait4 (the child's own rusage). The copy step must stay under 100 MiB of RSS, and take at
most 1.5x the time of hashing the file plus uploading it the plain way.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
BUCKET = "evidence-bench"
ARCHIVE = "checkpoint-bench-0_default-app-2024-05-01T12:00:00Z.tar"
RSS_LIMIT_MIB = 100
RATIO_LIMIT = 1.5

HASH = """
import hashlib, sys
digest, view = hashlib.sha256(), memoryview(bytearray(1 << 20))
with open(sys.argv[1], "rb", buffering=0) as handle:
    while count := handle.readinto(view):
        digest.update(view[:count])
print(digest.hexdigest())
"""

UPLOAD = """
import sys, boto3
from botocore.config import Config
client = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}))
client.upload_file(sys.argv[2], sys.argv[3], "plain/upload.tar")
"""


def measure(name: str, argv: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {stderr.strip() or stdout.strip()}")
    return {"name": name, "wall": wall, "rss_mib": usage.ru_maxrss / 1024, "stdout": stdout}


CONTAINER_ID = "a" * 64
POD_UID = "6f1c2a3b-0000-4000-8000-00000000abcd"


def make_archive(path: Path, size_mib: int) -> None:
    """A containerd checkpoint archive of bench-0/app (standin.kube.archive: the identity copy checks)
    whose memory pages make it `size_mib` MiB."""
    from datetime import datetime, timezone

    from standin.kube import checkpoint_members, write_checkpoint_archive

    pod = {
        "metadata": {"name": "bench-0", "namespace": "default", "uid": POD_UID, "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": {"containerStatuses": [{"name": "app", "containerID": f"containerd://{CONTAINER_ID}",
                                          "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}}}]},
    }  # fmt: skip
    moment = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    members = checkpoint_members(pod, "app", moment)
    write_checkpoint_archive(path, members, size_mib * MiB - sum(len(d or b"") for _, d in members), moment.timestamp())


def start_s3(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "standin.s3", f"--bucket={BUCKET}"],
        env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = server.stdout.readline().strip()
    if not url.startswith("http://"):
        server.kill()
        raise SystemExit("the stand-in S3 did not start")
    return server, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_copy")
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args(argv)

    from standin.s3 import ACCESS_KEY, REGION, SECRET_KEY

    work = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION,
        NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", STEP_OUTPUTS_DIR=str(work / "out"),
    )  # fmt: skip
    server, server_rss = None, 0.0
    try:
        node = work / "checkpoints"
        node.mkdir(mode=0o700)
        archive = node / ARCHIVE
        print(f"bench: writing a {args.size_mib} MiB archive in {node}", flush=True)
        make_archive(archive, args.size_mib)
        keep = work / "keep.tar"
        os.link(archive, keep)  # the copy step deletes its name for the archive, not this one
        server, url = start_s3(env)
        print(f"bench: stand-in S3 at {url} (separate process, pid {server.pid})", flush=True)

        hashlib_run = measure("(python hashlib)", [sys.executable, "-c", HASH, str(keep)], env)
        results = [
            measure("sha256sum", ["sha256sum", str(keep)], env),
            measure("boto3 upload_file", [sys.executable, "-c", UPLOAD, url, str(keep), BUCKET], env),
        ]
        alert = base64.b64encode(json.dumps({"rule": "bench", "time": "2024-05-01T10:00:00Z"}).encode()).decode()
        copy = [
            sys.executable, "-m", "steps.copy", f"--archive=/var/lib/kubelet/checkpoints/{ARCHIVE}",
            f"--checkpoint-dir={node}", "--namespace=default", "--pod=bench-0", "--container=app",
            f"--container-id={CONTAINER_ID}", f"--pod-uid={POD_UID}", "--workflow-uid=" + POD_UID.replace("6f", "7f"),
            "--node=node-1", "--rule=bench", "--priority=Notice",
            "--alert-time=2024-05-01T10:00:00Z", "--policy=bench", "--workflow-name=falco-response-bench",
            "--workflow-namespace=falco-response", f"--alert-b64={alert}", f"--bucket={BUCKET}",
            f"--endpoint-url={url}", "--region=us-east-1", "--prefix=bench", f"--outputs-dir={work / 'out'}",
        ]  # fmt: skip
        results.append(measure("steps.copy", copy, env))
        if archive.exists():
            raise SystemExit("steps.copy left the archive in place")
        expected = results[0]["stdout"].split()[0]
        got = (work / "out" / "sha256").read_text()
        if got != expected:
            raise SystemExit(f"steps.copy reported sha256 {got}, sha256sum says {expected}")
    finally:
        if server is not None:
            server.stdin.close()
            guard = threading.Timer(60, server.kill)
            guard.start()
            try:
                _, _, usage = os.wait4(server.pid, 0)
                server.returncode = 0
                server_rss = usage.ru_maxrss / 1024
            except ChildProcessError:
                pass
            finally:
                guard.cancel()
        shutil.rmtree(work, ignore_errors=True)

    sha, upload, copy_result = results
    ratio = copy_result["wall"] / (sha["wall"] + upload["wall"])
    print(f"\n{'':20} {'wall s':>8} {'peak RSS MiB':>13}   ({args.size_mib} MiB archive)")
    for r in results:
        print(f"{r['name']:20} {r['wall']:8.2f} {r['rss_mib']:13.1f}")
    print(f"{hashlib_run['name']:20} {hashlib_run['wall']:8.2f} {hashlib_run['rss_mib']:13.1f}   (for reference)")
    print(f"{'(stand-in S3, moto)':20} {'':8} {server_rss:13.1f}   (separate process, not counted)")
    print(f"\nratio copy / (sha256sum + upload_file) = {ratio:.2f} (limit {RATIO_LIMIT})")
    print(f"copy peak RSS {copy_result['rss_mib']:.1f} MiB (limit {RSS_LIMIT_MIB})")
    failed = []
    if copy_result["rss_mib"] >= RSS_LIMIT_MIB:
        failed.append(f"peak RSS {copy_result['rss_mib']:.1f} MiB >= {RSS_LIMIT_MIB}")
    if ratio > RATIO_LIMIT:
        failed.append(f"ratio {ratio:.2f} > {RATIO_LIMIT}")
    if failed:
        print("FAIL: " + "; ".join(failed))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
