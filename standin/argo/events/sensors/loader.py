"""The Sensors and the webhook EventSource as `make build` wrote them to build/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from standin.argo.events.sensors.errors import GoError, Unsupported


def load_yaml_objects(directory: Path, kind: str) -> list[dict]:
    objs = []
    for path in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                objs.append(doc)
    return objs


def load_sensors(build_dir: str | Path) -> list[dict]:
    """The Sensors in build/sensors, in policy order."""
    sensors = load_yaml_objects(Path(build_dir) / "sensors", "Sensor")

    def order(s: dict) -> tuple[int, str]:
        text = str(((s.get("metadata") or {}).get("annotations") or {}).get("falco-response.io/policy-order", ""))
        return (int(text) if text.isdigit() else 1 << 30, str((s.get("metadata") or {}).get("name")))

    return sorted(sensors, key=order)


@dataclass
class WebhookSpec:
    eventsource: str
    event_name: str
    endpoint: str
    method: str
    port: int
    max_payload_size: int
    auth_secret: dict | None


def load_eventsource(build_dir: str | Path) -> WebhookSpec:
    """The (single) webhook event of the EventSource in build/eventsources."""
    sources = load_yaml_objects(Path(build_dir) / "eventsources", "EventSource")
    hooks = [(es, name, hook) for es in sources for name, hook in ((es.get("spec") or {}).get("webhook") or {}).items()]
    if len(hooks) != 1:
        raise Unsupported(f"expected exactly one webhook event in {build_dir}/eventsources, found {len(hooks)}")
    es, name, hook = hooks[0]
    size = hook.get("maxPayloadSize")
    if size is not None and not isinstance(size, int):
        raise GoError(f"EventSource {es['metadata']['name']}: maxPayloadSize must be an integer, got {size!r}")
    return WebhookSpec(
        eventsource=str(es["metadata"]["name"]),
        event_name=str(name),
        endpoint=str(hook.get("endpoint") or "/"),
        method=str(hook.get("method") or "POST"),
        port=int(str(hook.get("port"))),
        max_payload_size=int(size) if size else 1048576,
        auth_secret=hook.get("authSecret"),
    )
