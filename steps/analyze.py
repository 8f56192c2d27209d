"""analyze: read a stored checkpoint from S3, check it against its manifest, analyze it, and add the analysis to the chain of custody.

Runs after copy, on the evidence as stored, never on the node: no hostPath, no Kubernetes token
(argoexec reports outputs with the executor's), any node, not root. It needs nothing but the
evidence store.

1. Reads copy's manifest.json (--manifest-uri, in --bucket) and checks that it is this run's
   (workflow UID) and names the archive copy reported (--sha256), beside it as checkpoint.tar.
2. Verifies FIRST: streams the archive's version the manifest names and hashes it; a SHA-256 or
   size other than the manifest's refuses the analysis in one line, and nothing is written.
3. Analyzes the same version (steps.forensics.analysis.analyze_archive) through a seekable reader
   of ranged GETs pinned to that version (or, in a bucket without versioning, to the ETag just
   hashed: If-Match), so that the analyzer skips memory pages without downloading them and the
   bytes analyzed are the bytes verified. Never unpacked to disk. Bounded by --timeout; a crash or
   a timeout fails this step only (the pipeline's DAG gives it continueOn: containment never waits
   for it and is never undone by it).
4. Writes beside the evidence, each once (If-None-Match: *), with its SHA-256 as S3 checksum and
   metadata, under the archive's own Object Lock (the same mode and retain-until date, and its
   legal hold when on) and encryption:
     analysis.json          the analyzer's report, with the evidence it was made from
     summary                a text summary of at most 1 KiB
     custody-analyze.json   the custody record: the manifest it follows (key, version, SHA-256 of
                            its bytes), the archive it verified, and analysis.json's and summary's
                            keys, versions, sizes and SHA-256s. A NEW OBJECT, not a new version of
                            manifest.json: the manifest is written once and stays the only version
                            (`falco-response evidence get` reads every custody record beside it).
   Each is checked with HeadObject (size, checksum, lock) after the write. A retry of this run that
   finds the custody record already written repeats its outputs; one that finds analysis.json or
   summary already written by this run keeps them and records what is stored.

Indicators (settings.analysis, passed as --string, --regex and --yara FILE, the rules mounted from
a ConfigMap read-only): searched in memory pages and changed files; a bad regex or YARA rule
refuses in one line before anything is written.

Outputs (the Argo UI shows them): analysis-uri, analysis-sha256, summary (<= 1 KiB), findings (one
line: "analysis: 3 findings: shell under nginx, ..."; the report step carries it), custody-uri.

RBAC: none in Kubernetes (no service account token). S3 credentials only from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY (and optional AWS_SESSION_TOKEN); the S3 policy needs s3:GetObject and
s3:GetObjectVersion (manifest and archive), s3:PutObject (the three objects), s3:PutObjectRetention
with Object Lock, s3:PutObjectLegalHold when the archive is on legal hold, kms:Decrypt (read) and
kms:GenerateDataKey (write) with aws:kms.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import signal
import sys
from collections.abc import Sequence
from datetime import datetime

from engine import names
from engine.patterns import S3_BUCKET, S3_ENDPOINT
from steps import common
from steps.common import Refused, StepError, optional

MiB = 1024 * 1024
MAX_MANIFEST_BYTES = 8 * MiB
SUMMARY_LIMIT = 1024  # bytes: an Argo output parameter shown in the UI
FINDINGS_LIMIT = 300  # characters of the one-line findings
ANALYSIS_SCHEMA = f"{names.DOMAIN}/analysis/v1"
REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SHA256 = re.compile(r"[0-9a-f]{64}")
S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/((?:[A-Za-z0-9._-]+/)+)manifest\.json")
REOPEN_ATTEMPTS = 3  # a ranged GET that broke mid-stream is opened again from where it was
SKIP_BY_READING = 256 * 1024  # a forward seek shorter than this reads on instead of a new GET


class Timeout(BaseException):
    """--timeout passed (SIGALRM). A BaseException: an analyzer that turns every Exception of a part
    into a line of its report cannot swallow it."""


def parse(argv: Sequence[str] | None):
    parser = common.Parser("analyze", __doc__.splitlines()[0])
    parser.flag("manifest-uri", manifest_uri)
    parser.flag("sha256", common.matching(SHA256, "the archive's SHA-256 copy reported (64 hex)"))
    parser.flag("bucket", common.matching(S3_BUCKET, "an S3 bucket name"))
    parser.flag("endpoint-url", lambda n, v: optional(common.matching(S3_ENDPOINT, "an http(s) URL (empty: AWS)"), n, v), default="")
    parser.flag("region", common.matching(REGION, "a region name"), default="us-east-1")
    parser.flag("workflow-name", common.dns_subdomain)
    parser.flag("workflow-namespace", common.dns_label)
    parser.flag("workflow-uid", common.matching(common.UID, "a workflow UID"))
    parser.flag("timeout", common.whole(1, 86400), default="600")
    # indicators (settings.analysis): searched in memory pages and changed files
    parser.add_argument("--string", action="append", default=[])
    parser.add_argument("--regex", action="append", default=[])
    parser.flag("yara", default="")
    args = parser.parse(argv)
    for text in [*args.string, *args.regex]:
        if not text or len(text) > 256 or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise Refused(f"string/regex: {text[:60]!r} must be 1 to 256 characters without control characters")
    bucket, folder = args.manifest_uri
    if bucket != args.bucket:
        raise Refused(f"manifest-uri: bucket {bucket} is not the evidence store's bucket {args.bucket}")
    args.folder = folder
    return args


def manifest_uri(name: str, value: object) -> tuple[str, str]:
    """s3://<bucket>/<folder>/manifest.json -> (bucket, folder with its trailing '/')."""
    text = common._scalar(name, value)
    found = S3_URI.fullmatch(text)
    if not found or any(part in (".", "..") for part in found.group(2).split("/")):
        raise Refused(f"{name}: {text[:160]!r} is not s3://<bucket>/<folder>/manifest.json without '.' or '..' segments")
    return found.group(1), found.group(2)


# --- S3 ------------------------------------------------------------------------------------------


def call(what: str, fn):
    from steps.copy import call as s3_call

    return s3_call(what, fn)


def read_small(client, bucket: str, key: str, limit: int, version_id: str | None = None) -> tuple[bytes, dict]:
    """A whole small object (a manifest, a record): its bytes and GetObject's answer."""
    request = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    answer = call(f"get s3://{bucket}/{key}", lambda: client.get_object(**request))
    if (answer.get("ContentLength") or 0) > limit:
        raise StepError(f"s3://{bucket}/{key} is {answer['ContentLength']} bytes, more than {limit}: not a manifest")
    try:
        data = answer["Body"].read(limit + 1)
    except Exception as exc:  # noqa: BLE001 - a broken stream is an S3 failure like any other
        from steps.copy import s3_error

        raise StepError(s3_error(exc, f"read s3://{bucket}/{key}")) from exc
    return data, answer


def missing(exc: StepError) -> bool:
    from steps.copy import error_code

    return error_code(exc.__cause__) in ("NoSuchKey", "404", "NotFound")


class S3Reader(common.SeekableReader):
    """One object version read as a seekable file: a ranged GET from the current position, kept
    open while reading goes forward, opened again after a seek (a short forward seek reads on).
    Pinned to `version_id`, else to `etag` (If-Match: 412 if the object was replaced)."""

    def __init__(self, client, bucket: str, key: str, size: int, version_id: str | None, etag: str | None) -> None:
        super().__init__(size)
        self.client, self.bucket, self.key = client, bucket, key
        self.pin = {"VersionId": version_id} if version_id else ({"IfMatch": etag} if etag else {})
        self.stream = None
        self.stream_at = 0
        self.requests = 0

    def _open(self) -> None:
        self.close_stream()
        where = f"s3://{self.bucket}/{self.key}"
        answer = call(
            f"get {where} from byte {self.position}",
            lambda: self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-", **self.pin
            ),
        )
        self.requests += 1
        self.stream, self.stream_at = answer["Body"], self.position

    def close_stream(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except Exception:  # noqa: BLE001 - an abandoned range
                pass
            self.stream = None

    def readinto(self, buffer) -> int:
        if self.position >= self.size or not len(buffer):
            return 0
        want = min(len(buffer), self.size - self.position)
        if self.stream is not None and 0 < self.position - self.stream_at <= SKIP_BY_READING:
            self._discard(self.position - self.stream_at)
        for attempt in range(1, REOPEN_ATTEMPTS + 1):
            if self.stream is None or self.stream_at != self.position:
                self._open()
            try:
                data = self.stream.read(want)
            except Exception as exc:  # noqa: BLE001 - a broken connection: open the range again
                self.close_stream()
                if attempt == REOPEN_ATTEMPTS or not common.is_transient(exc):
                    from steps.copy import s3_error

                    raise StepError(s3_error(exc, f"read s3://{self.bucket}/{self.key}")) from exc
                continue
            if not data:
                raise StepError(f"s3://{self.bucket}/{self.key} ended at byte {self.position} of {self.size}")
            buffer[: len(data)] = data
            self.position += len(data)
            self.stream_at = self.position
            return len(data)
        raise AssertionError("unreachable")

    def _discard(self, count: int) -> None:
        while count > 0 and self.stream is not None:
            try:
                data = self.stream.read(min(count, MiB))
            except Exception:  # noqa: BLE001 - opened again by readinto
                self.close_stream()
                return
            if not data:
                self.close_stream()
                return
            count -= len(data)
            self.stream_at += len(data)

    def close(self) -> None:
        self.close_stream()
        super().close()


def hash_object(client, bucket: str, key: str, version_id: str | None) -> tuple[str, int, str | None]:
    """(SHA-256 hex, size, ETag) of one object version, streamed (1 MiB at a time)."""
    request = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    answer = call(f"get s3://{bucket}/{key}", lambda: client.get_object(**request))
    digest, size = hashlib.sha256(), 0
    try:
        for chunk in answer["Body"].iter_chunks(MiB):
            digest.update(chunk)
            size += len(chunk)
    except Exception as exc:  # noqa: BLE001
        from steps.copy import s3_error

        raise StepError(s3_error(exc, f"read s3://{bucket}/{key}")) from exc
    return digest.hexdigest(), size, answer.get("ETag")


def lock_of(head: dict) -> dict:
    """The Object Lock and encryption of the archive, as PutObject arguments for what goes beside it."""
    extra: dict = {}
    if head.get("ObjectLockMode") and head.get("ObjectLockRetainUntilDate"):
        extra["ObjectLockMode"] = head["ObjectLockMode"]
        extra["ObjectLockRetainUntilDate"] = head["ObjectLockRetainUntilDate"]
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        extra["ObjectLockLegalHoldStatus"] = "ON"
    if head.get("ServerSideEncryption"):
        extra["ServerSideEncryption"] = head["ServerSideEncryption"]
        if head.get("SSEKMSKeyId"):
            extra["SSEKMSKeyId"] = head["SSEKMSKeyId"]
    return extra


def rfc3339(moment) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(moment, datetime) else None


def put_once(client, args, key: str, body: bytes, content_type: str, metadata: dict, protection: dict) -> dict:
    """Write `key` once, verified; an object this run wrote before (metadata workflow-uid) is kept
    as it is and described from its own bytes. {key, version_id, sha256, size, content_type}."""
    from steps.copy import b64, error_code

    digest = hashlib.sha256(body).digest()
    where = f"s3://{args.bucket}/{key}"
    request = {
        "Bucket": args.bucket, "Key": key, "Body": body, "ContentLength": len(body), "ContentType": content_type,
        "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(digest), "IfNoneMatch": "*",
        "Metadata": {**metadata, "sha256": digest.hex()}, **protection,
    }  # fmt: skip
    try:
        answer = call(f"put {where}", lambda: client.put_object(**request))
    except StepError as exc:
        if error_code(exc.__cause__) != "PreconditionFailed":
            raise
        head = call(f"head {where}", lambda: client.head_object(Bucket=args.bucket, Key=key))
        if (head.get("Metadata") or {}).get("workflow-uid") != args.workflow_uid:
            raise StepError(f"{where} already exists and is not this run's: evidence is written once, nothing was overwritten") from exc
        sha, size, _ = hash_object(client, args.bucket, key, head.get("VersionId"))
        common.log(f"analyze: {where} was written by an earlier attempt of this run: kept ({size} bytes, sha256 {sha})")
        return {"key": key, "version_id": head.get("VersionId"), "sha256": sha, "size": size, "content_type": content_type}
    version_id = answer.get("VersionId")
    check = {"Bucket": args.bucket, "Key": key, "ChecksumMode": "ENABLED", **({"VersionId": version_id} if version_id else {})}
    head = call(f"head {where}", lambda: client.head_object(**check))
    problems = []
    if head.get("ContentLength") != len(body):
        problems.append(f"size {head.get('ContentLength')} instead of {len(body)}")
    if head.get("ChecksumSHA256") not in (None, b64(digest)):
        problems.append(f"stored checksum {head.get('ChecksumSHA256')} instead of {b64(digest)}")
    if head.get("ChecksumSHA256") is None and hash_object(client, args.bucket, key, version_id)[0] != digest.hex():
        problems.append("the bytes read back differ")
    until, want = head.get("ObjectLockRetainUntilDate"), protection.get("ObjectLockRetainUntilDate")
    if protection.get("ObjectLockMode") and (
        head.get("ObjectLockMode") != protection["ObjectLockMode"]
        or not isinstance(until, datetime) or abs((until - want).total_seconds()) > 1  # S3 keeps whole seconds
    ):
        problems.append(f"Object Lock {head.get('ObjectLockMode')} until {head.get('ObjectLockRetainUntilDate')}, not the archive's")
    if problems:
        raise StepError(f"verification of {where} failed: {'; '.join(problems)}")
    return {"key": key, "version_id": version_id, "sha256": digest.hex(), "size": len(body), "content_type": content_type}


# --- the analysis --------------------------------------------------------------------------------


MAX_YARA_BYTES = 1024 * 1024


def read_yara(path: str) -> str | None:
    """The YARA rules at PATH (the mounted ConfigMap), or None without --yara."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YARA_BYTES + 1)
    except OSError as exc:
        raise Refused(f"yara: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_YARA_BYTES:
        raise Refused(f"yara: {path} is over {MAX_YARA_BYTES} bytes")
    return data.decode("utf-8", "replace")


def run_analyzer(reader, seconds: int, strings=(), regexes=(), yara_rules: str | None = None) -> tuple[dict, str]:
    """(report, summary) from the analyzer, within `seconds`; any failure is one StepError line."""
    try:
        from steps.forensics import analysis
        from steps.forensics.indicators import IndicatorError
    except ImportError as exc:
        raise StepError(f"the analyzer is not available in this image ({common.one_line(exc, 120)})") from None

    def expired(signum, frame):
        raise Timeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        report = analysis.analyze_archive(reader, strings=strings, regexes=regexes, yara_rules=yara_rules)
        text = analysis.summary(report)
    except IndicatorError as exc:
        raise Refused(f"indicators: {common.one_line(exc, 200)}; nothing analyzed, nothing written") from None
    except Timeout:
        raise StepError(f"the analysis did not finish within {seconds} s: stopped; the evidence is untouched, nothing written") from None
    except MemoryError:
        raise StepError("the analysis ran out of memory: stopped; the evidence is untouched, nothing written") from None
    except StepError:
        raise
    except Exception as exc:  # noqa: BLE001 - the analyzer's bug is this step's failure, in one line
        raise StepError(
            f"the analysis failed ({type(exc).__name__}: {common.one_line(exc, 160)}); the evidence is untouched, nothing written"
        ) from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if not isinstance(report, dict):
        raise StepError(f"the analyzer returned a {type(report).__name__}, not a report: nothing written")
    return report, str(text or "")


def findings_line(report: dict) -> str:
    """One line for the report step's Event and notifications."""
    rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}  # the most severe first: the line is cut at FINDINGS_LIMIT
    findings = sorted((f for f in report.get("findings") or [] if isinstance(f, dict)),
                      key=lambda f: rank.get(str(f.get("severity")).lower(), 4))
    if findings:
        line = f"analysis: {len(findings)} finding{'s' if len(findings) != 1 else ''}: " + ", ".join(
            common.one_line(f.get("message") or f.get("code") or "?", 80) for f in findings
        )
    else:
        line = "analysis: no findings"
    errors = report.get("errors") or []
    if errors:
        line += f" ({len(errors)} part{'s' if len(errors) != 1 else ''} unreadable)"
    return line if len(line) <= FINDINGS_LIMIT else line[: FINDINGS_LIMIT - 1] + "…"


def clip(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """At most `limit` UTF-8 bytes, cut at a character boundary."""
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[: limit - 3].decode("utf-8", "ignore") + "…"


# --- the step ------------------------------------------------------------------------------------


def write_outputs(args, record: dict, findings: str, summary: str) -> None:
    analysis = next(o for o in record["objects"] if o["role"] == "analysis")
    common.write_output(args.outputs_dir, "analysis-uri", f"s3://{args.bucket}/{analysis['key']}")
    common.write_output(args.outputs_dir, "analysis-sha256", analysis["sha256"])
    common.write_output(args.outputs_dir, "summary", summary)
    common.write_output(args.outputs_dir, "findings", findings)
    common.write_output(args.outputs_dir, "custody-uri", f"s3://{args.bucket}/{record['record']['key']}")


def earlier_record(client, args, key: str) -> bool:
    """A retry of this run after the custody record was written: repeat its outputs."""
    try:
        data, _ = read_small(client, args.bucket, key, MAX_MANIFEST_BYTES)
    except StepError as exc:
        if missing(exc):
            return False
        raise
    try:
        record = json.loads(data)
    except ValueError:
        raise StepError(f"s3://{args.bucket}/{key} exists and is not JSON: nothing overwritten") from None
    if (record.get("workflow") or {}).get("uid") != args.workflow_uid:
        raise StepError(f"s3://{args.bucket}/{key} exists and is another run's custody record: nothing overwritten")
    summary = next((o for o in record.get("objects") or [] if o.get("role") == "summary"), None)
    text = read_small(client, args.bucket, summary["key"], SUMMARY_LIMIT * 4, summary.get("version_id"))[0] if summary else b""
    common.log(f"analyze: s3://{args.bucket}/{key} was written by an earlier attempt of this run: outputs repeated")
    write_outputs(args, record, record.get("findings") or "", text.decode("utf-8", "replace"))
    return True


def read_manifest(client, args) -> tuple[dict, dict]:
    """(manifest, {key, version_id, sha256 of its bytes}); refused unless it is this run's and names this archive."""
    key = args.folder + "manifest.json"
    where = f"s3://{args.bucket}/{key}"
    data, answer = read_small(client, args.bucket, key, MAX_MANIFEST_BYTES)
    sha = hashlib.sha256(data).hexdigest()
    stored = (answer.get("Metadata") or {}).get("sha256")
    if stored and stored != sha:
        raise Refused(f"manifest.json of this run hashes to {sha}, not the sha256 {stored[:64]} it was written with: not analyzed")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise Refused(f"{where} is not JSON: not analyzed") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != names.EVIDENCE_MANIFEST_SCHEMA:
        raise Refused(f"{where} is not an evidence manifest ({names.EVIDENCE_MANIFEST_SCHEMA}): not analyzed")
    uid = (manifest.get("workflow") or {}).get("uid")
    if uid != args.workflow_uid:
        raise Refused(f"{where} is the manifest of workflow run {str(uid)[:40]}, not of this one ({args.workflow_uid}): not analyzed")
    evidence, checkpoint = manifest.get("evidence") or {}, manifest.get("checkpoint") or {}
    if evidence.get("key") != args.folder + "checkpoint.tar" or evidence.get("bucket") != args.bucket:
        raise Refused(f"{where} names {str(evidence.get('uri'))[:200]}, not the checkpoint.tar beside it: not analyzed")
    if checkpoint.get("sha256") != args.sha256:
        raise Refused(f"{where} says sha256 {str(checkpoint.get('sha256'))[:64]}, copy reported {args.sha256}: not analyzed")
    if not isinstance(checkpoint.get("size"), int):
        raise Refused(f"{where} has no archive size: not analyzed")
    return manifest, {"key": key, "version_id": answer.get("VersionId"), "sha256": sha}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from steps.copy import s3_client

    yara_rules = read_yara(args.yara)
    client = s3_client(args)
    record_key = args.folder + names.ANALYSIS_CUSTODY_OBJECT
    if earlier_record(client, args, record_key):
        return 0
    manifest, manifest_ref = read_manifest(client, args)
    evidence, size = manifest["evidence"], manifest["checkpoint"]["size"]
    key, version_id = evidence["key"], evidence.get("version_id")
    uri = f"s3://{args.bucket}/{key}"

    # 1. verify, before anything reads the archive's content
    sha, got_size, etag = hash_object(client, args.bucket, key, version_id)
    if (sha, got_size) != (args.sha256, size):
        raise Refused(
            f"checkpoint.tar{' version ' + version_id if version_id else ''} does not match its manifest: sha256 {sha} "
            f"({got_size} bytes), the manifest says {args.sha256} ({size} bytes): refused, not analyzed, nothing written"
        )
    common.log(f"analyze: {uri} verified against {manifest_ref['key']}: sha256 {sha}, {size} bytes")
    request = {"Bucket": args.bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    head = call(f"head {uri}", lambda: client.head_object(**request))
    protection = lock_of(head)

    # 2. analyze the version just verified
    reader = S3Reader(client, args.bucket, key, size, version_id, None if version_id else etag)
    try:
        report, summary_text = run_analyzer(io.BufferedReader(reader, MiB), args.timeout, args.string, args.regex, yara_rules)
    finally:
        reader.close()
    findings = findings_line(report)
    summary = clip(summary_text.strip() + "\n" if summary_text.strip() else findings + "\n")
    common.log(f"analyze: {findings} ({reader.requests} ranged GETs)")

    # 3. write beside the evidence, under the archive's lock, then the custody record
    metadata = {
        "evidence-sha256": sha,
        "workflow": f"{args.workflow_namespace}/{args.workflow_name}",
        "workflow-uid": args.workflow_uid,
    }
    source = {"uri": uri, "key": key, "version_id": version_id, "sha256": sha, "size": size}
    document = {
        "schema": ANALYSIS_SCHEMA,
        "created": common.now_rfc3339(),
        "evidence": source,
        "manifest": manifest_ref,
        "findings": findings,
        "report": report,
    }
    body = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")
    stored = [
        {**put_once(client, args, args.folder + names.ANALYSIS_OBJECT, body, "application/json", metadata, protection), "role": "analysis"},
        {**put_once(client, args, args.folder + names.ANALYSIS_SUMMARY_OBJECT, summary.encode("utf-8"),
                    "text/plain; charset=utf-8", metadata, protection), "role": "summary"},
    ]  # fmt: skip
    record = {
        "schema": names.CUSTODY_SCHEMA,
        "created": common.now_rfc3339(),
        "step": "analyze",
        "record": {"key": record_key},
        "follows": manifest_ref,
        "verified": [{**source, "result": "sha256 and size match the manifest"}],
        "objects": stored,
        "object_lock": {
            "mode": protection.get("ObjectLockMode"),
            "retain_until": rfc3339(protection.get("ObjectLockRetainUntilDate")),
            "legal_hold": protection.get("ObjectLockLegalHoldStatus", "OFF"),
        } if protection.get("ObjectLockMode") else None,
        "findings": findings,
        "workflow": {"namespace": args.workflow_namespace, "name": args.workflow_name, "uid": args.workflow_uid},
    }  # fmt: skip
    from steps.copy import versions

    record["versions"] = versions()
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    written = put_once(client, args, record_key, data, "application/json", metadata, protection)
    common.log(f"analyze: custody record s3://{args.bucket}/{record_key} version {written['version_id']}, sha256 {written['sha256']}")
    write_outputs(args, record, findings, summary)
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
