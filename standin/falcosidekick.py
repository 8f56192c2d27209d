"""Falcosidekick as the falco Helm chart deploys it, and the kubectl that build/create-secrets.sh drives.

The charts are read at run time from ../shared/charts (they are data: nothing here copies them):

- Values. The falco chart (falco/Chart.yaml, dependency `falcosidekick`, condition
  `falcosidekick.enabled`) hands `falcosidekick.*` to its subchart, and Helm coalesces them over
  falcosidekick/values.yaml. A key no template reads is dropped silently and `${VAR}` is never
  expanded, so a key of ours that is absent from both values.yaml files is an error here
  (`unknown_keys`), with a one-line reason naming it.
- Environment. falcosidekick/templates/deployment.yaml loads, with `envFrom`, first the chart's own
  Secret (templates/secrets.yaml: `WEBHOOK_CUSTOMHEADERS: {{ .Values.config.webhook.customHeaders |
  b64enc }}` and the other WEBHOOK_* keys), then the Secret named by `config.existingSecret`; for a key
  in both, Kubernetes takes the later source (`container_env`). A missing existingSecret keeps the pod
  from starting (CreateContainerConfigError).
- Headers. Falcosidekick's config.go (getConfig) splits WEBHOOK_CUSTOMHEADERS on "," then each entry
  on ":" and keeps only entries of exactly two parts (`custom_headers`); outputs/client.go
  (sendRequest) adds Content-Type and User-Agent, then outputs/webhook.go (WebhookPost) sets each
  custom header with Go's Header.Set (canonical key, replaces); net/http refuses invalid header
  values and trims the spaces around a value on the wire (`request_headers`).
- TLS. deployment.yaml sets TLSCLIENT_CACERTFILE from `config.tlsclient.cacertfile` and mounts
  `extraVolumes` with `extraVolumeMounts` (`deployed`, `mounted_files`); secrets.yaml exports
  `config.webhook.checkcert` as WEBHOOK_CHECKCERT. outputs/client.go configureTransport builds the
  client once: TLS >= 1.2, the system roots plus that CA file, InsecureSkipVerify only when checkcert
  is false (`client_context`); `send` makes the request as net/http does, with Go's error texts.

The second half is a stand-in `kubectl` (create namespace|secret generic [--type]|configmap with
--dry-run=client -o yaml, apply -f, get secret -o jsonpath) over a JSON state file: a namespaced
object needs its namespace, `create` of an existing object fails with AlreadyExists, `get` of a
missing one with NotFound, a kubernetes.io/tls Secret needs tls.crt and tls.key (ValidateSecret). `run_create_secrets` runs build/create-secrets.sh with `sh` against it.
This file is also that kubectl's executable (`python -I standin/falcosidekick.py kubectl ...`), so
its top level imports only the standard library.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONTENT_TYPE = "application/json; charset=utf-8"  # outputs/client.go DefaultContentType
USER_AGENT = "Falcosidekick"  # outputs/client.go UserAgentHeaderValue
SUBCHART = "falcosidekick"


class ChartError(ValueError):
    """What Helm or Kubernetes would refuse, or what the chart silently ignores: one line."""


# --- the charts ---------------------------------------------------------------------------------


def charts_dir() -> Path:
    from standin import shared_dir

    return shared_dir() / "charts"


def _yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


@dataclass
class Charts:
    """falco/values.yaml, falcosidekick/values.yaml and the two falcosidekick templates we model."""

    root: Path
    falco_values: dict
    sidekick_values: dict
    falco_version: str
    sidekick_version: str
    secrets_template: str
    deployment_template: str

    @classmethod
    def load(cls, root: str | Path | None = None) -> "Charts":
        root = Path(root) if root else charts_dir()
        if not (root / SUBCHART / "values.yaml").is_file():
            raise ChartError(f"no falcosidekick chart in {root} (../shared/charts beside the project)")
        return cls(
            root=root,
            falco_values=_yaml(root / "falco" / "values.yaml"),
            sidekick_values=_yaml(root / SUBCHART / "values.yaml"),
            falco_version=str(_yaml(root / "falco" / "Chart.yaml")["version"]),
            sidekick_version=str(_yaml(root / SUBCHART / "Chart.yaml")["version"]),
            secrets_template=(root / SUBCHART / "templates" / "secrets.yaml").read_text(),
            deployment_template=(root / SUBCHART / "templates" / "deployment.yaml").read_text(),
        )


def _go_type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return "null"


def unknown_keys(values: dict, charts: Charts | None = None) -> list[str]:
    """One line per key of `values` (given to the falco chart) that the charts do not have, or have
    with another type. `falcosidekick.<k>` may exist in falco/values.yaml (under `falcosidekick`) or in
    falcosidekick/values.yaml; an empty map in values.yaml ({}) takes any keys."""
    charts = charts or Charts.load()
    where = {
        "falco": f"the falco chart's values.yaml ({charts.falco_version})",
        SUBCHART: f"falcosidekick's values.yaml ({charts.sidekick_version}) nor under falcosidekick in the falco "
        f"chart's values.yaml ({charts.falco_version})",
    }
    problems: list[str] = []

    def walk(ours: dict, defaults: list[dict], prefix: str, chart: str) -> None:
        for key, value in ours.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            present = [d[key] for d in defaults if isinstance(d, dict) and key in d]
            if not present:
                problems.append(f"{path}: no such key in {where[chart]}: Helm ignores it silently")
                continue
            kinds = {_go_type(p) for p in present} - {"null"}
            if not kinds:
                continue  # a null default takes anything
            if isinstance(value, dict):
                maps = [p for p in present if isinstance(p, dict)]
                if not maps:
                    problems.append(f"{path}: a map, but the chart's values.yaml has a {'/'.join(sorted(kinds))} there "
                                    "(the templates read that, not a map)")
                elif not any(m == {} for m in maps):
                    walk(value, maps, path, chart)
            elif value is not None and _go_type(value) not in kinds:
                problems.append(f"{path}: a {_go_type(value)}, but the chart's values.yaml has a "
                                f"{'/'.join(sorted(kinds))} there")

    for key, value in values.items():
        if key == SUBCHART and isinstance(value, dict):
            walk(value, [charts.falco_values.get(SUBCHART) or {}, charts.sidekick_values], SUBCHART, SUBCHART)
        else:
            walk({key: value}, [charts.falco_values], "", "falco")
    return problems


def check_values(values: dict, charts: Charts | None = None) -> None:
    """ChartError naming the first key Helm would ignore (and how many more)."""
    problems = unknown_keys(values, charts)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ChartError(problems[0] + more)


def _coalesce(base: dict, over: dict) -> dict:
    """Helm's value coalescing: maps merge key by key, anything else replaces, null deletes."""
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _coalesce(out[key], value)
        else:
            out[key] = value
    return out


def subchart_values(values: dict, charts: Charts | None = None) -> dict:
    """`.Values` of the falcosidekick subchart: its values.yaml < the falco chart's `falcosidekick` < ours."""
    charts = charts or Charts.load()
    merged = _coalesce(charts.sidekick_values, charts.falco_values.get(SUBCHART) or {})
    return _coalesce(merged, values.get(SUBCHART) or {})


_SECRET_LINE = re.compile(
    r'^\s*(?P<env>WEBHOOK_\w+):\s*"\{\{\s*\.Values\.(?P<path>[\w.]+)\s*(?P<printf>\|\s*printf\s+"%t"\s*)?\|\s*b64enc\s*\}\}"\s*$'
)


def chart_secret_env(merged: dict, charts: Charts | None = None) -> dict[str, str]:
    """The WEBHOOK_* keys of the chart's own Secret (templates/secrets.yaml), as the container sees them."""
    charts = charts or Charts.load()
    env: dict[str, str] = {}
    for line in charts.secrets_template.splitlines():
        if not line.strip().startswith("WEBHOOK_"):
            continue
        m = _SECRET_LINE.match(line)
        if not m:
            raise ChartError(f"templates/secrets.yaml: a WEBHOOK_ line this stand-in does not know: {line.strip()}")
        value = merged
        for part in m["path"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        name, key = m["env"], "." + m["path"]
        if m["printf"]:
            if not isinstance(value, bool):
                raise ChartError(f"templates/secrets.yaml: {name}: printf \"%t\" of {key} = {value!r} renders %!t(...), not a bool")
            value = "true" if value else "false"
        elif not isinstance(value, str):
            raise ChartError(f"templates/secrets.yaml: {name}: b64enc of {key} = {value!r}: Helm fails, "
                             f"wrong type for value; expected string; got {_go_type(value)}")
        env[name] = value
    if not env:
        raise ChartError("templates/secrets.yaml has no WEBHOOK_ keys any more: re-read the chart")
    return env


_ENVFROM = re.compile(
    r'envFrom:\s*\n\s*- secretRef:\s*\n\s*name: \{\{ include "falcosidekick\.fullname" \. \}\}\s*\n'
    r'\s*\{\{- if \.Values\.config\.existingSecret \}\}\s*\n\s*- secretRef:\s*\n\s*name: \{\{ \.Values\.config\.existingSecret \}\}'
)


def _check_deployment(charts: Charts) -> set[str]:
    """templates/deployment.yaml still loads the chart's Secret, then config.existingSecret (envFrom);
    returns the variable names its `env:` list sets itself (those would win over both)."""
    text = charts.deployment_template
    if not _ENVFROM.search(text):
        raise ChartError("templates/deployment.yaml no longer loads the chart's Secret then config.existingSecret "
                         "with envFrom: re-read the chart")
    env_block = text.split("          env:", 1)[1].split("          resources:", 1)[0]
    return set(re.findall(r"-\s+name:\s+(\w+)", env_block))


def _secret_data(secret: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # validation.IsEnvVarName


def container_env(values: dict, secrets: list[dict] = (), namespace: str = "falco",
                  charts: Charts | None = None) -> dict[str, str]:
    """The WEBHOOK_* variables of the Falcosidekick container, for the falco chart installed in
    `namespace` with `values`, in a cluster holding `secrets` (Secret objects)."""
    charts = charts or Charts.load()
    check_values(values, charts)
    if (values.get(SUBCHART) or {}).get("enabled") is not True:
        raise ChartError("falcosidekick.enabled is not true: the falco chart does not deploy Falcosidekick "
                         "(falco/Chart.yaml condition falcosidekick.enabled)")
    merged = subchart_values(values, charts)
    own_env = _check_deployment(charts)
    env = chart_secret_env(merged, charts)
    existing = (merged.get("config") or {}).get("existingSecret")
    if existing:
        found = [s for s in secrets if s.get("kind") == "Secret" and s["metadata"]["name"] == existing
                 and s["metadata"].get("namespace", "default") == namespace]
        if not found:
            raise ChartError(f"config.existingSecret: Secret {namespace}/{existing} does not exist: the pod does not "
                             f"start (CreateContainerConfigError: secret \"{existing}\" not found)")
        for key, value in _secret_data(found[0]).items():
            if _ENV_NAME.match(key):  # envFrom skips keys that are not variable names
                env[key] = value
    overridden = sorted(k for k in own_env if k in env)
    if overridden:
        raise ChartError(f"templates/deployment.yaml sets {overridden} in env: not modelled here")
    for item in (merged.get("config") or {}).get("extraEnv") or []:
        if str(item.get("name", "")).startswith("WEBHOOK_"):
            if "value" not in item:
                raise ChartError(f"config.extraEnv {item.get('name')}: only `value` is modelled here")
            env[item["name"]] = str(item["value"])
    return {k: v for k, v in env.items() if k.startswith("WEBHOOK_")}


# --- Falcosidekick -------------------------------------------------------------------------------


def custom_headers(env: dict[str, str]) -> dict[str, str]:
    """config.go getConfig: WEBHOOK_CUSTOMHEADERS, if set, split on "," then ":"; only 2-part entries count."""
    headers: dict[str, str] = {}
    value = env.get("WEBHOOK_CUSTOMHEADERS")
    if value is None:
        return headers
    for label in value.split(","):  # strings.Split: "" -> [""]
        parts = label.split(":")
        if len(parts) == 2:
            headers[parts[0]] = parts[1]
    return headers


def canonical_header_key(key: str) -> str:
    """net/textproto.CanonicalMIMEHeaderKey (used by Header.Set)."""
    if not key or any(not (c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~")) for c in key):
        return key
    out, upper = [], True
    for c in key:
        out.append(c.upper() if upper else c.lower())
        upper = c == "-"
    return "".join(out)


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # httpguts.ValidHeaderFieldName


def request_headers(env: dict[str, str]) -> dict[str, str]:
    """The headers of Falcosidekick's webhook POST, as net/http writes them.

    outputs/client.go sendRequest: Header.Add Content-Type and User-Agent; outputs/webhook.go
    WebhookPost: Header.Set of every custom header (canonical key, replacing). net/http's Transport
    refuses an invalid name or a value with control characters; Header.Write trims the value."""
    headers = {"Content-Type": DEFAULT_CONTENT_TYPE, "User-Agent": USER_AGENT}
    for key, value in custom_headers(env).items():
        if not _TOKEN.match(key):
            raise ChartError(f'net/http: invalid header field name "{key}": Falcosidekick cannot post')
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            raise ChartError(f'net/http: invalid header field value for "{key}": Falcosidekick cannot post')
        headers[canonical_header_key(key)] = value.strip(" \t")
    return headers


@dataclass
class WebhookOutput:
    """Falcosidekick's webhook output as deployed: where it posts, how, with which headers, and whom it trusts.

    `checkcert` is WEBHOOK_CHECKCERT; `ca_pem` the file named by TLSCLIENT_CACERTFILE as the pod sees it
    (None: not set, or unreadable: `ca_problem` says why; Falcosidekick logs that and posts anyway, with
    the system roots only). `objects` is the cluster build/create-secrets.sh left behind (from_build)."""

    method: str
    address: str
    headers: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    checkcert: bool = True
    ca_pem: str | None = None
    ca_problem: str | None = None
    objects: list[dict] = field(default_factory=list)
    state: dict | None = None


def webhook_output(env: dict[str, str]) -> WebhookOutput:
    """outputs/webhook.go: PUT when WEBHOOK_METHOD is PUT (any case), else POST; enabled by an address.
    WEBHOOK_CHECKCERT and WEBHOOK_MUTUALTLS are viper bools (config.go); mutual TLS is not modelled."""
    if not env.get("WEBHOOK_ADDRESS"):
        raise ChartError("WEBHOOK_ADDRESS is empty: Falcosidekick's webhook output is disabled")
    if env.get("WEBHOOK_MUTUALTLS", "false").lower() in ("true", "1", "t"):
        raise ChartError("WEBHOOK_MUTUALTLS is true: mutual TLS is not modelled by this stand-in")
    method = "PUT" if env.get("WEBHOOK_METHOD", "").upper() == "PUT" else "POST"
    checkcert = env.get("WEBHOOK_CHECKCERT", "true").lower() in ("true", "1", "t")
    return WebhookOutput(method, env["WEBHOOK_ADDRESS"], request_headers(env), env, checkcert=checkcert)


_TLSCLIENT_ENV = re.compile(r"- name: TLSCLIENT_CACERTFILE\s*\n\s*value: \{\{ \.Values\.config\.tlsclient\.cacertfile \| quote \}\}")
_EXTRA_MOUNTS = re.compile(r"\{\{ toYaml \.Values\.extraVolumeMounts \| indent 12 \}\}")
_EXTRA_VOLUMES = re.compile(r"\{\{ toYaml \.Values\.extraVolumes \| indent 8 \}\}")


def mounted_files(merged: dict, objects: list[dict], namespace: str) -> dict[str, str]:
    """path -> content of the files extraVolumeMounts put in the Falcosidekick container (configMap and
    secret volumes of extraVolumes, `items` honoured). As the kubelet does: a missing ConfigMap or Secret,
    or a missing item key, keeps the pod in ContainerCreating unless the volume is optional."""
    volumes = {v.get("name"): v for v in merged.get("extraVolumes") or [] if isinstance(v, dict)}
    files: dict[str, str] = {}
    for mount in merged.get("extraVolumeMounts") or []:
        volume = volumes.get(mount.get("name"))
        if volume is None:
            raise ChartError(f"extraVolumeMounts {mount.get('name')!r}: no such volume in extraVolumes: the Deployment is invalid")
        if mount.get("subPath"):
            raise ChartError(f"extraVolumeMounts {mount['name']!r}: subPath is not modelled by this stand-in")
        if "configMap" in volume:
            source, kind, ref = volume["configMap"], "ConfigMap", volume["configMap"].get("name")
        elif "secret" in volume:
            source, kind, ref = volume["secret"], "Secret", volume["secret"].get("secretName")
        else:
            raise ChartError(f"extraVolumes {volume.get('name')!r}: only configMap and secret volumes are modelled")
        found = [o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == ref
                 and o["metadata"].get("namespace", "default") == namespace]
        if not found:
            if source.get("optional"):
                continue
            raise ChartError(f'extraVolumes {volume["name"]!r}: MountVolume.SetUp failed: {kind.lower()} "{ref}" not found '
                             f"in {namespace}: the Falcosidekick pod stays in ContainerCreating")
        data = _secret_data(found[0]) if kind == "Secret" else dict(found[0].get("data") or {})
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item["key"] not in data:
                raise ChartError(f'extraVolumes {volume["name"]!r}: {kind.lower()} "{ref}" has no key {item["key"]!r}: '
                                 "the Falcosidekick pod stays in ContainerCreating")
            files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = data[item["key"]]
    return files


def deployed(values: dict, objects: list[dict] = (), namespace: str = "falco", charts: Charts | None = None) -> WebhookOutput:
    """The webhook output of Falcosidekick installed by the falco chart with `values`, in a cluster holding
    `objects` (Secrets and ConfigMaps): its variables (container_env) and, for TLS, the CA file.

    deployment.yaml sets TLSCLIENT_CACERTFILE from config.tlsclient.cacertfile and renders extraVolumes and
    extraVolumeMounts; outputs/client.go configureTransport reads that file (os.ReadFile) and appends it to the
    system pool, once per output (the client is cached): a file it cannot read is logged and the output posts
    without it."""
    charts = charts or Charts.load()
    env = container_env(values, objects, namespace, charts)
    output = webhook_output(env)
    text = charts.deployment_template
    if not (_TLSCLIENT_ENV.search(text) and _EXTRA_MOUNTS.search(text) and _EXTRA_VOLUMES.search(text)):
        raise ChartError("templates/deployment.yaml no longer sets TLSCLIENT_CACERTFILE from config.tlsclient.cacertfile "
                         "or renders extraVolumes/extraVolumeMounts: re-read the chart")
    merged = subchart_values(values, charts)
    path = ((merged.get("config") or {}).get("tlsclient") or {}).get("cacertfile") or ""
    output.objects = list(objects)
    if path:
        files = mounted_files(merged, list(objects), namespace)
        if path in files:
            output.ca_pem = files[path]
        else:
            output.ca_problem = f"open {path}: no such file or directory"
    return output


def from_build(build_dir: str | Path, token: str, workdir: str | Path, namespace: str | None = None,
               charts: Charts | None = None, state: dict | None = None) -> WebhookOutput:
    """Falcosidekick installed with build/falcosidekick-values.yaml after build/create-secrets.sh ran with
    FALCO_WEBHOOK_TOKEN=token (its other inputs are placeholders: only the Falco namespace matters), in a new
    cluster or in `state` (an earlier run's: then the script reuses the EventSource's certificate)."""
    import yaml

    build_dir = Path(build_dir)
    values = yaml.safe_load((build_dir / "falcosidekick-values.yaml").read_text())
    run = run_create_secrets(build_dir / "create-secrets.sh", {"FALCO_WEBHOOK_TOKEN": token}, workdir,
                             state=state, placeholders=True)
    if run.returncode != 0:
        raise ChartError(f"create-secrets.sh failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
    objects = [o for o in run.objects if o.get("kind") in ("Secret", "ConfigMap")]
    if namespace is None:
        existing = ((values.get(SUBCHART) or {}).get("config") or {}).get("existingSecret")
        spaces = sorted({s["metadata"].get("namespace") for s in objects
                         if s["kind"] == "Secret" and s["metadata"]["name"] == existing})
        namespace = spaces[0] if len(spaces) == 1 else "falco"
    output = deployed(values, objects, namespace, charts)
    output.state = run.state
    return output


# --- Falcosidekick's HTTP client ----------------------------------------------------------------


class PostError(Exception):
    """What Falcosidekick logs when the webhook POST fails before any answer (Go's error text)."""


@dataclass
class Answer:
    status_code: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)


def _pem_blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text or "", re.S)


def client_context(output: WebhookOutput):
    """outputs/client.go configureTransport for a TLS address: MinVersion TLS 1.2, RootCAs = the system pool
    plus every certificate of TLSCLIENT_CACERTFILE (x509 AppendCertsFromPEM skips what does not parse);
    with checkcert false, a bare tls.Config{InsecureSkipVerify: true}. Go verifies the name of the URL's host."""
    import ssl

    if not output.checkcert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for block in _pem_blocks(output.ca_pem or ""):
        try:
            context.load_verify_locations(cadata=block)
        except ssl.SSLError:
            pass
    return context


def _go_tls_error(exc: Exception, host: str) -> str:
    """crypto/tls and crypto/x509 wording for the failures a misconfigured webhook meets."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        if code in (2, 18, 19, 20, 21):
            reason = "x509: certificate signed by unknown authority"
        elif code == 62:
            reason = f"x509: certificate is not valid for {host}"
        elif code in (9, 10):
            reason = "x509: certificate has expired or is not yet valid"
        else:
            reason = f"x509: {getattr(exc, 'verify_message', exc)}"
        return f"tls: failed to verify certificate: {reason}"
    if isinstance(exc, ssl.SSLError) and getattr(exc, "reason", "") in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                                                                         "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
        return "tls: first record does not look like a TLS handshake"
    return str(exc)


def send(output: WebhookOutput, body: bytes, dial: tuple[str, int] | None = None, timeout: float = 10.0) -> Answer:
    """One webhook request as Falcosidekick's client sends it (outputs/client.go sendRequest, net/http):
    to output.address, over TLS for https (client_context, SNI and name check on the address's host), with
    Host, the output's headers, Content-Length and Accept-Encoding gzip (net/http's transport adds it).
    `dial`: where the address's host resolves (the cluster DNS answer for the Service); PostError is the
    error Falcosidekick logs when no HTTP answer came back (it never retries)."""
    import http.client
    import socket
    import ssl
    from urllib.parse import urlsplit

    url = urlsplit(output.address)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise PostError(f"Bad Endpoint: {output.address}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        sock = socket.create_connection(dial or (url.hostname, port), timeout=timeout)
    except OSError as exc:
        raise PostError(f'{output.method.title()} "{output.address}": dial tcp: {exc.strerror or exc}') from None
    if url.scheme == "https":
        try:
            sock = client_context(output).wrap_socket(sock, server_hostname=url.hostname)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise PostError(f'{output.method.title()} "{output.address}": {_go_tls_error(exc, url.hostname)}') from None
    connection = http.client.HTTPConnection(url.hostname, port, timeout=timeout)
    connection.sock = sock
    try:
        connection.putrequest(output.method, (url.path or "/") + (f"?{url.query}" if url.query else ""),
                              skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", url.netloc)
        for key, value in output.headers.items():
            connection.putheader(key, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.putheader("Accept-Encoding", "gzip")
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise PostError(f'{output.method.title()} "{output.address}": {exc}') from None
    finally:
        connection.close()
    return Answer(response.status, data.decode("utf-8", "replace"), dict(response.getheaders()))


# --- a stand-in kubectl for build/create-secrets.sh ---------------------------------------------

STATE_ENV = "FAKE_KUBECTL_STATE"
BUILTIN_NAMESPACES = ["default", "kube-node-lease", "kube-public", "kube-system"]
CLUSTER_SCOPED = {"Namespace"}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # validation.IsConfigMapKey


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str
    state: dict

    @property
    def objects(self) -> list[dict]:
        return list(self.state["objects"].values())

    @property
    def calls(self) -> list[dict]:
        return self.state["calls"]

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        return self.state["objects"].get(_ref(kind, namespace, name))


def _ref(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind}/{namespace or ''}/{name}"


def new_state(namespaces: list[str] = ()) -> dict:
    objects = {_ref("Namespace", None, ns): {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
               for ns in BUILTIN_NAMESPACES + list(namespaces)}
    return {"objects": objects, "calls": []}


def install_kubectl(bin_dir: str | Path) -> Path:
    """Write the stand-in `kubectl` into bin_dir (put it first on PATH; state in $FAKE_KUBECTL_STATE)."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "kubectl"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I "{Path(__file__).resolve()}" kubectl "$@"\n')
    path.chmod(0o755)
    return path


def run_create_secrets(script: str | Path, env: dict[str, str], workdir: str | Path, state: dict | None = None,
                       namespaces: list[str] = ("argo-events",), placeholders: bool = False) -> ScriptRun:
    """`sh script` with the stand-in kubectl first on PATH, against `state` (a new cluster holding
    `namespaces` by default: Argo Events' Helm install created argo-events). With placeholders, the
    inputs other than the token get dummy values."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = workdir / "bin"
    install_kubectl(bin_dir)
    state_path = workdir / "kubectl-state.json"
    state_path.write_text(json.dumps(state if state is not None else new_state(list(namespaces))))
    full = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", STATE_ENV: str(state_path),
            "HOME": str(workdir)}
    if placeholders:
        from engine import names

        ca = workdir / "placeholder-ca.crt"
        ca.write_text("placeholder\n")
        for var in (*names.EVIDENCE_SECRET_ENV, names.SLACK_WEBHOOK_URL_ENV, names.NOTIFY_WEBHOOK_URL_ENV):
            full[var] = "placeholder"
        full[names.KUBELET_CA_FILE_ENV] = str(ca)
    full.update(env)
    done = subprocess.run(["sh", str(Path(script).resolve())], env=full, cwd=workdir, capture_output=True, text=True, timeout=60)
    return ScriptRun(done.returncode, done.stdout, done.stderr, json.loads(state_path.read_text()))


class _Refused(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def parse_args(argv: list[str]) -> tuple[list[str], dict]:
    """Positional words and flags of the kubectl calls create-secrets.sh may make; anything else is refused."""
    words: list[str] = []
    flags: dict = {"from-literal": [], "from-file": [], "filename": []}
    i = 0
    with_value = {"-n": "namespace", "--namespace": "namespace", "-o": "output", "--output": "output",
                  "-f": "filename", "--filename": "filename", "--dry-run": "dry-run", "--type": "type"}
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg.startswith("-o") and not arg.startswith("--") and len(arg) > 2 and not eq:
            name, value, eq = "-o", arg[2:], "="
        if name in with_value or name in ("--from-literal", "--from-file"):
            key = with_value.get(name, name.lstrip("-"))
            if not eq:
                if i + 1 >= len(argv):
                    raise _Refused(f"error: flag needs an argument: {name}")
                i += 1
                value = argv[i]
            if key in ("from-literal", "from-file", "filename"):
                flags[key].append(value)
            else:
                flags[key] = value
        elif name == "--ignore-not-found":
            flags["ignore-not-found"] = value in ("", "true")
        elif arg.startswith("-") and arg != "-":
            raise _Refused(f"error: unknown flag: {arg} (stand-in kubectl)")
        else:
            words.append(arg)
        i += 1
    return words, flags


def _created(words: list[str], flags: dict, namespace: str | None) -> dict:
    """The object `kubectl create ...` builds (what --dry-run=client -o yaml prints)."""
    if words[:2] == ["create", "namespace"] and len(words) == 3:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": words[2]}, "spec": {}}
    if words[:3] == ["create", "secret", "generic"] and len(words) == 4:
        kind, name, encode = "Secret", words[3], True
    elif flags.get("type") is not None:
        raise _Refused("error: unknown flag: --type")
    elif words[:2] == ["create", "configmap"] and len(words) == 3:
        kind, name, encode = "ConfigMap", words[2], False
    else:
        raise _Refused(f"error: unsupported by the stand-in kubectl: {' '.join(words)}")
    data: dict[str, str] = {}
    sources = [(s, "literal") for s in flags["from-literal"]] + [(s, "file") for s in flags["from-file"]]
    for source, how in sources:
        if how == "literal":
            key, eq, value = source.partition("=")
            if not eq or not key:
                raise _Refused(f"error: invalid literal source {source}, expected key=value")
        else:
            key, eq, path = source.partition("=")
            if not eq:
                key, path = os.path.basename(source), source
            try:
                value = Path(path).read_text()
            except OSError:
                raise _Refused(f"error: error reading {path}: no such file or directory")
        if not _KEY.match(key):
            raise _Refused(f'error: "{key}" is not valid key name for a {kind}: a valid config key must consist of '
                           "alphanumeric characters, '-', '_' or '.'")
        if key in data:
            raise _Refused(f"error: cannot add key {key}, another key by that name already exists")
        data[key] = base64.b64encode(value.encode()).decode() if encode else value
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    typed = {"type": flags["type"]} if kind == "Secret" and flags.get("type") else {}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta, **({"data": data} if data else {}), **typed}


def _store(state: dict, obj: dict, namespace: str | None, how: str) -> str:
    kind, meta = obj.get("kind"), obj.get("metadata") or {}
    ns = None if kind in CLUSTER_SCOPED else (meta.get("namespace") or namespace or "default")
    plural = {"Namespace": "namespaces", "Secret": "secrets", "ConfigMap": "configmaps"}.get(kind, f"{str(kind).lower()}s")
    if ns and _ref("Namespace", None, ns) not in state["objects"]:
        raise _Refused(f'Error from server (NotFound): error when creating "STDIN": namespaces "{ns}" not found')
    if kind == "Secret" and obj.get("type") == "kubernetes.io/tls":  # ValidateSecret, SecretTypeTLS
        for key in ("tls.crt", "tls.key"):
            if key not in (obj.get("data") or {}) and key not in (obj.get("stringData") or {}):
                raise _Refused(f'The Secret "{meta["name"]}" is invalid: data[{key}]: Required value')
    ref = _ref(kind, ns, meta["name"])
    before = state["objects"].get(ref)
    if how == "create" and before is not None:
        raise _Refused(f'Error from server (AlreadyExists): {plural} "{meta["name"]}" already exists')
    stored = json.loads(json.dumps(obj))
    stored["metadata"] = {k: v for k, v in stored["metadata"].items() if k != "creationTimestamp"}
    if ns:
        stored["metadata"]["namespace"] = ns
    stored.pop("status", None)
    if how == "apply":
        stored["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(obj, sort_keys=True)
    state["objects"][ref] = stored
    name = f"{kind.lower()}/{meta['name']}"
    if before is None:
        return f"{name} created"
    return f"{name} unchanged" if before == stored else f"{name} configured"


def _jsonpath(obj: dict, template: str) -> str:
    """Only `{.a.b}` with `\\.` escapes (kubectl prints nothing for a missing key)."""
    m = re.fullmatch(r"\{\.((?:[^}\\]|\\.)+)\}", template)
    if not m:
        raise _Refused(f"error: jsonpath {template!r} unsupported by the stand-in kubectl")
    value = obj
    for part in re.split(r"(?<!\\)\.", m[1]):
        part = part.replace("\\.", ".")
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else (value if isinstance(value, str) else json.dumps(value))


def kubectl(argv: list[str], stdin: str, state: dict) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one kubectl call against `state`, which it updates."""
    words, flags = parse_args(argv)
    ns = flags.get("namespace")
    verb = words[0] if words else ""
    if verb == "create":
        obj = _created(words, flags, ns)
        if flags.get("dry-run") is not None:
            if flags["dry-run"] != "client":
                raise _Refused(f"error: stand-in kubectl supports --dry-run=client only, got {flags['dry-run']}")
            if flags.get("output") not in ("yaml", "json"):
                return 0, f"{obj['kind'].lower()}/{obj['metadata']['name']} created (dry run)\n", ""
            meta = {"creationTimestamp": None, **obj["metadata"]}
            return 0, json.dumps({**obj, "metadata": meta}, indent=2) + "\n", ""
        return 0, _store(state, obj, ns, "create") + "\n", ""
    if verb == "apply" and len(words) == 1:
        if len(flags["filename"]) != 1:
            raise _Refused("error: must specify one of -f and -k (stand-in kubectl: exactly one -f)")
        source = flags["filename"][0]
        text = stdin if source == "-" else Path(source).read_text()
        try:
            docs = [json.loads(text)]  # what the stand-in's own `create -o yaml` printed
        except ValueError:
            import yaml

            docs = [d for d in yaml.safe_load_all(text) if d]
        if not docs:
            raise _Refused("error: no objects passed to apply")
        return 0, "".join(_store(state, d, ns, "apply") + "\n" for d in docs), ""
    if verb == "get" and len(words) == 3 and words[1] in ("secret", "secrets"):
        obj = state["objects"].get(_ref("Secret", ns or "default", words[2]))
        if obj is None:
            if flags.get("ignore-not-found"):
                return 0, "", ""
            raise _Refused(f'Error from server (NotFound): secrets "{words[2]}" not found')
        output = flags.get("output") or ""
        if not output.startswith("jsonpath="):
            raise _Refused(f"error: stand-in kubectl: get secret supports -o jsonpath=... only, got {output!r}")
        return 0, _jsonpath(obj, output[len("jsonpath="):]), ""
    raise _Refused(f"error: unsupported by the stand-in kubectl: {' '.join(argv)}")


def kubectl_main(argv: list[str]) -> int:
    """One call: both ends of `create | apply` run at once, so the state file is updated under a lock."""
    import fcntl

    state_path = Path(os.environ[STATE_ENV])
    reads_stdin = "-" in argv  # only `-f -` passes a bare "-"
    stdin = sys.stdin.read() if reads_stdin else ""
    with open(f"{state_path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(state_path.read_text())
        call = {"argv": argv, "stdin": stdin if reads_stdin else None}
        try:
            code, out, err = kubectl(argv, stdin, state)
        except _Refused as refused:
            code, out, err = refused.code, "", str(refused) + "\n"
        call.update(exit=code, stdout=out)
        state["calls"].append(call)
        state_path.write_text(json.dumps(state, indent=1))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__" and sys.argv[1:2] == ["kubectl"]:
    sys.exit(kubectl_main(sys.argv[2:]))
