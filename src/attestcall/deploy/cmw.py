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
``none`` technology needs. We read both. Only the record form is accepted, in preferred
serialisation (definite lengths), nothing trailing; collections, tags and tunnels are
refused. CBOR goes through :mod:`attestcall.cbor` (cbor2), never a codec of our own.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from attestcall import cbor, der
from attestcall.errors import AttestcallError

# The one place the CMW extension's OID lives (see the module docstring for its source).
CMW_EXTENSION_OID = "1.3.6.1.5.5.7.1.35"
EVIDENCE_INDICATOR = 1 << 2  # the "ind" bit for Evidence (CMW Indicators registry, value 2)

_UTF8_STRING = 0x0C


class CmwError(AttestcallError):
    """A CMW record or CMW extension value that is malformed or not a record."""


@dataclass(frozen=True)
class CmwRecord:
    """A CMW record: a media type, the wrapped bytes and the optional indicator bitmap."""

    media_type: str
    value: bytes
    indicator: int | None = None


# ------------------------------------------------------------------------------- CBOR


def encode_cbor_record(record: CmwRecord) -> bytes:
    """``[type, value, ?ind]`` as CBOR (preferred, definite-length serialisation)."""
    items: list[Any] = [record.media_type, bytes(record.value)]
    if record.indicator is not None:
        items.append(record.indicator)
    return cbor.dumps(items)


def decode_cbor_record(data: bytes) -> CmwRecord:
    """Parse a CBOR CMW record; every other CBOR shape raises CmwError. The record must be
    in CBOR's preferred serialisation (as :func:`encode_cbor_record` writes it): no
    indefinite lengths, no longer heads than needed."""
    data = bytes(data)
    try:
        item = cbor.loads(data)
    except cbor.CborError as exc:
        raise CmwError(f"the CMW record {exc}") from None
    if not isinstance(item, list) or len(item) not in (2, 3):
        raise CmwError("not a CMW record (a CBOR array of 2 or 3 items)")
    media_type, value, *rest = item
    if type(media_type) is int:
        raise CmwError("CoAP content-format types are not supported; use a media type")
    if not isinstance(media_type, str):
        raise CmwError("CMW record type is not a text string")
    if not isinstance(value, bytes):
        raise CmwError("CMW record value is not a byte string")
    indicator = rest[0] if rest else None
    if indicator is not None and (type(indicator) is not int or indicator < 0):
        raise CmwError("CMW record indicator is not an unsigned integer")
    if cbor.dumps(item) != data:
        raise CmwError("CMW record is not in CBOR's preferred serialisation (indefinite "
                       "lengths, or longer heads than needed)")
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
