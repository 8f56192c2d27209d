"""Lint of the policy file at `make build`, and whether build/ still comes from it.

The warnings are about policies that can never fire although the file is valid: one shadowed by
an earlier policy (first match wins), a match on namespaces the Sensor refuses, a namespace both
in and out, a source whose alerts never name a pod. Each is decided from the match model alone and
only when certain: a policy the lint cannot prove dead is not reported.

build/kustomization.yaml records the sha256 of the policy file's bytes in a comment line (not in an
object: an annotation would change the Sensor, and redeploy it, on every edit of a comment in the
policy file; `sha256sum response.yaml` shows the same value). simulate, test and demo compare it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from engine.config import PRIORITIES, Policy, ResponseConfig, locate

# Falco event sources whose alerts never carry k8s.ns.name, k8s.pod.name and container.id, which
# the Sensor requires (sensors.policies.gating_filters): those are syscall-source fields (libsinsp's
# container and k8s filterchecks; the k8smeta plugin extracts for syscall only). The official
# plugins' sources and their own field classes (falcosecurity/plugins registry.yaml):
NO_POD_FIELDS = {
    "k8s_audit": "ka.*",  # k8saudit, k8saudit-eks/-gke/-aks: the target is ka.target.namespace/name
    "aws_cloudtrail": "ct.*",
    "okta": "okta.*",
    "github": "github.*",
    "gcp_auditlog": "gcp.*",
}
POD_FIELDS = "k8s.ns.name, k8s.pod.name and container.id"

HASH_COMMENT = "# policy-sha256: "  # a line of build/kustomization.yaml
_HASH_LINE = re.compile(r"^# policy-sha256: ([0-9a-f]{64})$", re.M)


def _where(cfg: ResponseConfig, source: str, *loc) -> str:
    mark = locate(cfg._source_node, loc) if cfg._source_node is not None else None
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source


def _namespaces_admitted(policy: Policy, protected: set[str]) -> set[str] | None:
    """The namespaces whose alerts the policy can take, or None when that is every namespace but
    a finite set (no `namespaces` key)."""
    match = policy.match
    if match.namespaces is None:
        return None
    return set(match.namespaces) - set(match.exclude_namespaces or []) - protected


def _covers(earlier: Policy, later: Policy, protected: set[str]) -> bool:
    """Every alert LATER matches, EARLIER matches too: on every dimension EARLIER constrains, LATER
    constrains it to a subset (its sets are any-of sets compared by the same one_of, so a subset
    of values is a subset of alerts). Anything else (a namespace given as an output field, ...) is
    not certain: False."""
    a, b = earlier.match, later.match
    for key in ("rules", "tags", "sources"):
        wanted = getattr(a, key)
        if wanted is not None and (getattr(b, key) is None or not set(getattr(b, key)) <= set(wanted)):
            return False
    a_prio, b_prio = a.priorities(), b.priorities()
    if a_prio is not None and not set(b_prio or PRIORITIES) <= set(a_prio):
        return False
    admitted = _namespaces_admitted(later, protected)
    if admitted is None:  # every namespace but these: EARLIER may only leave out some of them
        left_out = set(b.exclude_namespaces or []) | protected
        if a.namespaces is not None or not set(a.exclude_namespaces or []) <= left_out:
            return False
    elif any((a.namespaces is not None and ns not in a.namespaces) or ns in (a.exclude_namespaces or [])
             for ns in admitted):
        return False
    for field, values in (a.output_fields or {}).items():
        if field not in (b.output_fields or {}) or not set(b.output_fields[field]) <= set(values):
            return False
    return True


def _dead_namespaces(cfg: ResponseConfig, source: str, i: int, policy: Policy, protected: set[str]) -> list[str]:
    match = policy.match
    out = []
    both = [ns for ns in match.namespaces or [] if ns in (match.exclude_namespaces or [])]
    refused = [ns for ns in match.namespaces or [] if ns in protected and ns not in both]
    if both:
        out.append(f"{_where(cfg, source, 'policies', i, 'match', 'exclude_namespaces')}: policy {policy.name}: "
                   f"{', '.join(both)} both in namespaces and exclude_namespaces: the exclusion wins")
    if refused:
        one = len(refused) == 1
        out.append(f"{_where(cfg, source, 'policies', i, 'match', 'namespaces')}: policy {policy.name}: "
                   f"{', '.join(refused)} {'is' if one else 'are'} protected (settings.protected_namespaces): "
                   f"the Sensor refuses alerts from {'it' if one else 'them'}")
    if out and not _namespaces_admitted(policy, protected):
        out[-1] += ", so the policy never fires"
    return out


def _dead_sources(cfg: ResponseConfig, source: str, i: int, policy: Policy) -> list[str]:
    sources = policy.match.sources or []
    podless = [s for s in sources if s in NO_POD_FIELDS]
    if not podless:
        return []
    fields = ", ".join(f"{s} ({NO_POD_FIELDS[s]} fields)" for s in podless)
    end = ", so the policy never fires" if len(podless) == len(sources) else ""
    return [f"{_where(cfg, source, 'policies', i, 'match', 'sources')}: policy {policy.name}: source "
            f"{fields} never carries {POD_FIELDS}, which the Sensor requires{end}"]


def check(cfg: ResponseConfig, source: str = "response.yaml") -> list[str]:
    """One line per problem, `FILE:LINE:COL: policy NAME: why`, in policy order."""
    protected = set(cfg.settings.protected_namespaces)
    out: list[str] = []
    for i, policy in enumerate(cfg.policies):
        dead = _dead_namespaces(cfg, source, i, policy, protected) + _dead_sources(cfg, source, i, policy)
        out += dead
        podless = policy.match.sources is not None and set(policy.match.sources) <= set(NO_POD_FIELDS)
        if podless or (policy.match.namespaces is not None and not _namespaces_admitted(policy, protected)):
            continue  # it matches nothing: "shadowed" would say nothing more
        for j, earlier in enumerate(cfg.policies[:i]):
            if _covers(earlier, policy, protected):
                out.append(f"{_where(cfg, source, 'policies', i)}: policy {policy.name}: shadowed by policy "
                           f"{earlier.name} (policies[{j}]): every alert it matches, {earlier.name} matches first, "
                           "so it never fires")
                break
    return out


# --- build/ and the policy file it came from ----------------------------------------------------

def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def recorded_sha256(build_dir: str | Path) -> str | None:
    """The policy file's sha256 build/kustomization.yaml records (None: none recorded)."""
    try:
        with (Path(build_dir) / "kustomization.yaml").open(encoding="utf-8", errors="replace") as f:
            head = "".join(f.readline(400) for _ in range(4))
    except OSError:
        return None
    m = _HASH_LINE.search(head)
    return m.group(1) if m else None


def stale_note(build_dir: str | Path, policy_file: str | Path | None) -> str | None:
    """One line when BUILD_DIR was not built from POLICY_FILE as it is now (None: response.yaml,
    silently skipped when absent); None when it was, or when build/ records no hash."""
    explicit = policy_file is not None
    policy_file = Path(policy_file or "response.yaml")
    recorded = recorded_sha256(build_dir)
    if recorded is None:
        return None
    try:
        current = sha256_file(policy_file)
    except OSError as exc:
        if not explicit:
            return None
        return (f"warning: cannot compare {build_dir}/ with {policy_file}: {exc.strerror or exc}; "
                f"using {build_dir}/ as it is")
    if current == recorded:
        return None
    default = str(policy_file) == "response.yaml" and str(build_dir).rstrip("/") == "build"
    rebuild = "make build" if default else f"falco-response build --policy-file {policy_file} --out {build_dir}"
    return (f"warning: {build_dir}/ is stale: built from a {policy_file} with sha256 {recorded[:12]}, "
            f"it is now {current[:12]} (run `{rebuild}`); using {build_dir}/ as it is")
