"""`falco-response doctor`: can this cluster respond? A preflight of everything a response needs.

Run from a laptop through a kubeconfig (`falco-response doctor --kubeconfig ~/.kube/config`) or inside
the cluster as WorkflowTemplate `falco-doctor` (`--in-cluster`: the pod's ServiceAccount). Each
check prints PASS, WARN or FAIL with a one-line remedy; `--json` prints the same as JSON; the exit
status is 1 when any check FAILed (2 on bad input).

It tests what the pipelines will do, with the steps' own code: the API client of steps/kube.py,
the kubelet address, TLS settings and checkpoint call of steps/checkpoint.py (as the checkpoint
step's own ServiceAccount, with a token from a TokenRequest), and the S3 client of steps/copy.py.
In the cluster (`--in-cluster`, python -m steps.doctor) the ServiceAccount reads no Secret: the
EventSource and Falcosidekick lines are WARNs pointing to the CLI. Checks, in order:
- the API server; Argo Workflows and Argo Events (their resources served under argoproj.io/v1alpha1,
  their controllers' versions when readable, the EventBus `default`, the EventSource);
- the EventSource over HTTPS (`--eventsource-url`, e.g. after a port-forward: its NetworkPolicy admits
  Falcosidekick alone): refuses an alert without the token (401), accepts one with it. The alert
  posted matches no policy (no pod fields: the Sensor's filter drops it), so nothing runs;
- Falcosidekick's configuration: the existingSecret's WEBHOOK_CUSTOMHEADERS carries the same token,
  the CA ConfigMap it verifies the EventSource with exists, the Deployment loads both;
- per node: the kubelet reachable and its certificate verified as checkpoint.kubelet_tls says; the
  checkpoint identity allowed `nodes/checkpoint` (SubjectAccessReview); a canary pod checkpointed
  end to end, and one holding an established TCP connection (CRIU needs `tcp-established`). The
  canary pods are deleted; their archives stay on the node in the checkpoint directory, where the
  reaper DaemonSet removes them after blast_radius.archive_retention_hours;
- the evidence store: reachable, versioning and Object Lock, a test object written and read back
  (deleted when the lock allows, else left with a one-day retention).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import io
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine import names
from engine.config import ConfigError, Settings

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
ARGO_GROUP = "argoproj.io/v1alpha1"
WORKFLOWS_RESOURCES = ("workflows", "workflowtemplates", "workflowtaskresults")
EVENTS_RESOURCES = ("eventsources", "sensors", "eventbus")
CANARY_LABEL = f"{names.DOMAIN}/doctor-canary"  # plain | tcp
CANARY_CONTAINER = "canary"
DOCTOR_RULE = "falco-response doctor canary"
HELM_WORKFLOWS = "helm upgrade --install argo-workflows argo/argo-workflows -n argo --create-namespace (README: Deploy, step 1)"
HELM_EVENTS = "helm upgrade --install argo-events argo/argo-events -n argo-events --create-namespace (README: Deploy, step 1)"
APPLY = "kubectl apply -k build/ (README: Deploy, step 4)"
SECRETS = "sh build/create-secrets.sh (README: Deploy, step 3)"
MIN_VERSIONS = {"Argo Workflows": (3, 6), "Argo Events": (1, 9)}


@dataclass
class Check:
    group: str
    name: str
    status: str
    detail: str
    remedy: str = ""


class DoctorInputError(ValueError):
    """Bad input: one line, nothing checked."""


# --- the report ---------------------------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, group: str, name: str, status: str, detail: str, remedy: str = "") -> Check:
        check = Check(group, name, status, _one_line(detail), _one_line(remedy) if status != PASS else "")
        self.checks.append(check)
        return check

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def table(self) -> str:
        width = max([len(f"{c.group}/{c.name}") for c in self.checks] + [10])
        lines = []
        for c in self.checks:
            lines.append(f"{c.status}  {c.group + '/' + c.name:<{width}}  {c.detail}")
            if c.remedy:
                lines.append(f"{'':4}  {'':<{width}}  remedy: {c.remedy}")
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in (PASS, WARN, FAIL)}
        lines.append(f"{counts[PASS]} passed, {counts[WARN]} warnings, {counts[FAIL]} failed")
        return "\n".join(lines)

    def as_json(self) -> str:
        counts = {s.lower(): sum(1 for c in self.checks if c.status == s) for s in (PASS, WARN, FAIL)}
        return json.dumps({"checks": [asdict(c) for c in self.checks], "summary": counts}, indent=2)


def _one_line(text: object, limit: int = 600) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def split_fix(message: str) -> tuple[str, str]:
    """A step's one-line error `<what happened>[;:] fix: <remedy>` as (detail, remedy)."""
    for marker in ("; fix: ", ": fix: "):
        if marker in message:
            head, _, fix = message.partition(marker)
            return head, fix
    return message, ""


# --- the API ------------------------------------------------------------------------------------


def kubeconfig_configuration(path: str):
    """steps/kube.py's Configuration from a kubeconfig in YAML or JSON (the steps read JSON only:
    this converts to JSON, with relative file paths made absolute, as clientcmd resolves them)."""
    import yaml

    from steps import kube

    source = Path(os.path.expanduser(path))
    try:
        data = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise DoctorInputError(f"cannot read kubeconfig {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DoctorInputError(f"kubeconfig {source} is not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DoctorInputError(f"kubeconfig {source} is not a mapping")
    base = source.resolve().parent
    exec_credentials(data, source)
    for section, keys in (("clusters", ("certificate-authority",)), ("users", ("client-certificate", "client-key", "tokenFile"))):
        for entry in data.get(section) or []:
            inner = (entry or {}).get(section[:-1]) or {}
            for key in keys:
                if isinstance(inner.get(key), str) and inner[key] and not os.path.isabs(inner[key]):
                    inner[key] = str(base / inner[key])
    handle, converted = tempfile.mkstemp(prefix="doctor-kubeconfig-", suffix=".json")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out)
        return kube.kubeconfig_config(converted)
    except kube.ConfigError as exc:
        raise DoctorInputError(str(exc).replace(converted, str(source))) from None
    finally:
        os.unlink(converted)


def exec_credentials(config: dict, source: Path) -> None:
    """The current user's `exec` plugin (EKS, GKE, AKS kubeconfigs), run once as client-go's exec
    authenticator runs it (k8s.io/client-go/plugin/pkg/client/auth/exec: the command with its args and
    env, KUBERNETES_EXEC_INFO, an ExecCredential on stdout): its status.token replaces the plugin."""
    import subprocess

    context = next((c.get("context") or {} for c in config.get("contexts") or [] if c.get("name") == config.get("current-context")), {})
    user = next((u.get("user") or {} for u in config.get("users") or [] if u.get("name") == context.get("user")), None)
    plugin = (user or {}).get("exec")
    if not isinstance(plugin, dict):
        return
    command = plugin.get("command")
    if not command:
        raise DoctorInputError(f"kubeconfig {source}: user {context.get('user')!r}: exec has no command")
    env = {**os.environ, **{e.get("name"): str(e.get("value", "")) for e in plugin.get("env") or [] if e.get("name")}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": plugin.get("apiVersion", "client.authentication.k8s.io/v1"),
                                              "kind": "ExecCredential", "spec": {"interactive": False}})
    try:
        done = subprocess.run([command, *[str(a) for a in plugin.get("args") or []]], env=env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DoctorInputError(f"kubeconfig {source}: exec plugin {command}: {_one_line(exc, 200)}") from None
    try:
        status = json.loads(done.stdout).get("status") or {}
    except ValueError:
        status = {}
    if done.returncode != 0 or not status.get("token"):
        why = _one_line(done.stderr or done.stdout, 200) or f"exit {done.returncode}"
        raise DoctorInputError(f"kubeconfig {source}: exec plugin {command} gave no token ({why}): only a bearer token is used")
    user.pop("exec")
    user["token"] = status["token"]


class Api:
    """GET/POST/DELETE JSON through steps/kube.py's client; answers (status, body) instead of raising."""

    def __init__(self, client) -> None:
        self.client = client

    def call(self, method: str, path: str, body: Any = None, query=None) -> tuple[int, Any]:
        from steps import kube

        try:
            response = self.client.request(method, path, body=body, query=query, timeout=(10, 30))
        except kube.ApiException as exc:
            text = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason or "")
            try:
                return exc.status, json.loads(text)
            except ValueError:
                return exc.status, {"message": _one_line(text, 300)}
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, timeouts: status 0
            return 0, {"message": f"{type(exc).__name__}: {_one_line(exc, 300)}"}
        return response.status, json.loads(response.data or b"{}")

    def get(self, path: str, query=None) -> tuple[int, Any]:
        return self.call("GET", path, query=query)


def message(body: Any) -> str:
    return _one_line((body or {}).get("message") or body if isinstance(body, dict) else body, 300)


def secret_value(api: Api, namespace: str, name: str, key: str) -> tuple[str | None, str]:
    """(value, why not): a Secret's key, decoded."""
    status, body = api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if status != 200:
        return None, f"Secret {namespace}/{name}: {status} {message(body)}"
    raw = (body.get("data") or {}).get(key)
    if raw is None:
        return None, f"Secret {namespace}/{name} has no key {key}"
    return base64.b64decode(raw).decode("utf-8", "replace"), ""


def configmap_value(api: Api, namespace: str, name: str, key: str) -> tuple[str | None, str]:
    status, body = api.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    if status != 200:
        return None, f"ConfigMap {namespace}/{name}: {status} {message(body)}"
    value = (body.get("data") or {}).get(key)
    return (value, "") if value else (None, f"ConfigMap {namespace}/{name} has no key {key}")


# --- Argo --------------------------------------------------------------------------------------


def image_version(image: str) -> tuple[int, ...] | None:
    tag = image.rsplit("@", 1)[0].rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    parts = tag.lstrip("v").split(".")
    try:
        return tuple(int(p.split("-")[0]) for p in parts[:2])
    except ValueError:
        return None


def controller_version(api: Api, namespace: str, image_word: str) -> tuple[str, tuple[int, ...] | None]:
    """The image of a Deployment in `namespace` whose container image names `image_word`: Helm's
    charts label nothing with the app version reliably, the image tag is what runs."""
    status, body = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")
    if status != 200:
        return "version not readable (" + (f"{status} " if status else "") + f"deployments in {namespace})", None
    for deployment in body.get("items") or []:
        for container in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
            image = str(container.get("image") or "")
            if image_word in image.rsplit("/", 1)[-1]:
                return image, image_version(image)
    return f"no {image_word} Deployment in {namespace}: version not readable", None


def check_argo(report: Report, api: Api, settings: Settings) -> None:
    status, body = api.get(f"/apis/{ARGO_GROUP}")
    served = {r.get("name") for r in (body.get("resources") or [])} if status == 200 else set()
    es_ns = settings.eventsource.namespace
    for product, wanted, remedy, ns, word in (
        ("Argo Workflows", WORKFLOWS_RESOURCES, HELM_WORKFLOWS, settings.argo_namespace, "workflow-controller"),
        ("Argo Events", EVENTS_RESOURCES, HELM_EVENTS, es_ns, "argo-events"),
    ):
        name = product.lower().replace(" ", "-")
        missing = [r for r in wanted if r not in served]
        if missing:
            report.add("argo", name, FAIL, f"{product}: {', '.join(m + '.argoproj.io' for m in missing)} not served "
                       "(CRDs not installed)", remedy)
            continue
        shown, version = controller_version(api, ns, word)
        minimum = MIN_VERSIONS[product]
        if version and version < minimum:
            report.add("argo", name, WARN, f"{product} CRDs served; controller {shown} is older than "
                       f"{'.'.join(map(str, minimum))}", f"upgrade: {remedy}")
        else:
            report.add("argo", name, PASS, f"{product} CRDs served ({', '.join(wanted)}); controller {shown}")
    if any(r not in served for r in EVENTS_RESOURCES):
        return
    status, body = api.get(f"/apis/{ARGO_GROUP}/namespaces/{es_ns}/eventbus/default")
    if status == 200:
        report.add("argo", "eventbus", PASS, f"EventBus {es_ns}/default exists")
    elif status == 404:
        report.add("argo", "eventbus", FAIL, f"no EventBus {es_ns}/default: no Sensor receives any event",
                   f"kubectl apply -n {es_ns} an EventBus named default (README: Deploy, step 1)")
    else:
        report.add("argo", "eventbus", WARN, f"EventBus {es_ns}/default not readable: {status} {message(body)}",
                   "run the doctor with a kubeconfig that may read argoproj.io eventbus")
    status, body = api.get(f"/apis/{ARGO_GROUP}/namespaces/{es_ns}/eventsources/{names.EVENTSOURCE}")
    if status == 200:
        report.add("argo", "eventsource-object", PASS, f"EventSource {es_ns}/{names.EVENTSOURCE} exists")
    elif status == 404:
        report.add("argo", "eventsource-object", FAIL, f"no EventSource {es_ns}/{names.EVENTSOURCE}", APPLY)
    else:
        report.add("argo", "eventsource-object", WARN, f"EventSource not readable: {status} {message(body)}",
                   "run the doctor with a kubeconfig that may read argoproj.io eventsources")


# --- the EventSource and Falcosidekick ---------------------------------------------------------


def webhook_address(settings: Settings) -> str:
    es = settings.eventsource
    return f"https://{names.EVENTSOURCE_SERVICE}.{es.namespace}.svc.cluster.local:{es.port}{es.endpoint}"


def canary_alert() -> bytes:
    """An alert no policy can match: no pod fields (the Sensor's filter admits pod alerts only),
    a rule no policy names, priority Debug."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps({
        "uuid": secrets.token_hex(16), "output": "falco-response doctor: EventSource check (matches no policy)",
        "priority": "Debug", "rule": DOCTOR_RULE, "time": now, "output_fields": {"evt.time": 0},
        "source": "falco-response-doctor", "hostname": "falco-response-doctor", "tags": ["falco-response-doctor"],
    }).encode()


def post(url: str, ca_pem: str | None, server_name: str, token: str | None) -> tuple[int, str]:
    import urllib3

    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "falco-response-doctor"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    tls = {}
    if url.startswith("https://"):
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_cert_data": ca_pem, "server_hostname": server_name,
               "assert_hostname": server_name}
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=15), **tls)
    try:
        response = pool.request("POST", url, body=canary_alert(), headers=headers)
    except urllib3.exceptions.SSLError as exc:
        return -1, f"TLS: {_one_line(exc, 200)}"
    except Exception as exc:  # noqa: BLE001 - unreachable
        return 0, f"{type(exc).__name__}: {_one_line(exc, 200)}"
    return response.status, _one_line(response.data.decode("utf-8", "replace"), 120)


def check_eventsource(report: Report, api: Api, settings: Settings, url: str | None, token: str | None) -> None:
    es = settings.eventsource
    port_forward = (f"kubectl -n {es.namespace} port-forward svc/{names.EVENTSOURCE_SERVICE} {es.port} & then "
                    f"--eventsource-url https://127.0.0.1:{es.port}{es.endpoint}")
    if not url:
        report.add("eventsource", "webhook", WARN, "not checked: the EventSource's Service is inside the cluster",
                   port_forward)
        return
    ca_pem, why = configmap_value(api, es.falcosidekick_namespace, "falco-eventsource-ca", "ca.crt")
    if ca_pem is None and url.startswith("https://"):
        report.add("eventsource", "webhook", FAIL, f"cannot verify the EventSource's certificate: {why}", SECRETS)
        return
    server_name = f"{names.EVENTSOURCE_SERVICE}.{es.namespace}.svc"
    code, text = post(url, ca_pem, server_name, None)
    if code in (0, -1):
        what = "TLS to" if code == -1 else "cannot reach"
        remedy = (f"the certificate in Secret {es.namespace}/falco-eventsource-tls must be signed by ConfigMap "
                  f"{es.falcosidekick_namespace}/falco-eventsource-ca: {SECRETS}, then restart the EventSource"
                  if code == -1 else port_forward)
        report.add("eventsource", "webhook", FAIL, f"{what} the EventSource at {url} failed: {text}", remedy)
        return
    if code == 401:
        report.add("eventsource", "without-token", PASS, f"POST {url} without a token: 401 {text}")
    else:
        report.add("eventsource", "without-token", FAIL, f"POST {url} without a token answered {code} {text}: "
                   "anyone reaching the Service can submit alerts", f"the EventSource needs authSecret: {APPLY}")
    if token is None:
        report.add("eventsource", "with-token", WARN, "not checked: the token is not readable "
                   f"(Secret {es.namespace}/{es.auth_secret.name})", "run the doctor with a kubeconfig that may read it")
        return
    code, text = post(url, ca_pem, server_name, token)
    if code == 200:
        report.add("eventsource", "with-token", PASS, f"POST {url} with the token of Secret "
                   f"{es.namespace}/{es.auth_secret.name}: 200 {text} (an alert matching no policy)")
    else:
        report.add("eventsource", "with-token", FAIL, f"POST {url} with the token of Secret "
                   f"{es.namespace}/{es.auth_secret.name} answered {code} {text}: every alert is refused",
                   f"{SECRETS}, then restart the EventSource (README: Rotating the webhook token)")


def falcosidekick_headers(value: str) -> dict[str, str]:
    """WEBHOOK_CUSTOMHEADERS as Falcosidekick's config.go reads it: split on ',', each on ':', kept
    only when that makes exactly two parts."""
    headers = {}
    for entry in value.split(","):
        parts = entry.split(":")
        if len(parts) == 2:
            headers[parts[0].strip()] = parts[1].strip()
    return headers


def check_falcosidekick(report: Report, api: Api, settings: Settings, token: str | None) -> None:
    es = settings.eventsource
    ns = es.falcosidekick_namespace
    secret = names.FALCOSIDEKICK_WEBHOOK_SECRET
    value, why = secret_value(api, ns, secret, names.FALCOSIDEKICK_HEADERS_ENV)
    if value is None:
        status = WARN if "403" in why else FAIL
        report.add("falcosidekick", "token", status, f"{why}: Falcosidekick sends no token, every alert gets 401", SECRETS)
    else:
        sent = falcosidekick_headers(value).get("Authorization")
        if not sent:
            report.add("falcosidekick", "token", FAIL, f"Secret {ns}/{secret}: {names.FALCOSIDEKICK_HEADERS_ENV} has no "
                       "Authorization header Falcosidekick would send (format `Authorization:Bearer <token>`)", SECRETS)
        elif token is not None and sent != f"Bearer {token}":
            report.add("falcosidekick", "token", FAIL, f"Secret {ns}/{secret} holds another token than Secret "
                       f"{es.namespace}/{es.auth_secret.name}: every alert gets 401",
                       f"{SECRETS}, then restart Falcosidekick (README: Rotating the webhook token)")
        else:
            same = "the EventSource's token" if token is not None else "a bearer token (the EventSource's not readable)"
            report.add("falcosidekick", "token", PASS, f"Secret {ns}/{secret} ({names.FALCOSIDEKICK_HEADERS_ENV}) carries {same}")
    ca, why = configmap_value(api, ns, "falco-eventsource-ca", "ca.crt")
    if ca is None:
        report.add("falcosidekick", "ca", FAIL, f"{why}: Falcosidekick cannot verify the EventSource (checkcert)", SECRETS)
    else:
        report.add("falcosidekick", "ca", PASS, f"ConfigMap {ns}/falco-eventsource-ca holds the EventSource's CA")
    selector = ",".join(f"{k}={v}" for k, v in es.falcosidekick_pod_labels.items())
    status, body = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments", query={"labelSelector": selector})
    helm = f"helm upgrade --install falco falcosecurity/falco -n {ns} -f build/falcosidekick-values.yaml (README: Deploy, step 5)"
    if status != 200:
        report.add("falcosidekick", "deployment", WARN, f"Deployments in {ns} not readable: {status} {message(body)}", helm)
        return
    items = body.get("items") or []
    if not items:
        report.add("falcosidekick", "deployment", WARN, f"no Falcosidekick Deployment ({selector}) in {ns}", helm)
        return
    pod_spec = ((items[0].get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod_spec.get("containers") or [{}]
    refs = [(e.get("secretRef") or {}).get("name") for c in containers for e in c.get("envFrom") or []]
    volumes = [(v.get("configMap") or {}).get("name") for v in pod_spec.get("volumes") or []]
    where = f"Deployment {ns}/{items[0]['metadata']['name']}"
    if secret not in refs or "falco-eventsource-ca" not in volumes:
        lacks = [w for w, ok in ((f"envFrom Secret {secret} (config.existingSecret)", secret in refs),
                                 ("the falco-eventsource-ca volume", "falco-eventsource-ca" in volumes)) if not ok]
        report.add("falcosidekick", "deployment", FAIL, f"{where} lacks {' and '.join(lacks)}: installed without "
                   "build/falcosidekick-values.yaml", helm)
        return
    address = None
    for ref in refs:
        if ref and ref != secret:
            address, _ = secret_value(api, ns, ref, "WEBHOOK_ADDRESS")
            if address:
                break
    if address and address != webhook_address(settings):
        report.add("falcosidekick", "deployment", FAIL, f"{where} posts to {address}, not {webhook_address(settings)}", helm)
    else:
        shown = f"posts to {address}" if address else "webhook address not readable"
        report.add("falcosidekick", "deployment", PASS, f"{where} loads Secret {secret} and the EventSource CA; {shown}")


# --- nodes ---------------------------------------------------------------------------------------


def service_account_groups(namespace: str) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]


def access_review(api: Api, user: str, groups: list[str], **attributes: str) -> tuple[bool | None, str]:
    """(allowed, reason) of a SubjectAccessReview; allowed None when the review itself failed."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}}
    status, answer = api.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
    if status != 201 and status != 200:
        return None, f"{status} {message(answer)}"
    return bool((answer.get("status") or {}).get("allowed")), str((answer.get("status") or {}).get("reason") or "")


def kubelet_tls_args(settings: Settings, node: str, ca_file: str | None) -> SimpleNamespace:
    tls = settings.checkpoint.kubelet_tls
    return SimpleNamespace(node=node, ca_configmap=tls.ca_bundle_configmap or "", ca_bundle=ca_file or "",
                           insecure=tls.insecure_skip_verify, address_types=list(tls.address_types))


def kubelet_ca(api: Api, settings: Settings, workdir: str) -> tuple[str | None, str]:
    """The CA bundle file the checkpoint step would mount (ConfigMap in the workflow namespace)."""
    tls = settings.checkpoint.kubelet_tls
    if tls.insecure_skip_verify:
        return None, ""
    pem, why = configmap_value(api, settings.namespace, tls.ca_bundle_configmap, tls.ca_bundle_key)
    if pem is None:
        return None, why
    path = os.path.join(workdir, "kubelet-ca.crt")
    Path(path).write_text(pem)
    return path, ""


def check_kubelet(report: Report, api: Api, settings: Settings, node: str, ca_file: str | None, ca_why: str) -> bool:
    import urllib3

    from steps import checkpoint as step
    from steps.common import StepError

    group = f"node/{node}"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the step's log lines (retries): not in the table
            host, port, kind = step.kubelet_address(api.client, node, settings.checkpoint.kubelet_tls.address_types)
    except StepError as exc:
        report.add(group, "kubelet", FAIL, str(exc), "set checkpoint.kubelet_tls.address_types to one the node has")
        return False
    args = kubelet_tls_args(settings, node, ca_file)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if args.insecure:
        tls = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    elif ca_file is None:
        report.add(group, "kubelet", FAIL, f"no CA to verify the kubelet with: {ca_why}",
                   "create the ConfigMap checkpoint.kubelet_tls.ca_bundle_configmap names (KUBELET_CA_FILE with create-secrets.sh)")
        return False
    else:
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": ca_file, "server_hostname": node}
    pool = urllib3.HTTPSConnectionPool(host, port, timeout=urllib3.Timeout(connect=5, read=10), retries=False, maxsize=1, **tls)
    try:
        response = pool.request("GET", "/healthz", redirect=False)  # no credentials: any answer proves TLS
    except urllib3.exceptions.SSLError as exc:
        detail, fix = split_fix(step.tls_failure(args, shown, exc))
        report.add(group, "kubelet", FAIL, detail, fix or "fix checkpoint.kubelet_tls (README: Node prerequisites)")
        return False
    except Exception as exc:  # noqa: BLE001 - refused, timed out
        report.add(group, "kubelet", FAIL, f"kubelet of {node} at {shown} ({kind}) unreachable: {type(exc).__name__}: "
                   f"{_one_line(exc, 160)}", f"let pods in {settings.namespace} reach TCP {port} on the nodes "
                   "(firewall, security group), or set checkpoint.kubelet_tls.address_types")
        return False
    finally:
        pool.close()
    if args.insecure:
        report.add(group, "kubelet", WARN, f"kubelet at {shown} reachable (HTTP {response.status}); its certificate is NOT "
                   "verified (insecure_skip_verify)", "serverTLSBootstrap: true, or checkpoint.kubelet_tls.ca_bundle_configmap")
    else:
        source = f"ConfigMap {settings.namespace}/{args.ca_configmap}" if args.ca_configmap else "the CA bundle"
        report.add(group, "kubelet", PASS, f"kubelet at {shown} ({kind}): certificate verified for the name {node} with {source}")
    return True


def check_checkpoint_rbac(report: Report, api: Api, settings: Settings, node: str) -> bool:
    account = names.step_service_account("checkpoint")
    user = f"system:serviceaccount:{settings.namespace}:{account}"
    subresource = "checkpoint" if settings.checkpoint.path == "kubelet" else "proxy"
    wanted = [dict(verb="create", resource="nodes", subresource=subresource, name=node),
              dict(verb="get", resource="nodes", name=node), dict(verb="get", resource="pods")]
    missing, reason = [], ""
    for attrs in wanted:
        allowed, why = access_review(api, user, service_account_groups(settings.namespace), group="", **attrs)
        if allowed is None:
            report.add(f"node/{node}", "rbac", WARN, f"cannot ask a SubjectAccessReview: {why}",
                       "run the doctor with a kubeconfig that may create subjectaccessreviews.authorization.k8s.io")
            return True
        if not allowed:
            missing.append(f"{attrs['resource']}{'/' + attrs['subresource'] if attrs.get('subresource') else ''} {attrs['verb']}")
        elif attrs.get("subresource"):
            reason = why
    if missing:
        report.add(f"node/{node}", "rbac", FAIL, f"{user} may not {', '.join(missing)} on {node}",
                   f"{APPLY}: ClusterRole and ClusterRoleBinding {account}")
        return False
    report.add(f"node/{node}", "rbac", PASS, f"{account} may create nodes/{subresource} on {node}" + (f" ({reason})" if reason else ""))
    return True


# --- the canary checkpoints --------------------------------------------------------------------


def canary_pod(settings: Settings, node: str, kind: str) -> dict:
    """A small pod pinned to `node`; `tcp` holds an established TCP connection (to the API server's
    Service), as a reverse shell would."""
    if kind == "tcp":
        code = ("import os,socket,time;s=socket.create_connection((os.environ['KUBERNETES_SERVICE_HOST'],"
                "int(os.environ['KUBERNETES_SERVICE_PORT'])));time.sleep(600)")
    else:
        code = "import time;time.sleep(600)"
    suffix = secrets.token_hex(3)
    base = f"falco-doctor-{kind}-"
    name = base + node[: 63 - len(base) - 7].rstrip("-.") + "-" + suffix
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": settings.namespace,
                     "labels": {**names.common_labels("doctor"), CANARY_LABEL: kind}},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "activeDeadlineSeconds": 600,
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": CANARY_CONTAINER, "image": settings.image, "imagePullPolicy": settings.image_pull_policy,
                "command": ["python", "-c", code],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
            }],
        },
    }


def wait_running(api: Api, namespace: str, name: str, timeout: float) -> tuple[dict | None, str]:
    deadline, last = time.monotonic() + timeout, "not created"
    while True:
        status, pod = api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        if status == 200:
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            entry = next((s for s in statuses if s.get("name") == CANARY_CONTAINER), None)
            if entry and "running" in (entry.get("state") or {}) and entry.get("containerID"):
                return pod, ""
            state = (entry or {}).get("state") or {}
            waiting, ended = state.get("waiting") or {}, state.get("terminated") or {}
            last = f"phase {(pod.get('status') or {}).get('phase') or '?'}" + (
                f", {waiting.get('reason')}: {waiting.get('message', '')}" if waiting else "")
            if ended:  # it ran and stopped: no use waiting
                return None, f"the container exited ({ended.get('reason', '?')}, exit code {ended.get('exitCode', '?')})"
        else:
            last = f"{status} {message(pod)}"
        if time.monotonic() >= deadline:
            return None, last
        time.sleep(0.1)


def checkpoint_identity(api: Api, settings: Settings):
    """steps/kube.py ApiClient presenting the checkpoint step's own ServiceAccount (a TokenRequest)."""
    from steps import kube

    account = names.step_service_account("checkpoint")
    status, body = api.call("POST", f"/api/v1/namespaces/{settings.namespace}/serviceaccounts/{account}/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 600}})
    if status != 201 and status != 200:
        return None, f"TokenRequest for {settings.namespace}/{account}: {status} {message(body)}"
    base = api.client.configuration
    configuration = kube.Configuration(base.host, token=body["status"]["token"], ca_file=base.ca_file,
                                       ca_data=base.ca_data, verify=base.verify, server_name=base.server_name)
    return kube.ApiClient(configuration), ""


def check_canary(report: Report, api: Api, settings: Settings, node: str, kind: str, ca_file: str | None,
                 timeout: float, identity) -> None:
    from steps import checkpoint as step
    from steps.common import StepError

    group, check = f"node/{node}", f"checkpoint-{kind}"
    what = "a canary pod" if kind == "plain" else "a canary holding an established TCP connection"
    pod = canary_pod(settings, node, kind)
    name, ns = pod["metadata"]["name"], settings.namespace
    status, body = api.call("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    if status != 201:
        report.add(group, check, FAIL, f"cannot create {what} in {ns}: {status} {message(body)}",
                   f"the doctor needs pods create, delete in {ns} (ServiceAccount {names.step_service_account('doctor')})")
        return
    try:
        running, why = wait_running(api, ns, name, timeout)
        if running is None:
            remedy = f"check that {settings.image} can be pulled on {node} (settings.image)"
            if kind == "tcp" and "exited" in why:
                remedy = f"the canary connects to the API server's Service: let pods in {ns} reach it (egress)"
            report.add(group, check, FAIL, f"{what} {ns}/{name} did not run within {timeout:g}s ({why})", remedy)
            return
        container_id = next(s for s in running["status"]["containerStatuses"] if s["name"] == CANARY_CONTAINER)["containerID"]
        tls = settings.checkpoint.kubelet_tls
        argv = [f"--namespace={ns}", f"--pod={name}", f"--container={CANARY_CONTAINER}", f"--node={node}",
                f"--pod-uid={running['metadata']['uid']}", f"--container-id={container_id.partition('://')[2]}",
                f"--path={settings.checkpoint.path}", f"--timeout={settings.checkpoint.timeout_seconds}",
                f"--address-types={','.join(tls.address_types)}", "--outputs-dir=/tmp"]
        if settings.checkpoint.path == "kubelet":
            argv += ["--insecure-skip-tls-verify=true"] if tls.insecure_skip_verify else [
                f"--ca-bundle={ca_file}", f"--ca-configmap={tls.ca_bundle_configmap or ''}"]
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the step's log lines: not in the table
                args = step.parse(argv)
                body = step.direct(args, identity) if args.path == "kubelet" else step.via_apiserver(args, identity)
                archive = step.archive_path(args, body)
        except StepError as exc:
            detail, fix = split_fix(str(exc))
            if not fix and "tcp-established" in detail:
                fix = step.CRIU_CONFIG_FIX
            report.add(group, check, FAIL, detail, fix or "README: Node prerequisites")
            return
        hours = settings.blast_radius.archive_retention_hours
        report.add(group, check, PASS, f"{what} checkpointed as {names.step_service_account('checkpoint')}; the archive "
                   f"stays on {node}: {archive} (the reaper removes it after {hours}h)")
    finally:
        api.call("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 0})


# --- the evidence store --------------------------------------------------------------------------


def s3_error(exc: BaseException) -> tuple[str, str]:
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code") or type(exc).__name__
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    text = (response.get("Error") or {}).get("Message") or str(exc)
    return code, f"{code}{f' ({status})' if status else ''}: {_one_line(text, 200)}"


def evidence_credentials(api: Api, settings: Settings) -> str:
    """AWS_ACCESS_KEY_ID/SECRET from the environment (the doctor's pod has them from the Secret),
    else read from the credentials Secret the copy step uses. '' when found."""
    if all(os.environ.get(k) for k in names.EVIDENCE_SECRET_ENV):
        return ""
    found = {}
    for key in names.EVIDENCE_SECRET_ENV:
        value, why = secret_value(api, settings.namespace, settings.evidence.credentials_secret, key)
        if value is None:
            return why
        found[key] = value
    os.environ.update(found)
    return ""


def check_evidence(report: Report, api: Api, settings: Settings) -> None:
    from steps import copy as step

    ev = settings.evidence
    bucket = f"s3://{ev.bucket}" + (f" at {ev.endpoint}" if ev.endpoint else "")
    why = evidence_credentials(api, settings)
    if why:
        report.add("evidence", "reachable", FAIL, f"no evidence-store credentials: {why}", SECRETS)
        return
    client = step.s3_client(SimpleNamespace(region=ev.region, endpoint_url=ev.endpoint or None))
    try:
        client.head_bucket(Bucket=ev.bucket)
    except Exception as exc:  # noqa: BLE001 - botocore ClientError and connection errors alike
        code, text = s3_error(exc)
        remedy = {"404": f"create bucket {ev.bucket} (with Object Lock) or fix evidence.bucket",
                  "NoSuchBucket": f"create bucket {ev.bucket} (with Object Lock) or fix evidence.bucket",
                  "403": "the credentials need s3:ListBucket on the bucket, or are wrong (Secret "
                         f"{settings.namespace}/{ev.credentials_secret})"}.get(code, "check evidence.endpoint and region, "
                                                                                    "and that pods reach it")
        report.add("evidence", "reachable", FAIL, f"{bucket}: {text}", remedy)
        return
    report.add("evidence", "reachable", PASS, f"{bucket} reachable with the credentials of Secret "
               f"{settings.namespace}/{ev.credentials_secret}")
    try:
        versioning = client.get_bucket_versioning(Bucket=ev.bucket).get("Status") or "never enabled"
    except Exception as exc:  # noqa: BLE001
        versioning = f"not readable ({s3_error(exc)[1]})"
    lock_mode, lock_days = None, None
    try:
        config = client.get_object_lock_configuration(Bucket=ev.bucket).get("ObjectLockConfiguration") or {}
        locked = config.get("ObjectLockEnabled") == "Enabled"
        retention = (config.get("Rule") or {}).get("DefaultRetention") or {}
        lock_mode, lock_days = retention.get("Mode"), retention.get("Days") or retention.get("Years")
        lock_text = "enabled" + (f", default {lock_mode} {lock_days}d" if lock_mode else ", no default retention")
    except Exception as exc:  # noqa: BLE001
        code, text = s3_error(exc)
        locked = False
        lock_text = "not enabled" if code == "ObjectLockConfigurationNotFoundError" else f"not readable ({text})"
    detail = f"versioning {versioning}; Object Lock {lock_text}"
    if not locked and ev.object_lock:
        report.add("evidence", "object-lock", FAIL, f"{detail}, but evidence.object_lock asks for {ev.object_lock.mode}: "
                   "every copy will fail", f"enable Object Lock on {ev.bucket} (aws s3api put-object-lock-configuration), "
                   "or remove evidence.object_lock")
    elif not locked:
        report.add("evidence", "object-lock", WARN, f"{detail}: evidence can be overwritten or deleted with the "
                   "store's credentials", f"enable Object Lock on {ev.bucket} and set evidence.object_lock in response.yaml")
    else:
        report.add("evidence", "object-lock", PASS, detail)
    key = f"{ev.prefix.strip('/') + '/' if ev.prefix.strip('/') else ''}.doctor/" \
          f"{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}.txt"
    data = f"falco-response doctor test object {key}\n".encode()
    digest = hashlib.sha256(data).digest()
    put: dict = {"Bucket": ev.bucket, "Key": key, "Body": data, "ChecksumAlgorithm": "SHA256",
                 "ChecksumSHA256": base64.b64encode(digest).decode()}
    if locked and ev.object_lock:
        put.update(ObjectLockMode="GOVERNANCE",  # a short retention: one day, the shortest S3 takes
                   ObjectLockRetainUntilDate=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    if ev.sse:
        put["ServerSideEncryption"] = ev.sse.algorithm
        if ev.sse.kms_key_id:
            put["SSEKMSKeyId"] = ev.sse.kms_key_id
    try:
        version = client.put_object(**put).get("VersionId")
        got = client.get_object(Bucket=ev.bucket, Key=key, **({"VersionId": version} if version else {}))["Body"].read()
    except Exception as exc:  # noqa: BLE001
        report.add("evidence", "test-object", FAIL, f"writing s3://{ev.bucket}/{key}: {s3_error(exc)[1]}",
                   "the credentials need s3:PutObject and s3:GetObject (README: Deploy, evidence-store credentials)")
        return
    if hashlib.sha256(got).digest() != digest:
        report.add("evidence", "test-object", FAIL, f"s3://{ev.bucket}/{key} read back differs from what was written",
                   "check the endpoint (a proxy rewriting bodies?)")
        return
    try:
        client.delete_object(Bucket=ev.bucket, Key=key, **({"VersionId": version} if version else {}))
        left = "deleted"
    except Exception as exc:  # noqa: BLE001 - locked (AccessDenied) or no delete permission: as intended
        left = f"left in place ({s3_error(exc)[0]}: locked or no delete permission, as evidence should be)"
    report.add("evidence", "test-object", PASS, f"s3://{ev.bucket}/{key} written with a SHA-256 checksum and read back; {left}")


# --- the run -------------------------------------------------------------------------------------


def run(api: Api, settings: Settings, options: argparse.Namespace) -> Report:
    report = Report()
    status, version = api.get("/version")
    if status != 200:
        report.add("cluster", "api-server", FAIL, f"{api.client.configuration.host}: {status or 'unreachable'} "
                   f"{message(version)}", "check the kubeconfig (server, credentials) or the pod's ServiceAccount")
        return report
    report.add("cluster", "api-server", PASS, f"{api.client.configuration.host}: Kubernetes {version.get('gitVersion', '?')}")
    check_argo(report, api, settings)
    es = settings.eventsource
    if options.in_cluster:
        # Least privilege: the doctor's ServiceAccount reads no Secret, and the EventSource's NetworkPolicy
        # admits Falcosidekick's pods alone: both are checked from outside, with a kubeconfig.
        outside = "run `falco-response doctor --kubeconfig ... --eventsource-url ...` from outside (README: Preflight)"
        report.add("eventsource", "webhook", WARN, f"not checked from inside the cluster: NetworkPolicy "
                   f"{names.EVENTSOURCE_NETWORKPOLICY} admits only Falcosidekick's pods", outside)
        report.add("falcosidekick", "config", WARN, "not checked from inside the cluster: the doctor's ServiceAccount "
                   f"may not read Secrets in {es.namespace} or {es.falcosidekick_namespace}", outside)
    else:
        token, _ = secret_value(api, es.namespace, es.auth_secret.name, es.auth_secret.key)
        token = token[:-1] if token and token.endswith("\n") else token  # GetSecretFromVolume trims one newline
        check_eventsource(report, api, settings, options.eventsource_url, token)
        check_falcosidekick(report, api, settings, token)
    check_nodes(report, api, settings, options)
    check_evidence(report, api, settings)
    return report


def check_nodes(report: Report, api: Api, settings: Settings, options: argparse.Namespace) -> None:
    status, body = api.get("/api/v1/nodes")
    if status != 200:
        report.add("nodes", "list", FAIL, f"cannot list nodes: {status} {message(body)}", "the doctor needs nodes get, list")
        return
    nodes = [n["metadata"]["name"] for n in body.get("items") or []]
    if options.node:
        unknown = [n for n in options.node if n not in nodes]
        if unknown:
            report.add("nodes", "list", FAIL, f"no node {', '.join(unknown)} (the cluster has {', '.join(nodes) or 'none'})",
                       "give --node one of the cluster's nodes")
        nodes = [n for n in nodes if n in options.node]
    if not nodes:
        report.add("nodes", "list", FAIL, "no node to check", "give --node one of the cluster's nodes")
        return
    with tempfile.TemporaryDirectory(prefix="falco-doctor-") as workdir:
        ca_file, ca_why = kubelet_ca(api, settings, workdir)
        identity, identity_why = (None, "") if options.no_canary else checkpoint_identity(api, settings)
        for node in nodes:
            reachable = check_kubelet(report, api, settings, node, ca_file, ca_why)
            allowed = check_checkpoint_rbac(report, api, settings, node)
            if options.no_canary:
                report.add(f"node/{node}", "checkpoint", WARN, "canary checkpoints skipped (--no-canary)",
                           "run without --no-canary before relying on checkpoints")
                continue
            if not (reachable and allowed):
                report.add(f"node/{node}", "checkpoint", FAIL, "canary checkpoints not tried: fix the checks above first",
                           "see the kubelet and rbac lines of this node")
                continue
            if identity is None:
                report.add(f"node/{node}", "checkpoint", FAIL, f"cannot act as the checkpoint identity: {identity_why}",
                           f"the doctor needs serviceaccounts/token create for {names.step_service_account('checkpoint')}")
                continue
            for kind in ("plain", "tcp"):
                check_canary(report, api, settings, node, kind, ca_file, options.canary_timeout, identity)


def load_settings(options: argparse.Namespace) -> Settings:
    if options.settings_json:
        try:
            return Settings.model_validate(json.loads(base64.b64decode(options.settings_json)))
        except Exception as exc:  # noqa: BLE001 - pydantic or base64: one line
            raise DoctorInputError(f"--settings-json: not the base64 JSON of response.yaml's settings: {_one_line(exc, 200)}") from None
    from engine import config

    return config.load(options.policy_file).settings


def cleanup(api: Api, settings: Settings) -> int:
    """Delete every canary pod left in the workflow namespace (falco-doctor's exit handler)."""
    ns = settings.namespace
    status, body = api.get(f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": CANARY_LABEL})
    if status != 200:
        print(f"cleanup: cannot list canary pods in {ns}: {status} {message(body)}", flush=True)
        return 1
    names_ = [p["metadata"]["name"] for p in body.get("items") or []]
    failed = 0
    for name in names_:
        code, answer = api.call("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 0})
        if code not in (200, 202, 404):
            failed += 1
            print(f"cleanup: cannot delete {ns}/{name}: {code} {message(answer)}", flush=True)
    print(f"cleanup: {len(names_) - failed} canary pod(s) deleted in {ns}" + (f", {failed} left" if failed else ""), flush=True)
    return 1 if failed else 0


def main(options: argparse.Namespace) -> int:
    from steps import kube

    try:
        settings = load_settings(options)
        if options.in_cluster:  # the pod's ServiceAccount, as every step (steps/kube.py load_config)
            try:
                configuration = kube.load_config()
            except kube.ConfigError as exc:
                raise DoctorInputError(str(exc)) from None
        else:
            path = options.kubeconfig or (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]
            configuration = kubeconfig_configuration(path)
        if options.eventsource_url and not options.eventsource_url.startswith(("https://", "http://")):
            raise DoctorInputError(f"--eventsource-url: {options.eventsource_url[:80]!r} is not an http(s) URL")
        if options.canary_timeout <= 0:
            raise DoctorInputError("--canary-timeout: give a number of seconds above 0")
    except (DoctorInputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if options.cleanup:
        return cleanup(Api(kube.ApiClient(configuration)), settings)
    report = run(Api(kube.ApiClient(configuration)), settings, options)
    text = report.as_json() if options.json else report.table()
    print(text, flush=True)
    if options.output:
        Path(options.output).parent.mkdir(parents=True, exist_ok=True)
        Path(options.output).write_text(report.table() + "\n")
    return 1 if report.failed else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", default=None, help="kubeconfig (YAML or JSON; default $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--in-cluster", action="store_true", help="use the pod's ServiceAccount (the falco-doctor WorkflowTemplate)")
    p.add_argument("--policy-file", default="response.yaml", help="the settings to check against (default response.yaml)")
    p.add_argument("--settings-json", default=None, help=argparse.SUPPRESS)  # in-cluster: the settings, base64 JSON
    p.add_argument("--eventsource-url", default=None,
                   help="the EventSource's webhook URL as reachable from here, e.g. https://127.0.0.1:12000/falco after "
                        "kubectl -n argo-events port-forward svc/falco-eventsource-svc 12000")
    p.add_argument("--node", action="append", default=None, help="check only this node (repeatable; default: all)")
    p.add_argument("--no-canary", action="store_true", help="skip the canary pods and their checkpoints")
    p.add_argument("--canary-timeout", type=float, default=120.0, help="seconds a canary pod may take to run (default 120)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--cleanup", action="store_true", help="only delete canary pods left behind (falco-doctor's exit handler)")
    p.add_argument("--output", default=None, help=argparse.SUPPRESS)  # in-cluster: the table for the output parameter


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="preflight: can this cluster respond? (PASS/WARN/FAIL per check)")
    add_arguments(p)
    p.set_defaults(func=main)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="falco-response doctor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
