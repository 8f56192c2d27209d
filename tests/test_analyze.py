"""analyze step, through `python -m steps.analyze` as Argo runs it, against the stand-in S3 (moto
with S3's checksum and conditional-write checks), on evidence the real copy step stored.

Upstream behaviour relied on: S3 object versions are immutable and GetObject with VersionId (and
Range, If-Match) returns that version's bytes (S3 API reference, GetObject); Object Lock retention
is per object version, set on PutObject with ObjectLockMode + ObjectLockRetainUntilDate
(CONTRACTS.md section 8). The whole-pipeline tests rely on Argo's continueOn: a DAG target task
whose continueOn covers its phase does not fail the DAG (argo-workflows
workflow/controller/dag.go assessDAGPhase, pkg/apis/workflow/v1alpha1/workflow_types.go
DAGTask.ContinuesOn), and on the exit handler running whatever the DAG's phase.
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
from tests.test_copy import FOLDER, KEY, LOCKED, MANIFEST, WORKFLOW_UID, flags, make_archive, outputs, run_copy
from tests.test_workflow_pods import ALERT

ROOT = Path(__file__).resolve().parents[1]
PLAIN = "evidence-unversioned"
ANALYSIS, SUMMARY, CUSTODY = (f"{FOLDER}/{n}" for n in (names.ANALYSIS_OBJECT, names.ANALYSIS_SUMMARY_OBJECT, names.ANALYSIS_CUSTODY_OBJECT))


@pytest.fixture
def s3():
    with S3Server() as server:
        server.create_bucket(LOCKED, object_lock=True)
        server.create_bucket(PLAIN, versioning=False)
        yield server


def stored(s3: S3Server, bucket: str, tmp_path: Path, **copy_flags: str) -> tuple[bytes, dict[str, str]]:
    """A containerd checkpoint archive on the "node", moved to S3 by the real copy step: (bytes, copy's outputs)."""
    node_dir = tmp_path / "node"
    node_dir.mkdir(exist_ok=True)
    data = make_archive(node_dir, 256 * 1024)
    result = run_copy(s3, flags(s3, node_dir, tmp_path, bucket=bucket, **copy_flags))
    assert result.returncode == 0, result.stderr
    return data, outputs(tmp_path)


def run_analyze(s3: S3Server, tmp_path: Path, copied: dict[str, str], env: dict | None = None, extra: tuple = (), **overrides: str):
    values = {
        "manifest-uri": copied["manifest-uri"], "sha256": copied["sha256"],
        "bucket": copied["manifest-uri"][5:].partition("/")[0], "endpoint-url": s3.url, "region": "us-east-1",
        "workflow-name": "falco-response-0123456789abcdef", "workflow-namespace": "falco-response",
        "workflow-uid": WORKFLOW_UID, "timeout": "60", "outputs-dir": str(tmp_path / "analyze-out"),
    }  # fmt: skip
    values.update({k.replace("_", "-"): v for k, v in overrides.items()})
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ.update(s3.env(), STEP_RETRY_BASE_DELAY="0.01", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    environ.update(env or {})
    argv = [sys.executable, "-m", "steps.analyze", *(f"--{k}={v}" for k, v in values.items()), *extra]
    return subprocess.run(argv, env=environ, cwd=ROOT, capture_output=True, text=True, timeout=120)


def analyze_outputs(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "analyze-out"
    return {p.name: p.read_text() for p in directory.iterdir()} if directory.exists() else {}


def versions(s3: S3Server, bucket: str) -> list[tuple[str, str]]:
    answer = s3.client().list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for v in answer.get("Versions") or [])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines and lines[-1].startswith("error: "), result.stderr
    assert not [line for line in lines if line.startswith("Traceback")], result.stderr
    return lines[-1]


def broken_analyzer(tmp_path: Path, body: str) -> dict[str, str]:
    """PYTHONPATH with a sitecustomize that replaces the analyzer's entry point: an analyzer bug,
    seen through the step's real command line (nothing in the product knows about it)."""
    directory = tmp_path / "broken-analyzer"
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import time\nimport steps.forensics.analysis as analysis\n\n"
        f"def analyze_archive(source, **_):\n    {body}\n\nanalysis.analyze_archive = analyze_archive\n"
    )
    return {"PYTHONPATH": os.pathsep.join((str(directory), str(ROOT)))}


# --- the step --------------------------------------------------------------------------------------


def test_a_verified_archive_is_analyzed_and_added_to_the_custody_record_under_its_lock(s3, tmp_path):
    data, copied = stored(s3, LOCKED, tmp_path, object_lock_mode="GOVERNANCE", object_lock_days="2")
    client = s3.client()
    archive_head = client.head_object(Bucket=LOCKED, Key=KEY)
    manifest_bytes = client.get_object(Bucket=LOCKED, Key=MANIFEST)["Body"].read()
    # Someone stacks another version on the archive: the evidence stays the version the manifest names.
    client.put_object(Bucket=LOCKED, Key=KEY, Body=b"not the evidence", ChecksumAlgorithm="SHA256")
    s3.requests.clear()

    result = run_analyze(s3, tmp_path, copied)
    assert result.returncode == 0, result.stderr
    out = analyze_outputs(tmp_path)
    analysis_bytes = client.get_object(Bucket=LOCKED, Key=ANALYSIS)["Body"].read()
    summary_bytes = client.get_object(Bucket=LOCKED, Key=SUMMARY)["Body"].read()
    record_bytes = client.get_object(Bucket=LOCKED, Key=CUSTODY)["Body"].read()
    assert out["analysis-uri"] == f"s3://{LOCKED}/{ANALYSIS}"
    assert out["analysis-sha256"] == hashlib.sha256(analysis_bytes).hexdigest()
    assert out["custody-uri"] == f"s3://{LOCKED}/{CUSTODY}"
    assert out["summary"].encode() == summary_bytes and 0 < len(summary_bytes) <= 1024
    assert out["findings"].startswith("analysis: ") and "\n" not in out["findings"]

    document = json.loads(analysis_bytes)
    assert document["evidence"]["sha256"] == hashlib.sha256(data).hexdigest() == copied["sha256"]
    assert document["evidence"]["version_id"] == archive_head["VersionId"] == copied["version-id"]
    report = document["report"]
    assert {"identity", "processes", "files", "sockets", "rootfs", "findings", "errors"} <= set(report)
    assert report["identity"]  # read from the archive as stored, not from the version stacked on it
    count = len(report["findings"])
    assert out["findings"].startswith(f"analysis: {count} finding" if count else "analysis: no findings"), out["findings"]

    record = json.loads(record_bytes)
    assert record["schema"] == names.CUSTODY_SCHEMA
    assert record["follows"] == {"key": MANIFEST, "version_id": client.head_object(Bucket=LOCKED, Key=MANIFEST)["VersionId"],
                                 "sha256": hashlib.sha256(manifest_bytes).hexdigest()}
    assert record["verified"][0]["sha256"] == copied["sha256"] and record["verified"][0]["version_id"] == copied["version-id"]
    by_role = {o["role"]: o for o in record["objects"]}
    assert by_role["analysis"]["sha256"] == hashlib.sha256(analysis_bytes).hexdigest()
    assert by_role["summary"]["sha256"] == hashlib.sha256(summary_bytes).hexdigest()
    assert record["findings"] == out["findings"]
    for key, role in ((ANALYSIS, "analysis"), (SUMMARY, "summary"), (CUSTODY, None)):
        head = client.head_object(Bucket=LOCKED, Key=key)
        assert head["ObjectLockMode"] == archive_head["ObjectLockMode"] == "GOVERNANCE", key
        assert head["ObjectLockRetainUntilDate"] == archive_head["ObjectLockRetainUntilDate"], key
        assert head["Metadata"]["evidence-sha256"] == copied["sha256"] and head["Metadata"]["workflow-uid"] == WORKFLOW_UID
        if role:
            assert head["VersionId"] == by_role[role]["version_id"]
    assert record["object_lock"]["mode"] == "GOVERNANCE"
    # manifest.json is written once: still one version; the record is a new object beside it
    assert [k for k, _ in versions(s3, LOCKED)].count(MANIFEST) == 1

    # Verified first: the first read of the archive is the whole version the manifest names, then
    # the analysis reads ranges of that same version; nothing reads the stacked version.
    reads = [r for r in s3.requests if r[0] == "GET" and r[1].endswith("/checkpoint.tar")]
    assert reads and all(f"versionId={copied['version-id']}" in r[2] for r in reads), reads
    writes = [r[1].rsplit("/", 1)[1] for r in s3.requests if r[0] == "PUT"]
    assert writes == [names.ANALYSIS_OBJECT, names.ANALYSIS_SUMMARY_OBJECT, names.ANALYSIS_CUSTODY_OBJECT]


def test_a_retry_of_the_same_run_repeats_its_outputs_and_writes_nothing(s3, tmp_path):
    _, copied = stored(s3, LOCKED, tmp_path, object_lock_mode="COMPLIANCE", object_lock_days="1")
    first = run_analyze(s3, tmp_path, copied)
    assert first.returncode == 0, first.stderr
    before, out = versions(s3, LOCKED), analyze_outputs(tmp_path)
    again = run_analyze(s3, tmp_path, copied, outputs_dir=str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert "earlier attempt of this run" in again.stdout
    assert versions(s3, LOCKED) == before
    assert {p.name: p.read_text() for p in (tmp_path / "again").iterdir()} == out


def test_a_tampered_archive_is_refused_and_nothing_is_written(s3, tmp_path):
    """A bucket without versioning: the manifest names no version, and the object under the key
    was replaced after copy. The SHA-256 is checked before the analyzer reads a byte."""
    data, copied = stored(s3, PLAIN, tmp_path)
    tampered = bytearray(data)
    tampered[-2048] ^= 0xFF
    s3.client().put_object(Bucket=PLAIN, Key=KEY, Body=bytes(tampered))
    before = versions(s3, PLAIN)
    result = run_analyze(s3, tmp_path, copied)
    line = one_error_line(result)
    assert "does not match its manifest" in line and copied["sha256"] in line
    assert hashlib.sha256(bytes(tampered)).hexdigest() in line and "nothing written" in line
    assert versions(s3, PLAIN) == before
    assert analyze_outputs(tmp_path) == {}


@pytest.mark.parametrize("override, fragment", [
    ({"workflow_uid": "11111111-2222-4333-8444-555555555555"}, "not of this one"),
    ({"sha256": "0" * 64}, "copy reported " + "0" * 64),
    ({"manifest_uri": f"s3://{LOCKED}/{FOLDER}/../manifest.json"}, "without '.' or '..'"),
    ({"bucket": "another-bucket"}, "is not the evidence store's bucket"),
])  # fmt: skip
def test_a_manifest_that_is_not_this_run_s_is_refused(s3, tmp_path, override, fragment):
    _, copied = stored(s3, LOCKED, tmp_path)
    before = versions(s3, LOCKED)
    line = one_error_line(run_analyze(s3, tmp_path, copied, **override))
    assert fragment in line, line
    assert versions(s3, LOCKED) == before


@pytest.mark.parametrize("body, timeout, fragment", [
    ("raise RuntimeError('decoder bug')", "60", "the analysis failed (RuntimeError: decoder bug)"),
    ("time.sleep(30)", "1", "did not finish within 1 s"),
])  # fmt: skip
def test_an_analyzer_crash_or_timeout_fails_the_step_and_writes_nothing(s3, tmp_path, body, timeout, fragment):
    _, copied = stored(s3, LOCKED, tmp_path)
    before = versions(s3, LOCKED)
    result = run_analyze(s3, tmp_path, copied, env=broken_analyzer(tmp_path, body), timeout=timeout)
    line = one_error_line(result)
    assert fragment in line and "evidence is untouched" in line, line
    assert versions(s3, LOCKED) == before
    assert analyze_outputs(tmp_path) == {}


# --- in the whole pipeline --------------------------------------------------------------------------


def run_pipeline(tmp_path: Path, step_env: dict | None = None):
    out = io.StringIO()
    with Demo(ROOT / "build", workdir=tmp_path / "demo", out=out, step_env=step_env) as demo:
        result = demo.run(ALERT, policy="checkpoint-and-quarantine", source="test")
        events = demo.kube.list("events", "default")
    tasks = {t.name: t for t in result.run.tasks}
    report = [e for e in events if e.get("reason", "").startswith("FalcoResponse")]
    return result, tasks, report, out.getvalue()


def test_a_failing_analysis_leaves_containment_and_the_response_succeeded(tmp_path):
    """The analyzer crashes in the analyze pod: the task fails, quarantine (which never depends on
    it) and the report still succeed, the Workflow is Succeeded (continueOn), and the report says
    the analysis failed without calling the response failed."""
    env = broken_analyzer(tmp_path, "raise RuntimeError('decoder bug')")
    result, tasks, report, out = run_pipeline(tmp_path, env)
    assert tasks["analyze"].phase == "Failed", out[-3000:]
    assert "the analysis failed (RuntimeError: decoder bug)" in tasks["analyze"].message
    assert tasks["quarantine"].phase == tasks["copy"].phase == "Succeeded"
    assert result.run.exit_handler.phase == "Succeeded"
    assert result.run.phase == "Succeeded", out[-3000:]
    assert len(report) == 1 and report[0]["reason"] == "FalcoResponseSucceeded"
    assert "Analysis Failed: error: the analysis failed (RuntimeError: decoder bug)" in report[0]["message"]
    assert "(containment unaffected)" in report[0]["message"]


def test_the_report_event_carries_the_findings_line(tmp_path):
    result, tasks, report, out = run_pipeline(tmp_path)
    assert tasks["analyze"].phase == "Succeeded", out[-3000:]
    findings = tasks["analyze"].outputs["findings"]
    # the demo's container: a shell under its server holding a connection to a public address
    assert findings.startswith("analysis: ") and "45.33.32.156:4444" in findings, findings
    assert len(report) == 1 and findings.rstrip(".") in report[0]["message"]
    summary = json.loads(result.run.exit_handler.outputs["summary"])
    assert summary["analysis"]["findings"] == findings
    assert summary["analysis"]["sha256"] == tasks["analyze"].outputs["analysis-sha256"]


@pytest.mark.parametrize("target, phases, expected", [
    # analyze itself failed: continueOn keeps it from failing the DAG
    ("", {"copy": "Succeeded", "analyze": "Failed", "contain": "Succeeded"}, "Succeeded"),
    # copy failed, analyze Omitted: it inherits copy's Failed, which continueOn would hide ...
    ("", {"copy": "Failed", "analyze": "Omitted", "contain": "Succeeded"}, "Succeeded"),
    # ... unless copy is a target of its own, as the pipelines name it
    ("copy contain analyze", {"copy": "Failed", "analyze": "Omitted", "contain": "Succeeded"}, "Failed"),
    ("copy contain analyze", {"copy": "Succeeded", "analyze": "Error", "contain": "Succeeded"}, "Succeeded"),
    ("copy contain analyze", {"copy": "Succeeded", "analyze": "Succeeded", "contain": "Failed"}, "Failed"),
])  # fmt: skip
def test_the_dag_phase_follows_argo_with_continue_on_and_targets(target, phases, expected):
    """The stand-in's assessDAGPhase on the pipelines' shape (workflow/controller/dag.go
    assessDAGPhase: target tasks, an omitted task takes its branch's phase, a target whose
    continueOn covers its phase is skipped; executeDAG: dag.target, else the leaves)."""
    from standin.argo.workflows.scheduling import Dag

    tasks = [
        {"name": "copy", "template": "t"},
        {"name": "analyze", "template": "t", "depends": "copy.Succeeded", "continueOn": {"failed": True, "error": True}},
        {"name": "contain", "template": "t"},
    ]
    dag = Dag.parse({"name": "respond", "dag": {"tasks": tasks, **({"target": target} if target else {})}}, {"t": {}})
    assert dag.assess(phases, {})[0] == expected


def test_a_retry_after_the_analysis_was_stored_keeps_it_and_records_what_is_stored(s3, tmp_path):
    """The attempt died after writing analysis.json and summary, before the custody record: the
    retry's own analysis cannot replace them (If-None-Match), so the record hashes what S3 holds."""
    _, copied = stored(s3, PLAIN, tmp_path)
    assert run_analyze(s3, tmp_path, copied).returncode == 0
    client = s3.client()
    kept = {k: client.get_object(Bucket=PLAIN, Key=k)["Body"].read() for k in (ANALYSIS, SUMMARY)}
    client.delete_object(Bucket=PLAIN, Key=CUSTODY)
    again = run_analyze(s3, tmp_path, copied, outputs_dir=str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert f"{ANALYSIS} was written by an earlier attempt of this run: kept" in again.stdout
    assert {k: client.get_object(Bucket=PLAIN, Key=k)["Body"].read() for k in (ANALYSIS, SUMMARY)} == kept
    record = json.loads(client.get_object(Bucket=PLAIN, Key=CUSTODY)["Body"].read())
    assert {o["key"]: o["sha256"] for o in record["objects"]} == {k: hashlib.sha256(v).hexdigest() for k, v in kept.items()}
    assert (tmp_path / "again" / "analysis-sha256").read_text() == hashlib.sha256(kept[ANALYSIS]).hexdigest()


def test_configured_indicators_reach_the_analysis(s3, tmp_path):
    """settings.analysis -> the analyze step's --string/--regex/--yara (pipelines.templates.analyze):
    the stand-in archive's shell memory holds a stratum URL and its writable layer a dropped ELF."""
    _, copied = stored(s3, LOCKED, tmp_path, object_lock_mode="GOVERNANCE", object_lock_days="2")
    rules = tmp_path / "rules.yar"
    rules.write_text('rule elf_in_layer { strings: $m = { 7F 45 4C 46 } condition: $m at 0 }\n')
    result = run_analyze(s3, tmp_path, copied, extra=("--string=stratum+tcp://", "--regex=45\\.33\\.32\\.156", f"--yara={rules}"))
    assert result.returncode == 0, result.stderr
    report = json.loads(s3.client().get_object(Bucket=LOCKED, Key=ANALYSIS)["Body"].read())["report"]
    indicators = {m["indicator"] for m in report["indicators"]["matches"]}
    assert {"stratum+tcp://", "45\\.33\\.32\\.156", "yara:elf_in_layer"} <= indicators, indicators


def test_a_bad_indicator_refuses_before_anything_is_written(s3, tmp_path):
    _, copied = stored(s3, LOCKED, tmp_path, object_lock_mode="GOVERNANCE", object_lock_days="2")
    before = versions(s3, LOCKED)
    line = one_error_line(run_analyze(s3, tmp_path, copied, extra=("--regex=(unclosed",)))
    assert "indicators:" in line and "nothing written" in line
    assert versions(s3, LOCKED) == before
    line = one_error_line(run_analyze(s3, tmp_path, copied, extra=(f"--yara={tmp_path / 'missing.yar'}",)))
    assert line.startswith("error: yara: cannot read")


def test_analysis_settings_become_the_step_arguments_and_a_read_only_rules_volume():
    from engine import config
    from pipelines import templates

    cfg = config.parse({"settings": {"analysis": {"strings": ["xmrig"], "regexes": ["stratum\\+tcp://"], "yara_configmap": "yara-rules"}},
                        "policies": [{"name": "p", "match": {"rules": ["Terminal shell in container"]}, "response": "checkpoint-only"}]})
    container = templates.analyze(cfg.settings)
    args = container.args
    assert "--string=xmrig" in args and "--regex=stratum\\+tcp://" in args
    assert f"--yara={names.YARA_RULES_DIR}/{names.YARA_RULES_KEY}" in args
    mount = next(m for m in container.volume_mounts if m.name == "yara-rules")
    assert mount.read_only and mount.mount_path == names.YARA_RULES_DIR
    default = templates.analyze(config.parse({"policies": [{"name": "p", "match": {"rules": ["R"]}, "response": "checkpoint-only"}]}).settings)
    assert not any(a.startswith("--yara") for a in default.args) and "--string=stratum+tcp://" in default.args


@pytest.mark.parametrize("analysis, words", [
    ({"regexes": ["(unclosed"]}, "does not compile"),
    ({"strings": ["{{workflow.name}}"]}, "Argo's templating"),
    ({"yara_configmap": "Not_A_Name"}, "not a ConfigMap name"),
])
def test_bad_analysis_settings_are_one_line(tmp_path, analysis, words):
    """engine.config.AnalysisSettings refuses, build/ is not written."""
    policy = tmp_path / "response.yaml"
    policy.write_text(json.dumps({"settings": {"analysis": analysis},
                                  "policies": [{"name": "p", "match": {"rules": ["R"]}, "response": "checkpoint-only"}]}))
    result = subprocess.run([sys.executable, "-m", "engine.cli", "build", "--policy-file", str(policy), "--out", str(tmp_path / "out")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_in_an_unversioned_bucket_the_reader_is_pinned_to_the_etag_it_verified(s3):
    """The analysis reads the bytes it hashed: without versions, every ranged GET carries If-Match
    with the verified ETag, and S3 answers 412 PreconditionFailed once the object was replaced
    (S3 API GetObject, If-Match; moto's key lookup checks it the same way). Read through the
    stand-in S3 over HTTP, as the step reads."""
    from steps.analyze import S3Reader
    from steps.common import StepError

    client = s3.client()
    client.put_object(Bucket=PLAIN, Key="a/checkpoint.tar", Body=b"A" * 4096)
    etag = client.head_object(Bucket=PLAIN, Key="a/checkpoint.tar")["ETag"]
    reader = S3Reader(client, PLAIN, "a/checkpoint.tar", 4096, None, etag)
    assert io.BufferedReader(reader, 1024).read(10) == b"A" * 10
    client.put_object(Bucket=PLAIN, Key="a/checkpoint.tar", Body=b"B" * 4096)  # replaced, same size
    stale = S3Reader(client, PLAIN, "a/checkpoint.tar", 4096, None, etag)
    with pytest.raises(StepError, match="PreconditionFailed|412"):
        stale.seek(2048)
        stale.readinto(bytearray(16))
