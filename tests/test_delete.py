"""delete step, through `python -m steps.delete` against the stand-in API."""

from __future__ import annotations

import copy

from tests.test_verify import add_web_pod, check_hostile_flags, run_batch, run_step


def flags(**over: str) -> dict[str, str]:
    out = {
        "namespace": "default",
        "pod": "web-1",
        "grace-period": "5",
        "dry-run": "false",
        "protected-namespaces": "kube-system,falco,argo",
    }
    out.update(over)
    return out


def test_delete_outcomes_deleted_already_gone_and_dry_run(kube, tmp_path):
    add_web_pod(kube)
    uid = add_web_pod(kube, name="web-2")["metadata"]["uid"]
    add_web_pod(kube, name="doomed")
    add_web_pod(kube, name="kept")
    kept = copy.deepcopy(kube.get("pods", "default", "kept"))

    def vanish(method: str, path: str) -> None:  # gone between our GET and our DELETE
        if method == "DELETE" and path.endswith("/pods/doomed"):
            kube.delete("pods", "default", "doomed")

    kube.on_request(vanish)
    runs = run_batch(
        kube,
        "delete",
        {
            "deleted": flags(),
            "deleted-by-uid": flags(pod="web-2", **{"grace-period": "0", "pod-uid": uid}),
            "missing": flags(pod="gone"),
            "vanishing": flags(pod="doomed"),
            "dry-run": flags(pod="kept", **{"dry-run": "true"}),
        },
        tmp_path,
    )
    for what, run in runs.items():
        assert run.rc == 0, (what, run.stderr)
    assert runs["deleted"].outputs == {"result": "deleted"}
    assert runs["deleted-by-uid"].outputs == {"result": "deleted"}
    assert kube.get("pods", "default", "web-1") is None and kube.get("pods", "default", "web-2") is None
    assert "deleted pod default/web-1" in runs["deleted"].stdout
    assert [(m, s) for m, p, s in kube.requests if p.endswith("/pods/web-1")] == [("GET", 200), ("DELETE", 200)]
    grace = {d["name"]: d.get("gracePeriodSeconds") for d in kube.deletions}
    assert grace["web-1"] == 5 and grace["web-2"] == 0
    assert runs["missing"].outputs == {"result": "already-gone"}
    assert "pod default/gone already gone" in runs["missing"].stdout
    assert runs["vanishing"].outputs == {"result": "already-gone"}
    assert runs["dry-run"].outputs == {"result": "dry-run"}
    assert "would delete pod default/kept" in runs["dry-run"].stdout
    assert kube.get("pods", "default", "kept") == kept
    assert [m for m, p, _ in kube.requests if p.endswith("/pods/kept")] == ["GET"]


def test_refusals_replaced_pod_hostile_values_bad_grace_periods_protected_namespaces(kube, tmp_path):
    add_web_pod(kube)
    extra = {f"grace {g!r}": flags(**{"grace-period": g}) for g in ("-1", "1.5", "1e3", "", "999999")}
    extra["protected"] = flags(namespace="kube-system")
    errors = check_hostile_flags(kube, "delete", flags(), tmp_path, extra=extra)
    assert "grace-period: '-1' is not a whole number of seconds >= 0" in errors["grace '-1'"]
    assert "namespace kube-system is protected" in errors["protected"]
    before = len(kube.requests)
    run = run_step(kube, "delete", flags(**{"pod-uid": "00000000-0000-4000-8000-000000000000"}), tmp_path)
    assert run.rc == 1 and "was replaced since the alert" in run.error
    assert [m for m, _, _ in kube.requests[before:]] == ["GET"]
    assert kube.get("pods", "default", "web-1") is not None


def test_transient_burst_is_survived_and_403_is_not_retried(kube, tmp_path):
    add_web_pod(kube)
    add_web_pod(kube, name="web-2")
    kube.fail_next(429, count=2, method="DELETE", path="/pods/web-1$")
    kube.fail_next(503, count=1, method="DELETE", path="/pods/web-1$")
    kube.fail_next(403, count=1, method="DELETE", path="/pods/web-2$")
    runs = run_batch(kube, "delete", {"burst": flags(), "forbidden": flags(pod="web-2")}, tmp_path)
    assert runs["burst"].rc == 0, runs["burst"].stderr
    assert runs["burst"].outputs["result"] == "deleted"
    assert [s for m, p, s in kube.requests if m == "DELETE" and p.endswith("/web-1")] == [429, 429, 503, 200]
    assert kube.get("pods", "default", "web-1") is None
    assert runs["forbidden"].rc == 1 and "cannot delete pod default/web-2: 403" in runs["forbidden"].error
    assert [s for m, p, s in kube.requests if m == "DELETE" and p.endswith("/web-2")] == [403]
    assert kube.get("pods", "default", "web-2") is not None
