"""One Sensor on one event: its dependencies' filters, then (if they pass) its triggers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from standin.argo.events.sensors.errors import GoError, Unsupported
from standin.argo.events.sensors.filters import FilterFailure, check_dependency, evaluate_dependency
from standin.argo.events.sensors.gojson import Node, go_text, parse_json
from standin.argo.events.sensors.loader import WebhookSpec
from standin.argo.events.sensors.triggers import TriggerResult, run_trigger


@dataclass
class SensorResult:
    sensor: str
    policy: str | None
    order: int
    matched: bool
    failure: FilterFailure | None = None
    dependencies: list[str] = field(default_factory=list)
    triggers: list[TriggerResult] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.matched:
            return "all filters passed"
        return self.failure.describe() if self.failure else "no trigger fired"


def evaluate(
    sensor: dict,
    event_data: bytes | Node,
    *,
    event_source: str = "falco",
    event_name: str = "falco-alert",
    now_ms: int | None = None,
) -> SensorResult:
    """Everything one Sensor does with one event: filters, then (if they pass) its triggers."""
    meta = sensor.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    order_text = str(annotations.get("falco-response.io/policy-order", "0"))
    result = SensorResult(
        sensor=str(meta.get("name")),
        policy=labels.get("falco-response.io/policy"),
        order=int(order_text) if order_text.isdigit() else 0,
        matched=False,
    )
    spec = sensor.get("spec") or {}
    for key in spec:
        if key not in ("dependencies", "triggers", "template", "eventBusName", "replicas", "revisionHistoryLimit", "loggingFields", "errorOnFailedRound"):
            raise Unsupported(f"Sensor spec field {key!r}")
    check_sensor_object(sensor)
    root = event_data if isinstance(event_data, Node) else parse_json(go_text(event_data))
    events: dict[str, Node] = {}
    for dep in spec.get("dependencies") or []:
        name = str(dep.get("name"))
        result.dependencies.append(name)
        if dep.get("eventSourceName") != event_source or dep.get("eventName") != event_name:
            check_dependency(dep)
            result.failure = FilterFailure(
                name, "event", None, None,
                f"waits for {dep.get('eventSourceName')}/{dep.get('eventName')}, not {event_source}/{event_name}",
            )
            continue
        failure = evaluate_dependency(dep, root)
        if failure is None:
            events[name] = root
        elif result.failure is None or result.failure.kind == "event":
            result.failure = failure
    if not events:
        return result
    if len(events) != len(spec.get("dependencies") or []):
        # A trigger needs all the dependencies its conditions name; ours name exactly one.
        if len(spec.get("dependencies") or []) > 1:
            raise Unsupported("Sensors with several dependencies are not simulated")
    result.failure = None
    result.matched = True
    for trigger in spec.get("triggers") or []:
        result.triggers.append(run_trigger(sensor, trigger, events, now_ms=now_ms))
    return result


# Linux's MAX_ARG_STRLEN: the longest single argument or environment string execve accepts.
MAX_ARG_STRLEN = 131072


def check_sensor_object(sensor: dict) -> None:
    """The Sensor's pod must start: the controller (pkg/reconciler/sensor/resource.go) sets
    SENSOR_OBJECT to base64(json.Marshal({name, namespace, spec})), and an environment string
    over MAX_ARG_STRLEN makes the container's exec fail (argo-events issue #2146)."""
    meta = sensor.get("metadata") or {}
    text = json.dumps({"metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                       "spec": sensor.get("spec")}, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode()) + 5 * sum(text.count(c) for c in "<>&")  # Go escapes them as \u003c
    env = len("SENSOR_OBJECT=") + 4 * ((size + 2) // 3) + 1
    if env > MAX_ARG_STRLEN:
        raise GoError(
            f"Sensor {meta.get('name')}: SENSOR_OBJECT would be {env} bytes, over Linux's {MAX_ARG_STRLEN}: "
            "its pod cannot start (exec: argument list too long)"
        )


def evaluate_all(sensors: list[dict], event_data: bytes, webhook: WebhookSpec, now_ms: int | None = None) -> list[SensorResult]:
    root = parse_json(go_text(event_data))  # parsed once, read by every Sensor
    return [
        evaluate(s, root, event_source=webhook.eventsource, event_name=webhook.event_name, now_ms=now_ms)
        for s in sensors
    ]
