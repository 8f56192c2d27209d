"""The kubelet's checkpoint endpoint (KEP-2008), answering in plain text like kubelet's server.go."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from standin.kube.archive import checkpoint_file_name, checkpoint_members, write_checkpoint_archive
from standin.kube.auth import Attributes, Tokens, User
from standin.kube.rbac import Authorizer
from standin.kube.serving import Request, Response, Server
from standin.kube.store import Store

KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"
CHECKPOINT_BEHAVIOURS = ("ok", "gate-off", "unsupported")
PAGE_NOT_FOUND = "404 page not found"
UNIMPLEMENTED = (  # what containerd < 2.0 answers the CRI CheckpointContainer call
    "rpc error: code = Unimplemented desc = unknown method CheckpointContainer for service runtime.v1.RuntimeService"
)


CONTAINERD_TASK_DIR = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"  # the shim's bundles, CRI namespace


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
    So containerd's message does not carry CRIU's reason: the log path does. CRI-O's does (it puts
    runc's whole stderr in its error, internal/oci/runtime_oci.go runtimeCmd), not modelled here."""
    return (
        f'rpc error: code = Unknown desc = checkpointing container "{container_id}" failed: runc did not terminate '
        f"successfully: exit status 1: criu failed: type DUMP errno 0 path= {CONTAINERD_TASK_DIR}/{container_id}/"
        "criu-dump.log: unknown"
    )


@dataclass
class NodeState:
    """One node's kubelet: where its checkpoints go and how its runtime behaves.

    `tls` is how its serving certificate was made (pki.KUBELET_TLS_MODES). `tcp_established` is
    the node's CRIU configuration: runc hands CRIU /etc/criu/runc.conf (libcontainer/criu_linux.go,
    handleCriuConfigurationFile) and a `tcp-established` line there lets CRIU dump established
    connections; neither CRI-O nor containerd's CRI asks for it otherwise. `connected` holds the
    ids of containers whose processes hold an established TCP connection (a reverse shell).
    """

    name: str
    checkpoint_dir: Path
    behaviour: str = "ok"
    padding: int = 0
    server: Server | None = None
    tls: str = "cluster-ca"
    tcp_established: bool = False
    connected: set[str] = field(default_factory=set)

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
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(request.method, "get")
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
        """What the CRI would answer instead of a checkpoint, if anything."""
        if self.node.behaviour == "unsupported":
            return UNIMPLEMENTED
        statuses = pod.get("status", {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == container), None)
        if not status or "running" not in (status.get("state") or {}):
            return f"rpc error: code = FailedPrecondition desc = container {container} is not running"
        container_id = (status.get("containerID") or "").partition("://")[2]
        if container_id in self.node.connected and not self.node.tcp_established:
            return criu_tcp_refusal(container_id)
        return None

    def _write(self, pod: dict, container: str) -> str:
        moment = dt.datetime.now().astimezone().replace(microsecond=0)
        name = checkpoint_file_name(pod["metadata"]["name"], pod["metadata"]["namespace"], container, moment)
        members = checkpoint_members(pod, container, moment)
        write_checkpoint_archive(self.node.checkpoint_dir / name, members, self.node.padding, moment.timestamp())
        return name
