"""Fault injection and the request log: what tests put between the client and the stand-in."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from standin.kube.errors import REASONS, ApiError
from standin.kube.serving import Request, Response


@dataclass
class _FailRule:
    status: int
    remaining: int
    method: str | None
    path: re.Pattern | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )


class Faults:
    """What tests put between the client and the stand-in (errors, delays, hooks), and the log
    of what was served. Shared by the API server and every kubelet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_FailRule] = []
        self._latency: dict[str | None, float] = {}
        self._hooks: list[Callable[[str, str], None]] = []
        self.requests: list[tuple[str, str, int]] = []

    def fail_next(self, status: int, count: int = 1, method: str | None = None, path: str | None = None) -> None:
        rule = _FailRule(status, count, method.upper() if method else None, re.compile(path) if path else None)
        with self._lock:
            self._rules.append(rule)

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        with self._lock:
            if seconds > 0:
                self._latency[path] = seconds
            else:
                self._latency.pop(path, None)

    def on_request(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        with self._lock:
            self._hooks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._hooks:
                    self._hooks.remove(callback)

        return remove

    def delay_for(self, path: str) -> float:
        with self._lock:
            delays = [s for p, s in self._latency.items() if p is None or re.search(p, path)]
        return max(delays, default=0.0)

    def take_failure(self, method: str, path: str) -> int | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    return rule.status
        return None

    def hooks(self) -> list[Callable[[str, str], None]]:
        with self._lock:
            return list(self._hooks)

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def serve(
        self, request: Request, app: Callable[[Request], Response], fault: Callable[[int, str], Response]
    ) -> Response:
        """The common path of every request: latency, hooks, injected failure or the app, log."""
        delay = self.delay_for(request.path)
        if delay:
            time.sleep(delay)
        response = self._run_hooks(request, fault)
        if response is None:
            injected = self.take_failure(request.method, request.path)
            response = fault(injected, "injected by FakeKube.fail_next") if injected else app(request)
        self.record(request.method, request.path, response.code)
        return response

    def _run_hooks(self, request: Request, fault: Callable[[int, str], Response]) -> Response | None:
        for hook in self.hooks():
            try:
                hook(request.method, request.path)
            except Exception as exc:  # noqa: BLE001 - a broken hook must show, not hang the client
                return fault(500, f"on_request hook failed: {type(exc).__name__}: {exc}")
        return None


def api_fault(code: int, why: str) -> Response:
    if code == 429:
        error = ApiError(429, "Too many requests, please try again later.", details={"retryAfterSeconds": 0})
    elif code == 401:
        error = ApiError(401, "Unauthorized")
    else:
        error = ApiError(code, f"{REASONS.get(code, 'Unknown')} ({why})")
    return Response.status(error)


def kubelet_fault(code: int, why: str) -> Response:
    """The kubelet answers errors in plain text, not as a Status."""
    headers = {"Retry-After": "0"} if code == 429 else {}
    return Response.text(code, f"{REASONS.get(code, 'Error')}: {why}", headers)
