"""`falco-response submit [ALERT|-] [--pipeline P] [-p name=value ...] [--run]`: the `argo submit` a responder runs.

With an alert, the parameters, labels and the Workflow name are derived the way the Sensor derives
them (standin.argo.events.sensors on the Sensors in build/), so a manual submit for an alert the Sensor already
handled is refused as AlreadyExists (the same deterministic name). The name's severity follows the
pipeline and dry-run finally chosen (engine.names.response_severity). Without an alert, or to
complete or override it, give `-p name=value`. `--pipeline` chooses the WorkflowTemplate (default:
the one the firing Sensor uses). The command is printed shell-quoted; `--run` runs it (as an argv
list, never through a shell) when the `argo` CLI is on PATH.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from engine import names, simulate
from standin.argo.events import sensors as sensorsim
from standin.argo.workflows import LocalRunner

LABELS = (names.LABEL_POLICY, names.LABEL_PIPELINE, names.LABEL_NAMESPACE, names.LABEL_POD, names.LABEL_RULE, names.LABEL_SEVERITY)


class SubmitError(ValueError):
    pass


def build_command(
    build_dir: Path,
    alert_bytes: bytes | None,
    pipeline: str | None,
    overrides: list[str],
) -> tuple[list[str], str]:
    """(argv, explanation) of the `argo submit --from workflowtemplate/...` for this alert/parameters."""
    templates = LocalRunner(None, build_dir).workflow_templates()
    by_pipeline = {
        (wt["metadata"].get("labels") or {}).get(names.LABEL_PIPELINE) or wt["metadata"]["name"].removeprefix("falco-"): wt
        for wt in templates.values()
    }
    params: dict[str, str] = {}
    labels: dict[str, str] = {}
    name: str | None = None
    why = ""
    if alert_bytes is not None:
        webhook = sensorsim.load_eventsource(build_dir)
        sensors = sensorsim.load_sensors(build_dir)
        simulate.check_alert(alert_bytes, webhook)
        event_data = sensorsim.webhook_event_data(alert_bytes, sensorsim.falcosidekick_headers(alert_bytes))
        decision = simulate.decide(event_data, sensors, webhook)
        if decision.bug:
            raise SubmitError(decision.bug)
        if decision.workflow is None:
            if not pipeline:
                raise SubmitError(f"{decision.reason}; choose a pipeline with --pipeline to respond anyway")
            decision = simulate.force(event_data, sensors, webhook, pipeline)
            if decision.workflow is None:
                raise SubmitError(f"no Sensor fires and the Sensor's parameters cannot be derived from this alert "
                                  f"({decision.error}); give them with --pipeline and -p, without the alert")
            for p in decision.workflow["spec"]["arguments"]["parameters"]:
                if p.get("name") == "policy":
                    p["value"] = "manual"
            decision.workflow["metadata"]["labels"][names.LABEL_POLICY] = "manual"
            why = f"no Sensor fires ({decision.reason}); parameters derived as the Sensors derive them, policy manual"
        else:
            why = decision.reason
        wf = decision.workflow
        params = sensorsim.workflow_parameters(wf)
        labels = {k: v for k, v in (wf["metadata"].get("labels") or {}).items() if k in LABELS}
        name = wf["metadata"]["name"]
        pipeline = pipeline or decision.pipeline
        if pipeline != labels.get(names.LABEL_PIPELINE):
            labels[names.LABEL_PIPELINE] = pipeline
    if not pipeline:
        raise SubmitError("give an alert or --pipeline (one of: " + ", ".join(sorted(by_pipeline)) + ")")
    wt = by_pipeline.get(pipeline)
    if wt is None:
        raise SubmitError(f"no WorkflowTemplate for pipeline {pipeline!r} in {build_dir}/pipelines "
                          f"(have: {', '.join(sorted(by_pipeline))})")
    declared = {p["name"]: p for p in ((wt["spec"].get("arguments") or {}).get("parameters")) or []}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SubmitError(f"-p {item!r}: expected name=value")
        if key not in declared:
            raise SubmitError(f"-p {key}: WorkflowTemplate {wt['metadata']['name']} has no parameter {key!r} "
                              f"(parameters: {', '.join(declared)})")
        params[key] = value
    if alert_bytes is None:
        params.setdefault("policy", "manual")
        labels = {names.LABEL_POLICY: params.get("policy", "manual"), names.LABEL_PIPELINE: pipeline}
        why = "parameters from -p"
    for key, p in declared.items():
        if key not in params and p.get("value") is None:
            raise SubmitError(f"parameter {key} is required (no default in {wt['metadata']['name']}): give -p {key}=...")
        enum = p.get("enum")
        if enum and key in params and params[key] not in [str(e) for e in enum]:
            raise SubmitError(f"parameter {key}: {params[key]!r} is not one of {enum}")
    if name:
        # the pipeline and dry-run decide the severity: a submit of another severity is another Workflow
        name, severity = simulate.severity_name(name, pipeline, params)
        labels[names.LABEL_SEVERITY] = str(severity)
    namespace = wt["metadata"].get("namespace", "default")
    argv = ["argo", "submit", "--from", f"workflowtemplate/{wt['metadata']['name']}", "-n", namespace]
    if name:
        argv += ["--name", name]
    for key in declared:
        if key in params:
            argv += ["-p", f"{key}={params[key]}"]
    if labels:
        argv += ["-l", ",".join(f"{k}={v}" for k, v in labels.items())]
    return argv, why


def run(args: argparse.Namespace) -> int:
    build_dir = Path(args.build_dir)
    alert_bytes = None
    try:
        if args.alert is not None:
            alert_bytes = simulate.read_input(args.alert)
        argv, why = build_command(build_dir, alert_bytes, args.pipeline, args.param or [])
    except simulate.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SubmitError, sensorsim.Unsupported, sensorsim.GoError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"# {why}", file=sys.stderr)
    print(shlex.join(argv))
    if not args.run:
        return 0
    if shutil.which("argo") is None:
        print("error: --run needs the argo CLI on PATH (https://github.com/argoproj/argo-workflows/releases)", file=sys.stderr)
        return 1
    return subprocess.run(argv, check=False).returncode


def register(subparsers) -> None:
    p = subparsers.add_parser("submit", help="print (or run) the argo submit for an alert on a real cluster")
    p.add_argument("alert", nargs="?", default=None, help="the alert JSON file, or - for stdin")
    p.add_argument("--pipeline", default=None, help="the pipeline (WorkflowTemplate) to use; default: the firing Sensor's")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="set a workflow parameter (repeatable)")
    p.add_argument("--run", action="store_true", help="run the command (needs the argo CLI on PATH)")
    p.add_argument("--build-dir", default="build", help="where the generated manifests are (default: build)")
    p.set_defaults(func=run)
