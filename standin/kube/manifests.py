"""Manifests the test helpers create directly: running pods and ready nodes with the status steps read."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from standin.kube.resources import KUBERNETES_VERSION, OWNER_API_VERSIONS
from standin.kube.stamps import digest, timestamp


def normalise_image(image: str) -> str:
    """`nginx:1.27` -> `docker.io/library/nginx:1.27`, as containerd reports it."""
    first, _, rest = image.partition("/")
    if not rest:
        return f"docker.io/library/{image}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{image}"
    return image


def image_repository(image: str) -> str:
    name = normalise_image(image).split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name


def owner_reference(owner: dict) -> dict:
    kind = owner["kind"]
    return {
        "apiVersion": owner.get("apiVersion") or OWNER_API_VERSIONS.get(kind, "v1"),
        "kind": kind,
        "name": owner["name"],
        "uid": owner.get("uid") or str(uuid.uuid4()),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _container_status(container: dict, started: str, runtime: str = "containerd") -> dict:
    """containerID is `<runtime>://<64 hex>`, as the kubelet builds it from the CRI's runtime name
    (kubecontainer.ContainerID String: `containerd://...` or `cri-o://...`)."""
    image = container["image"]
    return {
        "name": container["name"],
        "image": normalise_image(image),
        "imageID": f"{image_repository(image)}@sha256:{digest(image)}",
        "containerID": f"{runtime}://{container['id']}",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": started}},
    }


def pod_manifest(
    namespace: str,
    name: str,
    node: str,
    containers: list[dict],
    labels: dict,
    owner: dict | None,
    pod_ip: str,
    runtime: str = "containerd",
    host_network: bool = False,
) -> dict:
    """A scheduled, running pod with the status fields the steps read (container ids, images).

    `host_network`: spec.hostNetwork true, and then the pod's IP is its node's (the kubelet reports
    status.podIPs from the host's addresses for a host-network pod)."""
    started = timestamp()
    if host_network:
        pod_ip = "127.0.0.1"  # the stand-in nodes' InternalIP (node_addresses)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": node,
            "containers": [{"name": c["name"], "image": c["image"]} for c in containers],
            **({"hostNetwork": True} if host_network else {}),
        },
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started,
            "qosClass": "BestEffort",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": started}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [_container_status(c, started, runtime) for c in containers],
        },
    }


def node_addresses(name: str) -> list[dict]:
    """What a kubelet without a cloud provider reports (pkg/kubelet/nodestatus/setters.go,
    NodeAddress): its InternalIP (--node-ip; 127.0.0.1 for every stand-in node, which listens
    there) and its Hostname (the hostname, here the node name, as kubeadm registers it)."""
    return [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}]


CONTAINER_RUNTIME_VERSIONS = {  # nodeInfo.containerRuntimeVersion: "<RuntimeName>://<RuntimeVersion>"
    "containerd": "containerd://2.0.2",
    "cri-o": "cri-o://1.31.13",  # cri-o server/version.go: RuntimeName "cri-o", internal/version Version
}


def node_manifest(name: str, kubelet_port: int, index: int, runtime: str = "containerd") -> dict:
    """A Ready node: addresses, the kubelet's port (daemonEndpoints), capacity and nodeInfo.

    The kubelet reports the CRI Version answer as `<runtime name>://<version>`
    (pkg/kubelet/nodestatus/setters.go VersionInfo)."""
    now = timestamp()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
        "status": {
            "addresses": node_addresses(name),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": CONTAINER_RUNTIME_VERSIONS[runtime],
                "kernelVersion": "6.8.0-standin",
                "kubeProxyVersion": KUBERNETES_VERSION["gitVersion"],
                "kubeletVersion": KUBERNETES_VERSION["gitVersion"],
                "machineID": secrets.token_hex(16),
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04 LTS",
                "systemUUID": str(uuid.uuid4()),
            },
        },
    }
