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
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from standin.argo.events import sensors
from standin.argo.events.sensors import WebhookSpec
from standin.loopback import Background

MASKED = "*** Masked Auth Secret ***"


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

    def __init__(self, spec: WebhookSpec, token: str | None):
        if spec.auth_secret and token is None:
            raise ValueError(f"the EventSource needs the token of secret {spec.auth_secret.get('name')!r}")
        self.spec = spec
        # GetSecretFromVolume trims one trailing newline
        self.token = token[:-1] if token and token.endswith("\n") else token

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

    def __init__(self, endpoint: WebhookEndpoint, on_event: Callable[[bytes], None] | None = None):
        self.endpoint = endpoint
        self.events: list[bytes] = []
        self.on_event = on_event
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._background: Background | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.endpoint.spec.endpoint}"

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
