"""Appraise an Intel DCAP quote (SGX v3/v4/v5, TDX v4/v5) against its collateral.

Every check that fails adds one line to ``Appraisal.problems``; only unusable input
(truncated, malformed, unknown version) raises :class:`EvidenceError`. Checks: the quote
signature (attestation key over the signed header and body), the QE report signature (PCK
key), the QE report binding SHA-256(attestation key || QE auth data), the PCK chain to one
of ``roots`` and every certificate's validity at ``at``, the PCK CRL and root CA CRL, the
TCB info and QE identity (signature over their exact bytes by a TCB signing certificate
chained to the same root, validity window, id, FMSPC and PCE-ID), the QE report against
the QE identity, and the TCB level (:mod:`attestcall.intel.tcb`).

Speed: whatever depends only on the collateral and the certificate chain (chain and CRL
signatures, the TCB info and QE identity signatures, the PCK extension) is computed once
and kept in a bounded cache keyed by the exact bytes (and the trusted roots); the validity
windows are kept with it and checked against ``at`` on every call. A warm verification
pays for the quote and QE report signatures and little else. :func:`clear_cache` empties it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

from attestcall import der
from attestcall.intel.collateral import (
    QE_ID_SGX,
    QE_ID_TDX,
    TCB_INFO_SGX,
    TCB_INFO_TDX,
    Collateral,
)
from attestcall.intel.pck import SGX_EXTENSION_OID, PckFormatError
from attestcall.intel.quote import (
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    QUOTE_VERSION_3,
    TEE_TYPE_SGX,
    TEE_TYPE_TDX,
    QeReportCertificationData,
    Quote,
    QuoteFormatError,
    QuoteHeader,
    signature_to_der,
)
from attestcall.intel.structs import ReportBody
from attestcall.intel.tcb import (
    PlatformTcb,
    TcbResult,
    TdxTcb,
    evaluate,
    evaluate_qe,
    platform_tcb,
)
from attestcall.intel.tdx_quote import DcapQuote, TdReportBody, quote_length
from attestcall.verifier.verdict import Appraisal, EvidenceError

__all__ = ["appraise_intel", "appraise_sgx", "appraise_tdx", "clear_cache"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_SGX_OID = x509.ObjectIdentifier(SGX_EXTENSION_OID)
_CACHE_SIZE = 256
_T = TypeVar("_T")


class _Lru:
    """A small bounded mapping, least recently used out first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], _T]) -> _T:
        try:
            value = self.items[key]
        except KeyError:
            value = make()
            self.items[key] = value
            if len(self.items) > self.size:
                self.items.popitem(last=False)
            return value
        self.items.move_to_end(key)
        return value  # type: ignore[no-any-return]

    def clear(self) -> None:
        self.items.clear()


_signatures = _Lru(4 * _CACHE_SIZE)  # (signed object, signer) -> bool
_platforms = _Lru(_CACHE_SIZE)  # (collateral, PCK chain bytes, roots, tee) -> _Platform
_chains = _Lru(_CACHE_SIZE)  # (PCK chain bytes, roots) -> _PckChain
_collaterals = _Lru(_CACHE_SIZE)  # (collateral text, roots) -> _Signed
_keys = _Lru(_CACHE_SIZE)  # raw attestation key -> public key or None


def clear_cache() -> None:
    """Forget every verified chain, CRL, signed collateral and attestation key."""
    _signatures.clear()
    _platforms.clear()
    _chains.clear()
    _collaterals.clear()
    _keys.clear()


# ------------------------------------------------------------------------ small helpers


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(at: datetime) -> datetime:
    if not isinstance(at, datetime):
        raise TypeError("at must be a datetime")
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _verify_raw(key: ec.EllipticCurvePublicKey, raw_signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature_to_der(raw_signature), data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _ec_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey | None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    return None


def _signed_by_uncached(
    signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm | None,
    signer: x509.Certificate,
) -> bool:  # fmt: skip
    key = _ec_key(signer)
    if key is None or not isinstance(algorithm, hashes.SHA256):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def _link_problem(
    child: x509.Certificate, parent: x509.Certificate, name: str, what: str
) -> str | None:
    """Why ``parent`` did not issue ``child`` (names, then signature), or None; memoised."""

    def check() -> str | None:
        try:
            child.verify_directly_issued_by(parent)
        except ValueError:
            return "name"
        except (InvalidSignature, TypeError, UnsupportedAlgorithm):
            return "signature"
        return None

    failure = _signatures.get((child, parent), check)
    if failure == "name":
        return f"{name} was not issued by the next certificate of the {what}"
    if failure == "signature":
        return f"{name} signature does not verify with its issuer's key"
    return None


def _der_parts(cert: x509.Certificate) -> tuple[bytes, bytes, bool]:
    """The certificate's issuer and subject as their exact DER (cheaper than x509.Name), and
    whether it is strictly Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING with no
    unused bits } (cryptography tolerates a non-zero unused-bits count)."""
    try:
        parts = der.decode(cert.public_bytes(serialization.Encoding.DER)).children()
        fields = parts[0].children()
    except (der.DerError, IndexError):
        return b"", b"", False
    strict = len(parts) == 3 and parts[2].tag == 0x03 and parts[2].value[:1] == b"\x00"
    first = 1 if fields and fields[0].tag == 0xA0 else 0  # [0] version
    if len(fields) < first + 5:
        return b"", b"", False
    issuer, subject = fields[first + 2], fields[first + 4]
    return (
        der.encode_tlv(issuer.tag, issuer.value),
        der.encode_tlv(subject.tag, subject.value),
        strict,
    )


def _names(cert: x509.Certificate) -> tuple[bytes, bytes]:
    issuer, subject, _ = _der_parts(cert)
    return issuer, subject


def _crl_issuer(crl_der: bytes) -> bytes:
    """The CRL's issuer name as its exact DER."""
    try:
        tbs = der.decode(crl_der).children()[0]
        fields = tbs.children()
    except der.DerError:
        return b""
    first = 1 if fields and fields[0].tag == der.INTEGER else 0  # version
    if len(fields) < first + 2:
        return b""
    issuer = fields[first + 1]
    return der.encode_tlv(issuer.tag, issuer.value)


_ECDSA_WITH_SHA256 = der.encode_sequence(der.encode_oid("1.2.840.10045.4.3.2"))


def _crl_signed_by(crl_der: bytes, signer: x509.Certificate) -> bool:
    """The CRL's signature over its exact tbsCertList bytes (sliced from the DER: cheaper
    than cryptography's re-encoding of a long list), ECDSA P-256 with SHA-256."""

    def check() -> bool:
        key = _ec_key(signer)
        if key is None:
            return False
        try:
            outer = der.decode(crl_der)
            if outer.tag != der.SEQUENCE:
                return False
            _, tbs_end = der.decode_one(outer.value)
            algorithm, alg_end = der.decode_one(outer.value, tbs_end)
            bits, end = der.decode_one(outer.value, alg_end)
        except der.DerError:
            return False
        if end != len(outer.value) or outer.value[tbs_end:alg_end] != _ECDSA_WITH_SHA256:
            return False
        if bits.tag != 0x03 or bits.value[:1] != b"\x00":
            return False
        try:
            key.verify(bits.value[1:], outer.value[:tbs_end], _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True

    return check()


def _text_signed_by(data: bytes, raw_signature: bytes, signer: x509.Certificate) -> bool:
    def check() -> bool:
        key = _ec_key(signer)
        return key is not None and _verify_raw(key, raw_signature, data)

    return check()


def _attestation_key(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    def make() -> ec.EllipticCurvePublicKey | None:
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
        except ValueError:
            return None

    return _keys.get(raw, make)


# ------------------------------------------------------------------------ time windows


@dataclass(frozen=True)
class _Window:
    """Something valid from ``start`` to ``end``; ``kind`` picks the wording."""

    what: str
    start: datetime
    end: datetime
    kind: str  # "cert" (end inclusive) or "dated" (issue/next update, end exclusive)

    def problem(self, at: datetime) -> str | None:
        if self.start <= at < self.end or (at == self.end and self.kind == "cert"):
            return None
        when, start, end = _stamp(at), _stamp(self.start), _stamp(self.end)
        if at < self.start:
            if self.kind == "cert":
                return f"{self.what} is not yet valid at {when} (valid from {start})"
            return f"{self.what} issued in the future ({start}, verifying at {when})"
        return f"{self.what} expired at {end}"


def _cert_window(cert: x509.Certificate, what: str) -> _Window:
    return _Window(what, cert.not_valid_before_utc, cert.not_valid_after_utc, "cert")


# ------------------------------------------------------------------------ chains


@dataclass(frozen=True)
class _Chain:
    certs: tuple[x509.Certificate, ...]
    problems: tuple[str, ...]
    windows: tuple[_Window, ...]
    root: x509.Certificate
    trusted: bool


def _simulated(cert: x509.Certificate) -> bool:
    """The certificate's subject says SIMULATED (any case)."""
    return b"SIMULATED" in _names(cert)[1].upper()


def _check_chain(
    certs: Sequence[x509.Certificate], roots: tuple[x509.Certificate, ...], what: str,
    names: Sequence[str],
) -> _Chain:  # fmt: skip
    """Each certificate issued and signed by the next; ``trusted`` if the last is a root."""
    problems = []
    windows = []
    for index, cert in enumerate(certs):
        name = names[index] if index < len(names) else f"{what} certificate #{index}"
        windows.append(_cert_window(cert, name))
        if index + 1 < len(certs):
            problem = _link_problem(cert, certs[index + 1], name, what)
            if problem is not None:
                problems.append(problem)
    root = certs[-1]
    trusted = root in roots
    return _Chain(tuple(certs), tuple(problems), tuple(windows), root, trusted)


def _untrusted(root: x509.Certificate, what: str) -> str:
    if _simulated(root):
        return (
            f"{what} ends at a SIMULATED root: the evidence is simulated; pass "
            "--trust-simulated to accept simulated evidence"
        )
    return f"{what} ends at a root that is not trusted"


def _canonical_pem(certs: Sequence[x509.Certificate], data: bytes) -> bool:
    """True if ``data`` is exactly these certificates' standard PEM, then NUL padding."""
    text = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
    body = data.rstrip(b"\x00")
    return body in (text, text.rstrip(b"\n"), text.replace(b"\n", b"\r\n"))


def _revoked(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    """Listed in the CRL (a negative serial number, which no CA issues, counts as listed)."""
    try:
        return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    except ValueError:
        return True


def _crl_window(crl: x509.CertificateRevocationList, what: str) -> _Window:
    end = crl.next_update_utc
    if end is None:
        end = datetime.max.replace(tzinfo=UTC)
    return _Window(what, crl.last_update_utc, end, "dated")


# ------------------------------------------------------------------------ the PCK chain


@dataclass(frozen=True)
class _PckChain:
    """What the quote's PCK chain gives, on its own (cached by its bytes and the roots)."""

    problems: tuple[str, ...]
    windows: tuple[_Window, ...] = ()
    chain: _Chain | None = None
    pck_key: ec.EllipticCurvePublicKey | None = None
    extension: PlatformTcb | None = None
    pck_issuer: bytes = b""
    simulated: bool = False


def _pck_chain(chain_bytes: bytes, roots: tuple[x509.Certificate, ...]) -> _PckChain:
    # cryptography warns about non-positive serial numbers, which this rejects.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _pck_chain_checks(chain_bytes, roots)


def _pck_chain_checks(chain_bytes: bytes, roots: tuple[x509.Certificate, ...]) -> _PckChain:
    try:
        certs = x509.load_pem_x509_certificates(chain_bytes.rstrip(b"\x00"))
    except (ValueError, x509.InvalidVersion) as exc:
        return _PckChain((f"PCK certificate chain does not parse: {exc}",))
    if len(certs) < 2:
        return _PckChain(("PCK certificate chain must hold the PCK and its CA chain",))
    if any(cert.serial_number <= 0 for cert in certs):
        return _PckChain(("PCK certificate chain holds a serial number that is not positive",))
    problems = []
    if not _canonical_pem(certs, chain_bytes):
        problems.append("PCK certificate chain is not in canonical PEM encoding")
    names = ["PCK certificate", "PCK CA certificate", "root CA certificate"]
    chain = _check_chain(certs, roots, "PCK certificate chain", names)
    problems += chain.problems
    if not chain.trusted:
        problems.append(_untrusted(chain.root, "PCK certificate chain"))
    pck = certs[0]
    parts = [_der_parts(cert) for cert in certs]
    pck_issuer, pck_subject, _ = parts[0]
    if not all(strict for _, _, strict in parts):
        problems.append("PCK certificate chain holds a certificate that is not strict DER")
    if b"SGX PCK Certificate" not in pck_subject:
        problems.append("PCK certificate's common name does not say SGX PCK Certificate")
    pck_key = _ec_key(pck)
    if pck_key is None:
        problems.append("PCK certificate key is not ECDSA P-256")
    extension = None
    try:
        value = pck.extensions.get_extension_for_oid(_SGX_OID).value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise PckFormatError("SGX extension was not left raw by the parser")
        extension = platform_tcb(value.value)
    except x509.ExtensionNotFound:
        problems.append("PCK certificate has no SGX extension")
    except (PckFormatError, ValueError, x509.DuplicateExtension) as exc:
        problems.append(f"PCK certificate SGX extension is unusable: {exc}")
    simulated = b"SIMULATED" in parts[-1][1].upper()
    return _PckChain(tuple(problems), chain.windows, chain, pck_key, extension, pck_issuer,
                     simulated)  # fmt: skip


# ------------------------------------------------------------------------ the collateral


@dataclass(frozen=True)
class _Signed:
    """The collateral's own checks (cached by its exact text and the roots)."""

    problems: tuple[str, ...]
    windows: tuple[_Window, ...]
    root: x509.Certificate
    trusted: bool
    crl_issuer: x509.Certificate  # the PCK CRL issuer certificate (the PCK CA)
    pck_crl_issuer: bytes  # the PCK CRL's issuer name (DER)


def _signed(collateral: Collateral, roots: tuple[x509.Certificate, ...]) -> _Signed:
    problems: list[str] = []
    windows: list[_Window] = []
    root_crl = collateral.root_ca_crl

    # TCB info and QE identity: signed over their exact bytes by the TCB signing certificate.
    signing: _Chain | None = None
    previous_text = None
    for index, label, data, signature in (
        (4, "TCB info", collateral.tcb_info_bytes, collateral.tcb_info_signature),
        (7, "QE identity", collateral.qe_identity_bytes, collateral.qe_identity_signature),
    ):
        text = collateral.key[index]  # the issuer chain's PEM text
        if text != previous_text:
            certs = (collateral.tcb_info_issuer_chain if index == 4
                     else collateral.qe_identity_issuer_chain)  # fmt: skip
            signing = _check_chain(
                certs,
                roots,
                f"{label} signing chain",
                [f"{label} signing certificate", f"{label} root certificate"],
            )
            problems += signing.problems
            windows += signing.windows
            if _revoked(root_crl, certs[0]):
                problems.append(f"{label} signing certificate is revoked by the root CA CRL")
            previous_text = text
        assert signing is not None
        if not _text_signed_by(data, signature, signing.certs[0]):
            problems.append(f"{label} signature does not verify with the TCB signing key")
    assert signing is not None
    if collateral.qe_identity_issuer_chain[-1] != collateral.tcb_info_issuer_chain[-1]:
        problems.append("QE identity and TCB info are signed under different roots")
    info, identity = collateral.tcb_info, collateral.qe_identity
    windows.append(_Window("TCB info", info.issue_date, info.next_update, "dated"))
    windows.append(_Window("QE identity", identity.issue_date, identity.next_update, "dated"))

    # Root CA CRL: issued and signed by the root.
    root = signing.root
    if _crl_issuer(collateral.root_ca_crl_der) != _names(root)[1]:
        problems.append("root CA CRL is not issued by the collateral's root")
    elif not _crl_signed_by(collateral.root_ca_crl_der, root):
        problems.append("root CA CRL signature does not verify with the root key")
    windows.append(_crl_window(root_crl, "root CA CRL"))

    # PCK CRL issuer chain, and the PCK CRL's signature by its first certificate.
    crl_chain = _check_chain(
        collateral.pck_crl_issuer_chain,
        roots,
        "PCK CRL issuer chain",
        ["PCK CRL issuer certificate", "PCK CRL root certificate"],
    )
    problems += crl_chain.problems
    windows += crl_chain.windows
    if crl_chain.root != root:
        problems.append("PCK CRL issuer chain ends at another root than the TCB signing chain")
    crl_issuer = crl_chain.certs[0]
    if _revoked(root_crl, crl_issuer):
        problems.append("PCK CRL issuer certificate is revoked by the root CA CRL")
    pck_crl_issuer = _crl_issuer(collateral.pck_crl_der)
    if pck_crl_issuer != _names(crl_issuer)[1]:
        problems.append("PCK CRL is not issued by the PCK CRL issuer certificate")
    elif not _crl_signed_by(collateral.pck_crl_der, crl_issuer):
        problems.append("PCK CRL signature does not verify with its issuer's key")
    windows.append(_crl_window(collateral.pck_crl, "PCK CRL"))
    return _Signed(
        tuple(problems), tuple(windows), root, signing.trusted, crl_issuer, pck_crl_issuer
    )


# ------------------------------------------------------------------------ both together


@dataclass(frozen=True)
class _Platform:
    """Everything that depends on the PCK chain and the collateral only (cached)."""

    problems: tuple[str, ...]
    windows: tuple[_Window, ...]
    pck_key: ec.EllipticCurvePublicKey | None
    extension: PlatformTcb | None
    simulated: bool


def _platform(
    chain_bytes: bytes, collateral: Collateral, roots: tuple[x509.Certificate, ...], tdx: bool
) -> _Platform:
    pck = _chains.get((chain_bytes, roots), lambda: _pck_chain(chain_bytes, roots))
    signed = _collaterals.get((collateral.key, roots), lambda: _signed(collateral, roots))
    problems = list(pck.problems) + list(signed.problems)
    windows = pck.windows + signed.windows
    chain, extension = pck.chain, pck.extension
    if chain is not None:
        certs = chain.certs
        if chain.root != signed.root:
            problems.append("the collateral is signed under another root than the PCK chain")
        if not signed.trusted and (chain.trusted or chain.root != signed.root):
            problems.append(_untrusted(signed.root, "the collateral's signing chain"))
        # The PCK CRL must be the PCK CA's: same issuer name, signed by the PCK's issuer.
        if pck.pck_issuer != signed.pck_crl_issuer:
            problems.append("PCK CRL is not issued by the PCK certificate's issuer")
        elif certs[1] != signed.crl_issuer and not _crl_signed_by(collateral.pck_crl_der, certs[1]):
            problems.append("PCK CRL signature does not verify with the PCK CA's key")
        if _revoked(collateral.pck_crl, certs[0]):
            problems.append(
                f"PCK certificate (serial {certs[0].serial_number:x}) is revoked by the PCK CRL"
            )
        for cert in certs[1:-1]:
            if _revoked(collateral.root_ca_crl, cert):
                problems.append(
                    f"PCK CA certificate (serial {cert.serial_number:x}) is revoked by the "
                    "root CA CRL"
                )
    elif not signed.trusted:
        problems.append(_untrusted(signed.root, "the collateral's signing chain"))
    info, identity = collateral.tcb_info, collateral.qe_identity
    wanted_info, wanted_qe = (TCB_INFO_TDX, QE_ID_TDX) if tdx else (TCB_INFO_SGX, QE_ID_SGX)
    if info.id != wanted_info:
        problems.append(f"TCB info is for {info.id}, the quote is {wanted_info}")
    if identity.id != wanted_qe:
        problems.append(f"QE identity is for {identity.id}, the quote needs {wanted_qe}")
    if extension is not None:
        if extension.fmspc != info.fmspc:
            problems.append(
                f"TCB info is for FMSPC {info.fmspc.hex().upper()}, the PCK "
                f"certificate's FMSPC is {extension.fmspc.hex().upper()}"
            )
        if extension.pce_id != info.pce_id:
            problems.append(
                f"TCB info is for PCE-ID {info.pce_id.hex()}, the PCK "
                f"certificate's PCE-ID is {extension.pce_id.hex()}"
            )
    return _Platform(tuple(problems), windows, pck.pck_key, extension, pck.simulated)


# ------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class _Parsed:
    header: QuoteHeader
    body: ReportBody | TdReportBody
    signed: bytes
    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData


def _parse(quote: bytes) -> _Parsed:
    if not isinstance(quote, bytes | bytearray | memoryview):
        raise EvidenceError("an Intel quote must be bytes")
    data = bytes(quote)
    try:
        length = quote_length(data)
        header = QuoteHeader.unpack(data[:48])
        if header.version == QUOTE_VERSION_3:
            parsed = Quote.parse(data[:length])
            sig = parsed.signature_data
            if parsed.certification_data.cert_type != CERT_PCK_CHAIN:
                raise QuoteFormatError(
                    f"certification data type {parsed.certification_data.cert_type} is not "
                    "supported: only type 5 (the PCK certificate chain) can be verified"
                )
            return _Parsed(parsed.header, parsed.body, parsed.signed_bytes(), sig.signature,
                           sig.attestation_key, sig.qe)  # fmt: skip
        dcap = DcapQuote.parse(data)
        return _Parsed(dcap.header, dcap.body, dcap.signed, dcap.signature,
                       dcap.attestation_key, dcap.qe)  # fmt: skip
    except QuoteFormatError as exc:
        raise EvidenceError(f"not a well-formed Intel DCAP quote: {exc}") from exc


# ------------------------------------------------------------------------ claims


def _sgx_claims(body: ReportBody) -> dict[str, Any]:
    return {
        "mrenclave": body.mr_enclave.hex(),
        "mrsigner": body.mr_signer.hex(),
        "isv_prod_id": body.isv_prod_id,
        "isv_svn": body.isv_svn,
        "attributes": body.attributes.hex(),
        "misc_select": body.misc_select,
        "cpu_svn": body.cpu_svn.hex(),
        "config_id": body.config_id.hex(),
        "config_svn": body.config_svn,
        "isv_ext_prod_id": body.isv_ext_prod_id.hex(),
        "isv_family_id": body.isv_family_id.hex(),
        "report_data": body.report_data.hex(),
    }


def _tdx_claims(body: TdReportBody) -> dict[str, Any]:
    claims = {
        "mrtd": body.mr_td.hex(),
        "rtmr0": body.rtmr0.hex(),
        "rtmr1": body.rtmr1.hex(),
        "rtmr2": body.rtmr2.hex(),
        "rtmr3": body.rtmr3.hex(),
        "mrconfigid": body.mr_config_id.hex(),
        "mrowner": body.mr_owner.hex(),
        "mrownerconfig": body.mr_owner_config.hex(),
        "mrseam": body.mr_seam.hex(),
        "mrsignerseam": body.mr_signer_seam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": body.td_attributes.hex(),
        "xfam": body.xfam.hex(),
        "tee_tcb_svn": body.tee_tcb_svn.hex(),
        "report_data": body.report_data.hex(),
    }
    if body.tee_tcb_svn2 is not None and body.mr_service_td is not None:
        claims["tee_tcb_svn2"] = body.tee_tcb_svn2.hex()
        claims["mrservicetd"] = body.mr_service_td.hex()
    return claims


def _platform_claims(extension: PlatformTcb | None) -> dict[str, Any]:
    if extension is None:
        return {"fmspc": None, "pce_id": None, "pce_svn": None, "tcb_components": None}
    return {
        "fmspc": extension.fmspc.hex(),
        "pce_id": extension.pce_id.hex(),
        "pce_svn": extension.pce_svn,
        "tcb_components": list(extension.comp_svns),
    }


# ------------------------------------------------------------------------ appraisal


def _appraise(
    parsed: _Parsed, collateral: Collateral, at: datetime, roots: Sequence[x509.Certificate]
) -> Appraisal:
    if not isinstance(collateral, Collateral):
        raise TypeError("collateral must be a Collateral (see Collateral.load)")
    at = _utc(at)
    body = parsed.body
    tdx = isinstance(body, TdReportBody)
    qe = parsed.qe
    problems: list[str] = []
    if parsed.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        problems.append(f"QE vendor ID {parsed.header.qe_vendor_id.hex()} is not Intel's")

    roots_key = tuple(roots)
    chain_bytes = qe.certification_data.data
    platform = _platforms.get(
        (collateral.key, chain_bytes, roots_key, tdx),
        lambda: _platform(chain_bytes, collateral, roots_key, tdx),
    )
    problems += platform.problems
    for window in platform.windows:
        problem = window.problem(at)
        if problem is not None:
            problems.append(problem)

    # The QE report: signed by the PCK key, binding the attestation key and QE auth data.
    qe_report = qe.qe_report
    if platform.pck_key is not None and not _verify_raw(
        platform.pck_key, qe.qe_report_signature, qe_report.pack()
    ):
        problems.append("QE report signature does not verify with the PCK key")
    binding = hashlib.sha256(parsed.attestation_key + qe.qe_auth_data).digest()
    if qe_report.report_data[:32] != binding:
        problems.append("QE report does not bind the attestation key and QE auth data")

    # The quote: signed by the attestation key.
    attestation_key = _attestation_key(parsed.attestation_key)
    if attestation_key is None:
        problems.append("attestation key is not a P-256 point")
    elif not _verify_raw(attestation_key, parsed.signature, parsed.signed):
        problems.append("quote signature does not verify with the attestation key")

    # TCB: QE identity, then the platform level (+ TDX module), merged.
    tcb_status = None
    advisories: list[str] = []
    extension = platform.extension
    if extension is not None:
        qe_result = evaluate_qe(collateral.qe_identity, qe_report)
        tdx_tcb = None
        if isinstance(body, TdReportBody):
            tdx_tcb = TdxTcb(body.tee_tcb_svn, body.mr_signer_seam, body.seam_attributes,
                             body.tee_tcb_svn2)  # fmt: skip
        result: TcbResult = evaluate(collateral.tcb_info, extension.comp_svns,
                                     extension.pce_svn, qe_result, tdx_tcb)  # fmt: skip
        problems += result.problems
        tcb_status = result.status
        advisories = list(result.advisories)

    if isinstance(body, TdReportBody):
        claims = _tdx_claims(body)
        technology = "tdx"
    else:
        claims = _sgx_claims(body)
        technology = "sgx"
    claims.update(_platform_claims(extension))
    if not tdx:
        claims["qe_svn"] = qe_report.isv_svn
    return Appraisal(
        technology=technology,
        claims=claims,
        report_data=body.report_data,
        debug=body.debug,
        tcb_status=tcb_status,
        advisories=advisories,
        problems=problems,
        simulated=platform.simulated,
    )


def appraise_sgx(
    quote: bytes, *, collateral: Collateral, at: datetime, roots: Sequence[x509.Certificate]
) -> Appraisal:
    """Appraise an SGX quote (v3, or v4/v5 with TEE type SGX)."""
    parsed = _parse(quote)
    if parsed.header.tee_type != TEE_TYPE_SGX or not isinstance(parsed.body, ReportBody):
        raise EvidenceError(
            f"not an SGX quote: TEE type {parsed.header.tee_type:#x}, version "
            f"{parsed.header.version}"
        )
    return _appraise(parsed, collateral, at, roots)


def appraise_tdx(
    quote: bytes, *, collateral: Collateral, at: datetime, roots: Sequence[x509.Certificate]
) -> Appraisal:
    """Appraise a TDX quote (v4 or v5, TD report 1.0 or 1.5)."""
    parsed = _parse(quote)
    if parsed.header.tee_type != TEE_TYPE_TDX or not isinstance(parsed.body, TdReportBody):
        raise EvidenceError(
            f"not a TDX quote: TEE type {parsed.header.tee_type:#x}, version "
            f"{parsed.header.version}"
        )
    return _appraise(parsed, collateral, at, roots)


def appraise_intel(
    quote: bytes, *, collateral: Collateral, at: datetime, roots: Sequence[x509.Certificate]
) -> Appraisal:
    """Appraise an SGX or TDX quote, chosen by its header."""
    parsed = _parse(quote)
    return _appraise(parsed, collateral, at, roots)
