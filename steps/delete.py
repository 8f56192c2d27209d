"""delete: delete the compromised pod (after the evidence was taken, in the *-delete pipelines).

A pod that is already gone is a success ("already gone"): the goal is that it no longer runs.
With --pod-uid the delete carries a UID precondition, so a pod recreated under the same name
(StatefulSet) is never deleted in its place. --dry-run=true reads the pod and logs what it would
delete. Output: result (deleted | already-gone | dry-run).

RBAC: pods get, delete.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from engine.patterns import DEFAULT_PROTECTED
from steps import common
from steps.common import api_status, body, Refused, StepError
from steps.common import pod_uid, protected

GRACE = re.compile(r"^[0-9]{1,5}$")


def parse(argv: Sequence[str] | None):
    parser = common.Parser("delete", __doc__.splitlines()[0])
    parser.flag("namespace", common.dns_label)
    parser.flag("pod", common.dns_subdomain)
    parser.flag("pod-uid", pod_uid, default="")
    parser.flag("grace-period", grace_period, default="0")
    parser.flag("dry-run", common.boolean, default="false")
    parser.flag("protected-namespaces", default=",".join(DEFAULT_PROTECTED))
    args = parser.parse(argv)
    protected(args.namespace, args.protected_namespaces)
    return args


def grace_period(name: str, value: str) -> int:
    if not GRACE.fullmatch(value):
        raise Refused(f"{name}: {value[:80]!r} is not a whole number of seconds >= 0")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    where = f"{args.namespace}/{args.pod}"
    common.log(f"delete: {'dry run: ' if args.dry_run else ''}pod {where}, grace period {args.grace_period}s")

    from steps import kube as client

    core = client.CoreV1Api(common.kube_api_client())
    result = None
    try:
        pod = body(
            common.retry(lambda: core.read_namespaced_pod(args.pod, args.namespace, _preload_content=False), f"get pod {where}")
        )
    except client.ApiException as exc:
        if api_status(exc) != 404:
            raise StepError(f"cannot read pod {where}: {common.describe(exc)}") from exc
        common.log(f"delete: pod {where} already gone")
        result = "already-gone"

    if result is None:
        uid = pod["metadata"].get("uid", "")
        node = (pod.get("spec") or {}).get("nodeName") or "(none)"
        if args.pod_uid and uid != args.pod_uid:
            raise Refused(f"pod {where} has uid {uid}, not {args.pod_uid}: it was replaced since the alert; not deleting it")
        if args.dry_run:
            common.log(f"delete: dry run: would delete pod {where} (uid {uid}, node {node}) with grace period {args.grace_period}s")
            result = "dry-run"
        else:
            options = {"gracePeriodSeconds": args.grace_period}
            if args.pod_uid:
                options["preconditions"] = {"uid": args.pod_uid}
            try:
                common.retry(
                    lambda: core.delete_namespaced_pod(
                        args.pod,
                        args.namespace,
                        grace_period_seconds=args.grace_period,
                        body=options,
                        _preload_content=False,
                    ),
                    f"delete pod {where}",
                )
                common.log(f"delete: deleted pod {where} (uid {uid}, node {node})")
                result = "deleted"
            except client.ApiException as exc:
                if api_status(exc) != 404:
                    raise StepError(f"cannot delete pod {where}: {common.describe(exc)}") from exc
                common.log(f"delete: pod {where} already gone")
                result = "already-gone"

    common.write_output(args.outputs_dir, "result", result)
    return 0


if __name__ == "__main__":
    sys.exit(common.run(main))
