"""CBOR on ``cbor2``, strictly: one data item, bounded nesting, no repeated map key, nothing
after it; and deterministic encoding (RFC 8949 section 4.2: shortest heads, definite
lengths, map keys in bytewise order). Every format attestcall reads in CBOR (the CMW record
of a keep certificate, the CCA token) decodes through :func:`loads`, so hostile input ends
as one :class:`CborError`, never as another exception and never after deep recursion.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from attestcall.errors import AttestcallError

MAX_DEPTH = 16  # no format here nests deeper than six; anything deeper is hostile


class CborError(AttestcallError):
    """Bytes that are not exactly one well-formed CBOR data item within the limits."""


class CborTruncated(CborError):
    """The CBOR ends before its data item does."""


def loads(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The one CBOR data item that ``data`` is (arrays inside tags come back as tuples, as
    cbor2 gives them). :class:`CborTruncated` when it ends early, :class:`CborError` when
    it is not well-formed, nests deeper than ``max_depth``, repeats a map key or is
    followed by more bytes. Messages read after the name of what was decoded ("the CMW
    record is truncated ...")."""
    data = bytes(data)
    if not data:
        raise CborTruncated("is empty")
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, max_depth=max_depth,
                                  allow_duplicate_keys=False).decode()
    except cbor2.CBORDecodeEOF:
        raise CborTruncated("is truncated (its CBOR ends early)") from None
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError,
            MemoryError, LookupError) as exc:
        raise CborError(f"is not well-formed CBOR: {_short(exc)}") from None
    if stream.tell() != len(data):
        raise CborError(f"has {len(data) - stream.tell()} bytes after its CBOR data item")
    return value


def dumps(value: Any) -> bytes:
    """``value`` in CBOR's deterministic encoding."""
    return cbor2.dumps(value, canonical=True)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
