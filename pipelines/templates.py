"""One Argo container template per step, each calling `python -m steps.<name>` with its flags.

A template owns its inputs, outputs, service account, security context and retry policy, as a
Falco Talon actionner owns its parameters and run. Values reach a step only as `--flag=value`
argv entries (never through a shell), and the whole alert only base64-encoded through an Argo
expression, so that text inside an alert is never substituted again as a template.
"""

from __future__ import annotations

from hera.workflows import Container, Parameter, models as m

from engine import names
from engine.config import Settings

OUT = names.OUTPUTS_DIR
CA_MOUNT = "/etc/kubelet-ca"
REPORT_DEADLINE_SECONDS = 600


def _flags(*names_: str) -> list[str]:
    return [f"--{n}={{{{inputs.parameters.{n}}}}}" for n in names_]


def _outputs(*names_: str) -> list[Parameter]:
    return [
        Parameter(name=n, value_from=m.ValueFrom(path=f"{OUT}/{n}", default=""))
        for n in names_
    ]


def _security(run_as_root: bool = False) -> m.SecurityContext:
    """Pod Security "restricted" and OpenShift's restricted-v2 alike. No fixed UID or GID for the
    non-root steps: restricted-v2's runAsUser MustRunAsRange assigns the namespace's first UID and
    refuses any other (openshift/apiserver-library-go user/mustrunasrange.go), and on Kubernetes
    runAsNonRoot with the image's numeric `USER 65532:65532` (Dockerfile) gives the same identity as
    before. Only copy says root: it reads the kubelet's 0600 root archive (OpenShift: its own SCC)."""
    return m.SecurityContext(
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=not run_as_root,
        run_as_user=0 if run_as_root else None,
        run_as_group=0 if run_as_root else None,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def _retry() -> m.RetryStrategy:
    # Only exit 75 (steps.common.EXIT_TRANSIENT: a transient fault outlived the step's own
    # retries) and pod-level errors are retried; a refusal or a final failure is not.
    return m.RetryStrategy(
        limit="2",
        retry_policy="Always",
        expression="lastRetry.status == 'Error' || lastRetry.exitCode == '75'",
        backoff=m.Backoff(duration="10s", factor="2", max_duration="3m"),
    )


def _tmp() -> tuple[m.Volume, m.VolumeMount]:
    return (
        m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource(size_limit="64Mi")),
        m.VolumeMount(name="tmp", mount_path="/tmp"),
    )


def step(
    settings: Settings,
    step_name: str,
    inputs: list[str],
    outputs: list[str],
    args: list[str],
    *,
    needs_api: bool = True,
    run_as_root: bool = False,
    volumes: list[m.Volume] | None = None,
    mounts: list[m.VolumeMount] | None = None,
    env: list[m.EnvVar] | None = None,
    **extra,
) -> Container:
    tmp_volume, tmp_mount = _tmp()
    return Container(
        name=step_name,
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        command=["python", "-m", f"steps.{step_name}"],
        args=args + [f"--outputs-dir={OUT}"],
        inputs=[Parameter(name=n) for n in inputs],
        outputs=_outputs(*outputs),
        service_account_name=names.step_service_account(step_name),
        # Argo copies this onto the Pod only when it is false (workflowpod.go, setupServiceAccount);
        # a step that calls the API gets its token from its ServiceAccount (automount true there).
        # Without a token of its own, argoexec (init, wait) reports outputs with the executor's
        # token Secret, which Argo mounts for executor.serviceAccountName.
        automount_service_account_token=None if needs_api else False,
        executor=None if needs_api else m.ExecutorConfig(service_account_name=names.step_service_account("executor")),
        security_context=_security(run_as_root),
        retry_strategy=_retry(),
        volumes=[tmp_volume, *(volumes or [])],
        volume_mounts=[tmp_mount, *(mounts or [])],
        env=env,
        # The step's one-line `error: …` becomes the node message the report quotes.
        termination_message_policy="FallbackToLogsOnError",
        resources=m.ResourceRequirements(
            requests={"cpu": "50m", "memory": "64Mi"},
            limits={"memory": "256Mi"},
        ),
        **extra,
    )


def verify(settings: Settings, pipeline: str = "", isolate: bool = False) -> Container:
    inputs = ["namespace", "pod", "container-id", "container-name", "node", "rule", "priority", "alert-time"]
    return step(
        settings,
        "verify",
        inputs,
        ["container-name", "container-id", "pod-uid", "node", "image", "image-id"] + (["isolation"] if isolate else [])
        + ["bundle", "bundle-manifest-uri", "bundle-sha256"],
        _flags(*inputs) + ["--protected-namespaces=" + ",".join(settings.protected_namespaces)]
        + [f"--max-alert-age={settings.max_alert_age_seconds}"]
        + _owner_cap(settings, pipeline)
        + (_isolate(settings) if isolate else [])
        + _evidence_write_flags(settings),
        # the evidence bundle is read before isolation and stored from this pod (steps/bundle.py): put-only.
        # optional: without the Secret the kubelet would not start the pod (CreateContainerConfigError),
        # and isolation must never wait for the evidence store; the bundle then says `failed: ...`.
        env=[
            m.EnvVar(name=e.name, value_from=m.EnvVarSource(secret_key_ref=m.SecretKeySelector(
                name=e.value_from.secret_key_ref.name, key=e.value_from.secret_key_ref.key, optional=True)))
            for e in _evidence_store(settings)[1]
        ],
    )


def _evidence_write_flags(settings: Settings) -> list[str]:
    """Where copy writes the evidence and verify the evidence bundle (steps/bundle.py): the store,
    prefix, Object Lock and encryption."""
    ev = settings.evidence
    return _evidence_store(settings)[0] + [
        f"--prefix={ev.prefix}",
        f"--object-lock-mode={ev.object_lock.mode if ev.object_lock else ''}",
        f"--object-lock-days={ev.object_lock.days if ev.object_lock else 0}",
        f"--sse={ev.sse.algorithm if ev.sse else ''}",
        f"--sse-kms-key-id={(ev.sse.kms_key_id or '') if ev.sse else ''}",
    ]


def _isolate(settings: Settings) -> list[str]:
    """verify's flags for network isolation in its own pod (isolate-first pipelines): quarantine's
    deny-all and label, recorded with the policy and the workflow (steps/verify.py isolate)."""
    q = settings.quarantine
    return [
        "--isolate=true",
        "--policy={{workflow.parameters.policy}}",
        f"--mechanism={q.mechanism}",
        f"--anp-priority={q.admin_network_policy_priority}",
    ]


def _owner_cap(settings: Settings, pipeline: str) -> list[str]:
    """verify's flags for the per-owner cap (steps/owner_cap.py): it records this response as a
    Lease owned by the Workflow and counts the owner's responses before anything is contained."""
    radius = settings.blast_radius
    return [
        f"--max-responses-per-owner={radius.max_responses_per_owner}",
        f"--owner-window-seconds={radius.window_seconds}",
        f"--on-cap-exceeded={radius.on_exceeded}",
        f"--pipeline={pipeline}",
        "--dry-run={{workflow.parameters.dry-run}}",
        "--workflow={{workflow.namespace}}/{{workflow.name}}",
        "--workflow-uid={{workflow.uid}}",
    ]


def checkpoint(settings: Settings) -> Container:
    cp = settings.checkpoint
    # pod-uid and container-id: verify's, checked again right before the POST (steps/checkpoint.py)
    inputs = ["namespace", "pod", "container", "node", "pod-uid", "container-id"]
    args = _flags(*inputs) + [
        f"--path={cp.path}",
        f"--timeout={cp.timeout_seconds}",
    ]
    tls = cp.kubelet_tls
    args.append(f"--address-types={','.join(tls.address_types)}")
    volumes, mounts = [], []
    if tls.insecure_skip_verify:
        args.append("--insecure-skip-tls-verify=true")
    else:
        # The CA bundle as a configMap volume: kube-root-ca.crt (the default) exists in every
        # namespace (kube-controller-manager's root-ca-cert-publisher), so nothing is created.
        args += [f"--ca-bundle={CA_MOUNT}/{tls.ca_bundle_key}", f"--ca-configmap={tls.ca_bundle_configmap}"]
        volumes.append(
            m.Volume(
                name="kubelet-ca",
                config_map=m.ConfigMapVolumeSource(
                    name=tls.ca_bundle_configmap, items=[m.KeyToPath(key=tls.ca_bundle_key, path=tls.ca_bundle_key)]
                ),
            )
        )
        mounts.append(m.VolumeMount(name="kubelet-ca", mount_path=CA_MOUNT, read_only=True))
    return step(
        settings,
        "checkpoint",
        inputs,
        ["archive", "checkpoint-time"],
        args,
        volumes=volumes,
        mounts=mounts,
        active_deadline_seconds=cp.timeout_seconds + 120,
    )


def copy(settings: Settings) -> Container:
    cp = settings.checkpoint
    inputs = [
        "archive", "node", "namespace", "pod", "container", "container-id", "pod-uid",
        "image", "image-id", "rule", "priority", "alert-time", "policy", "bundle-manifest-uri", "bundle-sha256",
    ]
    args = _flags(*inputs) + [
        f"--checkpoint-dir={cp.directory}",
        "--alert-b64={{=sprig.b64enc(workflow.parameters.alert)}}",
        "--workflow-name={{workflow.name}}",
        "--workflow-namespace={{workflow.namespace}}",
        "--workflow-uid={{workflow.uid}}",
    ] + _evidence_write_flags(settings)
    _, env = _evidence_store(settings)
    pin = m.Affinity(
        node_affinity=m.NodeAffinity(
            required_during_scheduling_ignored_during_execution=m.NodeSelector(
                node_selector_terms=[
                    m.NodeSelectorTerm(
                        match_fields=[
                            m.NodeSelectorRequirement(
                                key="metadata.name", operator="In", values=["{{inputs.parameters.node}}"]
                            )
                        ]
                    )
                ]
            )
        )
    )
    return step(
        settings,
        "copy",
        inputs,
        ["evidence-uri", "manifest-uri", "sha256", "size", "version-id"],
        args,
        needs_api=False,
        run_as_root=True,  # the kubelet writes the archive 0600 root in a 0700 directory
        volumes=[m.Volume(name="checkpoints", host_path=m.HostPathVolumeSource(path=cp.directory, type="Directory"))],
        mounts=[m.VolumeMount(name="checkpoints", mount_path=cp.directory)],
        env=env,
        affinity=pin,
        tolerations=[m.Toleration(operator="Exists")],  # the alert's node may be tainted
    )


ANALYZE_TIMEOUT_SECONDS = 600  # the analyzer's own bound (steps/analyze.py --timeout); the pod's is 120 s more


def _evidence_store(settings: Settings) -> tuple[list[str], list[m.EnvVar]]:
    """The S3 flags and the credentials' env of the steps that use the evidence store."""
    ev = settings.evidence
    flags = [f"--bucket={ev.bucket}", f"--endpoint-url={ev.endpoint}", f"--region={ev.region}"]
    env = [
        m.EnvVar(
            name=key,
            value_from=m.EnvVarSource(secret_key_ref=m.SecretKeySelector(name=ev.credentials_secret, key=key)),
        )
        for key in names.EVIDENCE_SECRET_ENV
    ]
    return flags, env


def analyze(settings: Settings) -> Container:
    """Reads the evidence copy stored, from S3 only: no Kubernetes token (argoexec reports with the
    executor's), no hostPath, any node, not root. Outputs shown in the Argo UI (steps/analyze.py)."""
    inputs = ["manifest-uri", "sha256"]
    flags, env = _evidence_store(settings)
    args = _flags(*inputs) + flags + [
        "--workflow-name={{workflow.name}}",
        "--workflow-namespace={{workflow.namespace}}",
        "--workflow-uid={{workflow.uid}}",
        f"--timeout={ANALYZE_TIMEOUT_SECONDS}",
    ]
    a = settings.analysis
    args += [f"--string={text}" for text in a.strings] + [f"--regex={pattern}" for pattern in a.regexes]
    volumes, mounts = [], []
    if a.yara_configmap:  # read-only, from the pipelines' namespace; the step reads the file only
        volumes = [m.Volume(name="yara-rules", config_map=m.ConfigMapVolumeSource(name=a.yara_configmap, items=[
            m.KeyToPath(key=names.YARA_RULES_KEY, path=names.YARA_RULES_KEY)]))]
        mounts = [m.VolumeMount(name="yara-rules", mount_path=names.YARA_RULES_DIR, read_only=True)]
        args.append(f"--yara={names.YARA_RULES_DIR}/{names.YARA_RULES_KEY}")
    return step(
        settings,
        "analyze",
        inputs,
        ["analysis-uri", "analysis-sha256", "summary", "findings", "custody-uri"],
        args,
        needs_api=False,
        env=env,
        active_deadline_seconds=ANALYZE_TIMEOUT_SECONDS + 120,
        labels={names.LABEL_STEP: "analyze"},  # on its pods: what engine/egress.py's NetworkPolicy selects
        volumes=volumes,
        mounts=mounts,
    )


def quarantine(settings: Settings) -> Container:
    # Outputs: result (isolated | not-isolated: <why>), isolated (true | false: what the pipeline's
    # escalation tests; empty when the step ended before judging), removed-labels. argoexec saves
    # them whatever the exit code (workflow/executor/postmain.go PostMain -> SaveParameters).
    inputs = ["namespace", "pod", "pod-uid", "policy", "rule", "priority", "alert-time", "dry-run"]
    q = settings.quarantine
    return step(
        settings,
        "quarantine",
        inputs,
        ["result", "isolated", "removed-labels"],
        _flags(*inputs)
        + [
            "--workflow={{workflow.namespace}}/{{workflow.name}}",
            f"--mechanism={q.mechanism}",
            f"--anp-priority={q.admin_network_policy_priority}",
            "--protected-namespaces=" + ",".join(settings.protected_namespaces),
        ],
    )


def delete(settings: Settings) -> Container:
    inputs = ["namespace", "pod", "pod-uid", "dry-run"]
    return step(
        settings,
        "delete",
        inputs,
        ["result"],
        _flags(*inputs)
        + [
            f"--grace-period={settings.delete_grace_period_seconds}",
            "--protected-namespaces=" + ",".join(settings.protected_namespaces),
        ],
    )


def report(settings: Settings, pipeline: str) -> Container:
    inputs = ["namespace", "pod", "policy", "rule", "priority", "dry-run"]
    notify = settings.notifications
    env = []
    for var, ref in (("SLACK_WEBHOOK_URL", notify.slack_webhook_secret), ("WEBHOOK_URL", notify.webhook_secret)):
        if ref:
            env.append(
                m.EnvVar(
                    name=var,
                    value_from=m.EnvVarSource(
                        secret_key_ref=m.SecretKeySelector(name=ref.name, key=ref.key, optional=True)
                    ),
                )
            )
    return step(
        settings,
        "report",
        inputs,
        ["summary"],
        _flags(*inputs)
        + [
            f"--pipeline={pipeline}",
            "--workflow-name={{workflow.name}}",
            "--workflow-namespace={{workflow.namespace}}",
            "--workflow-status={{workflow.status}}",
        ],
        env=env or None,
        # The exit handler ignores the workflow's deadline and holds the concurrency semaphore
        # until it ends: bound it (and so its pod counts in the Terminating-scoped quota).
        active_deadline_seconds=REPORT_DEADLINE_SECONDS,
        metrics=m.Metrics(
            prometheus=[
                m.Prometheus(
                    name="falco_response_total",
                    help="Falco responses by policy, pipeline and result",
                    labels=[
                        m.MetricLabel(key="policy", value="{{inputs.parameters.policy}}"),
                        m.MetricLabel(key="pipeline", value=pipeline),
                        m.MetricLabel(key="result", value="{{workflow.status}}"),
                    ],
                    counter=m.Counter(value="1"),
                )
            ]
        ),
    )
