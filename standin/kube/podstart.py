"""The scheduler's bind and the kubelet's start of a Pod: volumes and environment, or why it waits.

What the kubelet refuses, and how a real cluster shows it:
- a secret or configMap volume whose object (or a listed key) is missing and not optional: the
  volume manager cannot mount it, the Pod stays Pending (container waiting, ContainerCreating) and
  a Warning Event FailedMount says `MountVolume.SetUp failed for volume "<v>" : secret "<s>" not
  found` (pkg/volume/secret/secret.go and pkg/volume/configmap/configmap.go, SetUpAt;
  pkg/kubelet/volumemanager reconciler);
- an env var from a missing Secret/ConfigMap or key: the container is not created, waiting with
  reason CreateContainerConfigError and message `secret "<s>" not found` or `couldn't find key
  <k> in Secret <ns>/<s>` (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables);
- a hostPath of type Directory that is not a directory: FailedMount `hostPath type check failed:
  <path> is not a directory` (pkg/volume/hostpath/host_path.go, checkType).
A projected service-account volume gets a token the kubelet requests for the Pod's
ServiceAccount (TokenRequest; pkg/volume/projected, collectData), the cluster CA from
kube-root-ca.crt and the namespace. Only the kubelet checkpoint directory exists as a hostPath here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from standin.kube.admission import account_unchanged
from standin.kube.auth import Tokens, service_account_user
from standin.kube.errors import ApiError
from standin.kube.stamps import timestamp
from standin.kube.store import Store


class PodPending(Exception):
    """The Pod cannot start: it stays Pending, its container waiting with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


@dataclass
class Volume:
    files: dict[str, bytes] | None = None  # configMap, secret, projected: relative path -> content
    host_path: Path | None = None
    empty_dir: bool = False


@dataclass
class PodStart:
    node: str
    volumes: dict[str, Volume] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # container name -> variables


def _decode(data: dict | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


class Kubelet:
    """Starts Pods bound to the stand-in's nodes (the part of the kubelet before `exec`)."""

    def __init__(self, store: Store, tokens: Tokens, host_paths: Callable[[str], dict[str, Path]]) -> None:
        self.store = store
        self.tokens = tokens
        self.host_paths = host_paths  # node -> {host path: local directory}

    def start(self, namespace: str, name: str, node: str | None = None) -> PodStart:
        rt = self.store.types["pods"]
        pod = self.store.get(rt, namespace, name)
        spec = pod.get("spec") or {}
        node = node or spec.get("nodeName")
        if not node or self.store.find(self.store.types["nodes"], None, node) is None:
            raise PodPending("Unschedulable", f"0/{len(self.store.list(self.store.types['nodes']))} nodes are available")
        if spec.get("nodeName") != node:
            pod = self.store.bind(namespace, name, node)
        try:
            started = PodStart(node)
            for volume in spec.get("volumes") or []:
                started.volumes[volume["name"]] = self._volume(pod, node, volume)
            for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                started.env[container["name"]] = self._env(pod, node, container)
        except PodPending as pending:
            self._wait(pod, pending)
            raise
        self.set_phase(namespace, name, "Running")
        return started

    # --- volumes -----------------------------------------------------------------------------

    def _volume(self, pod: dict, node: str, volume: dict) -> Volume:
        name = volume["name"]
        namespace = pod["metadata"]["namespace"]
        if "emptyDir" in volume:
            return Volume(empty_dir=True)
        if "secret" in volume:
            source = volume["secret"]
            data = self._object_data("secrets", namespace, source.get("secretName", ""), source, name)
            return Volume(files=data)
        if "configMap" in volume:
            source = volume["configMap"]
            data = self._object_data("configmaps", namespace, source.get("name", ""), source, name)
            return Volume(files=data)
        if "projected" in volume:
            return Volume(files=self._projected(pod, volume["projected"], name))
        if "hostPath" in volume:
            path = volume["hostPath"].get("path", "").rstrip("/") or "/"
            local = self.host_paths(node).get(path)
            kind = volume["hostPath"].get("type") or ""
            if local is None or not local.is_dir():
                if kind == "Directory":
                    raise PodPending("ContainerCreating", _failed_mount(name, f"hostPath type check failed: {path} is not a directory"))
                raise ValueError(f"the stand-in node {node} has no host path {path}")
            return Volume(host_path=local)
        raise ValueError(f"volume {name}: type {sorted(k for k in volume if k != 'name')} is not served by the stand-in kubelet")

    def _object_data(self, plural: str, namespace: str, obj_name: str, source: dict, volume: str) -> dict[str, bytes] | None:
        kind = "secret" if plural == "secrets" else "configmap"
        obj = self.store.find(self.store.types[plural], namespace, obj_name)
        if obj is None:
            if source.get("optional"):
                return {}
            raise PodPending("ContainerCreating", _failed_mount(volume, f'{kind} "{obj_name}" not found'))
        data = _decode(obj.get("data")) if plural == "secrets" else {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        if plural == "configmaps":
            data.update(_decode(obj.get("binaryData")))
        items = source.get("items")
        if not items:
            return data
        out = {}
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise PodPending(
                    "ContainerCreating", _failed_mount(volume, f"{kind} references non-existent {kind} key: {item['key']}")
                )
            out[item.get("path") or item["key"]] = data[item["key"]]
        return out

    def _projected(self, pod: dict, projected: dict, volume: str) -> dict[str, bytes]:
        namespace = pod["metadata"]["namespace"]
        files: dict[str, bytes] = {}
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                account = pod["spec"].get("serviceAccountName") or "default"
                files[source["serviceAccountToken"].get("path", "token")] = self.token_for(namespace, account).encode()
            elif "configMap" in source:
                files.update(self._object_data("configmaps", namespace, source["configMap"].get("name", ""), source["configMap"], volume) or {})
            elif "secret" in source:
                files.update(self._object_data("secrets", namespace, source["secret"].get("name", ""), source["secret"], volume) or {})
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    files[item["path"]] = _field(pod, item["fieldRef"]["fieldPath"], "").encode()
        return files

    def token_for(self, namespace: str, account: str) -> str:
        """TokenRequest for a ServiceAccount: valid while that ServiceAccount (same UID) exists."""
        found = self.store.find(self.store.types["serviceaccounts"], namespace, account)
        if found is None:
            raise ApiError(404, f'serviceaccounts "{account}" not found', details={"name": account, "kind": "serviceaccounts"})
        uid = found["metadata"]["uid"]
        return self.tokens.issue(
            service_account_user(namespace, account), lambda: account_unchanged(self.store, namespace, account, uid)
        )

    # --- environment -------------------------------------------------------------------------

    def _env(self, pod: dict, node: str, container: dict) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            for plural, key in (("secrets", "secretRef"), ("configmaps", "configMapRef")):
                if key in source:
                    ref = source[key]
                    data = self._env_object(plural, namespace, ref.get("name", ""), ref.get("optional"))
                    env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            value_from = item.get("valueFrom")
            if value_from is None:
                env[item["name"]] = str(item.get("value", ""))
                continue
            if "fieldRef" in value_from:
                env[item["name"]] = _field(pod, value_from["fieldRef"]["fieldPath"], node)
                continue
            for plural, key, label in (("secrets", "secretKeyRef", "Secret"), ("configmaps", "configMapKeyRef", "ConfigMap")):
                if key in value_from:
                    ref = value_from[key]
                    data = self._env_object(plural, namespace, ref.get("name", ""), ref.get("optional"))
                    if ref["key"] in data:
                        env[item["name"]] = data[ref["key"]]
                    elif not ref.get("optional"):
                        raise PodPending(
                            "CreateContainerConfigError", f"couldn't find key {ref['key']} in {label} {namespace}/{ref.get('name')}"
                        )
                    break
            else:
                raise ValueError(f"env {item['name']}: valueFrom {sorted(value_from)} is not served by the stand-in kubelet")
        return env

    def _env_object(self, plural: str, namespace: str, name: str, optional: bool | None) -> dict[str, str]:
        obj = self.store.find(self.store.types[plural], namespace, name)
        if obj is None:
            if optional:
                return {}
            kind = "secret" if plural == "secrets" else "configmap"
            raise PodPending("CreateContainerConfigError", f'{kind} "{name}" not found')
        if plural == "secrets":
            return {k: v.decode("utf-8", "replace") for k, v in _decode(obj.get("data")).items()}
        return dict(obj.get("data") or {})

    # --- status ------------------------------------------------------------------------------

    def _wait(self, pod: dict, pending: PodPending) -> None:
        meta = pod["metadata"]
        statuses = [
            {"name": c["name"], "ready": False, "restartCount": 0, "image": c.get("image", ""), "imageID": "",
             "started": False, "state": {"waiting": {"reason": pending.reason, "message": pending.message}}}
            for c in pod["spec"].get("containers") or []
        ]
        if pending.reason == "ContainerCreating":  # the volume manager's message goes to an Event
            for s in statuses:
                s["state"]["waiting"].pop("message")
        self._patch_status(meta["namespace"], meta["name"], {"phase": "Pending", "containerStatuses": statuses})
        if pending.reason == "ContainerCreating":
            self._event(pod, "FailedMount", pending.message)

    def set_phase(self, namespace: str, name: str, phase: str) -> None:
        self._patch_status(namespace, name, {"phase": phase})

    def _patch_status(self, namespace: str, name: str, status: dict) -> None:
        rt = self.store.types["pods"]
        current = self.store.get(rt, namespace, name)
        current["status"] = {**(current.get("status") or {}), **status}
        self.store.put_status(rt, namespace, name, current["status"])

    def _event(self, pod: dict, reason: str, message: str) -> None:
        """A Warning Event; a repeat of the same one bumps its count, as client-go's EventCorrelator does."""
        meta = pod["metadata"]
        rt = self.store.types["events"]
        for event in self.store.list(rt, meta["namespace"]):
            if (event["involvedObject"].get("uid"), event.get("reason"), event.get("message")) == (meta.get("uid"), reason, message):
                event["count"] = int(event.get("count") or 1) + 1
                event["lastTimestamp"] = timestamp()
                self.store.update(rt, meta["namespace"], event["metadata"]["name"], event)
                return
        self.store.create(
            rt,
            meta["namespace"],
            {
                "metadata": {"generateName": f"{meta['name']}."},
                "involvedObject": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                                   "uid": meta.get("uid"), "apiVersion": "v1"},
                "reason": reason,
                "message": message,
                "type": "Warning",
                "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
                "firstTimestamp": timestamp(),
                "lastTimestamp": timestamp(),
                "count": 1,
            },
            from_api=False,
        )


def _failed_mount(volume: str, why: str) -> str:
    return f'MountVolume.SetUp failed for volume "{volume}" : {why}'


def _field(pod: dict, path: str, node: str) -> str:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or node,
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path.startswith("metadata.annotations['") or path.startswith("metadata.labels['"):
        key = path.split("['", 1)[1].rstrip("']")
        return str((meta.get("annotations" if "annotations" in path else "labels") or {}).get(key, ""))
    if path not in values:
        raise ValueError(f"fieldRef {path} is not served by the stand-in kubelet")
    return values[path]
