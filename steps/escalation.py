"""Escalation, for the verify step: a weaker response after a more severe one does nothing.

Response Workflows are named `falco-response-<container hash>-<severity>` (engine.names): one per
container per severity, so a more severe alert is never deduplicated against a weaker response.
The other way round, a weaker alert arriving after a stronger response gets its own Workflow too;
this check stops it before it acts. The quarantine step records the Workflow that quarantined a
pod in the pod's `falco-response.io/workflow` annotation: when that Workflow was for the same
container and more severe than this one, there is nothing left for this one to do (the pod is
already contained and its evidence taken, or being taken). A pod deleted by a stronger response
is refused by verify anyway (not found). Workflows submitted by hand under another name are not
checked: a responder decides.
"""

from __future__ import annotations

from engine import names
from steps.common import Refused


def refuse_weaker(workflow_ref: str, pod: dict) -> None:
    """Refused when this container's pod was quarantined by a more severe response."""
    own = names.parse_workflow_name(workflow_ref.partition("/")[2])
    meta = pod.get("metadata") or {}
    if own is None or (meta.get("labels") or {}).get(names.LABEL_QUARANTINED) != "true":
        return
    done_ref = str((meta.get("annotations") or {}).get(names.ANNOTATION_WORKFLOW) or "")
    done = names.parse_workflow_name(done_ref.partition("/")[2])
    if done is None or done[0] != own[0] or done[1] <= own[1]:
        return
    raise Refused(
        f"pod {meta.get('namespace')}/{meta.get('name')} was already quarantined for this container by {done_ref} "
        f"({names.SEVERITY_ORDER[done[1]]}, severity {done[1]}): this {names.SEVERITY_ORDER[own[1]]} response "
        f"(severity {own[1]}) is weaker and would add nothing (rule escalation), nothing done"
    )
