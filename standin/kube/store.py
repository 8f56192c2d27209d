"""The object store: one global revision and each API verb's rules, as etcd and the server keep them."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

from standin.kube.defaults import apply_defaults
from standin.kube.errors import ApiError, Cause, bad_request, conflict
from standin.kube.patches import patcher_for
from standin.kube.resources import RESOURCE_TYPES, ResourceType
from standin.kube.selectors import fields_match, labels_match
from standin.kube.stamps import generated_name, timestamp
from standin.kube.validation import invalid, validate, validate_update

_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def _without_version(obj: dict) -> dict:
    clean = copy.deepcopy(obj)
    clean.get("metadata", {}).pop("resourceVersion", None)
    return clean


class Store:
    """Objects keyed by (plural, namespace, name) with one global revision, as etcd keeps them.

    Every method implements one API verb with the real server's rules and raises ApiError; it
    returns deep copies so that no caller can change stored state behind the API's back.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._revision = 0
        self.types: dict[str, ResourceType] = {rt.plural: rt for rt in RESOURCE_TYPES}

    # --- lookups -----------------------------------------------------------------------------

    def resource_type(self, plural: str) -> ResourceType:
        try:
            return self.types[plural]
        except KeyError:
            raise KeyError(f"the stand-in serves no resource {plural!r}; known: {sorted(self.types)}") from None

    def served(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.types.get(plural)
        return rt if rt and (rt.group, rt.version) == (group, version) else None

    def register(self, rt: ResourceType) -> None:
        with self._lock:
            self.types[rt.plural] = rt

    @property
    def revision(self) -> str:
        with self._lock:
            return str(self._revision)

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rt.plural, (namespace or "") if rt.namespaced else "", name)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> dict | None:
        with self._lock:
            obj = self._objects.get(self._key(rt, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self.find(rt, namespace, name)
        if obj is None:
            raise ApiError(404, f'{rt.qualified} "{name}" not found', details=rt.details(name))
        return obj

    def list(self, rt: ResourceType, namespace: str | None = None, labels=(), fields=()) -> list[dict]:
        with self._lock:
            found = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self._objects.items())
                if plural == rt.plural and (namespace is None or ns == namespace)
            ]
        return [obj for obj in found if labels_match(labels, obj) and fields_match(fields, obj)]

    # --- writes ------------------------------------------------------------------------------

    def _commit(self, key: tuple[str, str, str], obj: dict) -> dict:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[key] = obj
        return copy.deepcopy(obj)

    def require_namespace(self, namespace: str | None) -> None:
        ns_type = self.types["namespaces"]
        if not namespace or self._key(ns_type, None, namespace) not in self._objects:
            raise ApiError(404, f'namespaces "{namespace}" not found', details=ns_type.details(namespace or ""))

    def create(
        self, rt: ResourceType, namespace: str | None, body: dict, dry_run: bool = False, from_api: bool = True
    ) -> dict:
        """POST: name (or generateName), defaults, validation, 409 AlreadyExists, new revision."""
        obj = copy.deepcopy(body)
        check_identity(rt, namespace, obj, url_name=None)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generated_name(meta["generateName"])
        if not meta.get("name"):
            raise invalid(rt, "", [Cause("metadata.name", "name or generateName is required", kind="required")])
        with self._lock:
            if rt.namespaced:
                self.require_namespace(namespace)
            key = self._key(rt, namespace, meta["name"])
            stamp_new(rt, namespace, obj, reset_status=from_api)
            apply_defaults(rt, obj)
            validate(rt, obj)
            if key in self._objects:
                raise ApiError(
                    409, f'{rt.qualified} "{meta["name"]}" already exists', "AlreadyExists", rt.details(meta["name"])
                )
            return copy.deepcopy(obj) if dry_run else self._commit(key, obj)

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: dict, dry_run: bool = False) -> dict:
        """PUT: optimistic concurrency on metadata.resourceVersion; a no-op keeps the revision."""
        new = copy.deepcopy(body)
        check_identity(rt, namespace, new, url_name=name)
        with self._lock:
            current = self.get(rt, namespace, name)
            check_version(rt, current, new)
            carry_server_fields(rt, current, new)
            apply_defaults(rt, new)
            validate(rt, new)
            validate_update(rt, current, new)
            if dry_run or _without_version(new) == _without_version(current):
                return new if dry_run else current
            return self._commit(self._key(rt, namespace, name), new)

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, media_type: str, patch: Any, dry_run: bool = False
    ) -> dict:
        """PATCH: apply to the stored object, then update; a resourceVersion in the patch is a precondition."""
        apply = patcher_for(rt, media_type)
        with self._lock:
            current = self.get(rt, namespace, name)
            patched = apply(current, patch)
            if not isinstance(patched, dict):
                raise ApiError(422, "the patch result is not an object")
            meta = patched.setdefault("metadata", {})
            if meta.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
                raise conflict(
                    rt,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.update(rt, namespace, name, patched, dry_run)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        preconditions: dict | None = None,
        dry_run: bool = False,
    ) -> dict:
        """DELETE: preconditions (uid, resourceVersion) are 409s; a namespace takes its content along."""
        with self._lock:
            current = self.get(rt, namespace, name)
            check_preconditions(rt, current, preconditions or {})
            if not dry_run:
                self._revision += 1
                del self._objects[self._key(rt, namespace, name)]
                if rt.plural == "namespaces":
                    self._drop_namespace_content(name)
            return current

    def _drop_namespace_content(self, namespace: str) -> None:
        for key in [k for k in self._objects if k[1] == namespace and self.types[k[0]].namespaced]:
            del self._objects[key]

    def put_status(self, rt: ResourceType, namespace: str | None, name: str, status: dict) -> dict:
        """What a controller's status write does (the kubelet's pod status): new revision, spec kept."""
        with self._lock:
            current = self.get(rt, namespace, name)
            current["status"] = copy.deepcopy(status)
            return self._commit(self._key(rt, namespace, name), current)

    def bind(self, namespace: str, name: str, node: str) -> dict:
        """pods/binding (pkg/registry/core/pod/storage/storage.go, assignPod): set spec.nodeName
        once; a pod already on another node is a 409."""
        rt = self.types["pods"]
        with self._lock:
            current = self.get(rt, namespace, name)
            placed = (current.get("spec") or {}).get("nodeName")
            if placed and placed != node:
                raise conflict(rt, name, f"pod {name} is already assigned to node \"{placed}\"")
            current.setdefault("spec", {})["nodeName"] = node
            return self._commit(self._key(rt, namespace, name), current)

    def remove(self, rt: ResourceType, namespace: str | None, name: str) -> bool:
        """Direct state change for tests (a pod that vanishes): no API rules, still a new revision."""
        with self._lock:
            if self._objects.pop(self._key(rt, namespace, name), None) is None:
                return False
            self._revision += 1
            return True


def check_identity(rt: ResourceType, namespace: str | None, obj: dict, url_name: str | None) -> None:
    """The body must describe the resource and the place the URL names (400 otherwise)."""
    if obj.get("apiVersion") not in (None, "", rt.api_version):
        raise bad_request(
            f"the API version in the data ({obj['apiVersion']}) does not match the expected API version "
            f"({rt.api_version})"
        )
    if obj.get("kind") not in (None, "", rt.kind):
        raise bad_request(f"the kind in the data ({obj['kind']}) does not match the expected kind ({rt.kind})")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if rt.namespaced and meta.get("namespace") not in (None, "", namespace):
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    if url_name is not None and meta.get("name") != url_name:
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({url_name})"
        )


def stamp_new(rt: ResourceType, namespace: str | None, obj: dict, reset_status: bool) -> None:
    """Server-owned fields of a new object; a status sent through the main resource is dropped."""
    obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
    meta = obj["metadata"]
    if rt.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = timestamp()
    for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(transient, None)
    if reset_status and rt.has_status:
        obj["status"] = {}


def check_version(rt: ResourceType, current: dict, new: dict) -> None:
    given = new["metadata"].get("resourceVersion")
    if not given and not rt.unconditional_update:
        raise invalid(
            rt,
            current["metadata"]["name"],
            [Cause("metadata.resourceVersion", "must be specified for an update", value=0)],
        )
    if given and given != current["metadata"]["resourceVersion"]:
        raise conflict(
            rt,
            current["metadata"]["name"],
            "the object has been modified; please apply your changes to the latest version and try again",
        )


def carry_server_fields(rt: ResourceType, current: dict, new: dict) -> None:
    """What a PUT cannot change: identity, server metadata and (behind a subresource) status."""
    new["apiVersion"], new["kind"] = rt.api_version, rt.kind
    meta, old_meta = new["metadata"], current["metadata"]
    for key in ("namespace", *_SERVER_METADATA, "resourceVersion"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if rt.has_status:
        if "status" in current:
            new["status"] = copy.deepcopy(current["status"])
        else:
            new.pop("status", None)


def check_preconditions(rt: ResourceType, current: dict, preconditions: dict) -> None:
    meta = current["metadata"]
    for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        wanted = preconditions.get(field_name)
        if wanted and wanted != meta.get(field_name):
            raise conflict(
                rt,
                meta["name"],
                f"Precondition failed: {label} in precondition: {wanted}, "
                f"{label} in object meta: {meta.get(field_name)}",
            )
