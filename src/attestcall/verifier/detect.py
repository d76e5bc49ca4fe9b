"""Telling the technology from the evidence's bytes, and the instant to verify at."""

from __future__ import annotations

import datetime as dt

from attestcall.errors import EvidenceError, UsageError
from attestcall.tees import Tee, registry


def detect(evidence: bytes) -> Tee:
    """The registered TEE whose evidence these bytes are; EvidenceError when none is."""
    tee = registry().recognise(evidence)
    if tee is None:
        known = registry().verifiable()
        raise EvidenceError(
            "cannot tell the technology from these bytes (none of: "
            f"{', '.join(t.title for t in known)}); pass --tech {'|'.join(t.name for t in known)}"
        )
    return tee


def parse_instant(value: dt.datetime | int | float | str | None) -> dt.datetime:
    """The instant to verify at: a timezone-aware datetime, Unix seconds, or ISO 8601
    (``2025-07-19T10:01:17Z``); None is now. Always returned in UTC."""
    if value is None:
        return dt.datetime.now(dt.UTC)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise UsageError("the instant to verify at must carry a timezone")
        return value.astimezone(dt.UTC)
    if isinstance(value, bool):
        raise UsageError(f"not an instant: {value!r}")
    if isinstance(value, int | float):
        return _from_unix(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return _from_unix(int(text))
    try:
        instant = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"not an instant: {text!r} (use ISO 8601 UTC such as 2025-07-19T10:01:17Z, "
            "or Unix seconds)"
        ) from None
    if instant.tzinfo is None:
        raise UsageError(f"{text!r} has no timezone: add Z for UTC")
    return instant.astimezone(dt.UTC)


def _from_unix(seconds: int | float) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise UsageError(f"{seconds} is outside the range of instants") from None
