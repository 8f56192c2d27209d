"""`falco-response submit [ALERT|-] [--pipeline P] [-p name=value ...] [--run]`: the `argo submit` a responder runs.

With an alert, the parameters, labels and the Workflow name are derived the way the Sensor derives
them (standin.argo.events.sensors on the Sensors in build/), so a manual submit for an alert the Sensor already
handled is refused as AlreadyExists (the same deterministic name). The name's severity follows the
pipeline and dry-run finally chosen (engine.names.response_severity). Without an alert, or to
complete or override it, give `-p name=value`. `--pipeline` chooses the WorkflowTemplate (default:
the one the firing Sensor uses). The command is printed shell-quoted; `--run` runs it (as an argv
list, never through a shell) when the `argo` CLI is on PATH.

`submit --rerun NAME`: the deterministic name is the dedupe key, so re-running a past response
needs a fresh name: NAME-rerun-<n> (n one more than the re-runs of NAME the API lists, cut to
Argo's 63 characters), labelled falco-response.io/rerun-of=NAME (the original, also for a re-run
of a re-run). The Workflow's spec.workflowTemplateRef and spec.arguments are read through the
Kubernetes API (--kubeconfig, else $KUBECONFIG, else ~/.kube/config); `-p` overrides one of them
(e.g. `-p alert-time=` for an alert older than max_alert_age_seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from engine import names, simulate
from standin.argo.events import sensors as sensorsim

LABELS = (names.LABEL_POLICY, names.LABEL_PIPELINE, names.LABEL_NAMESPACE, names.LABEL_POD, names.LABEL_RULE, names.LABEL_SEVERITY)
LABEL_RERUN_OF = f"{names.DOMAIN}/rerun-of"
MAX_NAME = 63  # Argo's validate.go maxCharsInObjectName: the name is also a label value on every pod


class SubmitError(ValueError):
    pass


def workflow_templates(build_dir: Path) -> dict[str, dict]:
    """The WorkflowTemplates of build/pipelines by name: the pipelines this engine generates."""
    found = {}
    for path in sorted((build_dir / "pipelines").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "WorkflowTemplate":
                found[doc["metadata"]["name"]] = doc
    return found


def build_command(
    build_dir: Path,
    alert_bytes: bytes | None,
    pipeline: str | None,
    overrides: list[str],
) -> tuple[list[str], str]:
    """(argv, explanation) of the `argo submit --from workflowtemplate/...` for this alert/parameters."""
    templates = workflow_templates(build_dir)
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


# --- re-run -----------------------------------------------------------------------------------------

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"


def api_client(kubeconfig: str | None):
    """A Kubernetes API client from the kubeconfig (its current context), as kubectl and argo use it."""
    from kubernetes import client, config

    # resolved here: the kubernetes package reads $KUBECONFIG once, when it is imported
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=path, client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise SubmitError(f"no usable kubeconfig {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    configuration.retries = False
    return client.ApiClient(configuration)


def _api_error(exc, what: str) -> SubmitError:
    """One line from the API's Status body (what kubectl prints), else its HTTP status."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return SubmitError(f"{what}: {message or f'{exc.status} {exc.reason}'}")


def rerun_name(original: str, taken: set[str]) -> str:
    """ORIGINAL-rerun-<n>, n one more than the highest taken, ORIGINAL cut so that it fits Argo's 63."""
    numbers = [0]
    for name in taken:
        _, sep, n = name.rpartition("-rerun-")
        if sep and n.isdigit():
            numbers.append(int(n))
    suffix = f"-rerun-{max(numbers) + 1}"
    return original[: MAX_NAME - len(suffix)].rstrip("-.") + suffix


def rerun_command(build_dir: Path, name: str, namespace: str | None, overrides: list[str], api) -> tuple[list[str], str]:
    """(argv, explanation) of the `argo submit --from` that re-runs Workflow NAME under a fresh name.

    Only a Workflow that runs one of build/'s WorkflowTemplates (spec.workflowTemplateRef) is ours;
    its spec.arguments are passed again, `-p` overriding one of them."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    templates = workflow_templates(build_dir)
    if not templates:
        raise SubmitError(f"no WorkflowTemplates in {build_dir}/pipelines: run `falco-response build` first")
    if namespace is None:
        namespace = next(iter(templates.values()))["metadata"].get("namespace", "default")
    custom = client.CustomObjectsApi(api)
    where = f"{namespace}/{name}"
    try:
        response = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _preload_content=False)
        old = json.loads(response.data)
    except ApiException as exc:
        if exc.status == 404:
            raise SubmitError(f"no Workflow {where}: nothing to re-run (`argo list -n {namespace}`)") from None
        raise _api_error(exc, f"cannot read Workflow {where}") from None
    except (HTTPError, OSError) as exc:  # urllib3's connection errors (retries are off)
        raise SubmitError(f"cannot reach the API server {api.configuration.host}: {type(exc).__name__}") from None
    ref = (old.get("spec") or {}).get("workflowTemplateRef") or {}
    template = templates.get(ref.get("name")) if not ref.get("clusterScope") else None
    if template is None:
        runs = f"WorkflowTemplate {ref['name']}" if ref.get("name") else "no workflowTemplateRef"
        raise SubmitError(f"Workflow {where} is not a falco-response response: it runs {runs}, "
                          f"not one of the WorkflowTemplates in {build_dir}/pipelines")
    old_labels = (old.get("metadata") or {}).get("labels") or {}
    original = old_labels.get(LABEL_RERUN_OF) or name
    params: dict[str, str] = {}
    for p in ((old["spec"].get("arguments") or {}).get("parameters")) or []:
        if isinstance(p, dict) and isinstance(p.get("name"), str) and p.get("value") is not None:
            params[p["name"]] = str(p["value"])
    declared = [p["name"] for p in ((template["spec"].get("arguments") or {}).get("parameters")) or []]
    changed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SubmitError(f"-p {item!r}: expected name=value")
        if key not in declared and key not in params:
            raise SubmitError(f"-p {key}: Workflow {where} has no parameter {key!r} (parameters: {', '.join(params)})")
        params[key] = value
        changed.append(key)
    try:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                      label_selector=f"{LABEL_RERUN_OF}={original}", _preload_content=False)
        taken = {w["metadata"]["name"] for w in json.loads(listed.data).get("items") or []}
    except ApiException as exc:
        raise _api_error(exc, f"cannot list the re-runs of {namespace}/{original}") from None
    except (HTTPError, OSError) as exc:
        raise SubmitError(f"cannot reach the API server {api.configuration.host}: {type(exc).__name__}") from None
    new_name = rerun_name(original, taken)
    labels = {k: old_labels[k] for k in LABELS if k in old_labels}
    pipeline = labels.get(names.LABEL_PIPELINE) or (template["metadata"].get("labels") or {}).get(names.LABEL_PIPELINE)
    if pipeline and names.LABEL_SEVERITY in labels:
        labels[names.LABEL_SEVERITY] = str(names.response_severity(pipeline, params.get("dry-run") == "true"))
    labels[LABEL_RERUN_OF] = original
    argv = ["argo", "submit", "--from", f"workflowtemplate/{ref['name']}", "-n", namespace, "--name", new_name]
    for key in [*[k for k in declared if k in params], *[k for k in params if k not in declared]]:
        argv += ["-p", f"{key}={params[key]}"]
    argv += ["-l", ",".join(f"{k}={v}" for k, v in labels.items())]
    phase = (old.get("status") or {}).get("phase") or "not started"
    why = (f"re-run of Workflow {where} ({phase}) under a fresh name: its parameters"
           + (f", {', '.join(changed)} overridden" if changed else ", unchanged"))
    return argv, why


def run(args: argparse.Namespace) -> int:
    build_dir = Path(args.build_dir)
    alert_bytes = None
    try:
        if args.rerun is not None:
            if args.alert is not None or args.pipeline:
                raise SubmitError("--rerun takes no alert and no --pipeline: the re-run runs the Workflow's own template")
            argv, why = rerun_command(build_dir, args.rerun, args.namespace, args.param or [], api_client(args.kubeconfig))
        else:
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
    p.add_argument("--rerun", metavar="NAME", default=None,
                   help="re-run the past response Workflow NAME under a fresh name, with its parameters (read through the API)")
    p.add_argument("-n", "--namespace", default=None, help="--rerun: the Workflow's namespace (default: the pipelines' namespace)")
    p.add_argument("--kubeconfig", default=None, help="--rerun: the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)")
    p.set_defaults(func=run)
