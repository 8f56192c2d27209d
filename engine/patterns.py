"""The facts both the policy model (engine.config) and the steps check values against.

Standard library only: every step imports this at start-up, and a step must not pay for
pydantic, YAML or the policy model before its first API request (issue 9, item 4). Each fact
lives here once; engine.config re-exports these names.
"""

from __future__ import annotations

import re

# Falco priorities, most severe first (falco_rules.yaml / Falco's priority type).
PRIORITIES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug")
PRIORITY_ALIASES = {"Info": "Informational"}
SEVERITY = {p: len(PRIORITIES) - i for i, p in enumerate(PRIORITIES)}  # Debug=1 … Emergency=8

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Falco rule names are free text written by whoever maintains the rules; these characters cover
# the upstream names ("Backdoored library loaded into SSHD (CVE-2024-3094)", "Attach/Exec Pod",
# "Falco internal: syscall event drop") and leave out quotes, shell and template metacharacters.
# Shared by the Sensors' filters (Go RE2) and the steps' checks (Python re): keep to their overlap.
FALCO_RULE_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9 ._:/()+,-]{0,198}[A-Za-z0-9._:/()+,-])?"
ALERT_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
# The evidence store's names, shared by the policy file's checks and the copy step's (fullmatch).
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
S3_ENDPOINT = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
S3_PREFIX = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")

DEFAULT_PROTECTED = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "falco",
    "argo",
    "argo-events",
    "falco-response",
]

# A Node's status.addresses types (k8s.io/api/core/v1 NodeAddressType), the values metrics-server's
# --kubelet-preferred-address-types takes.
NODE_ADDRESS_TYPES = ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")  # IsConfigMapKey (apimachinery validation)
