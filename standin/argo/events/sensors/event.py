"""The event data the webhook EventSource publishes for a posted body: the bytes every Sensor step reads."""

from __future__ import annotations

import json
from typing import Any

from standin.argo.events.sensors.gojson import go_json_string, go_marshal, go_text, parse_json

MEDIA_JSON = "application/json"


def falcosidekick_headers(body: bytes, authorization: str | None = "*** Masked Auth Secret ***") -> dict[str, list[str]]:
    """The headers Falcosidekick's webhook output sends, as the EventSource records them."""
    headers = {
        "Accept-Encoding": ["gzip"],
        "Content-Length": [str(len(body))],
        "Content-Type": ["application/json; charset=utf-8"],
        "User-Agent": ["Falcosidekick"],
    }
    if authorization is not None:
        headers["Authorization"] = [authorization]
    return headers


def webhook_event_data(body: bytes, headers: dict[str, list[str]] | None = None, metadata: dict | None = None) -> bytes:
    """json.Marshal(WebhookEventData{Header, Body: RawMessage(body), Metadata}) as the EventSource does.

    Raises JSONSyntaxError when the body is not valid JSON (the EventSource answers 400).
    """
    node = parse_json(go_text(body))
    if headers is None:
        headers = falcosidekick_headers(body)
    head = "{" + ",".join(go_json_string(k) + ":" + go_marshal(list(headers[k])) for k in sorted(headers)) + "}"
    out = '{"header":' + head + ',"body":' + node.raw
    if metadata:
        out += ',"metadata":' + go_marshal(dict(metadata))
    return (out + "}").encode("utf-8")


def event_data_for_alert(alert: Any) -> bytes:
    """Event data for an alert given as a decoded object (serialized as Falcosidekick would)."""
    body = json.dumps(alert, ensure_ascii=False).encode("utf-8")
    return webhook_event_data(body)
