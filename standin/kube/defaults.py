"""Defaulting, as the API server does on every write, so stored objects look like real ones."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from standin.kube.resources import ResourceType


def _default_namespace(obj: dict) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _default_pod(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("schedulerName", "default-scheduler")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _default_network_policy(obj: dict) -> None:
    """An absent podSelector is `{}` (every pod) and policyTypes follow the rules present."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])


def _default_replicas(obj: dict) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)


_CLUSTER_IPS = itertools.count(10)


def _default_service(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName" and "clusterIP" not in spec:
        n = next(_CLUSTER_IPS)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec["clusterIPs"] = [spec["clusterIP"]]


DEFAULTERS: dict[str, Callable[[dict], None]] = {
    "Namespace": _default_namespace,
    "Pod": _default_pod,
    "NetworkPolicy": _default_network_policy,
    "ReplicaSet": _default_replicas,
    "Deployment": _default_replicas,
    "StatefulSet": _default_replicas,
    "Service": _default_service,
}


def apply_defaults(rt: ResourceType, obj: dict) -> None:
    DEFAULTERS.get(rt.kind, lambda _obj: None)(obj)
