"""pods/log: the API server's log subresource and the kubelet's container logs behind it.

Upstream (kubernetes/kubernetes), in the order a request goes through them:
- pkg/registry/core/pod/rest/log.go LogREST.Get: ValidatePodLogOptions (pkg/apis/core/validation/
  validation.go: tailLines >= 0 "must be greater than or equal to 0", limitBytes and sinceSeconds
  "must be greater than 0") -> 422 Invalid of kind PodLogOptions; then pod.LogLocation.
- pkg/registry/core/pod/strategy.go LogLocation: the pod must exist (404); no container named and
  not exactly one container -> 400 "a container name must be specified for pod <name>, choose one
  of: [<names>]" (+ " or one of the init containers: [...]"); a container not in the pod -> 400
  "container <c> is not valid for pod <name>"; a pod without a node -> an empty stream (200).
- the kubelet (pkg/kubelet/server/server.go getContainerLogs, kubelet_pods.go
  validateContainerLogStatus): previous=true without lastState.terminated.containerID ->
  "previous terminated container \"<c>\" in pod \"<pod>\" not found", a container without a status
  -> "container \"<c>\" in pod \"<pod>\" is not available", a waiting one -> "... is waiting to
  start: <reason>"; written with WriteError(400), which the API server's response checker
  (staging/src/k8s.io/apiserver/pkg/registry/generic/rest/response_checker.go
  GenericHttpResponseChecker.Check) turns into a 400 BadRequest Status with that text.
- the log itself (pkg/kubelet/kuberuntime/logs/logs.go ReadLogs): the container's output without
  the CRI timestamps, tailLines counted from the end first, then limitBytes cuts the output (the
  oldest bytes of the tail are kept); text/plain.

The stand-in keeps each container's output by container id (what the runtime's log file belongs
to), so a restarted container's previous log is its old id's. follow, timestamps, sinceSeconds and
sinceTime are not served: a request using them fails loudly (400) rather than being half-honoured.
"""

from __future__ import annotations

import re

from standin.kube.errors import ApiError, bad_request
from standin.kube.serving import Request, Response

UNSERVED = ("follow", "timestamps", "sinceSeconds", "sinceTime", "insecureSkipTLSVerifyBackend", "stream")
STATUS_LISTS = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")


def _options(request: Request, name: str) -> tuple[str, bool, int | None, int | None]:
    for option in UNSERVED:
        if request.param(option) not in (None, "", "false"):
            raise bad_request(f"{option} is not served by the stand-in API server's pods/log")
    causes = []
    numbers: dict[str, int | None] = {}
    for option in ("tailLines", "limitBytes"):
        raw = request.param(option)
        if raw in (None, ""):
            numbers[option] = None
            continue
        if not re.fullmatch(r"-?\d{1,18}", raw):
            raise bad_request(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
        numbers[option] = int(raw)
    if numbers["tailLines"] is not None and numbers["tailLines"] < 0:
        causes.append(("tailLines", numbers["tailLines"], "must be greater than or equal to 0"))
    if numbers["limitBytes"] is not None and numbers["limitBytes"] < 1:
        causes.append(("limitBytes", numbers["limitBytes"], "must be greater than 0"))
    if causes:
        text = ", ".join(f"{f}: Invalid value: {v}: {m}" for f, v, m in causes)
        raise ApiError(
            422,
            f'PodLogOptions "{name}" is invalid: {text}' if len(causes) == 1 else f'PodLogOptions "{name}" is invalid: [{text}]',
            details={"name": name, "kind": "PodLogOptions",
                     "causes": [{"reason": "FieldValueInvalid", "message": f"Invalid value: {v}: {m}", "field": f}
                                for f, v, m in causes]},
        )
    previous = (request.param("previous") or "false").lower()
    if previous not in ("true", "false", "1", "0"):
        raise bad_request(f'strconv.ParseBool: parsing "{previous}": invalid syntax')
    return request.param("container") or "", previous in ("true", "1"), numbers["tailLines"], numbers["limitBytes"]


def _names(containers: list[dict]) -> str:
    return " ".join(c.get("name", "") for c in containers)


def container_for(pod: dict, requested: str) -> str:
    """strategy.go LogLocation: the container whose log is asked for, or its 400."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not requested:
        if len(containers) == 1:
            return containers[0]["name"]
        if not containers:
            raise bad_request(f"a container name must be specified for pod {name}")
        text = f"a container name must be specified for pod {name}, choose one of: [{_names(containers)}]"
        if spec.get("initContainers"):
            text += f" or one of the init containers: [{_names(spec['initContainers'])}]"
        raise bad_request(text)
    every = containers + (spec.get("initContainers") or []) + (spec.get("ephemeralContainers") or [])
    if not any(c.get("name") == requested for c in every):
        raise bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def container_id(pod: dict, container: str, previous: bool) -> str:
    """kubelet_pods.go validateContainerLogStatus: the id whose log is read, or the kubelet's 400."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    entry = next((s for key in STATUS_LISTS for s in status.get(key) or [] if s.get("name") == container), None)
    if entry is None:
        raise bad_request(f'container "{container}" in pod "{name}" is not available')
    last = (entry.get("lastState") or {}).get("terminated") or {}
    state = entry.get("state") or {}
    if previous:
        if not last.get("containerID"):
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        found = last["containerID"]
    elif "running" in state:
        found = entry.get("containerID") or ""
    elif "terminated" in state:
        found = state["terminated"].get("containerID") or last.get("containerID") or ""
        if not found:
            raise bad_request(f'container "{container}" in pod "{name}" is terminated')
    elif last.get("containerID"):
        found = last["containerID"]
    else:
        reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    return found.partition("://")[2] or found


def read_logs(output: bytes, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """logs.go ReadLogs: the last tailLines lines, then at most limitBytes of them from their start."""
    if tail_lines is not None:
        lines = output.splitlines(keepends=True)
        output = b"".join(lines[len(lines) - tail_lines:]) if tail_lines else b""
    if limit_bytes is not None:
        output = output[:limit_bytes]
    return output


def serve(pod: dict, request: Request, logs: dict[str, bytes]) -> Response:
    """GET .../pods/<name>/log for a stored pod; `logs` maps container id -> its output."""
    container, previous, tail, limit = _options(request, pod["metadata"]["name"])
    container = container_for(pod, container)
    if not (pod.get("spec") or {}).get("nodeName"):
        return Response(200, b"", "text/plain")  # LogLocation: no host, an empty location
    cid = container_id(pod, container, previous)
    return Response(200, read_logs(logs.get(cid, b""), tail, limit), "text/plain")
