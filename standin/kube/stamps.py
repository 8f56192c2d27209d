"""Timestamps and identifiers in the formats the API server and the kubelet write them."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime | None = None) -> str:
    """metav1.Time as the API serialises it: RFC 3339, UTC, second resolution."""
    return (moment or utcnow()).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_rfc3339(moment: dt.datetime) -> str:
    """Go's time.RFC3339 of a local time, as the kubelet puts it in checkpoint file names."""
    offset = moment.utcoffset() or dt.timedelta(0)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not offset:
        return base + "Z"
    sign = "+" if offset >= dt.timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{base}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def hex64() -> str:
    return secrets.token_hex(32)


def digest(text: str) -> str:
    """A stable fake sha256 for a name, so the same image always has the same digest."""
    return hashlib.sha256(text.encode()).hexdigest()


_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def generated_name(prefix: str) -> str:
    suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
    return prefix[:58] + suffix
