"""What every step shares: one-line errors, retries, outputs, parameter checks, API clients.

A step is a module with `main(argv) -> int`, run by Argo as `python -m steps.<name> --flag=value`.
Flags are always passed in the `--flag=value` form, so a hostile value can never be read as an
option. Output parameters are files under the outputs directory, read back by Argo through
`valueFrom.path`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

from engine.patterns import ALERT_TIME, DNS1123_LABEL, DNS1123_SUBDOMAIN, FALCO_RULE_NAME, PRIORITIES, PRIORITY_ALIASES

T = TypeVar("T")

EXIT_TRANSIENT = 75  # EX_TEMPFAIL: retries ran out on a transient fault; Argo's retryStrategy retries only this
OUTPUTS_DIR_ENV = "STEP_OUTPUTS_DIR"
DEFAULT_OUTPUTS_DIR = "/tmp/outputs"
CONTAINER_ID = re.compile(r"[0-9a-f]{12}|[0-9a-f]{64}")  # used with fullmatch, as every pattern here
RULE = re.compile(FALCO_RULE_NAME)
RFC3339 = re.compile(ALERT_TIME)
UID = re.compile(r"[0-9a-f][0-9a-f-]{0,63}")
FULL_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
STATUS_CONTAINER_ID = re.compile(r"([a-z][a-z0-9+.-]*)://([0-9a-f]{64})")  # <runtime>://<64 hex> in a pod's status
STATUS_LISTS = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
MAX_VALUE = 4096  # no legitimate scalar parameter is longer


class StepError(Exception):
    """A failure a responder can act on. Its message is printed as one line."""


class Refused(StepError):
    """The step refuses to act (bad input, protected namespace, forged alert). Nothing was changed."""


def log(message: str) -> None:
    """One line on stdout, as the Argo UI shows a step's log."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {message}", flush=True)


def one_line(text: object, limit: int = 400) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a step's main: StepError -> `error: …` on stderr and exit 1; anything else too.

    A transient fault that outlived `retry` exits EXIT_TRANSIENT so that the template's
    retryStrategy (which retries only that exit code) tries the whole step again later.
    """
    try:
        return main(argv)
    except StepError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return EXIT_TRANSIENT if isinstance(exc.__cause__, Exception) and is_transient(exc.__cause__) else 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: still one line, still Failed
        if is_transient(exc):
            print(f"error: gave up after retries: {describe(exc)}", file=sys.stderr, flush=True)
            return EXIT_TRANSIENT
        print(f"error: unexpected {type(exc).__name__}: {one_line(exc)}", file=sys.stderr, flush=True)
        return 1


class Parser(argparse.ArgumentParser):
    """argparse whose errors are StepErrors (one line, exit 1) instead of exit 2 with usage."""

    def __init__(self, step: str, description: str) -> None:
        super().__init__(prog=f"python -m steps.{step}", description=description, allow_abbrev=False)
        self.add_argument("--outputs-dir", default=os.environ.get(OUTPUTS_DIR_ENV, DEFAULT_OUTPUTS_DIR))
        self._checks: list[tuple[str, Callable[[str, object], object]]] = []

    def error(self, message: str) -> None:  # type: ignore[override]
        raise Refused(f"bad arguments: {message}")

    def flag(self, name: str, check: Callable[[str, object], object] | None = None, default: str | None = None) -> None:
        """Declare `--name` (required unless it has a default) and the check its value must pass."""
        self.add_argument(f"--{name}", required=default is None, default=default)
        if check is not None:
            self._checks.append((name, check))

    def parse(self, argv: Sequence[str] | None, exempt: Sequence[str] = ()) -> argparse.Namespace:
        """Parse, refuse control characters in any flag, then run every check in declaration order."""
        args = self.parse_args(argv)
        no_control_characters(args, exempt)
        for name, check in self._checks:
            attr = name.replace("-", "_")
            setattr(args, attr, check(name, getattr(args, attr)))
        return args


def write_output(outputs_dir: str | Path, name: str, value: object) -> None:
    """Write one output parameter where the template's `valueFrom.path` reads it."""
    directory = Path(outputs_dir)
    directory.mkdir(parents=True, exist_ok=True)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    (directory / name).write_text(text)


# --- parameter checks: each returns the clean value or raises Refused naming the parameter ----


def _scalar(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise Refused(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_VALUE:
        raise Refused(f"{name}: value is {len(value)} characters long (limit {MAX_VALUE})")
    return value


def matching(pattern: re.Pattern, what: str) -> Callable[[str, object], str]:
    """A check that refuses (naming the flag) any value `pattern` does not match in full."""

    def check(name: str, value: object) -> str:
        value = _scalar(name, value)
        if not pattern.fullmatch(value):
            raise Refused(f"{name}: {value[:80]!r} is not {what}")
        return value

    return check


dns_label = matching(DNS1123_LABEL, "a DNS-1123 label")
dns_subdomain = matching(DNS1123_SUBDOMAIN, "a DNS-1123 subdomain")  # the pattern bounds it to 253
container_id = matching(CONTAINER_ID, "a 12- or 64-hex container id")
alert_time = matching(RFC3339, "an RFC 3339 time")


def alert_datetime(value: str) -> datetime:
    """An --alert-time (Falco's `time`: any offset, up to nanoseconds) as an aware datetime, to the microsecond."""
    found = RFC3339.fullmatch(value)
    if not found:
        raise Refused(f"alert-time: {value[:80]!r} is not an RFC 3339 time")
    fraction, zone = found.group(1) or ".", found.group(2)
    try:
        when = datetime.fromisoformat(value[:19] + ("+00:00" if zone == "Z" else zone))
    except ValueError:  # matches the pattern but names no such moment (2026-02-30, 25:00)
        raise Refused(f"alert-time: {value[:80]!r} is not a valid time") from None
    return when + timedelta(microseconds=int((fraction[1:] + "000000")[:6]))


def whole(low: int, high: int) -> Callable[[str, object], int]:
    """A check for a whole number (ASCII digits: str.isdigit would pass '²', which int() refuses) from low to high."""

    def check(name: str, value: object) -> int:
        text = _scalar(name, value)
        if not re.fullmatch(r"[0-9]{1,12}", text) or not low <= int(text) <= high:
            raise Refused(f"{name}: {text[:40]!r} is not a whole number from {low} to {high}")
        return int(text)

    return check


def priority(name: str, value: object) -> str:
    value = _scalar(name, value)
    value = PRIORITY_ALIASES.get(value, value)
    if value not in PRIORITIES:
        raise Refused(f"{name}: {value[:80]!r} is not a Falco priority")
    return value


def boolean(name: str, value: object) -> bool:
    value = _scalar(name, value).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise Refused(f"{name}: {value[:80]!r} is not true or false")


def namespaces_list(value: str) -> list[str]:
    return [dns_label("protected-namespaces", ns) for ns in value.split(",") if ns]


def rule_name(name: str, value: object) -> str:
    value = _scalar(name, value)
    if not RULE.fullmatch(value):
        shown = value[:80] + ("…" if len(value) > 80 else "")
        raise Refused(f"{name}: {shown!r} is not a Falco rule name (letters, digits, space and ._:/()+,- only, at most 200)")
    return value


def pod_uid(name: str, value: object) -> str:
    """An optional pod UID ('' = not given)."""
    return optional(matching(UID, "a pod UID"), name, value)


def optional(check, name: str, value: object) -> str:
    """Run `check` unless the value is empty (the Sensor sends '' for a field the alert lacks)."""
    return "" if value == "" else check(name, value)


def no_control_characters(args, exempt: Sequence[str] = ()) -> None:
    """Refuse any flag value holding a control character (newline included), first of all."""
    for key, value in vars(args).items():
        if key in exempt:
            continue
        if isinstance(value, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise Refused(f"{key.replace('_', '-')}: contains a control character")


def one_of(*allowed: str) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        value = _scalar(name, value)
        if value not in allowed:
            raise Refused(f"{name}: {value[:80]!r} is not one of {', '.join(allowed)}")
        return value

    return check


def protected(namespace: str, protected_namespaces: str) -> None:
    if namespace in namespaces_list(protected_namespaces):
        raise Refused(f"namespace {namespace} is protected: no automated response there")


# --- retries --------------------------------------------------------------------------------


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)  # kubernetes ApiException
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code if isinstance(code, int) else None
    status = getattr(response, "status_code", None)  # requests HTTPError
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """429, 5xx and connection-level failures are worth another try; other 4xx are not."""
    status = _status_of(exc)
    if status is not None and status != 0:
        return status == 429 or status >= 500
    name = type(exc).__name__
    transient_names = (
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "MaxRetryError",
        "ProtocolError",
        "NewConnectionError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
    )
    if name in transient_names or isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # kubernetes ApiException with status 0 wraps a urllib3 failure.
    return status == 0


def retry(
    call: Callable[[], T],
    what: str,
    attempts: int = 5,
    base_delay: float | None = None,
    max_delay: float = 8.0,
) -> T:
    """Call `call`, retrying transient failures with exponential backoff and jitter."""
    if base_delay is None:
        base_delay = float(os.environ.get("STEP_RETRY_BASE_DELAY", "0.5"))
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_transient(exc) or attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log(f"{what}: transient failure ({describe(exc)}), retry {attempt}/{attempts - 1} in {delay:.1f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes ApiException (None for anything else)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def body(response) -> dict:
    """JSON of a raw (`_preload_content=False`) client response, as plain dicts."""
    return json.loads(response.data or b"{}")


def workflow_ref(name: str, value: object) -> str:
    """`<namespace>/<name>` of the response Workflow."""
    value = _scalar(name, value)
    namespace, _, workflow = value.partition("/")
    try:
        dns_label(name, namespace)
        dns_subdomain(name, workflow)
    except Refused:
        raise Refused(f"{name}: {value[:80]!r} is not <namespace>/<name>") from None
    return value


def describe(exc: BaseException) -> str:
    """A short, one-line description of an API failure: status and the Status message."""
    status = _status_of(exc)
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return one_line(f"{status} {message}", 400)
    if status:
        reason = getattr(exc, "reason", "") or ""
        return one_line(f"{status} {reason}".strip(), 200)
    return one_line(f"{type(exc).__name__}: {exc}", 200)


# --- Kubernetes -----------------------------------------------------------------------------


def kube_api_client():
    """An API client from the pod's service account, else from $KUBECONFIG (JSON; tests, laptops).

    steps.kube, not the `kubernetes` package: importing that costs more than a step's start-up
    budget. Like the official client configured here before, it never retries: retry() decides.
    """
    from steps import kube

    return kube.ApiClient()  # kube.ConfigError is a StepError: one line, nothing sent


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SeekableReader(io.RawIOBase):
    """A read-only file of `size` bytes read by position (copy's pread of the archive, analyze's
    ranged GETs): the position bookkeeping both share; subclasses implement readinto."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.position = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position
