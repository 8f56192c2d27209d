"""The checkpoint archive a kubelet writes, as containerd 2.x or CRI-O lays it out around a real CRIU image set.

What names the container inside the archive is what the runtimes write (checked in their source):
- both: `config.dump`, checkpointctl's lib.ContainerConfig (JSON keys id, name, rootfsImage,
  rootfsImageRef, rootfsImageName, runtime, createdTime, checkpointedTime, restoredTime, restored);
  `id` is the full container id, `name` the runtime's container name, which embeds the pod UID and
  the attempt (containerd internal/cri/server/helpers.go makeContainerName:
  `<container>_<pod>_<namespace>_<pod uid>_<attempt>`; CRI-O internal/factory/container
  SetNameAndID: `k8s_<container>_<pod>_<namespace>_<pod uid>_<attempt>`);
- containerd (internal/cri/server/container_checkpoint_linux.go CheckpointContainer):
  `spec.dump` carries internal/cri/annotations DefaultCRIAnnotations (io.kubernetes.cri.sandbox-id,
  sandbox-namespace, sandbox-uid, sandbox-name, container-name, image-name, container-type);
  `status.dump` is the CRI ContainerStatus as Go's encoding/json writes the generated struct
  (id, metadata, state, created_at, started_at, image, image_ref, labels, annotations, log_path;
  zero values omitted), whose labels are the kubelet's container labels (io.kubernetes.pod.uid, ...);
  `status` is containerd's own versioned status (no id). The tar is archive.Diff of the directory:
  members in lexical order, so `checkpoint/` (the large part) comes before the metadata.
- CRI-O (internal/lib/checkpoint.go prepareCheckpointExport, exportCheckpoint): `spec.dump` is the
  container's config.json, whose annotations (internal/factory/container SpecAddAnnotations) hold
  io.kubernetes.cri-o.ContainerID, io.kubernetes.cri-o.Name, io.kubernetes.cri-o.SandboxID and the
  kubelet's labels and annotations copied in (io.kubernetes.pod.uid, io.kubernetes.container.name,
  ...); no status.dump. The tar follows exportCheckpoint's include list: stats-dump, checkpoint/,
  config.dump, spec.dump, then rootfs-diff.tar and the log under the name
  io.kubernetes.cri-o.LogPath.
The kubelet's own container labels and annotations: pkg/kubelet/kuberuntime/labels.go.
"""

from __future__ import annotations

import datetime as dt
import gzip
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
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # encoding/json of a zero time.Time (restoredTime)
CRIO_LOG_MEMBER = "io.kubernetes.cri-o.LogPath"  # CRI-O stores the container log under the annotation's name


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
    meta = pod["metadata"]
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    status = next((s for s in pod.get("status", {}).get("containerStatuses") or [] if s.get("name") == container), {})
    started = (status.get("state") or {}).get("running", {}).get("startedAt") or meta.get("creationTimestamp")
    return {
        "id": (status.get("containerID") or "").partition("://")[2] or hex64(),
        "image": spec["image"],
        "image_ref": status.get("imageID", ""),
        "started": started,
        "attempt": int(status.get("restartCount") or 0),  # the kubelet's ContainerMetadata.Attempt
        "pod": meta["name"],
        "namespace": meta["namespace"],
        "pod_uid": meta.get("uid", ""),
        "container": container,
    }


def _kubelet_labels(facts: dict) -> dict:
    """newContainerLabels (pkg/kubelet/kuberuntime/labels.go)."""
    return {
        "io.kubernetes.container.name": facts["container"],
        "io.kubernetes.pod.name": facts["pod"],
        "io.kubernetes.pod.namespace": facts["namespace"],
        "io.kubernetes.pod.uid": facts["pod_uid"],
    }


def _kubelet_annotations(facts: dict) -> dict:
    """newContainerAnnotations (pkg/kubelet/kuberuntime/labels.go), the parts every container has."""
    return {
        "io.kubernetes.container.hash": f"{int(digest(facts['container'] + facts['image'])[:8], 16):x}",
        "io.kubernetes.container.restartCount": str(facts["attempt"]),
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
        "io.kubernetes.container.terminationMessagePolicy": "File",
        "io.kubernetes.pod.terminationGracePeriod": "30",
    }


def _log_path(facts: dict) -> str:
    return f"/var/log/pods/{facts['namespace']}_{facts['pod']}_{facts['pod_uid']}/{facts['container']}/{facts['attempt']}.log"


def _runtime_name(facts: dict, runtime: str) -> str:
    """The runtime's own container name (containerd makeContainerName, CRI-O SetNameAndID)."""
    base = f"{facts['container']}_{facts['pod']}_{facts['namespace']}_{facts['pod_uid']}_{facts['attempt']}"
    return base if runtime == "containerd" else f"k8s_{base}"


def _config_dump(facts: dict, runtime: str, moment: dt.datetime) -> dict:
    return {
        "id": facts["id"],
        "name": _runtime_name(facts, runtime),
        "rootfsImage": facts["image"],
        "rootfsImageRef": facts["image_ref"],
        "rootfsImageName": facts["image"],
        "runtime": "io.containerd.runc.v2" if runtime == "containerd" else "runc",
        "createdTime": facts["started"],
        "checkpointedTime": moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "restoredTime": GO_ZERO_TIME,
        "restored": False,
    }


def _spec_dump(facts: dict, runtime: str) -> dict:
    sandbox_id = digest(facts["pod_uid"] or facts["pod"])
    if runtime == "containerd":
        annotations = {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": facts["container"],
            "io.kubernetes.cri.image-name": facts["image"],
            "io.kubernetes.cri.sandbox-id": sandbox_id,
            "io.kubernetes.cri.sandbox-name": facts["pod"],
            "io.kubernetes.cri.sandbox-namespace": facts["namespace"],
            "io.kubernetes.cri.sandbox-uid": facts["pod_uid"],
        }
    else:
        labels, kube_annotations = _kubelet_labels(facts), _kubelet_annotations(facts)
        annotations = {
            "io.kubernetes.cri-o.ContainerID": facts["id"],
            "io.kubernetes.cri-o.ContainerType": "container",
            "io.kubernetes.cri-o.Name": _runtime_name(facts, runtime),
            "io.kubernetes.cri-o.SandboxID": sandbox_id,
            "io.kubernetes.cri-o.SandboxName": f"k8s_{facts['pod']}_{facts['namespace']}_{facts['pod_uid']}_0",
            "io.kubernetes.cri-o.Image": facts["image_ref"],
            "io.kubernetes.cri-o.ImageName": facts["image"],
            "io.kubernetes.cri-o.LogPath": _log_path(facts),
            "io.kubernetes.cri-o.Labels": json.dumps(labels, separators=(",", ":"), sort_keys=True),
            "io.kubernetes.cri-o.Annotations": json.dumps(kube_annotations, separators=(",", ":"), sort_keys=True),
            "io.container.manager": "cri-o",
            **kube_annotations,
            **labels,
        }
    return {
        "ociVersion": "1.1.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["/usr/bin/sleep", "1000"],
            "env": ["PATH=/usr/bin:/bin", "FORENSIC_DEMO=1"],
            "cwd": "/srv/workload",
        },
        "root": {"path": "rootfs"},
        "hostname": facts["pod"],
        "annotations": annotations,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
    }


def _nanos(rfc3339: str | None) -> int:
    if not rfc3339:
        return 0
    return int(dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()) * 1_000_000_000


def _status_dump(facts: dict) -> dict:
    """runtime.ContainerStatus through encoding/json: snake_case keys, zero values omitted."""
    metadata = {"name": facts["container"], **({"attempt": facts["attempt"]} if facts["attempt"] else {})}
    started = _nanos(facts["started"])
    return {
        "id": facts["id"],
        "metadata": metadata,
        "state": 1,  # CONTAINER_RUNNING
        "created_at": started,
        "started_at": started,
        "image": {"image": facts["image"]},
        "image_ref": facts["image_ref"],
        "labels": _kubelet_labels(facts),
        "annotations": _kubelet_annotations(facts),
        "log_path": _log_path(facts),
    }


def checkpoint_members(
    pod: dict, container: str, moment: dt.datetime, runtime: str = "containerd"
) -> list[tuple[str, bytes | None]]:
    """Everything the runtime's checkpoint archive holds, in the runtime's order; (name, None) is a
    directory. Built from the pod as the node sees it now and from the CRIU sample."""
    if runtime not in ("containerd", "cri-o"):
        raise ValueError(f"runtime must be containerd or cri-o, got {runtime!r}")
    facts = _container_facts(pod, container)
    images = criu_images(str(shared_dir() / "criu-sample"))
    stats = dict(images).get("stats-dump", b"")
    log_stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log = f"{log_stamp} stdout F sleeping\n".encode()
    config = json.dumps(_config_dump(facts, runtime, moment)).encode()
    spec = json.dumps(_spec_dump(facts, runtime)).encode()
    criu = [("checkpoint", None)] + [(f"checkpoint/{name}", data) for name, data in images]
    payload = {"tmp/dropped.sh": b"#!/bin/sh\necho standin payload\n"}
    if runtime == "cri-o":  # exportCheckpoint's include order; rootfs-diff.tar is a plain tar
        return [
            ("stats-dump", stats),
            *criu,
            ("config.dump", config),
            ("spec.dump", spec),
            ("rootfs-diff.tar", _small_tar(payload, moment.timestamp())),
            (CRIO_LOG_MEMBER, log),
        ]
    started = _nanos(facts["started"])
    status = {"Version": "v1", "Pid": CRIU_PID, "CreatedAt": started, "StartedAt": started, "FinishedAt": 0,
              "ExitCode": 0, "Reason": "", "Message": "", "Starting": False, "Removing": False, "Unknown": False,
              "Resources": None}  # fmt: skip
    members = [
        *criu,
        ("config.dump", config),
        ("container.log", log),
        # containerd writes the rw layer blob as it is, MediaTypeImageLayerGzip (writeRootFsDiffTar)
        ("rootfs-diff.tar", gzip.compress(_small_tar(payload, moment.timestamp()), mtime=0)),
        ("spec.dump", spec),
        ("stats-dump", stats),
        ("status", json.dumps(status).encode()),
        ("status.dump", json.dumps(_status_dump(facts)).encode()),
    ]
    return sorted(members, key=lambda m: m[0])  # archive.Diff walks the directory in lexical order


class _RandomStream:
    """`nbytes` of incompressible data, read in chunks so a large padding never sits in memory."""

    def __init__(self, nbytes: int) -> None:
        self.remaining = nbytes

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        self.remaining -= size
        return os.urandom(size)


def _padding_position(members: list[tuple[str, bytes | None]]) -> int:
    """Where PADDING_MEMBER sorts among the checkpoint/ members (they are contiguous and sorted)."""
    inside = [i for i, (name, _) in enumerate(members) if name.startswith("checkpoint/")]
    for i in inside:
        if members[i][0] > PADDING_MEMBER:
            return i
    return inside[-1] + 1 if inside else len(members)


def write_checkpoint_archive(path: Path, members: list[tuple[str, bytes | None]], padding: int, mtime: float) -> None:
    """Write the tar as the runtime does: mode 0600 whatever the umask, uncompressed, members in
    order, with `padding` random bytes as one more memory-pages image inside checkpoint/."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    at = _padding_position(members) if padding > 0 else -1
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index, (name, data) in enumerate([*members, ("", b"")]):
            if index == at:
                tar.addfile(_file_info(PADDING_MEMBER, padding, mtime), _RandomStream(padding))
            if index == len(members):
                break
            if data is None:
                tar.addfile(_dir_info(name, mtime))
            else:
                tar.addfile(_file_info(name, len(data), mtime), io.BytesIO(data))
