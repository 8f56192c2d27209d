"""The policy file (`response.yaml`): global settings and an ordered list of policies.

Keys are snake_case like Falco's own `falco.yaml`. Policies are evaluated like firewall rules:
the first one that matches an alert decides the response. Every error names the offending key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, field_validator, model_validator

from engine import names

# The facts the steps check values against live in engine.patterns (no third-party imports: a
# step's start-up must not load pydantic or YAML); this module uses and re-exports them.
from engine.patterns import (
    CONFIGMAP_KEY,
    DEFAULT_PROTECTED,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    FALCO_RULE_NAME,
    NODE_ADDRESS_TYPES,
    PRIORITIES,
    PRIORITY_ALIASES,
    S3_BUCKET,
    S3_ENDPOINT,
    S3_PREFIX,
    SEVERITY,
)

_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<|=)?\s*([A-Za-z]+)\s*$")


class ConfigError(ValueError):
    """A policy-file problem, phrased for the person editing the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _dns_label(value: str, what: str = "name") -> str:
    if not DNS1123_LABEL.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a DNS-1123 label (lowercase alphanumerics and '-', at most 63)")
    return value


class SecretKey(_Model):
    name: str
    key: str

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_label(v, "secret name")


class EventSourceSettings(_Model):
    namespace: str = "argo-events"
    port: int = Field(12000, ge=1, le=65535)
    endpoint: str = "/falco"
    auth_secret: SecretKey = SecretKey(name="falco-webhook-token", key="token")
    max_payload_size: int = Field(65536, ge=1024, le=10 * 1024 * 1024)
    falcosidekick_namespace: str = "falco"
    falcosidekick_pod_labels: dict[str, str] = {"app.kubernetes.io/name": "falcosidekick"}

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not re.match(r"^/[A-Za-z0-9._~/-]*$", v):
            raise ValueError(f"endpoint {v!r} must be a URL path starting with '/'")
        return v

    @field_validator("namespace", "falcosidekick_namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _dns_label(v, "namespace")


class ObjectLock(_Model):
    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    days: int = Field(ge=1, le=36500)


class ServerSideEncryption(_Model):
    algorithm: Literal["AES256", "aws:kms"]
    kms_key_id: str | None = None

    @model_validator(mode="after")
    def _kms(self) -> "ServerSideEncryption":
        if self.kms_key_id and self.algorithm != "aws:kms":
            raise ValueError("kms_key_id only goes with algorithm 'aws:kms'")
        return self


class EvidenceStore(_Model):
    endpoint: str = ""  # empty: AWS S3 for the region
    bucket: str = "falco-evidence"
    region: str = "us-east-1"
    prefix: str = "falco-response"
    credentials_secret: str = "evidence-store-credentials"  # keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    object_lock: ObjectLock | None = None
    sse: ServerSideEncryption | None = None
    # The analyze pod's egress NetworkPolicy (engine/egress.py): the store by address, since a
    # NetworkPolicy cannot name a host; egress_except is cut out of each egress CIDR containing it.
    egress_cidrs: list[str] = ["0.0.0.0/0"]
    egress_except: list[str] = list(names.EGRESS_EXCEPT_DEFAULT)
    egress_port: int | None = Field(None, ge=1, le=65535)  # None: the endpoint's port, else 443
    # argoexec's wait container writes the node's outputs through the API server (its endpoints'
    # addresses and ports, after the Service's DNAT); [] leaves that rule out.
    apiserver_cidrs: list[str] = list(names.APISERVER_CIDRS_DEFAULT)
    apiserver_ports: list[int] = [443, 6443]

    @field_validator("egress_cidrs", "egress_except", "apiserver_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR such as 10.0.0.0/8 (address bits past the prefix must be 0)") from None
        if len(set(v)) != len(v):
            raise ValueError("lists a CIDR twice")
        return v

    @field_validator("apiserver_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        if any(not 1 <= port <= 65535 for port in v) or len(set(v)) != len(v):
            raise ValueError(f"{v} must be distinct ports 1-65535")
        return v

    @model_validator(mode="after")
    def _egress(self) -> "EvidenceStore":
        if not self.egress_cidrs:
            raise ValueError("egress_cidrs needs at least one CIDR: the analyze step must reach the evidence store")
        try:
            port = urlsplit(self.endpoint).port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError(f"endpoint {self.endpoint!r} has a port that is not 1-65535")
        return self

    def store_port(self) -> int:
        """egress_port, else the endpoint URL's port, else its scheme's (https 443, http 80); AWS: 443."""
        if self.egress_port is not None:
            return self.egress_port
        if not self.endpoint:
            return 443
        url = urlsplit(self.endpoint)
        return url.port or (80 if url.scheme == "http" else 443)

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not S3_BUCKET.fullmatch(v):
            raise ValueError(f"bucket {v!r} is not a valid S3 bucket name")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v and not S3_ENDPOINT.fullmatch(v):
            raise ValueError(f"endpoint {v!r} must be an http(s) URL or empty for AWS")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not S3_PREFIX.fullmatch(v) or {".", ".."} & set(v.split("/")):
            raise ValueError(f"prefix {v!r} must be '/'-separated [A-Za-z0-9._-] segments, none '.' or '..'")
        return v

    @field_validator("credentials_secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        return _dns_label(v, "secret name")


class KubeletTLS(_Model):
    """How the checkpoint step reaches the kubelet and trusts its serving certificate.

    It connects to the first of the node's addresses of `address_types` and verifies the
    certificate against the node's name with the CA bundle of ConfigMap `ca_bundle_configmap`
    (key `ca_bundle_key`), mounted into the step's pod. The default, kube-root-ca.crt, is the
    cluster CA that kube-controller-manager publishes in every namespace: it signs the kubelets'
    certificates where they use serverTLSBootstrap (EKS, GKE, kubeadm with a CSR approver).
    `insecure_skip_verify: true` verifies nothing (then no ConfigMap is used).
    """

    ca_bundle_configmap: str | None = names.KUBE_ROOT_CA_CONFIGMAP
    ca_bundle_key: str = "ca.crt"
    address_types: list[str] = ["InternalIP", "ExternalIP", "Hostname"]
    insecure_skip_verify: bool = False

    @model_validator(mode="before")
    @classmethod
    def _insecure_drops_default_ca(cls, data: object) -> object:
        # `{insecure_skip_verify: true}` alone means no CA: the default ConfigMap goes away; a
        # ConfigMap given explicitly next to it is still refused below.
        if isinstance(data, dict) and "ca_bundle_configmap" not in data:
            try:
                insecure = TypeAdapter(bool).validate_python(data.get("insecure_skip_verify", False))
            except ValidationError:
                return data  # the field's own validation reports it
            if insecure:
                return {**data, "ca_bundle_configmap": None}
        return data

    @field_validator("ca_bundle_configmap")
    @classmethod
    def _configmap(cls, v: str | None) -> str | None:
        if v is not None and not DNS1123_SUBDOMAIN.fullmatch(v):
            raise ValueError(f"ca_bundle_configmap {v!r} is not a ConfigMap name (a DNS-1123 subdomain)")
        return v

    @field_validator("ca_bundle_key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not CONFIGMAP_KEY.fullmatch(v) or v in (".", ".."):
            raise ValueError(f"ca_bundle_key {v!r} is not a ConfigMap key ([-._a-zA-Z0-9], not '.' or '..')")
        return v

    @field_validator("address_types")
    @classmethod
    def _address_types(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("address_types needs at least one of " + ", ".join(NODE_ADDRESS_TYPES))
        for kind in v:
            if kind not in NODE_ADDRESS_TYPES:
                raise ValueError(f"address type {kind!r} is not one of {', '.join(NODE_ADDRESS_TYPES)}")
        if len(set(v)) != len(v):
            raise ValueError("address_types lists a type twice")
        return v

    @model_validator(mode="after")
    def _one(self) -> "KubeletTLS":
        if self.insecure_skip_verify and self.ca_bundle_configmap:
            raise ValueError("set either ca_bundle_configmap or insecure_skip_verify: true, not both")
        if not self.insecure_skip_verify and not self.ca_bundle_configmap:
            raise ValueError("kubelet TLS needs ca_bundle_configmap, or an explicit insecure_skip_verify: true")
        return self


class CheckpointSettings(_Model):
    path: Literal["kubelet", "apiserver-proxy"] = "kubelet"
    kubelet_tls: KubeletTLS = KubeletTLS()
    timeout_seconds: int = Field(120, ge=1, le=3600)
    directory: str = names.KUBELET_CHECKPOINT_DIR
    contain_on_failure: bool = True

    @field_validator("directory")
    @classmethod
    def _dir(cls, v: str) -> str:
        if not v.startswith("/") or ".." in v.split("/"):
            raise ValueError(f"directory {v!r} must be an absolute path without '..'")
        return v.rstrip("/") or "/"


class QuarantineSettings(_Model):
    """How quarantine isolates a pod, and what the pipeline does when it cannot.

    `mechanism`: `network-policy` (a deny-all NetworkPolicy per namespace; NetworkPolicies are
    additive, so any other policy selecting the pod with allow rules keeps it reachable) or
    `admin-network-policy` (also one AdminNetworkPolicy per namespace, policy.networking.k8s.io/
    v1alpha1, priority `admin_network_policy_priority`: its Deny rules come before every
    NetworkPolicy; the cluster must serve that CRD). `on_not_isolated`: `fail` (the quarantine node
    fails and the Workflow with it) or `delete` (the pipeline then deletes the pod).
    """

    mechanism: Literal["network-policy", "admin-network-policy"] = "network-policy"
    admin_network_policy_priority: int = Field(0, ge=0, le=1000)
    on_not_isolated: Literal["fail", "delete"] = "fail"


class BlastRadius(_Model):
    """What one compromised workload can set in motion (README: Security model, "Blast radius").

    Detaching or deleting a pod makes its controller start another; if the image itself trips the
    rule, responses would multiply without end. At most `max_responses_per_owner` responses per
    top owner (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ...) within `window_seconds`,
    counted by the verify step; beyond it `on_exceeded`: `stop` (no checkpoint, no containment for
    that pod; the Workflow fails and the report says why) or `scale-down` (the owner is scaled to 0
    through its scale subresource; DaemonSets and Jobs have none: stop). At most
    `max_concurrent_responses` Workflows run at once (an Argo semaphore; the rest wait), and the
    response namespace's ResourceQuota is sized for that many. Archives a failed copy left on a
    node are removed after `archive_retention_hours` by the reaper DaemonSet, which looks every
    `reap_interval_seconds`.
    """

    max_responses_per_owner: int = Field(3, ge=1, le=1000)
    window_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)
    on_exceeded: Literal["stop", "scale-down"] = "stop"
    max_concurrent_responses: int = Field(5, ge=1, le=200)
    archive_retention_hours: int = Field(168, ge=1, le=24 * 366)
    reap_interval_seconds: int = Field(3600, ge=60, le=24 * 3600)


class Notifications(_Model):
    slack_webhook_secret: SecretKey | None = None
    webhook_secret: SecretKey | None = None  # a generic JSON webhook, URL kept in a Secret


class AnalysisSettings(_Model):
    """What the analyze step searches for in memory pages and changed files (steps/forensics/
    indicators.py): each string and regex is one more pass over the archive's bytes, so keep the
    lists short. YARA rules come from a ConfigMap (key rules.yar) in the pipelines' namespace."""

    strings: list[str] = ["stratum+tcp://", "/dev/tcp/"]
    regexes: list[str] = []
    yara_configmap: str = ""

    @field_validator("strings", "regexes")
    @classmethod
    def _indicators(cls, v: list[str]) -> list[str]:
        if len(v) > 32:
            raise ValueError(f"{len(v)} entries: at most 32 (each is one more pass over the archive)")
        for text in v:
            if not text or len(text) > 256:
                raise ValueError(f"{text!r}: 1 to 256 characters")
            if "{{" in text:  # Argo would substitute it in the step's arguments
                raise ValueError(f"{text!r}: '{{{{' cannot be passed through Argo's templating")
        return v

    @field_validator("regexes")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern.encode())
            except re.error as exc:
                raise ValueError(f"regex {pattern!r} does not compile (Python re over bytes): {exc}") from None
        return v

    @field_validator("yara_configmap")
    @classmethod
    def _configmap(cls, v: str) -> str:
        if v and not DNS1123_SUBDOMAIN.fullmatch(v):
            raise ValueError(f"{v!r} is not a ConfigMap name")
        return v


class Settings(_Model):
    namespace: str = "falco-response"  # where response workflows run
    argo_namespace: str = "argo"
    eventsource: EventSourceSettings = EventSourceSettings()
    protected_namespaces: list[str] = DEFAULT_PROTECTED
    evidence: EvidenceStore = EvidenceStore()
    checkpoint: CheckpointSettings = CheckpointSettings()
    quarantine: QuarantineSettings = QuarantineSettings()
    image: str = "ghcr.io/falco-response/steps:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    # openshift: every step runs under restricted-v2 but copy, which gets its own SecurityContextConstraints
    platform: Literal["kubernetes", "openshift"] = "kubernetes"
    dedupe_window_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)
    # verify refuses an alert older than this (or from the future beyond a minute of clock skew)
    max_alert_age_seconds: int = Field(600, ge=60, le=7 * 24 * 3600)
    delete_grace_period_seconds: int = Field(0, ge=0, le=3600)
    active_deadline_seconds: int = Field(900, ge=60, le=24 * 3600)
    pod_gc: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"] = "OnPodSuccess"
    notifications: Notifications = Notifications()
    blast_radius: BlastRadius = BlastRadius()
    analysis: AnalysisSettings = AnalysisSettings()

    @field_validator("namespace", "argo_namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _dns_label(v, "namespace")

    @field_validator("protected_namespaces")
    @classmethod
    def _protected(cls, v: list[str]) -> list[str]:
        for ns in v:
            _dns_label(ns, "namespace")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9._/:@-]*$", v):
            raise ValueError(f"image {v!r} is not an image reference")
        return v

    @model_validator(mode="after")
    def _own_namespaces_protected(self) -> "Settings":
        missing = [ns for ns in (self.namespace, self.eventsource.namespace) if ns not in self.protected_namespaces]
        if missing:
            raise ValueError(f"protected_namespaces must include the engine's own namespaces: missing {missing}")
        return self

    @model_validator(mode="after")
    def _blast_radius_fits(self) -> "Settings":
        # The verify step counts a response by a Lease owned by its Workflow: both go when the
        # Workflow's TTL (dedupe_window_seconds after completion) deletes it.
        radius = self.blast_radius
        if radius.window_seconds > self.dedupe_window_seconds:
            raise ValueError(
                f"blast_radius.window_seconds ({radius.window_seconds}) must not exceed dedupe_window_seconds "
                f"({self.dedupe_window_seconds}): the responses it counts are deleted with their Workflows then"
            )
        if radius.archive_retention_hours * 3600 <= self.active_deadline_seconds:
            raise ValueError(
                "blast_radius.archive_retention_hours must outlast active_deadline_seconds: the reaper would remove "
                "an archive a running response is still copying"
            )
        return self


class Match(_Model):
    """What an alert must carry for the policy to apply. Every given key must match (AND)."""

    rules: list[str] | None = None  # exact Falco rule names
    priority: str | None = None  # a threshold such as ">= Warning", or one name
    tags: list[str] | None = None  # any of these tags
    sources: list[str] | None = None  # e.g. [syscall]
    namespaces: list[str] | None = None
    exclude_namespaces: list[str] | None = None
    output_fields: dict[str, list[str]] | None = None  # field -> any of these exact values

    @field_validator("rules", "tags", "sources", "namespaces", "exclude_namespaces")
    @classmethod
    def _nonempty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("must not be empty (leave the key out to match anything)")
            for item in v:
                if not item or "\n" in item:
                    raise ValueError(f"{item!r} is not a usable value")
        return v

    @field_validator("tags", "sources")
    @classmethod
    def _words(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", item):
                raise ValueError(f"{item!r} must be letters, digits and _.:- (as Falco tags and sources are)")
        return v

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: list[str] | None) -> list[str] | None:
        for rule in v or []:
            if not re.fullmatch(FALCO_RULE_NAME, rule):
                raise ValueError(f"rule {rule!r} has characters the engine refuses in alerts (see FALCO_RULE_NAME)")
        return v

    @field_validator("namespaces", "exclude_namespaces")
    @classmethod
    def _ns(cls, v: list[str] | None) -> list[str] | None:
        for ns in v or []:
            _dns_label(ns, "namespace")
        return v

    @field_validator("priority")
    @classmethod
    def _priority(cls, v: str | None) -> str | None:
        # any case, as Falco reads a rule's priority; kept in Falco's form (">= Warning")
        if v is not None:
            v = normalize_priority(v)
            priorities_at_or_above(v)
        return v

    @field_validator("output_fields")
    @classmethod
    def _fields(cls, v: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for key, values in (v or {}).items():
            if not re.match(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", key):
                raise ValueError(f"output field {key!r} must be a Falco field name such as proc.name")
            if not values:
                raise ValueError(f"output field {key!r} needs at least one value")
        return v

    def priorities(self) -> list[str] | None:
        return priorities_at_or_above(self.priority) if self.priority else None


Pipeline = Literal["checkpoint-and-quarantine", "checkpoint-and-delete", "checkpoint-only", "quarantine", "delete"]


class Policy(_Model):
    name: str
    description: str = ""
    match: Match = Match()
    response: Pipeline
    dry_run: bool = False
    # isolate-first: verify's pod applies the deny-all NetworkPolicy and the quarantine label before
    # the checkpoint; evidence-first: nothing changes for the pod until the checkpoint attempt ended
    # (README: Security model, "Isolate first or evidence first").
    order: Literal["isolate-first", "evidence-first"] = "isolate-first"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        _dns_label(v, "policy name")
        if len(v) > names.POLICY_NAME_MAX:
            raise ValueError(f"policy name {v!r} is longer than {names.POLICY_NAME_MAX} characters")
        return v


class ResponseConfig(_Model):
    settings: Settings = Settings()
    policies: list[Policy]
    # load(): the sha256 of the policy file's bytes (build/kustomization.yaml records it) and the
    # YAML node tree (engine.lint points its warnings at lines with it)
    _source_sha256: str | None = PrivateAttr(default=None)
    _source_node: object = PrivateAttr(default=None)

    @field_validator("policies")
    @classmethod
    def _unique(cls, v: list[Policy]) -> list[Policy]:
        if not v:
            raise ValueError("at least one policy is needed")
        seen: set[str] = set()
        for p in v:
            if p.name in seen:
                raise ValueError(f"policy name {p.name!r} is used twice")
            seen.add(p.name)
        return v


# Falco reads a priority in any case, "info" for Informational (falco_common.cpp parse_priority:
# strcasecmp against its priority_names) and writes it in these names (format_priority).
_FALCO_NAMES = {p.lower(): p for p in PRIORITIES} | {a.lower(): p for a, p in PRIORITY_ALIASES.items()}


def normalize_priority(threshold: str) -> str:
    """">=warning" or "WARNING" -> ">= Warning" / "Warning": Falco's names, one space after the operator."""
    m = _THRESHOLD.match(threshold)
    if not m:
        raise ValueError(f"priority {threshold!r} must look like '>= Warning'")
    name = _FALCO_NAMES.get(m.group(2).lower())
    if name is None:
        raise ValueError(f"unknown priority {m.group(2)!r} (one of {', '.join(PRIORITIES)}, in any case)")
    return f"{m.group(1)} {name}" if m.group(1) else name


def priorities_at_or_above(threshold: str) -> list[str]:
    """Expand ">= Warning" (or "warning", "< ERROR", …) into the Falco priorities it admits."""
    normalized = normalize_priority(threshold)
    m = _THRESHOLD.match(normalized)
    op, name = m.group(1) or "=", m.group(2)
    level = SEVERITY[name]
    test = {
        ">=": lambda s: s >= level,
        ">": lambda s: s > level,
        "=": lambda s: s == level,
        "<=": lambda s: s <= level,
        "<": lambda s: s < level,
    }[op]
    admitted = [p for p in PRIORITIES if test(SEVERITY[p])]
    if not admitted:
        raise ValueError(f"priority {normalized!r} admits no priority")
    return admitted


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last silently),
    at the repeated key's line and column. Keys a merge (`<<: *anchor`) brings in may be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: SafeConstructor reports it
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1}): "
                        "YAML would silently keep the last", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _mark(mark) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"


def read_yaml(path: str | Path, what: str = "policy file") -> tuple[object, yaml.Node | None, bytes]:
    """(data, node tree, the file's bytes) of a YAML file; ConfigError in one line `FILE:LINE:COL: why`
    when it is not readable, not YAML or repeats a key."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {getattr(exc, 'strerror', None) or exc}") from None
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        why = " ".join(str(exc.problem or exc.context or "").split())
        if not why.startswith("duplicate key"):
            if exc.context and exc.problem:
                started = f" at {_mark(exc.context_mark)}" if exc.context_mark and exc.context_mark != mark else ""
                why += f" ({' '.join(exc.context.split())}{started})"
            why = "not valid YAML: " + why
        raise ConfigError(f"{path}:{_mark(mark)}: {why}" if mark else f"{path}: {why}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    return data, node, raw


def locate(node: yaml.Node | None, loc: tuple):
    """The start mark of the deepest node LOC reaches (a key's own mark for a mapping entry); parts
    that name nothing in the file (a missing key, pydantic's union tags) leave the mark where it was."""
    mark = node.start_mark if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entry = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if entry:
                mark, node = entry[0].start_mark, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
    return mark


def parse(data: object, source: str = "response.yaml", node: yaml.Node | None = None) -> ResponseConfig:
    """With NODE (the file's YAML nodes), every error line names FILE:LINE:COL of its key."""
    if not isinstance(data, dict):
        where = f"{source}:{_mark(node.start_mark)}" if node is not None else source
        raise ConfigError(f"{where}: the file must be a mapping with 'settings' and 'policies'")
    try:
        return ResponseConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            mark = locate(node, err["loc"]) if node is not None else None
            where = f"{source}:{_mark(mark)}" if mark else source
            lines.append(f"{where}: {_where(err['loc'])}: {' '.join(msg.split())}")
        raise ConfigError("\n".join(lines)) from None


def load(path: str | Path = "response.yaml") -> ResponseConfig:
    path = Path(path)
    data, node, raw = read_yaml(path)
    cfg = parse(data, str(path), node)
    cfg._source_sha256 = hashlib.sha256(raw).hexdigest()
    cfg._source_node = node
    return cfg
