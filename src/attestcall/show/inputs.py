"""What encoding a file's bytes are in: raw, hex, base64 or PEM, decoded to raw blobs.

Text (printable ASCII and whitespace only) is hex when, without whitespace, it is an even
number of hex digits (an optional ``0x`` in front); base64 (standard or URL-safe, padding
optional) when it decodes canonically; PEM when it holds ``-----BEGIN`` blocks (each block
a blob, its label kept). Anything else is raw. Evidence in binary never looks like text: an
SGX quote starts 03 00, an SNP report 02..05 00 00 00, DER 30.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass

from attestcall.errors import EvidenceError

_TEXT = frozenset((string.printable).encode())
_HEX = re.compile(rb"(?:0[xX])?([0-9a-fA-F]+)")
_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_HEADER = re.compile(rb"^[A-Za-z-]+:.*$", re.MULTILINE)  # RFC 1421 headers, skipped


@dataclass(frozen=True)
class Decoded:
    encoding: str  # "raw", "hex", "base64" or "pem"
    blobs: list[tuple[str | None, bytes]]  # (PEM label or None, bytes)


def decode(data: bytes) -> Decoded:
    """The blobs in ``data``; EvidenceError for empty input or a PEM block that is not
    base64."""
    data = bytes(data)
    if not data.strip():
        raise EvidenceError("the input is empty")
    if not set(data) <= _TEXT:
        return Decoded("raw", [(None, data)])
    if b"-----BEGIN " in data:
        return Decoded("pem", _pem_blocks(data))
    compact = b"".join(data.split())
    match = _HEX.fullmatch(compact)
    if match and len(match.group(1)) % 2 == 0:
        return Decoded("hex", [(None, binascii.unhexlify(match.group(1)))])
    if _BASE64.fullmatch(compact):
        blob = _base64(compact)
        if blob is not None:
            return Decoded("base64", [(None, blob)])
    return Decoded("raw", [(None, data)])


def _base64(text: bytes) -> bytes | None:
    """Standard or URL-safe base64, padding optional; None unless it is canonical."""
    body = text.rstrip(b"=").replace(b"-", b"+").replace(b"_", b"/")
    if len(body) % 4 == 1:
        return None
    try:
        blob = base64.b64decode(body + b"=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(blob).rstrip(b"=") != body:
        return None
    return blob


def _pem_blocks(data: bytes) -> list[tuple[str | None, bytes]]:
    blocks: list[tuple[str | None, bytes]] = []
    for match in _PEM.finditer(data):
        label = match.group(1).decode("ascii")
        body = _PEM_HEADER.sub(b"", match.group(2))
        compact = b"".join(body.split())
        try:
            blob = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise EvidenceError(f"the PEM block {label!r} is not base64") from None
        if not blob:
            raise EvidenceError(f"the PEM block {label!r} is empty")
        blocks.append((label, blob))
    if not blocks:
        raise EvidenceError("the input has a -----BEGIN line but no complete PEM block")
    return blocks
