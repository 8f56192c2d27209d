"""What the Workflows stand-in refuses, reports and names: errors, node ids, results, field checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


class Unsupported(Exception):
    """A Workflow or template field this harness does not implement."""


class WorkflowError(Exception):
    """What Argo would report as an error of the whole Workflow (bad arguments, missing template)."""


def now() -> str:
    """A timestamp the way Argo writes startedAt/finishedAt (RFC 3339, seconds, UTC)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fnv32a(text: str) -> int:
    """FNV-1a, 32 bits (Go's hash/fnv New32a), as Argo hashes node names."""
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def node_id(workflow_name: str, node_name: str) -> str:
    """Argo's Workflow.NodeID: the workflow name, or <name>-<fnv32a(node name)>."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


# --- field checks: what the runner implements; anything else is refused by name --------------------

WORKFLOW_SPEC_FIELDS = {"workflowTemplateRef", "arguments"}
TEMPLATE_SPEC_FIELDS = {
    "arguments", "entrypoint", "onExit", "templates", "activeDeadlineSeconds", "synchronization",
    "workflowMetadata", "podMetadata", "podGC", "ttlStrategy", "metrics", "securityContext", "serviceAccountName",
    "automountServiceAccountToken", "executor",
}
TEMPLATE_FIELDS = {
    "name", "container", "dag", "inputs", "outputs", "retryStrategy", "serviceAccountName",
    "automountServiceAccountToken", "volumes", "affinity", "tolerations", "executor", "activeDeadlineSeconds",
    "metrics", "metadata",
}
CONTAINER_FIELDS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "resources", "securityContext", "volumeMounts",
    "terminationMessagePolicy",
}
DAG_TASK_FIELDS = {"name", "template", "arguments", "depends", "dependencies", "when", "continueOn"}


def only(obj: dict, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise Unsupported(f"{where}.{key} is not supported by the local runner")


# --- results ----------------------------------------------------------------------------------------


@dataclass
class Attempt:
    node_id: str
    display: str
    template: str
    phase: str = "Pending"
    exit_code: int | None = None
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    argv: list[str] = field(default_factory=list)
    logs: str = ""  # stdout and stderr interleaved, as `kubectl logs` shows them
    outputs: dict[str, str] = field(default_factory=dict)
    host: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


@dataclass
class TaskRun:
    name: str  # task name, or "onExit"
    template: str | None
    phase: str = "Pending"
    message: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)


@dataclass
class RunResult:
    name: str
    namespace: str
    phase: str
    message: str
    tasks: list[TaskRun]
    exit_handler: TaskRun | None
    workflow: dict | None
    duration: float
