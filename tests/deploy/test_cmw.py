"""The CMW record codec and its X.509 extension value (RFC 9999 / draft-ietf-rats-msg-wrap)."""

import base64
import json

import pytest

from attestcall import der
from attestcall.deploy.cmw import (
    CMW_EXTENSION_OID,
    CmwError,
    CmwRecord,
    decode_cbor_record,
    decode_json_record,
    encode_cbor_record,
    extension_value,
    parse_extension_value,
)


def test_the_extension_is_id_pe_35():
    assert CMW_EXTENSION_OID == "1.3.6.1.5.5.7.1.35"


def test_cbor_record_bytes():
    # [ "a/b", h'0102', 4 ] in preferred CBOR
    record = CmwRecord("a/b", b"\x01\x02", 4)
    assert encode_cbor_record(record) == bytes.fromhex("83" "63612f62" "420102" "04")
    assert decode_cbor_record(encode_cbor_record(record)) == record


@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 70000])
def test_cbor_record_round_trip(size):
    record = CmwRecord("application/vnd.example", bytes(range(256)) * (size // 256)
                       + bytes(size % 256), None)
    assert decode_cbor_record(encode_cbor_record(record)) == record


@pytest.mark.parametrize("data, message", [
    (bytes.fromhex("9f"), "truncated"),
    (bytes.fromhex("9f" "6161" "40" "ff"), "preferred serialisation"),
    (bytes.fromhex("82" "7801" "61" "40"), "preferred serialisation"),  # a long head
    (bytes.fromhex("83" "6161" "40" "f5"), "indicator"),  # true is not an integer
    (bytes.fromhex("82" "d818" "6161" "40"), "not a text string"),  # a tag
    (bytes.fromhex("82" "6161" "40" "40"), "bytes after"),
    (bytes.fromhex("a0"), "not a CMW record"),
    (bytes.fromhex("81" "60"), "not a CMW record"),
    (bytes.fromhex("82" "1901f4" "40"), "CoAP"),
    (bytes.fromhex("82" "40" "40"), "type is not a text string"),
    (bytes.fromhex("82" "61" "61" "61" "61"), "value is not a byte string"),
    (bytes.fromhex("83" "6161" "40" "20"), "indicator"),
    (bytes.fromhex("82" "6161" "45" "00"), "truncated"),
    (bytes.fromhex("82" "6161" "40" "00"), "bytes after"),
    (bytes.fromhex("82" "6161" "5f" "4100" "ff"), "preferred serialisation"),
    (bytes.fromhex("82" "5f"), "truncated"),
])
def test_malformed_cbor_records(data, message):
    with pytest.raises(CmwError, match=message):
        decode_cbor_record(data)


def test_json_record():
    value = b"\xfb\xff evidence"
    text = json.dumps(["a/b", base64.urlsafe_b64encode(value).decode().rstrip("="), 4])
    assert decode_json_record(text) == CmwRecord("a/b", value, 4)
    with pytest.raises(CmwError, match="unpadded base64url"):
        decode_json_record(json.dumps(["a/b", base64.b64encode(value).decode()]))
    with pytest.raises(CmwError, match="2 or 3"):
        decode_json_record("[]")


def test_extension_value_is_the_der_choice():
    record = CmwRecord("a/b", b"xyz", 4)
    value = extension_value(record)
    assert der.decode(value).tag == der.OCTET_STRING  # the cbor alternative
    assert parse_extension_value(value) == record
    as_json = json.dumps(["a/b", "eHl6", 4]).encode()
    assert parse_extension_value(der.encode_tlv(0x0C, as_json)) == record  # UTF8String
    with pytest.raises(CmwError, match="tag 0x02"):
        parse_extension_value(der.encode_integer(5))
    with pytest.raises(CmwError, match="not DER"):
        parse_extension_value(b"\x04\x05ab")
