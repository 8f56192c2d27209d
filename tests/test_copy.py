"""copy step, through `python -m steps.copy` against the stand-in S3 (moto + S3's own checks).

Archives are real checkpoint tars as the runtimes write them (standin.kube.archive: containerd's
or CRI-O's identity metadata around the CRIU sample), small (~170 KiB) or padded to 11 MiB with
--part-size at S3's 5 MiB minimum to take the multipart path. Every test also checks what stayed
on the "node" (a tmp checkpoint directory). The last tests run the evidence pipeline: checkpoint
on a FakeKube node, then copy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from standin import shared_dir
from standin.kube import checkpoint_members, write_checkpoint_archive
from standin.s3 import S3Server

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "evidence"
LOCKED = "evidence-locked"
MiB = 1024 * 1024
ARCHIVE = "checkpoint-web-0_default-app-2024-05-01T12:00:00+02:00.tar"
CONTAINER_ID = hashlib.sha256(b"app").hexdigest()
POD_UID = "6f1c2a3b-0000-4000-8000-00000000abcd"
WORKFLOW_UID = "0b4c2d9e-1111-4222-8333-944445555666"
ALERT_TIME = "2024-05-01T09:59:58.123456789Z"
FOLDER = f"falco-response/default/web-0/app/20240501T095958Z-falco-response-0123456789abcdef/{WORKFLOW_UID}"
KEY = f"{FOLDER}/checkpoint.tar"
MANIFEST = f"{FOLDER}/manifest.json"
CHECKPOINTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))  # ARCHIVE's time


@pytest.fixture
def s3():
    with S3Server() as server:
        server.create_bucket(BUCKET)
        server.create_bucket(LOCKED, object_lock=True)
        server.requests.clear()  # only what the step does
        yield server


@pytest.fixture
def node(tmp_path) -> Path:
    directory = tmp_path / "node" / "checkpoints"
    directory.mkdir(parents=True)
    directory.chmod(0o700)
    return directory


def alert_text() -> str:
    path = shared_dir() / "falco-events" / "01_terminal_shell_in_container.falco-docs.json"
    return path.read_text() if path.exists() else json.dumps({"rule": "Terminal shell in container", "time": ALERT_TIME})


def node_pod(container_id: str = CONTAINER_ID, pod_uid: str = POD_UID, restarts: int = 0) -> dict:
    """Pod default/web-0 as the node's runtime knows it when it checkpoints container app."""
    return {
        "metadata": {"name": "web-0", "namespace": "default", "uid": pod_uid, "creationTimestamp": "2024-05-01T09:00:00Z"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
        "status": {"containerStatuses": [{
            "name": "app", "containerID": f"containerd://{container_id}", "restartCount": restarts,
            "imageID": "docker.io/library/nginx@sha256:" + "c" * 64, "state": {"running": {"startedAt": "2024-05-01T09:00:01Z"}},
        }]},
    }  # fmt: skip


def make_archive(directory: Path, size: int, name: str = ARCHIVE, runtime: str = "containerd", **pod) -> bytes:
    """A checkpoint archive of node_pod(**pod)'s container app, about `size` bytes (padded with
    memory pages), written as the runtime writes it: 0600."""
    members = checkpoint_members(node_pod(**pod), "app", CHECKPOINTED, runtime)
    overhead = sum(len(data or b"") + 1536 for _, data in members) + 10240
    path = directory / name
    write_checkpoint_archive(path, members, max(0, size - overhead), CHECKPOINTED.timestamp())
    return path.read_bytes()


def put_back(directory: Path, data: bytes, name: str = ARCHIVE) -> None:
    """The same archive on the node again (an attempt that died before deleting it)."""
    path = directory / name
    path.write_bytes(data)
    path.chmod(0o600)


def flags(s3: S3Server, node: Path, tmp_path: Path, **overrides: str) -> dict[str, str]:
    values = {
        "archive": f"/var/lib/kubelet/checkpoints/{ARCHIVE}",
        "checkpoint-dir": str(node),
        "namespace": "default",
        "pod": "web-0",
        "container": "app",
        "container-id": CONTAINER_ID,
        "node": "node-1",
        "pod-uid": POD_UID,
        "image": "docker.io/library/nginx:1.27",
        "image-id": "docker.io/library/nginx@sha256:" + "c" * 64,
        "rule": "Terminal shell in container",
        "priority": "Notice",
        "alert-time": ALERT_TIME,
        "policy": "shells",
        "workflow-name": "falco-response-0123456789abcdef",
        "workflow-namespace": "falco-response",
        "workflow-uid": WORKFLOW_UID,
        "alert-b64": base64.b64encode(alert_text().encode()).decode(),
        "bucket": BUCKET,
        "endpoint-url": s3.url,
        "region": "us-east-1",
        "prefix": "falco-response",
        "object-lock-mode": "",
        "object-lock-days": "0",
        "sse": "",
        "sse-kms-key-id": "",
        "outputs-dir": str(tmp_path / "out"),
    }
    values.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return {k: v for k, v in values.items() if v is not None}


def run_copy(s3: S3Server, values: dict[str, str], env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ.update(s3.env(), STEP_RETRY_BASE_DELAY="0.01", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    environ.update(env or {})
    argv = [sys.executable, "-m", "steps.copy", *(f"--{k}={v}" for k, v in values.items())]
    return subprocess.run(argv, env=environ, cwd=ROOT, capture_output=True, text=True, timeout=120)


def outputs(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "out"
    return {p.name: p.read_text() for p in directory.iterdir()} if directory.exists() else {}


def one_error_line(result, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def keys(s3: S3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(s3: S3Server) -> list[tuple[str, str, str, int]]:
    return [r for r in s3.requests if r[0] in ("PUT", "POST")]


# --- the happy paths --------------------------------------------------------------------------


def test_single_put_object_metadata_and_manifest(s3, node, tmp_path):
    data = make_archive(node, 64 * 1024)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = run_copy(s3, flags(s3, node, tmp_path))
    after = datetime.now(timezone.utc)
    assert result.returncode == 0, result.stderr
    sha = hashlib.sha256(data).hexdigest()
    client = s3.client()

    out = outputs(tmp_path)
    assert out["evidence-uri"] == f"s3://{BUCKET}/{KEY}"
    assert out["manifest-uri"] == f"s3://{BUCKET}/{MANIFEST}"
    assert out["sha256"] == sha
    assert out["size"] == str(len(data))

    head = client.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert out["version-id"] == head["VersionId"]
    assert head["ContentLength"] == len(data)
    assert head["ChecksumSHA256"] == b64sha(data)  # full-object checksum of a single PUT
    assert head["Metadata"]["sha256"] == sha
    assert head["Metadata"]["namespace"] == "default" and head["Metadata"]["pod"] == "web-0"
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    assert sorted(keys(s3, BUCKET)) == sorted([KEY, MANIFEST])
    assert not [r for r in s3.requests if "partNumber" in r[2]]  # one PutObject, no multipart

    body = client.get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read()
    mhead = client.head_object(Bucket=BUCKET, Key=MANIFEST, ChecksumMode="ENABLED")
    assert mhead["ChecksumSHA256"] == b64sha(body)
    assert mhead["Metadata"]["evidence-sha256"] == sha
    manifest = json.loads(body)
    assert manifest["schema"] == "falco-response.io/evidence-manifest/v1"
    assert manifest["alert_text"] == alert_text()  # byte for byte as received
    assert manifest["alert"] == json.loads(alert_text())
    assert manifest["alert_sha256"] == hashlib.sha256(alert_text().encode()).hexdigest()
    assert manifest["rule"] == "Terminal shell in container"
    assert manifest["priority"] == "Notice"
    assert manifest["alert_time"] == ALERT_TIME
    assert manifest["policy"] == "shells"
    assert manifest["target"] == {
        "namespace": "default",
        "pod": "web-0",
        "pod_uid": POD_UID,
        "container": "app",
        "container_id": CONTAINER_ID,
        "node": "node-1",
        "image": "docker.io/library/nginx:1.27",
        "image_id": "docker.io/library/nginx@sha256:" + "c" * 64,
        "image_digest": "sha256:" + "c" * 64,
    }
    assert manifest["checkpoint"]["kubelet_path"] == f"/var/lib/kubelet/checkpoints/{ARCHIVE}"
    assert manifest["checkpoint"]["file"] == ARCHIVE
    assert manifest["checkpoint"]["size"] == len(data)
    assert manifest["checkpoint"]["sha256"] == sha
    upload = manifest["upload"]
    started = datetime.fromisoformat(upload["started"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(upload["finished"].replace("Z", "+00:00"))
    assert before <= started <= finished <= after
    assert (upload["method"], upload["parts"], upload["checksum"]) == ("single", 1, b64sha(data))
    assert manifest["evidence"] == {
        "uri": f"s3://{BUCKET}/{KEY}",
        "bucket": BUCKET,
        "key": KEY,
        "version_id": head["VersionId"],
        "region": "us-east-1",
        "endpoint": s3.url,
    }
    assert manifest["manifest"] == {"uri": f"s3://{BUCKET}/{MANIFEST}", "key": MANIFEST}
    assert manifest["object_lock"] is None and manifest["sse"] is None
    assert manifest["workflow"] == {
        "namespace": "falco-response",
        "name": "falco-response-0123456789abcdef",
        "uid": WORKFLOW_UID,
    }
    identity = manifest["identity"]
    assert identity["verified"] == {"container_id": CONTAINER_ID, "pod_uid": POD_UID} and identity["match"] is True
    assert (identity["archive"]["container_id"], identity["archive"]["pod_uid"]) == (CONTAINER_ID, POD_UID)
    assert identity["archive"]["runtime_name"] == f"app_web-0_default_{POD_UID}_0"  # containerd makeContainerName
    assert identity["archive"]["sources"] == [
        "config.dump id", "spec.dump io.kubernetes.cri.sandbox-uid", "status.dump id", "status.dump io.kubernetes.pod.uid",
    ]
    assert (head["Metadata"]["workflow-uid"], head["Metadata"]["pod-uid"]) == (WORKFLOW_UID, POD_UID)
    assert set(manifest["versions"]) == {"python", "boto3", "botocore", "kubernetes", "falco-argo-response"}
    assert manifest["versions"]["python"] == sys.version.split()[0]

    assert list(node.iterdir()) == []  # deleted only after both objects were verified


def test_multipart_with_object_lock_and_sse(s3, node, tmp_path):
    data = make_archive(node, 11 * MiB + 123)
    values = flags(
        s3, node, tmp_path, bucket=LOCKED, object_lock_mode="COMPLIANCE", object_lock_days="7", sse="AES256",
        part_size=str(5 * MiB),
    )  # fmt: skip
    result = run_copy(s3, values)
    assert result.returncode == 0, result.stderr
    client = s3.client()
    parts = [r for r in s3.requests if r[0] == "PUT" and "partNumber" in r[2]]
    assert len(parts) == 3 and all(r[3] == 200 for r in parts)

    head = client.head_object(Bucket=LOCKED, Key=KEY, ChecksumMode="ENABLED")
    digests = [hashlib.sha256(data[i : i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)]
    composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    assert head["ChecksumSHA256"] == f"{composite}-3"
    assert head["ChecksumType"] == "COMPOSITE"
    # Read once: the whole-file SHA-256 is known only after the last part, so it is in the
    # manifest (checked below), not in the metadata set at CreateMultipartUpload.
    assert "sha256" not in head["Metadata"] and head["Metadata"]["workflow-uid"] == WORKFLOW_UID
    assert head["ContentLength"] == len(data)
    assert client.get_object(Bucket=LOCKED, Key=KEY)["Body"].read() == data

    expected_until = datetime.now(timezone.utc) + timedelta(days=7)
    for key in (KEY, MANIFEST):
        h = client.head_object(Bucket=LOCKED, Key=key)
        assert h["ObjectLockMode"] == "COMPLIANCE"
        assert abs((h["ObjectLockRetainUntilDate"] - expected_until).total_seconds()) < 120
        assert h.get("ObjectLockLegalHoldStatus") in (None, "OFF")  # retention, no legal hold
        assert h["ServerSideEncryption"] == "AES256"
        with pytest.raises(ClientError) as denied:
            client.delete_object(Bucket=LOCKED, Key=key, VersionId=h["VersionId"])
        assert denied.value.response["Error"]["Code"] == "AccessDenied"

    manifest = json.loads(client.get_object(Bucket=LOCKED, Key=MANIFEST)["Body"].read())
    assert manifest["object_lock"]["mode"] == "COMPLIANCE"
    until = datetime.fromisoformat(manifest["object_lock"]["retain_until"].replace("Z", "+00:00"))
    assert abs((until - head["ObjectLockRetainUntilDate"]).total_seconds()) < 2
    assert manifest["sse"] == {"algorithm": "AES256", "kms_key_id": ""}
    assert manifest["upload"]["method"] == "multipart" and manifest["upload"]["parts"] == 3
    assert manifest["upload"]["checksum"] == f"{composite}-3"
    assert manifest["checkpoint"]["sha256"] == hashlib.sha256(data).hexdigest() == outputs(tmp_path)["sha256"]
    assert manifest["evidence"]["version_id"] == head["VersionId"] == outputs(tmp_path)["version-id"]
    assert s3.incomplete_uploads(LOCKED) == []
    assert list(node.iterdir()) == []


def test_object_lock_on_a_bucket_without_it_fails_and_keeps_the_archive(s3, node, tmp_path):
    make_archive(node, 4096)
    result = run_copy(s3, flags(s3, node, tmp_path, object_lock_mode="GOVERNANCE", object_lock_days="1"))
    assert result.returncode == 1
    one_error_line(result, "InvalidRequest", "Object Lock", "archive stays on node node-1")
    assert [p.name for p in node.iterdir()] == [ARCHIVE]


def test_store_without_checksums_is_verified_by_reading_back(s3, node, tmp_path):
    data = make_archive(node, 6 * MiB)
    s3.strip_checksums = True
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    assert result.returncode == 0, result.stderr
    assert "reading the object back" in result.stdout
    assert [r for r in s3.requests if r[0] == "GET" and r[1] == f"/{BUCKET}/{KEY}"]
    assert outputs(tmp_path)["sha256"] == hashlib.sha256(data).hexdigest()
    assert list(node.iterdir()) == []


# --- failures keep the archive ------------------------------------------------------------------


def test_s3_down_mid_upload_keeps_archive_and_aborts_then_retry_succeeds(s3, node, tmp_path):
    data = make_archive(node, 11 * MiB)
    values = flags(s3, node, tmp_path, part_size=str(5 * MiB))
    s3.fail_requests(100, status=503, method="PUT", query_contains="partNumber=2")
    result = run_copy(s3, values)
    assert result.returncode == 75  # transient: Argo's retryStrategy retries exit 75 only
    one_error_line(result, "upload part 2", "503", "archive stays on node node-1")
    assert [p.name for p in node.iterdir()] == [ARCHIVE]
    assert (node / ARCHIVE).read_bytes() == data
    assert s3.incomplete_uploads(BUCKET) == []  # aborted
    assert keys(s3, BUCKET) == []
    assert outputs(tmp_path) == {}
    assert len([r for r in s3.requests if "partNumber=2" in r[2]]) == 5

    s3.clear_faults()
    again = run_copy(s3, values)
    assert again.returncode == 0, again.stderr
    assert list(node.iterdir()) == []
    assert s3.client().get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    assert outputs(tmp_path)["sha256"] == hashlib.sha256(data).hexdigest()


def test_dropped_connections_are_retried(s3, node, tmp_path):
    data = make_archive(node, 6 * MiB)
    s3.fail_requests(2, status=0, method="PUT", query_contains="partNumber=1")
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    assert result.returncode == 0, result.stderr
    assert [r[3] for r in s3.requests if "partNumber=1" in r[2]] == [0, 0, 200]
    assert s3.client().get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data


def test_s3_unreachable_keeps_the_archive(s3, node, tmp_path):
    make_archive(node, 4096)
    values = flags(s3, node, tmp_path, endpoint_url="http://127.0.0.1:9")  # nothing listens there
    result = run_copy(s3, values)
    assert result.returncode == 75
    one_error_line(result, "archive stays on node node-1")
    assert [p.name for p in node.iterdir()] == [ARCHIVE]


@pytest.mark.parametrize("size", [4096, 11 * MiB])
def test_corruption_in_transit_is_rejected_and_archive_kept(s3, node, tmp_path, size):
    make_archive(node, size)
    s3.corrupt_next_upload()
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    assert result.returncode == 1
    one_error_line(result, "BadDigest", "archive stays on node node-1")
    assert [p.name for p in node.iterdir()] == [ARCHIVE]
    assert s3.incomplete_uploads(BUCKET) == []
    assert keys(s3, BUCKET) == []


def test_stored_parts_that_differ_fail_verification(s3, node, tmp_path):
    # A store that does not check checksums keeps a flipped byte; the composite checksum it
    # computes from what it stored no longer matches the one computed while reading the archive.
    make_archive(node, 11 * MiB)
    s3.corrupt_next_upload(after_checksum=True)
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    assert result.returncode == 1
    one_error_line(result, "verification of", "stored checksum", "archive stays on node node-1")
    assert [p.name for p in node.iterdir()] == [ARCHIVE]
    assert MANIFEST not in keys(s3, BUCKET)


@pytest.mark.parametrize("part_mib, parts, at_once", [(5, 7, 4), (16, 3, 2)])
def test_parts_go_concurrently_within_a_memory_bound(s3, node, tmp_path, monkeypatch, part_mib, parts, at_once):
    """One read, parts in parallel, at most copy.MAX_PARTS_IN_FLIGHT (4) parts and at most
    copy.PARTS_MEMORY (32 MiB) of the archive at once: a part is read only when a slot is free, so
    S3 never sees more UploadParts in flight than that. The stand-in holds the first parts until
    `at_once` are in flight together (the previous code sent one at a time: it never got there)."""
    from standin import s3 as standin_s3

    original, lock = standin_s3._Middleware._upload, threading.Lock()
    state = {"now": 0, "most": 0}
    reached = threading.Event()

    def counting(self, environ, start_response, before_store=None):
        if "partNumber" not in environ.get("QUERY_STRING", ""):
            return original(self, environ, start_response, before_store)
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
            if state["now"] >= at_once:
                reached.set()
        try:
            reached.wait(10)
            return original(self, environ, start_response, before_store)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(standin_s3._Middleware, "_upload", counting)
    data = make_archive(node, (parts - 1) * part_mib * MiB + 4096)
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(part_mib * MiB)))
    assert result.returncode == 0, result.stderr
    assert reached.is_set() and state["most"] == at_once, state
    assert f"{parts} parts of {part_mib * MiB} bytes, {at_once} at a time" in result.stdout
    assert len([r for r in s3.requests if "partNumber" in r[2]]) == parts
    assert s3.client().get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    assert outputs(tmp_path)["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_part_failing_while_others_are_in_flight_aborts_and_keeps_the_archive(s3, node, tmp_path):
    """Part 3 of 7 refused (403, not retried) while parts 1, 2 and 4 are on their way: no new part
    is read or sent after it, the parts in flight finish, the upload is aborted, nothing is stored,
    and the archive stays on the node untouched."""
    data = make_archive(node, 31 * MiB)
    s3.fail_requests(1, status=403, method="PUT", query_contains="partNumber=3")
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    assert result.returncode == 1
    one_error_line(result, "upload part 3", "403 AccessDenied", "archive stays on node node-1")
    assert (node / ARCHIVE).read_bytes() == data
    assert s3.incomplete_uploads(BUCKET) == [] and keys(s3, BUCKET) == []
    assert [r for r in s3.requests if r[0] == "DELETE" and "uploadId" in r[2]]
    assert outputs(tmp_path) == {}


def test_terminated_mid_upload_stops_the_parts_aborts_and_keeps_the_archive(s3, node, tmp_path, monkeypatch):
    """Argo's deadline (SIGTERM) while parts are in flight: no part is started after it, the parts
    on their way finish, the multipart upload is aborted (S3 keeps nothing) and the archive stays."""
    from standin import s3 as standin_s3

    original, arrived, release = standin_s3._Middleware._upload, threading.Event(), threading.Event()

    def holding(self, environ, start_response, before_store=None):
        if "partNumber" in environ.get("QUERY_STRING", ""):
            arrived.set()
            release.wait(20)
        return original(self, environ, start_response, before_store)

    monkeypatch.setattr(standin_s3._Middleware, "_upload", holding)
    data = make_archive(node, 31 * MiB)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environ.update(s3.env(), STEP_RETRY_BASE_DELAY="0.01", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    values = flags(s3, node, tmp_path, part_size=str(5 * MiB))
    argv = [sys.executable, "-m", "steps.copy", *(f"--{k}={v}" for k, v in values.items())]
    step = subprocess.Popen(argv, env=environ, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(30)
        step.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # the signal is handled while the parts are held
        release.set()
        _, stderr = step.communicate(timeout=60)
    finally:
        release.set()
        step.kill()
    assert step.returncode == 130, stderr
    assert (node / ARCHIVE).read_bytes() == data
    assert s3.incomplete_uploads(BUCKET) == [] and keys(s3, BUCKET) == []
    assert len([r for r in s3.requests if "partNumber" in r[2]]) <= 4  # the ones in flight, no more


def test_retry_after_success_repeats_the_outputs(s3, node, tmp_path):
    make_archive(node, 4096)
    values = flags(s3, node, tmp_path)
    assert run_copy(s3, values).returncode == 0
    first = outputs(tmp_path)
    again = run_copy(s3, values)  # Argo retried after the pod died past the delete
    assert again.returncode == 0, again.stderr
    assert "already copied" in again.stdout
    assert outputs(tmp_path) == first


def test_missing_archive_fails(s3, node, tmp_path):
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 1
    one_error_line(result, "not found on node node-1")


# --- refusals: nothing read, nothing sent -----------------------------------------------------------


OTHER = "checkpoint-web-1_default-app-2024-05-01T12:00:00+02:00.tar"


@pytest.mark.parametrize(
    "archive",
    [
        f"/var/lib/kubelet/checkpoints/../../../etc/{ARCHIVE}",
        f"checkpoints/{ARCHIVE}",
        "/etc/shadow",
        f"/var/lib/kubelet/checkpoints/{ARCHIVE}/..",
        f"/var/lib/kubelet/checkpoints/{OTHER}",  # another pod's checkpoint
        "/var/lib/kubelet/checkpoints/checkpoint-web-0_default-app-../../x.tar",
        f"/var/lib/kubelet/checkpoints/{ARCHIVE}\x00",
        "",
    ],
)
def test_archive_outside_the_kubelet_pattern_is_refused(s3, node, tmp_path, archive):
    make_archive(node, 4096)
    make_archive(node, 4096, OTHER)
    values = flags(s3, node, tmp_path, archive=archive.replace("\x00", "%00"))
    result = run_copy(s3, values)
    assert result.returncode == 1
    one_error_line(result, "archive")
    assert s3.requests == []
    assert sorted(p.name for p in node.iterdir()) == sorted([ARCHIVE, OTHER])


def test_symlink_in_place_of_the_archive_is_not_followed(s3, node, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("node secret")
    (node / ARCHIVE).symlink_to(secret)
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 1
    one_error_line(result, "cannot open")
    assert uploads(s3) == []
    assert secret.read_text() == "node secret" and (node / ARCHIVE).is_symlink()


@pytest.mark.parametrize(
    "alert,message",
    [
        ({"alert-b64": base64.b64encode(b"not json").decode()}, "alert: not JSON"),
        ({"alert-b64": base64.b64encode(b"[1, 2]").decode()}, "not an object"),
        ({"alert-b64": "%%%not-base64%%%"}, "not base64"),
        ({"alert-b64": None, "alert": '{"rule": '}, "alert: not JSON"),
        ({"alert-b64": None}, "give the alert once"),
    ],
)
def test_bad_alert_is_refused(s3, node, tmp_path, alert, message):
    make_archive(node, 4096)
    result = run_copy(s3, flags(s3, node, tmp_path, **{k.replace("-", "_"): v for k, v in alert.items()}))
    assert result.returncode == 1
    one_error_line(result, message)
    assert s3.requests == []
    assert [p.name for p in node.iterdir()] == [ARCHIVE]


@pytest.mark.parametrize(
    "override,message",
    [
        ({"namespace": "../kube-system"}, "namespace"),
        ({"namespace": "default\n"}, "namespace"),
        ({"image": "nginx:1.27\n"}, "image"),
        ({"container_id": "$(id)"}, "container-id"),
        ({"container_id": CONTAINER_ID[:12]}, "container-id: '" + CONTAINER_ID[:12] + "' is not the full 64-hex container id"),
        ({"pod_uid": None}, "--pod-uid"),
        ({"pod_uid": "../x"}, "pod-uid"),
        ({"workflow_uid": None}, "--workflow-uid"),
        ({"alert_time": "yesterday"}, "alert-time"),
        ({"workflow_name": "wf/../../x"}, "workflow-name"),
        ({"prefix": "../escape"}, "prefix"),
        ({"bucket": "Evidence_Bucket"}, "bucket"),
        ({"endpoint_url": "file:///etc/passwd"}, "endpoint-url"),
        ({"object_lock_mode": "FOREVER"}, "object-lock-mode"),
        ({"object_lock_mode": "COMPLIANCE", "object_lock_days": "0"}, "object-lock-days"),
        ({"sse": "rot13"}, "sse"),
        ({"sse_kms_key_id": "alias/x"}, "sse-kms-key-id"),
        ({"part_size": "1024"}, "part-size"),
        ({"image": "nginx; rm -rf /"}, "image"),
    ],
)
def test_bad_flags_are_refused(s3, node, tmp_path, override, message):
    make_archive(node, 4096)
    result = run_copy(s3, flags(s3, node, tmp_path, **override))
    assert result.returncode == 1
    one_error_line(result, message)
    assert s3.requests == []
    assert [p.name for p in node.iterdir()] == [ARCHIVE]


def test_missing_credentials_are_refused(s3, node, tmp_path):
    make_archive(node, 4096)
    result = run_copy(s3, flags(s3, node, tmp_path), env={"AWS_SECRET_ACCESS_KEY": ""})
    assert result.returncode == 1
    one_error_line(result, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    assert s3.requests == []


# --- the evidence pipeline on one node ----------------------------------------------------------------


def checkpoint_step(kube, step_env, tmp_path: Path, pod: dict, **extra: str) -> subprocess.CompletedProcess:
    """`python -m steps.checkpoint` for container app of `pod`, with the identity verify output."""
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "app")
    values = {
        "namespace": "default", "pod": pod["metadata"]["name"], "container": "app", "node": "node-1",
        "pod-uid": pod["metadata"]["uid"], "container-id": status["containerID"].partition("://")[2],
        "path": "kubelet", "timeout": "30", "ca-bundle": str(kube.kubelet_ca), "outputs-dir": str(tmp_path / "ckpt-out"),
        **extra,
    }  # fmt: skip
    argv = [sys.executable, "-m", "steps.checkpoint", *(f"--{k}={v}" for k, v in values.items())]
    return subprocess.run(argv, env=step_env(step="checkpoint"), cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_checkpoint_then_copy_on_the_same_node(kube, step_env, s3, tmp_path):
    pod = kube.add_pod("default", "web-0", "node-1", containers=[{"name": "app", "image": "nginx:1.27", "id": CONTAINER_ID}])
    checkpoint = checkpoint_step(kube, step_env, tmp_path, pod)
    assert checkpoint.returncode == 0, checkpoint.stderr
    archive = (tmp_path / "ckpt-out" / "archive").read_text()
    node_dir = kube.checkpoint_dir("node-1")
    name = archive.rsplit("/", 1)[1]
    original = (node_dir / name).read_bytes()

    values = flags(s3, node_dir, tmp_path, archive=archive, bucket=LOCKED, object_lock_mode="GOVERNANCE",
                   object_lock_days="1", pod_uid=pod["metadata"]["uid"])  # fmt: skip
    copy = run_copy(s3, values, env=kube.env())
    assert copy.returncode == 0, copy.stderr
    assert list(node_dir.iterdir()) == []

    stored = s3.client().get_object(Bucket=LOCKED, Key=KEY)["Body"].read()
    assert stored == original
    assert outputs(tmp_path)["sha256"] == hashlib.sha256(original).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(stored)) as tar:
        members = tar.getnames()
    assert "config.dump" in members and "spec.dump" in members and "status.dump" in members
    assert any(m.startswith("checkpoint/") for m in members)
    assert members.index("config.dump") > members.index("checkpoint/pages-1.img")  # containerd: lexical order
    manifest = json.loads(s3.client().get_object(Bucket=LOCKED, Key=MANIFEST)["Body"].read())
    assert manifest["checkpoint"]["kubelet_path"] == archive
    assert manifest["checkpoint"]["file"] == name
    assert manifest["object_lock"]["mode"] == "GOVERNANCE"
    assert manifest["identity"]["archive"]["pod_uid"] == pod["metadata"]["uid"] == manifest["target"]["pod_uid"]


def test_a_restart_between_verify_and_the_checkpoint_is_not_taken_as_evidence(kube, step_env, s3, tmp_path):
    """The attacker kills PID 1 as the kubelet is asked for the checkpoint (after the checkpoint
    step's own check): the kubelet dumps the container running now, the restarted one
    (FakeKube.restart_container: new containerID, lastState.terminated with the old one). Its
    config.dump/status.dump name the new id, so copy uploads nothing and keeps the archive. On the
    previous code copy stored it and its manifest named the verified container as the target."""
    pod = kube.add_pod("default", "web-0", "node-1", containers=[{"name": "app", "image": "nginx:1.27", "id": CONTAINER_ID}])
    restarted: list[str] = []

    def kill_pid_1(method: str, path: str) -> None:
        if method == "POST" and path.startswith("/checkpoint/") and not restarted:
            restarted.append(kube.restart_container("default", "web-0", "app"))

    remove = kube.on_request(kill_pid_1)
    try:
        checkpoint = checkpoint_step(kube, step_env, tmp_path, pod)
    finally:
        remove()
    assert checkpoint.returncode == 0, checkpoint.stderr
    archive = (tmp_path / "ckpt-out" / "archive").read_text()
    node_dir = kube.checkpoint_dir("node-1")
    name = archive.rsplit("/", 1)[1]

    result = run_copy(s3, flags(s3, node_dir, tmp_path, archive=archive, pod_uid=pod["metadata"]["uid"]))
    assert result.returncode == 1
    one_error_line(
        result, f"{name} is not a checkpoint of the verified container", f"it names container {restarted[0][:12]}",
        f"verify checked container {CONTAINER_ID[:12]}", "the container restarted in between", "nothing uploaded as evidence",
        "the archive stays on node node-1",
    )  # fmt: skip
    assert uploads(s3) == [] and keys(s3, BUCKET) == []
    assert [p.name for p in node_dir.iterdir()] == [name]


@pytest.mark.parametrize(
    "pod,why",
    [
        ({"container_id": hashlib.sha256(b"restarted").hexdigest(), "restarts": 1}, "the container restarted"),
        ({"pod_uid": "9a9a9a9a-0000-4000-8000-0000000000ff"}, "the pod was replaced"),
    ],
)
def test_an_archive_of_another_container_is_refused_and_kept(s3, node, tmp_path, pod, why):
    """The archive's own metadata (config.dump id; spec.dump io.kubernetes.cri.sandbox-uid and
    status.dump as containerd's CheckpointContainer writes them) decides, not its file name."""
    data = make_archive(node, 4096, **pod)
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 1
    one_error_line(result, "is not a checkpoint of the verified container", why, "the archive stays on node node-1")
    assert uploads(s3) == []
    assert (node / ARCHIVE).read_bytes() == data and outputs(tmp_path) == {}


def test_a_crio_archive_names_its_container_in_spec_dump(s3, node, tmp_path):
    """CRI-O writes no status.dump; spec.dump's annotations carry io.kubernetes.cri-o.ContainerID
    and the kubelet's io.kubernetes.pod.uid label (internal/factory/container SpecAddAnnotations),
    and its tar puts config.dump after checkpoint/ (internal/lib/checkpoint.go exportCheckpoint)."""
    make_archive(node, 4096, runtime="cri-o")
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 0, result.stderr
    manifest = json.loads(s3.client().get_object(Bucket=BUCKET, Key=MANIFEST)["Body"].read())
    archive = manifest["identity"]["archive"]
    assert archive["sources"] == ["config.dump id", "spec.dump io.kubernetes.cri-o.ContainerID", "spec.dump io.kubernetes.pod.uid"]
    assert archive["runtime_name"] == f"k8s_app_web-0_default_{POD_UID}_0"
    assert (archive["container"], archive["pod"], archive["namespace"]) == ("app", "web-0", "default")

    other = make_archive(node, 4096, runtime="cri-o", pod_uid="9a9a9a9a-0000-4000-8000-0000000000ff")
    again = run_copy(s3, flags(s3, node, tmp_path, workflow_uid="1b4c2d9e-1111-4222-8333-944445555666"))
    assert again.returncode == 1
    one_error_line(again, "the pod was replaced in between")
    assert (node / ARCHIVE).read_bytes() == other


def test_metadata_that_contradicts_itself_or_no_tar_is_refused(s3, node, tmp_path):
    members = checkpoint_members(node_pod(), "app", CHECKPOINTED)
    forged = [(n, json.dumps({**json.loads(d), "id": "f" * 64}).encode() if n == "status.dump" else d) for n, d in members]
    write_checkpoint_archive(node / ARCHIVE, forged, 0, CHECKPOINTED.timestamp())
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 1
    one_error_line(result, "its metadata names different container ids", "config.dump id=", "status.dump id=")
    (node / ARCHIVE).write_bytes(os.urandom(4096))
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 1
    one_error_line(result, "is not a readable tar archive", "the archive stays on node node-1")
    assert uploads(s3) == []


# --- write-once evidence -----------------------------------------------------------------------------


def test_a_replay_never_overwrites_the_evidence(s3, node, tmp_path):
    """Every PutObject carries If-None-Match: * (S3 answers 412 PreconditionFailed when the key
    exists, API_PutObject). A second copy to the same key with another archive fails in one line
    and the first object stays the only version. On the previous code the second PUT replaced it."""
    first = make_archive(node, 512 * 1024)
    assert run_copy(s3, flags(s3, node, tmp_path)).returncode == 0
    second = make_archive(node, 512 * 1024)  # new memory pages, same name, same workflow run
    assert second != first
    result = run_copy(s3, flags(s3, node, tmp_path))
    assert result.returncode == 1
    one_error_line(result, f"s3://{BUCKET}/{KEY} already exists and is not this archive", "nothing was overwritten",
                   "the archive stays on node node-1")  # fmt: skip
    client = s3.client()
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == first
    versions = client.list_object_versions(Bucket=BUCKET, Prefix=KEY).get("Versions", [])
    assert len(versions) == 1
    assert (node / ARCHIVE).read_bytes() == second
    refused = [r for r in s3.requests if r[0] == "PUT" and r[1] == f"/{BUCKET}/{KEY}"]
    assert [r[3] for r in refused] == [200, 412]


@pytest.mark.parametrize("size", [4096, 11 * MiB])
def test_a_retry_of_the_same_run_keeps_what_it_stored(s3, node, tmp_path, size):
    """Argo retried copy after it stored both objects but before it deleted the archive: the 412s
    find this very archive (size and sha256 metadata) and this run's manifest, keep them, and the
    step finishes; for a multipart upload at CompleteMultipartUpload, the new upload is aborted. The
    retention the first attempt set is the one verified (the retry's clock has moved on)."""
    data = make_archive(node, size)
    values = flags(s3, node, tmp_path, part_size=str(5 * MiB), bucket=LOCKED, object_lock_mode="GOVERNANCE",
                   object_lock_days="1")  # fmt: skip
    first_run = run_copy(s3, values)
    assert first_run.returncode == 0, first_run.stderr
    first = outputs(tmp_path)
    # The retry runs later: its "now + 1 day" is not the first attempt's. Make that plain (seconds
    # apart would be within the 1 s the check allows): the stored retention, shortened with a
    # GOVERNANCE bypass, is what the retry must verify against, not its own clock.
    earlier = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    s3.client().put_object_retention(
        Bucket=LOCKED, Key=KEY, VersionId=first["version-id"], BypassGovernanceRetention=True, ChecksumAlgorithm="SHA256",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": earlier},
    )  # fmt: skip
    put_back(node, data)
    s3.requests.clear()
    again = run_copy(s3, values)
    assert again.returncode == 0, again.stderr
    assert "already holds this archive" in again.stdout and "already holds this archive's manifest" in again.stdout
    assert outputs(tmp_path) == first and list(node.iterdir()) == []
    assert len(s3.client().list_object_versions(Bucket=LOCKED).get("Versions", [])) == 2
    assert s3.incomplete_uploads(LOCKED) == []
    assert 412 in [r[3] for r in s3.requests]


def test_a_retry_on_a_store_without_checksums_reads_the_object_back_to_know_it(s3, node, tmp_path):
    """A multipart object has no sha256 metadata (read once: not known at CreateMultipartUpload);
    on a store that answers no checksums, the 412 of a retry of the same run is resolved by reading
    the object back from S3 (never the file again) and comparing its SHA-256."""
    data = make_archive(node, 11 * MiB)
    s3.strip_checksums = True
    values = flags(s3, node, tmp_path, part_size=str(5 * MiB))
    assert run_copy(s3, values).returncode == 0
    first = outputs(tmp_path)
    put_back(node, data)
    again = run_copy(s3, values)
    assert again.returncode == 0, again.stderr
    assert "already holds this archive" in again.stdout
    assert outputs(tmp_path) == first and list(node.iterdir()) == []


def test_keys_are_unique_per_workflow_run(s3, node, tmp_path):
    """The same alert replayed after the dedupe window gets the same deterministic workflow name
    but a new workflow UID: its evidence goes next to the first, never over it."""
    first = make_archive(node, 512 * 1024)
    assert run_copy(s3, flags(s3, node, tmp_path)).returncode == 0
    second = make_archive(node, 512 * 1024)
    other = "1b4c2d9e-1111-4222-8333-944445555666"
    assert run_copy(s3, flags(s3, node, tmp_path, workflow_uid=other)).returncode == 0
    client = s3.client()
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == first
    assert client.get_object(Bucket=BUCKET, Key=KEY.replace(WORKFLOW_UID, other))["Body"].read() == second
    assert len(keys(s3, BUCKET)) == 4


def test_a_conflicting_delete_restarts_the_multipart_upload(s3, node, tmp_path):
    """A DeleteObject of the key that succeeds during the upload makes the conditional
    CompleteMultipartUpload fail with 409 ConditionalRequestConflict; S3 says to re-initiate the
    upload with CreateMultipartUpload (API_CompleteMultipartUpload, If-None-Match)."""
    data = make_archive(node, 11 * MiB)
    client = s3.client()
    deleted: list[int] = []

    def delete_the_key(method: str, path: str) -> None:
        if method == "POST" and path == f"/{BUCKET}/{KEY}" and not deleted:
            deleted.append(client.delete_object(Bucket=BUCKET, Key=KEY)["ResponseMetadata"]["HTTPStatusCode"])

    remove = s3.on_conditional_write(delete_the_key)
    try:
        result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    finally:
        remove()
    assert result.returncode == 0, result.stderr
    assert "starting the multipart upload again" in result.stdout
    completes = [r[3] for r in s3.requests if r[0] == "POST" and "uploadId" in r[2]]
    assert completes == [409, 200] and deleted == [204]
    assert len([r for r in s3.requests if r[0] == "POST" and r[2] == "uploads"]) == 2
    assert client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    assert s3.incomplete_uploads(BUCKET) == []


def test_the_standin_answers_conditional_writes_as_s3_does(s3):
    """standin.s3 against the S3 API reference (PutObject, CompleteMultipartUpload: If-None-Match)
    and the user guide (conditional writes; only the current version counts, so a delete marker
    does not): 412 when the key exists, 501 for a value other than *, of two racing conditional
    writes the first to finish wins, 409 when a delete of the key succeeds during the write."""
    client = s3.client()

    def code(fn) -> tuple[int, str]:
        try:
            return fn()["ResponseMetadata"]["HTTPStatusCode"], ""
        except ClientError as exc:
            return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]

    put = lambda key, body, match="*": lambda: client.put_object(Bucket=BUCKET, Key=key, Body=body, IfNoneMatch=match)  # noqa: E731
    assert code(put("k", b"one")) == (200, "")
    assert code(put("k", b"two")) == (412, "PreconditionFailed")
    assert code(put("k", b"two", '"abc"')) == (501, "NotImplemented")
    assert client.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"one"
    client.delete_object(Bucket=BUCKET, Key="k")  # a delete marker is the current version now
    assert code(put("k", b"three")) == (200, "")

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        racing = sorted(pool.map(lambda body: code(put("race", body)), [b"a", b"b"]))
    assert racing == [(200, ""), (412, "PreconditionFailed")]

    remove = s3.on_conditional_write(lambda method, path: client.delete_object(Bucket=BUCKET, Key="p"))
    try:
        assert code(put("p", b"x")) == (409, "ConditionalRequestConflict")
    finally:
        remove()
    assert code(put("p", b"x")) == (200, "")

    upload = client.create_multipart_upload(Bucket=BUCKET, Key="m")["UploadId"]
    etag = client.upload_part(Bucket=BUCKET, Key="m", UploadId=upload, PartNumber=1, Body=b"x" * 10)["ETag"]
    complete = lambda: client.complete_multipart_upload(  # noqa: E731
        Bucket=BUCKET, Key="m", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        IfNoneMatch="*",
    )
    client.delete_object(Bucket=BUCKET, Key="m")
    assert code(complete) == (409, "ConditionalRequestConflict")
    client.put_object(Bucket=BUCKET, Key="n", Body=b"there")
    upload = client.create_multipart_upload(Bucket=BUCKET, Key="n")["UploadId"]
    etag = client.upload_part(Bucket=BUCKET, Key="n", UploadId=upload, PartNumber=1, Body=b"x" * 10)["ETag"]
    assert code(lambda: client.complete_multipart_upload(
        Bucket=BUCKET, Key="n", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        IfNoneMatch="*",
    )) == (412, "PreconditionFailed")  # fmt: skip
    assert client.get_object(Bucket=BUCKET, Key="n")["Body"].read() == b"there"


def test_lost_answer_to_complete_multipart_upload(s3, node, tmp_path):
    data = make_archive(node, 11 * MiB)
    s3.fail_requests(1, status=0, method="POST", query_contains="uploadId", processed=True)
    result = run_copy(s3, flags(s3, node, tmp_path, part_size=str(5 * MiB)))
    assert result.returncode == 0, result.stderr
    completes = [r[3] for r in s3.requests if r[0] == "POST" and "uploadId" in r[2]]
    assert completes[0] == 0 and len(completes) == 2
    head = s3.client().head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentLength"] == len(data) and outputs(tmp_path)["version-id"] == head["VersionId"]
    assert list(node.iterdir()) == []


def test_a_response_submitted_by_hand_without_an_alert_time_is_keyed_by_the_copy_time(s3, node, tmp_path):
    """`argo submit ... -p alert-time=` re-runs a response for an old alert: verify skips
    max_alert_age for it, and copy keys the evidence by the time of the copy (UTC, the same
    YYYYMMDDTHHMMSSZ stamp), recording an empty alert time in the manifest."""
    make_archive(node, 256 * 1024)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    result = run_copy(s3, flags(s3, node, tmp_path, alert_time=""))
    assert result.returncode == 0, result.stderr
    after = datetime.now(timezone.utc)
    uri = outputs(tmp_path)["evidence-uri"]
    stamp = re.search(r"/(\d{8}T\d{6}Z)-falco-response-0123456789abcdef/", uri).group(1)
    taken = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= taken <= after
    manifest_key = outputs(tmp_path)["manifest-uri"].split(f"s3://{BUCKET}/", 1)[1]
    manifest = json.loads(s3.client().get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert manifest["alert_time"] == ""
