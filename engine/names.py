"""Every name, label and annotation the engine writes, in one place.

Generated manifests, step code and tests import these constants so that a rename is one edit
and `build/` diffs stay reviewable.
"""

from __future__ import annotations

APP = "falco-response"
DOMAIN = "falco-response.io"

# Labels on everything we generate (Kubernetes recommended labels).
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"


def common_labels(component: str) -> dict[str, str]:
    return {PART_OF: APP, COMPONENT: component, MANAGED_BY: "hera"}


# Labels and annotations the steps write on pods and workflows.
LABEL_QUARANTINED = f"{DOMAIN}/quarantined"  # "true" on a quarantined pod
LABEL_POLICY = f"{DOMAIN}/policy"
LABEL_RULE = f"{DOMAIN}/rule"
LABEL_NAMESPACE = f"{DOMAIN}/namespace"
LABEL_POD = f"{DOMAIN}/pod"
LABEL_PIPELINE = f"{DOMAIN}/pipeline"
ANNOTATION_ALERT = f"{DOMAIN}/alert"  # rule, priority and time of the alert, JSON
ANNOTATION_WORKFLOW = f"{DOMAIN}/workflow"  # <namespace>/<name> of the response workflow
ANNOTATION_REMOVED_LABELS = f"{DOMAIN}/removed-labels"  # labels taken off to detach, JSON
ANNOTATION_QUARANTINED_AT = f"{DOMAIN}/quarantined-at"
QUARANTINE_NETWORKPOLICY = "falco-response-quarantine"

# Argo UI annotations (Argo Workflows >= 3.5).
ARGO_TITLE = "workflows.argoproj.io/title"
ARGO_DESCRIPTION = "workflows.argoproj.io/description"

# Argo Events objects.
EVENTSOURCE = "falco"
EVENT_NAME = "falco-alert"
EVENTSOURCE_SERVICE = f"{EVENTSOURCE}-eventsource-svc"  # Argo Events' own naming
EVENTSOURCE_NETWORKPOLICY = "falco-eventsource-ingress"
SENSOR_SERVICE_ACCOUNT = "falco-response-sensor"
DEPENDENCY = "falco-alert"

# Falcosidekick: the Secret (in the Falco namespace) its chart loads with `config.existingSecret`,
# holding the variable Falcosidekick's config.go reads its webhook headers from.
FALCOSIDEKICK_WEBHOOK_SECRET = "falcosidekick-webhook-auth"
FALCOSIDEKICK_HEADERS_ENV = "WEBHOOK_CUSTOMHEADERS"

# What build/create-secrets.sh reads from its environment (with EVIDENCE_SECRET_ENV).
WEBHOOK_TOKEN_ENV = "FALCO_WEBHOOK_TOKEN"
KUBELET_CA_FILE_ENV = "KUBELET_CA_FILE"
SLACK_WEBHOOK_URL_ENV = "SLACK_WEBHOOK_URL"
NOTIFY_WEBHOOK_URL_ENV = "WEBHOOK_URL"


# A policy name's length bound: what its own Sensor name (`falco-response-<policy>`, 63 at most)
# allowed when each policy had one; kept so that a policy file valid before stays valid, and back.
POLICY_NAME_MAX = 48


# One Sensor, one trigger, whatever the number of policies (sensors.policies); the Sensor lists the
# policies in order, with what the trigger sets for each, in this annotation.
SENSOR = "falco-response"
TRIGGER = "respond"


def sensor_shard_name(number: int) -> str:
    """`falco-response`, then `falco-response-2`, ... when the policies outgrow one Sensor."""
    return SENSOR if number == 1 else f"{SENSOR}-{number}"


ANNOTATION_POLICIES = f"{DOMAIN}/policies"


# Workflows.
WORKFLOW_NAME_PREFIX = "falco-response-"  # + 16 hex of sha256(namespace/pod/container-id) + "-" + severity
PIPELINES = (
    "checkpoint-and-quarantine",
    "checkpoint-and-delete",
    "checkpoint-only",
    "quarantine",
    "delete",
)

# How severe a response is, weakest first: its index is the severity (0-5). A dry run (whatever
# its pipeline) contains nothing; evidence alone < containment that keeps the pod < that plus
# evidence < deletion < deletion after evidence. The Workflow name carries it, so an alert storm
# makes one Workflow per container per severity, and a more severe alert is never deduplicated
# against a weaker response (README: policy reference, escalation).
SEVERITY_ORDER = ("dry-run", "checkpoint-only", "quarantine", "checkpoint-and-quarantine", "delete", "checkpoint-and-delete")
LABEL_SEVERITY = f"{DOMAIN}/severity"


def response_severity(pipeline: str, dry_run: bool) -> int:
    """0 for a dry run, else the pipeline's place in SEVERITY_ORDER."""
    return 0 if dry_run else SEVERITY_ORDER.index(pipeline)


def workflow_name(container_hash: str, severity: int) -> str:
    """`falco-response-<16 hex>-<severity>`: 33 characters, within Argo's 63 (validate.go maxCharsInObjectName)."""
    return f"{WORKFLOW_NAME_PREFIX}{container_hash}-{severity}"


def parse_workflow_name(name: str) -> tuple[str, int] | None:
    """(container hash, severity) of a name workflow_name made; None for any other name."""
    rest = name.removeprefix(WORKFLOW_NAME_PREFIX)
    key, sep, severity = rest.rpartition("-")
    if rest == name or not sep or len(key) != 16 or any(c not in "0123456789abcdef" for c in key):
        return None
    if len(severity) != 1 or not severity.isdigit() or int(severity) >= len(SEVERITY_ORDER):
        return None
    return key, int(severity)


# A policy's `order` (engine.config Policy.order): isolate-first (the default) network-isolates the
# pod in verify's pod, before the checkpoint; evidence-first isolates only after the checkpoint
# attempt, as the quarantine or delete step. Only pipelines with both evidence and containment
# have a second variant: for the others the two orders are the same DAG.
ORDERS = ("isolate-first", "evidence-first")
ORDERED_PIPELINES = ("checkpoint-and-quarantine", "checkpoint-and-delete")


def workflow_template_name(pipeline: str, order: str = "isolate-first") -> str:
    """`falco-<pipeline>`, or `falco-<pipeline>-evidence-first` for that variant (ORDERED_PIPELINES)."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {', '.join(ORDERS)}")
    if order == "evidence-first" and pipeline in ORDERED_PIPELINES:
        return f"falco-{pipeline}-evidence-first"
    return f"falco-{pipeline}"


# Workflow parameters, in the order the Sensor fills them (dest indices depend on it).
WORKFLOW_PARAMETERS = (
    "namespace",
    "pod",
    "container-id",
    "container-name",
    "node",
    "rule",
    "priority",
    "alert-time",
    "policy",
    "dry-run",
    "alert",
)

# Steps: template name == step module == service account suffix.
STEPS = ("verify", "checkpoint", "copy", "analyze", "quarantine", "delete", "report")

# What the analyze step writes beside the checkpoint (steps/analyze.py), and the custody record that
# adds their SHA-256s to the chain of custody: a new object, since manifest.json is written once
# (If-None-Match, Object Lock) and never gets a second version.
ANALYSIS_OBJECT = "analysis.json"
# The analyze step's pods carry this label (its template's metadata, which Argo copies onto the pod:
# workflowpod.go addMetadata); its egress NetworkPolicy (engine/egress.py) selects them by it.
LABEL_STEP = f"{DOMAIN}/step"
ANALYZE_EGRESS_NETWORKPOLICY = "falco-response-analyze-egress"
# What the store's egress rule cuts out of its CIDRs by default: the cluster-private ranges (RFC 1918,
# carrier-grade NAT 100.64/10, where many pod and service CIDRs live) and link-local (169.254/16:
# the cloud metadata service and its node credentials).
EGRESS_EXCEPT_DEFAULT = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")
# Where the API server's endpoints usually are (EKS: ENIs in the VPC; kubeadm: control-plane nodes).
APISERVER_CIDRS_DEFAULT = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
ANALYSIS_SUMMARY_OBJECT = "summary"
ANALYSIS_CUSTODY_OBJECT = "custody-analyze.json"
CUSTODY_SCHEMA = f"{DOMAIN}/custody-record/v1"
EVIDENCE_MANIFEST_SCHEMA = f"{DOMAIN}/evidence-manifest/v1"


def step_service_account(step: str) -> str:
    return f"falco-response-{step}"


EVIDENCE_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
OUTPUTS_DIR = "/tmp/outputs"  # where steps write output parameters (an emptyDir)
KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"

# Kubernetes' own names the engine relies on.
KUBE_ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # published in every namespace (rootcacertpublisher), key ca.crt
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where a pod's token is mounted


def executor_token_secret(service_account: str) -> str:
    """The Secret Argo's controller mounts for `executor.serviceAccountName` (util/secrets TokenName)."""
    return f"{service_account}.service-account-token"

# The analyze step's YARA rules (settings.analysis.yara_configmap): the ConfigMap key and where it is mounted.
YARA_RULES_KEY = "rules.yar"
YARA_RULES_DIR = "/etc/falco-response/yara"
