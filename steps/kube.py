"""The Kubernetes API as the steps use it: JSON over HTTPS on urllib3, nothing generated.

Importing the official `kubernetes` package costs about 300 ms (its models, YAML, OAuth), more than
a step's whole start-up budget (issue 9, item 4), for a handful of reads, creates, patches and a
delete. This module speaks the same HTTP the official client sends (kubernetes/client/rest.py
RESTClientObject.request, api_client.py ApiClient.call_api):

- JSON bodies; PATCH of a dict is a strategic merge patch, of a list a JSON patch (rest.py turns
  `application/json-patch+json` into `application/strategic-merge-patch+json` for a non-list
  body); `content_type=` picks another (custom resources take no strategic merge);
- `Authorization: Bearer <token>`; TLS to the API server verified against the cluster CA;
- credentials as config/incluster_config.py InClusterConfigLoader reads them: in a pod, the
  service account's token and ca.crt under /var/run/secrets/kubernetes.io/serviceaccount and
  https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (the token is re-read per request: the
  kubelet rotates it). Elsewhere (tests, laptops) $KUBECONFIG, read as JSON only, so no YAML
  parser is imported: `kubectl config view --raw --minify -o json` converts one;
- a non-2xx answer raises ApiException with `.status`, `.reason` and `.body` (the Status object's
  bytes), as kubernetes/client/exceptions.py does; an SSL failure is ApiException status 0; any
  other urllib3 failure propagates (the official client sets no retries either: common.retry
  decides).

Method names follow the generated client's (`read_namespaced_pod(name, namespace)`,
`patch_namespaced_deployment_scale(name, namespace, body)`, `list_namespaced_lease(namespace,
label_selector=...)`), so a step reads the same as with the official client.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import tempfile
from urllib.parse import quote, urlencode

from steps.common import StepError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
USER_AGENT = "falco-response-steps"


class ConfigError(StepError):
    """No usable credentials: the message is one line, for the step's error; nothing was sent."""


class ApiException(Exception):
    """A non-2xx answer (or status 0: the TLS handshake failed), like the official client's."""

    def __init__(self, status: int = 0, reason: str | None = None, http_resp=None) -> None:
        self.status = http_resp.status if http_resp is not None else status
        self.reason = http_resp.reason if http_resp is not None else reason
        self.body = http_resp.data if http_resp is not None else None
        self.headers = dict(http_resp.headers) if http_resp is not None else None
        super().__init__(self.status, self.reason)

    def __str__(self) -> str:
        text = f"({self.status})\nReason: {self.reason}\n"
        if self.headers:
            text += f"HTTP response headers: {self.headers}\n"
        if self.body:
            text += f"HTTP response body: {self.body.decode('utf-8', 'replace') if isinstance(self.body, bytes) else self.body}\n"
        return text


# --- where the API server is and who we are ---------------------------------------------------


class Configuration:
    """Server URL, CA and credentials; `token()` is read at each request (projected tokens rotate)."""

    def __init__(self, host: str, *, token: str | None = None, token_file: str | None = None,
                 ca_file: str | None = None, ca_data: str | None = None, verify: bool = True,
                 cert_file: str | None = None, key_file: str | None = None, server_name: str | None = None) -> None:
        self.host = host.rstrip("/")
        self._token, self.token_file = token, token_file
        self.ca_file, self.ca_data, self.verify = ca_file, ca_data, verify
        self.cert_file, self.key_file, self.server_name = cert_file, key_file, server_name

    def token(self) -> str | None:
        if self.token_file:
            try:
                with open(self.token_file) as handle:
                    return handle.read().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the token file {self.token_file}: {exc.strerror}") from None
        return self._token

    def authorization(self) -> str | None:
        """The Authorization header for token(), if any (a kubeconfig token may carry its `Bearer `)."""
        token = self.token()
        if not token:
            return None
        return token if token.lower().startswith("bearer ") else f"Bearer {token}"


def incluster_config() -> Configuration:
    """The pod's service account (InClusterConfigLoader: host, port, token file, ca.crt)."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError("in-cluster config: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is not set")
    token, ca = os.path.join(SA_DIR, "token"), os.path.join(SA_DIR, "ca.crt")
    for path in (token, ca):
        if not os.path.isfile(path):
            raise ConfigError(f"in-cluster config: {path} does not exist (automountServiceAccountToken off?)")
    shown = f"[{host}]" if ":" in host else host
    return Configuration(f"https://{shown}:{port}", token_file=token, ca_file=ca)


def _named(entries: object, name: object, what: str, path: str) -> dict:
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get(what), dict):
            return entry[what]
    raise ConfigError(f"kubeconfig {path}: no {what} named {name!r}")


def _b64(data: object, what: str, path: str) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except ValueError:
        raise ConfigError(f"kubeconfig {path}: {what} is not base64") from None


def _data_file(data: str, what: str, path: str) -> str:
    """A 0600 temporary file holding base64 `data` (ssl reads certificates and keys from files)."""
    raw = _b64(data, what, path)
    handle, name = tempfile.mkstemp(prefix="kube-", suffix=".pem")
    with os.fdopen(handle, "wb") as out:
        out.write(raw)
    atexit.register(_remove, name)  # a client key: not left behind
    return name


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


def kubeconfig_config(path: str) -> Configuration:
    """The current context of a JSON kubeconfig: server, CA, token or client certificate."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    try:
        config = json.loads(text)
    except ValueError:
        raise ConfigError(
            f"kubeconfig {path} is not JSON: steps read only JSON kubeconfigs (in a pod they use the service "
            "account); convert one with `kubectl config view --raw --minify -o json`"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(f"kubeconfig {path} is not a JSON object")
    context = _named(config.get("contexts"), config.get("current-context"), "context", path)
    cluster = _named(config.get("clusters"), context.get("cluster"), "cluster", path)
    user = _named(config.get("users"), context.get("user"), "user", path) if context.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"kubeconfig {path}: exec and auth-provider credentials are not supported: use a token")
    base = os.path.dirname(os.path.abspath(path))

    def local(key: str) -> str | None:  # relative paths are relative to the kubeconfig (clientcmd)
        value = cluster.get(key) if key == "certificate-authority" else user.get(key)
        return os.path.join(base, value) if isinstance(value, str) and value else None

    server = cluster.get("server")
    if not isinstance(server, str) or not re.match(r"https?://", server):
        raise ConfigError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no http(s) server")
    cert, key = local("client-certificate"), local("client-key")
    if user.get("client-certificate-data"):
        cert = _data_file(user["client-certificate-data"], "client-certificate-data", path)
    if user.get("client-key-data"):
        key = _data_file(user["client-key-data"], "client-key-data", path)
    ca_data = cluster.get("certificate-authority-data")
    return Configuration(
        server,
        token=user.get("token") or None,
        token_file=local("tokenFile"),
        ca_file=local("certificate-authority"),
        ca_data=_b64(ca_data, "certificate-authority-data", path).decode("ascii", "replace") if ca_data else None,
        verify=not cluster.get("insecure-skip-tls-verify"),
        cert_file=cert,
        key_file=key,
        server_name=cluster.get("tls-server-name") or None,
    )


def load_config() -> Configuration:
    """In a pod the service account; elsewhere $KUBECONFIG (default ~/.kube/config)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return incluster_config()
    path = (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]
    return kubeconfig_config(os.path.expanduser(path))


# --- requests -------------------------------------------------------------------------------


class ApiClient:
    """One connection pool to the API server; `request` sends JSON and raises ApiException."""

    def __init__(self, configuration: Configuration | None = None) -> None:
        import urllib3

        self.configuration = configuration or load_config()
        c = self.configuration
        tls: dict = {}
        if c.host.startswith("https://"):
            if c.verify:
                tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": c.ca_file, "ca_cert_data": c.ca_data}
                if c.server_name:
                    tls["server_hostname"] = c.server_name
            else:
                tls = {"cert_reqs": "CERT_NONE", "assert_hostname": False}
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            if c.cert_file and c.key_file:
                tls.update(cert_file=c.cert_file, key_file=c.key_file)
        self.pool = urllib3.PoolManager(num_pools=1, maxsize=4, retries=False, **tls)
        self._ssl_error = urllib3.exceptions.SSLError

    def request(self, method: str, path: str, *, query=None, body=None, content_type: str | None = None,
                headers: dict | None = None, timeout=None):
        """Send one request; the urllib3 response (`.status`, `.data`) for 2xx, else ApiException."""
        url = self.configuration.host + path
        if query:
            url += "?" + urlencode(query)
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        authorization = self.configuration.authorization()
        if authorization:
            sent["Authorization"] = authorization
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = content_type or "application/json"
        if isinstance(timeout, tuple):
            import urllib3

            timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        try:
            response = self.pool.request(method, url, body=data, headers=sent, timeout=timeout, redirect=False)
        except self._ssl_error as exc:  # as rest.py: TLS failures are ApiException status 0
            raise ApiException(status=0, reason=f"{type(exc).__name__}\n{exc}") from exc
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return response


_default: ApiClient | None = None


def default_client() -> ApiClient:
    global _default
    if _default is None:
        _default = ApiClient()
    return _default


# --- the generated client's method names ----------------------------------------------------

_METHOD = re.compile(r"(read|list|create|patch|replace|delete)_(namespaced_)?([a-z_]+?)(_scale|_status)?")
_VERBS = {"read": "GET", "list": "GET", "create": "POST", "patch": "PATCH", "replace": "PUT", "delete": "DELETE"}
_PLURALS = {"endpoints": "endpoints"}


def _plural(resource: str) -> str:
    word = resource.replace("_", "")
    return _PLURALS.get(word) or (word[:-1] + "ies" if word.endswith("y") else word + "s")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _query(kwargs: dict) -> tuple[list, dict]:
    """(query parameters, request options) from the generated client's keyword arguments."""
    options = {"timeout": kwargs.pop("_request_timeout", None)}
    if "_content_type" in kwargs:
        options["content_type"] = kwargs.pop("_content_type")
    kwargs.pop("_preload_content", None)  # responses are always raw: common.body() reads .data
    return [(_camel(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in kwargs.items() if v is not None], options


def _seg(value: str) -> str:
    return quote(str(value), safe="")


class _GroupApi:
    """`<verb>_[namespaced_]<resource>[_scale|_status](...)` of one API group version."""

    PREFIX = ""

    def __init__(self, api_client: ApiClient | None = None) -> None:
        self.api_client = api_client or default_client()

    def __getattr__(self, name: str):
        found = _METHOD.fullmatch(name)
        if not found or name.startswith("_"):
            raise AttributeError(name)
        verb, namespaced, resource, sub = found.groups()
        plural = _plural(resource)

        def call(*args, **kwargs):
            args = list(args)
            name_ = args.pop(0) if verb not in ("list", "create") else None
            namespace = args.pop(0) if namespaced else None
            body = args.pop(0) if verb in ("create", "patch", "replace") else kwargs.pop("body", None)
            if args:
                raise TypeError(f"{name}: unexpected positional arguments {args!r}")
            path = self.PREFIX + (f"/namespaces/{_seg(namespace)}" if namespaced else "") + f"/{plural}"
            if name_ is not None:
                path += f"/{_seg(name_)}" + (sub or "").replace("_", "/")
            query, options = _query(kwargs)
            content_type = options.pop("content_type", None)
            if verb == "patch" and content_type is None:  # rest.py: a dict is a strategic merge patch
                content_type = "application/json-patch+json" if isinstance(body, list) else "application/strategic-merge-patch+json"
            return self.api_client.request(_VERBS[verb], path, query=query, body=body, content_type=content_type, **options)

        return call


class CoreV1Api(_GroupApi):
    PREFIX = "/api/v1"


class AppsV1Api(_GroupApi):
    PREFIX = "/apis/apps/v1"


class NetworkingV1Api(_GroupApi):
    PREFIX = "/apis/networking.k8s.io/v1"


class CoordinationV1Api(_GroupApi):
    PREFIX = "/apis/coordination.k8s.io/v1"


class CustomObjectsApi:
    """Custom resources (CustomObjectsApi's argument order); PATCH is a merge patch by default."""

    def __init__(self, api_client: ApiClient | None = None) -> None:
        self.api_client = api_client or default_client()

    def _call(self, method, group, version, namespace, plural, name=None, body=None, kwargs=None):
        path = f"/apis/{_seg(group)}/{_seg(version)}"
        path += (f"/namespaces/{_seg(namespace)}" if namespace else "") + f"/{_seg(plural)}"
        path += f"/{_seg(name)}" if name is not None else ""
        query, options = _query(dict(kwargs or {}))
        if method == "PATCH":
            options.setdefault("content_type", "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json")
        return self.api_client.request(method, path, query=query, body=body, **options)

    def get_cluster_custom_object(self, group, version, plural, name, **kw):
        return self._call("GET", group, version, None, plural, name, kwargs=kw)

    def list_cluster_custom_object(self, group, version, plural, **kw):
        return self._call("GET", group, version, None, plural, kwargs=kw)

    def create_cluster_custom_object(self, group, version, plural, body, **kw):
        return self._call("POST", group, version, None, plural, body=body, kwargs=kw)

    def patch_cluster_custom_object(self, group, version, plural, name, body, **kw):
        return self._call("PATCH", group, version, None, plural, name, body, kw)

    def delete_cluster_custom_object(self, group, version, plural, name, **kw):
        return self._call("DELETE", group, version, None, plural, name, kw.pop("body", None), kw)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        return self._call("GET", group, version, namespace, plural, name, kwargs=kw)

    def list_namespaced_custom_object(self, group, version, namespace, plural, **kw):
        return self._call("GET", group, version, namespace, plural, kwargs=kw)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        return self._call("POST", group, version, namespace, plural, body=body, kwargs=kw)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kw):
        return self._call("PATCH", group, version, namespace, plural, name, body, kw)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        return self._call("DELETE", group, version, namespace, plural, name, kw.pop("body", None), kw)
