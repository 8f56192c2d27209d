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

What the container did is standin.criu.scenario's compromised web server (its EXPECTED says what
is where): checkpoint/ holds its CRIU image set, `dump.log` is CRIU's log (both runtimes carry
it: containerd copies it from the container's work dir in CheckpointContainer, CRI-O lists it in
exportCheckpoint's include list), and the writable layer is packed as each runtime packs it:
- CRI-O (crutils.CRCreateRootFsDiffTar, containers/common pkg/crutils): the added and modified
  non-directory paths of the storage diff go into a plain `rootfs-diff.tar` (names relative,
  in the diff's order), the deleted ones into `deleted.files`, a JSON list of absolute paths;
  `bind.mounts` (prepareCheckpointExport) lists the bind mounts outside /dev, /proc, /run, /sys;
- containerd: `rootfs-diff.tar` is the rw layer as the diff service writes it (pkg/archive
  WriteDiff's ChangeWriter: lexical order, parent directories included, directories named with a
  trailing slash, a deletion as an empty `.wh.<name>` file) and gzip-compressed
  (MediaTypeImageLayerGzip) whatever its name.
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
from standin.criu import scenario
from standin.kube.stamps import digest, go_rfc3339, hex64

PADDING_MEMBER = "checkpoint/pages-2.img"  # more memory pages: the natural way an archive grows
CRIU_PID = scenario.SERVER_PID  # the dump's root, the container's init (standin.criu.scenario)
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


def _layer_tar(entries: list[tuple[str, bytes | None, int]], mtime: float) -> bytes:
    """A tar of (name, data or None for a directory, mode) in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            if data is None:
                info = _dir_info(name, mtime)
                info.mode = mode
                tar.addfile(info)
            else:
                tar.addfile(_file_info(name, len(data), mtime, mode), io.BytesIO(data))
    return buffer.getvalue()


def _crio_rootfs_diff(mtime: float) -> tuple[bytes, bytes]:
    """CRI-O's rootfs-diff.tar (the diff's added and modified paths, directories that were added
    included, modified directories not) and deleted.files."""
    changes = sorted([(d, None, 0o755) for d in scenario.ROOTFS_ADDED_DIRS] +
                     [(n, data, mode) for n, (data, mode) in scenario.ROOTFS_FILES.items()])  # fmt: skip
    return _layer_tar(changes, mtime), json.dumps(scenario.ROOTFS_DELETED).encode()


def _containerd_rootfs_diff(mtime: float) -> bytes:
    """containerd's rw layer: every changed path with its parent directories, whiteouts for the
    deleted, in lexical order, gzip-compressed."""
    entries: dict[str, tuple[bytes | None, int]] = {}
    whiteouts = [str(Path(p.lstrip("/")).parent / f".wh.{Path(p).name}") for p in scenario.ROOTFS_DELETED]
    changed = [*scenario.ROOTFS_FILES, *scenario.ROOTFS_ADDED_DIRS, *whiteouts]
    for name in changed:
        for parent in reversed(Path(name).parents[:-1]):
            entries.setdefault(str(parent), (None, 0o755))
    for name in scenario.ROOTFS_ADDED_DIRS:
        entries[name] = (None, 0o755)
    for name, (data, mode) in scenario.ROOTFS_FILES.items():
        entries[name] = (data, mode)
    for name in whiteouts:
        entries[name] = (b"", 0o644)
    layer = _layer_tar([(n, d, m) for n, (d, m) in sorted(entries.items())], mtime)
    return gzip.compress(layer, mtime=0)


def _bind_mounts(facts: dict) -> bytes:
    """CRI-O's bind.mounts: the kubelet's per-pod bind mounts (hosts, hostname, resolv.conf,
    termination log, the service account token volume) as prepareCheckpointExport lists them."""
    pod_dir = f"/var/lib/kubelet/pods/{facts['pod_uid']}"
    userdata = f"/run/containers/storage/overlay-containers/{digest(facts['pod_uid'] or facts['pod'])}/userdata"
    mounts = [
        (f"{pod_dir}/etc-hosts", "/etc/hosts", "file", 0o644),
        (f"{pod_dir}/containers/{facts['container']}/{digest(facts['id'])[:8]}", "/dev/termination-log", "file", 0o644),
        (f"{userdata}/hostname", "/etc/hostname", "file", 0o644),
        (f"{userdata}/resolv.conf", "/etc/resolv.conf", "file", 0o644),
        (f"{pod_dir}/volumes/kubernetes.io~projected/kube-api-access-{digest(facts['pod'])[:5]}",
         "/var/run/secrets/kubernetes.io/serviceaccount", "directory", 0o755),
    ]  # fmt: skip
    return json.dumps([{"source": s, "destination": d, "file_type": t, "permissions": p} for s, d, t, p in mounts]).encode()


def _file_info(name: str, size: int, mtime: float, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, mtime, mode, 0, 0
    return info


def _dir_info(name: str, mtime: float) -> tarfile.TarInfo:
    info = _file_info(name, 0, mtime, 0o755)
    info.type = tarfile.DIRTYPE
    return info


def _privileged(pod: dict, container: str) -> bool:
    """securityContext.privileged of the container: every capability, CAP_SYS_ADMIN included."""
    spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
    return bool((spec.get("securityContext") or {}).get("privileged"))


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


def _spec_dump(facts: dict, runtime: str, privileged: bool = False) -> dict:
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
    init = scenario.PROCESSES[scenario.SERVER_PID]
    caps = sorted(scenario.CAP_BITS) if privileged else scenario.CAPS[runtime]
    return {
        "ociVersion": "1.1.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": init["argv"],
            "env": init["env"],
            "cwd": init["cwd"],
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
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
    privileged = _privileged(pod, container)
    sample = str(shared_dir() / "criu-sample")
    stats = dict(criu_images(sample)).get("stats-dump", b"")
    images = scenario.criu_image_set(sample, runtime, privileged)
    log_stamp = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    log = f"{log_stamp} stderr F [sysinit] httpd started on :8080\n".encode()
    config = json.dumps(_config_dump(facts, runtime, moment)).encode()
    spec = json.dumps(_spec_dump(facts, runtime, privileged)).encode()
    criu = [("checkpoint", None)] + [(f"checkpoint/{name}", data) for name, data in images]
    dump_log = scenario.dump_log(pod.get("spec", {}).get("nodeName") or "node-1")
    if runtime == "cri-o":  # exportCheckpoint's include order; rootfs-diff.tar is a plain tar
        diff, deleted = _crio_rootfs_diff(moment.timestamp())
        return [
            ("stats-dump", stats),
            ("dump.log", dump_log),
            *criu,
            ("config.dump", config),
            ("spec.dump", spec),
            ("bind.mounts", _bind_mounts(facts)),
            ("rootfs-diff.tar", diff),
            ("deleted.files", deleted),
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
        ("dump.log", dump_log),
        # containerd writes the rw layer blob as it is, MediaTypeImageLayerGzip (writeRootFsDiffTar)
        ("rootfs-diff.tar", _containerd_rootfs_diff(moment.timestamp())),
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
