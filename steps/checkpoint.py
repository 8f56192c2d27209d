"""checkpoint: ask the kubelet for a forensic checkpoint (CRIU dump) of one container.

Calls the kubelet checkpoint API (KEP-2008) `POST /checkpoint/{namespace}/{pod}/{container}?timeout=N`
either directly on the node's kubelet (--path=kubelet, the default) or through the API server's
node proxy (--path=apiserver-proxy). The container is frozen while it is dumped and then keeps
running, unaware. The archive stays on the node (the kubelet never deletes it); the copy step
moves it to the evidence store.

Direct TLS: the step connects to the first of the node's addresses of --address-types (ordered,
like metrics-server's --kubelet-preferred-address-types) and verifies the kubelet's certificate
against the NODE'S NAME with --ca-bundle (by default the cluster CA of ConfigMap kube-root-ca.crt,
named by --ca-configmap for messages): a kubelet using serverTLSBootstrap has a certificate from
that CA naming its hostname and addresses, a self-signed kubelet (kubeadm's default) has one
naming only its hostname, from a CA nobody else has. --insecure-skip-tls-verify=true verifies
nothing, explicitly. A TLS failure is one line: what was tried and which setting fixes it.

Identity: the kubelet checkpoints whatever container of that name runs in whatever pod of that
name exists when the request arrives. So right before the POST the step reads the pod and refuses
(one line, no checkpoint) unless its UID is still --pod-uid and the container's containerID still
--container-id, the ones verify checked: a pod replaced under the same name or a container that
restarted (its PID 1 killed) in between is not the one the alert was about. The window left
between this check and the kubelet's dump is closed by the copy step, which accepts the archive
only if its own metadata names the same container.

Outputs: archive (the path the kubelet reported, on the node), checkpoint-time (UTC, RFC 3339,
when the request was sent; the kubelet names the file after the same moment, in node-local time).

Failures: 404 means the ContainerCheckpoint feature gate is off or the container is gone; 500
means the container runtime cannot checkpoint (CRI-O without CRIU, containerd < 2.0, or CRIU
refusing the process tree: an established TCP connection, such as a reverse shell, needs
`tcp-established` in the node's /etc/criu/runc.conf). A 500 is final and never retried (every
attempt freezes the container again); 429/502/503/504 and connection failures are retried; a
read timeout is not (the kubelet may still be writing).

RBAC: pods get (the identity check), nodes get (to find the kubelet's address and port), and
nodes/checkpoint create for the direct path (least privilege), or nodes/proxy create for the
API-server path (broad: it also allows exec into every pod on the node; CIS 5.1.14).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from collections.abc import Sequence
from urllib.parse import quote

from engine.patterns import NODE_ADDRESS_TYPES
from steps import common
from steps.common import STATUS_CONTAINER_ID, STATUS_LISTS, Refused, StepError

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


def address_types(name: str, value: object) -> list[str]:
    kinds = [k for k in common._scalar(name, value).split(",") if k]
    if not kinds:
        raise Refused(f"{name}: give at least one of {', '.join(NODE_ADDRESS_TYPES)}")
    for kind in kinds:
        if kind not in NODE_ADDRESS_TYPES:
            raise Refused(f"{name}: {kind[:40]!r} is not one of {', '.join(NODE_ADDRESS_TYPES)}")
    return kinds


def parse(argv: Sequence[str] | None):
    parser = common.Parser("checkpoint", __doc__.splitlines()[0])
    parser.flag("namespace", common.dns_label)
    parser.flag("pod", common.dns_subdomain)
    parser.flag("container", common.dns_label)
    parser.flag("node", common.dns_subdomain)
    parser.flag("pod-uid", common.matching(common.UID, "the pod UID verify read"))
    parser.flag("container-id", common.matching(common.FULL_CONTAINER_ID, "the full 64-hex container id verify resolved"))
    parser.flag("path", common.one_of(*PATHS), default="kubelet")
    parser.flag("timeout", default="120")
    parser.flag("ca-bundle", common._scalar, default="")
    parser.flag("ca-configmap", lambda n, v: common.optional(common.dns_subdomain, n, v), default="")
    parser.flag("insecure-skip-tls-verify", common.boolean, default="false")
    parser.flag("address-types", address_types, default="InternalIP,ExternalIP,Hostname")
    args = parser.parse(argv)
    timeout = args.timeout.strip()
    if not re.fullmatch(r"\d{1,5}", timeout) or not 1 <= int(timeout) <= 3600:
        raise Refused(f"timeout: {timeout[:40]!r} is not a number of seconds between 1 and 3600")
    args.timeout = int(timeout)
    args.insecure = args.insecure_skip_tls_verify
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


# --- still the verified container? ----------------------------------------------------------------


def still_the_verified_container(args, api_client) -> None:
    """Refuse unless the pod's UID and the container's current containerID are verify's."""
    from steps import kube as client

    where = f"{args.namespace}/{args.pod}"
    core = client.CoreV1Api(api_client)
    try:
        pod = common.body(
            common.retry(lambda: core.read_namespaced_pod(args.pod, args.namespace, _preload_content=False), f"get pod {where}")
        )
    except client.ApiException as exc:
        if exc.status == 404:
            raise Refused(f"pod {where} is gone since verify: nothing checkpointed") from None
        raise StepError(f"cannot read pod {where} to check it is still the verified one: {common.describe(exc)}") from exc
    uid = (pod.get("metadata") or {}).get("uid") or ""
    if uid != args.pod_uid:
        raise Refused(
            f"pod {where} was replaced since verify (UID {uid or '?'}, verified {args.pod_uid}): "
            "nothing checkpointed; the pod the alert was about is gone"
        )
    status = pod.get("status") or {}
    entry = next((e for key in STATUS_LISTS for e in status.get(key) or [] if e.get("name") == args.container), None)
    found = STATUS_CONTAINER_ID.fullmatch(str((entry or {}).get("containerID") or ""))
    current = found.group(2) if found else ""
    if current != args.container_id:
        now = f"now {current[:12]}" if current else "no running instance now"
        raise Refused(
            f"container {args.container} of pod {where} restarted since verify ({now}, restarts "
            f"{(entry or {}).get('restartCount', '?')}; verified {args.container_id[:12]}): nothing checkpointed, "
            "the process tree the alert was about is gone"
        )


# --- the two ways in -------------------------------------------------------------------------------


def kubelet_address(api_client, node_name: str, kinds: Sequence[str] = ("InternalIP", "ExternalIP", "Hostname")):
    """(host, port, address type): the node's first address of `kinds`, in that order, and the
    kubelet's port from status.daemonEndpoints (10250 when unset)."""
    from steps import kube as client

    core = client.CoreV1Api(api_client)
    try:
        response = common.retry(lambda: core.read_node(node_name, _preload_content=False), f"get node {node_name}")
    except client.ApiException as exc:
        if exc.status == 404:
            raise Refused(f"node {node_name} not found") from None
        raise StepError(f"cannot read node {node_name}: {common.describe(exc)}") from exc
    node = json.loads(response.data or b"{}")
    status = node.get("status") or {}
    addresses: dict[str, str] = {}
    for entry in status.get("addresses") or []:
        if isinstance(entry, dict) and isinstance(entry.get("address"), str):
            addresses.setdefault(entry.get("type"), entry["address"])
    host = kind = None
    for wanted in kinds:
        value = addresses.get(wanted)
        if not value:
            continue
        if wanted.endswith("IP"):
            try:
                host = str(ipaddress.ip_address(value))
            except ValueError:
                continue
        elif common.DNS1123_SUBDOMAIN.match(value):
            host = value
        else:
            continue
        kind = wanted
        break
    if host is None:
        has = ", ".join(sorted(t for t in addresses if isinstance(t, str))) or "none"
        raise StepError(
            f"node {node_name} reports no usable address of types {', '.join(kinds)} (it has: {has}); "
            "set checkpoint.kubelet_tls.address_types"
        )
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or DEFAULT_KUBELET_PORT
    if not isinstance(port, int) or not 0 < port < 65536:
        raise StepError(f"node {node_name} reports kubelet port {port!r}")
    return host, port, kind


def credentials(api_client) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Bearer token (the pod's projected SA token, else the kubeconfig's), or a client certificate."""
    configuration = api_client.configuration
    authorization = configuration.authorization()  # in a pod, the projected token file, re-read (it rotates)
    if authorization:
        return {"Authorization": authorization}, None
    if configuration.cert_file and configuration.key_file:
        return {}, (configuration.cert_file, configuration.key_file)
    raise StepError("no bearer token or client certificate to present to the kubelet")


def direct(args, api_client) -> str:
    """POST to the kubelet at the node's address, verifying its certificate against the node's name."""
    import urllib3

    host, port, kind = kubelet_address(api_client, args.node, args.address_types)
    headers, cert = credentials(api_client)
    still_the_verified_container(args, api_client)
    headers["Accept"] = "application/json"
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = f"/checkpoint/{args.namespace}/{args.pod}/{args.container}?timeout={args.timeout}"
    if args.insecure:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        common.log(
            f"checkpoint: warning: NOT verifying the kubelet's certificate at {shown} "
            "(insecure_skip_verify); a node impersonator would receive the container's memory"
        )
        tls = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
    else:
        # SNI and the name checked are the node's name, whatever address the connection goes to.
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": args.ca_bundle, "server_hostname": args.node}
    if cert:
        tls.update(cert_file=cert[0], key_file=cert[1])
    pool = urllib3.HTTPSConnectionPool(
        host, port, timeout=urllib3.Timeout(connect=10, read=read_timeout(args)), retries=False, maxsize=1, **tls
    )
    verified = "nothing verified" if args.insecure else f"verifying the name {args.node}"
    common.log(f"checkpoint: POST https://{shown}{path} (direct to the kubelet, {kind} address, {verified})")

    def attempt() -> str:
        try:
            response = pool.request("POST", path, headers=headers, redirect=False)
        except urllib3.exceptions.SSLError as exc:
            raise Final(tls_failure(args, shown, exc)) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise Final(read_timeout_message(args)) from None
        return answer(response.status, response.data.decode("utf-8", "replace"))

    try:
        return call(args, attempt, "nodes/checkpoint")
    finally:
        pool.close()


def tls_failure(args, shown: str, exc: BaseException) -> str:
    """One line (the step's error line is cut at 400 characters): the address, the name verified
    (the node's) and the CA source, then the settings that fix it."""
    reason = tls_reason(exc)
    source = f"ConfigMap {args.ca_configmap}" if args.ca_configmap else args.ca_bundle
    tried = f"TLS to the kubelet of {args.node} at {shown} failed ({reason}; verified: the node name, CA {source})"
    insecure = "or kubelet_tls.insecure_skip_verify: true"
    if "self-signed certificate" in reason or "unable to get local issuer" in reason:
        what = "a self-signed kubelet" if "self-signed" in reason else "a kubelet certificate from another CA"
        return (
            f"{tried}: {what}; fix: serverTLSBootstrap: true and approved kubelet-serving CSRs, "
            f"or kubelet_tls.ca_bundle_configmap with the kubelets' CAs, {insecure}"
        )
    if "mismatch" in reason:
        return f"{tried}: the certificate does not name the node; fix: serverTLSBootstrap: true, {insecure}"
    return f"{tried}; fix the kubelets' certificates or checkpoint.kubelet_tls, {insecure}"


def via_apiserver(args, api_client) -> str:
    from steps import kube as client

    common.log(
        "checkpoint: warning: going through the API server's node proxy: its RBAC (nodes/proxy create) "
        "also allows exec into every pod on every node; prefer --path=kubelet"
    )
    still_the_verified_container(args, api_client)
    common.log(
        f"checkpoint: POST /api/v1/nodes/{args.node}/proxy/checkpoint/{args.namespace}/{args.pod}/{args.container}"
        f"?timeout={args.timeout}"
    )

    def attempt() -> str:
        # The kubelet path after .../proxy keeps its '/'; each name is one escaped segment.
        try:
            response = api_client.request(
                "POST",
                "/api/v1/nodes/{}/proxy/checkpoint/{}/{}/{}".format(
                    *(quote(part, safe="") for part in (args.node, args.namespace, args.pod, args.container))
                ),
                query=[("timeout", str(args.timeout))],
                headers={"Accept": "application/json"},
                timeout=(10, read_timeout(args)),
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
    """OpenSSL's reason, without the `[SSL: ...]` tag and the `(_ssl.c:NNN)` tail."""
    text = str(exc)
    found = re.search(r"\[SSL: [A-Z_]+\] ?(.*?)(?: \(_ssl\.c:\d+\)|$)", text)
    reason = found.group(1) if found and found.group(1) else text
    reason = reason.removeprefix("certificate verify failed: ").split(", certificate is not valid for")[0].rstrip(".")
    return common.one_line(reason, 120)


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
        return criu_refusal(args, text) or f"container runtime on {args.node} cannot checkpoint: {detail}"
    if code in (401, 403):
        return f"checkpoint refused with {code} ({detail}): the step's service account needs RBAC {permission} create"
    return f"checkpoint API on {args.node} answered {code}: {detail}"


CRIU_CONFIG_FIX = "add a line `tcp-established` to /etc/criu/runc.conf on the node (crun reads /etc/criu/crun.conf first if present)"


def criu_refusal(args, text: str) -> str | None:
    """One line for a 500 in which CRIU refused the dump, with the node fix; None otherwise.

    CRIU's own reason (criu/sk-inet.c, can_dump_inet_sk: "Connected TCP socket, consider using
    --tcp-established option.") reaches the kubelet only through CRI-O with runc >= 1.2 (runc quotes
    dump.log's Error lines on stderr, libcontainer/criu_linux.go logCriuErrors; CRI-O puts stderr in
    its error, internal/oci/runtime_oci.go runtimeCmd) or crun ("--- excerpt from CRIU log").
    containerd's shim keeps the first line only, `criu failed: type DUMP errno 0 path= <bundle>/
    criu-dump.log` (cmd/containerd-shim-runc-v2/process/init.go checkpoint), and older runc said
    `type NOTIFY ... log file: <dump.log>`: then the log on the node holds the reason.
    """
    where = f"{args.namespace}/{args.pod}/{args.container}"
    if "Connected TCP socket" in text:
        return (
            f"CRIU on {args.node} refused to checkpoint {where}: a process in it holds an established TCP connection "
            f'(CRIU: "Connected TCP socket"; a reverse shell?); fix: {CRIU_CONFIG_FIX}'
        )
    failed = re.search(r"criu failed: [^\n]*?errno \d+|CRIU checkpointing failed: -?\d+", text)
    if not failed:
        return None
    log = re.search(r"(?:path=|log file:|CRIU log `?)\s*(/[^\s`'\\]+\.log)", text)
    return (
        f"CRIU on {args.node} could not checkpoint {where} ({failed.group(0)}); if its log says "
        f'"Connected TCP socket" (an established connection: a reverse shell?), add a line `tcp-established` to '
        f"/etc/criu/runc.conf on the node; log: {log.group(1) if log else 'dump.log'} on the node"
    )


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
