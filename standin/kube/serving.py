"""HTTP plumbing shared by the API server and the kubelets: real sockets, optional TLS, one app each."""

from __future__ import annotations

import hmac
import json
import ssl
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from standin.kube.errors import ApiError, bad_request


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query, as Go's URL.Path
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage: case-insensitive get()
    body: bytes

    def param(self, name: str) -> str | None:
        """The last value of a query parameter (what the kubelet reads for `timeout`)."""
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def media_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def bearer_token(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise bad_request(f"error decoding request body: {exc}") from None


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, code: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(code, json.dumps(payload, separators=(",", ":")).encode(), "application/json", headers or {})

    @classmethod
    def text(cls, code: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return cls(code, text.encode(), "text/plain; charset=utf-8", headers or {})

    @classmethod
    def status(cls, error: ApiError) -> Response:
        headers = {"Retry-After": "0"} if error.code == 429 else {}
        return cls.json(error.code, error.status(), headers)


def token_ok(request: Request, token: str) -> bool:
    given = request.bearer_token()
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class _Handler(BaseHTTPRequestHandler):
    """Reads one request fully (keep-alive stays in sync), hands it to the server's app."""

    protocol_version = "HTTP/1.1"
    server_version = "standin"
    timeout = 60  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this thread, so a stalled client blocks nobody else

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            self.command, unquote(parts.path), parse_qs(parts.query, keep_blank_values=True), self.headers, body
        )
        try:
            response = self.server.app(request)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - a stand-in bug must surface as a 500, not a reset
            traceback.print_exc()
            response = Response.text(500, f"stand-in failure: {type(exc).__name__}: {exc}")
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class Server(ThreadingHTTPServer):
    """127.0.0.1:0, one daemon thread per connection, optionally TLS (handshake per thread)."""

    daemon_threads = True

    def __init__(self, app: Callable[[Request], Response], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app
        self.tls = tls
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):  # type: ignore[override]
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops the connection or refuses our certificate is not our error."""
        if isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)

    def launch(self) -> Server:
        self.thread.start()
        return self

    def halt(self) -> None:
        self.shutdown()
        self.server_close()
