"""The scale subresource of apps/v1 Deployments, ReplicaSets and StatefulSets.

As pkg/registry/apps/{deployment,replicaset,statefulset}/storage/storage.go (ScaleREST) serve it:

- the object is an autoscaling/v1 Scale whatever the parent's group (GroupVersionKind: autoscaling/v1
  for apps/v1), made from the parent (scaleFromDeployment): name, namespace, uid, resourceVersion and
  creationTimestamp of the parent; spec.replicas (omitted when 0: `omitempty`); status.replicas and
  status.selector, the parent's LabelSelector as a string (LabelSelectorAsSelector(...).String());
- GET reads the parent and answers with its NotFound (`deployments.apps "x" not found`);
- PUT and PATCH (JSON, merge and strategic merge patches, as on the parent) apply to that Scale,
  then scaleUpdatedObjectInfo: a missing parent is `deployments/scale.apps "x" not found`, the
  new Scale is validated (ValidateScale: a 422 `Scale.autoscaling "x" is invalid: spec.replicas:
  Invalid value: -1: must be greater than or equal to 0`), a UID that is not the parent's is a 409
  precondition failure, and spec.replicas with the Scale's resourceVersion go back into the parent
  (a stale resourceVersion is a 409 there). Nothing else of the parent can change this way.

RBAC is checked on `<plural>/scale` before any of this (the authorizer sees the subresource).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from standin.kube.errors import ApiError, Cause
from standin.kube.patches import patcher_for
from standin.kube.resources import ResourceType
from standin.kube.selectors import selector_string
from standin.kube.serving import Request, Response
from standin.kube.store import Store
from standin.kube.validation import invalid

SCALABLE = ("deployments", "replicasets", "statefulsets")
SCALE_TYPE = ResourceType("autoscaling", "v1", "scale", "Scale")


def scale_of(parent: dict) -> dict:
    meta = parent["metadata"]
    spec: dict = {}
    replicas = (parent.get("spec") or {}).get("replicas")
    if replicas:
        spec["replicas"] = replicas
    status: dict = {"replicas": int((parent.get("status") or {}).get("replicas") or 0)}
    selector = selector_string((parent.get("spec") or {}).get("selector"))
    if selector:
        status["selector"] = selector
    return {
        "kind": SCALE_TYPE.kind,
        "apiVersion": SCALE_TYPE.api_version,
        "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if key in meta},
        "spec": spec,
        "status": status,
    }


def _not_found(rt: ResourceType, name: str) -> ApiError:
    """errors.NewNotFound(apps.Resource("<plural>/scale"), name)."""
    qualified = f"{rt.plural}/scale.{rt.group}"
    return ApiError(404, f'{qualified} "{name}" not found', details={"name": name, "group": rt.group,
                                                                     "kind": f"{rt.plural}/scale"})


def _validate(scale: dict, name: str) -> None:
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise ApiError(400, f"json: cannot unmarshal {type(replicas).__name__} into Go struct field "
                       "ScaleSpec.spec.replicas of type int32")
    if replicas < 0:
        error = invalid(SCALE_TYPE, name, [Cause("spec.replicas", "must be greater than or equal to 0", value=replicas)])
        # errors.NewInvalid(autoscaling.Kind("Scale"), ...): the qualified kind names its group
        error.message = error.message.replace(f'{SCALE_TYPE.kind} "', f'{SCALE_TYPE.kind}.{SCALE_TYPE.group} "', 1)
        error.args = (error.message,)
        raise error


def serve(store: Store, rt: ResourceType, namespace: str, name: str, request: Request,
          admit: Callable[[dict, dict, bool], None]) -> Response:
    """GET, PUT or PATCH <plural>/<name>/scale; `admit(new_scale, old_scale, dry_run)` runs admission."""
    if request.method == "GET":
        return Response.json(200, scale_of(store.get(rt, namespace, name)))
    if request.method not in ("PUT", "PATCH"):
        raise ApiError(405, "the server does not allow this method on the requested resource")
    dry_run = request.param("dryRun") == "All"
    parent = store.find(rt, namespace, name)
    if parent is None:
        raise _not_found(rt, name)
    old = scale_of(parent)
    if request.method == "PUT":
        new = request.json_body()
        if not isinstance(new, dict):
            raise ApiError(400, "the request body must be a JSON object")
        for field, want in (("kind", SCALE_TYPE.kind), ("apiVersion", SCALE_TYPE.api_version)):
            if new.get(field) not in (None, "", want):
                raise ApiError(400, f"the {field} in the data ({new[field]}) does not match the expected {field} "
                                    f"({want})")
    else:
        new = patcher_for(rt, request.media_type)(copy.deepcopy(old), request.json_body())
        if not isinstance(new, dict):
            raise ApiError(422, "the patch result is not an object")
    meta = new.setdefault("metadata", {})
    if meta.get("name") not in (None, name):
        raise ApiError(400, f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
    _validate(new, name)
    if meta.get("uid") and meta["uid"] != parent["metadata"]["uid"]:
        raise ApiError(409, f'Operation cannot be fulfilled on {rt.plural}/scale.{rt.group} "{name}": Precondition '
                       f"failed: UID in precondition: {meta['uid']}, UID in object meta: {parent['metadata']['uid']}",
                       details={"name": name, "group": rt.group, "kind": f"{rt.plural}/scale"})
    admit(new, old, dry_run)
    updated = copy.deepcopy(parent)
    updated.setdefault("spec", {})["replicas"] = (new.get("spec") or {}).get("replicas", 0)
    version = meta.get("resourceVersion")
    if version:
        updated["metadata"]["resourceVersion"] = version
    else:
        updated["metadata"].pop("resourceVersion", None)  # an unconditional update, as the parent allows
    stored = store.update(rt, namespace, name, updated, dry_run)
    return Response.json(200, scale_of(stored))
