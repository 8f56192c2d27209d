"""Who is calling, and what they ask for: bearer-token authentication and request attributes.

Authentication (k8s.io/apiserver): every token the stand-in issued maps to a user. Service
account tokens carry `system:serviceaccount:<ns>:<name>` with the groups `system:serviceaccounts`,
`system:serviceaccounts:<ns>` and `system:authenticated` (k8s.io/apiserver/pkg/authentication/
serviceaccount/util.go, UserInfo); they stop working when their ServiceAccount (or, for a legacy
Secret token, the Secret) is gone, as the token authenticators check
(pkg/serviceaccount/jwt.go, Validate; legacy.go). The admin token is in `system:masters`, which
the API server's authorizer chain lets do anything (pkg/kubeapiserver/authorizer/config.go adds
authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup) before RBAC).

Request attributes follow k8s.io/apiserver/pkg/endpoints/request/requestinfo.go
(RequestInfoFactory.NewRequestInfo): verb from method and whether a name is present, API group,
namespace, resource, subresource and name from the path. A denial renders as the apiserver's
responsewriters.forbiddenMessage inside errors.NewForbidden.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from standin.kube.errors import ApiError

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SA_PREFIX = "system:serviceaccount:"
# Paths every authenticated user may GET (the system:discovery and system:public-info-viewer
# ClusterRoles, bound to system:authenticated by the bootstrap policy).
DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) for a service account user."""
        if not self.name.startswith(SA_PREFIX):
            return None
        namespace, _, name = self.name[len(SA_PREFIX) :].partition(":")
        return namespace, name


def service_account_user(namespace: str, name: str) -> User:
    return User(
        f"{SA_PREFIX}{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


ADMIN = User("kubernetes-admin", (MASTERS, AUTHENTICATED))


@dataclass
class _Issued:
    user: User
    still_valid: Callable[[], bool] = field(default=lambda: True)


class Tokens:
    """Bearer tokens the stand-in issued and whom they stand for (a TokenReview in a dict)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[str, _Issued] = {}

    def add(self, token: str, user: User, still_valid: Callable[[], bool] | None = None) -> str:
        with self._lock:
            self._issued[token] = _Issued(user, still_valid or (lambda: True))
        return token

    def issue(self, user: User, still_valid: Callable[[], bool] | None = None) -> str:
        return self.add(secrets.token_urlsafe(32), user, still_valid)

    def authenticate(self, token: str | None) -> User | None:
        if not token:
            return None
        with self._lock:
            issued = self._issued.get(token)
        if issued is None or not issued.still_valid():
            return None
        return issued.user


@dataclass(frozen=True)
class Attributes:
    """authorizer.Attributes of one request."""

    user: User
    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def resource_and_sub(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def request_attributes(user: User, method: str, path: str, watch: bool = False) -> Attributes:
    """What RequestInfoFactory.NewRequestInfo derives from a request's method and path."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        verb = {"GET": "get", "HEAD": "get"}.get(method, method.lower())
        return Attributes(user, verb, path, resource_request=False)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        namespace = rest[1]
        if len(rest) >= 3:
            rest = rest[2:]
        # `/api/v1/namespaces/<ns>` is the namespace object itself, namespace set to its name.
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and not name and namespace:
        name = namespace
    if method in _VERBS:
        verb = _VERBS[method]
    elif method == "GET":
        verb = "get" if name else ("watch" if watch else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = method.lower()
    return Attributes(user, verb, path, True, group, namespace, resource, subresource, name)


def forbidden(attrs: Attributes, qualified_resource: str, reason: str = "") -> ApiError:
    """errors.NewForbidden(gr, name, forbiddenMessage(attrs) [+ ": " + reason])."""
    who = attrs.user.name
    if not attrs.resource_request:
        message = f'User "{who}" cannot {attrs.verb} path "{attrs.path}"'
        return ApiError(403, f"forbidden: {message}", details={})
    what = attrs.resource_and_sub
    if attrs.namespace:
        message = (
            f'User "{who}" cannot {attrs.verb} resource "{what}" in API group "{attrs.api_group}" '
            f'in the namespace "{attrs.namespace}"'
        )
    else:
        message = f'User "{who}" cannot {attrs.verb} resource "{what}" in API group "{attrs.api_group}" at the cluster scope'
    if reason:
        message += f": {reason}"
    prefix = f'{qualified_resource} "{attrs.name}"' if attrs.name else qualified_resource
    details: dict = {"name": attrs.name} if attrs.name else {}
    if attrs.api_group:
        details["group"] = attrs.api_group
    details["kind"] = attrs.resource
    return ApiError(403, f"{prefix} is forbidden: {message}", details=details)


def is_discovery(path: str) -> bool:
    clean = path.rstrip("/") or "/"
    return any(clean == p or clean.startswith(p + "/") for p in DISCOVERY_PREFIXES) and not _is_resource(clean)


def _is_resource(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return (parts[:1] == ["api"] and len(parts) >= 3) or (parts[:1] == ["apis"] and len(parts) >= 4)
