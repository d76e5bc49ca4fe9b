"""Telling the technology from the evidence's bytes, and the instant to verify at."""

from __future__ import annotations

import datetime as dt
import re

from attestcall.errors import EvidenceError, UsageError
from attestcall.tees import Tee, registry

_UNIX = re.compile(r"-?[0-9]{1,20}")  # ASCII digits only, and few of them


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
    if not isinstance(value, str):
        raise UsageError(f"not an instant: {type(value).__name__} (use a datetime, Unix "
                         "seconds or ISO 8601 text)")
    text = value.strip()
    if _UNIX.fullmatch(text):
        return _from_unix(int(text))
    try:
        instant = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"not an instant: {_shown(text)} (use ISO 8601 UTC such as 2025-07-19T10:01:17Z, "
            "or Unix seconds)"
        ) from None
    if instant.tzinfo is None:
        raise UsageError(f"{_shown(text)} has no timezone: add Z for UTC")
    return instant.astimezone(dt.UTC)


def _from_unix(seconds: int | float) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise UsageError(f"{seconds} is outside the range of instants") from None


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut short when long."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + f"... ({len(text)} characters)"
