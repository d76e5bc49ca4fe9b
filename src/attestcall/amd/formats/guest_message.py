"""SEV-SNP guest messages (SEV-SNP firmware ABI, "Guest Messages"): formats only, no I/O.

A guest talks to the AMD secure processor (PSP) with messages relayed by the untrusted
hypervisor (SNP_GUEST_REQUEST). Each message is a 0x60-byte header, then the payload
encrypted with AES-256-GCM under one of the guest's VM platform communication keys
(VMPCK0-3, from the secrets page). Little-endian throughout::

    0x00 AUTHTAG [32]     the GCM tag in the first 16 bytes, the rest zero
    0x20 MSG_SEQNO u64    the sequence number; also the IV
    0x28 reserved [8]
    0x30 ALGO u8          1 = AES-256-GCM
    0x31 HDR_VERSION u8   1
    0x32 HDR_SIZE u16     0x60
    0x34 MSG_TYPE u8      e.g. 5 MSG_REPORT_REQ, 6 MSG_REPORT_RSP
    0x35 MSG_VERSION u8   1
    0x36 MSG_SIZE u16     payload bytes (the ciphertext is as long as the plaintext)
    0x38 reserved u32
    0x3C MSG_VMPCK u8     which VMPCK encrypts the message
    0x3D reserved [35]

The IV is the 12 bytes MSG_SEQNO (little-endian) followed by four zero bytes; the
additional authenticated data are header bytes 0x30-0x5F (ALGO to the end). A response
carries the request's sequence number plus one and its type plus one.

MSG_REPORT_REQ (0x60 bytes): REPORT_DATA [64], VMPL u32, KEY_SEL u32 (bits 1:0: 0 either
key, 1 VCEK, 2 VLEK), reserved [24]. MSG_REPORT_RSP (0x4C0 bytes): STATUS u32,
REPORT_SIZE u32, reserved [24], then the 1184-byte ATTESTATION_REPORT.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attestcall.amd.formats.report import REPORT_SIZE

HEADER = struct.Struct("<32sQ8sBBHBBHIB35s")
HEADER_SIZE = HEADER.size  # 0x60
AAD_OFFSET = 0x30
TAG_SIZE = 16
KEY_SIZE = 32
IV_SIZE = 12

ALGO_AES_256_GCM = 1
HDR_VERSION = 1
MSG_VERSION = 1
MAX_SEQNO = 2**64 - 1

MSG_REPORT_REQ = 5
MSG_REPORT_RSP = 6

REPORT_REQ = struct.Struct("<64sII24s")
REPORT_REQ_SIZE = REPORT_REQ.size  # 0x60
REPORT_RSP_HEAD = struct.Struct("<II24s")
ATTESTATION_REPORT_SIZE = REPORT_SIZE
REPORT_RSP_SIZE = REPORT_RSP_HEAD.size + ATTESTATION_REPORT_SIZE  # 0x4C0

KEY_SEL_EITHER = 0
KEY_SEL_VCEK = 1
KEY_SEL_VLEK = 2

STATUS_SUCCESS = 0x00
STATUS_INVALID_PARAM = 0x16
STATUS_INVALID_KEY = 0x27


class GuestMessageError(ValueError):
    """A guest message that is malformed, fails authentication, or is not the one expected."""


@dataclass(frozen=True)
class Header:
    authtag: bytes
    seqno: int
    algo: int
    hdr_version: int
    hdr_size: int
    msg_type: int
    msg_version: int
    msg_size: int
    vmpck: int

    def pack(self) -> bytes:
        return HEADER.pack(self.authtag, self.seqno, bytes(8), self.algo, self.hdr_version,
                           self.hdr_size, self.msg_type, self.msg_version, self.msg_size, 0,
                           self.vmpck, bytes(35))


def _iv(seqno: int) -> bytes:
    return seqno.to_bytes(8, "little") + bytes(IV_SIZE - 8)


def seal(key: bytes, seqno: int, msg_type: int, payload: bytes, vmpck: int = 0) -> bytes:
    """Encrypt ``payload`` into a complete guest message with sequence number ``seqno``."""
    if len(key) != KEY_SIZE:
        raise GuestMessageError(f"a VMPCK is {KEY_SIZE} bytes, not {len(key)}")
    if not 0 < seqno <= MAX_SEQNO:
        raise GuestMessageError(f"sequence number {seqno} outside 1..2^64-1")
    if len(payload) > 0xFFFF:
        raise GuestMessageError(f"a {len(payload)}-byte payload does not fit MSG_SIZE")
    header = Header(bytes(32), seqno, ALGO_AES_256_GCM, HDR_VERSION, HEADER_SIZE, msg_type,
                    MSG_VERSION, len(payload), vmpck).pack()
    sealed = AESGCM(bytes(key)).encrypt(_iv(seqno), payload, header[AAD_OFFSET:])
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    return tag + bytes(32 - TAG_SIZE) + header[32:] + ciphertext


def parse_header(message: bytes) -> Header:
    """The header of a complete message; checks its framing (not its tag)."""
    if len(message) < HEADER_SIZE:
        raise GuestMessageError(f"a guest message of {len(message)} bytes has no header")
    (authtag, seqno, reserved1, algo, hdr_version, hdr_size, msg_type, msg_version, msg_size,
     reserved2, vmpck, reserved3) = HEADER.unpack_from(message, 0)
    if algo != ALGO_AES_256_GCM:
        raise GuestMessageError(f"ALGO {algo} is not AES-256-GCM")
    if hdr_version != HDR_VERSION or hdr_size != HEADER_SIZE:
        raise GuestMessageError(f"header version {hdr_version}, size {hdr_size:#x}: expected "
                                f"version {HDR_VERSION}, size {HEADER_SIZE:#x}")
    if any(reserved1) or reserved2 or any(reserved3) or any(authtag[TAG_SIZE:]):
        raise GuestMessageError("reserved header bytes are not zero")
    if len(message) != HEADER_SIZE + msg_size:
        raise GuestMessageError(f"message of {len(message)} bytes, header says "
                                f"{HEADER_SIZE + msg_size}")
    return Header(authtag, seqno, algo, hdr_version, hdr_size, msg_type, msg_version,
                  msg_size, vmpck)


def open_payload(key: bytes, message: bytes, header: Header) -> bytes:
    """Authenticate and decrypt the payload of ``message`` (whose header is ``header``)."""
    if len(key) != KEY_SIZE or not any(key):
        raise GuestMessageError("no usable VMPCK")
    aad = message[AAD_OFFSET:HEADER_SIZE]
    sealed = message[HEADER_SIZE:] + header.authtag[:TAG_SIZE]
    try:
        return AESGCM(bytes(key)).decrypt(_iv(header.seqno), sealed, aad)
    except InvalidTag:
        raise GuestMessageError("the message's authentication tag does not verify") from None


# ------------------------------------------------------------------ MSG_REPORT_REQ / _RSP


@dataclass(frozen=True)
class ReportRequest:
    report_data: bytes
    vmpl: int = 0
    key_sel: int = KEY_SEL_EITHER

    def pack(self) -> bytes:
        return REPORT_REQ.pack(self.report_data, self.vmpl, self.key_sel, bytes(24))

    @classmethod
    def unpack(cls, data: bytes) -> ReportRequest:
        if len(data) != REPORT_REQ_SIZE:
            raise GuestMessageError(f"MSG_REPORT_REQ of {len(data)} bytes, not "
                                    f"{REPORT_REQ_SIZE}")
        report_data, vmpl, key_sel, reserved = REPORT_REQ.unpack(data)
        if key_sel >> 2 or any(reserved):
            raise GuestMessageError("MSG_REPORT_REQ sets reserved bits")
        return cls(report_data, vmpl, key_sel)


def pack_report_response(status: int, report: bytes = b"") -> bytes:
    """MSG_REPORT_RSP; the report field is zero when ``status`` is an error."""
    body = report if status == STATUS_SUCCESS else b""
    return REPORT_RSP_HEAD.pack(status, len(body), bytes(24)) + body.ljust(
        ATTESTATION_REPORT_SIZE, b"\0")


def unpack_report_response(data: bytes) -> tuple[int, bytes]:
    """(STATUS, REPORT) of a MSG_REPORT_RSP; the report only when STATUS is success."""
    if len(data) != REPORT_RSP_SIZE:
        raise GuestMessageError(f"MSG_REPORT_RSP of {len(data)} bytes, not {REPORT_RSP_SIZE}")
    status, size, reserved = REPORT_RSP_HEAD.unpack_from(data, 0)
    if any(reserved):
        raise GuestMessageError("MSG_REPORT_RSP sets reserved bytes")
    if status != STATUS_SUCCESS:
        return status, b""
    if size != ATTESTATION_REPORT_SIZE:
        raise GuestMessageError(f"MSG_REPORT_RSP says REPORT_SIZE {size}, not "
                                f"{ATTESTATION_REPORT_SIZE}")
    return status, data[REPORT_RSP_HEAD.size:]
