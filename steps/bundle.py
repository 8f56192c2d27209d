"""The evidence bundle: the pod as the cluster described it before the response touched it.

What it holds, one file each, every one hashed (SHA-256) in the bundle's own `manifest.json`:
  pod.json                 the pod object verify read (the same read its checks judged)
  owner-<n>-<kind>.json    its controller chain: ReplicaSet -> Deployment, StatefulSet, DaemonSet,
                           Job -> CronJob (the controller ownerReference at each level)
  events.json              the core/v1 Events about this pod (fieldSelector involvedObject.name and
                           involvedObject.uid: this pod instance, not an older pod of the same name)
  networkpolicies.json     the NetworkPolicies of its namespace whose podSelector selects its labels
  node.json                its node
  logs/<container>.log, logs/<container>.previous.log
                           every container's output (init and ephemeral ones too), the previous
                           instance's only when the status names one (lastState.terminated)
Logs are bounded: the last LOG_TAIL_LINES lines and at most LOG_MAX_BYTES per log (the API
server's tailLines and limitBytes: the kubelet takes the tail first, then cuts its end). What was
cut, and anything that could not be read (a 403, a vanished owner), is written in the manifest's
`notes` and `problems`; a partial bundle is still stored. Isolation waits for the reads, so they
share one budget (--bundle-seconds, default 10; logs 4 at a time): a hung kubelet costs at most that,
and what was not read in time is named in `problems`.

Where it runs, and why (the design constraint). The bundle must show the pod BEFORE the first pod
of the response isolates it (the quarantine label, our deny-all NetworkPolicy), and isolation must
stay in that first pod (isolate-first: the attacker keeps the network for one pod start, no more).
A separate bundle step would be a pod that either runs before verify (isolation moves to pod 2) or
after it (the pod is already changed). Argo's native hand-over between pods, output artifacts, needs
an artifact repository and argoexec's own credentials, writes without Object Lock or If-None-Match,
and the stand-in Argo does not implement it. So verify collects the bundle in memory right after
its checks pass and BEFORE it isolates (reads only: pods/log get, events list, networkpolicies list,
nodes get, get on the owner kinds), isolates, and only then uploads (isolation never waits for S3).
The upload uses the evidence-store credentials put-only: every PutObject says `If-None-Match: *`
(no object is ever replaced), carries its SHA-256 (`x-amz-checksum-sha256`, verified by S3), the
same Object Lock and encryption as the checkpoint, and nothing is read, listed or deleted; the one
exception is a HeadObject after a 412, to tell an earlier attempt of this run from somebody else.
A failed collection or upload never stops containment: verify still exits 0 and says
`failed: <why>` in its output `bundle`, which the report quotes. The template names the evidence
Secret `optional: true` for verify: a missing Secret must not keep the pod (and so the isolation)
from starting; the upload then fails for want of credentials, visibly.

Keys: beside the checkpoint (steps/copy.py object_keys), under bundle/:
  <prefix>/<namespace>/<pod>/<container>/<alert time>-<workflow name>/<workflow uid>/bundle/<file>
A response submitted by hand (no alert time) takes verify's clock for the stamp; copy takes its
own, so its folder may then differ by the seconds between the two steps: copy's manifest names the
bundle's manifest by URI and SHA-256 either way.

Pipelines without a checkpoint (quarantine, delete) store the bundle too: it is their only record.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from steps import common
from steps.common import Refused, StepError, body, optional

BUNDLE_SCHEMA = "falco-response.io/evidence-bundle/v1"
LOG_TAIL_LINES = 2000
LOG_MAX_BYTES = 1024 * 1024
MAX_EVENTS = 500  # one page of Events about one pod; more is noted, not fetched
MAX_OWNER_DEPTH = 2  # ReplicaSet -> Deployment, Job -> CronJob
STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
# The owner kinds the bundle reads (kind -> API path prefix, plural); others are noted by reference.
OWNER_KINDS = {
    ("apps/v1", "ReplicaSet"): ("/apis/apps/v1", "replicasets"),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments"),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets"),
    ("apps/v1", "DaemonSet"): ("/apis/apps/v1", "daemonsets"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("batch/v1", "CronJob"): ("/apis/batch/v1", "cronjobs"),
}
# Isolation waits for the collection: every read shares one budget (a hung kubelet serving logs must
# not hold the pod on the network), and what is left when it is spent is skipped and noted.
COLLECT_BUDGET_SECONDS = 10.0
LOG_READERS = 4  # logs read at once (steps/kube.py keeps 4 connections to the API server)


# --- flags ---------------------------------------------------------------------------------------


def add_flags(parser: common.Parser) -> None:
    """verify's flags for the bundle; without --bucket there is no bundle (today's behaviour)."""
    for flag in ("bucket", "endpoint-url", "prefix", "object-lock-mode", "sse", "sse-kms-key-id"):
        parser.flag(flag, default="")
    parser.flag("region", default="us-east-1")
    parser.flag("object-lock-days", common.whole(0, 36500), default="0")
    parser.flag("log-tail-lines", common.whole(1, 100_000), default=str(LOG_TAIL_LINES))
    parser.flag("log-max-bytes", common.whole(1024, 16 * 1024 * 1024), default=str(LOG_MAX_BYTES))
    parser.flag("bundle-seconds", common.whole(1, 120), default=f"{COLLECT_BUDGET_SECONDS:g}")


def check(args) -> None:
    """The S3 flags, checked as copy checks them (steps/copy.py parse): Refused, before any action."""
    if not args.bucket:
        if args.object_lock_mode or args.sse or args.endpoint_url:
            raise Refused("bucket: the evidence bundle's S3 settings need --bucket")
        return
    from engine.patterns import S3_BUCKET, S3_ENDPOINT, S3_PREFIX
    from steps.copy import KMS_KEY, REGION

    common.matching(S3_BUCKET, "an S3 bucket name")("bucket", args.bucket)
    optional(common.matching(S3_ENDPOINT, "an http(s) URL (empty: AWS)"), "endpoint-url", args.endpoint_url)
    common.matching(REGION, "a region name")("region", args.region)
    optional(common.matching(S3_PREFIX, "'/'-separated [A-Za-z0-9._-] segments"), "prefix", args.prefix)
    if any(segment in (".", "..") for segment in args.prefix.split("/")):
        raise Refused(f"prefix: {args.prefix[:80]!r} has a '.' or '..' segment")
    if args.object_lock_mode not in ("", "GOVERNANCE", "COMPLIANCE"):
        raise Refused(f"object-lock-mode: {args.object_lock_mode[:40]!r} is not '', GOVERNANCE or COMPLIANCE")
    if args.object_lock_mode and not args.object_lock_days:
        raise Refused(f"object-lock-days: Object Lock mode {args.object_lock_mode} needs 1 to 36500 days")
    if args.sse not in ("", "AES256", "aws:kms"):
        raise Refused(f"sse: {args.sse[:40]!r} is not '', AES256 or aws:kms")
    optional(common.matching(KMS_KEY, "a KMS key id, alias or ARN"), "sse-kms-key-id", args.sse_kms_key_id)
    if args.sse_kms_key_id and args.sse != "aws:kms":
        raise Refused("sse-kms-key-id: a KMS key only goes with --sse=aws:kms")
    if not (args.workflow and args.workflow_uid):
        raise Refused("--bucket (the evidence bundle) needs --workflow and --workflow-uid (its keys name the run)")


# --- collect -------------------------------------------------------------------------------------


@dataclass
class Bundle:
    files: dict[str, bytes] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # file -> what was cut or how it was read
    problems: list[str] = field(default_factory=list)  # what could not be read
    collected: str = ""
    finished: str = ""

    def add_json(self, name: str, document: object) -> None:
        self.files[name] = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class OutOfTime(StepError):
    """The collection's budget is spent: the read was not attempted."""


def _get(api, path: str, what: str, deadline: float, query: dict | None = None, text: bool = False):
    headers = {"Accept": "text/plain"} if text else None

    def attempt():
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise OutOfTime("not read: the bundle's collection budget (--bundle-seconds) was spent before isolation")
        return api.request("GET", path, query=query, headers=headers, timeout=(min(left, 5.0), left))

    response = common.retry(attempt, what, attempts=2)
    return response.data if text else body(response)


def _selects(selector: dict | None, labels: dict) -> bool:
    from steps.quarantine import selects

    return selects(selector, labels)


def _owners(api, bundle: Bundle, pod: dict, deadline: float) -> None:
    namespace, current = pod["metadata"]["namespace"], pod
    for depth in range(1, MAX_OWNER_DEPTH + 1):
        ref = next((r for r in current["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if ref is None:
            return
        where = OWNER_KINDS.get((ref.get("apiVersion"), ref.get("kind")))
        label = f"{ref.get('kind')} {namespace}/{ref.get('name')}"
        if where is None:
            bundle.problems.append(f"owner {label} ({ref.get('apiVersion')}): not a kind the bundle reads; its reference is in pod.json")
            return
        prefix, plural = where
        try:
            owner = _get(api, f"{prefix}/namespaces/{namespace}/{plural}/{ref['name']}", f"get {plural} {namespace}/{ref['name']}",
                         deadline)
        except Exception as exc:  # noqa: BLE001 - a partial bundle says what is missing
            bundle.problems.append(f"owner {label}: {_why(exc)}")
            return
        if owner["metadata"].get("uid") != ref.get("uid"):
            bundle.problems.append(f"owner {label}: the object of that name has another UID (replaced): not recorded")
            return
        bundle.add_json(f"owner-{depth}-{str(ref['kind']).lower()}.json", owner)
        current = owner


def _why(exc: BaseException) -> str:
    if isinstance(exc, StepError):
        return common.one_line(exc, 300)
    return common.one_line(common.describe(exc) if hasattr(exc, "status") else f"{type(exc).__name__}: {exc}", 300)


def _logs(api, bundle: Bundle, pod: dict, tail: int, limit: int, deadline: float) -> None:
    """Every container's log (and previous one), LOG_READERS at a time; results in a fixed order."""
    from concurrent.futures import ThreadPoolExecutor

    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    status = pod.get("status") or {}
    wanted = []
    for key in STATUS_LISTS:
        for entry in status.get(key) or []:
            container = entry.get("name") or ""
            wanted.append((f"logs/{container}.log", container, False))
            if ((entry.get("lastState") or {}).get("terminated") or {}).get("containerID"):
                wanted.append((f"logs/{container}.previous.log", container, True))

    def read(item) -> bytes | BaseException:
        file, container, previous = item
        query = {"container": container, "tailLines": str(tail), "limitBytes": str(limit)}
        if previous:
            query["previous"] = "true"
        try:
            return _get(api, f"/api/v1/namespaces/{namespace}/pods/{name}/log", f"get log {file}", deadline, query, text=True)
        except Exception as exc:  # noqa: BLE001 - noted below
            return exc

    with ThreadPoolExecutor(max(1, min(LOG_READERS, len(wanted)))) as pool:
        results = list(pool.map(read, wanted))
    for (file, _, _), data in zip(wanted, results, strict=True):
        if isinstance(data, BaseException):
            bundle.problems.append(f"{file}: {_why(data)}")
            continue
        bundle.files[file] = data
        cut = []
        if data.count(b"\n") >= tail:
            cut.append(f"only the last {tail} lines requested (tailLines): older output not collected")
        if len(data) >= limit:
            cut.append(f"cut at {limit} bytes (limitBytes): the newest lines of that tail are missing")
        bundle.notes[file] = "; ".join(cut) or "complete"


def collect(api, pod: dict, args, budget: float = COLLECT_BUDGET_SECONDS) -> Bundle:
    """Read everything the bundle holds within `budget` seconds; never raises for a read that fails (noted)."""
    deadline = time.monotonic() + budget
    bundle = Bundle(collected=common.now_rfc3339())
    meta = pod["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta.get("uid", "")
    bundle.add_json("pod.json", pod)
    from engine.names import LABEL_QUARANTINED

    if (meta.get("labels") or {}).get(LABEL_QUARANTINED):
        bundle.notes["pod.json"] = f"the pod already carried {LABEL_QUARANTINED} when read (an earlier response or attempt)"
    _owners(api, bundle, pod, deadline)
    try:
        selector = f"involvedObject.name={name}" + (f",involvedObject.uid={uid}" if uid else "")
        events = _get(api, f"/api/v1/namespaces/{namespace}/events", f"list events of pod {namespace}/{name}", deadline,
                      {"fieldSelector": selector, "limit": str(MAX_EVENTS)})
        if (events.get("metadata") or {}).get("continue"):
            bundle.notes["events.json"] = f"the first {MAX_EVENTS} Events only; more were not collected"
        bundle.add_json("events.json", events)
    except Exception as exc:  # noqa: BLE001
        bundle.problems.append(f"events.json: {_why(exc)}")
    try:
        policies = _get(api, f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
                        f"list networkpolicies in {namespace}", deadline)
        labels = meta.get("labels") or {}
        selecting = [p for p in policies.get("items") or [] if _selects((p.get("spec") or {}).get("podSelector"), labels)]
        bundle.add_json("networkpolicies.json", {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
                                                 "metadata": policies.get("metadata") or {}, "items": selecting})
        bundle.notes["networkpolicies.json"] = f"{len(selecting)} of the namespace's {len(policies.get('items') or [])} select the pod's labels"
    except Exception as exc:  # noqa: BLE001
        bundle.problems.append(f"networkpolicies.json: {_why(exc)}")
    node = (pod.get("spec") or {}).get("nodeName") or ""
    if node:
        try:
            bundle.add_json("node.json", _get(api, f"/api/v1/nodes/{node}", f"get node {node}", deadline))
        except Exception as exc:  # noqa: BLE001
            bundle.problems.append(f"node.json: {_why(exc)}")
    _logs(api, bundle, pod, args.log_tail_lines, args.log_max_bytes, deadline)
    bundle.finished = common.now_rfc3339()
    return bundle


# --- store ---------------------------------------------------------------------------------------


def folder(args, container: str) -> str:
    """The checkpoint's folder (steps/copy.py object_keys), with verify's flags."""
    stamp = (common.alert_datetime(args.alert_time).astimezone(timezone.utc) if args.alert_time
             else datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    workflow = args.workflow.partition("/")[2]
    run = (f"{stamp}-{workflow}", args.workflow_uid)
    return "/".join(p for p in (args.prefix, args.namespace, args.pod, container, *run) if p) + "/bundle"


def _metadata(args, pod: dict, container: str, sha256_hex: str) -> dict[str, str]:
    return {
        "sha256": sha256_hex,
        "namespace": args.namespace,
        "pod": args.pod,
        "container": container,
        "workflow": args.workflow,
        "workflow-uid": args.workflow_uid,
        "pod-uid": pod["metadata"].get("uid", ""),
    }


def upload(args, pod: dict, container: str, bundle: Bundle) -> dict:
    """Put every file, then the manifest; {"uri", "sha256", "version_id", "files"} of the manifest."""
    from steps import copy as s3

    s3.credentials()  # a Refused here is a failed upload, reported by the caller
    client = s3.s3_client(args)
    base = folder(args, container)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    lock_until = now + timedelta(days=args.object_lock_days) if args.object_lock_mode else None

    def put(key: str, data: bytes, content_type: str, sha256_hex: str) -> tuple[str, int, str]:
        """(sha256, size, how) of what the key holds once written."""
        digest = bytes.fromhex(sha256_hex)
        where = f"s3://{args.bucket}/{key}"

        def earlier(error: StepError) -> dict:
            head = s3.call(f"head {where}", lambda: client.head_object(Bucket=args.bucket, Key=key))
            meta = head.get("Metadata") or {}
            if meta.get("workflow-uid") != args.workflow_uid:
                raise StepError(f"{where} already exists and is not of this run: evidence is written once, nothing was overwritten") from error
            return {"kept": head}

        answer = s3.write_once(
            f"put {where}",
            lambda: client.put_object(
                Bucket=args.bucket, Key=key, Body=data, ContentLength=len(data), ContentType=content_type,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=s3.b64(digest), IfNoneMatch="*",
                Metadata=_metadata(args, pod, container, sha256_hex), **s3.protection(args, lock_until),
            ),
            earlier,
        )  # fmt: skip
        if "kept" in answer:
            head = answer["kept"]
            stored = (head.get("Metadata") or {}).get("sha256", "")
            common.log(f"verify: bundle: {where} was stored by an earlier attempt of this run: kept")
            return stored, int(head.get("ContentLength") or 0), "kept"
        return sha256_hex, len(data), answer.get("VersionId") or ""

    entries = []
    for name, data in sorted(bundle.files.items()):
        digest = hashlib.sha256(data).hexdigest()
        key = f"{base}/{name}"
        kind = "text/plain" if name.endswith(".log") else "application/json"
        stored, size, how = put(key, data, kind, digest)
        entry = {"name": name, "key": key, "sha256": stored, "size": size}
        if how == "kept" and stored != digest:
            bundle.notes[name] = "stored by an earlier attempt of this run (its hash is listed), not this attempt's read"
        entries.append(entry)
    meta = pod["metadata"]
    document = {
        "schema": BUNDLE_SCHEMA,
        "bucket": args.bucket,
        "target": {"namespace": args.namespace, "pod": args.pod, "pod_uid": meta.get("uid", ""), "container": container,
                   "node": (pod.get("spec") or {}).get("nodeName") or ""},
        "workflow": {"ref": args.workflow, "uid": args.workflow_uid},
        "rule": args.rule,
        "alert_time": args.alert_time,
        "collected": {"started": bundle.collected, "finished": bundle.finished,
                      "before": "isolation: read by verify before its network isolation and before any other step"},
        "limits": {"log_tail_lines": args.log_tail_lines, "log_max_bytes": args.log_max_bytes, "max_events": MAX_EVENTS},
        "files": entries,
        "notes": dict(sorted(bundle.notes.items())),
        "problems": bundle.problems,
        "object_lock": ({"mode": args.object_lock_mode, "retain_until": lock_until.strftime("%Y-%m-%dT%H:%M:%SZ")}
                        if lock_until else None),
    }  # fmt: skip
    data = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    key = f"{base}/manifest.json"
    stored, _, how = put(key, data, "application/json", digest)
    return {"uri": f"s3://{args.bucket}/{key}", "sha256": stored, "version_id": "" if how == "kept" else how,
            "files": entries, "problems": bundle.problems}


# --- what verify calls ----------------------------------------------------------------------------


def take(args, api, pod: dict) -> Bundle | None:
    """Collect, before isolation; None when no bundle is configured. Never raises."""
    if not args.bucket:
        return None
    try:
        bundle = collect(api, pod, args, args.bundle_seconds)
    except Exception as exc:  # noqa: BLE001 - a bundle never stops containment
        bundle = Bundle(problems=[f"collection failed: {_why(exc)}"])
    common.log(
        f"verify: bundle: collected {len(bundle.files)} files ({sum(map(len, bundle.files.values()))} bytes) before isolation"
        + (f"; not read: {'; '.join(bundle.problems)}" if bundle.problems else "")
    )
    return bundle


def store(args, pod: dict, container: str, bundle: Bundle | None) -> dict[str, str]:
    """Upload after isolation; verify's outputs bundle, bundle-manifest-uri, bundle-sha256. Never raises."""
    if bundle is None:
        return {}
    if not bundle.files:
        return {"bundle": "failed: " + common.one_line("; ".join(bundle.problems) or "nothing collected", 300),
                "bundle-manifest-uri": "", "bundle-sha256": ""}
    try:
        stored = upload(args, pod, container, bundle)
    except Exception as exc:  # noqa: BLE001 - isolation is what matters first; say it, go on
        why = str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
        common.log(f"verify: warning: the evidence bundle was not stored: {common.one_line(why, 300)}")
        return {"bundle": "failed: " + common.one_line(why, 300), "bundle-manifest-uri": "", "bundle-sha256": ""}
    for entry in stored["files"]:
        common.log(f"verify: bundle: {entry['name']} sha256 {entry['sha256']} ({entry['size']} bytes)")
    state = "stored" if not bundle.problems else f"stored, partial ({len(bundle.problems)} not read)"
    common.log(f"verify: bundle: {state}: {stored['uri']} sha256 {stored['sha256']}")
    return {"bundle": f"{state}: {stored['uri']}", "bundle-manifest-uri": stored["uri"], "bundle-sha256": stored["sha256"]}

