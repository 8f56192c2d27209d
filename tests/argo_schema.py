"""Strict validation of Argo objects against Argo's own JSON schemas (CONTRACTS.md section 5)."""

from __future__ import annotations

import copy
import functools
import json

import jsonschema

from standin import shared_dir

DEFINITIONS = {
    "Workflow": ("argo-workflows-v4.1.2-schema.json", "io.argoproj.workflow.v1alpha1.Workflow"),
    "WorkflowTemplate": ("argo-workflows-v4.1.2-schema.json", "io.argoproj.workflow.v1alpha1.WorkflowTemplate"),
    "EventSource": ("argo-events-v1.9.11-schema.json", "io.argoproj.events.v1alpha1.EventSource"),
    "Sensor": ("argo-events-v1.9.11-schema.json", "io.argoproj.events.v1alpha1.Sensor"),
}


def _strict(schema: dict) -> dict:
    schema = copy.deepcopy(schema)
    for definition in schema["definitions"].values():
        if "properties" in definition:
            definition["additionalProperties"] = False
    intorstr = schema["definitions"].get("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
    if intorstr is not None:
        intorstr["type"] = ["integer", "string"]
    return schema


@functools.lru_cache(maxsize=None)
def validator(kind: str) -> jsonschema.Draft7Validator:
    file, definition = DEFINITIONS[kind]
    schema = _strict(json.loads((shared_dir() / "schemas" / file).read_text()))
    return jsonschema.Draft7Validator({"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]})


def errors(obj: dict) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator(obj["kind"]).iter_errors(obj)
    ]
