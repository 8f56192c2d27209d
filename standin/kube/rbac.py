"""Kubernetes RBAC, evaluated from the Roles, ClusterRoles and bindings in the store.

As plugin/pkg/auth/authorizer/rbac/rbac.go (RBACAuthorizer.Authorize, VisitRulesFor) and
pkg/apis/rbac/v1/evaluation_helpers.go (RuleAllows, VerbMatches, APIGroupMatches,
ResourceMatches, ResourceNameMatches) evaluate them:
- ClusterRoleBindings grant their ClusterRole's rules everywhere;
- RoleBindings grant only in their own namespace, whether they name a Role (of that namespace)
  or a ClusterRole;
- a subject applies by kind: User (name), Group (any of the user's groups), ServiceAccount
  (namespace and name, i.e. the user `system:serviceaccount:<ns>:<name>`);
- a rule allows when verb, API group, resource (`resource/subresource` for a subresource, or
  `*/subresource`) and, if listed, resourceNames all match; `*` matches any verb, group or
  resource. A request without a name (list, create) never matches a rule with resourceNames.
- a binding whose role does not exist grants nothing.
Nothing is allowed by default. `system:masters` is allowed everything before RBAC runs
(authorizerfactory.NewPrivilegedGroups), and authenticated users may read discovery paths.
"""

from __future__ import annotations

from standin.kube.auth import AUTHENTICATED, MASTERS, Attributes, User, is_discovery
from standin.kube.store import Store


def subject_applies(subject: dict, user: User, binding_namespace: str) -> bool:
    """pkg/registry/rbac/validation/rule.go appliesToUser: a ServiceAccount subject without a namespace
    means the binding's own (a RoleBinding's; a ClusterRoleBinding's "" matches nobody)."""
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user.name
    if kind == "Group":
        return subject.get("name") in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.service_account == (namespace, subject.get("name"))
    return False


def rule_allows(rule: dict, attrs: Attributes) -> bool:
    if not attrs.resource_request:
        urls = rule.get("nonResourceURLs") or []
        return _verb(rule, attrs.verb) and any(
            u == "*" or u == attrs.path or (u.endswith("*") and attrs.path.startswith(u[:-1])) for u in urls
        )
    if not _verb(rule, attrs.verb):
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.api_group not in groups:
        return False
    resources = rule.get("resources") or []
    combined = attrs.resource_and_sub
    if not any(
        r == "*" or r == combined or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _verb(rule: dict, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


class Authorizer:
    """RBAC over the store's current objects (no caching: a binding applied is in force at once)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def allowed(self, attrs: Attributes) -> bool:
        user = attrs.user
        if MASTERS in user.groups:
            return True
        if not attrs.resource_request and AUTHENTICATED in user.groups and attrs.verb == "get" and is_discovery(attrs.path):
            return True
        return any(rule_allows(rule, attrs) for rule in self.rules_for(user, attrs.namespace))

    def rules_for(self, user: User, namespace: str) -> list[dict]:
        types = self.store.types
        rules: list[dict] = []
        for binding in self.store.list(types["clusterrolebindings"]):
            if any(subject_applies(s, user, "") for s in binding.get("subjects") or []):
                rules += self._role_rules(binding.get("roleRef") or {}, None)
        if namespace:
            for binding in self.store.list(types["rolebindings"], namespace):
                if any(subject_applies(s, user, namespace) for s in binding.get("subjects") or []):
                    rules += self._role_rules(binding.get("roleRef") or {}, namespace)
        return rules

    def _role_rules(self, ref: dict, namespace: str | None) -> list[dict]:
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            return []
        if ref.get("kind") == "ClusterRole":
            role = self.store.find(self.store.types["clusterroles"], None, ref.get("name", ""))
        elif ref.get("kind") == "Role" and namespace:
            role = self.store.find(self.store.types["roles"], namespace, ref.get("name", ""))
        else:
            role = None
        return list((role or {}).get("rules") or [])
