"""A strict stand-in for the Kubernetes API server and for the kubelets' checkpoint endpoint.

Why it exists: the steps talk to Kubernetes through the official `kubernetes` client and to the
kubelet over HTTPS. Their tests must see what a real cluster answers -- status codes, `Status`
bodies, resourceVersion conflicts, selectors, patch semantics, TLS, checkpoint archives -- not
function-level mocks that agree with whatever the code under test assumes. So this module serves
a small, strict subset of the API over real HTTP on 127.0.0.1 (the client connects through a
kubeconfig with a bearer token, unchanged), plus one HTTPS "kubelet" per node whose serving
certificate is signed by a CA generated for the run.

Strict means: what the subset serves behaves like the real API server (409 on a stale
resourceVersion, 422 on a bad name or label, 415 on an unknown patch type, 404 with a proper
`Status`), and what it does not serve fails loudly (404 "could not find the requested resource")
instead of pretending. Tests inject faults (`fail_next`, `set_latency`, `on_request`) and read
back what was served (`requests`, `deletions`).

Usage:
    with FakeKube(tmp_path) as kube:
        kube.add_namespace("default"); kube.add_node("node-1")
        kube.add_pod("default", "web", "node-1", containers=[{"name": "app", "image": "nginx:1.27"}])
        env = {**os.environ, **kube.env()}   # KUBECONFIG for a subprocess
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import io
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import ssl
import sys
import tarfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from standin import shared_dir

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4",
    "gitCommit": "a78aa47129b8539636eb86a9d00e31b2720fe06b",
    "gitTreeState": "clean",
    "buildDate": "2024-12-10T11:36:49Z",
    "goVersion": "go1.22.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}
KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"
CHECKPOINT_BEHAVIOURS = ("ok", "gate-off", "unsupported")
PADDING_MEMBER = "checkpoint/pages-2.img"  # more memory pages: the natural way an archive grows
CRIU_PID = 17508  # the pid in the shared CRIU image set (core-17508.img): keep the archive consistent

# ============================================================================================
# Time and identifiers
# ============================================================================================


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _timestamp(moment: dt.datetime | None = None) -> str:
    """metav1.Time as the API serialises it: RFC 3339, UTC, second resolution."""
    return (moment or _utcnow()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _go_rfc3339(moment: dt.datetime) -> str:
    """Go's time.RFC3339 of a local time, as the kubelet puts it in checkpoint file names."""
    offset = moment.utcoffset() or dt.timedelta(0)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not offset:
        return base + "Z"
    sign = "+" if offset >= dt.timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _hex64() -> str:
    return secrets.token_hex(32)


def _digest(text: str) -> str:
    """A stable fake sha256 for a name, so the same image always has the same digest."""
    return hashlib.sha256(text.encode()).hexdigest()


_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def _generated_name(prefix: str) -> str:
    suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
    return prefix[:58] + suffix


# ============================================================================================
# Errors rendered as metav1.Status
# ============================================================================================

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failure the API server reports as a `Status` body: raised anywhere, rendered once."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def resource_not_served() -> ApiError:
    """What the API server says for a path no registered resource serves."""
    return ApiError(404, "the server could not find the requested resource", details={})


@dataclass(frozen=True)
class Cause:
    """One field error of a 422 Invalid, phrased like apimachinery's field.Error."""

    field: str
    detail: str
    kind: str = "invalid"  # invalid | required | forbidden
    value: Any = None

    def message(self) -> str:
        if self.kind == "required":
            return f"Required value: {self.detail}" if self.detail else "Required value"
        if self.kind == "forbidden":
            return f"Forbidden: {self.detail}"
        return f"Invalid value: {json.dumps(self.value)}: {self.detail}"

    def reason(self) -> str:
        return {"required": "FieldValueRequired", "forbidden": "FieldValueForbidden"}.get(
            self.kind, "FieldValueInvalid"
        )


# ============================================================================================
# The resources served
# ============================================================================================


@dataclass(frozen=True)
class ResourceType:
    """What the API server knows about one resource: where it lives and which rules apply."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    name_rule: str = "subdomain"  # subdomain | label | dns1035 (Services)
    builtin: bool = True  # only built-in kinds accept strategic-merge patches
    has_status: bool = False  # a status subresource: the main resource cannot write .status
    unconditional_update: bool = True  # custom resources demand a resourceVersion on PUT
    returns_object_on_delete: bool = False  # pods answer a DELETE with the pod, others with a Status
    field_labels: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`pods`, `networkpolicies.networking.k8s.io`: how messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def details(self, name: str, **extra: Any) -> dict:
        details = {"name": name}
        if self.group:
            details["group"] = self.group
        details["kind"] = self.plural
        details.update(extra)
        return details


RESOURCE_TYPES = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, name_rule="label", has_status=True),
    ResourceType("", "v1", "nodes", "Node", namespaced=False, has_status=True),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        has_status=True,
        returns_object_on_delete=True,
        field_labels=("spec.nodeName", "status.phase"),
    ),
    ResourceType("", "v1", "services", "Service", name_rule="dns1035", has_status=True),
    ResourceType(
        "",
        "v1",
        "events",
        "Event",
        field_labels=(
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
        ),
    ),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", has_status=True),
    ResourceType("apps", "v1", "deployments", "Deployment", has_status=True),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("argoproj.io", "v1alpha1", "workflows", "Workflow", builtin=False, unconditional_update=False),
    ResourceType(
        "argoproj.io", "v1alpha1", "workflowtemplates", "WorkflowTemplate", builtin=False, unconditional_update=False
    ),
)

OWNER_API_VERSIONS = {
    "ReplicaSet": "apps/v1",
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Workflow": "argoproj.io/v1alpha1",
}

# ============================================================================================
# Validation: names, labels, annotations and a few per-kind rules
# ============================================================================================

_LABEL_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL_RE}(\.{_LABEL_RE})*$")
_DNS1123_LABEL = re.compile(rf"^{_LABEL_RE}$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_NAME_RULES = {
    "subdomain": (
        _SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    ),
    "label": (
        _DNS1123_LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    ),
    "dns1035": (
        _DNS1035_LABEL,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
    ),
}


def name_problems(rule: str, name: str) -> list[str]:
    """Why `name` is not acceptable under the resource's naming rule (empty if it is)."""
    pattern, limit, explanation = _NAME_RULES[rule]
    problems = []
    if len(name) > limit:
        problems.append(f"must be no more than {limit} characters")
    if not pattern.match(name):
        problems.append(explanation)
    return problems


def label_key_problem(key: str) -> str | None:
    """A label or annotation key is `[prefix/]name`: prefix a DNS subdomain, name 63 chars."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return "prefix part " + _NAME_RULES["subdomain"][2]
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character, at most 63 characters"
        )
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character, at most 63 characters"
        )
    return None


def _metadata_causes(rt: ResourceType, meta: dict) -> list[Cause]:
    name = meta.get("name") or ""
    causes = [Cause("metadata.name", p, value=name) for p in name_problems(rt.name_rule, name)]
    for key, value in (meta.get("labels") or {}).items():
        problem = label_key_problem(key)
        if problem:
            causes.append(Cause("metadata.labels", problem, value=key))
        problem = label_value_problem(value)
        if problem:
            causes.append(Cause("metadata.labels", problem, value=value))
    for key, value in (meta.get("annotations") or {}).items():
        problem = label_key_problem(key)
        if problem:
            causes.append(Cause("metadata.annotations", problem, value=key))
        if not isinstance(value, str):
            causes.append(Cause(f"metadata.annotations[{key}]", "must be a string", value=value))
    return causes


def _pod_causes(obj: dict) -> list[Cause]:
    containers = (obj.get("spec") or {}).get("containers")
    if not containers:
        return [Cause("spec.containers", "", kind="required")]
    causes = []
    for index, container in enumerate(containers):
        if not container.get("name"):
            causes.append(Cause(f"spec.containers[{index}].name", "", kind="required"))
        if not container.get("image"):
            causes.append(Cause(f"spec.containers[{index}].image", "", kind="required"))
    return causes


def _network_policy_causes(obj: dict) -> list[Cause]:
    types = (obj.get("spec") or {}).get("policyTypes") or []
    return [
        Cause(f"spec.policyTypes[{i}]", 'supported values: "Egress", "Ingress"', kind="invalid", value=t)
        for i, t in enumerate(types)
        if t not in ("Ingress", "Egress")
    ]


KIND_VALIDATORS: dict[str, Callable[[dict], list[Cause]]] = {
    "Pod": _pod_causes,
    "NetworkPolicy": _network_policy_causes,
}


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    parts = [f"{c.field}: {c.message()}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    details["causes"] = [{"reason": c.reason(), "message": c.message(), "field": c.field} for c in causes]
    return ApiError(422, f'{rt.kind} "{name}" is invalid: {summary}', details=details)


def validate(rt: ResourceType, obj: dict) -> None:
    """Reject an object the real API server would reject with 422 Invalid."""
    causes = _metadata_causes(rt, obj.get("metadata") or {})
    causes += KIND_VALIDATORS.get(rt.kind, lambda _obj: [])(obj)
    if causes:
        raise invalid(rt, (obj.get("metadata") or {}).get("name") or "", causes)


_POD_MUTABLE_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates")
_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _pod_spec_fixed_part(spec: dict) -> dict:
    fixed = copy.deepcopy(spec or {})
    for key in _POD_MUTABLE_SPEC:
        fixed.pop(key, None)
    for group in ("containers", "initContainers"):
        for container in fixed.get(group) or []:
            container.pop("image", None)
    return fixed


def validate_update(rt: ResourceType, old: dict, new: dict) -> None:
    """A running pod's spec is immutable but for a few fields: patching e.g. nodeName is a 422."""
    if rt.kind != "Pod":
        return
    if _pod_spec_fixed_part(old.get("spec")) != _pod_spec_fixed_part(new.get("spec")):
        name = new["metadata"]["name"]
        raise invalid(rt, name, [Cause("spec", _POD_UPDATE_FORBIDDEN, kind="forbidden")])


# ============================================================================================
# Defaulting, as the API server does on every write
# ============================================================================================


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
    "Service": _default_service,
}


def apply_defaults(rt: ResourceType, obj: dict) -> None:
    DEFAULTERS.get(rt.kind, lambda _obj: None)(obj)


# ============================================================================================
# Selectors
# ============================================================================================


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    op: str  # = != in notin exists !exists > <
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present or not re.fullmatch(r"-?\d+", value or ""):
            return False
        bound = int(self.values[0])
        return int(value) > bound if self.op == ">" else int(value) < bound


_KEY = r"([^\s!=<>(),]+)"
_SET_TERM = re.compile(rf"^{_KEY}\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_TERM = re.compile(rf"^{_KEY}\s*(==|=|!=)\s*([^\s!=<>(),]*)$")
_CMP_TERM = re.compile(rf"^{_KEY}\s*([<>])\s*(-?\d+)$")
_EXISTS_TERM = re.compile(rf"^(!?)\s*{_KEY}$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( )`, as `a in (x,y),b` has two terms."""
    terms, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms]


def _parse_label_term(term: str) -> Requirement:
    if match := _SET_TERM.match(term):
        values = tuple(v.strip() for v in match.group(3).split(","))
        return Requirement(match.group(1), match.group(2), values)
    if match := _EQ_TERM.match(term):
        op = "=" if match.group(2) == "==" else match.group(2)
        return Requirement(match.group(1), op, (match.group(3),))
    if match := _CMP_TERM.match(term):
        return Requirement(match.group(1), match.group(2), (match.group(3),))
    if match := _EXISTS_TERM.match(term):
        return Requirement(match.group(2), "!exists" if match.group(1) else "exists")
    raise bad_request(f"unable to parse requirement: {term!r}")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """labelSelector as the API accepts it; a syntax error is a 400 like the real one."""
    if not text or not text.strip():
        return []
    requirements = []
    for term in _split_top_level(text):
        requirement = _parse_label_term(term)
        checked_values = requirement.values if requirement.op not in ("<", ">") else ()
        problem = label_key_problem(requirement.key) or next(
            (p for p in map(label_value_problem, checked_values) if p), None
        )
        if problem:
            raise bad_request(f"unable to parse requirement: {term!r}: {problem}")
        requirements.append(requirement)
    return requirements


def labels_match(requirements: Iterable[Requirement], obj: dict) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


_FIELD_TERM = re.compile(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$")


def parse_field_selector(text: str | None, rt: ResourceType) -> list[tuple[str, str, str]]:
    """fieldSelector terms `(field, op, value)`; only the fields the resource indexes are allowed."""
    if not text or not text.strip():
        return []
    allowed = ("metadata.name", "metadata.namespace") + rt.field_labels
    terms = []
    for term in text.split(","):
        match = _FIELD_TERM.match(term.strip())
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        path, op, value = match.groups()
        if path not in allowed:
            raise bad_request(f"field label not supported: {path}")
        terms.append((path, "!=" if op == "!=" else "=", value))
    return terms


def _field_value(obj: dict, path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def fields_match(terms: Iterable[tuple[str, str, str]], obj: dict) -> bool:
    return all((_field_value(obj, path) == value) == (op == "=") for path, op, value in terms)


# ============================================================================================
# Patches
# ============================================================================================


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]] if path else []


def _patch_failed(message: str) -> ApiError:
    return ApiError(422, message)


def _child(container: Any, token: str, path: str) -> Any:
    if isinstance(container, dict) and token in container:
        return container[token]
    if isinstance(container, list) and token.isdigit() and int(token) < len(container):
        return container[int(token)]
    raise _patch_failed(f"doc is missing path: {path!r}")


def _locate(doc: Any, path: str) -> tuple[Any, str]:
    """The container holding the last token of `path`, and that token."""
    tokens = _pointer(path)
    if not tokens:
        raise _patch_failed(f"cannot operate on the whole document at {path!r}")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _json_get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        node = _child(node, token, path)
    return node


def _json_add(doc: Any, path: str, value: Any) -> Any:
    if not _pointer(path):
        return value
    parent, token = _locate(doc, path)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list) and token == "-":
        parent.append(value)
    elif isinstance(parent, list) and token.isdigit() and int(token) <= len(parent):
        parent.insert(int(token), value)
    else:
        raise _patch_failed(f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _json_remove(doc: Any, path: str) -> Any:
    parent, token = _locate(doc, path)
    _child(parent, token, path)  # raises when absent
    if isinstance(parent, dict):
        del parent[token]
    else:
        del parent[int(token)]
    return doc


def _json_replace(doc: Any, path: str, value: Any) -> Any:
    if not _pointer(path):
        return value
    parent, token = _locate(doc, path)
    _child(parent, token, path)  # raises when absent: replace never creates
    parent[token if isinstance(parent, dict) else int(token)] = value
    return doc


def _json_operation(doc: Any, operation: Any) -> Any:
    if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
        raise bad_request(f"invalid JSON patch operation {operation!r}")
    op, path = operation["op"], operation["path"]
    if op in ("add", "replace", "test") and "value" not in operation:
        raise bad_request(f"JSON patch {op} operation at {path!r} has no value")
    if op == "add":
        return _json_add(doc, path, copy.deepcopy(operation["value"]))
    if op == "remove":
        return _json_remove(doc, path)
    if op == "replace":
        return _json_replace(doc, path, copy.deepcopy(operation["value"]))
    if op == "test":
        if _json_get(doc, path) != operation["value"]:
            raise _patch_failed(f"testing value {path} failed: test failed")
        return doc
    if op in ("move", "copy"):
        value = copy.deepcopy(_json_get(doc, operation.get("from", "")))
        if op == "move":
            doc = _json_remove(doc, operation["from"])
        return _json_add(doc, path, value)
    raise bad_request(f"unexpected JSON patch operation {op!r}")


def json_patch(doc: dict, operations: Any) -> Any:
    """RFC 6902. A malformed patch is 400; a patch that does not apply is 422, as upstream."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    result = copy.deepcopy(doc)
    for operation in operations:
        result = _json_operation(result, operation)
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, anything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# patchMergeKey of the list fields a response step may touch; other lists are replaced.
STRATEGIC_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ownerReferences": "uid",
    "conditions": "type",
}
STRATEGIC_SET_LISTS = ("finalizers",)


def _merge_keyed_list(current: list, patch: list, key: str) -> list:
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            return copy.deepcopy(patch)
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _strategic_field(result: dict, key: str, value: Any) -> None:
    current = result.get(key)
    if value is None:
        result.pop(key, None)
    elif isinstance(value, dict):
        merged = strategic_merge_patch(current, value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    elif isinstance(value, list) and isinstance(current, list) and key in STRATEGIC_MERGE_KEYS:
        result[key] = _merge_keyed_list(current, value, STRATEGIC_MERGE_KEYS[key])
    elif isinstance(value, list) and isinstance(current, list) and key in STRATEGIC_SET_LISTS:
        result[key] = current + [v for v in value if v not in current]
    else:
        result[key] = copy.deepcopy(value)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge for the shapes a step patches: maps merge (null deletes), lists of
    containers/env/ownerReferences... merge by their key, `$patch: replace|delete` work,
    `$deleteFromPrimitiveList/<field>` works; every other list is replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return merge_patch({}, {k: v for k, v in patch.items() if k != "$patch"})
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in (value or [])]
        elif not key.startswith("$"):
            _strategic_field(result, key, value)
    return result


PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
}


def patcher_for(rt: ResourceType, media_type: str) -> Callable[[Any, Any], Any]:
    """The patch function for a Content-Type; custom resources take no strategic merge (415)."""
    accepted = [t for t in PATCHERS if rt.builtin or "strategic" not in t]
    if media_type not in accepted:
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
        )
    return PATCHERS[media_type]


# ============================================================================================
# The store
# ============================================================================================

_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def _without_version(obj: dict) -> dict:
    clean = copy.deepcopy(obj)
    clean.get("metadata", {}).pop("resourceVersion", None)
    return clean


class Store:
    """Objects keyed by (plural, namespace, name) with one global revision, as etcd keeps them.

    Every method implements one API verb with the real server's rules and raises ApiError; it
    returns deep copies so that no caller can change stored state behind the API's back.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._revision = 0
        self.types: dict[str, ResourceType] = {rt.plural: rt for rt in RESOURCE_TYPES}

    # --- lookups -----------------------------------------------------------------------------

    def resource_type(self, plural: str) -> ResourceType:
        try:
            return self.types[plural]
        except KeyError:
            raise KeyError(f"the stand-in serves no resource {plural!r}; known: {sorted(self.types)}") from None

    def served(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.types.get(plural)
        return rt if rt and (rt.group, rt.version) == (group, version) else None

    def register(self, rt: ResourceType) -> None:
        with self._lock:
            self.types[rt.plural] = rt

    @property
    def revision(self) -> str:
        with self._lock:
            return str(self._revision)

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rt.plural, (namespace or "") if rt.namespaced else "", name)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> dict | None:
        with self._lock:
            obj = self._objects.get(self._key(rt, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self.find(rt, namespace, name)
        if obj is None:
            raise ApiError(404, f'{rt.qualified} "{name}" not found', details=rt.details(name))
        return obj

    def list(self, rt: ResourceType, namespace: str | None = None, labels=(), fields=()) -> list[dict]:
        with self._lock:
            found = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self._objects.items())
                if plural == rt.plural and (namespace is None or ns == namespace)
            ]
        return [obj for obj in found if labels_match(labels, obj) and fields_match(fields, obj)]

    # --- writes ------------------------------------------------------------------------------

    def _commit(self, key: tuple[str, str, str], obj: dict) -> dict:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[key] = obj
        return copy.deepcopy(obj)

    def _require_namespace(self, namespace: str | None) -> None:
        ns_type = self.types["namespaces"]
        if not namespace or self._key(ns_type, None, namespace) not in self._objects:
            raise ApiError(404, f'namespaces "{namespace}" not found', details=ns_type.details(namespace or ""))

    def create(
        self, rt: ResourceType, namespace: str | None, body: dict, dry_run: bool = False, from_api: bool = True
    ) -> dict:
        """POST: name (or generateName), defaults, validation, 409 AlreadyExists, new revision."""
        obj = copy.deepcopy(body)
        check_identity(rt, namespace, obj, url_name=None)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = _generated_name(meta["generateName"])
        if not meta.get("name"):
            raise invalid(rt, "", [Cause("metadata.name", "name or generateName is required", kind="required")])
        with self._lock:
            if rt.namespaced:
                self._require_namespace(namespace)
            key = self._key(rt, namespace, meta["name"])
            stamp_new(rt, namespace, obj, reset_status=from_api)
            apply_defaults(rt, obj)
            validate(rt, obj)
            if key in self._objects:
                raise ApiError(
                    409, f'{rt.qualified} "{meta["name"]}" already exists', "AlreadyExists", rt.details(meta["name"])
                )
            return copy.deepcopy(obj) if dry_run else self._commit(key, obj)

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: dict, dry_run: bool = False) -> dict:
        """PUT: optimistic concurrency on metadata.resourceVersion; a no-op keeps the revision."""
        new = copy.deepcopy(body)
        check_identity(rt, namespace, new, url_name=name)
        with self._lock:
            current = self.get(rt, namespace, name)
            check_version(rt, current, new)
            carry_server_fields(rt, current, new)
            apply_defaults(rt, new)
            validate(rt, new)
            validate_update(rt, current, new)
            if dry_run or _without_version(new) == _without_version(current):
                return new if dry_run else current
            return self._commit(self._key(rt, namespace, name), new)

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, media_type: str, patch: Any, dry_run: bool = False
    ) -> dict:
        """PATCH: apply to the stored object, then update; a resourceVersion in the patch is a precondition."""
        apply = patcher_for(rt, media_type)
        with self._lock:
            current = self.get(rt, namespace, name)
            patched = apply(current, patch)
            if not isinstance(patched, dict):
                raise ApiError(422, "the patch result is not an object")
            meta = patched.setdefault("metadata", {})
            if meta.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
                raise conflict(
                    rt,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(rt, namespace, name, patched, dry_run)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        preconditions: dict | None = None,
        dry_run: bool = False,
    ) -> dict:
        """DELETE: preconditions (uid, resourceVersion) are 409s; a namespace takes its content along."""
        with self._lock:
            current = self.get(rt, namespace, name)
            check_preconditions(rt, current, preconditions or {})
            if not dry_run:
                self._revision += 1
                del self._objects[self._key(rt, namespace, name)]
                if rt.plural == "namespaces":
                    self._drop_namespace_content(name)
            return current

    def _drop_namespace_content(self, namespace: str) -> None:
        for key in [k for k in self._objects if k[1] == namespace and self.types[k[0]].namespaced]:
            del self._objects[key]

    def remove(self, rt: ResourceType, namespace: str | None, name: str) -> bool:
        """Direct state change for tests (a pod that vanishes): no API rules, still a new revision."""
        with self._lock:
            if self._objects.pop(self._key(rt, namespace, name), None) is None:
                return False
            self._revision += 1
            return True


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', details=rt.details(name))


def check_identity(rt: ResourceType, namespace: str | None, obj: dict, url_name: str | None) -> None:
    """The body must describe the resource and the place the URL names (400 otherwise)."""
    if obj.get("apiVersion") not in (None, "", rt.api_version):
        raise bad_request(
            f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
            f"({rt.api_version})"
        )
    if obj.get("kind") not in (None, "", rt.kind):
        raise bad_request(f"the kind in the data ({obj['kind']}) does not match the expected kind ({rt.kind})")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if rt.namespaced and meta.get("namespace") not in (None, "", namespace):
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    if url_name is not None and meta.get("name") != url_name:
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({url_name})"
        )


def stamp_new(rt: ResourceType, namespace: str | None, obj: dict, reset_status: bool) -> None:
    """Server-owned fields of a new object; a status sent through the main resource is dropped."""
    obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
    meta = obj["metadata"]
    if rt.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = _timestamp()
    for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(transient, None)
    if reset_status and rt.has_status:
        obj["status"] = {}


def check_version(rt: ResourceType, current: dict, new: dict) -> None:
    given = new["metadata"].get("resourceVersion")
    if not given and not rt.unconditional_update:
        raise invalid(
            rt,
            current["metadata"]["name"],
            [Cause("metadata.resourceVersion", "must be specified for an update", value=0)],
        )
    if given and given != current["metadata"]["resourceVersion"]:
        raise conflict(
            rt,
            current["metadata"]["name"],
            "the object has been modified; please apply your changes to the latest version and try again",
        )


def carry_server_fields(rt: ResourceType, current: dict, new: dict) -> None:
    """What a PUT cannot change: identity, server metadata and (behind a subresource) status."""
    new["apiVersion"], new["kind"] = rt.api_version, rt.kind
    meta, old_meta = new["metadata"], current["metadata"]
    for key in ("namespace", *_SERVER_METADATA, "resourceVersion"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if rt.has_status:
        if "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        else:
            new.pop("status", None)


def check_preconditions(rt: ResourceType, current: dict, preconditions: dict) -> None:
    meta = current["metadata"]
    for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        wanted = preconditions.get(field_name)
        if wanted and wanted != meta.get(field_name):
            raise conflict(
                rt,
                meta["name"],
                f"Precondition failed: {label} in precondition: {wanted}, "
                f"{label} in object meta: {meta.get(field_name)}",
            )


# ============================================================================================
# Manifests the test helpers create directly
# ============================================================================================


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


def _container_status(container: dict, started: str) -> dict:
    image = container["image"]
    return {
        "name": container["name"],
        "image": normalise_image(image),
        "imageID": f"{image_repository(image)}@sha256:{_digest(image)}",
        "containerID": f"containerd://{container['id']}",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": started}},
    }


def pod_manifest(
    namespace: str, name: str, node: str, containers: list[dict], labels: dict, owner: dict | None, pod_ip: str
) -> dict:
    """A scheduled, running pod with the status fields the steps read (container ids, images)."""
    started = _timestamp()
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
            "containerStatuses": [_container_status(c, started) for c in containers],
        },
    }


def node_manifest(name: str, kubelet_port: int, index: int) -> dict:
    now = _timestamp()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
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
                "containerRuntimeVersion": "containerd://2.0.2",
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


# ============================================================================================
# The checkpoint archive
# ============================================================================================


def checkpoint_file_name(pod: str, namespace: str, container: str, moment: dt.datetime) -> str:
    """The kubelet's name: checkpoint-<pod>_<namespace>-<container>-<RFC 3339 local time>.tar."""
    return f"checkpoint-{pod}_{namespace}-{container}-{_go_rfc3339(moment)}.tar"


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
        "id": (status.get("containerID") or "").partition("://")[2] or _hex64(),
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
            "io.kubernetes.cri.sandbox-id": _digest(meta.get("uid", meta["name"])),
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


# ============================================================================================
# Kubelet PKI
# ============================================================================================


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class KubeletPki:
    """A CA made for this run and one serving certificate per node (SAN IP 127.0.0.1).

    Real kubelet serving certs are often not signed by the cluster CA; a separate CA here makes
    callers prove they pass the right bundle instead of disabling verification.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        self._ca_cert = self._self_signed_ca()
        self.ca_path = directory / "kubelet-ca.crt"
        self.ca_path.write_bytes(self._ca_cert.public_bytes(serialization.Encoding.PEM))

    def _self_signed_ca(self) -> x509.Certificate:
        now = _utcnow()
        public = self._ca_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(_name("standin-kubelet-ca"))
            .issuer_name(_name("standin-kubelet-ca"))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )

    def _serving_cert(self, node: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        now = _utcnow()
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName(node), x509.DNSName("localhost")]
        return (
            x509.CertificateBuilder()
            .subject_name(_name(f"system:node:{node}"))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()), critical=False
            )
            .sign(self._ca_key, hashes.SHA256())
        )

    def server_context(self, node: str) -> ssl.SSLContext:
        """A TLS server context presenting the node's certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert_path, key_path = self.directory / f"{node}.crt", self.directory / f"{node}.key"
        cert_path.write_bytes(self._serving_cert(node, key).public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _pem_key(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        return context


# ============================================================================================
# HTTP plumbing shared by the API server and the kubelets
# ============================================================================================


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query, as Go's URL.Path
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage: case-insensitive get()
    body: bytes

    def param(self, name: str) -> str | None:
        """The last value of a query parameter (what the kubelet reads for `timeout`)."""
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def media_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def bearer_token(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise bad_request(f"error decoding request body: {exc}") from None


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, code: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(code, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers or {})

    @classmethod
    def text(cls, code: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return cls(code, text.encode(), "text/plain; charset=utf-8", headers or {})

    @classmethod
    def status(cls, error: ApiError) -> Response:
        headers = {"Retry-After": "0"} if error.code == 429 else {}
        return cls.json(error.code, error.status(), headers)


def token_ok(request: Request, token: str) -> bool:
    given = request.bearer_token()
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class _Handler(BaseHTTPRequestHandler):
    """Reads one request fully (keep-alive stays in sync), hands it to the server's app."""

    protocol_version = "HTTP/1.1"
    server_version = "standin"
    timeout = 60  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this thread, so a stalled client blocks nobody else

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            self.command, unquote(parts.path), parse_qs(parts.query, keep_blank_values=True), self.headers, body
        )
        try:
            response = self.server.app(request)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a stand-in bug must surface as a 500, not a reset
            traceback.print_exc()
            response = Response.text(500, f"stand-in failure: {type(exc).__name__}: {exc}")
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    """127.0.0.1:0, one daemon thread per connection, optionally TLS (handshake per thread)."""

    daemon_threads = True

    def __init__(self, app: Callable[[Request], Response], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.tls = tls
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):  # type: ignore[override]
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops the connection or refuses our certificate is not our error."""
        if isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)

    def launch(self) -> _Server:
        self.thread.start()
        return self

    def halt(self) -> None:
        self.shutdown()
        self.server_close()


# ============================================================================================
# Fault injection and the request log
# ============================================================================================


@dataclass
class _FailRule:
    status: int
    remaining: int
    method: str | None
    path: re.Pattern | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )


class Faults:
    """What tests put between the client and the stand-in (errors, delays, hooks), and the log
    of what was served. Shared by the API server and every kubelet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_FailRule] = []
        self._latency: dict[str | None, float] = {}
        self._hooks: list[Callable[[str, str], None]] = []
        self.requests: list[tuple[str, str, int]] = []

    def fail_next(self, status: int, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        rule = _FailRule(status, count, method.upper() if method else None, re.compile(path) if path else None)
        with self._lock:
            self._rules.append(rule)

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        with self._lock:
            if seconds > 0:
                self._latency[path] = seconds
            else:
                self._latency.pop(path, None)

    def on_request(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        with self._lock:
            self._hooks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._hooks:
                    self._hooks.remove(callback)

        return remove

    def delay_for(self, path: str) -> float:
        with self._lock:
            delays = [s for p, s in self._latency.items() if p is None or re.search(p, path)]
        return max(delays, default=0.0)

    def take_failure(self, method: str, path: str) -> int | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    return rule.status
        return None

    def hooks(self) -> list[Callable[[str, str], None]]:
        with self._lock:
            return list(self._hooks)

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def serve(
        self, request: Request, app: Callable[[Request], Response], fault: Callable[[int, str], Response]
    ) -> Response:
        """The common path of every request: latency, hooks, injected failure or the app, log."""
        delay = self.delay_for(request.path)
        if delay:
            time.sleep(delay)
        response = self._run_hooks(request, fault)
        if response is None:
            injected = self.take_failure(request.method, request.path)
            response = fault(injected, "injected by FakeKube.fail_next") if injected else app(request)
        self.record(request.method, request.path, response.code)
        return response

    def _run_hooks(self, request: Request, fault: Callable[[int, str], Response]) -> Response | None:
        for hook in self.hooks():
            try:
                hook(request.method, request.path)
            except Exception as exc:  # noqa: BLE001 - a broken hook must show, not hang the client
                return fault(500, f"on_request hook failed: {type(exc).__name__}: {exc}")
        return None


def api_fault(code: int, why: str) -> Response:
    if code == 429:
        error = ApiError(429, "Too many requests, please try again later.", details={"retryAfterSeconds": 0})
    elif code == 401:
        error = ApiError(401, "Unauthorized")
    else:
        error = ApiError(code, f"{REASONS.get(code, 'Unknown')} ({why})")
    return Response.status(error)


def kubelet_fault(code: int, why: str) -> Response:
    """The kubelet answers errors in plain text, not as a Status."""
    headers = {"Retry-After": "0"} if code == 429 else {}
    return Response.text(code, f"{REASONS.get(code, 'Error')}: {why}", headers)


# ============================================================================================
# The kubelet
# ============================================================================================

PAGE_NOT_FOUND = "404 page not found"
UNIMPLEMENTED = (  # what containerd < 2.0 answers the CRI CheckpointContainer call
    "rpc error: code = Unimplemented desc = unknown method CheckpointContainer for service runtime.v1.RuntimeService"
)


@dataclass
class NodeState:
    """One node's kubelet: where its checkpoints go and how its runtime behaves."""

    name: str
    checkpoint_dir: Path
    behaviour: str = "ok"
    padding: int = 0
    server: _Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


class Kubelet:
    """The node agent's checkpoint endpoint (KEP-2008), answering like kubelet's server.go."""

    def __init__(self, store: Store, node: NodeState, token: str) -> None:
        self.store = store
        self.node = node
        self.token = token

    def handle(self, request: Request) -> Response:
        """Direct HTTPS access: the caller's bearer token is checked first (401 in plain text)."""
        if not token_ok(request, self.token):
            return Response.text(401, "Unauthorized")
        return self.route(request)

    def route(self, request: Request) -> Response:
        """Also what the API server's node proxy calls, with its own credentials."""
        parts = [p for p in request.path.split("/") if p]
        if parts == ["healthz"] and request.method == "GET":
            return Response.text(200, "ok")
        if len(parts) == 4 and parts[0] == "checkpoint" and self.node.behaviour != "gate-off":
            if request.method != "POST":
                return Response.text(405, "405: Method Not Allowed")
            return self.checkpoint(parts[1], parts[2], parts[3], request)
        return Response.text(404, PAGE_NOT_FOUND)

    def _pod_here(self, namespace: str, name: str) -> dict | None:
        pod = self.store.find(self.store.types["pods"], namespace, name)
        return pod if pod and pod.get("spec", {}).get("nodeName") == self.node.name else None

    def checkpoint(self, namespace: str, pod_name: str, container: str, request: Request) -> Response:
        pod = self._pod_here(namespace, pod_name)
        if pod is None:
            return Response.text(404, "pod does not exist")
        if container not in [c.get("name") for c in pod["spec"].get("containers") or []]:
            return Response.text(404, f"container {container} does not exist")
        timeout = request.param("timeout")
        if timeout is not None and not re.fullmatch(r"[+-]?\d+", timeout):
            return Response.text(404, "cannot parse value of timeout parameter")
        failure = self._runtime_failure(pod, container)
        if failure:
            return Response.text(500, f"checkpointing of {namespace}/{pod_name}/{container} failed ({failure})")
        name = self._write(pod, container)
        return Response.json(200, {"items": [f"{KUBELET_CHECKPOINT_DIR}/{name}"]})

    def _runtime_failure(self, pod: dict, container: str) -> str | None:
        """What the CRI would answer instead of a checkpoint, if anything."""
        if self.node.behaviour == "unsupported":
            return UNIMPLEMENTED
        statuses = pod.get("status", {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == container), None)
        if not status or "running" not in (status.get("state") or {}):
            return f"rpc error: code = FailedPrecondition desc = container {container} is not running"
        return None

    def _write(self, pod: dict, container: str) -> str:
        moment = dt.datetime.now().astimezone().replace(microsecond=0)
        name = checkpoint_file_name(pod["metadata"]["name"], pod["metadata"]["namespace"], container, moment)
        members = checkpoint_members(pod, container, moment)
        write_checkpoint_archive(self.node.checkpoint_dir / name, members, self.node.padding, moment.timestamp())
        return name


# ============================================================================================
# The API server
# ============================================================================================


@dataclass(frozen=True)
class ResourcePath:
    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subpath: tuple[str, ...]


def parse_resource_path(path: str) -> ResourcePath | None:
    """`/api/v1/namespaces/ns/pods/x` and `/apis/g/v/...` in their collection and item forms."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        return ResourcePath(group, version, rest[1], rest[2], rest[3] if len(rest) > 3 else None, tuple(rest[4:]))
    return ResourcePath(group, version, None, rest[0], rest[1] if len(rest) > 1 else None, tuple(rest[2:]))


def _int_param(request: Request, name: str) -> int | None:
    value = request.param(name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise bad_request(f"invalid value for {name}: {value!r}")
    return int(value)


def _list_page(items: list[dict], request: Request) -> tuple[list[dict], dict]:
    """limit/continue paging; the token is an opaque offset."""
    limit = _int_param(request, "limit") or 0
    token = request.param("continue") or ""
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise ApiError(400, "continue key is not valid") from None
    if limit <= 0:
        return items[offset:], {}
    page, rest = items[offset : offset + limit], len(items) - offset - limit
    if rest <= 0:
        return page, {}
    return page, {
        "continue": base64.urlsafe_b64encode(str(offset + limit).encode()).decode(),
        "remainingItemCount": rest,
    }


class ApiServer:
    """Routes API requests to the store, with the real server's authentication and errors."""

    def __init__(self, store: Store, token: str, kubelets: dict[str, Kubelet], deletions: list[dict]) -> None:
        self.store = store
        self.token = token
        self.kubelets = kubelets
        self.deletions = deletions

    def handle(self, request: Request) -> Response:
        try:
            if not token_ok(request, self.token):
                raise ApiError(401, "Unauthorized")
            return self.route(request)
        except ApiError as error:
            return Response.status(error)
        except Exception as exc:  # noqa: BLE001 - the real server answers InternalError, so do we
            traceback.print_exc()
            return Response.status(ApiError(500, f"Internal error occurred: {type(exc).__name__}: {exc}"))

    def route(self, request: Request) -> Response:
        discovery = self.discovery(request)
        if discovery is not None:
            return discovery
        target = parse_resource_path(request.path)
        if target is None:
            raise resource_not_served()
        rt = self.store.served(target.group, target.version, target.plural)
        if rt is None or (target.namespace is not None and not rt.namespaced):
            raise resource_not_served()
        if target.subpath:
            return self.subresource(rt, target, request)
        if target.name is None:
            return self.collection(rt, target, request)
        if rt.namespaced and target.namespace is None:
            raise resource_not_served()
        return self.item(rt, target, request)

    # --- verbs -------------------------------------------------------------------------------

    def collection(self, rt: ResourceType, target: ResourcePath, request: Request) -> Response:
        if request.method == "GET":
            return self.list(rt, target.namespace, request)
        if request.method == "POST" and (target.namespace is not None or not rt.namespaced):
            created = self.store.create(rt, target.namespace, self.object_body(request), dry_run=self.dry_run(request))
            return Response.json(201, created)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def list(self, rt: ResourceType, namespace: str | None, request: Request) -> Response:
        if request.param("watch") not in (None, "", "false", "0"):
            raise bad_request("watch is not served by the stand-in API server")
        labels = parse_label_selector(request.param("labelSelector"))
        fields = parse_field_selector(request.param("fieldSelector"), rt)
        revision = self.store.revision
        items, more = _list_page(self.store.list(rt, namespace, labels, fields), request)
        if rt.builtin:  # built-in lists carry kind/apiVersion once, not per item
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        metadata = {"resourceVersion": revision, **more}
        return Response.json(
            200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": metadata, "items": items}
        )

    def item(self, rt: ResourceType, target: ResourcePath, request: Request) -> Response:
        ns, name, method = target.namespace, target.name or "", request.method
        if method == "GET":
            return Response.json(200, self.store.get(rt, ns, name))
        if method == "PUT":
            return Response.json(200, self.store.update(rt, ns, name, self.object_body(request), self.dry_run(request)))
        if method == "PATCH":
            return Response.json(
                200, self.store.patch(rt, ns, name, request.media_type, request.json_body(), self.dry_run(request))
            )
        if method == "DELETE":
            return self.delete(rt, ns, name, request)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def delete(self, rt: ResourceType, namespace: str | None, name: str, request: Request) -> Response:
        options = self.delete_options(request)
        dry_run = self.dry_run(request) or bool(options.get("dryRun"))
        deleted = self.store.delete(rt, namespace, name, options.get("preconditions"), dry_run)
        grace = self.grace_period(rt, deleted, request, options)
        if not dry_run:
            self.deletions.append(
                {
                    "plural": rt.plural,
                    "namespace": namespace,
                    "name": name,
                    "gracePeriodSeconds": grace,
                    "propagationPolicy": request.param("propagationPolicy") or options.get("propagationPolicy"),
                }
            )
        if rt.returns_object_on_delete:
            deleted["metadata"]["deletionGracePeriodSeconds"] = grace
            deleted["metadata"]["deletionTimestamp"] = _timestamp(_utcnow() + dt.timedelta(seconds=grace or 0))
            return Response.json(200, deleted)
        uid = deleted["metadata"].get("uid")
        return Response.json(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": rt.details(name, uid=uid),
            },
        )

    def grace_period(self, rt: ResourceType, deleted: dict, request: Request, options: dict) -> int | None:
        """Query parameter first, then DeleteOptions, then the pod's own terminationGracePeriodSeconds."""
        grace = _int_param(request, "gracePeriodSeconds")
        if grace is None and options.get("gracePeriodSeconds") is not None:
            grace = int(options["gracePeriodSeconds"])
        if grace is None and rt.kind == "Pod":
            grace = (deleted.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return grace

    def subresource(self, rt: ResourceType, target: ResourcePath, request: Request) -> Response:
        if rt.plural == "nodes" and target.name and target.subpath[0] == "proxy":
            return self.node_proxy(target.name, target.subpath[1:], request)
        raise resource_not_served()

    def node_proxy(self, node: str, subpath: tuple[str, ...], request: Request) -> Response:
        """nodes/proxy: the API server forwards to the node's kubelet with its own credentials."""
        self.store.get(self.store.types["nodes"], None, node)
        kubelet = self.kubelets.get(node)
        if kubelet is None:
            raise ApiError(503, "error trying to reach service: dial tcp 127.0.0.1:10250: connect: connection refused")
        forwarded = Request(request.method, "/" + "/".join(subpath), request.query, request.headers, request.body)
        return kubelet.route(forwarded)

    # --- bodies and options ------------------------------------------------------------------

    def object_body(self, request: Request) -> dict:
        if request.media_type != "application/json":
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: application/json",
            )
        body = request.json_body()
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return body

    def delete_options(self, request: Request) -> dict:
        if not request.body:
            return {}
        body = request.json_body()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        return body

    @staticmethod
    def dry_run(request: Request) -> bool:
        value = request.param("dryRun")
        if value not in (None, "", "All"):
            raise bad_request(f'unsupported dry run value "{value}"')
        return value == "All"

    # --- discovery ---------------------------------------------------------------------------

    def discovery(self, request: Request) -> Response | None:
        """Enough discovery for clients that ask (typed calls never do)."""
        if request.method != "GET":
            return None
        path = request.path.rstrip("/")
        groups = self._group_versions()
        if path == "/version":
            return Response.json(200, KUBERNETES_VERSION)
        if path == "/api":
            return Response.json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return Response.json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(g, v) for g, v in groups if g]}
            )
        for group, version in groups:
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            if path == prefix:
                return Response.json(200, self._resource_list(group, version))
            if group and path == f"/apis/{group}":
                return Response.json(200, {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, version)})
        return None

    def _group_versions(self) -> list[tuple[str, str]]:
        return sorted({(rt.group, rt.version) for rt in self.store.types.values()})

    @staticmethod
    def _group(group: str, version: str) -> dict:
        entry = {"groupVersion": f"{group}/{version}", "version": version}
        return {"name": group, "versions": [entry], "preferredVersion": entry}

    def _resource_list(self, group: str, version: str) -> dict:
        verbs = ["create", "delete", "get", "list", "patch", "update"]
        resources = [
            {
                "name": rt.plural,
                "singularName": rt.kind.lower(),
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": verbs,
            }
            for rt in self.store.types.values()
            if (rt.group, rt.version) == (group, version)
        ]
        if not group:
            resources.append(
                {
                    "name": "nodes/proxy",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "NodeProxyOptions",
                    "verbs": ["create", "delete", "get", "patch", "update"],
                }
            )
        groupversion = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": groupversion, "resources": resources}


# ============================================================================================
# The facade tests and the demo use
# ============================================================================================


class FakeKube:
    """The stand-in cluster: API server, kubelets, state helpers and fault injection.

    Direct helpers (add_*, get, list, delete) change state without HTTP, for test setup and for
    events the code under test must survive (a pod vanishing); everything the code under test
    does goes over HTTP and is logged in `requests`.
    """

    def __init__(self, workdir: Path, token: str = "standin-token") -> None:
        self.workdir = Path(workdir)
        self.token = token
        self.store = Store()
        self.faults = Faults()
        self.deletions: list[dict] = []  # every API DELETE: plural, namespace, name, gracePeriodSeconds, ...
        self._nodes: dict[str, NodeState] = {}
        self._kubelets: dict[str, Kubelet] = {}
        self._api: _Server | None = None
        self._pki: KubeletPki | None = None
        self._ips = itertools.count(2)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKube:
        if self._api is not None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pki = KubeletPki(self.workdir / "pki")
        api = ApiServer(self.store, self.token, self._kubelets, self.deletions)
        self._api = _Server(lambda request: self.faults.serve(request, api.handle, api_fault)).launch()
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        servers = [n.server for n in self._nodes.values() if n.server] + ([self._api] if self._api else [])
        for server in servers:
            server.halt()
        for node in self._nodes.values():
            node.server = None
        self._api = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _running(self) -> _Server:
        if self._api is None:
            raise RuntimeError("FakeKube is not started: call start() first")
        return self._api

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._running().port}"

    @property
    def kubeconfig(self) -> Path:
        self._running()
        return self.workdir / "kubeconfig"

    @property
    def kubelet_ca(self) -> Path:
        self._running()
        assert self._pki is not None
        return self._pki.ca_path

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served, API server and kubelets alike."""
        return self.faults.requests

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": self.token}}],
            "contexts": [
                {"name": "standin", "context": {"cluster": "standin", "user": "standin", "namespace": "default"}}
            ],
            "current-context": "standin",
        }
        _write_private(self.workdir / "kubeconfig", yaml.safe_dump(config, sort_keys=False).encode())

    # --- state helpers -----------------------------------------------------------------------

    def _type(self, plural: str) -> ResourceType:
        return self.store.resource_type(plural)

    def create(self, plural: str, obj: dict) -> dict:
        """Store any served object as given (status kept), with the API's names, defaults, checks."""
        rt = self._type(plural)
        namespace = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
        return self.store.create(rt, namespace, obj, from_api=False)

    def add_namespace(self, name: str) -> dict:
        existing = self.get("namespaces", None, name)
        return existing or self.create("namespaces", {"metadata": {"name": name}})

    def add_node(self, name: str) -> dict:
        """A Ready node with its own HTTPS kubelet (InternalIP 127.0.0.1, kubeletEndpoint port)."""
        self._running()
        if name in self._nodes:
            raise ValueError(f"node {name!r} already exists")
        assert self._pki is not None
        directory = self.workdir / "nodes" / name / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        node = NodeState(name, directory)
        kubelet = Kubelet(self.store, node, self.token)
        app = lambda request: self.faults.serve(request, kubelet.handle, kubelet_fault)  # noqa: E731
        node.server = _Server(app, self._pki.server_context(name)).launch()
        self._nodes[name], self._kubelets[name] = node, kubelet
        return self.create("nodes", node_manifest(name, node.port, len(self._nodes)))

    def add_pod(
        self,
        namespace: str,
        name: str,
        node: str,
        containers: list[dict] | None = None,
        labels: dict | None = None,
        owner: dict | None = None,
    ) -> dict:
        """A Running pod on `node`; each container {"name", "image", "id"?} gets a containerd id."""
        containers = [self._container(c) for c in (containers or [{"name": "app", "image": "nginx:1.27"}])]
        if owner and not owner.get("uid"):
            owner = {**owner, "uid": self._owner_uid(namespace, owner)}
        ip = next(self._ips)
        manifest = pod_manifest(
            namespace, name, node, containers, labels or {}, owner, f"10.244.{ip // 250}.{ip % 250 + 1}"
        )
        return self.create("pods", manifest)

    @staticmethod
    def _container(container: dict) -> dict:
        cid = container.get("id") or _hex64()
        if not re.fullmatch(r"[0-9a-f]{64}", cid):
            raise ValueError(f"container id must be 64 lowercase hex characters, got {cid!r}")
        return {"name": container["name"], "image": container.get("image", "nginx:1.27"), "id": cid}

    def _owner_uid(self, namespace: str, owner: dict) -> str:
        plural = {"ReplicaSet": "replicasets", "Deployment": "deployments", "Workflow": "workflows"}.get(owner["kind"])
        existing = self.get(plural, namespace, owner["name"]) if plural else None
        return existing["metadata"]["uid"] if existing else str(uuid.uuid4())

    def add_replicaset(
        self, namespace: str, name: str, selector: dict, labels: dict | None = None, owner: dict | None = None
    ) -> dict:
        labels = dict(labels or selector)
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
        if owner:
            metadata["ownerReferences"] = [
                owner_reference({**owner, "uid": owner.get("uid") or self._owner_uid(namespace, owner)})
            ]
        return self.create(
            "replicasets",
            {
                "metadata": metadata,
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": dict(selector)},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
                    },
                },
                "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
            },
        )

    def add_service(self, namespace: str, name: str, selector: dict) -> dict:
        return self.create(
            "services",
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": dict(selector),
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}],
                },
            },
        )

    def add_resource_type(self, group: str, version: str, plural: str, kind: str, namespaced: bool = True) -> None:
        """Serve one more custom resource (CRD-like: no strategic merge, PUT needs resourceVersion)."""
        self.store.register(
            ResourceType(group, version, plural, kind, namespaced, builtin=False, unconditional_update=False)
        )

    def get(self, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.store.find(self._type(plural), namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict]:
        return self.store.list(self._type(plural), namespace)

    def delete(self, plural: str, namespace: str | None, name: str) -> bool:
        """Make an object vanish (no API rules, not logged); True if it existed."""
        return self.store.remove(self._type(plural), namespace, name)

    # --- nodes and checkpoints ---------------------------------------------------------------

    def _node(self, node: str) -> NodeState:
        try:
            return self._nodes[node]
        except KeyError:
            raise KeyError(f"no node {node!r}; add_node() first") from None

    def checkpoint_dir(self, node: str) -> Path:
        return self._node(node).checkpoint_dir

    def kubelet_url(self, node: str) -> str:
        return f"https://127.0.0.1:{self._node(node).port}"

    def set_checkpoint_behaviour(self, node: str, behaviour: str) -> None:
        """ok; gate-off (404: ContainerCheckpoint feature gate off); unsupported (500: runtime)."""
        if behaviour not in CHECKPOINT_BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {CHECKPOINT_BEHAVIOURS}, got {behaviour!r}")
        self._node(node).behaviour = behaviour

    def set_checkpoint_padding(self, node: str, nbytes: int) -> None:
        """Add `nbytes` of random data (checkpoint/pages-2.img) to every archive from that node."""
        self._node(node).padding = max(0, int(nbytes))

    # --- fault injection ---------------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        """The next `count` requests matching method and `path` (a regex searched in the URL
        path) get `status`: a Status body from the API server, plain text from a kubelet."""
        self.faults.fail_next(status, count, method, path)

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        """Delay requests whose path matches (`None`: all); 0 removes that rule."""
        self.faults.set_latency(seconds, path)

    def on_request(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Run `callback(method, path)` before each request; returns a function that removes it."""
        return self.faults.on_request(callback)
