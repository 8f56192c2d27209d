"""authorization.k8s.io/v1 SubjectAccessReview: "may this user do this?", answered by the RBAC authorizer.

As kubernetes pkg/registry/authorization/subjectaccessreview/rest.go (REST.Create) serves it:
- only `create` (POST to the cluster-scoped collection); the caller needs RBAC `create` on
  `subjectaccessreviews.authorization.k8s.io`, checked like any request before the handler runs;
- the body is validated by pkg/apis/authorization/validation ValidateSubjectAccessReview: exactly
  one of spec.resourceAttributes / spec.nonResourceAttributes, at least one of spec.user /
  spec.groups, metadata empty; otherwise 422 Invalid (`SubjectAccessReview "" is invalid: ...`);
- the attributes are the spec's as given (pkg/registry/authorization/util AuthorizationAttributesFrom):
  the user's groups are NOT looked up, the caller passes them (a ServiceAccount's are
  system:serviceaccounts, system:serviceaccounts:<ns>, system:authenticated);
- the answer is the same object with `status.allowed` (and `status.reason`) from the authorizer
  chain: system:masters first (no reason), then RBAC, whose reason on an allow is
  `RBAC: allowed by <binding>` (plugin/pkg/auth/authorizer/rbac/rbac.go authorizingVisitor.visit,
  clusterRoleBindingDescriber / roleBindingDescriber); a denial is `allowed: false` with no reason
  (RBAC has no opinion, nothing denies), `denied` omitted. 201 Created; nothing is stored.
"""

from __future__ import annotations

from standin.kube.auth import MASTERS, Attributes, User
from standin.kube.errors import ApiError, Cause
from standin.kube.rbac import rule_allows, subject_applies
from standin.kube.serving import Request, Response
from standin.kube.store import Store

GROUP, VERSION, PLURAL = "authorization.k8s.io", "v1", "subjectaccessreviews"


def is_review_path(group: str, version: str, plural: str, namespace: str | None) -> bool:
    return (group, version, plural) == (GROUP, VERSION, PLURAL) and namespace is None


def _invalid(causes: list[Cause]) -> ApiError:
    parts = [f"{c.field}: {c.message()}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {"group": GROUP, "kind": "SubjectAccessReview",
               "causes": [{"reason": c.reason(), "message": c.message(), "field": c.field} for c in causes]}
    return ApiError(422, f'SubjectAccessReview.{GROUP} "" is invalid: {summary}', details=details)


def validate(body: dict) -> None:
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    causes = []
    if resource is not None and non_resource is not None:
        causes.append(Cause("spec.nonResourceAttributes", "cannot be specified in combination with resourceAttributes",
                            value=non_resource))
    if resource is None and non_resource is None:
        causes.append(Cause("spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes "
                            "must be specified", value=None))
    if not spec.get("user") and not spec.get("groups"):
        causes.append(Cause("spec.user", "at least one of user or group must be specified", value=spec.get("user", "")))
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields" and v not in (None, "", {}, [])}
    if metadata:
        causes.append(Cause("metadata", "must be empty", value=metadata))
    if causes:
        raise _invalid(causes)


def attributes(spec: dict) -> Attributes:
    user = User(str(spec.get("user") or ""), tuple(str(g) for g in spec.get("groups") or []))
    resource = spec.get("resourceAttributes")
    if resource is not None:
        return Attributes(
            user, str(resource.get("verb") or ""), "", True, str(resource.get("group") or ""),
            str(resource.get("namespace") or ""), str(resource.get("resource") or ""),
            str(resource.get("subresource") or ""), str(resource.get("name") or ""),
        )
    non_resource = spec.get("nonResourceAttributes") or {}
    return Attributes(user, str(non_resource.get("verb") or ""), str(non_resource.get("path") or ""), False)


def _describe(subject: dict, binding_namespace: str) -> str:
    """rule.go describeSubject: a ServiceAccount is `name/namespace`."""
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def authorize(store: Store, attrs: Attributes) -> tuple[bool, str]:
    """(allowed, reason) as the chain answers: privileged groups, then RBAC's VisitRulesFor order
    (ClusterRoleBindings, then the namespace's RoleBindings), first allowing rule wins."""
    if MASTERS in attrs.user.groups:
        return True, ""
    types = store.types
    bindings = [(b, "") for b in store.list(types["clusterrolebindings"])]
    if attrs.namespace:
        bindings += [(b, attrs.namespace) for b in store.list(types["rolebindings"], attrs.namespace)]
    for binding, namespace in bindings:
        subject = next((s for s in binding.get("subjects") or [] if subject_applies(s, attrs.user, namespace)), None)
        if subject is None:
            continue
        ref = binding.get("roleRef") or {}
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            continue
        if ref.get("kind") == "ClusterRole":
            role = store.find(types["clusterroles"], None, ref.get("name", ""))
        elif ref.get("kind") == "Role" and namespace:
            role = store.find(types["roles"], namespace, ref.get("name", ""))
        else:
            role = None
        if any(rule_allows(rule, attrs) for rule in (role or {}).get("rules") or []):
            name = binding["metadata"]["name"]
            if namespace:
                source = f'RoleBinding "{name}/{namespace}" of {ref.get("kind")} "{ref.get("name")}" to {_describe(subject, namespace)}'
            else:
                source = f'ClusterRoleBinding "{name}" of {ref.get("kind")} "{ref.get("name")}" to {_describe(subject, "")}'
            return True, f"RBAC: allowed by {source}"
    return False, ""


def serve(store: Store, request: Request) -> Response:
    if request.method != "POST":
        raise ApiError(405, "the server does not allow this method on the requested resource")
    if request.media_type != "application/json":
        raise ApiError(415, "the body of the request was in an unknown format - accepted media types include: application/json")
    body = request.json_body()
    if not isinstance(body, dict) or body.get("kind", "SubjectAccessReview") != "SubjectAccessReview":
        raise ApiError(400, f"not a SubjectAccessReview: {str(body)[:200]}")
    validate(body)
    allowed, reason = authorize(store, attributes(body["spec"]))
    status: dict = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    answer = {"kind": "SubjectAccessReview", "apiVersion": f"{GROUP}/{VERSION}",
              "metadata": {"creationTimestamp": None}, "spec": body["spec"], "status": status}
    return Response.json(201, answer)
