"""Intel DCAP ECDSA quotes: the v3 (SGX) format, and the parts v4/v5 (TDX) share with it.

Layout of a v3 quote::

    header (48)  |  SGX report body (384)  |  u32 signature-data length  |  signature data

Signature data (v3)::

    ECDSA P-256 signature over header||body (64, r||s big-endian)
    attestation public key (64, x||y big-endian)
    QE report certification data:
        QE report body (384) | QE report signature by the PCK key (64)
        u16 QE auth data size | QE auth data
        u16 certification data type | u32 size | certification data

A v4 quote carries the same QE report certification data wrapped as certification data of
type 6; :class:`QeReportCertificationData` and :class:`CertificationData` are written to be
reused for it. Parsing is strict: every length is checked, nothing may trail, and any
failure raises :class:`QuoteFormatError`. Formats only: no signature is verified here.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attestcall.intel.formats.structs import ReportBody, SgxFormatError

QUOTE_VERSION_3 = 3
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
INTEL_QE_VENDOR_ID = bytes.fromhex("939A7233F79C4CA9940A0DB3957F0607")

HEADER_SIZE = 48
ECDSA_SIGNATURE_SIZE = 64
ECDSA_PUBLIC_KEY_SIZE = 64

# Certification data types (Intel DCAP quote library reference).
CERT_PPID_CLEARTEXT = 1
CERT_PPID_RSA2048 = 2
CERT_PPID_RSA3072 = 3
CERT_PCK_LEAF = 4
CERT_PCK_CHAIN = 5
CERT_QE_REPORT = 6
CERT_PLATFORM_MANIFEST = 7
KNOWN_CERT_TYPES = frozenset(range(1, 8))

_HEADER = struct.Struct("<HHIHH16s20s")


class QuoteFormatError(SgxFormatError):
    """Bytes that are not a well-formed DCAP quote: truncated, oversized or malformed."""


class Reader:
    """A cursor over bytes that raises QuoteFormatError instead of reading short."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = bytes(data)
        self.offset = offset

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise QuoteFormatError(
                f"truncated {what}: need {size} bytes at offset {self.offset}, "
                f"{self.remaining} left"
            )
        start = self.offset
        self.offset += size
        return self.data[start : self.offset]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "little")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "little")

    def expect_end(self, what: str) -> None:
        if self.remaining:
            raise QuoteFormatError(f"{self.remaining} unexpected bytes after {what}")


def _need(value: bytes, size: int, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise QuoteFormatError(f"{what} must be {size} bytes")


def _body(data: bytes, what: str) -> ReportBody:
    try:
        return ReportBody.unpack(data)
    except QuoteFormatError:
        raise
    except SgxFormatError as exc:
        raise QuoteFormatError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte header shared by quote v3, v4 and v5.

    v3 (SGX) carries qe_svn and pce_svn; v4/v5 call those two fields reserved.
    """

    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    SIZE = HEADER_SIZE

    def __post_init__(self) -> None:
        _need(self.qe_vendor_id, 16, "qe_vendor_id")
        _need(self.user_data, 20, "user_data")
        for name, bits in (("version", 16), ("att_key_type", 16), ("tee_type", 32),
                           ("qe_svn", 16), ("pce_svn", 16)):  # fmt: skip
            if not 0 <= getattr(self, name) < (1 << bits):
                raise QuoteFormatError(f"{name} must fit in {bits} bits")

    def pack(self) -> bytes:
        return _HEADER.pack(
            self.version, self.att_key_type, self.tee_type, self.qe_svn, self.pce_svn,
            self.qe_vendor_id, self.user_data,
        )  # fmt: skip

    @classmethod
    def unpack(cls, data: bytes) -> QuoteHeader:
        if len(data) != HEADER_SIZE:
            raise QuoteFormatError(f"quote header must be {HEADER_SIZE} bytes, got {len(data)}")
        return cls(*_HEADER.unpack(bytes(data)))


_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?"
)
# The base64 class cannot match "-", so the greedy "+" ends where a lazy one would, without
# the lazy quantifier's per-character backtracking (a 3-certificate chain in ~2 µs, not ~50).
# A type-5 payload: PEM certificates back to back (whitespace between allowed); the
# quoting enclave may pad the end with NUL bytes.
_PEM_CHAIN = re.compile(rb"(?:\s*" + _PEM_CERT.pattern + rb")+\s*")


@dataclass(frozen=True)
class CertificationData:
    """Certification data: u16 type, u32 size, then ``data`` (type 5: the PEM PCK chain)."""

    cert_type: int
    data: bytes

    def __post_init__(self) -> None:
        if self.cert_type not in KNOWN_CERT_TYPES:
            raise QuoteFormatError(f"unknown certification data type {self.cert_type}")
        if not isinstance(self.data, bytes) or len(self.data) > 0xFFFFFFFF:
            raise QuoteFormatError("certification data must be bytes below 4 GiB")

    def pack(self) -> bytes:
        return struct.pack("<HI", self.cert_type, len(self.data)) + self.data

    @classmethod
    def read(cls, reader: Reader) -> CertificationData:
        cert_type = reader.u16("certification data type")
        size = reader.u32("certification data size")
        if cert_type not in KNOWN_CERT_TYPES:
            raise QuoteFormatError(f"unknown certification data type {cert_type}")
        data = reader.take(size, f"certification data (type {cert_type})")
        if cert_type == CERT_PCK_CHAIN and not _PEM_CHAIN.fullmatch(data.rstrip(b"\x00")):
            raise QuoteFormatError(
                "certification data type 5 is not a chain of PEM certificates (then NULs)"
            )
        return cls(cert_type, data)

    def qe_report_certification(self) -> QeReportCertificationData:
        """The QE report certification data a type-6 entry holds (quote v4/v5)."""
        if self.cert_type != CERT_QE_REPORT:
            raise QuoteFormatError(f"certification data type {self.cert_type} is not type 6")
        reader = Reader(self.data)
        inner = QeReportCertificationData.read(reader)
        reader.expect_end("QE report certification data")
        if inner.certification_data.cert_type == CERT_QE_REPORT:
            raise QuoteFormatError("type-6 certification data nested in type 6")
        return inner

    def pem_certificates(self) -> list[bytes]:
        """Each PEM certificate of a type-5 chain, in order (leaf first as quotes have it)."""
        if self.cert_type != CERT_PCK_CHAIN:
            raise QuoteFormatError(f"certification data type {self.cert_type} is not a PEM chain")
        return _PEM_CERT.findall(self.data)


@dataclass(frozen=True)
class QeReportCertificationData:
    """The QE report, its PCK signature, the QE auth data and the certification data.

    In v3 it follows the attestation key inline; in v4/v5 it is certification data type 6.
    """

    qe_report: ReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: CertificationData

    def __post_init__(self) -> None:
        _need(self.qe_report_signature, ECDSA_SIGNATURE_SIZE, "QE report signature")
        if not isinstance(self.qe_auth_data, bytes) or len(self.qe_auth_data) > 0xFFFF:
            raise QuoteFormatError("QE auth data must be bytes of at most 65535")

    def pack(self) -> bytes:
        return (
            self.qe_report.pack()
            + self.qe_report_signature
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + self.certification_data.pack()
        )

    @classmethod
    def read(cls, reader: Reader) -> QeReportCertificationData:
        qe_report = _body(reader.take(ReportBody.SIZE, "QE report"), "QE report")
        signature = reader.take(ECDSA_SIGNATURE_SIZE, "QE report signature")
        auth_size = reader.u16("QE auth data size")
        auth = reader.take(auth_size, "QE auth data")
        return cls(qe_report, signature, auth, CertificationData.read(reader))


@dataclass(frozen=True)
class QuoteSignatureData:
    """The v3 signature data: quote signature, attestation key, QE report certification."""

    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData

    def __post_init__(self) -> None:
        _need(self.signature, ECDSA_SIGNATURE_SIZE, "quote signature")
        _need(self.attestation_key, ECDSA_PUBLIC_KEY_SIZE, "attestation key")

    def pack(self) -> bytes:
        return self.signature + self.attestation_key + self.qe.pack()

    @classmethod
    def unpack(cls, data: bytes) -> QuoteSignatureData:
        reader = Reader(data)
        signature = reader.take(ECDSA_SIGNATURE_SIZE, "quote signature")
        key = reader.take(ECDSA_PUBLIC_KEY_SIZE, "attestation key")
        qe = QeReportCertificationData.read(reader)
        if qe.certification_data.cert_type == CERT_QE_REPORT:
            raise QuoteFormatError("certification data type 6 is not valid in a v3 quote")
        reader.expect_end("signature data")
        return cls(signature, key, qe)


@dataclass(frozen=True)
class Quote:
    """An SGX DCAP ECDSA quote, version 3."""

    header: QuoteHeader
    body: ReportBody
    signature_data: QuoteSignatureData

    def pack(self) -> bytes:
        sig = self.signature_data.pack()
        return self.header.pack() + self.body.pack() + struct.pack("<I", len(sig)) + sig

    def signed_bytes(self) -> bytes:
        """What the attestation key signs: header || report body."""
        return self.header.pack() + self.body.pack()

    @property
    def certification_data(self) -> CertificationData:
        return self.signature_data.qe.certification_data

    @classmethod
    def parse(cls, data: bytes) -> Quote:
        reader = Reader(data)
        header = QuoteHeader.unpack(reader.take(HEADER_SIZE, "quote header"))
        check_header(header, QUOTE_VERSION_3, TEE_TYPE_SGX)
        body = _body(reader.take(ReportBody.SIZE, "report body"), "report body")
        size = reader.u32("signature data length")
        if size != reader.remaining:
            raise QuoteFormatError(
                f"signature data length {size} does not match the {reader.remaining} bytes left"
            )
        signature_data = QuoteSignatureData.unpack(reader.take(size, "signature data"))
        return cls(header, body, signature_data)


def check_header(header: QuoteHeader, version: int, tee_type: int) -> None:
    """Reject a header of another version, TEE or key type than this parser handles."""
    if header.version != version:
        raise QuoteFormatError(f"quote version {header.version}, expected {version}")
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(f"attestation key type {header.att_key_type} is not ECDSA P-256")
    if header.tee_type != tee_type:
        raise QuoteFormatError(f"TEE type {header.tee_type:#x}, expected {tee_type:#x}")


# ------------------------------------------------------- raw ECDSA P-256 encodings (quotes)


def signature_to_der(raw: bytes) -> bytes:
    """A quote's raw r||s (64 bytes, big-endian) as the DER signature cryptography verifies."""
    _need(raw, ECDSA_SIGNATURE_SIZE, "raw ECDSA signature")
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def signature_from_der(der: bytes) -> bytes:
    """A DER ECDSA P-256 signature as raw r||s (64 bytes)."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def public_key_from_raw(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A quote's raw x||y (64 bytes) as a P-256 public key; QuoteFormatError if off-curve."""
    _need(raw, ECDSA_PUBLIC_KEY_SIZE, "raw P-256 public key")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError as exc:
        raise QuoteFormatError("attestation key is not a P-256 point") from exc


def public_key_to_raw(key: ec.EllipticCurvePublicKey) -> bytes:
    """A P-256 public key as raw x||y (64 bytes)."""
    numbers = key.public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
