"""The simulated DCAP quoting enclave (QE3).

:class:`QuotingEnclave` recomputes its own report key (as EGETKEY would), rejects a REPORT
whose MAC does not verify, and signs a quote v3 with its ECDSA P-256 attestation key. Like
the real QE, it certifies the attestation key once (the QE report signed by the PCK key,
which the real PCE does at key generation) and reuses that certification for every quote.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import algorithms

from attestcall.errors import AttestcallError
from attestcall.intel.formats.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    QUOTE_VERSION_3,
    TEE_TYPE_SGX,
    CertificationData,
    QeReportCertificationData,
    QuoteHeader,
    public_key_to_raw,
    signature_from_der,
)
from attestcall.intel.formats.structs import Report, ReportBody, SgxFormatError
from attestcall.intel.sim.sgx.cpu import SimulatedCpu
from attestcall.intel.sim.sgx.state import SgxState

QE_AUTH_DATA = bytes(range(32))


class ReportRejected(AttestcallError):
    """The quoting enclave refused a REPORT: malformed, or its MAC does not verify."""


@dataclass(frozen=True)
class _Certified:
    """The QE's certified attestation key, computed once per state (as the real QE keeps
    it sealed): the quote header and every byte after the quote signature."""

    header: bytes
    tail: bytes
    quote_size: int


@functools.lru_cache(maxsize=8)
def _certify(state: SgxState) -> _Certified:
    att_raw = public_key_to_raw(state.attestation_key.public_key())
    qe_report_data = hashlib.sha256(att_raw + QE_AUTH_DATA).digest() + bytes(32)
    qe_report = state.qe_identity.report_body(state.cpu_svn, qe_report_data)
    qe_signature = signature_from_der(
        state.pck_key.sign(qe_report.pack(), ec.ECDSA(hashes.SHA256()))
    )
    certification = QeReportCertificationData(
        qe_report=qe_report,
        qe_report_signature=qe_signature,
        qe_auth_data=QE_AUTH_DATA,
        certification_data=CertificationData(CERT_PCK_CHAIN, state.pck_chain_pem),
    )
    header = QuoteHeader(
        version=QUOTE_VERSION_3,
        att_key_type=ATT_KEY_TYPE_ECDSA_P256,
        tee_type=TEE_TYPE_SGX,
        qe_svn=state.qe_svn,
        pce_svn=state.pce_svn,
        qe_vendor_id=INTEL_QE_VENDOR_ID,
        user_data=state.qe_id + bytes(4),
    ).pack()
    tail = att_raw + certification.pack()
    size = len(header) + ReportBody.SIZE + 4 + 64 + len(tail)
    return _Certified(header, tail, size)


class QuotingEnclave:
    """The simulated DCAP quoting enclave (QE3)."""

    def __init__(self, state: SgxState) -> None:
        self.state = state
        self.identity = state.qe_identity
        self._cpu = SimulatedCpu(state)
        self._target = self.identity.target_info()
        self._target_bytes = self._target.pack()
        self._certified = _certify(state)
        self._signature_length = struct.pack("<I", self._certified.quote_size - 48 - 384 - 4)

    def target_info(self) -> bytes:
        """The QE's 512-byte TARGETINFO, for the enclave's EREPORT."""
        return self._target_bytes

    def quote_size(self) -> int:
        """The exact size of the quote :meth:`quote` produces (fixed for this state)."""
        return self._certified.quote_size

    def quote(self, report: bytes) -> bytes:
        """Check ``report`` was made for this QE on this CPU, then sign a quote v3 over it."""
        report = bytes(report)
        try:
            parsed = Report.unpack(report)
        except SgxFormatError as exc:
            raise ReportRejected(f"malformed REPORT: {exc}") from exc
        key = self._cpu.report_key(self._target, parsed.key_id)
        mac = cmac.CMAC(algorithms.AES128(key))
        mac.update(report[: ReportBody.SIZE])
        try:
            mac.verify(parsed.mac)
        except InvalidSignature:
            raise ReportRejected("REPORT MAC does not verify for this quoting enclave") from None
        signed = self._certified.header + report[: ReportBody.SIZE]
        der_signature = self.state.attestation_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            signed
            + self._signature_length
            + signature_from_der(der_signature)
            + self._certified.tail
        )
