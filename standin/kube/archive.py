"""The checkpoint archive a kubelet writes: containerd's layout around a real CRIU image set."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import tarfile
from functools import lru_cache
from pathlib import Path

from standin import shared_dir
from standin.kube.stamps import digest, go_rfc3339, hex64

PADDING_MEMBER = "checkpoint/pages-2.img"  # more memory pages: the natural way an archive grows
CRIU_PID = 17508  # the pid in the shared CRIU image set (core-17508.img): keep the archive consistent


def checkpoint_file_name(pod: str, namespace: str, container: str, moment: dt.datetime) -> str:
    """The kubelet's name: checkpoint-<pod>_<namespace>-<container>-<RFC 3339 local time>.tar."""
    return f"checkpoint-{pod}_{namespace}-{container}-{go_rfc3339(moment)}.tar"


@lru_cache(maxsize=4)
def criu_images(directory: str) -> tuple[tuple[str, bytes], ...]:
    """The real CRIU image set, minus its own documentation, read once per run."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"CRIU sample not found at {root} (set FALCO_RESPONSE_SHARED)")
    skip = {"README.md", "SHA256SUMS"}
    return tuple((p.name, p.read_bytes()) for p in sorted(root.iterdir()) if p.is_file() and p.name not in skip)


def _small_tar(files: dict[str, bytes], mtime: float) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            tar.addfile(_file_info(name, len(data), mtime), io.BytesIO(data))
    return buffer.getvalue()


def _file_info(name: str, size: int, mtime: float, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, mtime, mode, 0, 0
    return info


def _dir_info(name: str, mtime: float) -> tarfile.TarInfo:
    info = _file_info(name, 0, mtime, 0o755)
    info.type = tarfile.DIRTYPE
    return info


def _container_facts(pod: dict, container: str) -> dict:
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    status = next((s for s in pod.get("status", {}).get("containerStatuses") or [] if s.get("name") == container), {})
    return {
        "id": (status.get("containerID") or "").partition("://")[2] or hex64(),
        "image": spec["image"],
        "image_ref": status.get("imageID", ""),
        "started": (status.get("state") or {}).get("running", {}).get("startedAt")
        or pod["metadata"].get("creationTimestamp"),
    }


def _spec_dump(pod: dict, container: str, facts: dict) -> dict:
    meta = pod["metadata"]
    return {
        "ociVersion": "1.1.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["/usr/bin/sleep", "1000"],
            "env": ["PATH=/usr/bin:/bin", "FORENSIC_DEMO=1"],
            "cwd": "/srv/workload",
        },
        "root": {"path": "rootfs"},
        "hostname": meta["name"],
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": container,
            "io.kubernetes.cri.image-name": facts["image"],
            "io.kubernetes.cri.sandbox-id": digest(meta.get("uid", meta["name"])),
            "io.kubernetes.cri.sandbox-name": meta["name"],
            "io.kubernetes.cri.sandbox-namespace": meta["namespace"],
            "io.kubernetes.cri.sandbox-uid": meta.get("uid", ""),
        },
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
    }


def checkpoint_members(pod: dict, container: str, moment: dt.datetime) -> list[tuple[str, bytes]]:
    """Everything a containerd checkpoint archive holds, built from the pod and the CRIU sample."""
    facts = _container_facts(pod, container)
    mtime = moment.timestamp()
    config = {
        "id": facts["id"],
        "name": container,
        "rootfsImageName": facts["image"],
        "rootfsImageRef": facts["image_ref"],
        "runtime": "io.containerd.runc.v2",
        "createdTime": facts["started"],
    }
    images = criu_images(str(shared_dir() / "criu-sample"))
    stats = dict(images).get("stats-dump", b"")
    log_stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    members = [
        ("config.dump", json.dumps(config, indent=2).encode()),
        ("spec.dump", json.dumps(_spec_dump(pod, container, facts), indent=2).encode()),
    ]
    members += [(f"checkpoint/{name}", data) for name, data in images]
    members += [
        ("rootfs-diff.tar", _small_tar({"tmp/dropped.sh": b"#!/bin/sh\necho standin payload\n"}, mtime)),
        ("stats-dump", stats),
        ("container.log", f"{log_stamp} stdout F sleeping\n".encode()),
        (
            "status",
            json.dumps(
                {"id": facts["id"], "pid": CRIU_PID, "status": "running", "startedAt": facts["started"]}
            ).encode(),
        ),
    ]
    return members


class _RandomStream:
    """`nbytes` of incompressible data, read in chunks so a large padding never sits in memory."""

    def __init__(self, nbytes: int) -> None:
        self.remaining = nbytes

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= size
        return os.urandom(size)


def write_checkpoint_archive(path: Path, members: list[tuple[str, bytes]], padding: int, mtime: float) -> None:
    """Write the tar as the runtime does: mode 0600 whatever the umask, uncompressed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir_info("checkpoint", mtime))
        for name, data in members:
            tar.addfile(_file_info(name, len(data), mtime), io.BytesIO(data))
        if padding > 0:
            tar.addfile(_file_info(PADDING_MEMBER, padding, mtime), _RandomStream(padding))
