"""The kubelet's checkpoint endpoint (KEP-2008), answering in plain text like kubelet's server.go."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from standin.kube.archive import CRIU_PID, checkpoint_file_name, checkpoint_members, write_checkpoint_archive
from standin.kube.auth import Attributes, Tokens, User
from standin.kube.manifests import CONTAINER_RUNTIME_VERSIONS
from standin.kube.rbac import Authorizer
from standin.kube.serving import Request, Response, Server
from standin.kube.store import Store

KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"
CHECKPOINT_BEHAVIOURS = ("ok", "gate-off", "unsupported")
CONTAINER_RUNTIMES = tuple(CONTAINER_RUNTIME_VERSIONS)  # "containerd", "cri-o"
PAGE_NOT_FOUND = "404 page not found"
UNIMPLEMENTED = (  # what containerd < 2.0 answers the CRI CheckpointContainer call
    "rpc error: code = Unimplemented desc = unknown method CheckpointContainer for service runtime.v1.RuntimeService"
)


CONTAINERD_TASK_DIR = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"  # the shim's bundles, CRI namespace
CRIO_UNSUPPORTED = (  # CRI-O with enable_criu_support = false, or no criu binary in $PATH at start-up
    "rpc error: code = Unknown desc = checkpoint/restore support not available"
)
CRIO_RUNC = "/usr/libexec/crio/runc"  # runtime_path of [crio.runtime.runtimes.runc] in CRI-O's own packages
CRIO_RUNC_ROOT = "/run/runc"  # its runtime_root
CRIO_CONTAINERS = "/var/lib/containers/storage/overlay-containers"  # containers/storage ContainerDirectory: <id>/userdata


def criu_tcp_refusal(container_id: str) -> str:
    """What containerd 2.x with runc answers CheckpointContainer when CRIU refuses an established
    TCP connection (criu/sk-inet.c, can_dump_inet_sk: "Connected TCP socket, consider using
    --tcp-established option.", only in CRIU's log). The layers, innermost first:
    - runc >= 1.2 (libcontainer/criu_linux.go, criuSwrk): `criu failed: type DUMP errno 0` (the
      response's type; runc <= 1.1 printed the request's, NOTIFY after any notification, plus
      "\\nlog file: ..."); its quote of the log's Error lines goes to --log (log.json), not stderr;
    - go-runc (runc.go, runOrError/cmdOutput): `runc did not terminate successfully: exit status 1: `
      + runc's stderr;
    - the shim (cmd/containerd-shim-runc-v2/process/init.go, checkpoint; utils.go criuError): the
      first line + ` path= <bundle>/criu-dump.log` (a copy of CRIU's dump.log);
    - ttrpc/errgrpc ToNative appends `: unknown`; CRI (internal/cri/server/
      container_checkpoint_linux.go): `checkpointing container "<id>" failed: %w`;
    - the kubelet's remote runtime client returns the gRPC status: `rpc error: code = Unknown desc = ...`.
    So containerd's message does not carry CRIU's reason: the log path does. CRI-O's does
    (crio_criu_tcp_refusal)."""
    return (
        f'rpc error: code = Unknown desc = checkpointing container "{container_id}" failed: runc did not terminate '
        f"successfully: exit status 1: criu failed: type DUMP errno 0 path= {CONTAINERD_TASK_DIR}/{container_id}/"
        "criu-dump.log: unknown"
    )


def crio_criu_tcp_refusal(container_id: str, moment: dt.datetime) -> str:
    """What CRI-O 1.31 with runc >= 1.2 answers CheckpointContainer for the same refusal: runc's
    whole stderr, CRIU's reason included. The layers, innermost first (cri-o v1.31.13):
    - runc, run without --log, logs to stderr in logrus text format: on a failed dump
      libcontainer/criu_linux.go (Checkpoint -> logCriuErrors) quotes dump.log's Error lines with
      up to 5 lines before each (`--- Quoting "<work-path>/dump.log"`, `<line>:<text>`, `...` for a
      gap, `---`), then main.go/utils.go fatal logs `level=error msg="criu failed: type DUMP errno 0"`
      (criuSwrk) and exits 1;
    - internal/oci/runtime_oci.go runtimeCmd: "`%v %v` failed: %v %v: %w" with the runtime path,
      `--root <runtime_root> [--systemd-cgroup]` + the args, stderr, stdout (empty) and
      `exit status 1`; CheckpointContainer: `running %q %q failed: %w` with the runtime path and
      the args `checkpoint --file-locks --image-path <dir>/checkpoint --work-path <dir>
      --leave-running <id>` (<dir>: the container's storage directory, oci.Container.Dir);
    - internal/lib/checkpoint.go ContainerCheckpoint: `failed to checkpoint container %s: %w`;
    - server/container_checkpoint.go returns it unwrapped: gRPC `code = Unknown`.
    The node is CRI-O from its own packages (cri-o/packaging 10-crio.conf: runc at
    /usr/libexec/crio/runc, root /run/runc; cgroup_manager systemd by default) with
    default_runtime = "runc". CRI-O 1.31's default is crun (pkg/config/config_linux.go), whose
    stderr carries "--- excerpt from CRIU log" instead (crun src/libcrun/criu.c): not modelled.
    The quoted dump.log lines follow CRIU 4.2's formats (log.c print_ts; pr_err "Error (file:line): ";
    files.c dump_task_files_seized and fill_fd_params; cr-dump.c dump_one_task and cr_dump_finish;
    net.c network_unlock; seize.c pstree_switch_state; compel infect.c): illustrative, not captured."""
    workdir = f"{CRIO_CONTAINERS}/{container_id}/userdata"
    args = ["checkpoint", "--file-locks", "--image-path", f"{workdir}/checkpoint", "--work-path", workdir,
            "--leave-running", container_id]
    command = " ".join([CRIO_RUNC, "--root", CRIO_RUNC_ROOT, "--systemd-cgroup", *args])
    stderr = runc_criu_failure_stderr(f"{workdir}/dump.log", moment)
    return (
        f"rpc error: code = Unknown desc = failed to checkpoint container {container_id}: running "
        f"{go_quote(CRIO_RUNC)} [{' '.join(go_quote(a) for a in args)}] failed: `{command}` failed: {stderr} : "
        "exit status 1"
    )


def runc_criu_failure_stderr(log_file: str, moment: dt.datetime) -> str:
    """runc's stderr after CRIU refused a connected TCP socket of the container's init process."""
    pid = CRIU_PID
    excerpt = [  # (line number in dump.log, line)
        (1952, "(00.063251) sid=1 pgid=1 pid=1"),
        (1953, "(00.063298) "),
        (1954, f"(00.063304) Dumping opened files (pid: {pid})"),
        (1955, "(00.063306) " + "-" * 40),
        (1956, f"(00.063361) {pid} fdinfo 0: pos: {'0':>16} flags: {'2':>16}/0"),
        (1957, "(00.063420) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option."),
        (1958, "(00.063431) " + "-" * 40),
        (1959, f"(00.063479) Error (criu/cr-dump.c:1698): Dump files (pid: {pid}) failed with -1"),
        (2011, f"(00.068501) Waiting for {pid} to trap"),
        (2012, f"(00.068543) Daemon {pid} exited trapping"),
        (2013, "(00.070992) Unlock network"),
        (2014, "(00.071110) Unfreezing tasks into 1"),
        (2015, f"(00.071115) \tUnseizing {pid} into 1"),
        (2016, "(00.071391) Error (criu/cr-dump.c:2128): Dumping FAILED."),
    ]
    warnings, printed = [f"--- Quoting {go_quote(log_file)}"], 0
    for number, text in excerpt:
        if printed and number > printed + 1:
            warnings.append("...")
        warnings.append(f"{number}:{text}")
        printed = number
    warnings.append("---")
    when = moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"time={go_quote(when)} level=warning msg={logrus_value(w)}" for w in warnings]
    lines.append(f'time={go_quote(when)} level=error msg={logrus_value("criu failed: type DUMP errno 0")}')
    return "".join(line + "\n" for line in lines)


def go_quote(text: str) -> str:
    """Go's %q (strconv.Quote) for the printable ASCII, tabs and newlines used here."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
    return f'"{escaped}"'


def logrus_value(text: str) -> str:
    """A value as logrus's TextFormatter writes it (text_formatter.go needsQuoting, appendValue)."""
    if text and re.fullmatch(r"[A-Za-z0-9\-._/@^+]+", text):
        return text
    return go_quote(text)


@dataclass
class NodeState:
    """One node's kubelet: where its checkpoints go and how its runtime behaves.

    `tls` is how its serving certificate was made (pki.KUBELET_TLS_MODES). `tcp_established` is
    the node's CRIU configuration: runc hands CRIU /etc/criu/runc.conf (libcontainer/criu_linux.go,
    handleCriuConfigurationFile) and a `tcp-established` line there lets CRIU dump established
    connections; neither CRI-O nor containerd's CRI asks for it otherwise. `connected` holds the
    ids of containers whose processes hold an established TCP connection (a reverse shell).
    `runtime` is the CRI runtime (CONTAINER_RUNTIMES), both with runc: it decides the text of the
    runtime's refusals and the archive's member order and identity metadata (archive.py: config.dump,
    spec.dump annotations, containerd's status.dump); the rest of CRI-O's layout (deleted.files,
    bind.mounts) is later work.
    """

    name: str
    checkpoint_dir: Path
    behaviour: str = "ok"
    padding: int = 0
    server: Server | None = None
    tls: str = "cluster-ca"
    tcp_established: bool = False
    connected: set[str] = field(default_factory=set)
    runtime: str = "containerd"

    def __post_init__(self) -> None:
        if self.runtime not in CONTAINER_RUNTIMES:
            raise ValueError(f"container runtime must be one of {CONTAINER_RUNTIMES}, got {self.runtime!r}")

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


class Kubelet:
    """The node agent's checkpoint endpoint (KEP-2008), answering like kubelet's server.go."""

    def __init__(self, store: Store, node: NodeState, tokens: Tokens) -> None:
        self.store = store
        self.node = node
        self.tokens = tokens
        self.authorizer = Authorizer(store)

    def handle(self, request: Request) -> Response:
        """Direct HTTPS access, as the kubelet's InstallAuthFilter (pkg/kubelet/server/server.go)
        does it: the bearer token is reviewed (TokenReview; 401 "Unauthorized" in plain text),
        then a SubjectAccessReview asks for verb (POST -> create), resource `nodes`, the
        subresource of the path (pkg/kubelet/server/auth.go GetRequestAttributes: /checkpoint ->
        `checkpoint`, /stats -> stats, /metrics -> metrics, /logs -> log, else proxy) and the node's
        name; a denial is 403 `Forbidden (user=..., verb=..., resource=..., subresource=...)`."""
        user = self.tokens.authenticate(request.bearer_token())
        if user is None:
            return Response.text(401, "Unauthorized")
        attrs = self.attributes(user, request)
        if not self.authorizer.allowed(attrs):
            return Response.text(
                403,
                f"Forbidden (user={user.name}, verb={attrs.verb}, resource={attrs.resource}, "
                f"subresource={attrs.subresource})",
            )
        return self.route(request)

    def attributes(self, user: User, request: Request) -> Attributes:
        first = ([p for p in request.path.split("/") if p] or [""])[0]
        subresource = {"checkpoint": "checkpoint", "stats": "stats", "metrics": "metrics", "logs": "log"}.get(
            first, "proxy"
        )
        # pkg/kubelet/server/auth.go GetRequestAttributes: any other method (HEAD, OPTIONS) gets the empty verb,
        # which only a "*" rule allows.
        verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            request.method, ""
        )
        return Attributes(user, verb, request.path, True, "", "", "nodes", subresource, self.node.name)

    def route(self, request: Request) -> Response:
        """Also what the API server's node proxy calls, with its own credentials."""
        parts = [p for p in request.path.split("/") if p]
        if parts == ["healthz"] and request.method == "GET":
            return Response.text(200, "ok")
        if len(parts) == 4 and parts[0] == "checkpoint" and self.node.behaviour != "gate-off":
            if request.method != "POST":
                return Response.text(405, "405: Method Not Allowed")
            return self.checkpoint(parts[1], parts[2], parts[3], request)
        return Response.text(404, PAGE_NOT_FOUND)

    def _pod_here(self, namespace: str, name: str) -> dict | None:
        pod = self.store.find(self.store.types["pods"], namespace, name)
        return pod if pod and pod.get("spec", {}).get("nodeName") == self.node.name else None

    def checkpoint(self, namespace: str, pod_name: str, container: str, request: Request) -> Response:
        pod = self._pod_here(namespace, pod_name)
        if pod is None:
            return Response.text(404, "pod does not exist")
        if container not in [c.get("name") for c in pod["spec"].get("containers") or []]:
            return Response.text(404, f"container {container} does not exist")
        timeout = request.param("timeout")
        if timeout is not None and not re.fullmatch(r"[+-]?\d+", timeout):
            return Response.text(404, "cannot parse value of timeout parameter")
        failure = self._runtime_failure(pod, container)
        if failure:
            return Response.text(500, f"checkpointing of {namespace}/{pod_name}/{container} failed ({failure})")
        name = self._write(pod, container)
        return Response.json(200, {"items": [f"{KUBELET_CHECKPOINT_DIR}/{name}"]})

    def _runtime_failure(self, pod: dict, container: str) -> str | None:
        """What the node's CRI runtime would answer instead of a checkpoint, if anything.

        "unsupported": containerd < 2.0 has no CheckpointContainer method (UNIMPLEMENTED); CRI-O
        without CRIU answers CRIO_UNSUPPORTED (server/container_checkpoint.go, when
        config.CheckpointRestore() is false: enable_criu_support = false, or pkg/config/config.go
        turned it off because no criu binary was in $PATH at start-up)."""
        crio = self.node.runtime == "cri-o"
        if self.node.behaviour == "unsupported":
            return CRIO_UNSUPPORTED if crio else UNIMPLEMENTED
        statuses = pod.get("status", {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == container), None)
        if not status or "running" not in (status.get("state") or {}):
            return f"rpc error: code = FailedPrecondition desc = container {container} is not running"
        container_id = (status.get("containerID") or "").partition("://")[2]
        if container_id in self.node.connected and not self.node.tcp_established:
            if crio:
                return crio_criu_tcp_refusal(container_id, dt.datetime.now(dt.timezone.utc))
            return criu_tcp_refusal(container_id)
        return None

    def _write(self, pod: dict, container: str) -> str:
        moment = dt.datetime.now().astimezone().replace(microsecond=0)
        name = checkpoint_file_name(pod["metadata"]["name"], pod["metadata"]["namespace"], container, moment)
        members = checkpoint_members(pod, container, moment, self.node.runtime)
        write_checkpoint_archive(self.node.checkpoint_dir / name, members, self.node.padding, moment.timestamp())
        return name
