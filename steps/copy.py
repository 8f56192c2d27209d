"""copy: move a checkpoint archive from the node into S3 as evidence, verified, with its manifest.

Runs on the node that holds the archive, with the kubelet's checkpoint directory mounted at
--checkpoint-dir. It opens only <checkpoint-dir>/<file name the kubelet reported>, and only when
that name is the kubelet's `checkpoint-<pod>_<namespace>-<container>-<time>.tar` for the pod and
container of the alert. Then it reads what the archive says it is: config.dump (the full
container id), spec.dump's annotations (the pod UID: containerd's io.kubernetes.cri.sandbox-uid,
CRI-O's io.kubernetes.pod.uid and io.kubernetes.cri-o.ContainerID) and containerd's status.dump
(id, the kubelet's io.kubernetes.pod.uid label), located by one pass over the tar headers (the
memory pages are skipped, not read). Unless they name the container verify checked
(--container-id, --pod-uid), nothing is uploaded: the container restarted or the pod was replaced
in between, and the archive stays on the node for a responder. Then it streams the file to S3,
reading it once: a single PutObject up to --part-size bytes, else a multipart upload whose parts
go up to 4 at a time and at most 32 MiB of the file in memory (a part is read only when a slot is
free), the whole file's SHA-256 computed as the parts are read. Every request carries the SHA-256
of its body (`x-amz-checksum-sha256`, which S3 verifies: BadDigest; the signature covers that
header, so the body is not hashed again for SigV4). The whole file's SHA-256 goes into the
manifest and the step's outputs; into the object's metadata (`x-amz-meta-sha256`) only for a
single PUT: a multipart upload sets metadata at CreateMultipartUpload, before the last part is
read, and hashing the file first would read it twice. The multipart object carries S3's composite
checksum (SHA-256 of the parts' SHA-256s) instead. The size and modification time must not move
while the file is read. Object Lock (mode + retain-until) and server-side encryption apply when
configured.
Evidence is written once: every PutObject and CompleteMultipartUpload says `If-None-Match: *`, so
S3 refuses to replace an object (412 PreconditionFailed); a key found holding this very archive
(an earlier attempt of this workflow run stored it) is kept, anything else fails the step. A 409
ConditionalRequestConflict (a delete of the key raced the write) is retried as S3 says: the PUT
again, a multipart upload from its start.

After the upload it asks S3 with HeadObject (ChecksumMode=ENABLED), without reading the file
again, and checks the size, the stored SHA-256 (the full-object checksum for a single PUT, the
composite checksum of the parts' checksums, "<base64>-<parts>", for a multipart upload), the
metadata, the lock and the encryption. Then it writes `manifest.json` next to it (same lock and encryption, verified the
same way) and only then deletes the archive from the node. On any failure the archive stays
where it is and an unfinished multipart upload is aborted.

Object keys come from the alert and the workflow run, never from the kubelet's file name; the
workflow's UID makes them unique per run (a replayed alert gets the same workflow name, not the
same UID):
  <prefix>/<namespace>/<pod>/<container>/<alert time YYYYMMDDTHHMMSSZ>-<workflow name>/<workflow uid>/checkpoint.tar
  <prefix>/<namespace>/<pod>/<container>/<alert time YYYYMMDDTHHMMSSZ>-<workflow name>/<workflow uid>/manifest.json

Outputs: evidence-uri, manifest-uri, sha256, size, version-id.

With --bundle-manifest-uri and --bundle-sha256 (verify's evidence bundle, steps/bundle.py) the
manifest's `bundle` names that bundle's manifest and its SHA-256: the custody record covers both.

RBAC: none in Kubernetes (no service account token). The pod runs as root (the archive is 0600
root in a 0700 directory) with a hostPath mount of the checkpoint directory. S3 credentials come
only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and optional AWS_SESSION_TOKEN); the S3
policy needs s3:PutObject, s3:GetObject and s3:GetObjectVersion (HeadObject, and reading the
manifest back when a retry finds the archive already moved), s3:AbortMultipartUpload,
s3:PutObjectRetention with Object Lock, kms:GenerateDataKey with aws:kms, and optionally
s3:ListBucketMultipartUploads (to abort uploads a killed attempt left behind).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import signal
import stat
import sys
import tarfile
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath

from engine import names
from engine.patterns import S3_BUCKET, S3_ENDPOINT, S3_PREFIX
from steps import common
from steps.common import Refused, StepError, no_control_characters, optional, rule_name
from steps.common import alert_time as check_alert_time

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
MAX_ALERT_BYTES = 1024 * 1024
MANIFEST_SCHEMA = names.EVIDENCE_MANIFEST_SCHEMA  # what analyze and `evidence get` check
METADATA_MEMBERS = ("config.dump", "spec.dump", "status.dump")  # what names the container (module docstring)
MAX_METADATA_BYTES = 4 * MiB  # a spec.dump with many env vars is ~100 KiB
MAX_MEMBERS = 1_000_000
CONFLICT_ATTEMPTS = 3  # 409 ConditionalRequestConflict: S3 says try again
MAX_PARTS_IN_FLIGHT = 4  # parts sent at once
PARTS_MEMORY = 32 * MiB  # at most this much of the archive in memory (at least one part)

# The kubelet names an archive checkpoint-<pod>_<namespace>-<container>-<time.RFC3339>.tar.
KUBELET_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})"
REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KMS_KEY = re.compile(r"^[A-Za-z0-9:/_+=.@-]{1,2048}$")
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,1023}$")
IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


# --- input ---------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None):
    parser = common.Parser("copy", __doc__.splitlines()[0])
    for flag in (
        "archive", "checkpoint-dir", "namespace", "pod", "container", "container-id", "pod-uid", "node",
        "rule", "priority", "alert-time", "policy", "workflow-name", "workflow-namespace", "workflow-uid", "bucket",
    ):  # fmt: skip
        parser.add_argument(f"--{flag}", required=True)
    for flag in (
        "image", "image-id", "endpoint-url", "prefix", "object-lock-mode", "sse", "sse-kms-key-id",
        "bundle-manifest-uri", "bundle-sha256",
    ):  # fmt: skip
        parser.add_argument(f"--{flag}", default="")
    parser.add_argument("--alert", default=None)
    parser.add_argument("--alert-b64", default=None)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--object-lock-days", default="0")
    parser.add_argument("--part-size", default=str(DEFAULT_PART_SIZE))
    args = parser.parse_args(argv)
    no_control_characters(args, exempt=("alert", "alert_b64"))

    args.namespace = common.dns_label("namespace", args.namespace)
    args.pod = common.dns_subdomain("pod", args.pod)
    args.container = common.dns_label("container", args.container)
    args.container_id = common.matching(common.FULL_CONTAINER_ID, "the full 64-hex container id verify resolved")(
        "container-id", args.container_id
    )
    args.node = common.dns_subdomain("node", args.node)
    args.pod_uid = common.matching(common.UID, "the pod UID verify read")("pod-uid", args.pod_uid)
    args.image = optional(common.matching(IMAGE, "an image reference"), "image", args.image)
    args.image_id = optional(common.matching(IMAGE, "an image id"), "image-id", args.image_id)
    args.rule = rule_name("rule", args.rule)
    args.priority = common.priority("priority", args.priority)
    # Empty for a response submitted by hand without an alert (verify skips max_alert_age then):
    # the key takes the time of the copy instead.
    args.alert_time = optional(check_alert_time, "alert-time", args.alert_time)
    args.alert_stamp = (
        alert_stamp(args.alert_time) if args.alert_time else datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    )
    args.policy = common.dns_label("policy", args.policy)
    args.workflow_name = common.dns_subdomain("workflow-name", args.workflow_name)
    args.workflow_namespace = common.dns_label("workflow-namespace", args.workflow_namespace)
    args.workflow_uid = common.matching(common.UID, "a workflow UID")("workflow-uid", args.workflow_uid)
    args.alert_text, args.alert = alert(args.alert, args.alert_b64)

    args.bucket = common.matching(S3_BUCKET, "an S3 bucket name")("bucket", args.bucket)
    args.endpoint_url = optional(common.matching(S3_ENDPOINT, "an http(s) URL (empty: AWS)"), "endpoint-url", args.endpoint_url)
    args.region = common.matching(REGION, "a region name")("region", args.region)
    args.prefix = optional(common.matching(S3_PREFIX, "'/'-separated [A-Za-z0-9._-] segments"), "prefix", args.prefix)
    if any(segment in (".", "..") for segment in args.prefix.split("/")):
        raise Refused(f"prefix: {args.prefix[:80]!r} has a '.' or '..' segment")
    args.object_lock_mode = common._scalar("object-lock-mode", args.object_lock_mode)
    if args.object_lock_mode not in ("", "GOVERNANCE", "COMPLIANCE"):
        raise Refused(f"object-lock-mode: {args.object_lock_mode[:40]!r} is not '', GOVERNANCE or COMPLIANCE")
    args.object_lock_days = integer("object-lock-days", args.object_lock_days, 0, 36500)
    if args.object_lock_mode and not args.object_lock_days:
        raise Refused(f"object-lock-days: Object Lock mode {args.object_lock_mode} needs 1 to 36500 days")
    if args.sse not in ("", "AES256", "aws:kms"):
        raise Refused(f"sse: {args.sse[:40]!r} is not '', AES256 or aws:kms")
    args.sse_kms_key_id = optional(common.matching(KMS_KEY, "a KMS key id, alias or ARN"), "sse-kms-key-id", args.sse_kms_key_id)
    if args.sse_kms_key_id and args.sse != "aws:kms":
        raise Refused("sse-kms-key-id: a KMS key only goes with --sse=aws:kms")
    args.part_size = integer("part-size", args.part_size, MIN_PART_SIZE, MAX_PART_SIZE)
    bundle_reference(args)

    args.file_name = archive_name(args.archive, args.pod, args.namespace, args.container)
    args.checkpoint_dir = checkpoint_dir(args.checkpoint_dir)
    args.outputs_dir = str(args.outputs_dir)
    return args


def bundle_reference(args) -> None:
    """verify's evidence bundle (steps/bundle.py): its manifest's URI in this bucket and SHA-256, or neither
    (its upload failed, or an older verify)."""
    uri, digest = args.bundle_manifest_uri, args.bundle_sha256
    if not uri and not digest:
        return
    if not uri or not digest:
        raise Refused("bundle-manifest-uri and bundle-sha256: give both (verify's evidence bundle) or neither")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise Refused(f"bundle-sha256: {digest[:80]!r} is not a SHA-256 (64 hex)")
    key = uri.removeprefix(f"s3://{args.bucket}/")
    if key == uri or not key.endswith("/bundle/manifest.json") or ".." in key.split("/"):
        raise Refused(f"bundle-manifest-uri: {uri[:120]!r} is not s3://{args.bucket}/<...>/bundle/manifest.json")


def integer(name: str, value: object, low: int, high: int) -> int:
    text = common._scalar(name, value).strip()
    if not re.fullmatch(r"\d{1,12}", text):
        raise Refused(f"{name}: {text[:40]!r} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise Refused(f"{name}: {number} is outside {low}..{high}")
    return number


def alert(text: str | None, b64: str | None) -> tuple[str, dict]:
    """The alert JSON as received (text) and parsed (an object), from --alert or --alert-b64."""
    if (text is None) == (b64 is None):
        raise Refused("give the alert once: --alert-b64=<base64 of the JSON> or --alert=<JSON>")
    if b64 is not None:
        if len(b64) > MAX_ALERT_BYTES * 4 // 3 + 4:
            raise Refused(f"alert-b64: longer than {MAX_ALERT_BYTES} bytes decoded")
        try:
            text = base64.b64decode(b64.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise Refused("alert-b64: not base64 of UTF-8 text") from None
    assert text is not None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ALERT_BYTES:
        raise Refused(f"alert: longer than {MAX_ALERT_BYTES} bytes")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise Refused(f"alert: not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise Refused(f"alert: a JSON {type(parsed).__name__}, not an object")
    return text, parsed


def alert_stamp(value: str) -> str:
    """RFC 3339 (any offset, up to nanoseconds, as Falco writes it) -> YYYYMMDDTHHMMSSZ in UTC."""
    return common.alert_datetime(value).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def archive_name(archive: str, pod: str, namespace: str, container: str) -> str:
    """The file name in the kubelet's report, refused unless it is this container's checkpoint."""
    archive = common._scalar("archive", archive)
    if not archive or "\x00" in archive or "\\" in archive:
        raise Refused("archive: empty or not a plain path")
    path = PurePosixPath(archive)
    if not path.is_absolute() or ".." in path.parts or "." in archive.split("/"):
        raise Refused(f"archive: {archive[:120]!r} must be an absolute path without '.' or '..'")
    expected = re.escape(f"checkpoint-{pod}_{namespace}-{container}-") + KUBELET_TIME + r"\.tar"
    if not re.fullmatch(expected, path.name):
        raise Refused(
            f"archive: {path.name[:120]!r} is not the kubelet's checkpoint of {namespace}/{pod}/{container} "
            f"(checkpoint-{pod}_{namespace}-{container}-<time>.tar)"
        )
    return path.name


def checkpoint_dir(value: str) -> str:
    value = common._scalar("checkpoint-dir", value)
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise Refused(f"checkpoint-dir: {value[:120]!r} must be an absolute path without '..'")
    return str(path)


def credentials() -> dict[str, str]:
    key, secret = (os.environ.get(name, "") for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    if not key or not secret:
        raise Refused("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (the evidence-store credentials Secret)")
    found = {"aws_access_key_id": key, "aws_secret_access_key": secret}
    if os.environ.get("AWS_SESSION_TOKEN"):
        found["aws_session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return found


# --- what the archive says it is ----------------------------------------------------------------


class _Positional(common.SeekableReader):
    """The open archive read by position (os.pread): the upload's own file offset is not moved."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__(size)
        self.fd = fd

    def readinto(self, buffer) -> int:
        data = os.pread(self.fd, len(buffer), self.position)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def metadata_members(fd: int, size: int, where: str) -> dict[str, bytes]:
    """config.dump, spec.dump and status.dump, found by a pass over the tar headers: tarfile seeks
    over every other member's data, so the memory pages are read once, by the upload."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=_Positional(fd, size), mode="r:") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise StepError(f"{where} has more than {MAX_MEMBERS} members: not a kubelet checkpoint")
                name = member.name.removeprefix("./")
                if name not in METADATA_MEMBERS:
                    continue
                if name in found:
                    raise StepError(f"{where} holds {name} twice: its identity is ambiguous")
                if not member.isfile() or member.size > MAX_METADATA_BYTES:
                    raise StepError(f"{where}: {name} is not a file of at most {MAX_METADATA_BYTES} bytes")
                handle = tar.extractfile(member)
                found[name] = handle.read() if handle else b""
    except (tarfile.TarError, OSError) as exc:
        raise StepError(f"{where} is not a readable tar archive ({common.one_line(exc, 120)}): not a kubelet checkpoint") from None
    return found


def archive_identity(found: dict[str, bytes], where: str) -> dict:
    """The container and pod the archive's own metadata names; every source present must agree."""

    def document(name: str) -> dict:
        if name not in found:
            return {}
        try:
            value = json.loads(found[name])
        except ValueError:
            raise StepError(f"{where}: {name} is not JSON") from None
        if not isinstance(value, dict):
            raise StepError(f"{where}: {name} is not a JSON object")
        return value

    if "config.dump" not in found:
        raise StepError(f"{where} has no config.dump: not a checkpoint archive written by CRI-O or containerd")
    config, spec, status = document("config.dump"), document("spec.dump"), document("status.dump")
    annotations = spec.get("annotations") if isinstance(spec.get("annotations"), dict) else {}
    labels = status.get("labels") if isinstance(status.get("labels"), dict) else {}
    ids = {
        "config.dump id": config.get("id"),
        "spec.dump io.kubernetes.cri-o.ContainerID": annotations.get("io.kubernetes.cri-o.ContainerID"),
        "status.dump id": status.get("id"),
    }
    uids = {
        "spec.dump io.kubernetes.cri.sandbox-uid": annotations.get("io.kubernetes.cri.sandbox-uid"),
        "spec.dump io.kubernetes.pod.uid": annotations.get("io.kubernetes.pod.uid"),
        "status.dump io.kubernetes.pod.uid": labels.get("io.kubernetes.pod.uid"),
    }
    for what, sources in (("container ids", ids), ("pod UIDs", uids)):
        given = {k: v for k, v in sources.items() if v is not None}
        if any(not isinstance(v, str) for v in given.values()) or len(set(given.values())) > 1:
            listed = "; ".join(f"{k}={str(v)[:16]!r}" for k, v in given.items())
            raise StepError(f"{where}: its metadata names different {what} ({listed}): not trusted as evidence")
    container_id = ids["config.dump id"]
    if not isinstance(container_id, str) or not common.FULL_CONTAINER_ID.fullmatch(container_id):
        raise StepError(f"{where}: config.dump names no 64-hex container id ({str(container_id)[:80]!r})")
    pod_uid = next((v for v in uids.values() if v), "")
    if not common.UID.fullmatch(pod_uid):
        raise StepError(
            f"{where} names no pod UID (spec.dump annotations io.kubernetes.cri.sandbox-uid or io.kubernetes.pod.uid, "
            "status.dump labels): it cannot be tied to the verified pod"
        )

    def first(*values) -> str:
        return next((v for v in values if isinstance(v, str) and v), "")

    return {
        "container_id": container_id,
        "pod_uid": pod_uid,
        "runtime_name": first(config.get("name")),
        "container": first(annotations.get("io.kubernetes.cri.container-name"),
                           annotations.get("io.kubernetes.container.name"), labels.get("io.kubernetes.container.name")),
        "pod": first(annotations.get("io.kubernetes.cri.sandbox-name"), annotations.get("io.kubernetes.pod.name"),
                     labels.get("io.kubernetes.pod.name")),
        "namespace": first(annotations.get("io.kubernetes.cri.sandbox-namespace"),
                           annotations.get("io.kubernetes.pod.namespace"), labels.get("io.kubernetes.pod.namespace")),
        "checkpointed": first(config.get("checkpointedTime")),
        "sources": sorted(k for k, v in {**ids, **uids}.items() if v),
    }  # fmt: skip


def check_identity(args, identity: dict) -> None:
    """The archive must be of the container verify checked: same full id, same pod UID."""
    if (identity["container_id"], identity["pod_uid"]) == (args.container_id, args.pod_uid):
        return
    why = []
    if identity["container_id"] != args.container_id:
        why.append("the container restarted")
    if identity["pod_uid"] != args.pod_uid:
        why.append("the pod was replaced")
    raise StepError(
        f"{args.file_name} is not a checkpoint of the verified container: it names container "
        f"{identity['container_id'][:12]} of pod UID {identity['pod_uid']}, verify checked container "
        f"{args.container_id[:12]} of pod UID {args.pod_uid} ({' and '.join(why)} in between); "
        "nothing uploaded as evidence"
    )


# --- S3 ------------------------------------------------------------------------------------------


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def s3_client(args):
    # botocore's own session, not boto3's: the same client and requests, without importing
    # s3transfer (upload_file, unused here), about 30 ms of the step's start-up.
    import botocore.session
    from botocore.config import Config

    config = Config(
        region_name=args.region,
        retries={"total_max_attempts": 1},  # common.retry decides, with a log line per retry
        connect_timeout=10,
        read_timeout=120,
        tcp_keepalive=True,
        # We send our own SHA-256 on every upload; no extra CRC32 from the SDK.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if args.endpoint_url else "auto"},
    )
    session = botocore.session.get_session()
    client = session.create_client(
        "s3", region_name=args.region, endpoint_url=args.endpoint_url or None, config=config, **credentials()
    )
    unsigned = config.merge(Config(s3={**config.s3, "payload_signing_enabled": False}))

    def checksum_signs_the_body(request, **_) -> None:
        """A body sent with x-amz-checksum-sha256 (a signed header S3 verifies: BadDigest) is not
        hashed a second time for SigV4 (UNSIGNED-PAYLOAD, what botocore already sends over https);
        over plain http botocore would hash every part again."""
        if "x-amz-checksum-sha256" in request.headers:
            request.context["client_config"] = unsigned

    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-sign.s3.{operation}", checksum_signs_the_body)
    return client


def s3_error(exc: BaseException, what: str) -> str:
    """One line for an S3 failure: operation, HTTP status, S3 error code and message."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode", "")
        code, message = error.get("Code", ""), error.get("Message", "")
        hints = {
            "NoSuchBucket": "the bucket does not exist",
            "AccessDenied": "the evidence-store credentials lack a permission",
            "InvalidAccessKeyId": "the evidence-store credentials are wrong",
            "SignatureDoesNotMatch": "the evidence-store credentials are wrong",
            "BadDigest": "the bytes S3 received differ from the bytes read from the archive",
        }
        hint = f" ({hints[code]})" if code in hints else ""
        return common.one_line(f"{what}: S3 answered {status} {code}: {message}{hint}", 300)
    return common.one_line(f"{what}: {type(exc).__name__}: {exc}", 300)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return ((response or {}).get("Error") or {}).get("Code", "") if isinstance(response, dict) else ""


def call(what: str, fn):
    """One S3 call through common.retry; a failure becomes a one-line StepError (transient kept as cause)."""
    try:
        return common.retry(fn, what)
    except Exception as exc:  # noqa: BLE001 - every S3/transport failure is described the same way
        raise StepError(s3_error(exc, what)) from exc


class Stopped(Exception):
    """Another part failed (or the step was terminated): no new attempt of this part."""


class StartOver(Exception):
    """409 ConditionalRequestConflict on CompleteMultipartUpload: S3 says re-initiate the upload."""


def write_once(what: str, fn, kept):
    """A conditional write (If-None-Match: *). A 409 ConditionalRequestConflict is tried again, as
    S3 says; on 412 PreconditionFailed `kept(error)` returns S3's answer for the object found if it
    is this very evidence, and raises otherwise."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return call(what, fn)
        except StepError as exc:
            code = error_code(exc.__cause__)
            if code == "PreconditionFailed":
                return kept(exc)
            if code != "ConditionalRequestConflict" or attempt == CONFLICT_ATTEMPTS:
                raise
            common.log(f"copy: {what}: 409 ConditionalRequestConflict (a delete of the key raced the write), trying again")
    raise AssertionError("unreachable")


def short(sha256_hex: str) -> str:
    return f"{sha256_hex[:16]}…" if sha256_hex else "unknown"


class Upload:
    """Streams one open file into one S3 object; aborts its multipart upload on failure."""

    def __init__(self, client, args, key: str, fd: int, size: int, lock_until: datetime | None) -> None:
        self.client, self.args, self.key, self.fd, self.size = client, args, key, fd, size
        self.lock_until = lock_until
        self.upload_id: str | None = None
        self.completed = False
        self.part_size = args.part_size
        if size > self.part_size * MAX_PARTS:
            self.part_size = -(-size // MAX_PARTS // MiB) * MiB
            common.log(f"copy: {size} bytes need parts of {self.part_size} bytes (S3 allows {MAX_PARTS} parts)")
        self.parts = 0
        self.sha256 = ""
        self.stored_checksum = ""  # what HeadObject must return
        self.version_id: str | None = None

    def object_arguments(self, sha256_hex: str | None) -> dict:
        args = self.args
        extra: dict = {
            "Bucket": args.bucket,
            "Key": self.key,
            "ChecksumAlgorithm": "SHA256",
            "ContentType": "application/x-tar",
            "Metadata": object_metadata(args, sha256_hex),
        }
        extra.update(protection(args, self.lock_until))
        return extra

    def read_part(self, offset: int, count: int) -> bytes:
        """`count` bytes at `offset` (os.pread: no shared file position between attempts)."""
        chunks, wanted = [], count
        while wanted:
            chunk = os.pread(self.fd, wanted, offset + count - wanted)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read_into(self, buffer: bytearray, offset: int, count: int) -> int:
        """Fill buffer[:count] from `offset` (os.preadv); the number of bytes read (less at the end)."""
        view, done = memoryview(buffer), 0
        while done < count:
            got = os.preadv(self.fd, [view[done:count]], offset + done)
            if not got:
                break
            done += got
        view.release()
        return done

    def check_unchanged(self, before: os.stat_result, read: int) -> None:
        """One read: the bytes hashed are the bytes sent. The file must not have changed under it
        (size, modification time, nothing past the end)."""
        after = os.fstat(self.fd)
        if read != self.size:
            raise StepError(f"archive shrank while being read ({read} of {self.size} bytes)")
        if os.pread(self.fd, 1, self.size):
            raise StepError(f"archive grew while being read (more than {self.size} bytes)")
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise StepError("archive changed while being read (its size or modification time moved)")

    def run(self) -> None:
        if self.size <= self.part_size:
            self.single()
            return
        for attempt in (1, 2):
            try:
                self.multipart()
                return
            except StartOver as conflict:
                self.abort()
                if attempt == 2:
                    raise StepError(f"{conflict}; it happened twice, giving up") from None
                common.log(f"copy: {conflict}; starting the multipart upload again, as S3 says")
                self.upload_id, self.completed, self.parts = None, False, 0

    def ours(self, head: dict) -> bool:
        """Is the object S3 holds this archive? Same size, and the same SHA-256: the stored checksum
        (full-object for a single PUT, composite of the same parts for a multipart upload), or the
        `sha256` metadata (single PUTs, and objects stored before the upload read the file once)."""
        if head.get("ContentLength") != self.size:
            return False
        stored = head.get("ChecksumSHA256") or ""
        base, _, parts = stored.partition("-")
        want_base, _, want_parts = self.stored_checksum.partition("-")
        if base and base == want_base and (not parts or parts == want_parts):
            return True
        meta = (head.get("Metadata") or {}).get("sha256")
        if base or meta or not self.sha256:
            return bool(self.sha256) and meta == self.sha256
        # A store that keeps no checksums, a multipart object without metadata: read it back (S3, not the file).
        return read_back_sha256(self.client, {"Bucket": self.args.bucket, "Key": self.key}) == self.sha256

    def existing(self, error: StepError) -> dict:
        """412 on the archive's key: what is there is kept if it is this archive (an earlier attempt
        of this workflow run stored it); anything else is someone else's evidence."""
        where = f"s3://{self.args.bucket}/{self.key}"
        head = call(
            f"head {where}",
            lambda: self.client.head_object(Bucket=self.args.bucket, Key=self.key, ChecksumMode="ENABLED"),
        )
        if self.ours(head):
            common.log(
                f"copy: {where} already holds this archive (sha256 {self.sha256}), stored by an earlier attempt "
                "of this workflow run: kept, not written again"
            )
            if self.lock_until is not None and head.get("ObjectLockRetainUntilDate"):
                self.lock_until = head["ObjectLockRetainUntilDate"]  # set by that attempt: verified as it is
            return head
        theirs = head.get("ChecksumSHA256") or (head.get("Metadata") or {}).get("sha256", "")
        raise StepError(
            f"{where} already exists and is not this archive (checksum {short(theirs)} there, "
            f"{short(self.stored_checksum)} here): evidence is written once, nothing was overwritten"
        ) from error

    def single(self) -> None:
        before = os.fstat(self.fd)
        body = self.read_part(0, self.size)
        self.check_unchanged(before, len(body))
        digest = hashlib.sha256(body).digest()
        self.sha256 = digest.hex()
        self.stored_checksum = b64(digest)
        arguments = self.object_arguments(self.sha256)  # known before the PUT: in the metadata too
        answer = write_once(
            f"put s3://{self.args.bucket}/{self.key}",
            lambda: self.client.put_object(
                Body=body, ContentLength=len(body), ChecksumSHA256=b64(digest), IfNoneMatch="*", **arguments
            ),
            self.existing,
        )
        self.version_id = answer.get("VersionId")
        self.parts = 1
        self.completed = True

    def multipart(self) -> None:
        """One read of the file: this thread reads part after part and feeds the whole-file SHA-256;
        up to `in_flight` parts are in memory at once (a slot is taken before a part is read and
        given back when S3 has it), each hashed (its ChecksumSHA256) and sent by a pool thread.
        hashlib and sockets release the GIL, so reading, hashing and sending overlap. The whole
        file's SHA-256 is known only after the last part: it goes into the manifest, not into the
        object's metadata (set at CreateMultipartUpload)."""
        where = f"s3://{self.args.bucket}/{self.key}"
        answer = call(
            f"create multipart upload {where}",
            lambda: self.client.create_multipart_upload(**self.object_arguments(None)),
        )
        self.upload_id = answer["UploadId"]
        count = -(-self.size // self.part_size)
        in_flight = max(1, min(MAX_PARTS_IN_FLIGHT, PARTS_MEMORY // self.part_size, count))
        common.log(
            f"copy: multipart upload {self.upload_id} started: {count} parts of {self.part_size} bytes, "
            f"{in_flight} at a time"
        )
        slots, stop, lock = threading.BoundedSemaphore(in_flight), threading.Event(), threading.Lock()
        spare: list[bytearray] = []  # part buffers, reused: no fresh pages to fault in per part
        digests: dict[int, bytes] = {}
        done: dict[int, dict] = {}
        failures: list[BaseException] = []

        def send(number: int, buffer: bytearray, body) -> None:
            try:
                if stop.is_set():
                    return
                digest = hashlib.sha256(body).digest()

                def attempt():
                    if stop.is_set():
                        raise Stopped()
                    return self.client.upload_part(
                        Bucket=self.args.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                        Body=body, ContentLength=len(body), ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(digest),
                    )  # fmt: skip

                answer = call(f"upload part {number} of {where}", attempt)
                with lock:
                    digests[number] = digest
                    done[number] = {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": b64(digest)}
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                if not isinstance(getattr(exc, "__cause__", None), Stopped):
                    with lock:
                        failures.append(exc)
                stop.set()
            finally:
                del body
                with lock:
                    spare.append(buffer)
                slots.release()

        from concurrent.futures import ThreadPoolExecutor

        whole, offset, number = hashlib.sha256(), 0, 0
        before = os.fstat(self.fd)
        pool = ThreadPoolExecutor(in_flight, thread_name_prefix="part")
        try:
            while offset < self.size and not stop.is_set():
                slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                with lock:
                    buffer = spare.pop() if spare else bytearray(self.part_size)
                read = self.read_into(buffer, offset, min(self.part_size, self.size - offset))
                if not read:
                    spare.append(buffer)
                    slots.release()
                    break
                number += 1
                offset += read
                body = buffer if read == len(buffer) else bytes(memoryview(buffer)[:read])  # the last part
                whole.update(body)
                pool.submit(send, number, buffer, body)
                del body, buffer
        except BaseException:  # interrupted (SIGTERM): no new attempts; the caller aborts the upload
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True)  # a part queued behind a failure stops at its first attempt
        if failures:
            raise failures[0]
        common.log(f"copy: {number} parts sent; completing the multipart upload")
        self.check_unchanged(before, offset)
        self.sha256 = whole.hexdigest()
        self.parts = number
        self.stored_checksum = f"{b64(hashlib.sha256(b''.join(digests[n] for n in range(1, number + 1))).digest())}-{number}"
        parts = [done[n] for n in range(1, number + 1)]
        try:
            answer = call(
                f"complete multipart upload {where}",
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.args.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                ),
            )
        except StepError as exc:
            code = error_code(exc.__cause__)
            if code == "ConditionalRequestConflict":
                raise StartOver(f"complete multipart upload {where}: 409 ConditionalRequestConflict") from exc
            if code == "PreconditionFailed":  # found there: ours (a lost answer, an earlier attempt) or not
                answer = self.existing(exc)
                self.abort(gone_is_fine=True)
            else:
                answer = self.completed_before(exc)
        self.completed = True
        self.version_id = answer.get("VersionId")
        common.log(f"copy: multipart upload complete: {number} parts, {self.size} bytes")

    def completed_before(self, exc: StepError) -> dict:
        """NoSuchUpload after a retried complete: the lost answer was a success if the object is ours."""
        if error_code(exc.__cause__) != "NoSuchUpload":
            raise exc
        head = call(
            f"head s3://{self.args.bucket}/{self.key}",
            lambda: self.client.head_object(Bucket=self.args.bucket, Key=self.key, ChecksumMode="ENABLED"),
        )
        if not self.ours(head):
            raise exc
        common.log(f"copy: multipart upload {self.upload_id} had completed (its answer was lost)")
        return head

    def abort(self, gone_is_fine: bool = False) -> None:
        if not self.upload_id or self.completed:
            return
        try:
            common.retry(
                lambda: self.client.abort_multipart_upload(Bucket=self.args.bucket, Key=self.key, UploadId=self.upload_id),
                f"abort multipart upload {self.upload_id}",
                attempts=3,
            )
            common.log(f"copy: multipart upload {self.upload_id} aborted; nothing was stored by it")
        except Exception as exc:  # noqa: BLE001 - already failing; say what is left behind
            if gone_is_fine and error_code(exc) == "NoSuchUpload":
                return  # it was the upload that completed
            common.log(
                f"copy: warning: could not abort multipart upload {self.upload_id} of s3://{self.args.bucket}/{self.key} "
                f"({s3_error(exc, 'abort')}); a bucket lifecycle rule AbortIncompleteMultipartUpload removes it"
            )


def object_metadata(args, sha256_hex: str | None) -> dict[str, str]:
    """The object's metadata; `sha256` (the whole file's) only when it is known before the write
    (a single PUT, the manifest), not for a multipart upload read once."""
    return {
        **({"sha256": sha256_hex} if sha256_hex else {}),
        "namespace": args.namespace,
        "pod": args.pod,
        "container": args.container,
        "node": args.node,
        "alert-time": args.alert_time,
        "workflow": f"{args.workflow_namespace}/{args.workflow_name}",
        "workflow-uid": args.workflow_uid,
        "pod-uid": args.pod_uid,
        "container-id": args.container_id,
    }


def protection(args, lock_until: datetime | None) -> dict:
    extra: dict = {}
    if args.object_lock_mode and lock_until is not None:
        extra["ObjectLockMode"] = args.object_lock_mode
        extra["ObjectLockRetainUntilDate"] = lock_until
    if args.sse:
        extra["ServerSideEncryption"] = args.sse
        if args.sse_kms_key_id:
            extra["SSEKMSKeyId"] = args.sse_kms_key_id
    return extra


def verify_object(client, args, key: str, version_id: str | None, size: int, checksum: str,
                  sha256_hex: str, lock_until: datetime | None) -> dict:
    """HeadObject and compare with what was sent; raises StepError naming the first difference."""
    where = f"s3://{args.bucket}/{key}" + (f" (version {version_id})" if version_id else "")
    request = {"Bucket": args.bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if version_id:
        request["VersionId"] = version_id
    head = call(f"head {where}", lambda: client.head_object(**request))
    problems = []
    if head.get("ContentLength") != size:
        problems.append(f"size {head.get('ContentLength')} instead of {size}")
    stored = head.get("ChecksumSHA256")
    if stored is None:
        common.log(f"copy: the store returned no SHA-256 checksum for {where}; reading the object back to verify it")
        got = read_back_sha256(client, request)
        if got != sha256_hex:
            problems.append(f"SHA-256 read back {got} instead of {sha256_hex}")
    else:
        base, _, parts = stored.partition("-")
        want_base, _, want_parts = checksum.partition("-")
        if base != want_base or (parts and parts != want_parts):
            problems.append(f"stored checksum {stored} instead of {checksum}")
    meta = (head.get("Metadata") or {}).get("sha256")
    if meta != sha256_hex and (meta is not None or not checksum.partition("-")[2]):
        problems.append("metadata sha256 missing or different")  # a multipart upload sets none
    if args.object_lock_mode:
        until = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") != args.object_lock_mode:
            problems.append(f"Object Lock mode {head.get('ObjectLockMode')} instead of {args.object_lock_mode}")
        elif lock_until is not None and (until is None or until < lock_until - timedelta(seconds=1)):
            problems.append(f"retained until {until} instead of {lock_until.isoformat()}")
    if args.sse and head.get("ServerSideEncryption") != args.sse:
        problems.append(f"encryption {head.get('ServerSideEncryption')} instead of {args.sse}")
    if problems:
        raise StepError(f"verification of {where} failed: {'; '.join(problems)}")
    return head


def read_back_sha256(client, request: dict) -> str:
    arguments = {k: v for k, v in request.items() if k != "ChecksumMode"}
    body = call(f"get s3://{request['Bucket']}/{request['Key']}", lambda: client.get_object(**arguments))["Body"]
    digest = hashlib.sha256()
    try:
        for chunk in body.iter_chunks(MiB):
            digest.update(chunk)
    except Exception as exc:  # noqa: BLE001
        raise StepError(s3_error(exc, "read back")) from exc
    return digest.hexdigest()


def abort_leftovers(client, args, key: str) -> None:
    """Abort multipart uploads of this key that an attempt killed mid-upload left behind (best effort)."""
    try:
        answer = common.retry(
            lambda: client.list_multipart_uploads(Bucket=args.bucket, Prefix=key), "list multipart uploads", attempts=2
        )
    except Exception as exc:  # noqa: BLE001 - optional permission; the upload itself decides
        common.log(f"copy: not checking for uploads left by an earlier attempt ({s3_error(exc, 'list')})")
        return
    for upload in answer.get("Uploads") or []:
        if upload.get("Key") != key:
            continue
        try:
            common.retry(
                lambda: client.abort_multipart_upload(Bucket=args.bucket, Key=key, UploadId=upload["UploadId"]),
                "abort earlier multipart upload",
                attempts=2,
            )
            common.log(f"copy: aborted multipart upload {upload['UploadId']} left by an earlier attempt")
        except Exception as exc:  # noqa: BLE001
            common.log(f"copy: warning: {s3_error(exc, 'abort earlier upload')}")


# --- manifest ------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("boto3", "botocore", "kubernetes", "falco-argo-response"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def manifest(args, upload: Upload, keys: dict[str, str], started: str, finished: str,
             lock_until: datetime | None, archive_stat: os.stat_result, identity: dict) -> dict:
    digest = IMAGE_DIGEST.search(args.image_id or "")
    return {
        "schema": MANIFEST_SCHEMA,
        "created": common.now_rfc3339(),
        "alert": args.alert,
        "alert_text": args.alert_text,
        "alert_sha256": hashlib.sha256(args.alert_text.encode("utf-8", "surrogatepass")).hexdigest(),
        "rule": args.rule,
        "priority": args.priority,
        "alert_time": args.alert_time,
        "policy": args.policy,
        "target": {
            "namespace": args.namespace,
            "pod": args.pod,
            "pod_uid": args.pod_uid,
            "container": args.container,
            "container_id": args.container_id,
            "node": args.node,
            "image": args.image,
            "image_id": args.image_id,
            "image_digest": digest.group(0) if digest else "",
        },
        "identity": {  # both sides of the check that the archive is of the container verify checked
            "verified": {"container_id": args.container_id, "pod_uid": args.pod_uid},
            "archive": identity,
            "match": (identity["container_id"], identity["pod_uid"]) == (args.container_id, args.pod_uid),
        },
        "checkpoint": {
            "kubelet_path": args.archive,
            "file": args.file_name,
            "size": upload.size,
            "sha256": upload.sha256,
            "modified": datetime.fromtimestamp(archive_stat.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "upload": {
            "started": started,
            "finished": finished,
            "method": "multipart" if upload.upload_id else "single",
            "part_size": upload.part_size,
            "parts": upload.parts,
            "checksum_algorithm": "SHA256",
            "checksum": upload.stored_checksum,
            "checksum_type": "COMPOSITE" if upload.upload_id else "FULL_OBJECT",
        },
        "evidence": {
            "uri": f"s3://{args.bucket}/{keys['archive']}",
            "bucket": args.bucket,
            "key": keys["archive"],
            "version_id": upload.version_id,
            "region": args.region,
            "endpoint": args.endpoint_url or "aws",
        },
        "manifest": {"uri": f"s3://{args.bucket}/{keys['manifest']}", "key": keys["manifest"]},
        "object_lock": (
            {"mode": args.object_lock_mode, "retain_until": lock_until.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if args.object_lock_mode and lock_until
            else None
        ),
        "sse": {"algorithm": args.sse, "kms_key_id": args.sse_kms_key_id} if args.sse else None,
        # the pod, owners, Events, logs, NetworkPolicies and node verify read before isolation (steps/bundle.py)
        "bundle": (
            {"manifest_uri": args.bundle_manifest_uri, "manifest_sha256": args.bundle_sha256}
            if args.bundle_manifest_uri else None
        ),
        "workflow": {"namespace": args.workflow_namespace, "name": args.workflow_name, "uid": args.workflow_uid},
        "versions": versions(),
    }


def put_manifest(client, args, key: str, document: dict, lock_until: datetime | None) -> tuple[str | None, str]:
    body = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(body).digest()
    evidence_sha256 = document["checkpoint"]["sha256"]
    arguments = {
        "Bucket": args.bucket,
        "Key": key,
        "Body": body,
        "ContentLength": len(body),
        "ContentType": "application/json",
        "ChecksumAlgorithm": "SHA256",
        "ChecksumSHA256": b64(digest),
        "IfNoneMatch": "*",
        "Metadata": {**object_metadata(args, digest.hex()), "evidence-sha256": evidence_sha256},
        **protection(args, lock_until),
    }
    where = f"s3://{args.bucket}/{key}"
    kept: dict = {}

    def earlier(error: StepError) -> dict:
        """412: an earlier attempt of this run wrote the manifest of this archive (kept), or not ours."""
        head = call(f"head {where}", lambda: client.head_object(Bucket=args.bucket, Key=key))
        meta = head.get("Metadata") or {}
        if meta.get("evidence-sha256") == evidence_sha256 and meta.get("workflow-uid") == args.workflow_uid:
            common.log(f"copy: {where} already holds this archive's manifest, from an earlier attempt of this run: kept")
            kept.update(head)
            return head
        raise StepError(
            f"{where} already exists and is not this archive's manifest: evidence is written once, nothing was overwritten"
        ) from error

    answer = write_once(f"put {where}", lambda: client.put_object(**arguments), earlier)
    version_id = answer.get("VersionId")
    if kept:
        return version_id, (kept.get("Metadata") or {}).get("sha256", "")
    verify_object(client, args, key, version_id, len(body), b64(digest), digest.hex(), lock_until)
    return version_id, digest.hex()


# --- the step ------------------------------------------------------------------------------------


def object_keys(args) -> dict[str, str]:
    """Unique per workflow run: a replay of the alert (same workflow name) has another workflow UID."""
    run = (f"{args.alert_stamp}-{args.workflow_name}", args.workflow_uid)
    folder = "/".join(part for part in (args.prefix, args.namespace, args.pod, args.container, *run) if part)
    return {"archive": f"{folder}/checkpoint.tar", "manifest": f"{folder}/manifest.json"}


def write_outputs(args, evidence_uri: str, manifest_uri: str, sha256_hex: str, size: int, version_id) -> None:
    common.write_output(args.outputs_dir, "evidence-uri", evidence_uri)
    common.write_output(args.outputs_dir, "manifest-uri", manifest_uri)
    common.write_output(args.outputs_dir, "sha256", sha256_hex)
    common.write_output(args.outputs_dir, "size", str(size))
    common.write_output(args.outputs_dir, "version-id", version_id or "")


def already_copied(client, args, keys: dict[str, str]) -> bool:
    """The archive is gone: did an earlier attempt of this workflow copy it? Then repeat its outputs."""
    try:
        answer = common.retry(
            lambda: client.get_object(Bucket=args.bucket, Key=keys["manifest"]), "get manifest", attempts=3
        )
        document = json.loads(answer["Body"].read(MAX_ALERT_BYTES * 4))
    except Exception:  # noqa: BLE001 - no manifest (or unreadable): not copied
        return False
    checkpoint, evidence = document.get("checkpoint") or {}, document.get("evidence") or {}
    if checkpoint.get("file") != args.file_name or evidence.get("key") != keys["archive"]:
        return False
    common.log(f"copy: {args.file_name} was already copied by an earlier attempt: {evidence.get('uri')}")
    write_outputs(
        args, evidence.get("uri", ""), (document.get("manifest") or {}).get("uri", ""),
        checkpoint.get("sha256", ""), checkpoint.get("size", 0), evidence.get("version_id"),
    )  # fmt: skip
    return True


def open_archive(args) -> tuple[int, os.stat_result, str]:
    directory = args.checkpoint_dir
    if not os.path.isdir(directory):
        raise StepError(f"checkpoint directory {directory} is not mounted in this pod on node {args.node}")
    path = os.path.join(directory, args.file_name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0))
    except PermissionError:
        try:  # O_NOATIME needs ownership; retry without it
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise StepError(f"cannot open {path} on node {args.node}: {exc.strerror} (the step must run as root)") from None
    except FileNotFoundError:
        raise FileNotFoundError(path) from None
    except OSError as exc:
        raise StepError(f"cannot open {path} on node {args.node}: {exc.strerror} (not a regular file?)") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused(f"{path} is not a regular file")
    if info.st_size == 0:
        os.close(fd)
        raise StepError(f"{path} is empty: the checkpoint did not complete")
    return fd, info, path


def delete_archive(path: str, info: os.stat_result, node: str) -> None:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        common.log(f"copy: {path} is already gone")
        return
    if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
        raise StepError(f"{path} on node {node} was replaced during the copy; left in place")
    try:
        os.unlink(path)
    except OSError as exc:
        raise StepError(
            f"evidence is stored and verified, but {path} could not be deleted from node {node}: {exc.strerror}"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)

    def terminated(signum, frame):  # Argo's deadline: abort the upload, keep the archive
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)

    keys = object_keys(args)
    common.log(
        f"copy: {args.file_name} of {args.namespace}/{args.pod}/{args.container} on node {args.node} "
        f"-> s3://{args.bucket}/{keys['archive']}"
    )
    if not args.endpoint_url and not args.sse:
        common.log("copy: note: no --sse given; the bucket's default encryption applies")
    client = s3_client(args)

    try:
        fd, info, path = open_archive(args)
    except FileNotFoundError as missing:
        if already_copied(client, args, keys):
            return 0
        raise StepError(
            f"archive {missing} not found on node {args.node} (the checkpoint failed, or it was removed)"
        ) from None

    try:
        return copy(client, args, keys, fd, info, path)
    except StepError as exc:
        if isinstance(exc, Refused):
            raise
        raise StepError(f"{exc}; the archive stays on node {args.node}") from exc.__cause__
    finally:
        os.close(fd)


def copy(client, args, keys: dict[str, str], fd: int, info: os.stat_result, path: str) -> int:
    evidence_uri = f"s3://{args.bucket}/{keys['archive']}"
    manifest_uri = f"s3://{args.bucket}/{keys['manifest']}"
    identity = archive_identity(metadata_members(fd, info.st_size, args.file_name), args.file_name)
    check_identity(args, identity)
    common.log(
        f"copy: {args.file_name} is a checkpoint of the verified container: {identity['runtime_name'] or '?'} "
        f"(container {args.container_id}, pod UID {args.pod_uid}; from {', '.join(identity['sources'])})"
    )
    abort_leftovers(client, args, keys["archive"])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    lock_until = now + timedelta(days=args.object_lock_days) if args.object_lock_mode else None
    upload = Upload(client, args, keys["archive"], fd, info.st_size, lock_until)
    started = common.now_rfc3339()
    try:
        upload.run()
    except BaseException:
        upload.abort()
        raise
    finished = common.now_rfc3339()
    lock_until = upload.lock_until  # an archive kept from an earlier attempt keeps its own retention
    verify_object(
        client, args, keys["archive"], upload.version_id, upload.size, upload.stored_checksum, upload.sha256, lock_until
    )
    common.log(
        f"copy: verified {evidence_uri} version {upload.version_id}: {upload.size} bytes, sha256 {upload.sha256}"
        + (f", {args.object_lock_mode} until {lock_until:%Y-%m-%dT%H:%M:%SZ}" if lock_until else "")
    )
    document = manifest(args, upload, keys, started, finished, lock_until, info, identity)
    manifest_version, _ = put_manifest(client, args, keys["manifest"], document, lock_until)
    common.log(f"copy: verified {manifest_uri} version {manifest_version}")

    write_outputs(args, evidence_uri, manifest_uri, upload.sha256, upload.size, upload.version_id)
    delete_archive(path, info, args.node)
    common.log(f"copy: deleted {path} from node {args.node}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
