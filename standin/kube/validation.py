"""Names, labels, annotations and a few per-kind rules: what the real server rejects with 422."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from standin.kube.errors import ApiError, Cause
from standin.kube.resources import ResourceType

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
    if rule == "path":  # RBAC objects: apimachinery path.ValidatePathSegmentName
        if name in (".", ".."):
            return [f"may not be '{name}'"]
        return [f"may not contain '{c}'" for c in ("/", "%") if c in name]
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


# --- AdminNetworkPolicy: the CRD's OpenAPI schema and CEL rules (network-policy-api apis/v1alpha1
# adminnetworkpolicy_types.go and shared_types.go kubebuilder markers), for the fields it defines.

_ANP_ACTIONS = ("Allow", "Deny", "Pass")
_ANP_INGRESS_PEERS = ("namespaces", "pods")
_ANP_EGRESS_PEERS = ("namespaces", "pods", "nodes", "networks", "domainNames")


def _one_of(obj: Any, path: str, allowed: tuple[str, ...]) -> list[Cause]:
    """MinProperties=1, MaxProperties=1 over the listed optional fields."""
    if not isinstance(obj, dict):
        return [Cause(path, "must be an object", value=obj)]
    set_ = [k for k in obj if k in allowed]
    if len(obj) > 1:
        return [Cause(path, f"{path} in body should have at most 1 properties", value=len(obj))]
    if not set_:
        return [Cause(path, f"{path} in body should have at least 1 properties", value=len(obj))]
    return []


def _list_causes(value: Any, path: str, low: int, high: int) -> list[Cause]:
    if not isinstance(value, list):
        return [Cause(path, "must be an array", value=value)]
    if len(value) < low:
        return [Cause(path, f"{path} in body should have at least {low} items", value=len(value))]
    if len(value) > high:
        return [Cause(path, f"must have at most {high} items", value=len(value))]
    return []


def _namespaced_pod(pods: Any, path: str) -> list[Cause]:
    if not isinstance(pods, dict):
        return [Cause(path, "must be an object", value=pods)]
    return [Cause(f"{path}.{key}", "", kind="required") for key in ("namespaceSelector", "podSelector") if key not in pods]


def _anp_rule_causes(rule: Any, path: str, peers_key: str, peer_kinds: tuple[str, ...]) -> list[Cause]:
    if not isinstance(rule, dict):
        return [Cause(path, "must be an object", value=rule)]
    causes = []
    if "action" not in rule:
        causes.append(Cause(f"{path}.action", "", kind="required"))
    elif rule["action"] not in _ANP_ACTIONS:
        causes.append(Cause(f"{path}.action", 'supported values: "Allow", "Deny", "Pass"', value=rule["action"]))
    if len(str(rule.get("name", ""))) > 100:
        causes.append(Cause(f"{path}.name", "may not be longer than 100", value=rule["name"]))
    if peers_key not in rule:
        causes.append(Cause(f"{path}.{peers_key}", "", kind="required"))
        return causes
    listed = _list_causes(rule[peers_key], f"{path}.{peers_key}", 1, 100)
    if listed:
        return causes + listed
    for i, peer in enumerate(rule[peers_key]):
        where = f"{path}.{peers_key}[{i}]"
        problems = _one_of(peer, where, peer_kinds)
        if problems:
            causes += problems
            continue
        if "pods" in peer:
            causes += _namespaced_pod(peer["pods"], f"{where}.pods")
        if "networks" in peer:
            networks = peer["networks"]
            causes += _list_causes(networks, f"{where}.networks", 1, 25)
            for j, cidr in enumerate(networks if isinstance(networks, list) else []):
                text = str(cidr)
                if len(text) > 43:
                    causes.append(Cause(f"{where}.networks[{j}]", "may not be longer than 43", value=cidr))
                elif (":" in text) == ("." in text):  # x-kubernetes-validations on type CIDR
                    causes.append(Cause(f"{where}.networks[{j}]", "CIDR must be either an IPv4 or IPv6 address. "
                                        "IPv4 address embedded in IPv6 addresses are not supported", value=cidr))
    return causes


def _admin_network_policy_causes(obj: dict) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause("spec", "", kind="required")]
    causes = []
    priority = spec.get("priority")
    if priority is None:
        causes.append(Cause("spec.priority", "", kind="required"))
    elif not isinstance(priority, int) or isinstance(priority, bool):
        causes.append(Cause("spec.priority", 'spec.priority in body must be of type integer: "' + type(priority).__name__ + '"', value=priority))
    elif priority < 0:
        causes.append(Cause("spec.priority", "spec.priority in body should be greater than or equal to 0", value=priority))
    elif priority > 1000:
        causes.append(Cause("spec.priority", "spec.priority in body should be less than or equal to 1000", value=priority))
    if "subject" not in spec:
        causes.append(Cause("spec.subject", "", kind="required"))
    else:
        problems = _one_of(spec["subject"], "spec.subject", ("namespaces", "pods"))
        causes += problems
        if not problems and "pods" in spec["subject"]:
            causes += _namespaced_pod(spec["subject"]["pods"], "spec.subject.pods")
    for key, peers_key, kinds in (("ingress", "from", _ANP_INGRESS_PEERS), ("egress", "to", _ANP_EGRESS_PEERS)):
        if key not in spec:
            continue
        listed = _list_causes(spec[key], f"spec.{key}", 0, 100)
        if listed:
            causes += listed
            continue
        for i, rule in enumerate(spec[key]):
            causes += _anp_rule_causes(rule, f"spec.{key}[{i}]", peers_key, kinds)
    return causes


KIND_VALIDATORS: dict[str, Callable[[dict], list[Cause]]] = {
    "Pod": _pod_causes,
    "NetworkPolicy": _network_policy_causes,
    "AdminNetworkPolicy": _admin_network_policy_causes,
}


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    parts = [f"{c.field}: {c.message()}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    details["causes"] = [{"reason": c.reason(), "message": c.message(), "field": c.field} for c in causes]
    # a custom resource is named with its group (apiextensions-apiserver's strategy: Kind.group)
    title = rt.kind if rt.builtin else f"{rt.kind}.{rt.group}"
    return ApiError(422, f'{title} "{name}" is invalid: {summary}', details=details)


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
