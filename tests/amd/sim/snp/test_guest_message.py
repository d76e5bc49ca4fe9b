"""The SNP guest message format: sealing, framing checks, authentication."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attestcall.amd.formats import guest_message as gm

KEY = bytes(range(32))


def test_layout_matches_the_abi() -> None:
    message = gm.seal(KEY, 7, gm.MSG_REPORT_REQ, bytes(gm.REPORT_REQ_SIZE))
    assert gm.HEADER_SIZE == 0x60 and len(message) == 0x60 + 0x60
    assert int.from_bytes(message[0x20:0x28], "little") == 7
    assert message[0x30] == 1 and message[0x31] == 1  # ALGO AES-256-GCM, HDR_VERSION
    assert int.from_bytes(message[0x32:0x34], "little") == 0x60
    assert message[0x34] == gm.MSG_REPORT_REQ and message[0x35] == 1
    assert int.from_bytes(message[0x36:0x38], "little") == 0x60
    assert message[0x3C] == 0 and not any(message[0x10:0x20]) and not any(message[0x3D:0x60])
    assert gm.REPORT_RSP_SIZE == 0x4C0


def test_the_iv_is_the_sequence_number_and_the_aad_the_header_tail() -> None:
    payload = b"p" * 40
    message = gm.seal(KEY, 0x0102030405, gm.MSG_REPORT_REQ, payload)
    iv = (0x0102030405).to_bytes(8, "little") + bytes(4)
    expected = AESGCM(KEY).encrypt(iv, payload, message[0x30:0x60])
    assert message[0x60:] + message[:16] == expected


def test_round_trip() -> None:
    message = gm.seal(KEY, 3, gm.MSG_REPORT_RSP, b"hello")
    header = gm.parse_header(message)
    assert (header.seqno, header.msg_type, header.msg_size) == (3, gm.MSG_REPORT_RSP, 5)
    assert gm.open_payload(KEY, message, header) == b"hello"


@pytest.mark.parametrize("offset", [0, 0x20, 0x30, 0x34, 0x35, 0x36, 0x3C, 0x61])
def test_any_flipped_byte_is_caught(offset: int) -> None:
    message = bytearray(gm.seal(KEY, 3, gm.MSG_REPORT_RSP, b"hello, world"))
    message[offset] ^= 1
    with pytest.raises(gm.GuestMessageError):
        gm.open_payload(KEY, bytes(message), gm.parse_header(bytes(message)))


@pytest.mark.parametrize("cut", [1, 12, 0x60, 0x70])
def test_truncated_messages_are_refused(cut: int) -> None:
    message = gm.seal(KEY, 3, gm.MSG_REPORT_RSP, b"x" * 16)
    with pytest.raises(gm.GuestMessageError):
        gm.parse_header(message[:-cut])


def test_a_wiped_key_opens_nothing() -> None:
    message = gm.seal(KEY, 1, gm.MSG_REPORT_RSP, b"x")
    with pytest.raises(gm.GuestMessageError):
        gm.open_payload(bytes(32), message, gm.parse_header(message))


def test_report_request_and_response() -> None:
    request = gm.ReportRequest(b"n" * 64, vmpl=2, key_sel=gm.KEY_SEL_VLEK)
    assert gm.ReportRequest.unpack(request.pack()) == request
    with pytest.raises(gm.GuestMessageError):
        gm.ReportRequest.unpack(request.pack()[:-1] + b"\x01")
    report = bytes(range(256)) * 4 + bytes(160)
    assert gm.unpack_report_response(gm.pack_report_response(0, report)) == (0, report)
    assert gm.unpack_report_response(gm.pack_report_response(0x16)) == (0x16, b"")
