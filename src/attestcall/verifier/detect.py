"""Telling the technology from the evidence's bytes, and the instant to verify at."""

from __future__ import annotations

import datetime as dt
import struct

from attestcall.errors import EvidenceError, UsageError

TECHNOLOGIES = ("sgx", "tdx", "snp")
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
SNP_REPORT_SIZE = 1184


def detect(evidence: bytes) -> str:
    """"sgx", "tdx" or "snp" when the bytes say so; EvidenceError when they do not."""
    if len(evidence) >= 48 and evidence[12:28] == INTEL_QE_VENDOR_ID:
        version, key_type, tee_type = struct.unpack_from("<HHI", evidence)
        if key_type == 2 and version == 3 and tee_type == 0:
            return "sgx"
        if key_type == 2 and version in (4, 5) and tee_type == 0x81:
            return "tdx"
        if key_type == 2 and version in (4, 5) and tee_type == 0:
            return "sgx"
    if len(evidence) >= SNP_REPORT_SIZE:
        version, = struct.unpack_from("<I", evidence, 0)
        algo, = struct.unpack_from("<I", evidence, 0x34)
        if 2 <= version <= 5 and algo == 1:
            return "snp"
    raise EvidenceError(
        "cannot tell the technology from these bytes (not an Intel DCAP quote nor an SEV-SNP "
        "report); pass --tech sgx|tdx|snp"
    )


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
