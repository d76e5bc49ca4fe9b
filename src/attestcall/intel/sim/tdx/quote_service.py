"""The host's simulated TDX quote service: the TD quoting enclave (TD QE).

:class:`TdQuotingEnclave` takes a TDREPORT, checks it as the real TD QE does with
EVERIFYREPORT2 (its MAC under the platform's key, then that TEE_TCB_INFO_HASH and
TEE_INFO_HASH bind the rest; see :mod:`.report`) and refuses a forged or altered one with
:class:`ReportRejected`. It then signs a DCAP quote with its ECDSA P-256 attestation key:

- version 4: header (TEE type 0x81) | TD 1.0 body (584) | signature data;
- version 5: header | body type 3, size 648 | TD 1.5 body | signature data.

Signature data: signature | attestation key | certification data type 6 holding the TD
QE's report (ISVPRODID 2, REPORTDATA = SHA-256(attestation key || QE auth data) || 0^32)
signed by the PCK key, the QE auth data, and certification data type 5 (the PEM chain PCK,
PCK Platform CA, root, NUL-terminated). As the real QE, it certifies its attestation key
once and reuses the certification for every quote.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.errors import AttestcallError
from attestcall.intel.formats.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_PCK_CHAIN,
    CERT_QE_REPORT,
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_TDX,
    CertificationData,
    QeReportCertificationData,
    QuoteHeader,
    public_key_to_raw,
    signature_from_der,
)
from attestcall.intel.formats.tdx_quote import (
    BODY_TD15,
    QUOTE_VERSION_4,
    QUOTE_VERSION_5,
    TD15_SIZE,
)
from attestcall.intel.sim.tdx.report import TdReportError, check_report, quote_body_bytes
from attestcall.intel.sim.tdx.state import TdxState

QE_AUTH_DATA = bytes(range(32))
QUOTE_VERSIONS = (QUOTE_VERSION_4, QUOTE_VERSION_5)
_ECDSA = ec.ECDSA(hashes.SHA256())


class ReportRejected(AttestcallError):
    """The quote service refused a TDREPORT: malformed, forged or altered."""


@dataclass(frozen=True)
class _Certified:
    """The quote's fixed parts for one state and version: what precedes the body, and the
    bytes after the signature (attestation key and certification data)."""

    prefix: bytes
    tail: bytes
    quote_size: int


@functools.lru_cache(maxsize=8)
def _certify(state: TdxState, version: int) -> _Certified:
    sgx = state.sgx
    att_raw = public_key_to_raw(state.attestation_key.public_key())
    qe_report_data = hashlib.sha256(att_raw + QE_AUTH_DATA).digest() + bytes(32)
    qe_report = state.qe_identity.report_body(sgx.cpu_svn, qe_report_data)
    qe_signature = signature_from_der(sgx.pck_key.sign(qe_report.pack(), _ECDSA))
    certification = QeReportCertificationData(
        qe_report=qe_report,
        qe_report_signature=qe_signature,
        qe_auth_data=QE_AUTH_DATA,
        certification_data=CertificationData(CERT_PCK_CHAIN, sgx.pck_chain_pem),
    )
    header = QuoteHeader(
        version=version,
        att_key_type=ATT_KEY_TYPE_ECDSA_P256,
        tee_type=TEE_TYPE_TDX,
        qe_svn=0,  # reserved in v4 and v5
        pce_svn=0,
        qe_vendor_id=INTEL_QE_VENDOR_ID,
        user_data=state.qe_id + bytes(4),
    ).pack()
    prefix = header
    body_size = 584
    if version == QUOTE_VERSION_5:
        prefix += struct.pack("<HI", BODY_TD15, TD15_SIZE)
        body_size = TD15_SIZE
    tail = att_raw + CertificationData(CERT_QE_REPORT, certification.pack()).pack()
    size = len(prefix) + body_size + 4 + 64 + len(tail)
    return _Certified(prefix, tail, size)


class TdQuotingEnclave:
    """The simulated TD QE, producing quotes of one version (4 or 5)."""

    def __init__(self, state: TdxState, version: int = QUOTE_VERSION_4) -> None:
        if version not in QUOTE_VERSIONS:
            raise ValueError(f"quote version must be 4 or 5, not {version!r}")
        self.state = state
        self.version = version
        self._secret = state.sgx.cpu_secret
        self._certified = _certify(state, version)
        self._signature_length = struct.pack("<I", 64 + len(self._certified.tail))
        self._td15 = version == QUOTE_VERSION_5

    def quote_size(self) -> int:
        """The exact size of the quotes :meth:`quote` produces (fixed per state and version)."""
        return self._certified.quote_size

    def quote(self, tdreport: bytes) -> bytes:
        """Check ``tdreport`` was made by this platform's TDX module, then quote it."""
        tdreport = bytes(tdreport)
        try:
            check_report(tdreport, self._secret)
        except TdReportError as exc:
            raise ReportRejected(f"TDREPORT refused: {exc}") from exc
        signed = self._certified.prefix + quote_body_bytes(tdreport, self._td15)
        signature = signature_from_der(self.state.attestation_key.sign(signed, _ECDSA))
        return signed + self._signature_length + signature + self._certified.tail
