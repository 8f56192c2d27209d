"""TokenRequest (`POST .../serviceaccounts/<name>/token`): a bound token for a ServiceAccount.

As kubernetes pkg/registry/core/serviceaccount/storage/token.go (TokenREST.Create) and
pkg/apis/authentication/validation ValidateTokenRequest serve it: the caller needs RBAC `create` on
`serviceaccounts/token` (checked before the handler, like every request); the ServiceAccount must
exist (404 otherwise); spec.expirationSeconds defaults to 3600 and may not be below 600 ("may not
specify a duration less than 10 minutes", 422); the answer (201) is the TokenRequest with
status.token and status.expirationTimestamp. The token authenticates as
system:serviceaccount:<ns>:<name> while that ServiceAccount (same UID) exists; the stand-in does not
expire it by time (no test outlives ten minutes).
"""

from __future__ import annotations

import datetime as dt

from standin.kube.admission import account_unchanged
from standin.kube.auth import Tokens, service_account_user
from standin.kube.errors import ApiError, Cause
from standin.kube.serving import Request, Response
from standin.kube.stamps import timestamp, utcnow
from standin.kube.store import Store

MIN_SECONDS, MAX_SECONDS = 600, 1 << 32


def serve(store: Store, tokens: Tokens, namespace: str, name: str, request: Request) -> Response:
    if request.method != "POST":
        raise ApiError(405, "the server does not allow this method on the requested resource")
    body = request.json_body() or {}
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    account = store.get(store.types["serviceaccounts"], namespace, name)  # 404 Status when missing
    spec = dict(body.get("spec") or {})
    seconds = spec.get("expirationSeconds", 3600)
    problem = None
    if not isinstance(seconds, int) or seconds < MIN_SECONDS:
        problem = "may not specify a duration less than 10 minutes"
    elif seconds > MAX_SECONDS:
        problem = "may not specify a duration larger than 2^32 seconds"
    if problem:
        cause = Cause("spec.expirationSeconds", problem, value=seconds)
        raise ApiError(422, f'TokenRequest.authentication.k8s.io "{name}" is invalid: {cause.field}: {cause.message()}',
                       details={"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
                                "causes": [{"reason": cause.reason(), "message": cause.message(), "field": cause.field}]})
    uid = account["metadata"]["uid"]
    token = tokens.issue(service_account_user(namespace, name), lambda: account_unchanged(store, namespace, name, uid))
    spec.setdefault("audiences", ["https://kubernetes.default.svc.cluster.local"])
    spec["expirationSeconds"] = seconds
    return Response.json(201, {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": timestamp(utcnow() + dt.timedelta(seconds=seconds))},
    })
