"""The kubelet's checkpoint endpoint (KEP-2008), answering in plain text like kubelet's server.go."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from standin.kube.archive import checkpoint_file_name, checkpoint_members, write_checkpoint_archive
from standin.kube.serving import Request, Response, Server, token_ok
from standin.kube.store import Store

KUBELET_CHECKPOINT_DIR = "/var/lib/kubelet/checkpoints"
CHECKPOINT_BEHAVIOURS = ("ok", "gate-off", "unsupported")
PAGE_NOT_FOUND = "404 page not found"
UNIMPLEMENTED = (  # what containerd < 2.0 answers the CRI CheckpointContainer call
    "rpc error: code = Unimplemented desc = unknown method CheckpointContainer for service runtime.v1.RuntimeService"
)


@dataclass
class NodeState:
    """One node's kubelet: where its checkpoints go and how its runtime behaves."""

    name: str
    checkpoint_dir: Path
    behaviour: str = "ok"
    padding: int = 0
    server: Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


class Kubelet:
    """The node agent's checkpoint endpoint (KEP-2008), answering like kubelet's server.go."""

    def __init__(self, store: Store, node: NodeState, token: str) -> None:
        self.store = store
        self.node = node
        self.token = token

    def handle(self, request: Request) -> Response:
        """Direct HTTPS access: the caller's bearer token is checked first (401 in plain text)."""
        if not token_ok(request, self.token):
            return Response.text(401, "Unauthorized")
        return self.route(request)

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
        return None

    def _write(self, pod: dict, container: str) -> str:
        moment = dt.datetime.now().astimezone().replace(microsecond=0)
        name = checkpoint_file_name(pod["metadata"]["name"], pod["metadata"]["namespace"], container, moment)
        members = checkpoint_members(pod, container, moment)
        write_checkpoint_archive(self.node.checkpoint_dir / name, members, self.node.padding, moment.timestamp())
        return name
