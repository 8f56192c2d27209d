"""One Sensor per policy, in policy order, with Argo Events' real filter semantics.

Each Sensor's single dependency carries:
- data filters (AND): the alert's top-level and output_fields keys are unique and unescaped,
  `tags` is absent, null or an array of plain strings (these three are the same in every Sensor,
  see below); the alert is about a container in a pod (namespace, pod and a 12-hex container id
  present and well-formed, not a protected namespace); and it matches the policy's own conditions.
  String values are Go regexps matched UNANCHORED by Argo Events, so every one is anchored here;
  dotted output-field keys are escaped for GJSON.
- a Lua script filter: the fields the filters read are strings (policy output fields: not
  objects or arrays), optional fields (hostname, container.name) are well-formed when present,
  and no EARLIER policy matches. This is what makes first-match-wins hold for the Sensors as
  deployed: data filters cannot express "not (A and B)", and a missing path rejects an event in
  data and expr filters, while Lua sees a missing field as nil.

Why first match wins for ANY JSON: Sensor k fires when its data filters D_k pass and, in Lua, no
L_j (j < k) holds. Two Sensors j < k fire only if D_j passes while L_j fails on the same alert. The
data filters (GJSON) read the FIRST of repeated keys and any JSON value as its text; Lua reads a Go
map (the LAST of repeated keys) with typed values. So every Sensor refuses what would make the two
readings differ: repeated or escaped keys where the filters read (top level, output_fields), tags
that are not plain strings, non-string values in the fields the gating filters read, objects or
arrays in the policy output fields. On what is left, both read the same values, and one_of in Lua
accepts whatever the anchored regexp accepts (JSON null as "", numbers by value), so D_j implies
L_j: at most one Sensor fires, and the templates (gjson Value(), first occurrence) read the very
values the filters checked.

The trigger submits a Workflow that references the pipeline's WorkflowTemplate. Its name is
derived from namespace/pod/container id and the policy's severity (names.SEVERITY_ORDER), so a
second alert for the same container instance and severity is refused by the API server as
AlreadyExists while the first Workflow exists (the dedupe window), and a more severe one is not.
"""

from __future__ import annotations

from hera.events import models as ev
from hera.events.models.io.k8s.apimachinery.pkg.apis.meta.v1 import ObjectMeta

from engine import names
from engine.config import ALERT_TIME, FALCO_RULE_NAME, PRIORITIES, PRIORITY_ALIASES, Policy, ResponseConfig, Settings

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
    ]


def policy_filters(policy: Policy) -> list[ev.DataFilter]:
    """The policy's own conditions, one anchored data filter each (AND)."""
    match = policy.match
    out = []
    if match.rules:
        out.append(_data("body.rule", one_of(match.rules)))
    priorities = _priority_names(policy)
    out.append(_data("body.priority", one_of(priorities or list(PRIORITIES) + list(PRIORITY_ALIASES))))
    if match.tags:
        out.append(_data("body.tags", tags_regex(match.tags)))
    if match.sources:
        out.append(_data("body.source", one_of(match.sources)))
    if match.namespaces:
        out.append(_data(NS, one_of(match.namespaces)))
    if match.exclude_namespaces:
        out.append(_data(NS, one_of(match.exclude_namespaces), negate=True))
    for field, values in sorted((match.output_fields or {}).items()):
        out.append(_data(gjson_path(field), one_of(values)))
    return out


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
        terms.append(f"one_of(f[{lua_string(field)}], {lua_set(values)})")
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
-- v as a data filter reads it (GJSON String()): null is "", a number is compared by value
local function one_of(v, set)
  if v == nil then return set[""] == true end
  if type(v) == "string" then return set[v] == true end
  if type(v) == "boolean" then return set[tostring(v)] == true end
  if type(v) == "number" then
    for s in pairs(set) do if tonumber(s) == v then return true end end
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


def lua_script(config: ResponseConfig, index: int) -> str:
    policy = config.policies[index]
    lines = [f"-- policy {policy.name!s} ({index + 1} of {len(config.policies)}), generated from response.yaml"]
    lines.append(LUA_PRELUDE.rstrip("\n"))
    matched = sorted({field for p in config.policies for field in (p.match.output_fields or {})})
    if matched:
        lines.append("-- the policies' output fields: a data filter reads an object or array as its JSON text, Lua cannot")
        lines.append(f"for _, k in ipairs({{{', '.join(lua_string(k) for k in matched)}}}) do")
        lines.append('  if type(f[k]) == "table" then return false end')
        lines.append("end")
    if index:
        lines.append("-- first match wins: an earlier policy takes this alert")
    for earlier in config.policies[:index]:
        lines.append(f"if {lua_condition(earlier)} then return false end -- {earlier.name}")
    lines.append("return true")
    return "\n".join(lines) + "\n"


# --- trigger --------------------------------------------------------------------------------


def _param(dest: str, *, template: str | None = None, key: str | None = None, default: str | None = None):
    return ev.TriggerParameter(
        src=ev.TriggerParameterSource(
            dependency_name=names.DEPENDENCY, data_template=template, data_key=key, value=default
        ),
        dest=dest,
    )


def _index(parameter: str) -> int:
    return names.WORKFLOW_PARAMETERS.index(parameter)


def workflow_resource(config: ResponseConfig, policy: Policy) -> dict:
    """The Workflow the trigger submits; every parameter declared so `dest` indices exist."""
    fixed = {"policy": policy.name, "dry-run": "true" if policy.dry_run else "false"}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": names.WORKFLOW_NAME_PREFIX + "placeholder",
            "namespace": config.settings.namespace,
            "labels": {
                **names.common_labels("response"),
                names.LABEL_POLICY: policy.name,
                names.LABEL_PIPELINE: policy.response,
                names.LABEL_SEVERITY: str(names.response_severity(policy.response, policy.dry_run)),
                names.LABEL_NAMESPACE: "placeholder",
                names.LABEL_POD: "placeholder",
                names.LABEL_RULE: "placeholder",
            },
            "annotations": {names.ARGO_TITLE: "placeholder", names.ARGO_DESCRIPTION: "placeholder"},
        },
        "spec": {
            "workflowTemplateRef": {"name": names.workflow_template_name(policy.response)},
            "arguments": {"parameters": [{"name": p, "value": fixed.get(p, "")} for p in names.WORKFLOW_PARAMETERS]},
        },
    }


def _sjson_key(key: str) -> str:
    return key.replace(".", "\\.")


def trigger_parameters(policy: Policy) -> list[ev.TriggerParameter]:
    arg = "spec.arguments.parameters.%d.value"
    label = "metadata.labels." + "%s"
    ann = "metadata.annotations." + "%s"
    return [
        _param(
            "metadata.name",
            template=names.workflow_name(
                '{{ printf "%s/%s/%s" ' + f"{NS_T} {POD_T} {CID_T}" + " | sha256sum | trunc 16 }}",
                names.response_severity(policy.response, policy.dry_run),
            ),
        ),
        _param(label % _sjson_key(names.LABEL_NAMESPACE), template="{{ " + NS_T + " }}"),
        _param(label % _sjson_key(names.LABEL_POD), template="{{ " + POD_T + ' | trunc 63 | trimAll "-." }}'),
        _param(
            label % _sjson_key(names.LABEL_RULE),
            template='{{ regexReplaceAll "[^A-Za-z0-9_.-]+" .Input.body.rule "-" | trunc 63 | trimAll "-_." }}',
            default="unknown",
        ),
        _param(
            ann % _sjson_key(names.ARGO_TITLE),
            template="{{ .Input.body.rule }}: {{ " + NS_T + " }}/{{ " + POD_T + " }}",
        ),
        _param(
            ann % _sjson_key(names.ARGO_DESCRIPTION),
            template=f"Falco {{{{ .Input.body.priority }}}} alert at {{{{ .Input.body.time }}}}; "
            f"policy {policy.name} chose {policy.response}" + (" (dry run)" if policy.dry_run else "") + ".",
        ),
        _param(arg % _index("namespace"), template="{{ " + NS_T + " }}"),
        _param(arg % _index("pod"), template="{{ " + POD_T + " }}"),
        _param(arg % _index("container-id"), template="{{ " + CID_T + " }}"),
        _param(
            arg % _index("container-name"),
            template='{{ with index .Input.body.output_fields "container.name" }}{{ . }}{{ end }}',
            default="",
        ),
        _param(arg % _index("node"), template="{{ with .Input.body.hostname }}{{ . }}{{ end }}", default=""),
        _param(arg % _index("rule"), key="body.rule"),
        _param(arg % _index("priority"), key="body.priority"),
        _param(arg % _index("alert-time"), key="body.time"),
        _param(arg % _index("alert"), key="body"),
    ]


def sensor(config: ResponseConfig, index: int) -> dict:
    settings, policy = config.settings, config.policies[index]
    model = ev.Sensor(
        metadata=ObjectMeta(
            name=names.sensor_name(policy.name),
            namespace=settings.eventsource.namespace,
            labels={**names.common_labels("sensor"), names.LABEL_POLICY: policy.name},
            annotations={
                f"{names.DOMAIN}/policy-order": str(index + 1),
                f"{names.DOMAIN}/description": policy.description or policy.name,
            },
        ),
        spec=ev.SensorSpec(
            template=ev.Template(service_account_name=names.SENSOR_SERVICE_ACCOUNT),
            dependencies=[
                ev.EventDependency(
                    name=names.DEPENDENCY,
                    event_source_name=names.EVENTSOURCE,
                    event_name=names.EVENT_NAME,
                    filters=ev.EventDependencyFilter(
                        data=gating_filters(settings) + policy_filters(policy),
                        script=lua_script(config, index),
                    ),
                )
            ],
            triggers=[
                ev.Trigger(
                    template=ev.TriggerTemplate(
                        name=policy.response,
                        argo_workflow=ev.ArgoWorkflowTrigger(
                            operation="submit",
                            source=ev.ArtifactLocation(),
                            parameters=trigger_parameters(policy),
                        ),
                    ),
                )
            ],
        ),
    )
    out = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor"}
    out.update(model.model_dump(by_alias=True, exclude_none=True))
    trigger = out["spec"]["triggers"][0]
    # Hera's models cannot hold an embedded resource (CONTRACTS.md section 4): set it afterwards.
    trigger["template"]["argoWorkflow"]["source"] = {"resource": workflow_resource(config, policy)}
    # No atLeastOnce/retryStrategy: deduplication works by the duplicate submit failing with
    # AlreadyExists, and a retried trigger blocks the Sensor for every duplicate of an alert storm.
    return out


def sensors(config: ResponseConfig) -> list[dict]:
    return [sensor(config, i) for i in range(len(config.policies))]
