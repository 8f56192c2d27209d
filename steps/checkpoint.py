"""checkpoint: ask the kubelet for a forensic checkpoint (CRIU dump) of one container.

Calls the kubelet checkpoint API (KEP-2008) `POST /checkpoint/{namespace}/{pod}/{container}?timeout=N`
either directly on the node's kubelet (--path=kubelet, the default: HTTPS to the node's
InternalIP and kubelet port, verified against --ca-bundle, or not verified only with an explicit
--insecure-skip-tls-verify=true) or through the API server's node proxy (--path=apiserver-proxy).
The container is frozen while it is dumped and then keeps running, unaware. The archive stays on
the node (the kubelet never deletes it); the copy step moves it to the evidence store.

Outputs: archive (the path the kubelet reported, on the node), checkpoint-time (UTC, RFC 3339,
when the request was sent; the kubelet names the file after the same moment, in node-local time).

Failures: 404 means the ContainerCheckpoint feature gate is off or the container is gone; 500
means the container runtime cannot checkpoint (CRI-O without CRIU, containerd < 2.0, ...). A 500
is final and never retried (every attempt freezes the container again); 429/502/503/504 and
connection failures are retried; a read timeout is not (the kubelet may still be writing).

RBAC: nodes get (to find the kubelet's address and port), and nodes/checkpoint create for the
direct path (least privilege), or nodes/proxy create for the API-server path (broad: it also
allows exec into every pod on the node; CIS 5.1.14).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from collections.abc import Sequence

from steps import common
from steps.common import Refused, StepError

SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
DEFAULT_KUBELET_PORT = 10250
RETRIED = (429, 502, 503, 504)
KUBELET_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})"
PATHS = ("kubelet", "apiserver-proxy")


class Answer(Exception):
    """A final HTTP answer from the checkpoint API: never retried."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code, self.text = code, text


class Busy(Exception):
    """A transient HTTP answer (429/502/503/504): `status` makes common.retry try again."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status, self.text = status, text


class Final(Exception):
    """A transport failure that must not be retried (TLS, read timeout)."""


# --- input ---------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None):
    parser = common.Parser("checkpoint", __doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pod", required=True)
    parser.add_argument("--container", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--path", default="kubelet")
    parser.add_argument("--timeout", default="120")
    parser.add_argument("--ca-bundle", default="")
    parser.add_argument("--insecure-skip-tls-verify", default="false")
    args = parser.parse_args(argv)
    for name, value in vars(args).items():  # a regex `$` would let "default\n" by
        if isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value):
            raise Refused(f"{name.replace('_', '-')}: control characters are not allowed")
    args.namespace = common.dns_label("namespace", args.namespace)
    args.pod = common.dns_subdomain("pod", args.pod)
    args.container = common.dns_label("container", args.container)
    args.node = common.dns_subdomain("node", args.node)
    if args.path not in PATHS:
        raise Refused(f"path: {common.one_line(args.path, 80)!r} is not one of {', '.join(PATHS)}")
    timeout = common._scalar("timeout", args.timeout).strip()
    if not re.fullmatch(r"\d{1,5}", timeout) or not 1 <= int(timeout) <= 3600:
        raise Refused(f"timeout: {timeout[:40]!r} is not a number of seconds between 1 and 3600")
    args.timeout = int(timeout)
    args.insecure = common.boolean("insecure-skip-tls-verify", args.insecure_skip_tls_verify)
    args.ca_bundle = common._scalar("ca-bundle", args.ca_bundle)
    if args.path == "kubelet":
        if args.insecure and args.ca_bundle:
            raise Refused("give either --ca-bundle or --insecure-skip-tls-verify=true, not both")
        if not args.insecure and not args.ca_bundle:
            raise Refused("the kubelet's certificate must be verified: give --ca-bundle (or, knowingly, --insecure-skip-tls-verify=true)")
        if args.ca_bundle:
            check_ca_bundle(args.ca_bundle)
    return args


def check_ca_bundle(path: str) -> None:
    if "\x00" in path or not os.path.isabs(path):
        raise Refused(f"ca-bundle: {path[:120]!r} must be an absolute file path")
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024 * 1024)
    except OSError as exc:
        raise Refused(f"ca-bundle: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise Refused(f"ca-bundle: {path} holds no PEM certificate")


def expected_archive(args) -> re.Pattern:
    return re.compile(re.escape(f"checkpoint-{args.pod}_{args.namespace}-{args.container}-") + KUBELET_TIME + r"\.tar")


# --- the two ways in -------------------------------------------------------------------------------


def kubelet_address(api_client, node_name: str) -> tuple[str, int]:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    try:
        response = common.retry(lambda: core.read_node(node_name, _preload_content=False), f"get node {node_name}")
    except client.ApiException as exc:
        if exc.status == 404:
            raise Refused(f"node {node_name} not found") from None
        raise StepError(f"cannot read node {node_name}: {common.describe(exc)}") from exc
    node = json.loads(response.data or b"{}")
    status = node.get("status") or {}
    addresses = {}
    for entry in status.get("addresses") or []:
        addresses.setdefault(entry.get("type"), entry.get("address"))
    host = None
    for kind in ("InternalIP", "ExternalIP"):
        value = addresses.get(kind)
        if value:
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                continue
            host = f"[{ip}]" if ip.version == 6 else str(ip)
            break
    if host is None:
        hostname = addresses.get("Hostname") or ""
        if not common.DNS1123_SUBDOMAIN.match(hostname):
            raise StepError(f"node {node_name} reports no InternalIP, ExternalIP or Hostname address")
        host = hostname
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or DEFAULT_KUBELET_PORT
    if not isinstance(port, int) or not 0 < port < 65536:
        raise StepError(f"node {node_name} reports kubelet port {port!r}")
    return host, port


def credentials(api_client) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Bearer token (the pod's projected SA token, else the kubeconfig's), or a client certificate."""
    configuration = api_client.configuration
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(SA_TOKEN):
        with open(SA_TOKEN) as handle:  # re-read: the projected token rotates
            return {"Authorization": f"Bearer {handle.read().strip()}"}, None
    token = configuration.get_api_key_with_prefix("authorization") or configuration.get_api_key_with_prefix("BearerToken")
    if token:
        return {"Authorization": token if token.lower().startswith("bearer ") else f"Bearer {token}"}, None
    if configuration.cert_file and configuration.key_file:
        return {}, (configuration.cert_file, configuration.key_file)
    raise StepError("no bearer token or client certificate to present to the kubelet")


def direct(args, api_client) -> str:
    import requests
    import urllib3

    host, port = kubelet_address(api_client, args.node)
    headers, cert = credentials(api_client)
    headers["Accept"] = "application/json"
    url = f"https://{host}:{port}/checkpoint/{args.namespace}/{args.pod}/{args.container}"
    if args.insecure:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        common.log(
            f"checkpoint: warning: NOT verifying the kubelet's certificate at {host}:{port} "
            "(insecure_skip_verify); a node impersonator would receive the container's memory"
        )
    verify: str | bool = False if args.insecure else args.ca_bundle
    common.log(f"checkpoint: POST {url}?timeout={args.timeout} (direct to the kubelet)")

    def attempt() -> str:
        try:
            response = requests.post(
                url,
                params={"timeout": str(args.timeout)},
                headers=headers,
                cert=cert,
                verify=verify,
                timeout=(10, read_timeout(args)),
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise Final(
                f"TLS to the kubelet at {host}:{port} failed ({tls_reason(exc)}); --ca-bundle must hold the CA that "
                "signs the kubelets' serving certificates"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise Final(read_timeout_message(args)) from None
        return answer(response.status_code, response.text)

    return call(args, attempt, "nodes/checkpoint")


def via_apiserver(args, api_client) -> str:
    from kubernetes import client

    common.log(
        "checkpoint: warning: going through the API server's node proxy: its RBAC (nodes/proxy create) "
        "also allows exec into every pod on every node; prefer --path=kubelet"
    )
    resource = "/api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}"
    common.log(
        f"checkpoint: POST /api/v1/nodes/{args.node}/proxy/checkpoint/{args.namespace}/{args.pod}/{args.container}"
        f"?timeout={args.timeout}"
    )

    def attempt() -> str:
        # connect_post_node_proxy_with_path would encode the '/' of the kubelet path and cannot
        # pass `timeout`: build the request from its parts instead.
        try:
            response = api_client.call_api(
                resource,
                "POST",
                path_params={"node": args.node, "namespace": args.namespace, "pod": args.pod, "container": args.container},
                query_params=[("timeout", str(args.timeout))],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                response_type=None,
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=(10, read_timeout(args)),
            )
        except client.ApiException as exc:
            if exc.status == 0 and "timed out" in str(exc.reason or "").lower():
                raise Final(read_timeout_message(args)) from None
            if exc.status == 0:
                raise
            return answer(exc.status, (exc.body or b"").decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or ""))
        except Exception as exc:  # noqa: BLE001 - urllib3 errors: read timeouts are final
            if "ReadTimeout" in type(exc).__name__:
                raise Final(read_timeout_message(args)) from None
            raise
        return answer(response.status, response.data.decode("utf-8", "replace"))

    return call(args, attempt, "nodes/proxy")


def read_timeout(args) -> int:
    # The kubelet ignores a timeout below the CRI default of 2 minutes.
    return max(args.timeout, 120) + 30


def read_timeout_message(args) -> str:
    return (
        f"the kubelet on {args.node} did not answer within {read_timeout(args)}s; it may still be writing the "
        f"checkpoint of {args.namespace}/{args.pod}/{args.container} (not retried: each attempt freezes the container)"
    )


def tls_reason(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"\[SSL: [A-Z_]+\][^(')\"]*", text)
    return common.one_line(found.group(0) if found else text, 160)


def answer(code: int, text: str) -> str:
    """The body of a 200; a transient status raises Busy, any other raises Answer."""
    if code == 200:
        return text
    if code in RETRIED:
        raise Busy(code, text)
    raise Answer(code, text)


def call(args, attempt, permission: str) -> str:
    try:
        return common.retry(attempt, f"checkpoint {args.namespace}/{args.pod}/{args.container}")
    except Final as exc:
        raise StepError(str(exc)) from None
    except Answer as exc:
        raise StepError(explain(args, exc.code, exc.text, permission)) from None
    except Exception as exc:  # noqa: BLE001 - transient failures that outlived the retries
        detail = f"{exc.status} {message_of(exc.text)}" if isinstance(exc, Busy) else common.describe(exc)
        raise StepError(f"checkpoint API on {args.node} kept failing: {detail}") from exc


def message_of(text: str) -> str:
    """The message of a Status body (API server), else the plain text (kubelet)."""
    try:
        body = json.loads(text)
        if isinstance(body, dict) and body.get("message"):
            return common.one_line(body["message"], 300)
    except ValueError:
        pass
    return common.one_line(text, 300)


def explain(args, code: int, text: str, permission: str) -> str:
    detail = message_of(text)
    if code == 404:
        return (
            f"checkpoint API answered 404: the ContainerCheckpoint feature gate is off on {args.node}, "
            f"or the container is gone ({detail})"
        )
    if code == 500:
        return f"container runtime on {args.node} cannot checkpoint: {detail}"
    if code in (401, 403):
        return f"checkpoint refused with {code} ({detail}): the step's service account needs RBAC {permission} create"
    return f"checkpoint API on {args.node} answered {code}: {detail}"


def archive_path(args, body: str) -> str:
    try:
        items = json.loads(body).get("items")
    except (ValueError, AttributeError):
        items = None
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], str):
        raise StepError(f"kubelet on {args.node} answered 200 without one archive path: {common.one_line(body, 200)}")
    path = items[0]
    name = path.rsplit("/", 1)[-1]
    if not path.startswith("/") or "/../" in f"{path}/" or not expected_archive(args).fullmatch(name):
        raise StepError(f"kubelet on {args.node} reported an unexpected archive path {common.one_line(path, 200)!r}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    where = f"{args.namespace}/{args.pod}/{args.container}"
    common.log(f"checkpoint: container {where} on node {args.node} via {args.path}, timeout {args.timeout}s")
    api_client = common.kube_api_client()
    started = common.now_rfc3339()
    body = direct(args, api_client) if args.path == "kubelet" else via_apiserver(args, api_client)
    archive = archive_path(args, body)
    common.write_output(args.outputs_dir, "archive", archive)
    common.write_output(args.outputs_dir, "checkpoint-time", started)
    common.log(f"checkpoint: {where} checkpointed on node {args.node}: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
