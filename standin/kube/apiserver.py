"""The API server's HTTP handler: routing, authentication, list paging, deletes, node proxy, discovery."""

from __future__ import annotations

import base64
import datetime as dt
import re
import traceback
from dataclasses import dataclass

from standin.kube.admission import admit_pod
from standin.kube.auth import Attributes, Tokens, User, forbidden, request_attributes
from standin.kube.errors import ApiError, bad_request, resource_not_served
from standin.kube.kubelet import Kubelet
from standin.kube.rbac import Authorizer
from standin.kube.resources import KUBERNETES_VERSION, ResourceType
from standin.kube.selectors import parse_field_selector, parse_label_selector
from standin.kube.serving import Request, Response
from standin.kube.stamps import timestamp, utcnow
from standin.kube import logs, sar, scale, tokenrequest
from standin.kube.store import Store
from standin.kube.vap import Attributes as AdmissionAttributes
from standin.kube.vap import ValidatingAdmissionPolicies


@dataclass(frozen=True)
class ResourcePath:
    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subpath: tuple[str, ...]


def parse_resource_path(path: str) -> ResourcePath | None:
    """`/api/v1/namespaces/ns/pods/x` and `/apis/g/v/...` in their collection and item forms."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        return ResourcePath(group, version, rest[1], rest[2], rest[3] if len(rest) > 3 else None, tuple(rest[4:]))
    return ResourcePath(group, version, None, rest[0], rest[1] if len(rest) > 1 else None, tuple(rest[2:]))


def _int_param(request: Request, name: str) -> int | None:
    value = request.param(name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"-?\d+", value):
        raise bad_request(f"invalid value for {name}: {value!r}")
    return int(value)


def _list_page(items: list[dict], request: Request) -> tuple[list[dict], dict]:
    """limit/continue paging; the token is an opaque offset."""
    limit = _int_param(request, "limit") or 0
    token = request.param("continue") or ""
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise ApiError(400, "continue key is not valid") from None
    if limit <= 0:
        return items[offset:], {}
    page, rest = items[offset : offset + limit], len(items) - offset - limit
    if rest <= 0:
        return page, {}
    return page, {
        "continue": base64.urlsafe_b64encode(str(offset + limit).encode()).decode(),
        "remainingItemCount": rest,
    }


class ApiServer:
    """Routes API requests to the store, with the real server's authentication, RBAC and errors.

    `after_write(plural, namespace)` runs the controllers that react to a write (default
    ServiceAccount of a new namespace, token Secrets, kube-root-ca.crt).
    """

    def __init__(
        self,
        store: Store,
        tokens: Tokens,
        kubelets: dict[str, Kubelet],
        deletions: list[dict],
        after_write=None,
        container_logs: dict[str, bytes] | None = None,
    ) -> None:
        self.store = store
        self.container_logs = container_logs if container_logs is not None else {}  # container id -> output
        self.tokens = tokens
        self.authorizer = Authorizer(store)
        self.policies = ValidatingAdmissionPolicies(store)
        self.kubelets = kubelets
        self.deletions = deletions
        self.after_write = after_write or (lambda plural, namespace: None)

    def handle(self, request: Request) -> Response:
        try:
            user = self.tokens.authenticate(request.bearer_token())
            if user is None:
                raise ApiError(401, "Unauthorized")
            self.authorize(user, request)
            return self.route(request, user)
        except ApiError as error:
            return Response.status(error)
        except Exception as exc:  # noqa: BLE001 - the real server answers InternalError, so do we
            traceback.print_exc()
            return Response.status(ApiError(500, f"Internal error occurred: {type(exc).__name__}: {exc}"))

    def authorize(self, user: User, request: Request) -> Attributes:
        """WithAuthorization: RBAC (after system:masters) decides before any handler runs."""
        watch = request.param("watch") not in (None, "", "false", "0")
        attrs = request_attributes(user, request.method, request.path, watch)
        if not self.authorizer.allowed(attrs):
            rt = self.store.types.get(attrs.resource)
            raise forbidden(attrs, rt.qualified if rt else attrs.resource)
        return attrs

    def route(self, request: Request, user: User) -> Response:
        discovery = self.discovery(request)
        if discovery is not None:
            return discovery
        target = parse_resource_path(request.path)
        if target is None:
            raise resource_not_served()
        if sar.is_review_path(target.group, target.version, target.plural, target.namespace) and target.name is None:
            return sar.serve(self.store, request)  # standin/kube/sar.py: nothing stored
        rt = self.store.served(target.group, target.version, target.plural)
        if rt is None or (target.namespace is not None and not rt.namespaced):
            raise resource_not_served()
        if target.subpath:
            return self.subresource(rt, target, request, user)
        if target.name is None:
            return self.collection(rt, target, request, user)
        if rt.namespaced and target.namespace is None:
            raise resource_not_served()
        return self.item(rt, target, request, user)

    # --- verbs -------------------------------------------------------------------------------

    def collection(self, rt: ResourceType, target: ResourcePath, request: Request, user: User) -> Response:
        if request.method == "GET":
            return self.list(rt, target.namespace, request)
        if request.method == "POST" and (target.namespace is not None or not rt.namespaced):
            body = self.object_body(request)
            if rt.plural == "pods":  # NamespaceLifecycle admission runs before ServiceAccount admission
                self.store.require_namespace(target.namespace)
                admit_pod(self.store, target.namespace or "", body)
            dry_run = self.dry_run(request)
            created = self.create_admitted(rt, target.namespace, body, dry_run, user)
            if not dry_run:
                self.after_write(rt.plural, target.namespace)
            return Response.json(201, created)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def list(self, rt: ResourceType, namespace: str | None, request: Request) -> Response:
        if request.param("watch") not in (None, "", "false", "0"):
            raise bad_request("watch is not served by the stand-in API server")
        labels = parse_label_selector(request.param("labelSelector"))
        fields = parse_field_selector(request.param("fieldSelector"), rt)
        revision = self.store.revision
        items, more = _list_page(self.store.list(rt, namespace, labels, fields), request)
        if rt.builtin:  # built-in lists carry kind/apiVersion once, not per item
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        metadata = {"resourceVersion": revision, **more}
        return Response.json(
            200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": metadata, "items": items}
        )

    def item(self, rt: ResourceType, target: ResourcePath, request: Request, user: User) -> Response:
        ns, name, method = target.namespace, target.name or "", request.method
        if method == "GET":
            return Response.json(200, self.store.get(rt, ns, name))
        if method == "PUT":
            body = self.object_body(request)
            updated = self.update_admitted(
                rt, ns, name, lambda dry: self.store.update(rt, ns, name, body, dry), self.dry_run(request), user
            )
            self.after_write(rt.plural, ns)
            return Response.json(200, updated)
        if method == "PATCH":
            patch = request.json_body()
            patched = self.update_admitted(
                rt, ns, name, lambda dry: self.store.patch(rt, ns, name, request.media_type, patch, dry),
                self.dry_run(request), user,
            )
            self.after_write(rt.plural, ns)
            return Response.json(200, patched)
        if method == "DELETE":
            return self.delete(rt, ns, name, request, user)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    def delete(self, rt: ResourceType, namespace: str | None, name: str, request: Request, user: User) -> Response:
        options = self.delete_options(request)
        dry_run = self.dry_run(request) or bool(options.get("dryRun"))
        deleted = self.delete_admitted(rt, namespace, name, options.get("preconditions"), dry_run, user)
        grace = self.grace_period(rt, deleted, request, options)
        if not dry_run:
            self.after_write(rt.plural, namespace)  # e.g. the root CA publisher puts kube-root-ca.crt back
            self.deletions.append(
                {
                    "plural": rt.plural,
                    "namespace": namespace,
                    "name": name,
                    "gracePeriodSeconds": grace,
                    "propagationPolicy": request.param("propagationPolicy") or options.get("propagationPolicy"),
                }
            )
        if rt.returns_object_on_delete:
            deleted["metadata"]["deletionGracePeriodSeconds"] = grace
            deleted["metadata"]["deletionTimestamp"] = timestamp(utcnow() + dt.timedelta(seconds=grace or 0))
            return Response.json(200, deleted)
        uid = deleted["metadata"].get("uid")
        return Response.json(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": rt.details(name, uid=uid),
            },
        )

    def grace_period(self, rt: ResourceType, deleted: dict, request: Request, options: dict) -> int | None:
        """Query parameter first, then DeleteOptions, then the pod's own terminationGracePeriodSeconds."""
        grace = _int_param(request, "gracePeriodSeconds")
        if grace is None and options.get("gracePeriodSeconds") is not None:
            grace = int(options["gracePeriodSeconds"])
        if grace is None and rt.kind == "Pod":
            grace = (deleted.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return grace

    def subresource(self, rt: ResourceType, target: ResourcePath, request: Request, user: User) -> Response:
        if rt.plural == "serviceaccounts" and target.name and target.namespace and target.subpath == ("token",):
            return tokenrequest.serve(self.store, self.tokens, target.namespace, target.name, request)
        if rt.plural == "nodes" and target.name and target.subpath[0] == "proxy":
            return self.node_proxy(target.name, target.subpath[1:], request)
        if rt.plural == "pods" and target.name and target.namespace and target.subpath == ("log",):
            if request.method != "GET":
                raise ApiError(405, "the server does not allow this method on the requested resource")
            return logs.serve(self.store.get(rt, target.namespace, target.name), request, self.container_logs)
        if rt.plural in scale.SCALABLE and target.name and target.namespace and target.subpath == ("scale",):
            def admit(new: dict, old: dict, dry_run: bool) -> None:
                if self.policies.active():
                    self.policies.validate(AdmissionAttributes(user, "UPDATE", rt, target.namespace or "", target.name or "",
                                                               new, old, dry_run, subresource="scale"))
            response = scale.serve(self.store, rt, target.namespace, target.name, request, admit)
            if request.method != "GET":
                self.after_write(rt.plural, target.namespace)
            return response
        raise resource_not_served()

    def node_proxy(self, node: str, subpath: tuple[str, ...], request: Request) -> Response:
        """nodes/proxy: the API server forwards to the node's kubelet with its own credentials."""
        self.store.get(self.store.types["nodes"], None, node)
        kubelet = self.kubelets.get(node)
        if kubelet is None:
            raise ApiError(503, "error trying to reach service: dial tcp 127.0.0.1:10250: connect: connection refused")
        forwarded = Request(request.method, "/" + "/".join(subpath), request.query, request.headers, request.body)
        return kubelet.route(forwarded)

    # --- validating admission (standin/kube/vap.py) ----------------------------------------
    # After authorization, mutating admission, defaults and the store's validation; before the write
    # (genericregistry.Store: createValidation after rest.BeforeCreate, updateValidation inside
    # GuaranteedUpdate's retry, deleteValidation re-run when the object changed). Without any
    # ValidatingAdmissionPolicy stored, writes go straight to the store.

    def admission(self, user: User, operation: str, rt: ResourceType, namespace: str | None, name: str,
                  obj: dict | None, old: dict | None, dry_run: bool) -> None:
        where = name if rt.plural == "namespaces" else namespace  # a Namespace's request.namespace is its name
        self.policies.validate(AdmissionAttributes(user, operation, rt, where or "", name, obj, old, dry_run))

    def create_admitted(self, rt: ResourceType, namespace: str | None, body: dict, dry_run: bool, user: User) -> dict:
        if not self.policies.active():
            return self.store.create(rt, namespace, body, dry_run=dry_run)
        candidate = self.store.create(rt, namespace, body, dry_run=True)
        name = (body.get("metadata") or {}).get("name") or ""
        self.admission(user, "CREATE", rt, namespace, name, candidate, None, dry_run)
        return candidate if dry_run else self.store.create(rt, namespace, candidate)

    def update_admitted(self, rt: ResourceType, namespace: str | None, name: str, write, dry_run: bool,
                        user: User) -> dict:
        """`write(dry_run)` is the store's PUT or PATCH; the object it would store is admitted against
        the stored one, then stored only if nothing was written in between (else tried again)."""
        if not self.policies.active():
            return write(dry_run)
        for attempt in range(3):
            old = self.store.get(rt, namespace, name)
            new = write(True)
            self.admission(user, "UPDATE", rt, namespace, name, new, old, dry_run)
            if dry_run:
                return new
            if new["metadata"].get("resourceVersion") == old["metadata"]["resourceVersion"]:
                try:
                    return self.store.update(rt, namespace, name, new)
                except ApiError as error:
                    if error.code != 409 or attempt == 2:
                        raise
        raise ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
                       "modified; please apply your changes to the latest version and try again",
                       details=rt.details(name))

    def delete_admitted(self, rt: ResourceType, namespace: str | None, name: str, preconditions: dict | None,
                        dry_run: bool, user: User) -> dict:
        if not self.policies.active():
            return self.store.delete(rt, namespace, name, preconditions, dry_run)
        for attempt in range(3):
            current = self.store.get(rt, namespace, name)
            self.admission(user, "DELETE", rt, namespace, name, None, current, dry_run)
            pinned = {"resourceVersion": current["metadata"]["resourceVersion"], **(preconditions or {})}
            try:
                return self.store.delete(rt, namespace, name, pinned, dry_run)
            except ApiError as error:
                changed = (self.store.find(rt, namespace, name) or {}).get("metadata", {}).get("resourceVersion")
                if error.code != 409 or (preconditions or {}).get("resourceVersion") or attempt == 2 \
                        or changed == current["metadata"]["resourceVersion"]:
                    raise
        raise AssertionError("unreachable")

    # --- bodies and options ------------------------------------------------------------------

    def object_body(self, request: Request) -> dict:
        if request.media_type != "application/json":
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types include: application/json",
            )
        body = request.json_body()
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return body

    def delete_options(self, request: Request) -> dict:
        if not request.body:
            return {}
        body = request.json_body()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        return body

    @staticmethod
    def dry_run(request: Request) -> bool:
        value = request.param("dryRun")
        if value not in (None, "", "All"):
            raise bad_request(f'unsupported dry run value "{value}"')
        return value == "All"

    # --- discovery ---------------------------------------------------------------------------

    def discovery(self, request: Request) -> Response | None:
        """Enough discovery for clients that ask (typed calls never do)."""
        if request.method != "GET":
            return None
        path = request.path.rstrip("/")
        groups = self._group_versions()
        if path == "/version":
            return Response.json(200, KUBERNETES_VERSION)
        if path == "/api":
            return Response.json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return Response.json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(g, v) for g, v in groups if g]}
            )
        for group, version in groups:
            prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
            if path == prefix:
                return Response.json(200, self._resource_list(group, version))
            if group and path == f"/apis/{group}":
                return Response.json(200, {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, version)})
        return None

    def _group_versions(self) -> list[tuple[str, str]]:
        return sorted({(rt.group, rt.version) for rt in self.store.types.values()})

    @staticmethod
    def _group(group: str, version: str) -> dict:
        entry = {"groupVersion": f"{group}/{version}", "version": version}
        return {"name": group, "versions": [entry], "preferredVersion": entry}

    def _resource_list(self, group: str, version: str) -> dict:
        verbs = ["create", "delete", "get", "list", "patch", "update"]
        resources = [
            {
                "name": rt.plural,
                "singularName": rt.kind.lower(),
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": verbs,
            }
            for rt in self.store.types.values()
            if (rt.group, rt.version) == (group, version)
        ]
        resources += [
            {"name": f"{rt.plural}/scale", "singularName": "", "namespaced": True, "group": "autoscaling", "version": "v1",
             "kind": "Scale", "verbs": ["get", "patch", "update"]}
            for rt in self.store.types.values()
            if (rt.group, rt.version) == (group, version) and rt.plural in scale.SCALABLE
        ]
        if not group:
            resources.append(
                {
                    "name": "nodes/proxy",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "NodeProxyOptions",
                    "verbs": ["create", "delete", "get", "patch", "update"],
                }
            )
        groupversion = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": groupversion, "resources": resources}
