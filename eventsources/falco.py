"""The Falcosidekick webhook EventSource, its Service, and the NetworkPolicy in front of it.

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
