"""OpenShift (issue 8, finding 9): no fixed UIDs; every step under restricted-v2 except what reads the
kubelet's archives, which gets a dedicated SCC when `platform: openshift`.

The step Pods are the ones the stand-in Argo controller builds for a real run (workflowpod.go, after
ServiceAccount admission); SCC admission is standin.openshift, which follows
openshift/apiserver-library-go pkg/securitycontextconstraints (sccadmission/admission.go
computeSecurityContext, sccmatching/provider.go, user/mustrunasrange.go) with restricted-v2 as
openshift/cluster-kube-apiserver-operator bindata/bootkube/scc-manifests/..._scc-restricted-v2.yaml
defines it. `use` of an SCC is decided by the stand-in RBAC from build/rbac plus restricted-v2's
binding to system:authenticated (sccmatching/matcher.go authorizedForSCC).
"""

from __future__ import annotations

import copy
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine import build, config, names
from engine.demo import Demo, default_event
from standin import openshift
from standin.kube.auth import Attributes, User, service_account_user
from standin.kube.rbac import Authorizer

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
NS = "falco-response"
SCC = "falco-response-hostpath"
# Argo's workflow-controller creates the step pods; it may use restricted-v2 only (as every authenticated user).
CONTROLLER = User("system:serviceaccount:argo:argo-workflows-workflow-controller", ("system:serviceaccounts", "system:authenticated"))


def _build(tmp: Path, platform: str) -> Path:
    doc = yaml.safe_load((ROOT / "response.yaml").read_text())
    doc["settings"]["platform"] = platform
    policy = tmp / f"response-{platform}.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp / f"build-{platform}"
    build.write(config.load(policy), out)
    return out


def _objects(build_dir: Path) -> list[dict]:
    return [d for p in sorted(build_dir.rglob("*.yaml")) if p.name != "kustomization.yaml"
            for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict) and "kind" in d]


def _templates(build_dir: Path) -> dict[tuple[str, str], dict]:
    return {(o["metadata"]["name"], t["name"]): t for o in _objects(build_dir) if o["kind"] == "WorkflowTemplate"
            for t in o["spec"]["templates"] if "container" in t}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("platforms")
    return {"kubernetes": _build(tmp, "kubernetes"), "openshift": _build(tmp, "openshift")}


@pytest.fixture(scope="module")
def run(builds, tmp_path_factory):
    """One response end to end (checkpoint-and-quarantine) on the OpenShift build: the step Pods as Argo
    created them, the namespace as an OpenShift project, and who may use which SCC."""
    work = tmp_path_factory.mktemp("openshift-run")
    with Demo(builds["openshift"], workdir=work, out=io.StringIO()) as demo:
        result = demo.run(default_event().read_bytes(), source="test")
        demo.kube.apply(copy.deepcopy(openshift.RESTRICTED_V2_RBAC))
        pods = {p["metadata"]["annotations"]["workflows.argoproj.io/node-name"].rsplit(".", 1)[-1].split("(")[0]: p
                for p in demo.kube.list("pods", NS)}
        authorizer = Authorizer(demo.kube.store)

        def may_use(pod: dict, scc: str, creator: User = CONTROLLER) -> bool:
            account = service_account_user(pod["metadata"].get("namespace") or NS, pod["spec"]["serviceAccountName"])
            return any(authorizer.allowed(Attributes(user, "use", f"/apis/security.openshift.io/v1/securitycontextconstraints/{scc}",
                                                     True, "security.openshift.io", NS, "securitycontextconstraints", "", scc))
                       for user in (creator, account))

        namespace = {"metadata": {"name": NS, "annotations": dict(openshift.PROJECT_ANNOTATIONS)}}
        scc = next(o for o in _objects(builds["openshift"]) if o["kind"] == "SecurityContextConstraints")
        yield {"result": result, "pods": pods, "may_use": may_use, "namespace": namespace, "scc": scc,
               "objects": _objects(builds["openshift"])}


def _admit(run, pod: dict, sccs: list[dict] | None = None) -> tuple[str, dict]:
    return openshift.admit(pod, run["namespace"], sccs if sccs is not None else [openshift.RESTRICTED_V2, run["scc"]],
                           lambda name: run["may_use"](pod, name))


# --- generated for both platforms ----------------------------------------------------------------


def test_no_template_fixes_a_uid_and_kubernetes_builds_gain_no_scc(builds):
    """Both platforms: no step but copy sets runAsUser or runAsGroup (restricted-v2 assigns the namespace's
    UID and refuses 65532), all keep runAsNonRoot, drop ALL, RuntimeDefault; the templates are the same on both.
    Only the OpenShift build has the SCC (build/openshift/) and the Role granting `use` of it. On the code
    before issue 8 every non-copy template said runAsUser 65532 and this test failed there."""
    for platform, build_dir in builds.items():
        for (_, step), template in _templates(build_dir).items():
            sc = template["container"]["securityContext"]
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            if step == "copy":
                assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (0, 0, False)
            else:
                assert "runAsUser" not in sc and "runAsGroup" not in sc and sc["runAsNonRoot"] is True, (platform, step)
    assert _templates(builds["kubernetes"]) == _templates(builds["openshift"])
    kinds = {p: {(o["kind"], o["metadata"]["name"]) for o in _objects(b)} for p, b in builds.items()}
    extra = kinds["openshift"] - kinds["kubernetes"]
    assert extra == {("SecurityContextConstraints", SCC), ("Role", f"{SCC}-scc"), ("RoleBinding", f"{SCC}-scc")}
    assert not (BUILD / "openshift").exists()  # build/ is the Kubernetes build (response.yaml has no platform)


def test_a_misspelt_platform_is_refused_in_one_line():
    with pytest.raises(config.ConfigError) as refused:
        config.parse({"settings": {"platform": "openshfit"}, "policies": [{"name": "a", "response": "delete"}]})
    assert str(refused.value) == "response.yaml: settings.platform: Input should be 'kubernetes' or 'openshift'"


def test_the_scc_is_bound_to_the_hostpath_pods_accounts_only(builds):
    """The Role grants `use` of exactly this SCC (resourceNames) and is bound only to the ServiceAccounts of
    pods that mount a hostPath (copy, and the archive reaper when the build has one), in their namespace."""
    objects = _objects(builds["openshift"])
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == f"{SCC}-scc")
    assert role["rules"] == [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                              "resourceNames": [SCC], "verbs": ["use"]}]
    binding = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == f"{SCC}-scc")
    hostpath = set()
    for o in objects:
        if o["kind"] == "WorkflowTemplate":
            hostpath |= {t["serviceAccountName"] for t in o["spec"]["templates"]
                         if any("hostPath" in v for v in t.get("volumes") or [])}
        if o["kind"] == "DaemonSet" and any("hostPath" in v for v in o["spec"]["template"]["spec"].get("volumes") or []):
            hostpath.add(o["spec"]["template"]["spec"]["serviceAccountName"])
    assert names.step_service_account("copy") in hostpath
    assert {s["name"] for s in binding["subjects"]} == hostpath
    scc = next(o for o in objects if o["kind"] == "SecurityContextConstraints")
    assert scc["users"] == [] and scc["groups"] == []  # nobody else through the SCC itself
    assert scc["volumes"] == ["emptyDir", "hostPath", "secret"] and scc["allowHostDirVolumePlugin"] is True
    assert (scc["allowPrivilegedContainer"], scc["allowPrivilegeEscalation"], scc["readOnlyRootFilesystem"]) == (False, False, True)
    assert scc["requiredDropCapabilities"] == ["ALL"] and not scc["allowedCapabilities"]
    assert not any(scc[k] for k in ("allowHostNetwork", "allowHostPID", "allowHostIPC", "allowHostPorts"))


# --- admission of the pods Argo creates ------------------------------------------------------------


def test_every_step_runs_under_restricted_v2_except_copy(run):
    """The Pods of a real run (init, wait and main containers, ServiceAccount admission done): each is admitted
    by exactly one SCC usable by its creator or ServiceAccount: restricted-v2 for every step, which assigns
    the namespace's first UID (MustRunAsRange Generate), and falco-response-hostpath for copy, which keeps UID
    0 for main and the image's user for Argo's containers."""
    assert run["result"].exit_code == 0
    pods = run["pods"]
    assert {"verify", "checkpoint", "copy", "quarantine"} <= set(pods)
    first_uid = int(openshift.PROJECT_ANNOTATIONS[openshift.UID_RANGE].split("/")[0])
    for step, pod in pods.items():
        chosen, admitted = _admit(run, pod)
        mains = [c for c in admitted["spec"]["containers"] if c["name"] == "main"]
        if step == "copy":
            assert chosen == SCC
            assert mains[0]["securityContext"]["runAsUser"] == 0
            assert all("runAsUser" not in (c.get("securityContext") or {}) for c in admitted["spec"]["containers"] if c["name"] != "main")
        else:
            assert chosen == "restricted-v2", step
            assert all(c["securityContext"]["runAsUser"] == first_uid and c["securityContext"]["runAsNonRoot"] is True
                       for c in admitted["spec"]["initContainers"] + admitted["spec"]["containers"])
        admitted_by = [s["metadata"]["name"] for s in (openshift.RESTRICTED_V2, run["scc"])
                       if _try(run, pod, [s])]
        assert admitted_by == [chosen], (step, admitted_by)  # so the SCC order cannot matter


def _try(run, pod, sccs) -> bool:
    try:
        _admit(run, pod, sccs)
        return True
    except openshift.SCCForbidden:
        return False


def test_a_fixed_run_as_user_is_refused_by_restricted_v2(run):
    """The templates before issue 8 set runAsUser/runAsGroup 65532: restricted-v2 refuses that UID (outside
    the namespace's range), and no other SCC is usable by that step: the pod is never created."""
    pod = copy.deepcopy(run["pods"]["verify"])
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    main["securityContext"].update(runAsUser=65532, runAsGroup=65532)
    with pytest.raises(openshift.SCCForbidden) as refused:
        _admit(run, pod)
    message = str(refused.value)
    assert "provider restricted-v2: spec.containers[1].securityContext.runAsUser: Invalid value: 65532: must be in the " \
           "ranges: [1000660000, 1000669999]" in message
    assert f'provider "{SCC}": Forbidden: not usable by user or serviceaccount' in message


def test_copy_is_admitted_only_through_its_scc(run):
    """Without `use` of the dedicated SCC, copy's hostPath and UID 0 are refused by restricted-v2; and another
    step's ServiceAccount cannot get a hostPath pod admitted at all."""
    copy_pod = run["pods"]["copy"]
    with pytest.raises(openshift.SCCForbidden) as refused:
        _admit(run, copy_pod, [openshift.RESTRICTED_V2])
    assert 'hostPath volumes are not allowed to be used' in str(refused.value)
    assert "runAsUser: Invalid value: 0: must be in the ranges" in str(refused.value)
    forged = copy.deepcopy(copy_pod)
    forged["spec"]["serviceAccountName"] = names.step_service_account("verify")
    with pytest.raises(openshift.SCCForbidden, match=f'provider "{SCC}": Forbidden: not usable by user or serviceaccount'):
        _admit(run, forged)


def test_the_reaper_daemonset_if_any_is_admitted_through_the_scc(run):
    """Any other pod of build/ mounting the checkpoint directory (the archive reaper) is bound to the SCC too."""
    daemonsets = [o for o in run["objects"] if o["kind"] == "DaemonSet"
                  and any("hostPath" in v for v in o["spec"]["template"]["spec"].get("volumes") or [])]
    for ds in daemonsets:
        pod = {"metadata": {"name": f"{ds['metadata']['name']}-x", "namespace": ds["metadata"]["namespace"]},
               "spec": copy.deepcopy(ds["spec"]["template"]["spec"])}
        assert _admit(run, pod)[0] == SCC


def test_the_emulation_is_as_strict_as_upstream_on_what_we_rely_on(run):
    """provider.go defaults then validates: a container asking for privilege escalation, a capability, or a
    seccomp profile other than runtime/default is refused by restricted-v2; a namespace without OpenShift's
    uid-range annotation admits nothing (matcher.go CreateProvidersFromConstraints)."""
    pod = run["pods"]["verify"]
    for change, reason in ((lambda sc: sc.update(allowPrivilegeEscalation=True), "Allowing privilege escalation"),
                           (lambda sc: sc.update(capabilities={"add": ["SYS_ADMIN"]}), "capability may not be added"),
                           (lambda sc: sc.update(seccompProfile={"type": "Unconfined"}), "unconfined is not an allowed seccomp")):
        bad = copy.deepcopy(pod)
        change(next(c for c in bad["spec"]["containers"] if c["name"] == "main")["securityContext"])
        with pytest.raises(openshift.SCCForbidden, match=reason):
            _admit(run, bad)
    with pytest.raises(openshift.SCCForbidden, match="unable to find pre-allocated uid annotation"):
        openshift.admit(pod, {"metadata": {"name": NS}}, [openshift.RESTRICTED_V2], lambda name: True)


# --- the image with an arbitrary UID ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run a process as another UID")
def test_steps_work_as_an_arbitrary_uid_with_gid_0(tmp_path):
    """restricted-v2 runs the image as the namespace's UID (no /etc/passwd entry) with GID 0: every step imports
    and refuses bad input in one line as UID 1000660000, GID 0, HOME on a scratch directory (what the image does
    with HOME=/tmp on its emptyDir)."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    code = ("import importlib, sys\n"
            "for step in sys.argv[1:]:\n"
            "    importlib.import_module('steps.' + step)\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": str(ROOT)}
    uid = int(openshift.PROJECT_ANNOTATIONS[openshift.UID_RANGE].split("/")[0])
    try:
        subprocess.run([sys.executable, "-c", "pass"], user=uid, group=0, extra_groups=[], env=env, cwd=home, check=True)
    except (PermissionError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"this interpreter cannot run as UID {uid} here ({exc}): install it where other users can read it")
    imported = subprocess.run([sys.executable, "-c", code, *names.STEPS], env=env, user=uid, group=0, extra_groups=[],
                              capture_output=True, text=True, timeout=120, cwd=home)
    assert imported.returncode == 0, imported.stderr[-2000:]
    refused = subprocess.run([sys.executable, "-m", "steps.verify", "--namespace=Not_A_Namespace"], env=env, user=uid,
                             group=0, extra_groups=[], capture_output=True, text=True, timeout=120, cwd=home)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
    assert refused.stderr.startswith("error: bad arguments:")
