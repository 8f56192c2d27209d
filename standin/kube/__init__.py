"""A strict stand-in for the Kubernetes API server and for the kubelets' checkpoint endpoint.

Why it exists: the steps talk to Kubernetes through the official `kubernetes` client and to the
kubelet over HTTPS. Their tests must see what a real cluster answers -- status codes, `Status`
bodies, resourceVersion conflicts, selectors, patch semantics, TLS, checkpoint archives -- not
function-level mocks that agree with whatever the code under test assumes. So this package serves
a small, strict subset of the API over real HTTP on 127.0.0.1 (the client connects through a
kubeconfig with a bearer token, unchanged), plus one HTTPS "kubelet" per node.

Strict means: what the subset serves behaves like the real API server (409 on a stale
resourceVersion, 422 on a bad name or label, 415 on an unknown patch type, 404 with a proper
`Status`), and what it does not serve fails loudly (404 "could not find the requested resource")
instead of pretending. Every caller is somebody: one token per ServiceAccount, and the API server
and the kubelets authorise each request with RBAC evaluated from the Roles, ClusterRoles and
bindings applied (403 with the real Status body or kubelet text); Pods go through ServiceAccount
admission and start only when the kubelet can mount what they name. Only the admin token
(`system:masters`) bypasses RBAC, as it does on a real cluster: tests use it for set-up and Argo's
controller for creating pods. Tests inject faults (`fail_next`, `set_latency`, `on_request`) and
read back what was served (`requests`, `deletions`).

Usage:
    with FakeKube(tmp_path) as kube:
        kube.add_namespace("default"); kube.add_node("node-1")
        kube.apply_build("build")            # ServiceAccounts, Roles, bindings, token Secrets
        kube.add_pod("default", "web", "node-1", containers=[{"name": "app", "image": "nginx:1.27"}])
        token = kube.service_account_token("falco-response", "falco-response-verify")
        env = {**os.environ, **kube.env(token)}   # KUBECONFIG presenting that account's token

Layout, one concern a module: resources (what is served), errors (Status bodies), validation and
defaults (what every write goes through), selectors, patches, store (the verbs' rules), auth
(tokens, users, request attributes), rbac (the authorizer), admission (ServiceAccount admission,
token controller), podstart (the kubelet starting a pod: volumes, env, Pending), manifests,
archive (checkpoint tars), pki (kubelet certificates), serving (HTTP plumbing), faults, kubelet,
scale (the scale subresource of Deployments, ReplicaSets, StatefulSets),
apiserver, and cluster (FakeKube, the facade). Every public name is re-exported here, so callers
import from `standin.kube` alone.
"""

from __future__ import annotations

from standin.kube.admission import (
    ROOT_CA_CONFIGMAP,
    TOKEN_DIR,
    TOKEN_SECRET_TYPE,
    account_unchanged,
    admit_pod,
    ensure_default_service_account,
    populate_token_secrets,
    should_automount,
)
from standin.kube.apiserver import ApiServer, ResourcePath, parse_resource_path
from standin.kube.auth import ADMIN, Attributes, Tokens, User, forbidden, request_attributes, service_account_user
from standin.kube.archive import (
    CRIU_PID,
    PADDING_MEMBER,
    checkpoint_file_name,
    checkpoint_members,
    criu_images,
    write_checkpoint_archive,
)
from standin.kube.cluster import FakeKube
from standin.kube.defaults import DEFAULTERS, apply_defaults
from standin.kube.errors import REASONS, ApiError, Cause, bad_request, conflict, resource_not_served
from standin.kube.faults import Faults, api_fault, kubelet_fault
from standin.kube.kubelet import (
    CHECKPOINT_BEHAVIOURS,
    CONTAINER_RUNTIMES,
    CRIO_UNSUPPORTED,
    criu_tcp_refusal,
    crio_criu_tcp_refusal,
    KUBELET_CHECKPOINT_DIR,
    PAGE_NOT_FOUND,
    UNIMPLEMENTED,
    Kubelet,
    NodeState,
)
from standin.kube.manifests import image_repository, node_manifest, normalise_image, owner_reference, pod_manifest
from standin.kube.patches import (
    PATCHERS,
    STRATEGIC_MERGE_KEYS,
    STRATEGIC_SET_LISTS,
    json_patch,
    merge_patch,
    patcher_for,
    strategic_merge_patch,
)
from standin.kube.pki import KubeletPki
from standin.kube.podstart import PodPending, PodStart, Volume
from standin.kube.rbac import Authorizer, rule_allows, subject_applies
from standin.kube.resources import KUBERNETES_VERSION, OWNER_API_VERSIONS, RESOURCE_TYPES, ResourceType
from standin.kube.selectors import Requirement, fields_match, labels_match, parse_field_selector, parse_label_selector
from standin.kube.serving import Request, Response, token_ok
from standin.kube.store import Store, carry_server_fields, check_identity, check_preconditions, check_version, stamp_new
from standin.kube.validation import (
    KIND_VALIDATORS,
    invalid,
    label_key_problem,
    label_value_problem,
    name_problems,
    validate,
    validate_update,
)

__all__ = [
    "ADMIN",
    "Attributes",
    "Authorizer",
    "PodPending",
    "PodStart",
    "ROOT_CA_CONFIGMAP",
    "TOKEN_DIR",
    "TOKEN_SECRET_TYPE",
    "Tokens",
    "User",
    "Volume",
    "account_unchanged",
    "admit_pod",
    "ensure_default_service_account",
    "forbidden",
    "populate_token_secrets",
    "request_attributes",
    "rule_allows",
    "service_account_user",
    "should_automount",
    "subject_applies",
    "ApiError",
    "ApiServer",
    "CHECKPOINT_BEHAVIOURS",
    "CONTAINER_RUNTIMES",
    "CRIO_UNSUPPORTED",
    "criu_tcp_refusal",
    "crio_criu_tcp_refusal",
    "CRIU_PID",
    "Cause",
    "DEFAULTERS",
    "FakeKube",
    "Faults",
    "KIND_VALIDATORS",
    "KUBELET_CHECKPOINT_DIR",
    "KUBERNETES_VERSION",
    "Kubelet",
    "KubeletPki",
    "NodeState",
    "OWNER_API_VERSIONS",
    "PADDING_MEMBER",
    "PAGE_NOT_FOUND",
    "PATCHERS",
    "REASONS",
    "RESOURCE_TYPES",
    "Request",
    "Requirement",
    "ResourcePath",
    "ResourceType",
    "Response",
    "STRATEGIC_MERGE_KEYS",
    "STRATEGIC_SET_LISTS",
    "Store",
    "UNIMPLEMENTED",
    "api_fault",
    "apply_defaults",
    "bad_request",
    "carry_server_fields",
    "check_identity",
    "check_preconditions",
    "check_version",
    "checkpoint_file_name",
    "checkpoint_members",
    "conflict",
    "criu_images",
    "fields_match",
    "image_repository",
    "invalid",
    "json_patch",
    "kubelet_fault",
    "label_key_problem",
    "label_value_problem",
    "labels_match",
    "merge_patch",
    "name_problems",
    "node_manifest",
    "normalise_image",
    "owner_reference",
    "parse_field_selector",
    "parse_label_selector",
    "parse_resource_path",
    "patcher_for",
    "pod_manifest",
    "resource_not_served",
    "stamp_new",
    "strategic_merge_patch",
    "token_ok",
    "validate",
    "validate_update",
    "write_checkpoint_archive",
]
