"""The RATS Conceptual Message Wrapper (CMW) record and its X.509 extension.

Source: the IETF RATS "Conceptual Message Wrapper" (draft-ietf-rats-msg-wrap, published as
RFC 9999). Its X.509 extension is ``id-pe-cmw`` = id-pe 35 = 1.3.6.1.5.5.7.1.35 (the value
in draft -23's ASN.1 module and in Veraison's Go implementation), with the syntax::

    CMW ::= CHOICE { json UTF8String, cbor OCTET STRING }

and the DER of that CHOICE as the extension's extnValue. A CMW *record* is a 2- or 3-element
array ``[type, value, ?ind]``: in CBOR ``type`` is a media type string (or a CoAP
content-format number), ``value`` a byte string; in JSON ``type`` is a media type string and
``value`` base64url without padding. ``ind`` is a bitmap of conceptual-message kinds, bit 2
(value 4) meaning Evidence.

We write the CBOR record (the OCTET STRING alternative): the evidence is binary, and the JSON
form cannot carry an empty value (its base64url string must be non-empty), which the
``none`` technology needs. We read both. Only the record form is accepted, definite lengths
only, nothing trailing; collections, tags and tunnels are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from attestcall import der
from attestcall.errors import AttestcallError

# The one place the CMW extension's OID lives (see the module docstring for its source).
CMW_EXTENSION_OID = "1.3.6.1.5.5.7.1.35"
EVIDENCE_INDICATOR = 1 << 2  # the "ind" bit for Evidence (CMW Indicators registry, value 2)

_UTF8_STRING = 0x0C
_MAX_CBOR_HEAD_VALUE = (1 << 32) - 1  # no item here needs a 64-bit length


class CmwError(AttestcallError):
    """A CMW record or CMW extension value that is malformed or not a record."""


@dataclass(frozen=True)
class CmwRecord:
    """A CMW record: a media type, the wrapped bytes and the optional indicator bitmap."""

    media_type: str
    value: bytes
    indicator: int | None = None


# ------------------------------------------------------------------------------- CBOR


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | extra]) + value.to_bytes(size, "big")
    raise CmwError(f"CBOR value {value} too large")


def encode_cbor_record(record: CmwRecord) -> bytes:
    """``[type, value, ?ind]`` as CBOR (preferred, definite-length serialisation)."""
    media = record.media_type.encode("utf-8")
    items = [_cbor_head(3, len(media)) + media, _cbor_head(2, len(record.value)) + record.value]
    if record.indicator is not None:
        items.append(_cbor_head(0, record.indicator))
    return _cbor_head(4, len(items)) + b"".join(items)


class _CborReader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def head(self) -> tuple[int, int]:
        if self.offset >= len(self.data):
            raise CmwError("CBOR record is truncated")
        first = self.data[self.offset]
        self.offset += 1
        major, extra = first >> 5, first & 0x1F
        if extra < 24:
            return major, extra
        sizes = {24: 1, 25: 2, 26: 4, 27: 8}
        if extra not in sizes:
            raise CmwError("indefinite-length or reserved CBOR items are not accepted")
        size = sizes[extra]
        raw = self.take(size)
        value = int.from_bytes(raw, "big")
        if value > _MAX_CBOR_HEAD_VALUE:
            raise CmwError("CBOR length out of range")
        return major, value

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise CmwError("CBOR record is truncated")
        out = self.data[self.offset : self.offset + size]
        self.offset += size
        return out


def decode_cbor_record(data: bytes) -> CmwRecord:
    """Parse a CBOR CMW record; every other CBOR shape raises CmwError."""
    reader = _CborReader(bytes(data))
    major, count = reader.head()
    if major != 4 or count not in (2, 3):
        raise CmwError("not a CMW record (a CBOR array of 2 or 3 items)")
    major, length = reader.head()
    if major == 0:
        raise CmwError("CoAP content-format types are not supported; use a media type")
    if major != 3:
        raise CmwError("CMW record type is not a text string")
    try:
        media_type = reader.take(length).decode("utf-8")
    except UnicodeDecodeError:
        raise CmwError("CMW record type is not UTF-8") from None
    major, length = reader.head()
    if major != 2:
        raise CmwError("CMW record value is not a byte string")
    value = reader.take(length)
    indicator = None
    if count == 3:
        major, indicator = reader.head()
        if major != 0:
            raise CmwError("CMW record indicator is not an unsigned integer")
    if reader.offset != len(reader.data):
        raise CmwError("bytes after the CMW record")
    return CmwRecord(media_type, value, indicator)


# ------------------------------------------------------------------------------- JSON


def decode_json_record(text: str) -> CmwRecord:
    """Parse a JSON CMW record ``["type", "base64url", ind?]``."""
    try:
        item = json.loads(text)
    except ValueError:
        raise CmwError("CMW JSON is not valid JSON") from None
    if not isinstance(item, list) or len(item) not in (2, 3):
        raise CmwError("not a CMW record (a JSON array of 2 or 3 items)")
    media_type, encoded = item[0], item[1]
    if not isinstance(media_type, str) or not isinstance(encoded, str):
        raise CmwError("CMW JSON record type and value must be strings")
    if "=" in encoded or "+" in encoded or "/" in encoded:
        raise CmwError("CMW JSON record value is not unpadded base64url")
    try:
        value = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise CmwError("CMW JSON record value is not base64url") from None
    indicator = item[2] if len(item) == 3 else None
    if indicator is not None and (isinstance(indicator, bool) or not isinstance(indicator, int)
                                  or indicator < 0):
        raise CmwError("CMW JSON record indicator is not an unsigned integer")
    return CmwRecord(media_type, value, indicator)


# ----------------------------------------------------------------------- the extension


def extension_value(record: CmwRecord) -> bytes:
    """The extnValue content of an id-pe-cmw extension: DER ``CMW`` (the cbor choice)."""
    return der.encode_octet_string(encode_cbor_record(record))


def parse_extension_value(value: bytes) -> CmwRecord:
    """The record in an id-pe-cmw extnValue (either CHOICE alternative)."""
    try:
        tlv = der.decode(bytes(value))
    except der.DerError as exc:
        raise CmwError(f"CMW extension is not DER: {exc}") from None
    if tlv.tag == der.OCTET_STRING:
        return decode_cbor_record(tlv.value)
    if tlv.tag == _UTF8_STRING:
        try:
            return decode_json_record(tlv.value.decode("utf-8"))
        except UnicodeDecodeError:
            raise CmwError("CMW UTF8String is not UTF-8") from None
    raise CmwError(f"CMW extension holds tag {tlv.tag:#04x}, not OCTET STRING or UTF8String")
