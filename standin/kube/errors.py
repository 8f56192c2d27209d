"""Failures as the API server reports them: a `Status` body, raised anywhere and rendered once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from standin.kube.resources import ResourceType

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failure the API server reports as a `Status` body: raised anywhere, rendered once."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def resource_not_served() -> ApiError:
    """What the API server says for a path no registered resource serves."""
    return ApiError(404, "the server could not find the requested resource", details={})


@dataclass(frozen=True)
class Cause:
    """One field error of a 422 Invalid, phrased like apimachinery's field.Error."""

    field: str
    detail: str
    kind: str = "invalid"  # invalid | required | forbidden
    value: Any = None

    def message(self) -> str:
        if self.kind == "required":
            return f"Required value: {self.detail}" if self.detail else "Required value"
        if self.kind == "forbidden":
            return f"Forbidden: {self.detail}"
        return f"Invalid value: {json.dumps(self.value)}: {self.detail}"

    def reason(self) -> str:
        return {"required": "FieldValueRequired", "forbidden": "FieldValueForbidden"}.get(
            self.kind, "FieldValueInvalid"
        )


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', details=rt.details(name))
