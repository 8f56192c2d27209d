"""retryStrategy: limit, retryPolicy, the expression on `lastRetry`, Go durations and backoff.

Follows workflow/controller/operator.go (processNodeRetries: the policy decides first, then the
expression, then the limit; backoff duration * factor^n, capped, and refused when it would pass
maxDuration) and the messages it puts on the node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from standin.argo.workflows.model import Attempt, Unsupported, WorkflowError, only

RETRY_FIELDS = {"limit", "retryPolicy", "expression", "backoff"}
BACKOFF_FIELDS = {"duration", "factor", "maxDuration", "cap"}
POLICIES = ("Always", "OnFailure", "OnError", "OnTransientError")

_RETRY_TERM = re.compile(r"""\s*lastRetry\.(status|exitCode|message|duration)\s*(==|!=)\s*(?:'([^']*)'|"([^"]*)")\s*""")


def eval_retry_expression(expr: str, last: dict[str, str]) -> bool:
    """`lastRetry.<x> == '<v>'` terms joined by || and && (the form our templates use)."""
    def term(text: str) -> bool:
        m = _RETRY_TERM.fullmatch(text)
        if not m:
            raise Unsupported(f"retryStrategy.expression {expr!r}: term {text.strip()!r} is not supported")
        actual = last.get(m.group(1), "")
        want = m.group(3) if m.group(3) is not None else m.group(4)
        return (actual == want) if m.group(2) == "==" else (actual != want)

    if re.search(r"[()]", re.sub(r"'[^']*'|\"[^\"]*\"", "", expr)):
        raise Unsupported(f"retryStrategy.expression {expr!r}: parentheses are not supported")
    return any(all(term(t) for t in alt.split("&&")) for alt in expr.split("||"))


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, where: str) -> float:
    """An Argo duration: a number of seconds, or a Go duration string such as 10s, 3m, 1h30m."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    pos, total = 0, 0.0
    while pos < len(text):
        m = _GO_DURATION.match(text, pos)
        if not m:
            raise WorkflowError(f"{where}: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise WorkflowError(f"{where}: empty duration")
    return total


@dataclass
class RetryStrategy:
    template: str
    limit: int
    policy: str
    expression: str | None
    backoff: dict

    @classmethod
    def parse(cls, template: dict) -> "RetryStrategy | None":
        retry = template.get("retryStrategy")
        if retry is None:
            return None
        tname = template["name"]
        only(retry, RETRY_FIELDS, f"template {tname}.retryStrategy")
        policy = retry.get("retryPolicy") or "OnFailure"
        if policy not in POLICIES:
            raise Unsupported(f"template {tname}.retryStrategy.retryPolicy {policy!r}")
        backoff = retry.get("backoff") or {}
        only(backoff, BACKOFF_FIELDS, f"template {tname}.retryStrategy.backoff")
        return cls(tname, int(str(retry.get("limit", "0"))), policy, retry.get("expression"), backoff)

    def refusal(self, attempt: Attempt, n: int) -> str | None:
        """None to retry after attempt n (0-based); else why not, as Argo appends it to the message."""
        retryable = {"Always": True, "OnFailure": attempt.phase == "Failed", "OnError": attempt.phase == "Error",
                     "OnTransientError": False}[self.policy]
        why = "" if retryable else "retryPolicy " + self.policy
        if retryable and self.expression:
            retryable = eval_retry_expression(self.expression, {
                "status": attempt.phase, "exitCode": str(attempt.exit_code if attempt.exit_code is not None else -1),
                "message": attempt.message, "duration": f"{attempt.duration:.0f}",
            })
            if not retryable:
                why = "retryStrategy.expression evaluated to false"
        if n >= self.limit:
            return "No more retries left"
        return None if retryable else why

    def delay(self, n: int) -> float | None:
        """Seconds to wait before attempt n+1 (duration * factor^n, capped); None without backoff."""
        if not self.backoff:
            return None
        where = f"template {self.template}.retryStrategy.backoff"
        delay = parse_duration(self.backoff.get("duration", "0"), f"{where}.duration")
        delay *= float(str(self.backoff.get("factor", "1"))) ** n
        if self.backoff.get("cap"):
            delay = min(delay, parse_duration(self.backoff["cap"], f"{where}.cap"))
        return delay

    def exceeds_max_duration(self, elapsed: float, delay: float) -> bool:
        """Argo stops retrying when the next backoff would end past maxDuration from the first start."""
        if not self.backoff.get("maxDuration"):
            return False
        limit = parse_duration(self.backoff["maxDuration"], f"template {self.template}.retryStrategy.backoff.maxDuration")
        return elapsed + delay > limit
