"""`falco-response evidence list` and `evidence get`: the responses in the evidence bucket, and one
response's evidence downloaded and verified again.

A response's evidence is one folder, `<prefix>/<namespace>/<pod>/<container>/<alert time>-<workflow>/<workflow uid>/`
(steps/copy.py object_keys). What it holds is listed by its custody records: copy's manifest.json
(the archive, its version and SHA-256, and the bundle manifest it names) and every other JSON
object there with a falco-response.io schema and an `objects` or `files` list of {key, sha256[,
version_id, size]} (analyze's custody-analyze.json, verify's bundle/manifest.json). `get` downloads each listed object at the version its record names, hashes
it, and compares; a record itself is checked against the SHA-256 it was written with (its S3
metadata, and for manifest.json also the hash a later record says it followed). Objects in the folder
that no record lists, and versions stacked on top of listed ones, are shown and do not count as
evidence. Object Lock state (mode, retain-until, legal hold) is shown per object.

Connection: bucket, region, prefix and endpoint from response.yaml's `settings.evidence`
(--policy-file), overridden by --bucket, --region, --prefix, --endpoint-url or $AWS_ENDPOINT_URL;
credentials from botocore's usual chain ($AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY, a profile, ...).
S3 permissions: s3:ListBucket and s3:ListBucketVersions, s3:GetObject, s3:GetObjectVersion,
s3:GetObjectRetention and s3:GetObjectLegalHold (the lock state), kms:Decrypt with aws:kms.
Exit status: 0 all verified, 1 any mismatch or missing object (one line saying which), 2 bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from engine import names
from engine.patterns import S3_BUCKET, S3_ENDPOINT, S3_PREFIX

MiB = 1024 * 1024
MAX_RECORD_BYTES = 8 * MiB
RUN = re.compile(r"(\d{8}T\d{6}Z)-([a-z0-9][a-z0-9.-]*)")
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHA256 = re.compile(r"[0-9a-f]{64}")
FOLDER_DEPTH = 5  # namespace, pod, container, <alert time>-<workflow>, <workflow uid>


class Failed(Exception):
    """Evidence that does not verify (exit 1)."""


class BadInput(Exception):
    """A bad flag or response name (exit 2)."""


# --- connection ----------------------------------------------------------------------------------


@dataclass
class Store:
    client: object
    bucket: str
    prefix: str


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-file", default="response.yaml", help="where settings.evidence is read (default: response.yaml)")
    parser.add_argument("--bucket", default=None, help="the evidence bucket (default: settings.evidence.bucket)")
    parser.add_argument("--prefix", default=None, help="the key prefix (default: settings.evidence.prefix)")
    parser.add_argument("--region", default=None, help="the bucket's region (default: settings.evidence.region)")
    parser.add_argument("--endpoint-url", default=None,
                        help="an S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else settings.evidence.endpoint, else AWS)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def connect(args: argparse.Namespace) -> Store:
    """The evidence store of response.yaml (when the file exists), with the flags and $AWS_ENDPOINT_URL over it."""
    bucket, prefix, region, endpoint = "falco-evidence", "falco-response", "us-east-1", ""
    if Path(args.policy_file).exists():
        from engine.config import ConfigError, load

        try:
            evidence = load(args.policy_file).settings.evidence
        except ConfigError as exc:
            raise BadInput(str(exc)) from None
        bucket, prefix, region, endpoint = evidence.bucket, evidence.prefix, evidence.region, evidence.endpoint
    elif args.policy_file != "response.yaml":
        raise BadInput(f"--policy-file {args.policy_file}: no such file")
    bucket = args.bucket or bucket
    prefix = (args.prefix if args.prefix is not None else prefix).strip("/")
    region = args.region or region
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or endpoint
    if not S3_BUCKET.fullmatch(bucket):
        raise BadInput(f"--bucket {bucket[:80]!r} is not an S3 bucket name")
    if prefix and (not S3_PREFIX.fullmatch(prefix) or any(p in (".", "..") for p in prefix.split("/"))):
        raise BadInput(f"--prefix {prefix[:80]!r} is not '/'-separated [A-Za-z0-9._-] segments")
    if endpoint and not S3_ENDPOINT.fullmatch(endpoint):
        raise BadInput(f"--endpoint-url {endpoint[:80]!r} is not an http(s) URL")
    import botocore.session
    from botocore.config import Config

    config = Config(
        region_name=region, retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=120,
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
        s3={"addressing_style": "path" if endpoint else "auto"},
    )  # fmt: skip
    client = botocore.session.get_session().create_client("s3", region_name=region, endpoint_url=endpoint or None, config=config)
    return Store(client, bucket, prefix)


def s3_error(exc: BaseException, what: str) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode", "")
        return f"{what}: S3 answered {status} {error.get('Code', '')}: {error.get('Message', '')}".strip()
    return f"{what}: {type(exc).__name__}: {exc}"


def s3(what: str, fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every S3/transport/credential failure is one line
        raise Failed(s3_error(exc, what)) from exc


# --- listing -------------------------------------------------------------------------------------


@dataclass
class Response:
    folder: str  # with its trailing '/'
    namespace: str
    pod: str
    container: str
    time: str
    workflow: str
    uid: str
    keys: list[str] = field(default_factory=list)

    @property
    def pipeline(self) -> str:
        parsed = names.parse_workflow_name(self.workflow)
        return names.SEVERITY_ORDER[parsed[1]] if parsed else "unknown"


def response_of(store: Store, key: str) -> Response | None:
    """The response folder a key belongs to, from the key alone; None for a key outside the layout."""
    rest = key[len(store.prefix) + 1:] if store.prefix else key
    if store.prefix and not key.startswith(store.prefix + "/"):
        return None
    parts = rest.split("/")
    if len(parts) <= FOLDER_DEPTH:
        return None
    namespace, pod, container, run, uid = parts[:FOLDER_DEPTH]
    found = RUN.fullmatch(run)
    if not found or not UID.fullmatch(uid):
        return None
    stamp = found.group(1)
    when = f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
    folder = "/".join(p for p in (store.prefix, namespace, pod, container, run, uid) if p) + "/"
    return Response(folder, namespace, pod, container, when, found.group(2), uid)


def responses(store: Store, within: str | None = None) -> list[Response]:
    """Every response folder under the prefix (or `within`), oldest first."""
    paginator = store.client.get_paginator("list_objects_v2")
    prefix = within or (store.prefix + "/" if store.prefix else "")
    found: dict[str, Response] = {}
    pages = paginator.paginate(Bucket=store.bucket, Prefix=prefix)
    for page in s3(f"list s3://{store.bucket}/{prefix}", lambda: list(pages)):
        for item in page.get("Contents") or []:
            response = response_of(store, item["Key"])
            if response:
                found.setdefault(response.folder, response).keys.append(item["Key"])
    return sorted(found.values(), key=lambda r: (r.time, r.folder))


def read_json(store: Store, key: str, version_id: str | None = None) -> tuple[dict | None, bytes, dict]:
    """(document or None, bytes, GetObject answer) of a small JSON object."""
    request = {"Bucket": store.bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    answer = s3(f"get s3://{store.bucket}/{key}", lambda: store.client.get_object(**request))
    if (answer.get("ContentLength") or 0) > MAX_RECORD_BYTES:
        answer["Body"].close()
        return None, b"", answer
    data = s3(f"read s3://{store.bucket}/{key}", lambda: answer["Body"].read())
    try:
        document = json.loads(data)
    except ValueError:
        return None, data, answer
    return (document if isinstance(document, dict) else None), data, answer


def summary_of(store: Store, response: Response) -> dict:
    """One `evidence list` row: what the folder's records say about the response."""
    row = {
        "time": response.time, "namespace": response.namespace, "pod": response.pod, "container": response.container,
        "rule": "", "policy": "", "pipeline": response.pipeline, "workflow": response.workflow, "uid": response.uid,
        "uri": f"s3://{store.bucket}/{response.folder}",
    }  # fmt: skip
    held = []
    if response.folder + "manifest.json" in response.keys:
        manifest, _, _ = read_json(store, response.folder + "manifest.json")
        manifest = manifest or {}
        row["rule"], row["policy"] = str(manifest.get("rule") or ""), str(manifest.get("policy") or "")
        held.append("checkpoint" if response.folder + "checkpoint.tar" in response.keys else "manifest without archive")
    elif response.folder + "checkpoint.tar" in response.keys:
        held.append("checkpoint without manifest")
    if response.folder + names.ANALYSIS_CUSTODY_OBJECT in response.keys:
        record, _, _ = read_json(store, response.folder + names.ANALYSIS_CUSTODY_OBJECT)
        line = str((record or {}).get("findings") or "analysis")
        held.append(line.split(":", 2)[1].strip() if line.startswith("analysis:") and line.count(":") >= 1 else line)
    others = [k for k in response.keys if k.endswith(".json") and k not in (
        response.folder + "manifest.json", response.folder + names.ANALYSIS_CUSTODY_OBJECT, response.folder + names.ANALYSIS_OBJECT)]
    for key in others:  # another step's custody record (e.g. an evidence bundle): its rule and policy when copy wrote none
        record, _, _ = read_json(store, key)
        if is_record(record):
            path = PurePosixPath(key)
            held.append(path.parent.name if path.stem == "manifest" else path.stem)
            row["rule"] = row["rule"] or str(record.get("rule") or "")
            row["policy"] = row["policy"] or str(record.get("policy") or "")
    row["result"] = ", ".join(held) or "no custody record"
    return row


# --- getting one response ------------------------------------------------------------------------


@dataclass
class Entry:
    key: str
    sha256: str
    version_id: str | None
    size: int | None
    listed_by: str


def listed(record_key: str, record: dict) -> list[Entry]:
    """What one custody record says the folder holds."""
    out = []
    if record.get("schema") == names.EVIDENCE_MANIFEST_SCHEMA:
        evidence, checkpoint = record.get("evidence") or {}, record.get("checkpoint") or {}
        out.append(Entry(str(evidence.get("key")), str(checkpoint.get("sha256")), evidence.get("version_id"),
                         checkpoint.get("size"), record_key))
        bundle = record.get("bundle") or {}  # verify's evidence bundle, named by its manifest's URI and SHA-256
        if isinstance(bundle, dict) and isinstance(bundle.get("manifest_uri"), str):
            key = bundle["manifest_uri"].partition("//")[2].partition("/")[2]
            out.append(Entry(key, str(bundle.get("manifest_sha256")), None, None, record_key))
    for item in [*(record.get("objects") or []), *(record.get("files") or [])]:
        if isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("sha256"), str):
            size = item.get("size")
            out.append(Entry(item["key"], item["sha256"], item.get("version_id"), size if isinstance(size, int) else None, record_key))
    return out


def is_record(record: dict | None) -> bool:
    if not record:
        return False
    schema = str(record.get("schema", ""))
    return schema == names.EVIDENCE_MANIFEST_SCHEMA or (
        schema.startswith(names.DOMAIN + "/") and any(isinstance(record.get(k), list) for k in ("objects", "files")))


def resolve(store: Store, name: str) -> Response:
    """RESPONSE: s3://bucket/<folder or a key in it>, a folder key, a workflow UID, or a workflow name."""
    if name.startswith("s3://"):
        bucket, _, key = name[5:].partition("/")
        if bucket != store.bucket:
            if not S3_BUCKET.fullmatch(bucket):
                raise BadInput(f"{name[:120]!r}: not an s3://<bucket>/<key> URI")
            store.bucket = bucket
        name = key
    if "/" in name:
        found = response_of(store, name.rstrip("/") + "/x")  # the folder itself, or any key in it
        if found is None:
            raise BadInput(f"{name[:160]!r} is not under <prefix>/<namespace>/<pod>/<container>/<time>-<workflow>/<uid>/ (prefix {store.prefix!r})")
        matches = responses(store, found.folder)
    else:
        matches = [r for r in responses(store) if name in (r.uid, r.workflow)]
    if not matches:
        raise Failed(f"no response {name[:160]!r} in s3://{store.bucket}/{store.prefix}")
    if len(matches) > 1:
        raise BadInput(f"{len(matches)} responses of workflow {name}: name one by its UID ({', '.join(r.uid for r in matches[:5])})")
    return matches[0]


def lock_state(head: dict) -> dict:
    until = head.get("ObjectLockRetainUntilDate")
    return {
        "mode": head.get("ObjectLockMode"),
        "retain_until": until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None,
        "legal_hold": head.get("ObjectLockLegalHoldStatus") or "OFF",
    }


def fetch(store: Store, key: str, version_id: str | None, out: Path | None, folder: str) -> dict:
    """Download one object version (to `out` when given), hashing it; its head and lock state."""
    request = {"Bucket": store.bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
    where = f"s3://{store.bucket}/{key}" + (f" version {version_id}" if version_id else "")
    head = s3(f"head {where}", lambda: store.client.head_object(**request))
    answer = s3(f"get {where}", lambda: store.client.get_object(**request))
    target = None
    if out is not None:
        relative = PurePosixPath(key[len(folder):])
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise Failed(f"{key[:200]!r}: not a plain path under the response folder; not written")
        target = out.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    handle = open(target, "wb") if target else None
    try:
        for chunk in answer["Body"].iter_chunks(MiB):
            digest.update(chunk)
            size += len(chunk)
            if handle:
                handle.write(chunk)
    except Failed:
        raise
    except Exception as exc:  # noqa: BLE001
        raise Failed(s3_error(exc, f"read {where}")) from exc
    finally:
        if handle:
            handle.close()
    return {"sha256": digest.hexdigest(), "size": size, "version_id": head.get("VersionId") or version_id,
            "metadata_sha256": (head.get("Metadata") or {}).get("sha256"), "lock": lock_state(head),
            "path": str(target) if target else None}


def get(store: Store, name: str, out: Path | None) -> dict:
    """Download and verify every object the response's custody records list. Raises nothing for a
    mismatch: the result says `ok` false and `problems`."""
    response = resolve(store, name)
    folder = response.folder
    pages = store.client.get_paginator("list_object_versions").paginate(Bucket=store.bucket, Prefix=folder)
    try:
        versions = [v for page in pages for v in page.get("Versions") or []]
    except Exception as exc:  # noqa: BLE001 - without ListBucketVersions: current objects only
        if "AccessDenied" not in str(exc):
            raise Failed(s3_error(exc, f"list versions s3://{store.bucket}/{folder}")) from exc
        versions = [{"Key": k, "IsLatest": True} for k in response.keys]
    current = sorted({v["Key"] for v in versions if v.get("IsLatest")})
    stacked = {v["Key"] for v in versions if not v.get("IsLatest")}

    records: dict[str, dict] = {}
    for key in current:
        if key.endswith(".json"):
            document, data, answer = read_json(store, key)
            if is_record(document):
                records[key] = {"document": document, "sha256": hashlib.sha256(data).hexdigest(),
                                "version_id": answer.get("VersionId"), "metadata_sha256": (answer.get("Metadata") or {}).get("sha256")}
    if not records:
        raise Failed(f"s3://{store.bucket}/{folder}: no manifest or custody record, nothing to verify against")

    problems: list[str] = []
    entries: list[Entry] = []
    for key, record in records.items():
        for entry in listed(key, record["document"]):
            if not entry.key.startswith(folder) or not SHA256.fullmatch(entry.sha256):
                problems.append(f"{key} lists {entry.key[:120]!r} with sha256 {entry.sha256[:64]!r}: not an object of this response")
                continue
            entries.append(entry)
        follows = record["document"].get("follows") or {}
        if isinstance(follows, dict) and follows.get("key") in records and follows.get("sha256"):
            if records[follows["key"]]["sha256"] != follows["sha256"] or (
                    follows.get("version_id") and follows["version_id"] != records[follows["key"]]["version_id"]):
                problems.append(f"{follows['key']} is not the one {key} followed (sha256 {follows['sha256']})")
    for key in sorted(set(records) & stacked):  # written once (If-None-Match): a second version is not ours
        problems.append(f"{key[len(folder):]}: more than one version; custody records are written once, the current one was read")
    for key, record in records.items():  # a record against the SHA-256 it was written with
        entries.append(Entry(key, record["metadata_sha256"] or record["sha256"], record["version_id"], None, "its S3 metadata"))

    # One download per object version; every record's expectation of it is checked.
    grouped: dict[tuple[str, str | None], list[Entry]] = {}
    for entry in entries:
        pinned = entry.version_id or next((e.version_id for e in entries if e.key == entry.key and e.version_id), None)
        grouped.setdefault((entry.key, pinned), []).append(entry)
    objects = []
    seen: set[str] = set()
    for (key, version_id), expected in sorted(grouped.items(), key=lambda item: item[0][0]):
        got = fetch(store, key, version_id, out, folder)
        seen.add(key)
        verdicts = []
        for entry in expected:
            verdict = "ok"
            if got["sha256"] != entry.sha256:
                verdict = f"sha256 {got['sha256']} instead of {entry.sha256}"
            elif entry.size is not None and got["size"] != entry.size:
                verdict = f"{got['size']} bytes instead of {entry.size}"
            elif got["metadata_sha256"] and got["metadata_sha256"] != got["sha256"]:
                verdict = f"sha256 {got['sha256']}, its metadata says {got['metadata_sha256']}"
            if verdict != "ok":
                by = entry.listed_by[len(folder):] if entry.listed_by.startswith(folder) else entry.listed_by
                verdicts.append(verdict)
                problems.append(f"{key[len(folder):]}: {verdict} (listed by {by})")
        objects.append({"key": key, "name": key[len(folder):], "listed_by": sorted({e.listed_by for e in expected}),
                        "expected_sha256": sorted({e.sha256 for e in expected}), **got, "verified": not verdicts,
                        "verdict": "; ".join(verdicts) or "ok", "newer_versions": key in stacked and version_id is not None})
    unlisted = [k for k in current if k not in seen]
    return {
        "response": f"s3://{store.bucket}/{folder}", "folder": folder, "namespace": response.namespace, "pod": response.pod,
        "container": response.container, "time": response.time, "workflow": response.workflow, "uid": response.uid,
        "pipeline": response.pipeline, "records": sorted(records), "objects": objects, "unlisted": unlisted,
        "out": str(out) if out else None, "ok": not problems, "problems": problems,
    }  # fmt: skip


# --- the commands --------------------------------------------------------------------------------


def _attempt(work):
    """(work's result, None), or (None, exit status) after the one-line error: 2 bad input, 1 failed."""
    try:
        return work(), None
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 2
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None, 1


def run_list(args: argparse.Namespace) -> int:
    def work():
        store = connect(args)
        return store, [summary_of(store, r) for r in responses(store)]

    done, status = _attempt(work)
    if status is not None:
        return status
    store, rows = done
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print(f"no responses in s3://{store.bucket}/{store.prefix}")
        return 0
    print(f"{'TIME':<20}  {'NAMESPACE/POD':<32}  {'RULE':<32}  {'POLICY':<22}  {'PIPELINE':<25}  RESULT")
    for row in rows:
        print(f"{row['time']:<20}  {row['namespace'] + '/' + row['pod']:<32}  {row['rule'][:32]:<32}  {row['policy'][:22]:<22}  "
              f"{row['pipeline']:<25}  {row['result']}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    def work():
        store = connect(args)
        out = Path(args.out) if args.out else None
        if out is not None and out.exists() and not out.is_dir():
            raise BadInput(f"--out {args.out}: not a directory")
        return get(store, args.response, out)

    result, status = _attempt(work)
    if status is not None:
        return status
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(f"response  {result['response']}")
        print(f"          {result['namespace']}/{result['pod']}/{result['container']} at {result['time']}, workflow "
              f"{result['workflow']} ({result['pipeline']}), uid {result['uid']}")
        print(f"records   {', '.join(k[len(result['folder']):] for k in result['records'])}")
        width = max((len(item["name"]) for item in result["objects"]), default=0)
        for item in result["objects"]:
            lock = item["lock"]
            state = f"{lock['mode']} until {lock['retain_until']}" if lock["mode"] else "no retention"
            print(f"  {'ok      ' if item['verified'] else 'MISMATCH'}  {item['name']:<{width}}  {item['size']:>10} B  sha256 {item['sha256']}  "
                  f"lock {state}, legal hold {lock['legal_hold']}" + ("  (newer versions exist: not evidence)" if item["newer_versions"] else ""))
        for key in result["unlisted"]:
            print(f"  unlisted  {key[len(result['folder']):]}: in no custody record, not evidence")
        if result["out"]:
            print(f"written to {result['out']}")
    if not result["ok"]:
        print(f"error: evidence does not verify: {result['problems'][0]}" + (
            f" (and {len(result['problems']) - 1} more)" if len(result["problems"]) > 1 else ""), file=sys.stderr)
        return 1
    return 0


def register(evidence_subparsers) -> None:
    """`list` and `get` under `falco-response evidence`."""
    p = evidence_subparsers.add_parser("list", help="the responses in the evidence bucket: time, namespace/pod, rule, policy, pipeline, result")
    add_connection_flags(p)
    p.set_defaults(func=run_list)
    p = evidence_subparsers.add_parser("get", help="download one response's evidence and verify every SHA-256 against its custody records")
    p.add_argument("response", help="s3://<bucket>/<response folder or a key in it>, the folder key, a workflow UID or a workflow name")
    p.add_argument("--out", default=None, help="write the objects here (kept with their names under the response folder)")
    add_connection_flags(p)
    p.set_defaults(func=run_get)
