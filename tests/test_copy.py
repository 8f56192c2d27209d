"""copy step, through `python -m steps.copy` against the stand-in S3 (moto + S3's own checks).

Archives are small (a few KiB, or 11 MiB with --part-size at S3's 5 MiB minimum to take the
multipart path). Every test also checks what stayed on the "node" (a tmp checkpoint directory).
The last test runs the whole evidence pipeline: checkpoint on a FakeKube node, then copy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from standin import shared_dir
from standin.s3 import S3Server

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "evidence"
LOCKED = "evidence-locked"
MiB = 1024 * 1024
ARCHIVE = "checkpoint-web-0_default-app-2024-05-01T12:00:00+02:00.tar"
CONTAINER_ID = hashlib.sha256(b"app").hexdigest()
ALERT_TIME = "2024-05-01T09:59:58.123456789Z"
FOLDER = "falco-response/default/web-0/app/20240501T095958Z-falco-response-0123456789abcdef"
KEY = f"{FOLDER}/checkpoint.tar"
MANIFEST = f"{FOLDER}/manifest.json"


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


def make_archive(directory: Path, size: int, name: str = ARCHIVE) -> bytes:
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    path.chmod(0o600)
    return data


def flags(s3: S3Server, node: Path, tmp_path: Path, **overrides: str) -> dict[str, str]:
    values = {
        "archive": f"/var/lib/kubelet/checkpoints/{ARCHIVE}",
        "checkpoint-dir": str(node),
        "namespace": "default",
        "pod": "web-0",
        "container": "app",
        "container-id": CONTAINER_ID,
        "node": "node-1",
        "pod-uid": "6f1c2a3b-0000-4000-8000-00000000abcd",
        "image": "docker.io/library/nginx:1.27",
        "image-id": "docker.io/library/nginx@sha256:" + "c" * 64,
        "rule": "Terminal shell in container",
        "priority": "Notice",
        "alert-time": ALERT_TIME,
        "policy": "shells",
        "workflow-name": "falco-response-0123456789abcdef",
        "workflow-namespace": "falco-response",
        "workflow-uid": "0b4c2d9e-1111-4222-8333-944445555666",
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
        "pod_uid": "6f1c2a3b-0000-4000-8000-00000000abcd",
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
        "uid": "0b4c2d9e-1111-4222-8333-944445555666",
    }
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
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
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


def test_checkpoint_then_copy_on_the_same_node(kube, step_env, s3, tmp_path):
    kube.add_pod("default", "web-0", "node-1", containers=[{"name": "app", "image": "nginx:1.27", "id": CONTAINER_ID}])
    ckpt_out = tmp_path / "checkpoint-out"
    argv = [
        sys.executable, "-m", "steps.checkpoint", "--namespace=default", "--pod=web-0", "--container=app",
        "--node=node-1", "--path=kubelet", "--timeout=30", f"--ca-bundle={kube.kubelet_ca}",
        f"--outputs-dir={ckpt_out}",
    ]  # fmt: skip
    checkpoint = subprocess.run(argv, env=step_env(step="checkpoint"), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checkpoint.returncode == 0, checkpoint.stderr
    archive = (ckpt_out / "archive").read_text()
    node_dir = kube.checkpoint_dir("node-1")
    name = archive.rsplit("/", 1)[1]
    original = (node_dir / name).read_bytes()

    values = flags(s3, node_dir, tmp_path, archive=archive, bucket=LOCKED, object_lock_mode="GOVERNANCE",
                   object_lock_days="1")  # fmt: skip
    copy = run_copy(s3, values, env=kube.env())
    assert copy.returncode == 0, copy.stderr
    assert list(node_dir.iterdir()) == []

    stored = s3.client().get_object(Bucket=LOCKED, Key=KEY)["Body"].read()
    assert stored == original
    assert outputs(tmp_path)["sha256"] == hashlib.sha256(original).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(stored)) as tar:
        members = tar.getnames()
    assert "config.dump" in members and "spec.dump" in members
    assert any(m.startswith("checkpoint/") for m in members)
    manifest = json.loads(s3.client().get_object(Bucket=LOCKED, Key=MANIFEST)["Body"].read())
    assert manifest["checkpoint"]["kubelet_path"] == archive
    assert manifest["checkpoint"]["file"] == name
    assert manifest["object_lock"]["mode"] == "GOVERNANCE"


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
