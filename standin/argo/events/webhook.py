"""The Falco webhook EventSource from build/, served locally the way Argo Events serves it.

Behaviour follows Argo Events' webhook EventSource (pkg/eventsources/common/webhook/webhook.go and
pkg/eventsources/sources/webhook/start.go), checked in this order:

- a path other than the endpoint (or /health): 404 `404 page not found` (gorilla/mux);
- with an authSecret: no `Authorization: Bearer ...` header: 401 `Invalid Authorization Header`;
  a wrong token: 401 `Invalid Auth token`; then the header is masked as
  `*** Masked Auth Secret ***` before the event is published;
- another method than the endpoint's: 400 `http method does not match`;
- a body over maxPayloadSize: 400 `http: request body too large` (http.MaxBytesReader);
- a body that is not JSON: 400 (json.Marshal of the RawMessage fails);
- otherwise the event data `{"header": <canonical header -> [values]>, "body": <compacted body>}`
  is published and the answer is 200 `success`.
Argo Events answers 400, not 405 or 413, for a wrong method or an oversized body.

Transport (startServer in webhook.go): ListenAndServeTLS with the files of serverCertSecret and
serverKeySecret when both are set, plain ListenAndServe otherwise (`serving_tls`). Go's TLS server
answers a plain-HTTP request (first bytes "POST " and the like: net/http tlsRecordHeaderLooksLikeHTTP)
with `HTTP/1.0 400 Bad Request` and "Client sent an HTTP request to an HTTPS server.", then closes;
any other failed handshake is only logged. The stand-in serves HTTP/1.1 where Go would also offer h2.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from standin.argo.events import sensors
from standin.argo.events.sensors import WebhookSpec
from standin.loopback import Background

MASKED = "*** Masked Auth Secret ***"
SECRETS_DIR = "/argo-events/secrets"  # GetSecretVolumePath: <dir>/<secret name>/<key>
# net/http (*conn).serve, for a TLS record header that tlsRecordHeaderLooksLikeHTTP.
PLAIN_HTTP_PREFIXES = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
PLAIN_HTTP_ANSWER = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


class EventSourceDown(ValueError):
    """The EventSource pod cannot serve: one line, as `kubectl describe pod` or its log would say."""


@dataclass
class ServingTLS:
    """The certificate chain and key the EventSource pod serves with, and the Secret they came from."""

    cert_pem: str
    key_pem: str
    secret: str


def serving_tls(build_dir: str | Path, objects: list[dict]) -> ServingTLS | None:
    """What the webhook EventSource of build/eventsources serves with in a cluster holding `objects`.

    startServer (webhook.go): TLS only when serverCertSecret AND serverKeySecret are set, else plain
    HTTP (None). The controller mounts each Secret as a volume (GenerateSecretVolumeSpecs: the whole
    Secret at /argo-events/secrets/<name>, not optional), so a missing Secret keeps the pod in
    ContainerCreating, and a missing key makes ListenAndServeTLS fail: no webhook either way."""
    from standin.argo.events.sensors.loader import load_yaml_objects

    sources = load_yaml_objects(Path(build_dir) / "eventsources", "EventSource")
    hooks = [(es, hook) for es in sources for hook in ((es.get("spec") or {}).get("webhook") or {}).values()]
    if len(hooks) != 1:
        raise EventSourceDown(f"expected exactly one webhook event in {build_dir}/eventsources, found {len(hooks)}")
    es, hook = hooks[0]
    cert_ref, key_ref = hook.get("serverCertSecret"), hook.get("serverKeySecret")
    if not (cert_ref and key_ref):
        return None
    namespace = (es.get("metadata") or {}).get("namespace") or "default"
    files = []
    for ref in (cert_ref, key_ref):
        found = [o for o in objects if o.get("kind") == "Secret" and o["metadata"]["name"] == ref.get("name")
                 and o["metadata"].get("namespace", "default") == namespace]
        if not found:
            raise EventSourceDown(f'EventSource {es["metadata"]["name"]}: MountVolume.SetUp failed for volume '
                                  f'"secret-{ref.get("name")}": secret "{ref.get("name")}" not found: the pod stays in '
                                  "ContainerCreating")
        data = found[0].get("data") or {}
        if ref.get("key") not in data:
            raise EventSourceDown(f'EventSource {es["metadata"]["name"]}: failed to listen and serve with TLS configured: '
                                  f'open {SECRETS_DIR}/{ref.get("name")}/{ref.get("key")}: no such file or directory')
        files.append(base64.b64decode(data[ref["key"]]).decode())
    return ServingTLS(files[0], files[1], f"{namespace}/{cert_ref.get('name')}")


def _server_context(tls: ServingTLS) -> ssl.SSLContext:
    """tls.LoadX509KeyPair(cert, key) and Go's server defaults (TLS 1.2 at least)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="eventsource-tls-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_text(tls.cert_pem)
        key.write_text(tls.key_pem)
        key.chmod(0o600)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise EventSourceDown(f"failed to listen and serve with TLS configured: tls: {exc.reason or exc}") from None
    return context


class _TLSServer(ThreadingHTTPServer):
    """ListenAndServeTLS: a plain-HTTP request gets Go's 400, a failed handshake closes the connection."""

    context: ssl.SSLContext

    def finish_request(self, request, client_address) -> None:
        request.settimeout(10)
        head = b""
        try:
            while len(head) < 5:
                chunk = request.recv(5, socket.MSG_PEEK)
                if not chunk or chunk == head:
                    break
                head = chunk
        except OSError:
            return
        if head[:5] in PLAIN_HTTP_PREFIXES:
            try:
                request.sendall(PLAIN_HTTP_ANSWER)
            except OSError:
                pass
            return
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # Go: "http: TLS handshake error from <addr>: ..."
        try:
            tls.settimeout(60)
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


@dataclass
class Response:
    status: int
    text: str
    event_data: bytes | None = None  # set when an event was published


def canonical_header_key(key: str) -> str:
    """net/textproto.CanonicalMIMEHeaderKey."""
    if not key or any(not (c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~")) for c in key):
        return key
    out = []
    upper = True
    for c in key:
        out.append(c.upper() if upper else c.lower())
        upper = c == "-"
    return "".join(out)


class WebhookEndpoint:
    """The request handling of one webhook event, independent of any HTTP server."""

    def __init__(self, spec: WebhookSpec, token: str | Callable[[], str] | None):
        """`token`: the authSecret's value, or a function returning what its mounted file holds now: the
        handler reads the file on every request (GetSecretFromVolume), so a changed Secret takes effect
        once the kubelet has refreshed the volume, without a restart."""
        if spec.auth_secret and token is None:
            raise ValueError(f"the EventSource needs the token of secret {spec.auth_secret.get('name')!r}")
        self.spec = spec
        self._token = token

    @property
    def token(self) -> str | None:
        token = self._token() if callable(self._token) else self._token
        # GetSecretFromVolume trims one trailing newline
        return token[:-1] if token and token.endswith("\n") else token

    def handle(self, method: str, target: str, headers: list[tuple[str, str]] | dict[str, str], body: bytes) -> Response:
        path = urlsplit(target).path
        if path == "/health":
            return Response(200, "OK")
        if path != self.spec.endpoint:
            return Response(404, "404 page not found\n")
        header: dict[str, list[str]] = {}
        for key, value in (headers.items() if isinstance(headers, dict) else headers):
            if key.lower() == "host":
                continue  # Go moves Host out of Header
            header.setdefault(canonical_header_key(key), []).append(value)
        auth = (header.get("Authorization") or [""])[0]
        if self.spec.auth_secret:
            if not auth.startswith("Bearer "):
                return Response(401, "Invalid Authorization Header")
            if auth[len("Bearer "):] != self.token:
                return Response(401, "Invalid Auth token")
        if auth:
            header["Authorization"] = [MASKED]
        if method != self.spec.method:
            return Response(400, "http method does not match")
        if method == "GET":
            query = {k: v for k, v in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}
            payload = json.dumps(query, separators=(",", ":")).encode()
        elif method == "POST":
            content_type = (header.get("Content-Type") or [""])[0]
            if content_type == "application/x-www-form-urlencoded":
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                payload = json.dumps(form, separators=(",", ":")).encode()
            else:
                if len(body) > self.spec.max_payload_size:
                    return Response(400, "http: request body too large")
                payload = body
        else:
            return Response(400, f"unsupoorted method: {method}")
        try:
            data = sensors.webhook_event_data(payload, header)
        except sensors.JSONSyntaxError as exc:
            return Response(400, f"json: error calling MarshalJSON for type *json.RawMessage: {exc}")
        return Response(200, "success", data)


class WebhookServer:
    """WebhookEndpoint over real HTTP on 127.0.0.1:<free port>; each published event goes to on_event."""

    def __init__(self, endpoint: WebhookEndpoint, on_event: Callable[[bytes], None] | None = None,
                 tls: ServingTLS | None = None):
        self.endpoint = endpoint
        self.tls = tls
        self.events: list[bytes] = []
        self.requests: list[list[tuple[str, str]]] = []  # the headers of every request, as received
        self.on_event = on_event
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._background: Background | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}{self.endpoint.spec.endpoint}"

    @property
    def address(self) -> tuple[str, int]:
        """Where the Service's name resolves to (what a client dials)."""
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return host, port

    def start(self) -> "WebhookServer":
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                limit = outer.endpoint.spec.max_payload_size
                body = self.rfile.read(min(length, limit + 1)) if length else b""
                if length > limit + 1:
                    self.rfile.read(length - limit - 1)  # drain, then refuse
                with outer._lock:
                    outer.requests.append(list(self.headers.items()))
                response = outer.endpoint.handle(self.command, self.path, list(self.headers.items()), body)
                if response.event_data is not None:
                    with outer._lock:
                        outer.events.append(response.event_data)
                    if outer.on_event is not None:
                        try:
                            outer.on_event(response.event_data)
                        except Exception as exc:  # noqa: BLE001 - Argo answers 500 when dispatch fails
                            response = Response(500, f"failed to record event: {exc}")
                data = response.text.encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args) -> None:  # quiet
                pass

        if self.tls is not None:
            context = _server_context(self.tls)
            self._server = _TLSServer(("127.0.0.1", 0), Handler)
            self._server.context = context
        else:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._background = Background(self._server, "webhook")
        return self

    def stop(self) -> None:
        if self._background is not None:
            self._background.stop()
            self._background = self._server = None

    def __enter__(self) -> "WebhookServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
