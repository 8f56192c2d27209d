"""OpenShift's SecurityContextConstraints admission, for the fields our pods and SCCs use.

As openshift/apiserver-library-go pkg/securitycontextconstraints does it (read at a8019f39):
- sccadmission/admission.go computeSecurityContext: every SCC is considered in order
  (util/sort ByPriority: higher `priority` first, then the more restrictive by
  byrestrictions.go pointValue, then by name); one neither the pod's creator nor the pod's
  ServiceAccount may use is skipped with `Forbidden: not usable by user or serviceaccount`
  (sccmatching/matcher.go ConstraintAppliesTo: listed in `users`, a group in `groups`, or RBAC verb
  `use` on security.openshift.io securitycontextconstraints/<name> in the pod's namespace); the
  first whose provider admits the pod after defaulting wins and its defaults are what runs; none:
  `unable to validate against any security context constraint: [<every provider's errors>]`.
- sccmatching/matcher.go CreateProviderFromConstraint: MustRunAsRange takes the namespace's
  `openshift.io/sa.scc.uid-range` (`<first>/<size>`), SELinux MustRunAs its level from
  `openshift.io/sa.scc.mcs`, fsGroup MustRunAs `openshift.io/sa.scc.supplemental-groups` (else
  the uid range); a namespace without the annotations cannot be admitted.
- sccmatching/provider.go: CreatePodSecurityContext (fsGroup, SELinux level, seccomp
  runtime/default when the SCC lists it first), CreateContainerSecurityContext (runAsUser from the
  strategy when unset, runAsNonRoot true when that UID > 0, required drops added, readOnlyRootFilesystem
  and allowPrivilegeEscalation defaulted from the SCC), then ValidatePodSecurityContext (host
  namespaces, volume types, fsGroup, seccomp) and ValidateContainerSecurityContext (runAsUser
  strategy, seccomp, privileged, capabilities, host ports, readOnlyRootFilesystem,
  allowPrivilegeEscalation).
- user/{mustrunasrange,mustrunas,runasany,nonroot}.go, capabilities/mustrunas.go, seccomp/strategy.go,
  group/mustrunas.go; sccdefaults/defaults.go keeps `volumes` and allowHostDirVolumePlugin in step.
restricted-v2 itself is openshift/cluster-kube-apiserver-operator
bindata/bootkube/scc-manifests/0000_20_kube-apiserver-operator_00_scc-restricted-v2.yaml, usable by
`system:authenticated` (..._crb-systemauthenticated-scc-restricted-v2.yaml): RESTRICTED_V2 below.

Not modelled: SELinux beyond defaulting the level (our pods set no seLinuxOptions), sysctls, flex
volumes, ephemeral containers, the `openshift.io/required-scc` annotation, and whether the node's
SELinux policy lets the chosen label read a host path (the SCC only decides the label).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

UID_RANGE = "openshift.io/sa.scc.uid-range"
MCS = "openshift.io/sa.scc.mcs"
SUPPLEMENTAL_GROUPS = "openshift.io/sa.scc.supplemental-groups"

RESTRICTED_V2 = {
    "apiVersion": "security.openshift.io/v1", "kind": "SecurityContextConstraints",
    "metadata": {"name": "restricted-v2"},
    "priority": None,
    "allowHostDirVolumePlugin": False, "allowHostIPC": False, "allowHostNetwork": False, "allowHostPID": False,
    "allowHostPorts": False, "allowPrivilegeEscalation": False, "allowPrivilegedContainer": False,
    "allowedCapabilities": ["NET_BIND_SERVICE"], "defaultAddCapabilities": None, "requiredDropCapabilities": ["ALL"],
    "readOnlyRootFilesystem": False,
    "runAsUser": {"type": "MustRunAsRange"}, "seLinuxContext": {"type": "MustRunAs"},
    "fsGroup": {"type": "MustRunAs"}, "supplementalGroups": {"type": "RunAsAny"},
    "seccompProfiles": ["runtime/default"], "users": [], "groups": [],
    "volumes": ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                "projected", "secret"],
}
# The ClusterRole and ClusterRoleBinding that make restricted-v2 usable by every authenticated user.
RESTRICTED_V2_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "system:openshift:scc:restricted-v2"},
     "rules": [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                "resourceNames": ["restricted-v2"], "verbs": ["use"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "system:openshift:scc:restricted-v2"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:openshift:scc:restricted-v2"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]},
]
# The project annotations OpenShift's namespace controller writes (values of a real project).
PROJECT_ANNOTATIONS = {UID_RANGE: "1000660000/10000", MCS: "s0:c26,c5", SUPPLEMENTAL_GROUPS: "1000660000/10000"}

# sccutil.GetVolumeFSType: the pod volume source -> the SCC's volume type name
_VOLUME_TYPES = {"hostPath": "hostPath", "emptyDir": "emptyDir", "secret": "secret", "configMap": "configMap",
                 "projected": "projected", "downwardAPI": "downwardAPI", "persistentVolumeClaim": "persistentVolumeClaim",
                 "csi": "csi", "ephemeral": "ephemeral", "image": "image", "nfs": "nfs"}


class SCCForbidden(Exception):
    """The API server's 403 for a pod no SCC admits."""


def _block(text: str) -> tuple[int, int]:
    """library-go security/uid ParseBlock: `<first>/<size>` (or `<first>-<last>`) -> (first, last)."""
    if "/" in text:
        first, size = text.split("/", 1)
        return int(first), int(first) + int(size) - 1
    first, last = text.split("-", 1)
    return int(first), int(last)


def _defaults(scc: dict) -> dict:
    """sccdefaults.SetDefaults_SCC: volumes and allowHostDirVolumePlugin agree; fsGroup/supplementalGroups RunAsAny."""
    scc = copy.deepcopy(scc)
    scc.setdefault("fsGroup", {}).setdefault("type", "RunAsAny")
    scc.setdefault("supplementalGroups", {}).setdefault("type", "RunAsAny")
    volumes = scc.get("volumes")
    allowed = {"*"} if volumes is None else set(volumes) or ({"hostPath"} if scc.get("allowHostDirVolumePlugin") else {"none"})
    if scc.get("allowHostDirVolumePlugin"):
        if "*" not in allowed:
            allowed.add("hostPath")
    else:
        allowed.discard("hostPath")
    scc["volumes"] = sorted(allowed)
    if scc.get("allowPrivilegeEscalation") is None:
        scc["allowPrivilegeEscalation"] = True
    return scc


def point_value(scc: dict) -> int:
    """byrestrictions.go pointValue: the lower, the more restrictive."""
    points = 1_600_000 if scc.get("allowPrivilegedContainer") else 0
    volumes = set(scc.get("volumes") or [])
    if volumes & {"hostPath", "*"}:
        points += 200_000
    elif volumes - {"secret", "configMap", "emptyDir", "downwardAPI", "projected", "none"}:
        points += 100_000
    points += 400_000 if scc.get("allowHostNetwork") else 0
    points += 800_000 if scc.get("allowHostPorts") else 0
    caps = 5000 + 300 * len(scc.get("defaultAddCapabilities") or [])
    allowed = [c.upper() for c in scc.get("allowedCapabilities") or []]
    caps += 4000 if ("*" in allowed or "ALL" in allowed) else 10 * len(allowed)
    drops = [c.upper() for c in scc.get("requiredDropCapabilities") or []]
    caps += -3000 if "ALL" in drops else -50 * len(drops)
    points += min(max(caps, 0), 9999)
    strategies = {"RunAsAny": 40_000, "MustRunAsNonRoot": 30_000, "MustRunAsRange": 20_000, "MustRunAs": 10_000}
    points += strategies.get((scc.get("seLinuxContext") or {}).get("type"), 0)
    points += strategies.get((scc.get("runAsUser") or {}).get("type"), 0)
    return points


def sort_sccs(sccs: list[dict]) -> list[dict]:
    """util/sort ByPriority."""
    return sorted(sccs, key=lambda s: (-(s.get("priority") or 0), point_value(s), s["metadata"]["name"]))


class _Provider:
    """sccmatching.simpleProvider for one SCC in one namespace (CreateProviderFromConstraint)."""

    def __init__(self, scc: dict, namespace: dict):
        self.scc = _defaults(scc)
        self.name = scc["metadata"]["name"]
        annotations = (namespace.get("metadata") or {}).get("annotations") or {}
        user = self.scc["runAsUser"]
        self.uid_range: tuple[int, int] | None = None
        if user["type"] == "MustRunAsRange":
            if "uidRangeMin" in user and "uidRangeMax" in user:
                self.uid_range = (user["uidRangeMin"], user["uidRangeMax"])
            elif UID_RANGE in annotations:
                self.uid_range = _block(annotations[UID_RANGE])
            else:
                raise SCCForbidden(f"unable to find pre-allocated uid annotation for namespace "
                                   f"{namespace['metadata']['name']} while trying to configure SCC {self.name}")
        self.fs_groups: list[tuple[int, int]] = []
        if self.scc["fsGroup"]["type"] == "MustRunAs":
            ranges = self.scc["fsGroup"].get("ranges")
            if ranges:
                self.fs_groups = [(r["min"], r["max"]) for r in ranges]
            else:
                text = annotations.get(SUPPLEMENTAL_GROUPS) or annotations.get(UID_RANGE)
                if not text:
                    raise SCCForbidden(f"unable to find pre-allocated group annotation for namespace "
                                       f"{namespace['metadata']['name']} while trying to configure SCC {self.name}")
                self.fs_groups = [_block(b) for b in text.split(",")]
        self.level = annotations.get(MCS) if self.scc["seLinuxContext"]["type"] == "MustRunAs" else None

    # --- defaults (Create*SecurityContext) ---------------------------------------------------------

    def _pod_defaults(self, pod: dict) -> None:
        spec = pod["spec"]
        psc = spec.setdefault("securityContext", {})
        if self.fs_groups and psc.get("fsGroup") is None:
            psc["fsGroup"] = self.fs_groups[0][0]
        if self.level and not psc.get("seLinuxOptions"):
            psc["seLinuxOptions"] = {"level": self.level}
        profiles = self.scc.get("seccompProfiles") or []
        if not psc.get("seccompProfile") and profiles and profiles[0] != "*":
            psc["seccompProfile"] = _field_for(profiles[0])

    def _container_defaults(self, pod: dict, container: dict) -> None:
        psc = pod["spec"].get("securityContext") or {}
        sc = container.setdefault("securityContext", {})
        if _effective(sc, psc, "runAsUser") is None:
            strategy = self.scc["runAsUser"]
            if strategy["type"] == "MustRunAsRange":
                sc["runAsUser"] = self.uid_range[0]
            elif strategy["type"] == "MustRunAs":
                sc["runAsUser"] = strategy["uid"]
        if _effective(sc, psc, "runAsNonRoot") is None:
            uid = _effective(sc, psc, "runAsUser")
            if (uid is None and self.scc["runAsUser"]["type"] == "MustRunAsNonRoot") or (uid is not None and uid > 0):
                sc["runAsNonRoot"] = True
        required = set(self.scc.get("requiredDropCapabilities") or [])
        caps = sc.get("capabilities") or {}
        drop = set(caps.get("drop") or [])
        add = set(caps.get("add") or []) | (set(self.scc.get("defaultAddCapabilities") or []) - drop)
        if required - drop or add - set(caps.get("add") or []):
            sc["capabilities"] = {k: sorted(v) for k, v in (("add", add), ("drop", drop | required)) if v}
        if self.scc.get("readOnlyRootFilesystem") and sc.get("readOnlyRootFilesystem") is None:
            sc["readOnlyRootFilesystem"] = True
        if self.scc.get("allowPrivilegeEscalation") is False and sc.get("allowPrivilegeEscalation") is None:
            sc["allowPrivilegeEscalation"] = False

    # --- validation ------------------------------------------------------------------------------

    def _validate_pod(self, pod: dict) -> list[str]:
        spec, errors = pod["spec"], []
        psc = spec.get("securityContext") or {}
        if self.fs_groups:
            group = psc.get("fsGroup")
            if group is None:
                errors.append("spec.securityContext.fsGroup: Invalid value: []: unable to validate empty groups against required ranges")
            elif not any(lo <= group <= hi for lo, hi in self.fs_groups):
                errors.append(f"spec.securityContext.fsGroup: Invalid value: [{group}]: {group} is not an allowed group")
        errors += self._seccomp("pod.metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]", psc.get("seccompProfile"))
        for flag, what in (("hostNetwork", "Host network"), ("hostPID", "Host PID"), ("hostIPC", "Host IPC")):
            if spec.get(flag) and not self.scc.get(f"allow{flag[0].upper()}{flag[1:]}"):
                errors.append(f"spec.securityContext.{flag}: Invalid value: true: {what} is not allowed to be used")
        allowed = set(self.scc["volumes"])
        if "*" not in allowed:
            for i, volume in enumerate(spec.get("volumes") or []):
                kind = next((_VOLUME_TYPES[k] for k in volume if k in _VOLUME_TYPES), None)
                if kind not in allowed:
                    errors.append(f"spec.volumes[{i}]: Invalid value: \"{kind}\": {kind} volumes are not allowed to be used")
        return errors

    def _seccomp(self, where: str, profile: dict | None) -> list[str]:
        allowed = self.scc.get("seccompProfiles") or []
        name = _annotation_for(profile)
        if "*" in allowed or (not allowed and not name):
            return []
        if not allowed:
            return [f"{where}: Forbidden: seccomp may not be set"]
        runtime_default = any(p in ("runtime/default", "docker/default") for p in allowed)
        if name in allowed or (runtime_default and name in ("runtime/default", "docker/default")):
            return []
        return [f"{where}: Forbidden: {name} is not an allowed seccomp profile. Valid values are {allowed}"]

    def _validate_container(self, pod: dict, container: dict, path: str) -> list[str]:
        psc = pod["spec"].get("securityContext") or {}
        sc = container.get("securityContext") or {}
        errors = []
        uid = _effective(sc, psc, "runAsUser")
        strategy = self.scc["runAsUser"]
        if strategy["type"] in ("MustRunAsRange", "MustRunAs") and uid is None:
            errors.append(f"{path}.runAsUser: Required value")
        elif strategy["type"] == "MustRunAsRange" and not self.uid_range[0] <= uid <= self.uid_range[1]:
            errors.append(f"{path}.runAsUser: Invalid value: {uid}: must be in the ranges: [{self.uid_range[0]}, {self.uid_range[1]}]")
        elif strategy["type"] == "MustRunAs" and uid != strategy["uid"]:
            errors.append(f"{path}.runAsUser: Invalid value: {uid}: must be: {strategy['uid']}")
        elif strategy["type"] == "MustRunAsNonRoot":
            if uid == 0:
                errors.append(f"{path}.runAsUser: Invalid value: 0: running with the root UID is forbidden")
            elif uid is None and _effective(sc, psc, "runAsNonRoot") is not True:
                errors.append(f"{path}.runAsNonRoot: Required value: must be true")
        profile = sc.get("seccompProfile") or psc.get("seccompProfile")
        errors += self._seccomp(f"pod.metadata.annotations[container.seccomp.security.alpha.kubernetes.io/{container['name']}]",
                                profile)
        if sc.get("privileged") and not self.scc.get("allowPrivilegedContainer"):
            errors.append(f"{path}.privileged: Invalid value: true: Privileged containers are not allowed")
        caps = sc.get("capabilities")
        if caps is None and (self.scc.get("defaultAddCapabilities") or self.scc.get("requiredDropCapabilities")):
            errors.append(f"{path}.capabilities: Invalid value: \"null\": required capabilities are not set on the securityContext")
        elif caps is not None:
            allowed = set(self.scc.get("allowedCapabilities") or []) | set(self.scc.get("defaultAddCapabilities") or [])
            if "*" not in allowed:
                errors += [f"{path}.capabilities.add: Invalid value: \"{c}\": capability may not be added"
                           for c in caps.get("add") or [] if c not in allowed]
            errors += [f"{path}.capabilities.drop: Invalid value: {caps.get('drop')}: {c} is required to be dropped but was not found"
                       for c in self.scc.get("requiredDropCapabilities") or [] if c not in (caps.get("drop") or [])]
        if not self.scc.get("allowHostPorts"):
            errors += [f"{path}.hostPort: Invalid value: {p['hostPort']}: Host ports are not allowed to be used"
                       for p in container.get("ports") or [] if p.get("hostPort")]
        if self.scc.get("readOnlyRootFilesystem") and sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{path}.readOnlyRootFilesystem: Invalid value: {sc.get('readOnlyRootFilesystem')}: "
                          "ReadOnlyRootFilesystem must be set to true")
        if self.scc.get("allowPrivilegeEscalation") is False and sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{path}.allowPrivilegeEscalation: Invalid value: {sc.get('allowPrivilegeEscalation')}: "
                          "Allowing privilege escalation for containers is not allowed")
        return errors

    def assign(self, pod: dict) -> list[str]:
        """AssignSecurityContext on a copy of the pod: defaults, then the checks; the errors, prefixed."""
        self._pod_defaults(pod)
        errors = self._validate_pod(pod)
        spec = pod["spec"]
        for field, containers in (("initContainers", spec.get("initContainers") or []), ("containers", spec.get("containers") or [])):
            for i, container in enumerate(containers):
                self._container_defaults(pod, container)
                errors += self._validate_container(pod, container, f"spec.{field}[{i}].securityContext")
        return [f"provider {self.name}: {e}" for e in errors]


def _effective(sc: dict, psc: dict, key: str):
    """securitycontext.NewEffectiveContainerSecurityContextAccessor: the container's, else the pod's."""
    return sc[key] if sc.get(key) is not None else psc.get(key)


def _annotation_for(profile: dict | None) -> str:
    if not profile:
        return ""
    kind = profile.get("type")
    if kind == "RuntimeDefault":
        return "runtime/default"
    if kind == "Unconfined":
        return "unconfined"
    if kind == "Localhost":
        return "localhost/" + str(profile.get("localhostProfile") or "")
    return ""


def _field_for(name: str) -> dict:
    if name in ("runtime/default", "docker/default"):
        return {"type": "RuntimeDefault"}
    if name == "unconfined":
        return {"type": "Unconfined"}
    return {"type": "Localhost", "localhostProfile": name.removeprefix("localhost/")}


def admit(pod: dict, namespace: dict, sccs: list[dict], may_use: Callable[[str], bool]) -> tuple[str, dict]:
    """(the SCC that admitted the pod, the pod as it will run) or SCCForbidden with every provider's reason.
    `may_use(scc_name)`: whether the pod's creator or its ServiceAccount may use that SCC."""
    errors: list[str] = []
    for scc in sort_sccs(sccs):
        name = scc["metadata"]["name"]
        if not may_use(name):
            errors.append(f'provider "{name}": Forbidden: not usable by user or serviceaccount')
            continue
        candidate = copy.deepcopy(pod)
        found = _Provider(scc, namespace).assign(candidate)
        if not found:
            candidate.setdefault("metadata", {}).setdefault("annotations", {})["openshift.io/scc"] = name
            return name, candidate
        errors += found
    pod_name = (pod.get("metadata") or {}).get("name") or ""
    raise SCCForbidden(f'pods "{pod_name}" is forbidden: unable to validate against any security context constraint: '
                       f"[{', '.join(errors)}]")
