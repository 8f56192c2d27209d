"""One Sensor for every policy: one dependency, one trigger, first match wins decided once per alert.

How Argo Events 1.9 runs a Sensor (pkg/sensors/listener.go listenEvents; jetstream/stan
trigger_conn.go processMsg): every trigger gets its own event-bus subscription, and for each event
it runs the filters of every dependency its `conditions` name (all dependencies without
conditions), independently of the other triggers. A filter can only say yes or no (filter.go
filterScript: a Lua script returns a bool), and a dependency's `transform` replaces the event
with a re-marshalled copy (transform.go: nulls and key order lost, so `dataKey: body` would no
longer be the alert). So "no earlier policy matches" cannot be shared between dependencies or
triggers: one trigger (or dependency) per policy that excludes the earlier ones repeats them,
which is what made build/sensors grow with the square of the number of policies.

So the decision is made once, in ONE dependency and ONE trigger:
- the dependency's data filters are the gating every policy shares: the alert's top-level and
  output_fields keys are unique and unescaped, `tags` is absent, null or an array of plain
  strings (json_filters), namespace/pod/container id/rule/time well-formed, not a protected
  namespace, a known priority. String values are Go regexps matched UNANCHORED by Argo Events,
  so every one is anchored here; dotted output-field keys are escaped for GJSON.
- its Lua script filter checks that the fields read below are strings (policy output fields:
  not objects or arrays), that optional fields are well-formed, and then passes if ANY policy
  matches: one `if <policy k> then return true end` per policy (linear).
- the trigger's per-policy values (the Workflow name's severity, the policy/pipeline/severity
  labels, the description, the WorkflowTemplate, the policy and dry-run parameters) are chosen
  ONCE: the trigger's one template parameter runs `{{ if <policy 1> }}{{ $p = list v1... }}{{ else
  if <policy 2> }}...{{ end }}` (Go's `if` takes the first branch whose condition holds, so `$p`
  holds the FIRST matching policy's values) and writes the whole Workflow as text into
  `source.inline`, picking `index $p k` where each value goes (see "trigger" below). One chain,
  linear in the policies: generated size and work per alert are linear.

One Sensor has a size limit: the controller hands it to its pod base64-encoded in ONE environment
variable, SENSOR_OBJECT, and Linux refuses an environment string over 128 KiB (argo-events issue
#2146: the pod crash-loops, "argument list too long"). So the policies fill one Sensor up to
SENSOR_OBJECT_MAX_JSON (about 130 policies of a few rules or fields each) and only then a second
one starts, whose Lua also refuses what the first Sensor's policies take (`return false`): still
at most one Sensor fires, and it is the one holding the first policy that matches. The Sensor
count grows with the total size of the policies' conditions, about one per 130 policies, no longer
one per policy.

Why the Lua and the templates pick the same policy, for ANY JSON: the templates read gjson
Value() (the FIRST of repeated keys), Lua a Go map (the LAST); the JSON filters refuse repeated
or escaped keys where either reads and tags that are not plain strings, so both read the same
typed values. A policy's condition is written twice from the same description, with the same
comparison: strings by equality, JSON null or a missing field as "", a bool as "true"/"false",
a number equal to a configured value written in Go's FormatFloat(v, 'f', -1) form (what a data
filter on the field would read: 1 and 1.0 read "1"; "01" or "1e3" match no number). The
templates compare with sprig's `has` (reflect.DeepEqual against a list of typed constants), which
never errors on an odd type. Where this differs from a data filter's text: numbers beyond 2^53,
a configured "-0", and a missing field, which reads "" like null (Lua cannot tell them apart).

The trigger submits a Workflow that references the pipeline's WorkflowTemplate. Its name is
derived from namespace/pod/container id and the policy's severity (names.SEVERITY_ORDER), so a
second alert for the same container instance and severity is refused by the API server as
AlreadyExists while the first Workflow exists (the dedupe window), and a more severe one is not.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

from hera.events import models as ev
from hera.events.models.io.k8s.apimachinery.pkg.apis.meta.v1 import ObjectMeta

from engine import names
from engine.config import ConfigError, FALCO_RULE_NAME, PRIORITIES, PRIORITY_ALIASES, Policy, ResponseConfig, Settings
from engine.patterns import ALERT_TIME
from engine.yamlout import dump as to_yaml

NS = "body.output_fields.k8s\\.ns\\.name"
POD = "body.output_fields.k8s\\.pod\\.name"
CONTAINER_ID = "body.output_fields.container\\.id"

NS_T = '(index .Input.body.output_fields "k8s.ns.name")'
POD_T = '(index .Input.body.output_fields "k8s.pod.name")'
CID_T = '(index .Input.body.output_fields "container.id")'

RE_DNS_LABEL = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
RE_DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
RE_SHORT_ID = "^[0-9a-f]{12}$"
RE_TIME = f"^(?:{ALERT_TIME})$"
RE_RULE = f"^(?:{FALCO_RULE_NAME})$"  # the steps refuse anything else: never start a doomed response

# The keys of an object, as GJSON's @keys modifier lists them: each key's raw JSON text, EVERY
# occurrence, in order (modKeys, gjson v1.19.0). A data filter's template gets that text as .Input
# (filterData: pathResult.String()) and the result is matched against ^unique$. With no backslash
# in it (no key written with escapes, which GJSON and Go would decode alike), `","` separates keys
# and nothing else, so splitting on it gives the keys exactly. sprig's uniq is quadratic: more
# than MAX_KEYS keys are refused before it runs (Go's `if` evaluates only the branch taken).
MAX_KEYS = 256
_KEYS = '(trimPrefix "[\\"" .Input | trimSuffix "\\"]")'
KEYS_TEMPLATE = (
    '{{ if contains "\\\\" .Input }}escaped-key{{ else }}'
    f'{{{{ if gt (len (splitList "\\",\\"" .Input)) {MAX_KEYS} }}}}over-{MAX_KEYS}-keys{{{{ else }}}}'
    f'{{{{ if eq (len (splitList "\\",\\"" {_KEYS})) (len (uniq (splitList "\\",\\"" {_KEYS}))) }}}}unique'
    "{{ else }}repeated-key{{ end }}{{ end }}{{ end }}"
)
KEYS_OK = "^unique$"
# A JSON string with no escapes: its raw text is its value, as GJSON and Lua both read it.
_PLAIN = '"[^"\\\\]*"'
# body.[tags] (a GJSON sub-selector) is `[]` when tags is absent, else `[<tags as raw JSON>]`.
RE_TAGS_SHAPE = f"^\\[(?:null|\\[(?:{_PLAIN}(?:,{_PLAIN})*)?\\])?\\]$"


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta: escape exactly the RE2 metacharacters."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


def one_of(values: list[str]) -> str:
    return "^(?:" + "|".join(quote_meta(v) for v in values) + ")$"


def gjson_path(field: str) -> str:
    """`proc.name` -> `body.output_fields.proc\\.name` (GJSON needs dots in keys escaped)."""
    escaped = "".join("\\" + c if c in ".*?|#@\\[]{}()" else c for c in field)
    return f"body.output_fields.{escaped}"


def _data(path: str, regex: str, negate: bool = False, template: str | None = None) -> ev.DataFilter:
    return ev.DataFilter(path=path, type="string", value=[regex], comparator="!=" if negate else None, template=template)


def tags_regex(tags: list[str]) -> str:
    """An array of plain strings, one of which is exactly a given tag.

    GJSON reads an array as its raw JSON text (compacted by the EventSource); the whole text is
    matched, element by element, so a tag `"trigger-checkpoint` (leading quote: `"\\"trigger-…"`) or
    a `tags` object `{"trigger-checkpoint": false}` does not match. Tags are letters, digits and
    `_.:-` (config), so their JSON text is themselves.
    """
    wanted = '"(?:' + "|".join(quote_meta(t) for t in tags) + ')"'
    return f"^\\[(?:{_PLAIN},)*{wanted}(?:,{_PLAIN})*\\]$"


def _priority_names(policy: Policy) -> list[str] | None:
    admitted = policy.match.priorities()
    if admitted is None:
        return None
    aliases = [alias for alias, name in PRIORITY_ALIASES.items() if name in admitted]
    return admitted + aliases


def json_filters() -> list[ev.DataFilter]:
    """What makes GJSON and Lua read one alert alike (module docstring); identical in every Sensor."""
    return [
        _data("body.@keys", KEYS_OK, template=KEYS_TEMPLATE),
        _data("body.output_fields.@keys", KEYS_OK, template=KEYS_TEMPLATE),
        _data("body.[tags]", RE_TAGS_SHAPE),
    ]


def gating_filters(settings: Settings) -> list[ev.DataFilter]:
    """What every pod action needs, whatever the policy."""
    return json_filters() + [
        _data(NS, RE_DNS_LABEL),
        _data(NS, one_of(settings.protected_namespaces), negate=True),
        _data(POD, RE_DNS_SUBDOMAIN),
        _data(CONTAINER_ID, RE_SHORT_ID),
        _data("body.rule", RE_RULE),
        _data("body.time", RE_TIME),
        _data("body.priority", one_of(list(PRIORITIES) + list(PRIORITY_ALIASES))),
    ]


# --- Lua ------------------------------------------------------------------------------------


def lua_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append("\\%03d" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def lua_set(values: list[str]) -> str:
    return "{" + ", ".join(f"[{lua_string(v)}] = true" for v in values) + "}"




_GO_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")


def number_values(values: list[str]) -> list[float]:
    """The configured values a JSON number can equal: those written as Go's FormatFloat(v, 'f', -1)
    writes v, which is what a data filter reads for a number (gjson String(); an integer literal
    reads as itself, the same text below 2^53). Beyond 2^53 a float stands for several integers:
    left out, so a number there matches no value (a string still can)."""
    out = []
    for text in values:
        if not _GO_NUMBER.fullmatch(text):
            continue
        number = float(text)
        if abs(number) >= 2.0**53:
            continue
        canonical = str(int(number)) if number.is_integer() else format(Decimal(repr(number)), "f")
        if canonical == text:  # "-0" is not: -0 == 0 in Lua and Go, a data filter tells them apart
            out.append(number)
    return out


def lua_condition(policy: Policy) -> str:
    """The policy's match as a Lua boolean over `b` (body) and `f` (output_fields)."""
    match = policy.match
    terms = []
    if match.rules:
        terms.append(f"one_of(b.rule, {lua_set(match.rules)})")
    priorities = _priority_names(policy)
    if priorities:
        terms.append(f"one_of(b.priority, {lua_set(priorities)})")
    if match.tags:
        terms.append(f"any_tag({lua_set(match.tags)})")
    if match.sources:
        terms.append(f"one_of(b.source, {lua_set(match.sources)})")
    if match.namespaces:
        terms.append(f'one_of(f["k8s.ns.name"], {lua_set(match.namespaces)})')
    if match.exclude_namespaces:
        terms.append(f'not one_of(f["k8s.ns.name"], {lua_set(match.exclude_namespaces)})')
    for field, values in sorted((match.output_fields or {}).items()):
        numbers = number_values(values)
        extra = ", {" + ", ".join(repr(n) for n in numbers) + "}" if numbers else ""
        terms.append(f"one_of(f[{lua_string(field)}], {lua_set(values)}{extra})")
    return " and ".join(terms) if terms else "true"


LUA_PRELUDE = """\
local b = event.body
if type(b) ~= "table" then return false end
local f = b.output_fields
if type(f) ~= "table" then return false end
-- what the data filters read as text must be strings here too (absent or null: nil)
for _, v in pairs({b.rule, b.priority, b.time, b.source, f["k8s.ns.name"], f["k8s.pod.name"], f["container.id"]}) do
  if type(v) ~= "string" then return false end
end
-- v as the trigger's templates compare it (sensors.policies): null or absent is "", a bool its
-- name, a number only one of `numbers` (number_values)
local function one_of(v, set, numbers)
  if v == nil then return set[""] == true end
  if type(v) == "string" then return set[v] == true end
  if type(v) == "boolean" then return set[tostring(v)] == true end
  if type(v) == "number" and numbers then
    for _, n in ipairs(numbers) do if v == n then return true end end
  end
  return false
end
local function any_tag(set)
  if type(b.tags) ~= "table" then return false end
  for _, t in ipairs(b.tags) do if type(t) == "string" and set[t] == true then return true end end
  return false
end
local function well_formed(v, pattern, max)
  return v == nil or (type(v) == "string" and #v <= max and string.find(v, pattern) ~= nil)
end
-- optional fields, when present, must be well-formed
if not well_formed(b.hostname, "^[a-z0-9][a-z0-9.-]*$", 253) then return false end
if not well_formed(f["container.name"], "^[A-Za-z0-9][A-Za-z0-9_.-]*$", 253) then return false end
"""


def lua_script(config: ResponseConfig, own: list[Policy] | None = None, earlier: list[Policy] = ()) -> str:
    """Passes when one of OWN (default: every policy) matches and none of EARLIER (the policies of
    the Sensors before this one): which of OWN is the trigger's business (its templates)."""
    own = config.policies if own is None else own
    lines = [f"-- {len(own)} policies, generated from response.yaml; the trigger takes the first that matches"]
    lines.append(LUA_PRELUDE.rstrip("\n"))
    matched = sorted({field for p in config.policies for field in (p.match.output_fields or {})})
    if matched:
        lines.append("-- the policies' output fields: a data filter reads an object or array as its JSON text, Lua cannot")
        lines.append(f"for _, k in ipairs({{{', '.join(lua_string(k) for k in matched)}}}) do")
        lines.append('  if type(f[k]) == "table" then return false end')
        lines.append("end")
    if earlier:
        lines.append("-- first match wins: the Sensors before this one take these")
    for policy in earlier:
        lines.append(f"if {lua_condition(policy)} then return false end -- {policy.name}")
    for policy in own:
        lines.append(f"if {lua_condition(policy)} then return true end -- {policy.name}")
    lines.append("return false")
    return "\n".join(lines) + "\n"


# --- Go templates: the same conditions over gjson Value() --------------------------------------

def go_string(text: str) -> str:
    """A Go string literal (strconv.Unquote reads it back)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def template_one_of(expr: str, values: list[str]) -> str:
    """The Lua one_of above in text/template: sprig's `has` compares with reflect.DeepEqual, so a
    string equals a string constant, a bool `true`/`false`, a float64 a float constant (written
    with a dot or an exponent: an int constant would never equal), and nil (null or missing) `nil`."""
    items = [go_string(v) for v in values]
    items += [word for word in ("true", "false") if word in values]
    items += [repr(n) for n in number_values(values)]
    if "" in values:
        items.append("nil")
    return f"(has {expr} (list {' '.join(items)}))"


def _eq_any(expr: str, values: list[str]) -> str:
    """For the fields the Lua filter has made strings (LUA_PRELUDE): text/template's eq, true if
    equal to any of the values (a string against strings: no type error)."""
    return f"(eq {expr} {' '.join(go_string(v) for v in values)})"


def template_condition(policy: Policy) -> str:
    """The policy's match over `.` = the alert (inside `with .Input.body`), as lua_condition."""
    match = policy.match
    field = lambda name: f"(index .output_fields {go_string(name)})"  # noqa: E731
    terms = []
    if match.rules:
        terms.append(_eq_any(".rule", match.rules))
    priorities = _priority_names(policy)
    if priorities:
        terms.append(_eq_any(".priority", priorities))
    if match.tags:
        terms.append("(or " + " ".join(f"(has {go_string(t)} .tags)" for t in match.tags) + ")")
    if match.sources:
        terms.append(_eq_any(".source", match.sources))
    if match.namespaces:
        terms.append(_eq_any(field("k8s.ns.name"), match.namespaces))
    if match.exclude_namespaces:
        terms.append(f"(not {_eq_any(field('k8s.ns.name'), match.exclude_namespaces)})")
    for name, values in sorted((match.output_fields or {}).items()):
        terms.append(template_one_of(field(name), values))
    if not terms:
        return "true"
    return terms[0] if len(terms) == 1 else "(and " + " ".join(terms) + ")"


# --- trigger --------------------------------------------------------------------------------
#
# The policy is chosen ONCE per alert (issue 9): the trigger's one template-level parameter
# (Trigger.parameters; listener.go triggerOne runs ApplyTemplateParameters before it fetches the
# resource) renders the whole Workflow as text into `argoWorkflow.source.inline` (an ArtifactLocation
# the InlineReader returns as is and store.go decodeAndUnstructure reads as YAML, so JSON): a chain
# `{{ if <policy 1> }}{{ $p = list <its values> }}{{ else if <policy 2> }}...{{ end }}` sets `$p`
# (text/template variables, Go 1.11 assignment), then the Workflow's JSON picks `index $p k` where
# each per-policy value goes. One chain, linear in the policies, instead of one per value. The
# text holds only the policy's own values (names checked below) and a hex hash: alert data reaches
# the Workflow only through the resource parameters (sjson-escaped), never through this text. If
# no policy matches (the Lua filter lets no such alert through) `index` fails, the template
# parameter cannot be resolved and the trigger fails: the placeholder is never submitted.

POLICY_TUPLE = ("policy", "pipeline", "severity", "workflow-template", "dry-run")
_SAFE_VALUE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def policy_row(policy: Policy) -> list:
    """[name, pipeline, dry run, order]: a policy as the Sensor's table lists it (policy_table)."""
    return [policy.name, policy.response, policy.dry_run, policy.order]


def policy_tuple(name: str, pipeline: str, dry_run: bool, order: str) -> list[str]:
    """The values the Workflow takes from the policy that matched, in POLICY_TUPLE order."""
    values = [
        name, pipeline, str(names.response_severity(pipeline, dry_run)),
        names.workflow_template_name(pipeline, order), "true" if dry_run else "false",
    ]
    for value in values:  # they are written into JSON text: only DNS-label characters
        if not _SAFE_VALUE.match(value):
            raise ConfigError(f"policy {name!r}: {value!r} cannot be written into the Sensor's Workflow text")
    return values


def _go_list(values: list[str]) -> str:
    return "list " + " ".join(go_string(v) for v in values)


def choose(own: list[Policy]) -> str:
    """`$p` = the POLICY_TUPLE of the first policy in OWN that matches (Go's `if` takes the first
    branch whose condition holds), else an empty list."""
    out = ["{{ $p := list }}{{ with .Input.body }}\n"]
    for i, policy in enumerate(own):
        out.append(
            "{{ " + ("if " if i == 0 else "else if ") + template_condition(policy) + " }}"
            "{{ $p = " + _go_list(policy_tuple(*policy_row(policy))) + " }}\n"
        )
    return "".join(out) + "{{ end }}{{ end }}\n"


def forced(row: list) -> str:
    """`$p` = the values of the policy ROW whatever the alert (simulate --policy)."""
    return "{{ $p := " + _go_list(policy_tuple(*row)) + " }}\n"


def _pick(field: str) -> str:
    return "{{ index $p %d }}" % POLICY_TUPLE.index(field)


def _param(dest: str, *, template: str | None = None, key: str | None = None, default: str | None = None,
           operation: str | None = None):
    return ev.TriggerParameter(
        src=ev.TriggerParameterSource(
            dependency_name=names.DEPENDENCY, data_template=template, data_key=key, value=default
        ),
        dest=dest,
        operation=operation,
    )


def _index(parameter: str) -> int:
    return names.WORKFLOW_PARAMETERS.index(parameter)


def _sjson_key(key: str) -> str:
    return key.replace(".", "\\.")


ARG = "spec.arguments.parameters.%d.value"
LABEL = "metadata.labels.%s"
ANNOTATION = "metadata.annotations.%s"
CONTAINER_HASH = '{{ printf "%s/%s/%s" ' + f"{NS_T} {POD_T} {CID_T}" + " | sha256sum | trunc 16 }}"
INLINE = "argoWorkflow.source.inline"
DESCRIPTION_PREFIX = "Falco {{ .Input.body.priority }} alert at {{ .Input.body.time }}; "


def workflow_resource(config: ResponseConfig, picks: bool = False) -> dict:
    """The Workflow the trigger submits; every parameter declared so `dest` indices exist. With
    PICKS, the per-policy values are markers that workflow_text turns into template actions."""
    pick = (lambda field: f"@pick:{field}@") if picks else (lambda field: "placeholder")  # noqa: E731
    arguments = [{"name": p, "value": ""} for p in names.WORKFLOW_PARAMETERS]
    if picks:
        arguments[_index("policy")]["value"] = pick("policy")
        arguments[_index("dry-run")]["value"] = pick("dry-run")
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": names.workflow_name("@hash@", pick("severity")) if picks else names.WORKFLOW_NAME_PREFIX + "placeholder",  # type: ignore[arg-type]
            "namespace": config.settings.namespace,
            "labels": {
                **names.common_labels("response"),
                names.LABEL_POLICY: pick("policy"),
                names.LABEL_PIPELINE: pick("pipeline"),
                names.LABEL_SEVERITY: pick("severity"),
                names.LABEL_NAMESPACE: "placeholder",
                names.LABEL_POD: "placeholder",
                names.LABEL_RULE: "placeholder",
            },
            "annotations": {
                names.ARGO_TITLE: "placeholder",
                names.ARGO_DESCRIPTION: f"policy {pick('policy')} chose {pick('pipeline')}@dry-run-note@." if picks else "placeholder",
            },
        },
        "spec": {
            "workflowTemplateRef": {"name": pick("workflow-template")},
            "arguments": {"parameters": arguments},
        },
    }


def workflow_text(config: ResponseConfig, choice: str) -> str:
    """CHOICE (choose or forced) then the Workflow as JSON, its markers replaced by actions AFTER
    json.dumps (inside an action a quote stays a quote). Indented JSON never holds `{{` (a `{` is
    followed by a newline or `}`), so the picks are the only actions."""
    text = json.dumps(workflow_resource(config, picks=True), indent=1)
    actions = {f"@pick:{f}@": _pick(f) for f in POLICY_TUPLE}
    actions["@hash@"] = CONTAINER_HASH
    actions["@dry-run-note@"] = '{{ if eq (index $p %d) "true" }} (dry run){{ end }}' % POLICY_TUPLE.index("dry-run")
    for marker, action in actions.items():
        text = text.replace(marker, action)
    return choice + text


def with_choice(template: str, choice: str) -> str:
    """The template parameter's TEMPLATE with its choice (choose) replaced by CHOICE (forced)."""
    start = template.find('{\n "apiVersion":')
    if start < 0:
        raise ValueError("not a Workflow template this generator wrote")
    return choice + template[start:]


def trigger_parameters() -> list[ev.TriggerParameter]:
    """What the resource takes from the alert, after the template parameter chose the policy."""
    return [
        _param(LABEL % _sjson_key(names.LABEL_NAMESPACE), template="{{ " + NS_T + " }}"),
        _param(LABEL % _sjson_key(names.LABEL_POD), template="{{ " + POD_T + ' | trunc 63 | trimAll "-." }}'),
        _param(
            LABEL % _sjson_key(names.LABEL_RULE),
            template='{{ regexReplaceAll "[^A-Za-z0-9_.-]+" .Input.body.rule "-" | trunc 63 | trimAll "-_." }}',
            default="unknown",
        ),
        _param(
            ANNOTATION % _sjson_key(names.ARGO_TITLE),
            template="{{ .Input.body.rule }}: {{ " + NS_T + " }}/{{ " + POD_T + " }}",
        ),
        # params.go ApplyParams `prepend`: the alert's words before the policy's, read from the resource
        _param(ANNOTATION % _sjson_key(names.ARGO_DESCRIPTION), template=DESCRIPTION_PREFIX, operation="prepend"),
        _param(ARG % _index("namespace"), template="{{ " + NS_T + " }}"),
        _param(ARG % _index("pod"), template="{{ " + POD_T + " }}"),
        _param(ARG % _index("container-id"), template="{{ " + CID_T + " }}"),
        _param(
            ARG % _index("container-name"),
            template='{{ with index .Input.body.output_fields "container.name" }}{{ . }}{{ end }}',
            default="",
        ),
        _param(ARG % _index("node"), template="{{ with .Input.body.hostname }}{{ . }}{{ end }}", default=""),
        _param(ARG % _index("rule"), key="body.rule"),
        _param(ARG % _index("priority"), key="body.priority"),
        _param(ARG % _index("alert-time"), key="body.time"),
        _param(ARG % _index("alert"), key="body"),
    ]


def policy_table(own: list[Policy]) -> str:
    """The Sensor's policies in order, as policy_row lists them (simulate --policy reads it)."""
    return json.dumps([policy_row(p) for p in own], separators=(",", ":"))


# Argo Events passes a Sensor to its pod as the environment variable SENSOR_OBJECT, the base64 of
# json.Marshal({metadata: {name, namespace}, spec}) (pkg/reconciler/sensor/resource.go), and Linux
# refuses to exec with one environment string over MAX_ARG_STRLEN (131072 bytes): the pod
# crash-loops with "argument list too long" (argo-events issue #2146). 98292 bytes of JSON make
# 131056 of base64, 131071 with "SENSOR_OBJECT=" and its NUL; 1 KiB is left for what Go's
# json.Marshal of the typed Sensor writes that this dict does not (`"creationTimestamp":null`).
SENSOR_OBJECT_MAX_JSON = 98292 - 1024


def sensor_object_bytes(obj: dict) -> int:
    """The size of json.Marshal of what the controller puts in SENSOR_OBJECT (Go escapes <, >, &)."""
    text = json.dumps({"metadata": {k: obj["metadata"][k] for k in ("name", "namespace")}, "spec": obj["spec"]},
                      separators=(",", ":"), ensure_ascii=False)
    return len(text.encode()) + 5 * sum(text.count(c) for c in "<>&")


def sensor(config: ResponseConfig, own: list[Policy] | None = None, earlier: list[Policy] = (), number: int = 1) -> dict:
    """The Sensor for OWN (default: every policy), after the Sensors of EARLIER; NUMBER from 1."""
    settings = config.settings
    own = config.policies if own is None else own
    model = ev.Sensor(
        metadata=ObjectMeta(
            name=names.sensor_shard_name(number),
            namespace=settings.eventsource.namespace,
            labels=names.common_labels("sensor"),
            annotations={
                names.ANNOTATION_POLICIES: policy_table(own),
                f"{names.DOMAIN}/policy-order": str(number),
                f"{names.DOMAIN}/description": (
                    f"policies {len(earlier) + 1} to {len(earlier) + len(own)} of {len(config.policies)} from response.yaml; "
                    "the first that matches decides"
                ),
            },
        ),
        spec=ev.SensorSpec(
            template=ev.Template(service_account_name=names.SENSOR_SERVICE_ACCOUNT),
            dependencies=[
                ev.EventDependency(
                    name=names.DEPENDENCY,
                    event_source_name=names.EVENTSOURCE,
                    event_name=names.EVENT_NAME,
                    filters=ev.EventDependencyFilter(data=gating_filters(settings), script=lua_script(config, own, earlier)),
                )
            ],
            triggers=[
                ev.Trigger(
                    template=ev.TriggerTemplate(
                        name=names.TRIGGER,
                        argo_workflow=ev.ArgoWorkflowTrigger(
                            operation="submit",
                            source=ev.ArtifactLocation(inline=to_yaml(workflow_resource(config))),
                            parameters=trigger_parameters(),
                        ),
                    ),
                    parameters=[
                        ev.TriggerParameter(
                            src=ev.TriggerParameterSource(
                                dependency_name=names.DEPENDENCY, data_template=workflow_text(config, choose(own))
                            ),
                            dest=INLINE,
                        )
                    ],
                )
            ],
        ),
    )
    out = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor"}
    out.update(model.model_dump(by_alias=True, exclude_none=True))
    # No atLeastOnce/retryStrategy: deduplication works by the duplicate submit failing with
    # AlreadyExists, and a retried trigger blocks the Sensor for every duplicate of an alert storm.
    return out


def sensors(config: ResponseConfig) -> list[dict]:
    """As few Sensors as SENSOR_OBJECT_MAX_JSON allows, in policy order: one for every policy
    until the policies' conditions outgrow it, then the next takes over (its Lua refusing what
    the earlier Sensors' policies take). Greedy: each Sensor takes as many policies as fit."""
    out: list[dict] = []
    policies, start = config.policies, 0
    while start < len(policies):
        fits, end = None, start + 1
        while end <= len(policies):
            candidate = sensor(config, policies[start:end], policies[:start], len(out) + 1)
            if sensor_object_bytes(candidate) > SENSOR_OBJECT_MAX_JSON:
                break
            fits, end = candidate, end + 1
        if fits is None:
            raise ConfigError(
                f"policy {policies[start].name!r} alone makes a Sensor over {SENSOR_OBJECT_MAX_JSON} bytes of "
                "SENSOR_OBJECT (argo-events issue #2146): shorten its match lists"
            )
        out.append(fits)
        start = end - 1
    return out
