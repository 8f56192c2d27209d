"""`falco-response demo [--event PATH] [--policy NAME]`: one Falco alert, end to end, on the local stand-in world.

Starts the stand-in world (FakeKube: API server and a kubelet on node-1; S3Server: moto with an
Object Lock bucket; the webhook EventSource from build/ on a free port, serving TLS with the
certificate build/create-secrets.sh makes), creates the workload the alert is about (a
Deployment-owned pod and a Service selecting it), then does what the cluster would do: Falcosidekick
posts the alert with the bearer token over HTTPS, verifying the certificate with its CA, the Sensors from build/ decide
(standin.argo.events.sensors), the Workflow is submitted (409 AlreadyExists = deduplicated) and run
against its WorkflowTemplate from build/pipelines (standin.argo.workflows), every step through its real
entrypoint. Then it shows the DAG, the evidence (re-verified by downloading and hashing it), the
pod's final state, the NetworkPolicy and the Kubernetes Event.

`--policy NAME` forces a policy (its Sensor's trigger, filters bypassed) or a pipeline by name,
to demo each pipeline. Exit status 0 when the response succeeded.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine import lint, names, simulate
from standin.argo.events import sensors as sensorsim
from standin.argo.events.webhook import WebhookEndpoint, WebhookServer, serving_tls
from standin.argo.workflows import LocalRunner, RunResult, TaskRun

DEFAULT_EVENT = "01_terminal_shell_in_container.falco-docs.json"
NODE = "node-1"
RETENTION_DAYS = 1
BACKOFF_SCALE = 0.01


def default_event() -> Path:
    from standin import shared_dir

    return shared_dir() / "falco-events" / DEFAULT_EVENT


@dataclass
class DemoResult:
    exit_code: int
    decision: simulate.Decision | None = None
    run: RunResult | None = None
    workflow_name: str | None = None
    workflow_namespace: str | None = None
    deduplicated: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)
    pod: dict | None = None
    networkpolicies: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    unauthenticated_status: int | None = None
    posted_status: int | None = None


class Demo:
    """The stand-in world plus the build/ manifests. Use as a context manager, then `run(alert)`."""

    def __init__(
        self,
        build_dir: str | Path = "build",
        workdir: str | Path | None = None,
        out: IO[str] | None = None,
        step_env: dict[str, str] | None = None,
        backoff_scale: float = BACKOFF_SCALE,
        runner_options: dict[str, Any] | None = None,
        kubelet_tls: str = "cluster-ca",
        reverse_shell: bool = False,
    ) -> None:
        self.build_dir = Path(build_dir)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="falco-response-demo-"))
        self.out = out or sys.stdout
        self.step_env = dict(step_env or {})
        self.backoff_scale = backoff_scale
        self.runner_options = dict(runner_options or {})  # more LocalRunner keywords (tests: active_deadline_seconds)
        # The node's kubelet certificate (standin.kube.pki: cluster-ca or self-signed) and whether the
        # alert's container holds an established TCP connection (a reverse shell; the node's CRIU
        # configuration has no tcp-established).
        self.kubelet_tls = kubelet_tls
        self.reverse_shell = reverse_shell
        self.token = secrets.token_urlsafe(24)
        self._falcosidekick_outputs: dict[str, Any] = {}  # token -> the Falcosidekick deployed with it
        self.kube = None
        self.s3 = None
        self.webhook: WebhookServer | None = None
        self._print_lock = threading.Lock()

    # --- output -----------------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

    # --- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> "Demo":
        from standin.kube import FakeKube
        from standin.s3 import S3Server

        self.spec = sensorsim.load_eventsource(self.build_dir)
        self.sensors = sensorsim.load_sensors(self.build_dir)
        if not self.sensors:
            raise simulate.InputError(f"no Sensor in {self.build_dir}/sensors (run `make build`)")
        self.runner_templates = LocalRunner(None, self.build_dir).workflow_templates()
        self.kube = FakeKube(self.workdir / "kube").start()
        try:
            self.kube.add_node(NODE, tls=self.kubelet_tls)
            self.s3 = S3Server().start()
            self.bucket, self.region = self._evidence_settings()
            self.s3.create_bucket(self.bucket, object_lock=True)
            # what `kubectl apply -k build/` and build/create-secrets.sh put in a cluster
            self.kube.apply_build(self.build_dir)
            self.kube.apply(self._evidence_credentials())
            self.s3.client().put_object_lock_configuration(
                Bucket=self.bucket,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": RETENTION_DAYS}},
                },
            )
            self.endpoint = WebhookEndpoint(self.spec, self.token)
            # create-secrets.sh (token, the EventSource's certificate, Falcosidekick's CA) against a stand-in
            # kubectl; the EventSource serves TLS from that Secret when build/ says so.
            self.tls = serving_tls(self.build_dir, self.falcosidekick(self.token).objects)
            self.webhook = WebhookServer(self.endpoint, tls=self.tls).start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.webhook:
            self.webhook.stop()
        if self.s3:
            self.s3.stop()
        if self.kube:
            self.kube.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _evidence_settings(self) -> tuple[str, str]:
        """Bucket and region the copy step of build/pipelines writes to."""
        for wt in self.runner_templates.values():
            for t in wt["spec"].get("templates") or []:
                args = (t.get("container") or {}).get("args") or []
                if (t.get("container") or {}).get("command", [])[-1:] == ["steps.copy"]:
                    found = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--") and "=" in a}
                    return found.get("--bucket", "falco-evidence"), found.get("--region", "us-east-1")
        return "falco-evidence", "us-east-1"

    def _evidence_credentials(self) -> list[dict]:
        """The Secret every secretKeyRef to S3 credentials names (the evidence store's), in its namespace."""
        creds = self.s3.credentials
        found: dict[tuple[str, str], dict[str, str]] = {}
        for wt in self.runner_templates.values():
            namespace = wt["metadata"].get("namespace") or "default"
            for t in wt["spec"].get("templates") or []:
                for env in (t.get("container") or {}).get("env") or []:
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                    if ref and ref["key"] in creds:
                        found.setdefault((namespace, ref["name"]), {})[ref["key"]] = creds[ref["key"]]
        return [
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": namespace},
             "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
            for (namespace, name), data in sorted(found.items())
        ]

    def sensor_token(self, decision: simulate.Decision) -> str:
        """The identity `argo submit` has in the Sensor's pod: the Sensor's ServiceAccount
        (spec.template.serviceAccountName), so build/rbac's Sensor Role is what allows the submit."""
        name = decision.sensor.sensor if decision.sensor else None
        sensor = next((s for s in self.sensors if s["metadata"]["name"] == name), self.sensors[0])
        account = ((sensor.get("spec") or {}).get("template") or {}).get("serviceAccountName") or "default"
        return self.kube.service_account_token(sensor["metadata"].get("namespace") or "default", account)

    # --- the workload ---------------------------------------------------------------------------

    def create_workload(self, alert: dict) -> dict:
        namespace, pod, short_id = workload_identity(alert)
        fields = alert["output_fields"]
        repo = str(fields.get("container.image.repository") or "nginx")
        tag = str(fields.get("container.image.tag") or "latest")
        container = str(fields.get("container.name") or repo.rsplit("/", 1)[-1] or "app")
        parts = pod.rsplit("-", 2)
        app = parts[0] if len(parts) == 3 and len(parts[1]) >= 5 and len(parts[2]) == 5 else pod
        template_hash = parts[1] if app != pod else "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(10))
        labels = {"app": app, "pod-template-hash": template_hash}
        full_id = short_id + secrets.token_hex(26)
        self.kube.add_namespace(namespace)
        rs = f"{app}-{template_hash}"
        self.kube.create("deployments", {
            "metadata": {"name": app, "namespace": namespace, "labels": {"app": app}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [{"name": container, "image": f"{repo}:{tag}"}]}}},
            "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1},
        })
        self.kube.add_replicaset(namespace, rs, labels, labels=labels, owner={"kind": "Deployment", "name": app})
        self.kube.add_pod(
            namespace, pod, NODE,
            [{"name": container, "image": f"{repo}:{tag}", "id": full_id, "tcp_established": self.reverse_shell}],
            labels=labels, owner={"kind": "ReplicaSet", "name": rs},
        )
        self.kube.add_service(namespace, app, {"app": app})
        return {"namespace": namespace, "pod": pod, "container": container, "container_id": full_id,
                "app": app, "replicaset": rs, "service": app, "image": f"{repo}:{tag}"}

    # --- the run ----------------------------------------------------------------------------------

    def falcosidekick(self, token: str) -> "Any":
        """Falcosidekick as deployed from build/: falcosidekick-values.yaml plus the Secret that
        create-secrets.sh makes for `token` (standin.falcosidekick runs it against a stand-in kubectl)."""
        from standin import falcosidekick

        cache = self._falcosidekick_outputs
        if token not in cache:
            first = next(iter(cache.values()), None)  # the same cluster: the script reuses the certificate
            cache[token] = falcosidekick.from_build(self.build_dir, token, self.workdir / f"falcosidekick-{len(cache)}",
                                                    state=first.state if first else None)
        return cache[token]

    def post(self, body: bytes, token: str | None) -> "Any":
        """POST the alert as that Falcosidekick does (its method, headers and TLS: the address's name verified
        with its CA when checkcert), the Service's name resolving to the stand-in EventSource; with no token,
        as a client that has none (Falcosidekick's own headers, the same trust)."""
        import dataclasses

        from standin import falcosidekick

        output = self.falcosidekick(token if token is not None else self.token)
        if token is None:
            output = dataclasses.replace(output, headers=falcosidekick.request_headers({}))
        try:
            return falcosidekick.send(output, body, dial=self.webhook.address)
        except falcosidekick.PostError as exc:
            return falcosidekick.Answer(0, f"error: {exc}")

    def run(self, alert_bytes: bytes, policy: str | None = None, source: str = "") -> DemoResult:
        started = time.time()
        say = self.say
        alert = simulate.check_alert(alert_bytes, self.spec)
        say("falco-response demo: one Falco alert end to end, on the local stand-in world")
        say(f"  alert   {source or '(given)'}")
        say(f"  build   {self.build_dir}/ : EventSource {self.spec.eventsource}, {len(self.sensors)} Sensors, "
            f"{len(self.runner_templates)} WorkflowTemplates")
        say()
        say("[1/6] stand-in world")
        workload = self.create_workload(alert)
        say(f"  Kubernetes API  {self.kube.url} (FakeKube), node {NODE} with its kubelet at {self.kube.kubelet_url(NODE)}")
        say(f"  kubelet TLS     {self.kubelet_tls}: " + (
            "its own throwaway CA, the certificate names only the hostname (kubeadm/kind default)"
            if self.kubelet_tls == "self-signed" else
            "signed by the cluster CA (ConfigMap kube-root-ca.crt), names the hostname and addresses"))
        if self.reverse_shell:
            say(f"  reverse shell   container {workload['container']} holds an established TCP connection; "
                f"{NODE}'s /etc/criu/runc.conf has no tcp-established")
        say(f"  RBAC            {self.build_dir}/rbac applied: every pod and the Sensor authenticate as their own "
            "ServiceAccount, the API server and the kubelet authorise each call")
        say(f"  S3              {self.s3.url} (moto): bucket {self.bucket}, Object Lock on, default retention GOVERNANCE {RETENTION_DAYS} day")
        say(f"  EventSource     {self.webhook.url} ({self.spec.method}, bearer token, maxPayloadSize {self.spec.max_payload_size}"
            + (f", TLS with the certificate in Secret {self.tls.secret} from create-secrets.sh)" if self.tls else ", plain HTTP)"))
        say(f"  workload        Deployment {workload['app']} -> ReplicaSet {workload['replicaset']} -> pod "
            f"{workload['namespace']}/{workload['pod']} on {NODE}, container {workload['container']} "
            f"({workload['image']}, id {workload['container_id'][:12]}...); Service {workload['service']} selects app={workload['app']}")
        say()

        say("[2/6] Falcosidekick posts the alert")
        original_host = alert.get("hostname")
        alert["hostname"] = NODE
        say(f"  Falco's Helm chart sets the hostname to the node name (spec.nodeName); the alert says "
            f"{json.dumps(original_host) if original_host is not None else '(no hostname)'}, so it is posted as "
            f"Falcosidekick on {NODE} would send it: hostname \"{NODE}\"")
        recorded, now_ns = alert.get("time"), time.time_ns()
        alert["time"] = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now_ns // 10**9))}.{now_ns % 10**9:09d}Z"
        say(f"  the recorded alert is timed {recorded}; it is posted with time {alert['time']}, as Falcosidekick "
            "forwards a live event (verify refuses alerts older than settings.max_alert_age_seconds)")
        body = json.dumps(alert, ensure_ascii=False).encode()
        result = DemoResult(exit_code=1)
        denied = self.post(body, None)
        result.unauthenticated_status = denied.status_code
        say(f"  POST {self.spec.endpoint} without Authorization  -> {denied.status_code} {denied.text.strip()}")
        before = len(self.webhook.events)
        accepted = self.post(body, self.token)
        result.posted_status = accepted.status_code
        say(f"  POST {self.spec.endpoint} with the bearer token   -> {accepted.status_code} {accepted.text.strip()}")
        say(f"    headers as Falcosidekick's config.go builds them from {names.FALCOSIDEKICK_HEADERS_ENV} in Secret "
            f"{names.FALCOSIDEKICK_WEBHOOK_SECRET} (config.existingSecret), made by build/create-secrets.sh")
        sidekick = self.falcosidekick(self.token)
        if sidekick.address.startswith("https:"):
            say(f"    to {sidekick.address}: " + ("certificate verified with the CA of config.tlsclient.cacertfile"
                                                  if sidekick.checkcert else "checkcert false: NOT verified"))
        if accepted.status_code != 200 or len(self.webhook.events) != before + 1:
            say("  the EventSource refused the alert: nothing happens")
            return result
        event_data = self.webhook.events[-1]
        header = json.loads(event_data)["header"]
        say(f"  event published: header Authorization = {header.get('Authorization')}")
        say()

        say("[3/6] Sensors from build/sensors decide (Argo Events semantics)")
        decision = simulate.decide(event_data, self.sensors, self.spec)
        simulate.print_decision(decision, out=_Writer(self.say))
        if decision.bug:
            say(f"  ERROR: {decision.bug}")
            return result
        if policy:
            decision = simulate.force(event_data, self.sensors, self.spec, policy)
            say(f"  --policy {policy}: {decision.reason}")
        result.decision = decision
        if decision.workflow is None:
            say(f"  {decision.reason}")
            say("  nothing to run" + ("" if policy else " (use --policy NAME to force a policy or a pipeline)"))
            return result
        wf = decision.workflow
        name, namespace = wf["metadata"]["name"], wf["metadata"]["namespace"]
        result.workflow_name, result.workflow_namespace = name, namespace
        say(f"  -> Workflow {namespace}/{name} from WorkflowTemplate {wf['spec']['workflowTemplateRef']['name']} "
            f"(policy {decision.policy}, pipeline {decision.pipeline})")
        say()

        say("[4/6] submit (argo submit of the Sensor's Workflow)")
        env = {"STEP_RETRY_BASE_DELAY": "0.05", "AWS_ENDPOINT_URL": self.s3.url, "AWS_DEFAULT_REGION": self.region}
        env.update(self.step_env)
        runner = LocalRunner(
            self.kube, self.build_dir, env=env, workdir=self.workdir / "run", on_change=self._progress,
            backoff_scale=self.backoff_scale, **self.runner_options,
        )
        sensor_token = self.sensor_token(decision)
        created, answer = runner.submit(wf, sensor_token)
        if not created:
            say(f"  409 {answer.get('reason')}: {answer.get('message')}: deduplicated, nothing to run")
            result.deduplicated = True
            result.exit_code = 0
            return result
        who = self.kube.identity(sensor_token)
        say(f"  created workflows.argoproj.io {namespace}/{name} (uid {answer['metadata']['uid']}) as {who.name if who else '?'}")
        again = self.post(body, self.token)
        again_decision = (simulate.force(self.webhook.events[-1], self.sensors, self.spec, policy) if policy
                          else simulate.decide(self.webhook.events[-1], self.sensors, self.spec))
        created_again, answer_again = (
            runner.submit(again_decision.workflow, sensor_token) if again_decision.workflow else (True, {})
        )
        if not created_again:
            say(f"  the same alert again: webhook {again.status_code}, Sensor fires, API server answers "
                f"409 {answer_again.get('reason')}: deduplicated")
        say()

        say(f"[5/6] run against WorkflowTemplate {wf['spec']['workflowTemplateRef']['name']} "
            f"(local runner; steps as subprocesses: python -m steps.<name>; S3 endpoint via AWS_ENDPOINT_URL; "
            f"retry backoff x{self.backoff_scale:g})")
        run = runner.run(namespace, name)
        result.run = run
        say(f"  workflow {run.phase} in {run.duration:.1f}s" + (f": {_short(run.message)}" if run.message else ""))
        for task in run.tasks:  # the failed step's whole error line: what happened and what fixes it
            if task.phase in ("Failed", "Error") and task.message:
                say(f"  {task.name}: {_short(task.message, 1000)}")
        say()

        say("[6/6] result")
        self.show_dag(run)
        result.evidence = self.show_evidence(run)
        result.evidence["bundle"] = self.show_bundle(run)
        result.evidence["analysis"] = self.show_analysis(run)
        verdict = next((t.outputs.get("result") for t in run.tasks if t.name == "quarantine" and t.outputs), None)
        result.pod = self.show_pod(workload, verdict)
        result.networkpolicies = self.show_networkpolicies(workload["namespace"])
        result.events = self.show_events(workload["namespace"])
        say()
        say(f"done in {time.time() - started:.1f}s (set-up included): response {run.phase}")
        result.exit_code = 0 if run.phase == "Succeeded" else 1
        return result

    def _progress(self, task: TaskRun) -> None:
        if task.phase in ("Succeeded", "Failed", "Error", "Omitted"):
            label = "onExit (" + str(task.template) + ")" if task.name == "onExit" else task.name
            extra = f"  {_short(task.message)}" if task.message and task.phase != "Succeeded" else ""
            tries = f", {len(task.attempts)} attempts" if len(task.attempts) > 1 else ""
            self.say(f"  {label:<20} {task.phase:<9} {task.duration:5.1f}s{tries}{extra}")

    # --- showing the outcome ----------------------------------------------------------------------

    def show_dag(self, run: RunResult) -> None:
        say = self.say
        say("  DAG (status.nodes of the Workflow in the API)")
        nodes = (run.workflow or {}).get("status", {}).get("nodes", {})
        for task in run.tasks + ([run.exit_handler] if run.exit_handler else []):
            label = f"onExit: {task.template}" if task.name == "onExit" else task.name
            say(f"    {label:<18} {task.phase:<9} {task.duration:5.1f}s"
                + (f"  ({len(task.attempts)} attempts)" if len(task.attempts) > 1 else "")
                + (f"  {_short(task.message)}" if task.message and task.phase != "Succeeded" else ""))
            for key, value in task.outputs.items():
                if key == "summary":
                    continue
                if value:
                    say(f"        {key} = {value if len(value) <= 110 else value[:107] + '...'}")
        say(f"    ({len(nodes)} nodes in status.nodes)")

    def show_evidence(self, run: RunResult) -> dict:
        say = self.say
        copy = next((t for t in run.tasks if t.template == "copy"), None)
        info: dict[str, Any] = {}
        say("  evidence")
        if copy is None:
            say("    (this pipeline takes no checkpoint)")
            return info
        if copy.phase != "Succeeded":
            objects = self.s3.client().list_object_versions(Bucket=self.bucket).get("Versions", [])
            archives = sorted(p.name for p in Path(self.kube.checkpoint_dir(NODE)).glob("*"))
            say(f"    copy {copy.phase}: {len(objects)} object(s) in s3://{self.bucket}; archives left on {NODE}: {archives or 'none'}")
            info.update({"objects": len(objects), "archives_on_node": archives})
            return info
        uri = copy.outputs.get("evidence-uri", "")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        version = copy.outputs.get("version-id") or None
        client = self.s3.client()
        kwargs = {"Bucket": bucket, "Key": key}
        if version:
            kwargs["VersionId"] = version
        head = client.head_object(**kwargs)
        digest = hashlib.sha256()
        size = 0
        for chunk in client.get_object(**kwargs)["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        sha = digest.hexdigest()
        ok = sha == copy.outputs.get("sha256") and str(size) == copy.outputs.get("size")
        until = head.get("ObjectLockRetainUntilDate")
        info = {
            "uri": uri, "sha256": sha, "size": size, "version_id": version, "verified": ok,
            "lock_mode": head.get("ObjectLockMode"), "retain_until": until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None,
            "manifest_uri": copy.outputs.get("manifest-uri"),
            "archives_on_node": sorted(p.name for p in Path(self.kube.checkpoint_dir(NODE)).glob("*")),
        }
        say(f"    uri          {uri}")
        say(f"    version      {version}")
        say(f"    sha256       {sha}  ({'re-verified: downloaded and hashed, matches the step output' if ok else 'MISMATCH with the step output ' + str(copy.outputs.get('sha256'))})")
        say(f"    size         {size} bytes")
        say(f"    object lock  {info['lock_mode']} until {info['retain_until']}")
        say(f"    manifest     {info['manifest_uri']}")
        say(f"    on {NODE}     archives left in the checkpoint directory: {info['archives_on_node'] or 'none (moved to S3)'}")
        return info

    def show_bundle(self, run: RunResult) -> dict:
        """The evidence bundle verify read before isolating (steps/bundle.py): every file of its
        manifest downloaded and hashed again."""
        verify = next((t for t in run.tasks if t.template == "verify"), None)
        outputs = verify.outputs if verify else {}
        self.say(f"  evidence bundle (read by verify before isolation): {outputs.get('bundle') or 'none'}")
        uri = outputs.get("bundle-manifest-uri") or ""
        if not uri:
            return {}
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        client = self.s3.client()
        raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        manifest = json.loads(raw)
        files = []
        for entry in manifest.get("files") or []:
            data = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            ok = hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
            files.append({**entry, "verified": ok})
            self.say(f"    {entry['name']:<26} {entry['sha256']}  {entry['size']:>7} bytes{'' if ok else '  MISMATCH'}")
        sha = hashlib.sha256(raw).hexdigest()
        self.say(f"    manifest.json              {sha}  (= verify's bundle-sha256: {sha == outputs.get('bundle-sha256')})")
        return {"manifest_uri": uri, "sha256": sha, "files": files, "problems": manifest.get("problems") or []}

    def show_analysis(self, run: RunResult) -> dict:
        """analyze's summary, and analysis.json downloaded and hashed again against its output."""
        analyze = next((t for t in run.tasks if t.template == "analyze"), None)
        if analyze is None:
            return {}
        if analyze.phase != "Succeeded":
            self.say(f"  analysis: {analyze.phase}" + (f": {_short(analyze.message, 300)}" if analyze.message else ""))
            return {"phase": analyze.phase}
        outputs = analyze.outputs
        self.say("  analysis (the analyze step, on the archive as stored)")
        for line in (outputs.get("summary") or "").splitlines():
            self.say(f"    {line}")
        uri = outputs.get("analysis-uri", "")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        sha = hashlib.sha256(self.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
        ok = sha == outputs.get("analysis-sha256")
        self.say(f"    uri          {uri}")
        self.say(f"    sha256       {sha}  ({'re-verified: matches the step output' if ok else 'MISMATCH with the step output'})")
        self.say(f"    custody      {outputs.get('custody-uri', '')}")
        return {"phase": analyze.phase, "uri": uri, "sha256": sha, "verified": ok, "findings": outputs.get("findings", ""),
                "custody_uri": outputs.get("custody-uri", "")}

    def show_pod(self, workload: dict, verdict: str | None = None) -> dict | None:
        """The pod as the API has it; `verdict` is quarantine's own result (isolated or why not)."""
        say = self.say
        pod = self.kube.get("pods", workload["namespace"], workload["pod"])
        where = f"{workload['namespace']}/{workload['pod']}"
        if pod is None:
            say(f"  pod {where}: deleted")
            return None
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        quarantined = labels.get(names.LABEL_QUARANTINED) == "true"
        selected = all(labels.get(k) == v for k, v in {"app": workload["app"]}.items())
        say(f"  pod {where}: {pod['status'].get('phase')}, "
            + ("quarantined" if quarantined else "not quarantined")
            + (", detached (the Service and the ReplicaSet no longer select it)" if quarantined and not selected else "")
            + ("" if quarantined else ", still selected by Service " + workload["service"] if selected else "")
            + (f"; quarantine says: {verdict}" if verdict else ""))
        say(f"    labels       {', '.join(f'{k}={v}' for k, v in labels.items()) or '(none)'}")
        for key, value in (meta.get("annotations") or {}).items():
            if key.startswith(names.DOMAIN):
                say(f"    annotation   {key}: {value}")
        return pod

    def show_networkpolicies(self, namespace: str) -> list[dict]:
        items = self.kube.list("networkpolicies", namespace)
        if not items:
            self.say(f"  NetworkPolicy: none in {namespace}")
        for np in items:
            self.say(f"  NetworkPolicy {namespace}/{np['metadata']['name']}:")
            shown = {"spec": np.get("spec")}
            for line in simulate.to_yaml(shown).splitlines():
                self.say(f"    {line}")
        return items

    def show_events(self, namespace: str) -> list[dict]:
        items = self.kube.list("events", namespace)
        if not items:
            self.say(f"  Kubernetes Event: none in {namespace}")
        for ev in items:
            obj = ev.get("involvedObject") or {}
            self.say(f"  Kubernetes Event {ev.get('type')} {ev.get('reason')} on {obj.get('kind', '').lower()}/{obj.get('name')}"
                     f" (source {(ev.get('source') or {}).get('component') or ev.get('reportingComponent')}):")
            self.say(f"    {ev.get('message')}")
        return items


def _short(message: str, limit: int = 200) -> str:
    """The last non-empty line of a node message (a log tail under FallbackToLogsOnError ends with the error)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    if len(lines) > 1 and last.startswith("(") and last.endswith(")"):  # "(No more retries left)" and the like
        last = f"{lines[-2]} {last}"
    return last if len(last) <= limit else last[: limit - 3] + "..."


def workload_identity(alert: dict) -> tuple[str, str, str]:
    """(namespace, pod, short container id) of the alert, or InputError: no workload to respond on."""
    fields = alert.get("output_fields") if isinstance(alert.get("output_fields"), dict) else {}
    namespace, pod, short_id = (fields.get(k) for k in ("k8s.ns.name", "k8s.pod.name", "container.id"))
    if not all(isinstance(v, str) and v and v != "<NA>" for v in (namespace, pod, short_id)) or short_id == "host":
        raise simulate.InputError(
            "the alert names no container in a Kubernetes pod (k8s.ns.name, k8s.pod.name, container.id): "
            "there is no workload to respond on (`falco-response simulate` explains why nothing fires)"
        )
    return namespace, pod, short_id


class _Writer:
    """A file-like object whose lines go through Demo.say (thread-safe printing)."""

    def __init__(self, say) -> None:
        self._say = say
        self._buf = ""

    def write(self, text: str) -> int:
        self._buf += text
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            self._say(line)
        return len(text)

    def flush(self) -> None:
        pass


def run(args: argparse.Namespace) -> int:
    path = Path(args.event) if args.event else default_event()
    try:
        alert_bytes = simulate.read_input(str(path))
    except simulate.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # refuse what cannot be demonstrated before starting the stand-in world
        build_dir = Path(args.build_dir)
        alert = simulate.check_alert(alert_bytes, sensorsim.load_eventsource(build_dir))
        stale = lint.stale_note(build_dir, args.policy_file)  # said, and the demo runs all the same
        if stale:
            print(stale, file=sys.stderr)
        workload_identity(alert)
        if args.policy:
            simulate.check_policy(sensorsim.load_sensors(build_dir), args.policy)
        with Demo(build_dir, kubelet_tls=args.kubelet_tls, reverse_shell=args.reverse_shell) as demo:
            result = demo.run(alert_bytes, policy=args.policy, source=str(path))
    except simulate.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result.exit_code


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run one Falco alert end to end on the local stand-in world")
    p.add_argument("--event", default=None, help=f"the alert JSON file (default: falco-events/{DEFAULT_EVENT})")
    p.add_argument("--policy", default=None, help="force this policy, or a pipeline by name, whatever the Sensors decide")
    p.add_argument("--build-dir", default="build", help="where the generated manifests are (default: build)")
    p.add_argument("--policy-file", default=None,
                   help="the policy file build/ should come from (default: response.yaml): a stale build/ is said in one line")
    p.add_argument("--kubelet-tls", default="cluster-ca", choices=("cluster-ca", "self-signed"),
                   help="how the node's kubelet got its serving certificate: from the cluster CA (serverTLSBootstrap; "
                        "default) or self-signed (the kubeadm/kind default)")
    p.add_argument("--reverse-shell", action="store_true",
                   help="the alert's container holds an established TCP connection, on a node whose CRIU "
                        "configuration has no tcp-established")
    p.set_defaults(func=run)
