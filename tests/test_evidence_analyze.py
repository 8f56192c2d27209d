"""`falco-response evidence analyze PATH|s3://bucket/key [--json]`, run as a user types it
(`python -m engine.cli ...` in a subprocess), on archives the stand-in kubelet writes and on the
stand-in S3 (moto behind S3's checks).

Upstream behaviour relied on: GetObject streams the object's bytes as the response body (S3 API
reference, GetObject; botocore StreamingBody.read(n)), and a missing key answers 404 NoSuchKey.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from standin.criu.scenario import EXPECTED
from standin.kube.archive import write_checkpoint_archive
from standin.s3 import S3Server
from tests.test_analysis import MOMENT, members

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "evidence-analyze"


def run(capsys, *argv: str) -> subprocess.CompletedProcess:
    """The CLI's main with argv, in this process (the same parser and code as the console script, without
    the interpreter start-up)."""
    from engine.cli import main

    code = main(["evidence", "analyze", *argv])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "engine.cli", "evidence", "analyze", *argv], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    out = {}
    for runtime in ("containerd", "cri-o"):
        out[runtime] = folder / f"checkpoint-{runtime}.tar"
        write_checkpoint_archive(out[runtime], members(runtime), 0, MOMENT.timestamp())
    return out


@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
def test_json_report_of_each_layout(archives, runtime, capsys):
    argv = (str(archives[runtime]), "--json", "--string", "stratum+tcp://")
    done = cli(*argv) if runtime == "containerd" else run(capsys, *argv)  # one as a subprocess, as a user runs it
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"identity", "processes", "files", "sockets", "mappings", "rootfs", "dump_missed", "indicators",
                           "findings", "errors"}  # fmt: skip
    assert report["identity"]["runtime"] == runtime and report["errors"] == []
    assert report["rootfs"]["format"] == ("gzip" if runtime == "containerd" else "tar")
    assert {p["pid"] for p in report["processes"]} == set(EXPECTED["processes"])
    assert any(m["scope"] == "memory" for m in report["indicators"]["matches"])


def test_readable_table(archives, capsys):
    done = run(capsys, str(archives["containerd"]))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("container: shop/web-0/app")
    assert "SEVERITY  CODE" in out and "shell-under-server" in out and EXPECTED["dropped_elf"]["sha256"] in out
    assert "partial report" not in out


def test_partial_report_exits_zero_and_says_so(archives, tmp_path, capsys):
    data = archives["cri-o"].read_bytes()
    cut = tmp_path / "truncated.tar"
    cut.write_bytes(data[: len(data) * 2 // 3])
    done = run(capsys, str(cut))
    assert done.returncode == 0, done.stderr
    assert "partial report:" in done.stdout and "truncated" in done.stdout
    report = json.loads(run(capsys, str(cut), "--json").stdout)
    assert report["errors"] and report["processes"]


def test_unreadable_input_exits_2_with_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"definitely not a tar archive\n" * 100)
    for argv in ([str(tmp_path / "missing.tar")], [str(junk)], [str(junk), "--regex", "(unclosed"],
                 [str(junk), "--yara", str(tmp_path / "no-rules.yar")], ["s3://Not_A_Bucket/key"]):  # fmt: skip
        done = run(capsys, *argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), argv
    assert list(tmp_path.iterdir()) == [junk]  # nothing written


def test_s3_object_streamed_from_the_store(archives):
    """s3://bucket/key: the object's body streamed from the stand-in S3, endpoint from $AWS_ENDPOINT_URL,
    credentials from the environment (botocore's chain)."""
    with S3Server() as s3:
        s3.create_bucket(BUCKET)
        key = "falco-response/shop/web-0/app/run/checkpoint.tar"
        s3.client().put_object(Bucket=BUCKET, Key=key, Body=archives["containerd"].read_bytes())
        env = {**s3.env(), "AWS_ENDPOINT_URL": s3.url}
        done = cli(f"s3://{BUCKET}/{key}", "--json", env=env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["identity"]["pod"] == "web-0" and report["archive"]["seekable"] is False
        shell = next(p for p in report["processes"] if p["comm"] == "sh")
        assert shell["argv"] == ["sh", "-i"]  # the runtime's lexical order: pagemap before pages, even streamed
        assert report["errors"] == []
        missing = cli(f"s3://{BUCKET}/no/such/key", env=env)
        assert missing.returncode == 2 and "NoSuchKey" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
        gets = [r for r in s3.requests if r[0] == "GET" and key in r[1]]
        assert len(gets) == 1  # one GetObject, streamed: no download first, no second read
