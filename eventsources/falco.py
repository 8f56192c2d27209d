"""The Falcosidekick webhook EventSource, its Service, and the NetworkPolicy in front of it.

The webhook serves TLS: Argo Events' startServer (pkg/eventsources/common/webhook/webhook.go)
calls ListenAndServeTLS with the files of serverCertSecret and serverKeySecret (mounted at
/argo-events/secrets/<name>/<key>) when BOTH are set, and plain HTTP otherwise. The Secret has the
layout cert-manager writes (type kubernetes.io/tls: tls.crt, tls.key, ca.crt), so that
build/create-secrets.sh (openssl) or a cert-manager Certificate can fill it; Falcosidekick trusts
ca.crt through a ConfigMap in its own namespace.

Built with Hera's `hera.events` models, then fixed where those models (generated from Argo
Workflows' swagger) disagree with Argo Events' real types (CONTRACTS.md section 4): they lack
apiVersion/kind, nest the webhook fields under `webhookContext` instead of inlining them, and type
`maxPayloadSize` as a string.
"""

from __future__ import annotations

from hera.events import models as ev
from hera.events.models.io.k8s.api.core.v1 import SecretKeySelector, ServicePort
from hera.events.models.io.k8s.apimachinery.pkg.apis.meta.v1 import ObjectMeta

from engine import names
from engine.config import Settings

TLS_SECRET = "falco-eventsource-tls"  # in the EventSource namespace: tls.crt, tls.key, ca.crt
TLS_CERT_KEY, TLS_KEY_KEY, TLS_CA_KEY = "tls.crt", "tls.key", "ca.crt"
CA_CONFIGMAP = "falco-eventsource-ca"  # in the Falcosidekick namespace: ca.crt, the CA it verifies with


def service_hosts(settings: Settings) -> list[str]:
    """The names the serving certificate holds: the Service as every pod resolves it."""
    es = settings.eventsource
    return [f"{names.EVENTSOURCE_SERVICE}.{es.namespace}.svc", f"{names.EVENTSOURCE_SERVICE}.{es.namespace}.svc.cluster.local"]


def webhook_address(settings: Settings) -> str:
    """What Falcosidekick posts to: https, the Service's cluster-local name (in the certificate)."""
    es = settings.eventsource
    return f"https://{service_hosts(settings)[1]}:{es.port}{es.endpoint}"


def eventsource(settings: Settings) -> dict:
    es = settings.eventsource
    model = ev.EventSource(
        metadata=ObjectMeta(
            name=names.EVENTSOURCE,
            namespace=es.namespace,
            labels=names.common_labels("eventsource"),
        ),
        spec=ev.EventSourceSpec(
            service=ev.Service(ports=[ServicePort(name="webhook", port=es.port, target_port=es.port)]),
            webhook={
                names.EVENT_NAME: ev.WebhookEventSource(
                    webhook_context=ev.WebhookContext(
                        endpoint=es.endpoint,
                        port=str(es.port),
                        method="POST",
                        url="",
                        auth_secret=SecretKeySelector(name=es.auth_secret.name, key=es.auth_secret.key),
                        max_payload_size=str(es.max_payload_size),
                        server_cert_secret=SecretKeySelector(name=TLS_SECRET, key=TLS_CERT_KEY),
                        server_key_secret=SecretKeySelector(name=TLS_SECRET, key=TLS_KEY_KEY),
                    )
                )
            },
        ),
    )
    out = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource"}
    out.update(model.model_dump(by_alias=True, exclude_none=True))
    for event in out["spec"]["webhook"].values():
        context = event.pop("webhookContext")
        context["maxPayloadSize"] = int(context["maxPayloadSize"])
        event.update(context)
    return out


def networkpolicy(settings: Settings) -> dict:
    """Only Falcosidekick pods may reach the EventSource pods, and only on the webhook port."""
    es = settings.eventsource
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": names.EVENTSOURCE_NETWORKPOLICY,
            "namespace": es.namespace,
            "labels": names.common_labels("eventsource"),
        },
        "spec": {
            # Argo Events labels EventSource pods with eventsource-name.
            "podSelector": {"matchLabels": {"eventsource-name": names.EVENTSOURCE}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": es.falcosidekick_namespace}
                            },
                            "podSelector": {"matchLabels": dict(es.falcosidekick_pod_labels)},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": es.port}],
                }
            ],
        },
    }
