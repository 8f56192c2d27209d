"""`falco-response simulate [PATH|-]`: which policy in build/ takes a Falco alert, and the Workflow submitted.

The alert is posted (in effect) as Falcosidekick posts it: it goes through the EventSource's
checks (maxPayloadSize, JSON) and becomes the event data Argo Events publishes; then EVERY Sensor
in build/sensors is evaluated from its YAML with Argo Events' semantics (standin.argo.events.sensors).
The generator writes one Sensor whose trigger picks the first policy that matches
(sensors.policies); the policy is read from the Workflow the trigger submits. Two firing Sensors
(an edited build/) are reported as a generator bug.

Several files, or a directory of *.json alerts, get one decision each (the --json objects then
carry `file`, as they do for any directory). With no file it reads stdin, and says so in one line
when stdin is a terminal.

Exit status: 0 evaluated (whether or not something fires), 1 the simulator cannot evaluate a
Sensor or a trigger failed, 2 malformed input, 3 several Sensors fire (generator bug); for several
files the worst of these. Interrupted (Ctrl-C): 130; stdout closed early (`| head -1`): 141
(engine.cli), without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from engine import lint, names
from sensors import policies as generator
from engine.yamlout import dump as to_yaml
from standin.argo.events import sensors as sensorsim
from standin.argo.events.sensors import SensorResult, WebhookSpec

EXIT_OK, EXIT_UNSUPPORTED, EXIT_INPUT, EXIT_BUG = 0, 1, 2, 3


class InputError(ValueError):
    """The alert cannot be posted: not readable, too large, not JSON, not an object."""


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def check_alert(body: bytes, webhook: WebhookSpec) -> dict:
    """What the EventSource and the Sensors need before anything else; returns the decoded alert."""
    if len(body) > webhook.max_payload_size:
        raise InputError(
            f"the alert is {len(body)} bytes, over the EventSource's maxPayloadSize ({webhook.max_payload_size}): "
            "Argo Events would refuse it"
        )
    try:
        node = sensorsim.parse_json(sensorsim.go_text(body))
    except sensorsim.JSONSyntaxError as exc:
        raise InputError(f"the alert is not JSON: {exc}") from None
    if node.kind != "object":
        raise InputError(f"the alert must be a JSON object, got {node.gtype() if node.kind != 'array' else 'an array'}")
    return node.value()


@dataclass
class Decision:
    results: list[SensorResult]
    fired: list[SensorResult] = field(default_factory=list)
    sensor: SensorResult | None = None
    trigger: str | None = None
    workflow: dict | None = None
    error: str | None = None  # a trigger that failed
    forced: str | None = None
    refused: str | None = None  # why every Sensor refuses the alert at the same filter, in words
    sensor_object: dict | None = None  # the manifest of the Sensor that fired

    @property
    def matched(self) -> bool:
        return self.workflow is not None

    @property
    def policy(self) -> str | None:
        if self.workflow is not None:
            return ((self.workflow.get("metadata") or {}).get("labels") or {}).get(names.LABEL_POLICY) or (
                self.sensor.policy if self.sensor else None
            )
        return self.sensor.policy if self.sensor else None

    def _order(self) -> str:
        """`, policy k of n` from the Sensor's policy table (names.ANNOTATION_POLICIES)."""
        table = policy_table(self.sensor_object) if self.sensor_object else []
        order = [p["name"] for p in table]
        return f", policy {order.index(self.policy) + 1} of {len(order)}" if self.policy in order else ""

    @property
    def pipeline(self) -> str | None:
        if self.workflow is None:
            return None
        labels = (self.workflow.get("metadata") or {}).get("labels") or {}
        if labels.get(names.LABEL_PIPELINE):
            return labels[names.LABEL_PIPELINE]
        ref = ((self.workflow.get("spec") or {}).get("workflowTemplateRef") or {}).get("name", "")
        return ref.removeprefix("falco-") or self.trigger

    @property
    def workflow_name(self) -> str | None:
        return ((self.workflow or {}).get("metadata") or {}).get("name")

    @property
    def parameters(self) -> dict[str, str]:
        return sensorsim.workflow_parameters(self.workflow) if self.workflow else {}

    @property
    def bug(self) -> str | None:
        if len(self.fired) > 1:
            which = ", ".join(f"{r.sensor} (policy {r.policy})" for r in self.fired)
            return f"GENERATOR BUG: {len(self.fired)} Sensors fire for one alert: {which}; first match wins is broken"
        return None

    @property
    def reason(self) -> str:
        if self.bug:
            return self.bug
        if self.forced:
            return self.forced
        if self.sensor is not None and self.error:
            return f"Sensor {self.sensor.sensor} passed its filters but trigger {self.trigger} failed: {self.error}"
        if self.sensor is not None:
            return (
                f"policy {self.policy} (Sensor {self.sensor.sensor}{self._order()}) "
                f"fires trigger {self.trigger}: Workflow {self.workflow_name}"
            )
        if self.refused:
            return "no Sensor fires: " + self.refused
        return "no Sensor fires: " + "; ".join(f"{r.sensor}: {r.reason}" for r in self.results)


def decide(
    event_data: bytes, sensors: list[dict], webhook: WebhookSpec, now_ms: int | None = None
) -> Decision:
    """Evaluate every Sensor; the first one that fires (in policy order) decides."""
    results = sensorsim.evaluate_all(sensors, event_data, webhook, now_ms=now_ms)
    decision = Decision(results=results, fired=[r for r in results if r.matched])
    if not decision.fired:
        decision.refused = common_refusal(results, event_data)
    if decision.fired:
        first = decision.fired[0]
        decision.sensor = first
        decision.sensor_object = sensors[results.index(first)]
        if first.triggers:
            trig = first.triggers[0]
            decision.trigger = trig.name
            decision.workflow = trig.workflow
            decision.error = trig.error
        else:
            decision.error = "the Sensor has no trigger"
    return decision


def common_refusal(results: list[SensorResult], event_data: bytes) -> str | None:
    """When every Sensor stops at the same filter for the same reason: that, once, and what in the alert trips it."""
    if not results or any(r.failure is None for r in results):
        return None
    if len({(r.failure.kind, r.failure.index, r.failure.path, r.failure.reason) for r in results}) != 1:
        return None
    failure = results[0].failure
    where = ("every Sensor's " if len(results) > 1 else "the Sensor's ") + failure.describe().split(": ", 1)[1]
    why = json_trouble(sensorsim.parse_json(sensorsim.go_text(event_data)), failure.path or "")
    return f"{why}: {where}" if why else where


def _repeated_or_escaped(node, where: str) -> str | None:
    if node is None or node.kind != "object":
        return None
    escaped = [raw for raw in node.key_raws if "\\" in raw]
    if escaped:
        return f"key {escaped[0]} {where} is written with JSON escapes"
    seen: dict[str, int] = {}
    for key, _ in node.items:
        seen[key] = seen.get(key, 0) + 1
    repeated = [f"{k!r} appears {n} times" for k, n in seen.items() if n > 1]
    if repeated:
        return f"key {' and '.join(repeated)} {where} (Argo Events' data filters and templates read the first, its Lua filter the last)"
    return None


def json_trouble(root, path: str) -> str | None:
    """In words, what the Sensors' JSON filters (sensors.policies.json_filters) see in the alert."""
    body = sensorsim.gjson_get(root, "body")
    if path == "body.@keys":
        return _repeated_or_escaped(body, "at the top level")
    if path == "body.output_fields.@keys":
        return _repeated_or_escaped(sensorsim.gjson_get(root, "body.output_fields"), "in output_fields")
    if path == "body.[tags]":
        tags = sensorsim.gjson_get(root, "body.tags")
        if tags is not None and tags.kind != "array":
            return f"tags is {_short(tags.raw)}, not an array of tags"
        odd = next((t.raw for t in tags.items if t.kind != "string" or "\\" in t.raw), None) if tags else None
        if odd is not None:
            return f"tags holds {_short(odd)}, not a plain string"
    return None


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def policy_table(sensor: dict) -> list[dict]:
    """[{name, pipeline, row}] in policy order, from the Sensor's names.ANNOTATION_POLICIES (rows
    of sensors.policies.policy_row)."""
    text = ((sensor.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_POLICIES)
    if not text:
        return []
    try:
        rows = json.loads(text)
        if not isinstance(rows, list) or any(not isinstance(row, list) or len(row) != 4 for row in rows):
            raise TypeError("not [name, pipeline, dry run, order] rows")
        return [{"name": row[0], "pipeline": row[1], "row": row} for row in rows]
    except (ValueError, TypeError, IndexError):
        raise sensorsim.Unsupported(
            f"Sensor {sensor['metadata'].get('name')}: annotation {names.ANNOTATION_POLICIES} is not a list of policy rows"
        ) from None


def _policies(sensors: list[dict]) -> list[tuple[dict, dict]]:
    return [(s, p) for s in sensors for p in policy_table(s)]


def check_policy(sensors: list[dict], name: str) -> None:
    """InputError unless NAME is a policy in a Sensor's policy table or a pipeline."""
    known = [p["name"] for _, p in _policies(sensors)]
    if name not in known and name not in names.PIPELINES:
        listed = ", ".join(sorted(known)) + "; pipelines: " + ", ".join(names.PIPELINES)
        raise InputError(f"no policy or pipeline named {name!r} (policies: {listed})")


def force(event_data: bytes, sensors: list[dict], webhook: WebhookSpec, name: str, now_ms: int | None = None) -> Decision:
    """The Workflow for policy NAME (the trigger with that policy's values, filters bypassed) or pipeline NAME."""
    check_policy(sensors, name)
    root = sensorsim.parse_json(sensorsim.go_text(event_data))
    entries = _policies(sensors)
    if not entries:
        raise InputError("build/sensors holds no Sensor with a policy table")
    pipeline = None if any(p["name"] == name for _, p in entries) else name
    sensor, entry = next(
        ((s, p) for s, p in entries if (p["name"] == name if pipeline is None else p["pipeline"] == pipeline)),
        entries[0],
    )
    trigger = json.loads(json.dumps(((sensor.get("spec") or {}).get("triggers") or [None])[0]))
    # the trigger's choice of policy (its template parameter) replaced by the forced policy's values
    for param in trigger.get("parameters") or []:
        if param.get("dest") == generator.INLINE:
            try:
                template = generator.with_choice(param["src"]["dataTemplate"], generator.forced(entry["row"]))
            except (KeyError, TypeError, ValueError):
                raise sensorsim.Unsupported(f"Sensor {sensor['metadata'].get('name')}: its trigger's {generator.INLINE} "
                                            "parameter is not one this generator writes") from None
            param["src"] = {"dependencyName": param["src"]["dependencyName"], "dataTemplate": template}
    dep = (sensor.get("spec") or {}).get("dependencies") or [{}]
    events = {str(d.get("name")): root for d in dep}
    result = sensorsim.run_trigger(sensor, trigger, events, now_ms=now_ms)
    decision = Decision(results=[], sensor=None, trigger=result.name, workflow=result.workflow, error=result.error)
    if result.workflow is not None and pipeline and entry["pipeline"] != pipeline:
        wf = result.workflow
        wf["spec"]["workflowTemplateRef"]["name"] = names.workflow_template_name(pipeline)
        wf["metadata"]["labels"][names.LABEL_PIPELINE] = pipeline
        set_severity(wf, pipeline)
        wf["metadata"]["labels"][names.LABEL_POLICY] = "demo"
        for p in wf["spec"]["arguments"]["parameters"]:
            if p.get("name") == "policy":
                p["value"] = "demo"
        decision.forced = f"forced pipeline {pipeline} (no policy uses it; policy {entry['name']}'s values rewritten)"
    else:
        decision.forced = f"forced policy {entry['name']} (Sensor {sensor['metadata']['name']}'s trigger, filters bypassed)"
    return decision


def severity_name(name: str, pipeline: str, params: dict[str, str]) -> tuple[str, int]:
    """(NAME renamed for the severity of PIPELINE and the dry-run parameter, that severity); a name
    names.workflow_name did not make stays."""
    severity = names.response_severity(pipeline, params.get("dry-run") == "true")
    parsed = names.parse_workflow_name(name)
    return (names.workflow_name(parsed[0], severity) if parsed else name), severity


def set_severity(workflow: dict, pipeline: str) -> None:
    """Name and severity label for PIPELINE (and the dry-run parameter): a Workflow of another severity."""
    meta = workflow["metadata"]
    meta["name"], severity = severity_name(meta.get("name") or "", pipeline, sensorsim.workflow_parameters(workflow))
    meta.setdefault("labels", {})[names.LABEL_SEVERITY] = str(severity)


def summary(decision: Decision) -> dict:
    return {
        "matched": decision.matched,
        "policy": decision.policy if (decision.matched or decision.error) else None,
        "pipeline": decision.pipeline,
        "workflow_name": decision.workflow_name,
        "parameters": decision.parameters,
        "reason": decision.reason,
    }


def describe_alert(alert: dict) -> str:
    fields = alert.get("output_fields") if isinstance(alert.get("output_fields"), dict) else {}

    def show(value: object) -> str:
        return "(absent)" if value is _ABSENT else json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value

    where = "/".join(show(fields.get(k, _ABSENT)) for k in ("k8s.ns.name", "k8s.pod.name"))
    return (
        f"alert: rule {alert.get('rule')!r}, priority {show(alert.get('priority', _ABSENT))}, "
        f"source {show(alert.get('source', _ABSENT))}, pod {where}, container {show(fields.get('container.id', _ABSENT))}, "
        f"hostname {show(alert.get('hostname', _ABSENT))}"
    )


_ABSENT = object()


def print_decision(decision: Decision, out=None) -> None:
    out = out or sys.stdout
    for r in decision.results:
        state = "FIRES" if r.matched else "no match"
        chosen = f" (policy {decision.policy}{decision._order()})" if r is decision.sensor and decision.policy else ""
        print(f"  Sensor {r.sensor}: {state}{chosen}", file=out)
        if r.matched:
            for t in r.triggers:
                print(f"        trigger {t.name}: " + (f"FAILED: {t.error}" if t.error else "submits the Workflow below"), file=out)
        else:
            print(f"        {r.reason}", file=out)


def inputs(paths: list[str]) -> list[str]:
    """Files to decide on, in order: a directory stands for its *.json files (sorted); none is stdin."""
    out = []
    for path in paths or ["-"]:
        if path != "-" and Path(path).is_dir():
            found = sorted(str(p) for p in Path(path).glob("*.json") if p.is_file())
            if not found:
                raise InputError(f"{path}: a directory without *.json alerts")
            out += found
        else:
            out.append(path)
    return out


def load_build(build_dir: Path) -> tuple[WebhookSpec, list[dict]]:
    """The EventSource's webhook and the Sensors of BUILD_DIR (OSError, Unsupported or GoError when unreadable)."""
    webhook = sensorsim.load_eventsource(build_dir)
    sensors = sensorsim.load_sensors(build_dir)
    return webhook, sensors


class BuildUnreadable(Exception):
    """build/ cannot be evaluated: the one-line reason."""


def open_build(build_dir: Path, policy_file: str | None) -> tuple[WebhookSpec, list[dict]]:
    """load_build, with at least one Sensor, and the stale-build note printed (simulate and test)."""
    try:
        webhook, sensors = load_build(build_dir)
    except (OSError, sensorsim.Unsupported, sensorsim.GoError) as exc:
        raise BuildUnreadable(f"cannot read the manifests in {build_dir}/: {exc}") from None
    if not sensors:
        raise BuildUnreadable(f"no Sensor in {build_dir}/sensors (run `make build`)")
    stale = lint.stale_note(build_dir, policy_file)
    if stale:
        print(stale, file=sys.stderr)
    return webhook, sensors


def _one(path: str, build_dir: Path, webhook: WebhookSpec, sensors: list[dict], args, label: bool) -> int:
    """Decide for the alert at PATH and print it; the exit status for that alert."""
    try:
        body = read_input(path)
        alert = check_alert(body, webhook)
    except InputError as exc:
        print(f"error: {path + ': ' if label else ''}{exc}", file=sys.stderr)
        return EXIT_INPUT
    event_data = sensorsim.webhook_event_data(body, sensorsim.falcosidekick_headers(body))
    try:
        decision = decide(event_data, sensors, webhook)
    except (sensorsim.Unsupported, sensorsim.GoError) as exc:
        print(f"error: the simulator cannot evaluate build/: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    if decision.bug:
        print(f"error: {path + ': ' if label else ''}{decision.bug}", file=sys.stderr)
    if args.json:
        print(json.dumps(({"file": path} if label else {}) | summary(decision), ensure_ascii=False))
    else:
        if label:
            print(f"==> {path} <==")
        print(describe_alert(alert))
        print(f"Sensors in {build_dir}/sensors (event {webhook.eventsource}/{webhook.event_name}):")
        print_decision(decision)
        print()
        print(decision.reason)
        if decision.workflow is not None:
            ns = decision.workflow["metadata"].get("namespace")
            print(f"\n# The Workflow the Sensor submits (argo -n {ns} submit):")
            print("---")
            print(to_yaml(decision.workflow), end="")
        if label:
            print()
    if decision.bug:
        return EXIT_BUG
    if decision.error:
        return EXIT_UNSUPPORTED
    return EXIT_OK


STDIN_NOTE = "simulate: reading one alert (JSON) from stdin, end it with Ctrl-D; or give alert files or a directory"


def run(args: argparse.Namespace) -> int:
    """One decision per alert file; the exit status is the worst of them (EXIT_BUG > EXIT_INPUT >
    EXIT_UNSUPPORTED > EXIT_OK)."""
    build_dir = Path(args.build_dir)
    try:
        webhook, sensors = open_build(build_dir, args.policy_file)
    except BuildUnreadable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    try:
        paths = inputs(args.paths)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if "-" in paths and sys.stdin is not None and sys.stdin.isatty():
        print(STDIN_NOTE, file=sys.stderr)
    label = len(paths) > 1 or any(path != "-" and Path(path).is_dir() for path in args.paths)
    return max(_one(path, build_dir, webhook, sensors, args, label) for path in paths)


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="show which Sensor fires for a Falco alert and the Workflow it submits")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="alert JSON files or directories of them (one decision per file), or - for stdin (default)")
    p.add_argument("--json", action="store_true", help="print one JSON object per alert: matched, policy, pipeline, "
                   "workflow_name, parameters, reason (and file, given several)")
    p.add_argument("--build-dir", default="build", help="where the generated manifests are (default: build)")
    p.add_argument("--policy-file", default=None,
                   help="the policy file build/ should come from (default: response.yaml): a stale build/ is said in one line")
    p.set_defaults(func=run)
