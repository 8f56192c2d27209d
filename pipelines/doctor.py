"""WorkflowTemplate `falco-doctor`: `falco-response doctor` run inside the cluster, as the pipelines' pods run.

    argo submit -n falco-response --from workflowtemplate/falco-doctor --log

One pod, `python -m steps.doctor`, under its own ServiceAccount (falco-response-doctor, engine/rbac.py
DOCTOR_*: nodes get/list, SubjectAccessReviews, the canary pods in the workflow namespace, a token of
the checkpoint identity and nothing else). It sees what the response pods see: the kubelets from the
pod network, the evidence store with the same credentials Secret, the checkpoint identity's RBAC.
What only an administrator may read (the webhook token, Falcosidekick's Secrets in the Falco
namespace) and the EventSource (its NetworkPolicy admits Falcosidekick alone) are checked by the
CLI from outside. The table is in the pod's log and in the output parameter `report`; the Workflow
fails when a check FAILs.
"""

from __future__ import annotations

import base64
import json

from hera.workflows import DAG, Task, WorkflowTemplate, models as m

from engine import blast_radius, names
from engine.config import Settings
from pipelines import templates

NAME = "falco-doctor"
DEADLINE_SECONDS = 900
# What engine/doctor.py reads of the settings (the others keep their defaults there).
USED_SETTINGS = {"namespace", "argo_namespace", "eventsource", "evidence", "checkpoint", "image", "image_pull_policy",
                 "blast_radius"}
CLEANUP_DEADLINE_SECONDS = 120  # the exit handler ignores the workflow's deadline: its own (quota scope)


def settings_argument(settings: Settings) -> str:
    """The settings the doctor checks against, as base64 JSON (no response.yaml in the image)."""
    used = settings.model_dump(mode="json", include=USED_SETTINGS)
    return base64.b64encode(json.dumps(used, sort_keys=True, separators=(",", ":")).encode()).decode()


def build(settings: Settings) -> WorkflowTemplate:
    doctor = templates.step(
        settings,
        "doctor",
        [],
        ["report"],
        [f"--settings-json={settings_argument(settings)}"],
        env=templates._evidence_store(settings)[1],  # the copy step's credentials Secret
        active_deadline_seconds=DEADLINE_SECONDS,
    )
    doctor.retry_strategy = None  # a preflight is not retried: its FAIL is the answer
    # onExit: whatever happened to the doctor's pod (deadline, eviction), no canary pod is left behind
    cleanup = templates.step(settings, "doctor", [], [], ["--cleanup", f"--settings-json={settings_argument(settings)}"],
                             active_deadline_seconds=CLEANUP_DEADLINE_SECONDS)
    cleanup.name = "cleanup"
    wt = WorkflowTemplate(
        name=NAME,
        namespace=settings.namespace,
        labels=names.common_labels("doctor"),
        annotations={
            names.ARGO_TITLE: "falco-response doctor",
            names.ARGO_DESCRIPTION: "Preflight from inside the cluster: kubelets, nodes/checkpoint, canary "
            "checkpoints, the evidence store. The table is in the log and the output parameter report.",
        },
        entrypoint="preflight",
        on_exit="cleanup",
        active_deadline_seconds=DEADLINE_SECONDS + 60,
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        ttl_strategy=m.TTLStrategy(seconds_after_completion=24 * 3600),
        # One doctor at a time, and within the responses' semaphore: its pod and one canary at a time
        # count in the namespace's quota as a response's two pods do (engine/blast_radius.py).
        synchronization=m.Synchronization(
            mutexes=[m.Mutex(name=NAME)], semaphores=[m.SemaphoreRef.model_validate(blast_radius.semaphore())]
        ),
        pod_metadata=m.Metadata(labels=names.common_labels("doctor")),
        security_context=m.PodSecurityContext(seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
    )
    with wt:
        wt.templates.append(doctor)
        wt.templates.append(cleanup)
        with DAG(name="preflight"):
            Task(name="doctor", template="doctor")
    return wt
