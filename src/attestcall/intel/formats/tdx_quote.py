"""Intel DCAP ECDSA quotes, versions 4 and 5 (TDX, and SGX in the same envelope).

Layouts (integers little-endian)::

    v4:  header (48) | body (SGX 384 or TD 1.0 584, by TEE type) | u32 signature-data length
         | signature data
    v5:  header (48) | u16 body type | u32 body size | body | u32 signature-data length
         | signature data

v5 body types: 1 = SGX enclave report (384), 2 = TD report 1.0 (584), 3 = TD report 1.5
(648: the 1.0 fields, then TEE_TCB_SVN2 (16) and MRSERVICETD (48)).

Signature data (v4 and v5)::

    ECDSA P-256 signature (64) | attestation key (64)
    | certification data type 6 (u16 type, u32 size) holding the QE report certification
      data: QE report | QE report signature | QE auth data | certification data (type 5)

The attestation key signs everything before the signature-data length: header || body in
v4, header || body type || body size || body in v5.

The quote's own length fields bound it: it ends after ``signature-data length`` bytes of
signature data. Quote generation writes into a caller's buffer that may be larger than the
quote (the vector ``tdx_quote_v4.bin`` carries 70 zero bytes after its signature data), so
zero bytes after that end are tolerated as that buffer's unused rest: they are not part of
the quote, neither parsed nor signed, and ``DcapQuote.trailing`` says how many there were.
Any non-zero byte after the end is an error (it would be unsigned data riding along).
Inside the quote parsing is strict: every length must match exactly. Failures raise
:class:`QuoteFormatError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from attestcall.intel.formats.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_PCK_CHAIN,
    CERT_QE_REPORT,
    ECDSA_PUBLIC_KEY_SIZE,
    ECDSA_SIGNATURE_SIZE,
    HEADER_SIZE,
    QUOTE_VERSION_3,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    CertificationData,
    QeReportCertificationData,
    QuoteFormatError,
    QuoteHeader,
    Reader,
)
from attestcall.intel.formats.structs import ReportBody, SgxFormatError

QUOTE_VERSION_4 = 4
QUOTE_VERSION_5 = 5

BODY_SGX = 1
BODY_TD10 = 2
BODY_TD15 = 3

TD10_SIZE = 584
TD15_SIZE = 648

TD_ATTR_DEBUG = 1 << 0  # TDATTRIBUTES.TUD.DEBUG
TD_ATTR_SEPT_VE_DISABLE = 1 << 28

_TD10 = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")


@dataclass(frozen=True)
class TdReportBody:
    """A TD report body as quoted: TD 1.0 (584 bytes) or TD 1.5 (648, with the last two)."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_service_td: bytes | None = None

    def __post_init__(self) -> None:
        for name, value in zip(self._fields10(), _TD10_SIZES, strict=True):
            _need(getattr(self, name), value, name)
        if (self.tee_tcb_svn2 is None) != (self.mr_service_td is None):
            raise QuoteFormatError("TD 1.5 fields come together: tee_tcb_svn2 and mr_service_td")
        if self.tee_tcb_svn2 is not None:
            _need(self.tee_tcb_svn2, 16, "tee_tcb_svn2")
            _need(self.mr_service_td, 48, "mr_service_td")

    @staticmethod
    def _fields10() -> tuple[str, ...]:
        return (
            "tee_tcb_svn", "mr_seam", "mr_signer_seam", "seam_attributes", "td_attributes",
            "xfam", "mr_td", "mr_config_id", "mr_owner", "mr_owner_config", "rtmr0", "rtmr1",
            "rtmr2", "rtmr3", "report_data",
        )  # fmt: skip

    @property
    def is_td15(self) -> bool:
        return self.tee_tcb_svn2 is not None

    @property
    def size(self) -> int:
        return TD15_SIZE if self.is_td15 else TD10_SIZE

    @property
    def td_attribute_flags(self) -> int:
        return int.from_bytes(self.td_attributes, "little")

    @property
    def debug(self) -> bool:
        return bool(self.td_attribute_flags & TD_ATTR_DEBUG)

    def pack(self) -> bytes:
        out = _TD10.pack(*(getattr(self, name) for name in self._fields10()))
        if self.tee_tcb_svn2 is not None and self.mr_service_td is not None:
            out += self.tee_tcb_svn2 + self.mr_service_td
        return out

    @classmethod
    def unpack(cls, data: bytes) -> TdReportBody:
        if len(data) == TD10_SIZE:
            return cls(*_TD10.unpack(bytes(data)))
        if len(data) == TD15_SIZE:
            data = bytes(data)
            return cls(*_TD10.unpack(data[:TD10_SIZE]), data[584:600], data[600:648])
        raise QuoteFormatError(f"TD report body must be {TD10_SIZE} or {TD15_SIZE} bytes")


_TD10_SIZES = (16, 48, 48, 8, 8, 8, 48, 48, 48, 48, 48, 48, 48, 48, 64)


def _need(value: object, size: int, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise QuoteFormatError(f"{what} must be {size} bytes")


@dataclass(frozen=True)
class DcapQuote:
    """A DCAP quote v4 or v5, with ``signed`` the exact bytes the attestation key signs."""

    header: QuoteHeader
    body_type: int
    body: ReportBody | TdReportBody
    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData
    signed: bytes
    trailing: int = 0

    @property
    def certification_data(self) -> CertificationData:
        return self.qe.certification_data

    @property
    def is_tdx(self) -> bool:
        return self.body_type in (BODY_TD10, BODY_TD15)

    def pack(self) -> bytes:
        """The quote's bytes (without any trailing bytes it was parsed with)."""
        qe = CertificationData(CERT_QE_REPORT, self.qe.pack())
        sig = self.signature + self.attestation_key + qe.pack()
        return self.signed + struct.pack("<I", len(sig)) + sig

    @classmethod
    def build(
        cls,
        header: QuoteHeader,
        body: ReportBody | TdReportBody,
        signature: bytes,
        attestation_key: bytes,
        qe: QeReportCertificationData,
    ) -> DcapQuote:
        """Assemble a quote from parts (tests and simulators): v4 or v5 from the header."""
        if isinstance(body, ReportBody):
            body_type = BODY_SGX
        else:
            body_type = BODY_TD15 if body.is_td15 else BODY_TD10
        raw = body.pack()
        if header.version == QUOTE_VERSION_5:
            signed = header.pack() + struct.pack("<HI", body_type, len(raw)) + raw
        elif header.version == QUOTE_VERSION_4 and body_type != BODY_TD15:
            signed = header.pack() + raw
        else:
            raise QuoteFormatError(
                f"cannot build a v{header.version} quote of body type {body_type}"
            )
        return cls(header, body_type, body, signature, attestation_key, qe, signed)

    @classmethod
    def parse(cls, data: bytes) -> DcapQuote:
        data = bytes(data)
        reader = Reader(data)
        header = QuoteHeader.unpack(reader.take(HEADER_SIZE, "quote header"))
        if header.version not in (QUOTE_VERSION_4, QUOTE_VERSION_5):
            raise QuoteFormatError(f"quote version {header.version}, expected 4 or 5")
        if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256:
            raise QuoteFormatError(f"attestation key type {header.att_key_type} is not ECDSA P-256")
        if header.tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
            raise QuoteFormatError(f"unknown TEE type {header.tee_type:#x}")
        if header.version == QUOTE_VERSION_4:
            body_type = BODY_TD10 if header.tee_type == TEE_TYPE_TDX else BODY_SGX
            size = TD10_SIZE if body_type == BODY_TD10 else ReportBody.SIZE
        else:
            body_type = reader.u16("body type")
            size = reader.u32("body size")
            expected = {BODY_SGX: ReportBody.SIZE, BODY_TD10: TD10_SIZE, BODY_TD15: TD15_SIZE}
            if body_type not in expected:
                raise QuoteFormatError(f"unknown quote body type {body_type}")
            if size != expected[body_type]:
                raise QuoteFormatError(
                    f"body type {body_type} must be {expected[body_type]} bytes, says {size}"
                )
            tdx_body = body_type != BODY_SGX
            if tdx_body != (header.tee_type == TEE_TYPE_TDX):
                raise QuoteFormatError(
                    f"body type {body_type} does not match TEE type {header.tee_type:#x}"
                )
        raw_body = reader.take(size, "quote body")
        body: ReportBody | TdReportBody
        if body_type == BODY_SGX:
            try:
                body = ReportBody.unpack(raw_body)
            except SgxFormatError as exc:
                raise QuoteFormatError(f"report body: {exc}") from exc
        else:
            body = TdReportBody.unpack(raw_body)
        signed = data[: reader.offset]
        sig_size = reader.u32("signature data length")
        end = reader.offset + sig_size
        if sig_size > reader.remaining:
            raise QuoteFormatError(
                f"signature data length {sig_size} exceeds the {reader.remaining} bytes left"
            )
        inner = Reader(data[reader.offset : end])
        signature = inner.take(ECDSA_SIGNATURE_SIZE, "quote signature")
        key = inner.take(ECDSA_PUBLIC_KEY_SIZE, "attestation key")
        outer = CertificationData.read(inner)
        inner.expect_end("signature data")
        if outer.cert_type != CERT_QE_REPORT:
            raise QuoteFormatError(
                f"certification data type {outer.cert_type} in a v{header.version} quote, "
                "expected 6 (QE report certification data)"
            )
        qe = outer.qe_report_certification()
        if qe.certification_data.cert_type != CERT_PCK_CHAIN:
            raise QuoteFormatError(
                f"QE report certification data holds type {qe.certification_data.cert_type}, "
                "expected 5 (PCK certificate chain)"
            )
        check_padding(data, end)
        return cls(header, body_type, body, signature, key, qe, signed, len(data) - end)


def check_padding(data: bytes, end: int) -> None:
    """QuoteFormatError unless every byte of ``data`` after the quote's ``end`` is zero."""
    if data.count(0, end) != len(data) - end:
        raise QuoteFormatError(
            f"{len(data) - end} bytes after the quote's signature data are not all zero "
            "(only zero padding may follow a quote)"
        )


def quote_length(data: bytes) -> int:
    """The length a v3, v4 or v5 quote declares for itself (where its signature data ends).

    QuoteFormatError if the header or the length fields are cut short or overrun ``data``.
    """
    reader = Reader(data)
    header = QuoteHeader.unpack(reader.take(HEADER_SIZE, "quote header"))
    if header.version == QUOTE_VERSION_3:
        reader.take(ReportBody.SIZE, "report body")
    elif header.version == QUOTE_VERSION_4:
        reader.take(TD10_SIZE if header.tee_type == TEE_TYPE_TDX else ReportBody.SIZE, "body")
    elif header.version == QUOTE_VERSION_5:
        reader.u16("body type")
        reader.take(reader.u32("body size"), "quote body")
    else:
        raise QuoteFormatError(f"unknown quote version {header.version}")
    size = reader.u32("signature data length")
    if size > reader.remaining:
        raise QuoteFormatError(
            f"signature data length {size} exceeds the {reader.remaining} bytes left"
        )
    return reader.offset + size
