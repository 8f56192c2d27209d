"""The analyze step's NetworkPolicy: no ingress; egress only to DNS, the evidence store and the API server.

analyze runs an analyzer over an archive an attacker may have shaped, so its pod may reach only what it
needs. It selects the pods by names.LABEL_STEP, which the analyze template carries in its metadata and
Argo copies onto each pod it creates (workflow/controller/workflowpod.go addMetadata); no other step's
template carries it. NetworkPolicies are additive: another policy selecting these pods widens this one.

- DNS: kube-dns pods in kube-system, UDP and TCP 53 (OpenShift: the namespace openshift-dns, whose
  CoreDNS listens on 5353 behind the dns-default Service's port 53; policies see the pod's port).
- The store, by address (a NetworkPolicy cannot name a host): `evidence.egress_cidrs` on TCP
  `evidence.store_port()`, each CIDR minus those of `evidence.egress_except` inside it (by default the
  private, carrier-grade NAT and link-local ranges, 169.254.0.0/16 being the cloud metadata service).
- The API server: the pod's argoexec `wait` container writes the node's outputs as a
  WorkflowTaskResult through it (workflow/executor, with the executor's token; the step itself has no
  token). Policies apply after the `kubernetes` Service's DNAT, to its endpoints (control-plane or node
  addresses, often private; port 443 or 6443), so that Service's ClusterIP cannot be named:
  `evidence.apiserver_cidrs` on `evidence.apiserver_ports`, by default the private ranges. This is the
  policy's widest hole (any private address on those ports); narrow it to your endpoints' addresses.
"""

from __future__ import annotations

import ipaddress

from engine import names
from engine.config import Settings

DNS = {  # platform -> (namespace, pod labels or None, ports the DNS pods listen on)
    "kubernetes": ("kube-system", {"k8s-app": "kube-dns"}, (53,)),
    "openshift": ("openshift-dns", None, (5353,)),
}


def _ip_block(cidr: str, excepts: list[str]) -> dict:
    """{ipBlock: cidr, except: the excepts strictly inside it}: the API refuses any other except."""
    net = ipaddress.ip_network(cidr)
    inside = [e for e in excepts
              if (sub := ipaddress.ip_network(e)).version == net.version and sub != net and sub.subnet_of(net)]
    return {"ipBlock": {"cidr": cidr, **({"except": inside} if inside else {})}}


def analyze_networkpolicy(settings: Settings) -> dict:
    ev = settings.evidence
    dns_namespace, dns_labels, dns_ports = DNS[settings.platform]
    dns_peer: dict = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": dns_namespace}}}
    if dns_labels:
        dns_peer["podSelector"] = {"matchLabels": dict(dns_labels)}
    egress = [
        {"to": [dns_peer], "ports": [{"protocol": p, "port": port} for port in dns_ports for p in ("UDP", "TCP")]},
        {"to": [_ip_block(c, ev.egress_except) for c in ev.egress_cidrs],
         "ports": [{"protocol": "TCP", "port": ev.store_port()}]},
    ]
    if ev.apiserver_cidrs:
        egress.append({"to": [_ip_block(c, []) for c in ev.apiserver_cidrs],
                       "ports": [{"protocol": "TCP", "port": port} for port in ev.apiserver_ports]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": names.ANALYZE_EGRESS_NETWORKPOLICY,
            "namespace": settings.namespace,
            "labels": names.common_labels("analyze"),
        },
        "spec": {
            "podSelector": {"matchLabels": {names.LABEL_STEP: "analyze"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress,
        },
    }
