"""Evaluate an Argo Events Sensor (v1.9) on one event, offline, with Argo Events' own semantics.

What the Sensor pod does for a webhook event, step by step, and which module does it:

- the EventSource publishes `{"header": <http.Header>, "body": <posted JSON>, "metadata": ...}` as
  Go's `json.Marshal` writes it: the body is compacted and `<`, `>`, `&` are escaped as `\\u003c`...
  (event.py, on gojson.py's parse). Every later step reads those exact bytes.
- data filters (`filterData` in pkg/sensors/dependencies/filter.go; filters.py): GJSON path (first
  matching key wins; gjson.py), a missing path is an error (the event is rejected under `and`),
  `null` reads as "", arrays and objects as their raw JSON text; string values are Go regexps
  matched unanchored (goregex.py); `!=` passes when ANY value does not match; numbers as float64
  with `>= > = != < <=`; bools with strconv.ParseBool (goconv.py).
- the Lua `script` filter (lua.py): the global `event` is built like Argo's `mapToTable` (JSON nulls
  and nested arrays dropped, numbers as floats); the filter passes only if the last value the
  script returns is exactly `true`; an error rejects.
- trigger parameters (pkg/sensors/triggers/params.go; triggers.py): `dataTemplate` (Go
  text/template with sprig over `{"Input": <event data>}`, gotemplate.py; "" or "<no value>" or an
  error falls back to `dataKey`, then to `value`), `dataKey` (GJSON; JSON blocks and null as raw
  text), `value`; `dest` set with sjson semantics (sjson.py), `prepend`/`append` on the current
  value. The trigger's own `parameters` apply first, to the trigger template (listener.go
  triggerOne: ApplyTemplateParameters), e.g. writing `source.inline`; the resource is the embedded
  `source.resource` or the `source.inline` text (ghodss/yaml). Templates have variables (`$x :=`,
  `$x =`, `$`) scoped as text/template scopes them. A `submit` adds the labels Argo Events adds.
  sensor.py runs all of it for a Sensor loader.py read.

GJSON: plain key paths (`body.output_fields.k8s\\.ns\\.name`, also `proc\\.aname[2]`, which the `gjson`
PyPI port cannot parse) are walked here on a parse that keeps each value's raw text, because
Argo reads raw text (arrays as their JSON, `dataKey: body` verbatim) and the first of duplicate
keys; paths with modifiers, wildcards or queries go to the `gjson` package on the decoded value.

Anything this package does not implement (expr/context/time filters, transforms, conditions,
sjson paths with wildcards, template actions beyond the ones build/ uses, RE2 constructs that
Python's `re` reads differently) raises `Unsupported`, naming it: a simulator that silently guesses
is worse than none.
"""

from standin.argo.events.sensors.errors import GoError, Unsupported
from standin.argo.events.sensors.event import MEDIA_JSON, event_data_for_alert, falcosidekick_headers, webhook_event_data
from standin.argo.events.sensors.filters import FilterFailure, evaluate_dependency, filter_data
from standin.argo.events.sensors.gjson import gjson_get, split_path
from standin.argo.events.sensors.goconv import go_format_float, go_parse_bool, go_parse_float, go_sprint, go_sprintf
from standin.argo.events.sensors.gojson import (
    JSONSyntaxError,
    Node,
    go_json_string,
    go_marshal,
    go_text,
    go_unmarshal,
    node_from_value,
    parse_json,
)
from standin.argo.events.sensors.goregex import compile_go_regexp, go_regexp_replace
from standin.argo.events.sensors.gotemplate import GoTemplate, go_template
from standin.argo.events.sensors.loader import WebhookSpec, load_eventsource, load_sensors, load_yaml_objects
from standin.argo.events.sensors.lua import filter_script
from standin.argo.events.sensors.sensor import SensorResult, evaluate, evaluate_all
from standin.argo.events.sensors.sjson import sjson_set
from standin.argo.events.sensors.triggers import TriggerResult, apply_parameters, resolve_parameter, run_trigger, workflow_parameters

__all__ = [
    "MEDIA_JSON", "Unsupported", "GoError", "go_text", "go_json_string", "Node", "JSONSyntaxError", "parse_json",
    "node_from_value", "go_marshal", "split_path", "gjson_get", "go_parse_bool", "go_parse_float", "go_format_float",
    "go_sprint", "go_sprintf", "compile_go_regexp", "go_regexp_replace", "GoTemplate", "go_template", "sjson_set",
    "falcosidekick_headers", "webhook_event_data", "event_data_for_alert", "FilterFailure", "TriggerResult",
    "SensorResult", "filter_data", "go_unmarshal", "filter_script", "evaluate_dependency", "resolve_parameter",
    "apply_parameters", "run_trigger", "evaluate", "load_yaml_objects", "load_sensors", "WebhookSpec",
    "load_eventsource", "evaluate_all", "workflow_parameters",
]
