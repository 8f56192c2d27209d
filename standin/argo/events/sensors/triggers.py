"""Trigger parameters and the argoWorkflow submit (pkg/sensors/triggers): the Workflow a Sensor creates."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from typing import Any

import yaml

from standin.argo.events.sensors.errors import GoError, Unsupported
from standin.argo.events.sensors.gjson import gjson_get
from standin.argo.events.sensors.gojson import Node, cached, go_marshal, parse_json
from standin.argo.events.sensors.gotemplate import go_template
from standin.argo.events.sensors.sjson import sjson_set


@dataclass
class TriggerResult:
    name: str
    workflow: dict | None
    error: str | None = None


def resolve_parameter(src: dict, events: dict[str, Node]) -> tuple[str | None, str]:
    """ResolveParamValue: (value or None, type) where type is 'String', 'JSON', 'Null', ..."""
    for key in src:
        if key not in ("dependencyName", "dataKey", "dataTemplate", "value", "contextKey", "contextTemplate", "useRawData"):
            raise Unsupported(f"trigger parameter source field {key!r}")
    if src.get("contextKey") or src.get("contextTemplate"):
        raise Unsupported("trigger parameters from the CloudEvent context (contextKey/contextTemplate)")
    default = src.get("value")
    default = None if default is None else str(default)
    root = events.get(str(src.get("dependencyName")))
    if root is None:
        if default is not None:
            return default, "String"
        return None, "String"
    key = src.get("dataKey") or ""
    template = src.get("dataTemplate") or ""
    if not key and not template:
        if default is not None:
            return default, "String"
        raise Unsupported("a parameter without dataKey/dataTemplate/value passes the whole event: not simulated")
    if template:
        try:
            out = go_template(template).execute({"Input": cached(root, "value", root.value)})
            if out not in ("", "<no value>"):
                return out, "String"
        except GoError:
            pass
    if key:
        node = gjson_get(root, key)
        if node is not None:
            if node.kind in ("object", "array") or node.kind == "null":
                return node.raw, node.gtype()
            return node.string(), node.gtype()
    if default is not None:
        return default, "String"
    raise GoError(f"unable to resolve '{src.get('dependencyName')}' parameter value")


def apply_parameters(obj: Any, params: list[dict], events: dict[str, Node]) -> Any:
    """ApplyParams: every parameter's value set at its dest (sjson), in order."""
    obj = copy.deepcopy(obj)
    for i, param in enumerate(params or []):
        for key in param:
            if key not in ("src", "dest", "operation"):
                raise Unsupported(f"trigger parameter field {key!r}")
        value, typ = resolve_parameter(param.get("src") or {}, events)
        if value is None:
            continue
        dest = str(param.get("dest") or "")
        op = param.get("operation") or "overwrite"
        if op in ("append", "prepend"):
            current = gjson_get(parse_json(go_marshal(obj)), dest)
            if current is not None:
                typ = "String"
                value = current.string() + value if op == "append" else value + current.string()
        elif op != "overwrite":
            raise GoError(f"unsupported trigger parameter operation: {op}")
        if typ != "String" and (param.get("src") or {}).get("useRawData"):
            raw_value = json.loads(value)
            obj = sjson_set(obj, dest, raw_value, in_place=True)
        else:
            obj = sjson_set(obj, dest, value, in_place=True)
    return obj


def inline_resource(text: Any) -> dict:
    """The resource of `source.inline` (artifacts/inline.go InlineReader, then store.go
    decodeAndUnstructure: ghodss/yaml.Unmarshal into a map, i.e. YAML 1.1 (yaml.v2) converted to
    JSON). JSON text reads exactly as JSON; other YAML through PyYAML's YAML 1.1 loader."""
    if not isinstance(text, str):
        raise ValueError(f"inline is {type(text).__name__}, not a string")
    try:
        obj = json.loads(text)
    except ValueError:
        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"error converting YAML to JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise ValueError("error unmarshaling JSON: cannot unmarshal into Go value of type map[string]interface {}")
    return _wire(obj)


def _wire(obj: Any) -> Any:
    """A JSON round trip, as the Sensor marshals and unmarshals the template."""
    return json.loads(json.dumps(obj))


def run_trigger(sensor: dict, trigger: dict, events: dict[str, Node], now_ms: int | None = None) -> TriggerResult:
    trigger = _wire(trigger)
    for key in trigger:
        if key not in ("template", "parameters", "policy", "retryStrategy", "rateLimit", "atLeastOnce"):
            raise Unsupported(f"trigger field {key!r}")
    template = trigger.get("template") or {}
    name = str(template.get("name"))
    if trigger.get("parameters"):
        # listener.go triggerOne: ApplyTemplateParameters first; an unresolvable one fails the trigger
        try:
            template = _wire(apply_parameters(template, trigger["parameters"], events))
        except GoError as exc:
            return TriggerResult(name, None, f"failed to apply template parameters, {exc}")
    for key in template:
        if key not in ("name", "argoWorkflow", "conditions"):
            raise Unsupported(f"trigger {name!r}: trigger type {key!r} (only argoWorkflow is simulated)")
    conditions = template.get("conditions")
    if conditions and conditions.strip() not in events:
        raise Unsupported(f"trigger {name!r}: conditions {conditions!r} (only a single dependency name is simulated)")
    aw = template.get("argoWorkflow")
    if not isinstance(aw, dict):
        raise Unsupported(f"trigger {name!r}: no argoWorkflow")
    operation = aw.get("operation") or "submit"
    if operation != "submit":
        raise Unsupported(f"trigger {name!r}: argoWorkflow operation {operation!r}")
    if aw.get("args"):
        raise Unsupported(f"trigger {name!r}: argoWorkflow args {aw['args']!r}")
    source = aw.get("source") or {}
    if set(source) not in ({"resource"}, {"inline"}):
        raise Unsupported(f"trigger {name!r}: source {sorted(source)} (only an embedded resource or inline text is simulated)")
    if "inline" in source:
        try:
            resource = inline_resource(source["inline"])
        except ValueError as exc:
            return TriggerResult(name, None, f"failed to fetch the trigger resource: {exc}")
    else:
        resource = copy.deepcopy(source["resource"])
    try:
        workflow = apply_parameters(resource, aw.get("parameters") or [], events)
    except GoError as exc:
        return TriggerResult(name, None, f"failed to apply parameters: {exc}")
    if not isinstance(workflow, dict):
        return TriggerResult(name, None, "the resource is not an object")
    meta = workflow.setdefault("metadata", {})
    if not meta.get("name") and not meta.get("generateName"):
        return TriggerResult(name, None, "failed to trigger the workflow, neither name nor generateName is given")
    if not meta.get("namespace"):
        meta["namespace"] = (sensor.get("metadata") or {}).get("namespace")
    labels = meta.get("labels") or {}
    labels["events.argoproj.io/sensor"] = str((sensor.get("metadata") or {}).get("name"))
    labels["events.argoproj.io/trigger"] = name
    labels["events.argoproj.io/action-timestamp"] = str(now_ms if now_ms is not None else int(time.time() * 1000))
    meta["labels"] = labels
    return TriggerResult(name, workflow)


def workflow_parameters(workflow: dict) -> dict[str, str]:
    return {
        str(p.get("name")): "" if p.get("value") is None else str(p.get("value"))
        for p in ((workflow.get("spec") or {}).get("arguments") or {}).get("parameters") or []
    }
