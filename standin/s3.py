"""Stand-in S3: moto's server on 127.0.0.1:<free port>, plus what moto leaves out, plus faults.

    s3 = S3Server(); s3.start()
    s3.create_bucket("evidence", object_lock=True)   # versioned; Object Lock enabled
    env = {**os.environ, **s3.env()}                 # credentials + AWS_DEFAULT_REGION for a step
    ... python -m steps.copy --endpoint-url=<s3.url> ...
    s3.stop()                                        # or `with S3Server() as s3:`

moto (5.x) stores what a client says about its uploads without checking it. Real S3 checks
(CONTRACTS.md section 8), so a thin WSGI layer in front of moto does it, answering with S3's error
codes:
  - `x-amz-checksum-sha256` / `-sha1` / `-crc32` on PutObject and UploadPart is compared with the
    received body: a malformed value -> 400 InvalidRequest, a mismatch -> 400 BadDigest;
  - `Content-MD5`: malformed -> 400 InvalidDigest, mismatch -> 400 BadDigest;
  - Object Lock headers on a bucket created without Object Lock -> 400 InvalidRequest
    ("Bucket is missing Object Lock Configuration");
  - conditional writes, `If-None-Match: *` on PutObject and CompleteMultipartUpload (S3 since
    August 2024; the S3 User Guide, "How to prevent object overwrites with conditional writes",
    and the API reference of both operations): the key's current version exists (a delete marker
    does not count) -> 412 PreconditionFailed, nothing written; checked atomically with the write,
    so of two conditional writes racing for one key the first to finish wins and the other gets
    412; a DeleteObject of the key that succeeds while a conditional PutObject is in flight, or
    after the CreateMultipartUpload of an upload whose CompleteMultipartUpload is conditional ->
    409 ConditionalRequestConflict (S3: retry the PUT; re-initiate the multipart upload); any
    other If-None-Match value -> 501 NotImplemented, as S3 answers (aws-sdk-ruby issue 3144).
    moto 5.x checks `*` too, but not atomically and without the 409.
and it fills two more gaps of moto's:
  - Object Lock headers on CreateMultipartUpload (or else the bucket's default retention) are
    applied to the object CompleteMultipartUpload makes (moto drops both);
  - HeadObject with ChecksumMode=ENABLED answers a multipart object's composite checksum as S3
    does, "<base64>-<parts>" with `x-amz-checksum-type: COMPOSITE` (moto computes the composite
    from the stored parts but leaves out the suffix and the type on HEAD).
For a single PUT, HeadObject returns the full-object checksum that was sent (and verified).
moto 5.x does not serve GetObjectRetention / GetObjectLegalHold (500): read the lock state with
HeadObject (ObjectLockMode, ObjectLockRetainUntilDate, ObjectLockLegalHoldStatus).

Fault injection (for tests), all thread-safe:
  fail_requests(count, status=500, method=None, query_contains=None, after=0, processed=False)
      the next `count` matching requests (method, and a substring of the query string such as
      "partNumber=2" or "uploadId"), after letting `after` matching ones through, get an S3 error
      with that status (500 InternalError, 503 SlowDown, ...); status=0 drops the connection after
      reading the request instead (no response at all). processed=True lets S3 carry the request
      out first: the work is done, the answer is lost.
  corrupt_next_upload(after_checksum=False)
      flip one byte of the next PutObject/UploadPart body: "in transit" (S3 answers BadDigest),
      or with after_checksum=True after the check, as a store that does not verify would keep it.
  strip_checksums = True
      answer HeadObject/GetObject without x-amz-checksum-* headers (a store without checksums).
  on_conditional_write(callback) -> remove()
      run callback(method, path) while a conditional write is in flight (its body received, not
      yet stored): a test can make another request happen "during" the upload, e.g. a DELETE.
  requests
      (method, path, query, status) of every request served, status 0 for a dropped connection.

moto keeps its state per process, so only one S3Server runs in a process at a time, and start()
empties moto's S3 backend. `python -m standin.s3 [--bucket=NAME] [--object-lock]` serves in a
process of its own (prints the URL, runs until stdin closes or SIGTERM), e.g. for benchmarks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import signal
import socket
import sys
import threading
import zlib
from typing import Any
from urllib.parse import parse_qs

from standin.loopback import Background

ACCESS_KEY = "standin-access-key"
SECRET_KEY = "standin-secret-key"
REGION = "us-east-1"

_ERRORS = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented."),
    502: ("BadGateway", "Bad gateway."),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "Gateway timeout."),
    429: ("TooManyRequests", "Please reduce your request rate."),
    403: ("AccessDenied", "Access Denied"),
}
_LOCK_HEADERS = (
    "HTTP_X_AMZ_OBJECT_LOCK_MODE",
    "HTTP_X_AMZ_OBJECT_LOCK_RETAIN_UNTIL_DATE",
    "HTTP_X_AMZ_OBJECT_LOCK_LEGAL_HOLD",
)


def _error(
    start_response, status: int, code: str, message: str, headers: list | None = None, extra: str = ""
) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}<RequestId>standin</RequestId></Error>"
    ).encode()
    reason = {
        400: "Bad Request",
        403: "Forbidden",
        409: "Conflict",
        412: "Precondition Failed",
        429: "Too Many Requests",
        500: "Internal Server Error",
        501: "Not Implemented",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), *(headers or [])],
    )
    return [body]


def _read_body(environ: dict) -> bytes:
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ["wsgi.input"]
    if length.isdigit():
        return stream.read(int(length)) if int(length) else b""
    return b""


def _bucket_of(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


def _is_object_path(path: str) -> bool:
    parts = path.lstrip("/").split("/", 1)
    return len(parts) == 2 and parts[1] != ""


class _Checks:
    """What S3 verifies on an upload body and moto does not."""

    @staticmethod
    def checksum_error(environ: dict, body: bytes) -> tuple[int, str, str] | None:
        for header, name, compute in (
            ("HTTP_X_AMZ_CHECKSUM_SHA256", "SHA256", lambda b: hashlib.sha256(b).digest()),
            ("HTTP_X_AMZ_CHECKSUM_SHA1", "SHA1", lambda b: hashlib.sha1(b).digest()),
            ("HTTP_X_AMZ_CHECKSUM_CRC32", "CRC32", lambda b: zlib.crc32(b).to_bytes(4, "big")),
        ):
            value = environ.get(header)
            if value is None:
                continue
            expected = compute(body)
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                given = b""
            if len(given) != len(expected):
                return 400, "InvalidRequest", f"Value for x-amz-checksum-{name.lower()} header is invalid."
            if given != expected:
                return 400, "BadDigest", f"The {name} you specified did not match the calculated checksum."
        md5 = environ.get("HTTP_CONTENT_MD5")
        if md5 is not None:
            try:
                given = base64.b64decode(md5, validate=True)
            except (binascii.Error, ValueError):
                given = b""
            if len(given) != 16:
                return 400, "InvalidDigest", "The Content-MD5 you specified was invalid."
            if given != hashlib.md5(body).digest():  # noqa: S324 - S3's own integrity header
                return 400, "BadDigest", "The Content-MD5 you specified did not match what we received."
        return None


class _Middleware:
    def __init__(self, app, server: "S3Server") -> None:
        self.app = app
        self.server = server

    def __call__(self, environ: dict, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        query = environ.get("QUERY_STRING", "")
        recorded: dict[str, int] = {}

        def recording_start_response(status: str, headers: list, exc_info=None):
            recorded["status"] = int(status.split(" ", 1)[0])
            if method in ("GET", "HEAD") and _is_object_path(path):
                if self.server.strip_checksums:
                    headers = [(k, v) for k, v in headers if not k.lower().startswith("x-amz-checksum-")]
                else:
                    headers = self.server._composite_checksum_headers(path, query, headers)
            return start_response(status, headers, exc_info)

        try:
            return self._handle(environ, recording_start_response, method, path, query)
        finally:
            self.server._record(method, path, query, recorded.get("status", 0))

    def _handle(self, environ, start_response, method, path, query, faults: bool = True):
        fault, processed = self.server._take_fault(method, query) if faults else (None, False)
        if fault is not None:
            if processed:  # S3 did the work, then the answer was lost
                for _ in self._handle(environ, lambda *a, **k: None, method, path, query, faults=False):
                    pass
            else:
                _read_body(environ)  # the request arrived in full, then the server failed
            if fault == 0:
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                raise ConnectionResetError("stand-in S3: connection dropped on purpose")
            code, message = _ERRORS.get(fault, ("InternalError", "Injected failure."))
            return _error(start_response, fault, code, message)

        params = parse_qs(query, keep_blank_values=True)
        is_upload = (
            method == "PUT"
            and _is_object_path(path)
            and "HTTP_X_AMZ_COPY_SOURCE" not in environ
            and not any(k in params for k in ("tagging", "acl", "retention", "legal-hold"))
            and "aws-chunked" not in environ.get("HTTP_CONTENT_ENCODING", "")
        )
        creates_object = (is_upload and "partNumber" not in params) or (method == "POST" and "uploads" in params)
        if creates_object and any(environ.get(h) for h in _LOCK_HEADERS):
            if not self.server._bucket_has_lock(_bucket_of(path)):
                _read_body(environ)
                return _error(start_response, 400, "InvalidRequest", "Bucket is missing Object Lock Configuration")
        completes = method == "POST" and "uploadId" in params and _is_object_path(path)
        condition = environ.get("HTTP_IF_NONE_MATCH")
        if condition is not None and ((is_upload and "partNumber" not in params) or completes):
            if condition.strip() != "*":
                _read_body(environ)
                return _error(start_response, 501, *_ERRORS[501], extra="<Header>If-None-Match</Header>")
            return self._conditional_write(environ, start_response, method, path, params)
        if method == "DELETE" and _is_object_path(path) and "uploadId" not in params:
            return self._delete(environ, start_response, path)
        if method == "DELETE" and "uploadId" in params:  # AbortMultipartUpload
            self.server._forget_upload(params["uploadId"][0])
        if method == "POST" and "uploads" in params and _is_object_path(path):
            return self._create_multipart(environ, start_response, path)
        if completes:
            return self._complete_multipart(environ, start_response, path, params["uploadId"][0])
        if not is_upload:
            return self.app(environ, start_response)
        return self._upload(environ, start_response)

    def _upload(self, environ, start_response, before_store=None):
        """PutObject or UploadPart: S3's body checks, then moto stores it (unless before_store answers)."""
        body = _read_body(environ)
        corrupt = self.server._take_corruption()
        if corrupt == "before" and body:
            body = _flip(body)
        problem = _Checks.checksum_error(environ, body)
        if problem:
            return _error(start_response, *problem)
        if corrupt == "after" and body:
            body = _flip(body)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        refusal = before_store() if before_store else None
        if refusal is not None:
            return _refused(start_response, refusal)
        return self.app(environ, start_response)

    def _conditional_write(self, environ, start_response, method: str, path: str, params: dict):
        """`If-None-Match: *`: evaluated when the write commits, under a per-key lock so that the
        first of two racing writers wins and the other finds the object (412); a successful delete
        of the key while the write was in flight makes it fail with 409 instead."""
        key = _bucket_and_key(path)
        upload_id = params["uploadId"][0] if method == "POST" else None
        with self.server._key_lock(key):
            flight = self.server._begin_flight(key)
            try:

                def precondition() -> tuple[int, str, str] | None:
                    self.server._run_conditional_hooks(method, path)
                    if flight["conflict"] or (upload_id and upload_id in self.server._conflicted_uploads):
                        return 409, "ConditionalRequestConflict", _CONFLICT_MESSAGE
                    if self.server._key(path, None) is not None:
                        return 412, "PreconditionFailed", _PRECONDITION_MESSAGE
                    return None

                if upload_id is None:
                    return list(self._upload(environ, start_response, before_store=precondition))
                _read_body_kept(environ)
                refusal = precondition()
                if refusal is not None:
                    return _refused(start_response, refusal)
                return self._complete_multipart(environ, start_response, path, upload_id)
            finally:
                self.server._end_flight(key, flight)

    def _answer(self, environ, start_response) -> tuple[int | None, bytes]:
        """moto's answer, sent on as it is, with its status code for the caller's bookkeeping."""
        seen: dict[str, int] = {}

        def capture(status, headers, exc_info=None):
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        return seen.get("status"), body

    def _delete(self, environ, start_response, path: str):
        """DeleteObject: a success conflicts with the conditional writes in flight for that key."""
        status, body = self._answer(environ, start_response)
        if status in (200, 204):
            self.server._deleted(_bucket_and_key(path))
        return [body]

    def _create_multipart(self, environ, start_response, path: str):
        # moto ignores Object Lock headers on CreateMultipartUpload; S3 applies them to the object
        # that CompleteMultipartUpload makes. Remember them per upload id, and the key each open
        # upload is for (a delete of the key conflicts with its conditional completion).
        lock = {h: environ[h] for h in _LOCK_HEADERS if environ.get(h)}
        body = b"".join(self.app(environ, start_response))
        found = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
        if found:
            self.server._open_uploads[found.group(1).decode()] = _bucket_and_key(path)
        if found and lock:
            self.server._pending_locks[found.group(1).decode()] = lock
        return [body]

    def _complete_multipart(self, environ, start_response, path: str, upload_id: str):
        status, body = self._answer(environ, start_response)
        if status == 200 and b"<Error>" not in body:
            lock = self.server._pending_locks.pop(upload_id, None)
            self.server._apply_lock(path, lock or self.server._default_lock(_bucket_of(path)))
            self.server._forget_upload(upload_id)
        return [body]


_PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold"
_CONFLICT_MESSAGE = "A conflicting conditional operation is currently in progress against this resource. Please try again."


def _bucket_and_key(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


def _refused(start_response, refusal: tuple[int, str, str]) -> list[bytes]:
    extra = "<Condition>If-None-Match</Condition>" if refusal[1] == "PreconditionFailed" else ""
    return _error(start_response, *refusal, extra=extra)


def _read_body_kept(environ: dict) -> None:
    """Read the request body now (as S3 receives it before answering) and keep it for moto."""
    body = _read_body(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _flip(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]


class S3Server:
    _running: "S3Server | None" = None
    _class_lock = threading.Lock()

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self.credentials = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.region = REGION
        self.requests: list[tuple[str, str, str, int]] = []
        self.strip_checksums = False
        self._lock = threading.Lock()
        self._faults: list[dict[str, Any]] = []
        self._corrupt: list[str] = []
        self._pending_locks: dict[str, dict[str, str]] = {}
        self._open_uploads: dict[str, tuple[str, str]] = {}  # upload id -> (bucket, key)
        self._conflicted_uploads: set[str] = set()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._flights: dict[tuple[str, str], list[dict]] = {}
        self._conditional_hooks: list = []
        self._server = None
        self._background: Background | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> "S3Server":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from moto.s3.models import s3_backends
        from werkzeug.serving import make_server

        with S3Server._class_lock:
            if S3Server._running is not None:
                raise RuntimeError("an S3Server already runs in this process (moto's state is per process)")
            S3Server._running = self
        try:
            s3_backends.reset()
            app = _Middleware(DomainDispatcherApplication(create_backend_app), self)
            self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_quiet_handler_class())
        except BaseException:
            with S3Server._class_lock:
                S3Server._running = None
            raise
        self.port = self._server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self._background = Background(self._server, "standin-s3")
        return self

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()
            self._background = self._server = None
        with S3Server._class_lock:
            if S3Server._running is self:
                S3Server._running = None

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- clients and state ------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**self.credentials, "AWS_DEFAULT_REGION": self.region}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
        )

    def create_bucket(self, name: str, object_lock: bool = False, versioning: bool = True) -> None:
        """A bucket; versioned unless told otherwise; Object Lock enabled (forces versioning) if asked."""
        client = self.client()
        if object_lock:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            client.create_bucket(Bucket=name)
        if versioning or object_lock:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def incomplete_uploads(self, bucket: str) -> list[dict]:
        return self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    # --- faults -------------------------------------------------------------------------------

    def fail_requests(
        self,
        count: int,
        status: int = 500,
        method: str | None = None,
        query_contains: str | None = None,
        after: int = 0,
        processed: bool = False,
    ) -> None:
        with self._lock:
            self._faults.append(
                {"count": count, "status": status, "method": method, "query": query_contains, "skip": after,
                 "processed": processed}
            )

    def corrupt_next_upload(self, after_checksum: bool = False) -> None:
        with self._lock:
            self._corrupt.append("after" if after_checksum else "before")

    def on_conditional_write(self, callback) -> "Any":
        """Run callback(method, path) while each conditional write is in flight; returns a remover."""
        with self._lock:
            self._conditional_hooks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._conditional_hooks:
                    self._conditional_hooks.remove(callback)

        return remove

    def _run_conditional_hooks(self, method: str, path: str) -> None:
        with self._lock:
            hooks = list(self._conditional_hooks)
        for hook in hooks:
            hook(method, path)

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _begin_flight(self, key: tuple[str, str]) -> dict:
        flight = {"conflict": False}
        with self._lock:
            self._flights.setdefault(key, []).append(flight)
        return flight

    def _end_flight(self, key: tuple[str, str], flight: dict) -> None:
        with self._lock:
            flights = self._flights.get(key) or []
            if flight in flights:
                flights.remove(flight)

    def _deleted(self, key: tuple[str, str]) -> None:
        with self._lock:
            for flight in self._flights.get(key) or []:
                flight["conflict"] = True
            self._conflicted_uploads.update(u for u, k in self._open_uploads.items() if k == key)

    def _forget_upload(self, upload_id: str) -> None:
        with self._lock:
            self._open_uploads.pop(upload_id, None)
            self._conflicted_uploads.discard(upload_id)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._corrupt.clear()

    def _take_fault(self, method: str, query: str) -> tuple[int | None, bool]:
        with self._lock:
            for fault in self._faults:
                if fault["count"] <= 0:
                    continue
                if fault["method"] and fault["method"].upper() != method:
                    continue
                if fault["query"] and fault["query"] not in query:
                    continue
                if fault["skip"] > 0:
                    fault["skip"] -= 1
                    continue
                fault["count"] -= 1
                return int(fault["status"]), bool(fault["processed"])
            return None, False

    def _take_corruption(self) -> str | None:
        with self._lock:
            return self._corrupt.pop(0) if self._corrupt else None

    def _record(self, method: str, path: str, query: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, query, status))

    @staticmethod
    def _backend():
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def _key(self, path: str, version_id: str | None):
        bucket, _, key = path.lstrip("/").partition("/")
        try:
            # PATH_INFO is already percent-decoded, as WSGI strings (latin-1 code points)
            name = key.encode("latin-1").decode("utf-8", "replace")
            return self._backend().get_object(bucket, name, version_id=version_id)
        except Exception:  # noqa: BLE001 - moto raises for unknown buckets/versions
            return None

    def _default_lock(self, bucket_name: str) -> dict[str, str]:
        """The bucket's default retention, which S3 applies to every new version (moto: single PUT only)."""
        try:
            bucket = self._backend().get_bucket(bucket_name)
        except Exception:  # noqa: BLE001
            return {}
        if not (getattr(bucket, "object_lock_enabled", False) and getattr(bucket, "has_default_lock", False)):
            return {}
        return {
            "HTTP_X_AMZ_OBJECT_LOCK_MODE": bucket.default_lock_mode,
            "HTTP_X_AMZ_OBJECT_LOCK_RETAIN_UNTIL_DATE": bucket.default_retention(),
        }

    def _apply_lock(self, path: str, lock: dict[str, str]) -> None:
        key = self._key(path, None)
        if key is None or not lock:
            return
        key.lock_mode = lock.get("HTTP_X_AMZ_OBJECT_LOCK_MODE", key.lock_mode)
        key.lock_until = lock.get("HTTP_X_AMZ_OBJECT_LOCK_RETAIN_UNTIL_DATE", key.lock_until)
        key.lock_legal_status = lock.get("HTTP_X_AMZ_OBJECT_LOCK_LEGAL_HOLD", key.lock_legal_status)

    def _composite_checksum_headers(self, path: str, query: str, headers: list) -> list:
        # S3 answers a composite checksum as "<base64>-<parts>" with x-amz-checksum-type COMPOSITE;
        # moto's HeadObject leaves out both.
        names = [
            k for k, v in headers if k.lower().startswith("x-amz-checksum-") and k.lower() != "x-amz-checksum-type"
        ]
        if not names or any(k.lower() == "x-amz-checksum-type" for k, _ in headers):
            return headers
        version = parse_qs(query).get("versionId", [None])[0]
        key = self._key(path, version)
        if key is None or getattr(key, "checksum_type", None) != "COMPOSITE" or not key.checksum_parts:
            return headers
        out = []
        for k, v in headers:
            if k in names and "-" not in v:
                v = f"{v}-{key.checksum_parts}"
            out.append((k, v))
        out.append(("x-amz-checksum-type", "COMPOSITE"))
        return out

    @staticmethod
    def _bucket_has_lock(bucket: str) -> bool:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        try:
            found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_bucket(bucket)
        except Exception:  # noqa: BLE001 - unknown bucket: let moto answer NoSuchBucket
            return True
        return bool(getattr(found, "object_lock_enabled", False))


def _quiet_handler_class():
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # no access log in test output
            pass

    return QuietHandler


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m standin.s3", description="serve the stand-in S3")
    parser.add_argument("--bucket", action="append", default=[])
    parser.add_argument("--object-lock", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = S3Server(port=args.port).start()
    for bucket in args.bucket:
        server.create_bucket(bucket, object_lock=args.object_lock)
    print(server.url, flush=True)

    def terminate(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
