"""`falco-response evidence list` and `evidence get`, as a responder types them, against the stand-in
S3 holding what the real steps stored: the demo world's whole response (copy's manifest and
archive, verify's bundle, analyze's analysis, summary and custody record), and evidence the copy
and analyze steps stored in a bucket without versioning, where a replaced object cannot hide.

Upstream behaviour relied on: a GetObject with VersionId returns that version whatever was put on
the key since, and ListObjectVersions marks the current version IsLatest (S3 API reference);
HeadObject returns ObjectLockMode, ObjectLockRetainUntilDate and ObjectLockLegalHoldStatus for a
locked version (CONTRACTS.md section 8).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import names
from engine.demo import Demo
from standin.s3 import S3Server
from tests.test_analyze import PLAIN, run_analyze, stored
from tests.test_copy import FOLDER, WORKFLOW_UID
from tests.test_workflow_pods import ALERT

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def s3():
    with S3Server() as server:
        server.create_bucket(PLAIN, versioning=False)
        yield server


def cli(server, *argv: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ.update(server.env(), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1", AWS_ENDPOINT_URL=server.url)
    return subprocess.run([sys.executable, "-m", "engine.cli", "evidence", *argv], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_list_and_get_verify_the_demo_response_and_catch_a_replaced_object(tmp_path):
    """The demo's response, from its own bucket (response.yaml's settings.evidence, the endpoint
    from $AWS_ENDPOINT_URL as the demo gives it to the steps)."""
    out = io.StringIO()
    with Demo(ROOT / "build", workdir=tmp_path / "demo", out=out) as demo:
        result = demo.run(ALERT, policy="checkpoint-and-quarantine", source="test")
        assert result.run.phase == "Succeeded", out.getvalue()[-3000:]
        uid = result.run.workflow["metadata"]["uid"]

        listed = cli(demo.s3, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert len(rows) == 1
        row = rows[0]
        assert (row["namespace"], row["pod"], row["uid"], row["workflow"]) == ("default", "kubecon", uid, result.workflow_name)
        assert (row["rule"], row["policy"], row["pipeline"]) == ("Terminal shell in container", "interactive-intrusion", "checkpoint-and-quarantine")
        assert row["result"].startswith("checkpoint, ") and "findings" in row["result"] and "bundle" in row["result"]
        table = cli(demo.s3, "list")
        assert table.returncode == 0 and "default/kubecon" in table.stdout and "checkpoint-and-quarantine" in table.stdout

        got = cli(demo.s3, "get", uid, "--out", str(tmp_path / "out"), "--json")
        assert got.returncode == 0, got.stderr
        report = json.loads(got.stdout)
        assert report["ok"] and report["problems"] == [] and report["unlisted"] == []
        by_name = {o["name"]: o for o in report["objects"]}
        expected = {"checkpoint.tar", "manifest.json", names.ANALYSIS_OBJECT, names.ANALYSIS_SUMMARY_OBJECT,
                    names.ANALYSIS_CUSTODY_OBJECT, "bundle/manifest.json", "bundle/pod.json", "bundle/events.json"}
        assert expected <= set(by_name), sorted(by_name)
        assert by_name["checkpoint.tar"]["sha256"] == result.evidence["sha256"]
        client = demo.s3.client()
        for item in report["objects"]:
            assert item["verified"] and item["lock"]["mode"] == "GOVERNANCE" and item["lock"]["retain_until"], item
            assert item["lock"]["legal_hold"] == "OFF"
            written = Path(item["path"]).read_bytes()
            assert hashlib.sha256(written).hexdigest() == item["sha256"]
            head = client.head_object(Bucket=demo.bucket, Key=item["key"], VersionId=item["version_id"])
            assert head["ObjectLockRetainUntilDate"].strftime("%Y-%m-%dT%H:%M:%SZ") == item["lock"]["retain_until"]

        # Object Lock keeps every version, but anyone with PutObject can stack a new one on a key.
        # The archive's record names its version: still verified, the newer version shown as not evidence.
        archive = by_name["checkpoint.tar"]["key"]
        client.put_object(Bucket=demo.bucket, Key=archive, Body=b"replaced", ChecksumAlgorithm="SHA256")
        again = cli(demo.s3, "get", f"s3://{demo.bucket}/{archive}", "--json")
        assert again.returncode == 0, again.stderr
        archive_item = next(o for o in json.loads(again.stdout)["objects"] if o["name"] == "checkpoint.tar")
        assert archive_item["verified"] and archive_item["newer_versions"] is True
        # The bundle lists keys without versions: a version stacked on one of them is caught.
        pod_key = by_name["bundle/pod.json"]["key"]
        client.put_object(Bucket=demo.bucket, Key=pod_key, Body=b'{"kind": "Pod", "forged": true}', ChecksumAlgorithm="SHA256")
        caught = cli(demo.s3, "get", uid)
        lines = caught.stderr.strip().splitlines()
        assert caught.returncode == 1 and len(lines) == 1, caught.stderr
        assert lines[0].startswith("error: evidence does not verify: bundle/pod.json: sha256 ") and "listed by bundle/manifest.json" in lines[0]
        assert "MISMATCH  bundle/pod.json" in caught.stdout
        # a second version of a custody record (they are written once) is a failure of its own
        manifest_key = by_name["manifest.json"]["key"]
        client.put_object(Bucket=demo.bucket, Key=manifest_key, Body=client.get_object(Bucket=demo.bucket, Key=manifest_key)["Body"].read())
        twice = cli(demo.s3, "get", uid, "--json")
        assert twice.returncode == 1
        assert "manifest.json: more than one version" in " ".join(json.loads(twice.stdout)["problems"])


def test_get_detects_a_replaced_analysis_and_refuses_a_bad_response_name(s3, tmp_path):
    """A bucket without versioning: records name no versions, so a replaced object is what a
    download returns; its SHA-256 no longer matches the custody record."""
    _, copied = stored(s3, PLAIN, tmp_path)
    assert run_analyze(s3, tmp_path, copied).returncode == 0
    flags = ("--bucket", PLAIN, "--prefix", "falco-response")
    ok = cli(s3, "get", WORKFLOW_UID, *flags)
    assert ok.returncode == 0, ok.stderr
    assert "ok        checkpoint.tar" in ok.stdout and f"ok        {names.ANALYSIS_OBJECT}" in ok.stdout

    s3.client().put_object(Bucket=PLAIN, Key=f"{FOLDER}/{names.ANALYSIS_OBJECT}", Body=b'{"findings": []}')
    bad = cli(s3, "get", f"s3://{PLAIN}/{FOLDER}/", *flags)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1, bad.stderr
    assert lines[0].startswith(f"error: evidence does not verify: {names.ANALYSIS_OBJECT}: sha256 ")
    assert f"(listed by {names.ANALYSIS_CUSTODY_OBJECT})" in lines[0]
    # an object put in the folder that no record lists is shown, and is not evidence
    s3.client().put_object(Bucket=PLAIN, Key=f"{FOLDER}/notes.txt", Body=b"planted")
    planted = cli(s3, "get", WORKFLOW_UID, *flags, "--json")
    assert f"{FOLDER}/notes.txt" in json.loads(planted.stdout)["unlisted"]

    # a record naming an object of another response is refused, not followed
    forged = {"schema": names.CUSTODY_SCHEMA, "objects": [{"key": "falco-response/default/other/x", "sha256": "0" * 64}]}
    s3.client().put_object(Bucket=PLAIN, Key=f"{FOLDER}/custody-forged.json", Body=json.dumps(forged).encode())
    refused = cli(s3, "get", WORKFLOW_UID, *flags, "--json")
    assert refused.returncode == 1 and "custody-forged.json lists 'falco-response/default/other/x'" in refused.stderr
    assert not json.loads(refused.stdout)["ok"]

    missing = cli(s3, "get", "11111111-2222-4333-8444-555555555555", *flags)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no response ")
    outside = cli(s3, "get", f"s3://{PLAIN}/elsewhere/x", *flags)
    assert outside.returncode == 2 and outside.stderr.count("\n") == 1 and "is not under" in outside.stderr
