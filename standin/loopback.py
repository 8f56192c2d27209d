"""Serve a socketserver-style server on a daemon thread, and stop it cleanly: the one lifecycle
the stand-in S3 server and the demo's webhook share."""

from __future__ import annotations

import threading
from typing import Protocol


class _Serving(Protocol):
    def serve_forever(self, poll_interval: float = ...) -> None: ...
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


class Background:
    """`Background(server, name)` starts serving at once; `stop()` shuts down, closes and joins."""

    def __init__(self, server: _Serving, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
