"""What the API server and its controllers do around a write: ServiceAccount admission of Pods,
the token controller for legacy token Secrets, and the `default` ServiceAccount of a namespace.

- ServiceAccount admission (plugin/pkg/admission/serviceaccount/admission.go, Admit): a Pod
  without serviceAccountName gets `default`; the ServiceAccount must exist, or the create is
  refused 403 `error looking up service account <ns>/<name>: serviceaccount "<name>" not found`;
  when shouldAutomount (the Pod's automountServiceAccountToken, else the ServiceAccount's, else
  true) a projected volume `kube-api-access-<5 chars>` (token, kube-root-ca.crt's ca.crt, the
  namespace) is added and mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in
  every init and app container that has no mount at that path (mountServiceAccountToken).
- Token controller (pkg/controller/serviceaccount/tokens_controller.go): a Secret of type
  `kubernetes.io/service-account-token` whose annotation `kubernetes.io/service-account.name`
  names an existing ServiceAccount gets `data.token`, `data.ca.crt` and `data.namespace`; one
  naming a missing account gets nothing (the real controller deletes it).
- ServiceAccounts controller (pkg/controller/serviceaccount/serviceaccounts_controller.go): every
  namespace gets a `default` ServiceAccount.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

from standin.kube.auth import Tokens, service_account_user
from standin.kube.errors import ApiError
from standin.kube.store import Store

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
# utilrand.String's alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no confusable digits.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def should_automount(pod: dict, service_account: dict) -> bool:
    """shouldAutomount: the Pod's preference wins, then the ServiceAccount's, then true."""
    for source in (pod.get("spec") or {}, service_account):
        value = source.get("automountServiceAccountToken")
        if value is not None:
            return bool(value)
    return True


def admit_pod(store: Store, namespace: str, pod: dict) -> dict:
    """Mutate and check a Pod on CREATE as the ServiceAccount admission plugin does."""
    spec = pod.setdefault("spec", {})
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = account
    service_account = store.find(store.types["serviceaccounts"], namespace, account)
    name = (pod.get("metadata") or {}).get("name") or ""
    if service_account is None:
        prefix = f'pods "{name}"' if name else "pods"
        raise ApiError(
            403,
            f'{prefix} is forbidden: error looking up service account {namespace}/{account}: '
            f'serviceaccount "{account}" not found',
            details={"name": name, "kind": "pods"} if name else {"kind": "pods"},
        )
    if should_automount(pod, service_account):
        _mount_token(spec)
    return pod


def _mount_token(spec: dict) -> None:
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    needing = [c for c in containers if not any(m.get("mountPath") == TOKEN_DIR for m in c.get("volumeMounts") or [])]
    if not needing:
        return
    volume = "kube-api-access-" + "".join(secrets.choice(_ALPHABET) for _ in range(5))
    spec.setdefault("volumes", []).append(
        {
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                            ]
                        }
                    },
                ],
            },
        }
    )
    for container in needing:
        container.setdefault("volumeMounts", []).append({"name": volume, "readOnly": True, "mountPath": TOKEN_DIR})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def account_unchanged(store: Store, namespace: str, name: str, uid: str) -> bool:
    """What the token validators check of the account (pkg/serviceaccount/claims.go and legacy.go,
    Validate): it still exists with the UID the token was issued for, so a re-created account of the
    same name does not revive the old token ("service account UID (...) does not match claim")."""
    found = store.find(store.types["serviceaccounts"], namespace, name)
    return found is not None and found["metadata"].get("uid") == uid


def populate_token_secrets(store: Store, tokens: Tokens, ca_pem: Callable[[], str]) -> None:
    """The token controller (tokens_controller.go, syncSecret): a token Secret whose ServiceAccount
    does not exist is deleted; an unfilled one of an existing account gets token, ca.crt, namespace
    and the account's uid annotation (generateTokenIfNeeded)."""
    rt_secret, rt_sa = store.types["secrets"], store.types["serviceaccounts"]
    for secret in store.list(rt_secret):
        if secret.get("type") != TOKEN_SECRET_TYPE:
            continue
        meta = secret["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        account = (meta.get("annotations") or {}).get(SA_NAME_ANNOTATION)
        service_account = store.find(rt_sa, namespace, account) if account else None
        if service_account is None:
            if account:  # syncSecret: "service account does not exist, deleting token"
                store.remove(rt_secret, namespace, name)
            continue
        if (secret.get("data") or {}).get("token"):
            continue

        def valid(ns: str = namespace, sa: str = account, sname: str = name,
                  uid: str = service_account["metadata"]["uid"]) -> bool:
            # legacy.go: the token is good while both its Secret and its ServiceAccount exist.
            return store.find(rt_secret, ns, sname) is not None and account_unchanged(store, ns, sa, uid)

        token = tokens.issue(service_account_user(namespace, account), valid)
        data = dict(secret.get("data") or {})
        data.update({"token": _b64(token), "ca.crt": _b64(ca_pem()), "namespace": _b64(namespace)})
        annotations = {SA_UID_ANNOTATION: service_account["metadata"]["uid"]}
        store.patch(rt_secret, namespace, name, "application/merge-patch+json",
                    {"metadata": {"annotations": annotations}, "data": data})


def ensure_default_service_account(store: Store, namespace: str) -> None:
    rt = store.types["serviceaccounts"]
    if store.find(rt, namespace, "default") is None:
        store.create(rt, namespace, {"metadata": {"name": "default"}}, from_api=False)


__all__ = [
    "ROOT_CA_CONFIGMAP",
    "SA_NAME_ANNOTATION",
    "TOKEN_DIR",
    "TOKEN_SECRET_TYPE",
    "admit_pod",
    "ensure_default_service_account",
    "populate_token_secrets",
    "should_automount",
]
