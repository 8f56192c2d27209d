"""The response pipelines as WorkflowTemplates, one per pipeline and order. Each reads like its diagram:

    verify + isolate ──> checkpoint ──┬──> copy      (evidence to object storage)
                                      └──> contain   (detach: the rest of quarantine | delete; after
                                                      the checkpoint attempt, even a failed one,
                                                      never waiting for the upload)
    onExit: report

isolate-first (a policy's default `order`): verify's own pod applies the network isolation (the
deny-all NetworkPolicy and the quarantine label) once its checks pass, so the pod loses the network
one pod into the response. evidence-first (`falco-<pipeline>-evidence-first`, only for the
checkpoint-and-* pipelines): verify changes nothing and quarantine isolates after the checkpoint
attempt, as before. `checkpoint-only` contains nothing; `quarantine` and `delete` have no
checkpoint or copy (verify isolates, then quarantine detaches or delete deletes).
"""

from __future__ import annotations

from hera.workflows import DAG, Parameter, Task, WorkflowTemplate, models as m

from engine import blast_radius, names
from engine.config import Settings
from pipelines import templates

P = "{{workflow.parameters.%s}}"


def _wf(name: str) -> str:
    return P % name


def _from(task: str, output: str) -> str:
    return f"{{{{tasks.{task}.outputs.parameters.{output}}}}}"


def _args(**values: str) -> list[Parameter]:
    return [Parameter(name=k.replace("_", "-"), value=v) for k, v in values.items()]


def build(pipeline: str, settings: Settings, order: str = "isolate-first") -> WorkflowTemplate:
    checkpoints = pipeline.startswith("checkpoint")
    contain = {"checkpoint-and-quarantine": "quarantine", "checkpoint-and-delete": "delete"}.get(
        pipeline, pipeline if pipeline in ("quarantine", "delete") else None
    )
    isolate = contain is not None and order == "isolate-first"
    used = [templates.verify(settings, pipeline, isolate)]
    if checkpoints:
        used += [templates.checkpoint(settings), templates.copy(settings), templates.analyze(settings)]
    escalate = contain == "quarantine" and settings.quarantine.on_not_isolated == "delete"
    if contain == "quarantine":
        used.append(templates.quarantine(settings))
        if escalate:
            used.append(templates.delete(settings))
    elif contain == "delete":
        used.append(templates.delete(settings))
    used.append(templates.report(settings, pipeline))

    wt = WorkflowTemplate(
        name=names.workflow_template_name(pipeline, order),
        namespace=settings.namespace,
        labels={**names.common_labels("pipeline"), names.LABEL_PIPELINE: pipeline},
        annotations={
            names.ARGO_TITLE: f"Falco response: {pipeline}",
            names.ARGO_DESCRIPTION: _describe(pipeline, isolate),
        },
        entrypoint="respond",
        on_exit="report",
        arguments=[
            Parameter(name="namespace", description="namespace of the pod (k8s.ns.name)"),
            Parameter(name="pod", description="pod name (k8s.pod.name)"),
            Parameter(name="container-id", description="container id from the alert: 12 or 64 hex"),
            Parameter(name="container-name", value="", description="container name, if the alert has it"),
            Parameter(name="node", value="", description="node from the alert's hostname; empty: the pod's node"),
            Parameter(name="rule", value="manual", description="Falco rule that fired"),
            Parameter(name="priority", value="Critical", description="Falco priority"),
            Parameter(name="alert-time", value="", description="alert time, RFC 3339"),
            Parameter(name="policy", value="manual", description="policy from response.yaml that chose this"),
            Parameter(name="dry-run", value="false", enum=["true", "false"], description="contain nothing"),
            Parameter(name="alert", value="{}", description="the whole Falco alert, JSON"),
        ],
        active_deadline_seconds=settings.active_deadline_seconds,
        pod_gc=m.PodGC(strategy=settings.pod_gc),
        ttl_strategy=m.TTLStrategy(
            # A finished Workflow keeps its deterministic name for the dedupe window, so a
            # second alert for the same container inside the window is refused as AlreadyExists.
            seconds_after_completion=settings.dedupe_window_seconds,
        ),
        synchronization=m.Synchronization(
            mutexes=[m.Mutex(name=f"{_wf('namespace')}-{_wf('pod')}")],
            # At most max_concurrent_responses Workflows run; the others wait, Pending (Argo >= 3.6).
            semaphores=[m.SemaphoreRef.model_validate(blast_radius.semaphore())],
        ),
        workflow_metadata=m.WorkflowMetadata(
            labels={**names.common_labels("response"), names.LABEL_PIPELINE: pipeline},
        ),
        pod_metadata=m.Metadata(labels=names.common_labels("step")),
        security_context=m.PodSecurityContext(seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
        metrics=m.Metrics(
            prometheus=[
                m.Prometheus(
                    name="falco_response_duration_seconds",
                    help="Duration of Falco response workflows",
                    labels=[
                        m.MetricLabel(key="pipeline", value=pipeline),
                        m.MetricLabel(key="policy", value=_wf("policy")),
                        m.MetricLabel(key="result", value="{{workflow.status}}"),
                    ],
                    histogram=m.Histogram(
                        value="{{workflow.duration}}",
                        buckets=[m.Amount(b) for b in (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)],
                    ),
                )
            ]
        ),
    )
    with wt:
        for template in used:
            wt.templates.append(template)
        with DAG(name="respond") as dag:
            Task(
                name="verify",
                template="verify",
                arguments=_args(
                    namespace=_wf("namespace"),
                    pod=_wf("pod"),
                    container_id=_wf("container-id"),
                    container_name=_wf("container-name"),
                    node=_wf("node"),
                    rule=_wf("rule"),
                    priority=_wf("priority"),
                    alert_time=_wf("alert-time"),
                ),
            )
            gate = "verify"
            if checkpoints:
                Task(
                    name="checkpoint",
                    template="checkpoint",
                    depends="verify",
                    arguments=_args(
                        namespace=_wf("namespace"),
                        pod=_wf("pod"),
                        container=_from("verify", "container-name"),
                        node=_from("verify", "node"),
                        pod_uid=_from("verify", "pod-uid"),
                        container_id=_from("verify", "container-id"),
                    ),
                )
                Task(
                    name="copy",
                    template="copy",
                    depends="checkpoint.Succeeded",
                    arguments=_args(
                        archive=_from("checkpoint", "archive"),
                        node=_from("verify", "node"),
                        namespace=_wf("namespace"),
                        pod=_wf("pod"),
                        container=_from("verify", "container-name"),
                        container_id=_from("verify", "container-id"),
                        pod_uid=_from("verify", "pod-uid"),
                        image=_from("verify", "image"),
                        image_id=_from("verify", "image-id"),
                        rule=_wf("rule"),
                        priority=_wf("priority"),
                        alert_time=_wf("alert-time"),
                        policy=_wf("policy"),
                        # the evidence bundle verify stored before isolation: copy's manifest names it
                        bundle_manifest_uri=_from("verify", "bundle-manifest-uri"),
                        bundle_sha256=_from("verify", "bundle-sha256"),
                    ),
                )
                gate = (
                    "checkpoint.Succeeded || checkpoint.Failed || checkpoint.Errored"
                    if settings.checkpoint.contain_on_failure
                    else "checkpoint.Succeeded"
                )
            if contain == "quarantine":
                Task(
                    name="quarantine",
                    template="quarantine",
                    depends=gate,
                    arguments=_args(
                        namespace=_wf("namespace"),
                        pod=_wf("pod"),
                        pod_uid=_from("verify", "pod-uid"),
                        policy=_wf("policy"),
                        rule=_wf("rule"),
                        priority=_wf("priority"),
                        alert_time=_wf("alert-time"),
                        dry_run=_wf("dry-run"),
                    ),
                )
                if escalate:
                    # quarantine.on_not_isolated: delete. The step exits 1 saying not-isolated only
                    # after applying everything; its outputs are saved whatever the exit code
                    # (workflow/executor/postmain.go PostMain) and a retried task's are its last
                    # attempt's (operator.go buildLocalScope, possiblyGetRetryChildNode). `depends`
                    # runs this only after a Failed quarantine (dag.go evaluateDependsLogic); `when`
                    # (govaluate, quoted so an empty output is a plain false) only when the step said
                    # not-isolated, not for any other failure (dag.go resolveDependencyReferences,
                    # steps.go shouldExecute). Skipped, the task takes quarantine's Failed phase
                    # (dag.go assessDAGPhase: a Skipped node is not Completed).
                    Task(
                        name="delete",
                        template="delete",
                        depends="quarantine.Failed",
                        when="'" + _from("quarantine", "isolated") + "' == 'false'",
                        arguments=_args(
                            namespace=_wf("namespace"), pod=_wf("pod"), pod_uid=_from("verify", "pod-uid"), dry_run=_wf("dry-run")
                        ),
                    )
            elif contain == "delete":
                Task(
                    name="delete",
                    template="delete",
                    depends=gate,
                    arguments=_args(
                        namespace=_wf("namespace"), pod=_wf("pod"), pod_uid=_from("verify", "pod-uid"), dry_run=_wf("dry-run")
                    ),
                )
            if checkpoints:
                # After copy, on the stored evidence only; nothing depends on it, and continueOn keeps its
                # failure from failing the DAG (dag.go assessDAGPhase skips a target task that
                # ContinuesOn its phase): containment never waits for it and is never undone by it.
                # Omitted after a failed copy, analyze would inherit copy's Failed and continueOn would
                # hide it too (assessDAGPhase: an omitted task takes its branch's phase), so copy is
                # named a target of its own (executeDAG: dag.target instead of the leaves).
                contained = ("delete" if escalate else "quarantine") if contain == "quarantine" else contain
                dag.target = " ".join(t for t in ("copy", contained, "analyze") if t)
                Task(
                    name="analyze",
                    template="analyze",
                    depends="copy.Succeeded",
                    continue_on=m.ContinueOn(failed=True, error=True),
                    arguments=_args(manifest_uri=_from("copy", "manifest-uri"), sha256=_from("copy", "sha256")),
                )
    # The exit handler is called by name, so its inputs come from the workflow's parameters.
    _bind_exit_inputs(wt)
    return wt


def _bind_exit_inputs(wt: WorkflowTemplate) -> None:
    for template in wt.templates:
        if getattr(template, "name", None) == "report":
            template.inputs = [Parameter(name=p.name, value=_wf(p.name)) for p in template.inputs]


def _describe(pipeline: str, isolate: bool) -> str:
    if isolate:
        return {
            "checkpoint-and-quarantine": "Verify the alert and network-isolate the pod, checkpoint the container (CRIU), "
            "copy the archive to object storage, and detach the pod.",
            "checkpoint-and-delete": "Verify the alert and network-isolate the pod, checkpoint the container (CRIU), "
            "copy the archive to object storage, and delete the pod.",
            "quarantine": "Verify the alert and network-isolate the pod, then detach it.",
            "delete": "Verify the alert and network-isolate the pod, then delete it.",
        }[pipeline]
    return {
        "checkpoint-and-quarantine": "Verify the alert, checkpoint the container (CRIU), copy the archive to "
        "object storage, and network-isolate and detach the pod.",
        "checkpoint-and-delete": "Verify the alert, checkpoint the container (CRIU), copy the archive to "
        "object storage, and delete the pod.",
        "checkpoint-only": "Verify the alert, checkpoint the container (CRIU) and copy the archive to object storage.",
        "quarantine": "Verify the alert, then network-isolate and detach the pod.",
        "delete": "Verify the alert, then delete the pod.",
    }[pipeline]


def build_all(settings: Settings) -> list[WorkflowTemplate]:
    """Every pipeline isolate-first, plus the evidence-first variant of those where order matters."""
    from pipelines import doctor  # the preflight, falco-doctor (engine/doctor.py), beside the pipelines

    return [build(p, settings) for p in names.PIPELINES] + [
        build(p, settings, "evidence-first") for p in names.ORDERED_PIPELINES
    ] + [doctor.build(settings)]
