"""Appraise an Intel DCAP quote (SGX v3/v4/v5, TDX v4/v5) against its collateral.

Every check that fails adds one line to ``Appraisal.problems``; only unusable input
(truncated, malformed, unknown version) raises :class:`EvidenceError`. Checks: the quote
signature (attestation key over the signed header and body), the QE report signature (PCK
key), the QE report binding SHA-256(attestation key || QE auth data), the PCK chain to one
of ``roots`` and every certificate's validity at ``at``, the PCK CRL and root CA CRL, the
TCB info and QE identity (signature over their exact bytes by a TCB signing certificate
chained to the same root, validity window, id, FMSPC and PCE-ID), the QE report against
the QE identity, and the TCB level (:mod:`attestcall.intel.verify.tcb`).

Speed: whatever depends only on the collateral and the certificate chain (chain and CRL
signatures, the TCB info and QE identity signatures, the PCK extension) is computed once
and kept in a bounded cache keyed by the exact bytes (and the trusted roots); the validity
windows are kept with it and checked against ``at`` on every call. A warm verification
pays for the quote and QE report signatures and little else. :func:`clear_cache` empties it.

X.509 checks go through :mod:`attestcall.pki` (CRL signatures, revocation, validity
windows), with one exception: a certificate link in Intel's usual shape (exact DER,
ecdsa-with-SHA256, a P-256 issuer) is checked over the tbsCertificate sliced from the
exact bytes with the issuer's parsed key. ``bench/bench_x509.py`` shows why: three such
links cost about 1.4x as much through ``verify_directly_issued_by`` (which re-encodes the
tbsCertificate) as sliced, over its 1.25x target, and a cold verification makes three.
CRLs, where the difference is within the target, go through pki (their issuer names are
compared as DER kept with the parsed CRL). Any other shape goes through pki too.

A cold verification makes each distinct ECDSA check once: the PCK and PCK CA certificates,
the TCB signing certificate, the TCB info, the QE identity, both CRLs, the QE report and the
quote (the pinned root's self-signature is not checked: it is pinned; the PCK CRL issuer
chain shares its PCK CA link with the PCK chain). Certificates are parsed once per exact DER
by :mod:`attestcall.intel.verify.certs`, which keeps no verification result and survives
:func:`clear_cache` (``clear_cache(parsed=True)`` empties it too).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import SignatureAlgorithmOID

from attestcall import der, pki
from attestcall.appraisal import Appraisal
from attestcall.errors import EvidenceError
from attestcall.intel.fetch.source import (
    Bundle,
    CollateralSource,
    Platform,
    clear_assembled,
    gather,
)
from attestcall.intel.formats.collateral import (
    QE_ID_SGX,
    QE_ID_TDX,
    TCB_INFO_SGX,
    TCB_INFO_TDX,
    Collateral,
)
from attestcall.intel.formats.pck import SGX_EXTENSION_OID, PckFormatError
from attestcall.intel.formats.quote import (
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
from attestcall.intel.formats.structs import ReportBody
from attestcall.intel.formats.tdx_quote import (
    DcapQuote,
    TdReportBody,
    check_padding,
    quote_length,
)
from attestcall.intel.verify.certs import Cert, clear_parsed, load_pem_chain
from attestcall.intel.verify.tcb import (
    PlatformTcb,
    TcbResult,
    TdxTcb,
    evaluate,
    evaluate_qe,
    platform_tcb,
)
from attestcall.lru import Lru

__all__ = ["appraise_intel", "appraise_sgx", "appraise_tdx", "clear_cache"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_WITH_SHA256 = der.encode_sequence(
    der.encode_oid(SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string)
)
_SGX_OID = x509.ObjectIdentifier(SGX_EXTENSION_OID)
_CACHE_SIZE = 256

_signatures = Lru(4 * _CACHE_SIZE)  # (signed DER, signer DER) -> failure or None
_platforms = Lru(_CACHE_SIZE)  # (collateral, PCK chain bytes, roots, tee) -> _Platform
_chains = Lru(_CACHE_SIZE)  # (PCK chain bytes, roots) -> _PckChain
_collaterals = Lru(_CACHE_SIZE)  # (collateral text, roots) -> _Signed
_keys = Lru(_CACHE_SIZE)  # raw attestation key -> public key or None
# Parsing only (kept by clear_cache(), emptied by clear_cache(parsed=True)):
_crls = Lru(_CACHE_SIZE)  # CRL DER -> _CrlParts
_root_ders: dict[int, tuple[x509.Certificate, bytes]] = {}  # id(root) -> (root, its DER)


def clear_cache(*, parsed: bool = False) -> None:
    """Forget every verified chain, CRL, signed collateral and attestation key.

    What stays is parsing only, keyed by exact bytes (certificates, CRL structure, the
    trusted roots' encodings): no signature, validity or revocation result. ``parsed=True``
    forgets that too."""
    _signatures.clear()
    _platforms.clear()
    _chains.clear()
    _collaterals.clear()
    _keys.clear()
    if parsed:
        clear_assembled()
        _crls.clear()
        _root_ders.clear()
        clear_parsed()


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


def _root_der(root: x509.Certificate) -> bytes:
    """A trusted root's encoding (what certificate equality compares), computed once per
    root object."""
    entry = _root_ders.get(id(root))
    if entry is None or entry[0] is not root:
        if len(_root_ders) >= _CACHE_SIZE:
            _root_ders.clear()
        entry = (root, root.public_bytes(serialization.Encoding.DER))
        _root_ders[id(root)] = entry
    return entry[1]


def _roots_key(roots: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(_root_der(root) for root in roots if isinstance(root, x509.Certificate))


def _issued(child: Cert, parent: Cert) -> str | None:
    """Why ``parent`` did not issue ``child`` ("name" or "signature"), or None: what
    :func:`attestcall.pki.issued_by` says (its wrong-issuer fault is "name"). For the usual
    case (both encoded exactly as given, ECDSA with SHA-256, a P-256 issuer key) the same
    checks are made directly on the exact bytes (the two signature algorithms, issuer name
    against subject name, then the signature over the tbsCertificate): the hand-sliced
    path ``bench/bench_x509.py`` keeps (see the module docstring)."""
    key = parent.key
    if (child.exact and parent.exact and child.tbs and parent.subject and key is not None
            and child.algorithm == _ECDSA_WITH_SHA256):  # fmt: skip
        # pki's wrong issuer: the tbs and outer signature algorithms differ, or the issuer
        # name is not the parent's subject.
        if child.inner_algorithm != child.algorithm or child.issuer != parent.subject:
            return "name"
        try:
            key.verify(child.signature, child.tbs, _ECDSA_SHA256)
        except InvalidSignature:
            return "signature"
        return None
    failure = pki.issued_by(child.x509, parent.x509)
    if failure is None:
        return None
    return "name" if failure.fault is pki.Fault.WRONG_ISSUER else "signature"


def _link_problem(child: Cert, parent: Cert, name: str, what: str) -> str | None:
    """Why ``parent`` did not issue ``child`` (names, then signature), or None; memoised."""
    failure = _signatures.get_or_create((child.der, parent.der), lambda: _issued(child, parent))
    if failure == "name":
        return f"{name} was not issued by the next certificate of the {what}"
    if failure == "signature":
        return f"{name} signature does not verify with its issuer's key"
    return None


@dataclass(frozen=True)
class _CrlParts:
    """A CRL's issuer name (exact DER, as sliced by :mod:`attestcall.der`) and whether it
    is strictly SEQUENCE { tbsCertList, ecdsa-with-SHA256, BIT STRING with no unused bits }
    (only such a CRL is Intel's; cryptography would also take other algorithms and a
    non-zero unused-bits count); for a strict one, its exact tbsCertList and the DER
    ECDSA signature the bit string holds."""

    issuer: bytes
    strict: bool
    tbs: bytes = b""
    signature: bytes = b""


def _crl_parts(crl_der: bytes) -> _CrlParts:
    def parse() -> _CrlParts:
        try:
            tag, start, end = der.header(crl_der)
            if tag != der.SEQUENCE or end != len(crl_der):
                return _CrlParts(b"", False)
            parts = der.spans(crl_der, start, end)
        except der.DerError:
            return _CrlParts(b"", False)
        if not parts:
            raise IndexError("list index out of range")  # as der.decode(...).children()[0]
        issuer = b""
        try:
            if parts[0][0] != der.SEQUENCE:
                raise der.DerError("tbsCertList is not a SEQUENCE")
            fields = der.spans(crl_der, parts[0][2], parts[0][3])
        except der.DerError:
            pass
        else:
            first = 1 if fields and fields[0][0] == der.INTEGER else 0  # version
            if len(fields) >= first + 2:
                issuer = crl_der[fields[first + 1][1] : fields[first + 1][3]]
        if len(parts) != 3 or crl_der[parts[1][1] : parts[1][3]] != _ECDSA_WITH_SHA256:
            return _CrlParts(issuer, False)
        bits = parts[2]
        if not (bits[0] == 0x03 and bits[2] < bits[3] and not crl_der[bits[2]]):
            return _CrlParts(issuer, False)
        return _CrlParts(issuer, True, crl_der[parts[0][1] : parts[0][3]],
                         crl_der[bits[2] + 1 : bits[3]])

    return _crls.get_or_create(crl_der, parse)


def _crl_signed_by(crl: x509.CertificateRevocationList, crl_der: bytes, signer: Cert) -> bool:
    """The CRL is strictly Intel's shape and its signature verifies with the signer's key
    (the names were compared by the caller). With the signer's P-256 key at hand, the
    signature is checked over the tbsCertList sliced from the exact DER:
    ``CertificateRevocationList.is_signature_valid`` (:func:`attestcall.pki.crl_signed_by`,
    the path for any other key) serialises the tbsCertList again on every call, which
    ``bench/bench_x509.py`` measures at 1.5x on a PCK CRL of 44 entries."""
    parts = _crl_parts(crl_der)
    if not parts.strict:
        return False
    if signer.key is None:
        return pki.crl_signed_by(crl, signer.x509) is None
    try:
        signer.key.verify(parts.signature, parts.tbs, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _text_signed_by(data: bytes, raw_signature: bytes, signer: Cert) -> bool:
    key = signer.key
    return key is not None and _verify_raw(key, raw_signature, data)


def _attestation_key(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    def make() -> ec.EllipticCurvePublicKey | None:
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
        except ValueError:
            return None

    return _keys.get_or_create(raw, make)


# ------------------------------------------------------------------------ time windows


@dataclass(frozen=True)
class _Window:
    """Something valid in ``window`` (:class:`attestcall.pki.Window`); a certificate's
    window (end inclusive) and a dated document's or CRL's (end exclusive) are worded
    differently."""

    what: str
    window: pki.Window

    def problem(self, at: datetime) -> str | None:
        timing = self.window.timing(at)
        if timing is pki.Timing.VALID:
            return None
        window = self.window
        when, start, end = _stamp(at), _stamp(window.start), _stamp(window.end)
        if timing is pki.Timing.EARLY:
            if window.end_inclusive:
                return f"{self.what} is not yet valid at {when} (valid from {start})"
            return f"{self.what} issued in the future ({start}, verifying at {when})"
        return f"{self.what} expired at {end}"


def _cert_window(cert: Cert, what: str) -> _Window:
    return _Window(what, pki.Window(cert.not_before, cert.not_after, True))


def _dated_window(start: datetime, end: datetime, what: str) -> _Window:
    return _Window(what, pki.Window(start, end, False))


# ------------------------------------------------------------------------ chains


@dataclass(frozen=True)
class _Chain:
    certs: tuple[Cert, ...]
    problems: tuple[str, ...]
    windows: tuple[_Window, ...]
    root: Cert
    trusted: bool


def _simulated(cert: Cert) -> bool:
    """The certificate's subject says SIMULATED (any case)."""
    return b"SIMULATED" in cert.subject.upper()


def _check_chain(
    certs: Sequence[Cert], roots: tuple[bytes, ...], what: str, names: Sequence[str]
) -> _Chain:
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
    trusted = root.der in roots
    return _Chain(tuple(certs), tuple(problems), tuple(windows), root, trusted)


RESET_SIMULATED = ("ends at a simulated root that is no longer this machine's: the simulated "
                   "platform was reset since (attestcall sim reset), or the evidence comes "
                   "from another machine; it cannot be verified here")


def _untrusted(root: Cert, what: str, roots: tuple[bytes, ...] = ()) -> str:
    if _simulated(root) and any(b"SIMULATED" in der.upper() for der in roots):
        return f"{what} {RESET_SIMULATED}"
    if _simulated(root):
        return (
            f"{what} ends at a SIMULATED root: the evidence is simulated; pass "
            "--trust-simulated to accept simulated evidence"
        )
    return f"{what} ends at a root that is not trusted"


def _canonical_pem(certs: Sequence[Cert], data: bytes) -> bool:
    """True if ``data`` is exactly these certificates' standard PEM, then NUL padding."""
    text = b"".join(cert.pem for cert in certs)
    body = data.rstrip(b"\x00")
    return body in (text, text.rstrip(b"\n"), text.replace(b"\n", b"\r\n"))


def _revoked(crl: x509.CertificateRevocationList, cert: Cert) -> bool:
    """Listed in the CRL (a negative serial number, which no CA issues, counts as listed)."""
    return pki.revoked(crl, cert.serial)


def _crl_window(crl: x509.CertificateRevocationList, what: str) -> _Window:
    return _Window(what, pki.crl_window(crl))


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


def _pck_chain(chain_bytes: bytes, roots: tuple[bytes, ...]) -> _PckChain:
    # cryptography warns about non-positive serial numbers, which this rejects.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _pck_chain_checks(chain_bytes, roots)


def _sgx_extension(pck: Cert) -> tuple[PlatformTcb | None, str | None]:
    """The PCK certificate's SGX extension, or why it is unusable (parsed once per
    certificate)."""
    try:
        return pck.memo["sgx"]  # type: ignore[no-any-return]
    except KeyError:
        pass
    extension, problem = None, None
    try:
        value = pck.x509.extensions.get_extension_for_oid(_SGX_OID).value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise PckFormatError("SGX extension was not left raw by the parser")
        extension = platform_tcb(value.value)
    except x509.ExtensionNotFound:
        problem = "PCK certificate has no SGX extension"
    except (PckFormatError, ValueError, x509.DuplicateExtension) as exc:
        problem = f"PCK certificate SGX extension is unusable: {exc}"
    pck.memo["sgx"] = (extension, problem)
    return extension, problem


def _pck_chain_checks(chain_bytes: bytes, roots: tuple[bytes, ...]) -> _PckChain:
    try:
        certs = load_pem_chain(chain_bytes.rstrip(b"\x00"))
    except (ValueError, x509.InvalidVersion) as exc:
        return _PckChain((f"PCK certificate chain does not parse: {exc}",))
    if len(certs) < 2:
        return _PckChain(("PCK certificate chain must hold the PCK and its CA chain",))
    if any(cert.serial <= 0 for cert in certs):
        return _PckChain(("PCK certificate chain holds a serial number that is not positive",))
    problems = []
    if not _canonical_pem(certs, chain_bytes):
        problems.append("PCK certificate chain is not in canonical PEM encoding")
    names = ["PCK certificate", "PCK CA certificate", "root CA certificate"]
    chain = _check_chain(certs, roots, "PCK certificate chain", names)
    problems += chain.problems
    if not chain.trusted:
        problems.append(_untrusted(chain.root, "PCK certificate chain", roots))
    pck = certs[0]
    if not all(cert.strict for cert in certs):
        problems.append("PCK certificate chain holds a certificate that is not strict DER")
    if b"SGX PCK Certificate" not in pck.subject:
        problems.append("PCK certificate's common name does not say SGX PCK Certificate")
    pck_key = pck.key
    if pck_key is None:
        problems.append("PCK certificate key is not ECDSA P-256")
    extension, problem = _sgx_extension(pck)
    if problem is not None:
        problems.append(problem)
    simulated = _simulated(certs[-1])
    return _PckChain(tuple(problems), chain.windows, chain, pck_key, extension, pck.issuer,
                     simulated)  # fmt: skip


# ------------------------------------------------------------------------ the collateral


@dataclass(frozen=True)
class _Signed:
    """The collateral's own checks (cached by its exact text and the roots)."""

    problems: tuple[str, ...]
    windows: tuple[_Window, ...]
    root: Cert
    trusted: bool
    crl_issuer: Cert  # the PCK CRL issuer certificate (the PCK CA)
    pck_crl_issuer: bytes  # the PCK CRL's issuer name (DER)


def _signed(collateral: Collateral, roots: tuple[bytes, ...]) -> _Signed:
    problems: list[str] = []
    windows: list[_Window] = []
    root_crl = collateral.root_ca_crl
    crl_chain_certs, tcb_chain, qe_chain = collateral.parsed_chains()

    # TCB info and QE identity: signed over their exact bytes by the TCB signing certificate.
    signing: _Chain | None = None
    previous_text = None
    for index, label, data, signature in (
        (4, "TCB info", collateral.tcb_info_bytes, collateral.tcb_info_signature),
        (7, "QE identity", collateral.qe_identity_bytes, collateral.qe_identity_signature),
    ):
        text = collateral.key[index]  # the issuer chain's PEM text
        if text != previous_text:
            certs = tcb_chain if index == 4 else qe_chain
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
    if qe_chain[-1] != tcb_chain[-1]:
        problems.append("QE identity and TCB info are signed under different roots")
    info, identity = collateral.tcb_info, collateral.qe_identity
    windows.append(_dated_window(info.issue_date, info.next_update, "TCB info"))
    windows.append(_dated_window(identity.issue_date, identity.next_update, "QE identity"))

    # Root CA CRL: issued and signed by the root.
    root = signing.root
    if _crl_parts(collateral.root_ca_crl_der).issuer != root.subject:
        problems.append("root CA CRL is not issued by the collateral's root")
    elif not _crl_signed_by(root_crl, collateral.root_ca_crl_der, root):
        problems.append("root CA CRL signature does not verify with the root key")
    windows.append(_crl_window(root_crl, "root CA CRL"))

    # PCK CRL issuer chain, and the PCK CRL's signature by its first certificate.
    crl_chain = _check_chain(
        crl_chain_certs,
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
    pck_crl_issuer = _crl_parts(collateral.pck_crl_der).issuer
    if pck_crl_issuer != crl_issuer.subject:
        problems.append("PCK CRL is not issued by the PCK CRL issuer certificate")
    elif not _crl_signed_by(collateral.pck_crl, collateral.pck_crl_der, crl_issuer):
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
    chain_bytes: bytes, collateral: Collateral, roots: tuple[bytes, ...], tdx: bool
) -> _Platform:
    pck = _chains.get_or_create((chain_bytes, roots), lambda: _pck_chain(chain_bytes, roots))
    signed = _collaterals.get_or_create((collateral.key, roots), lambda: _signed(collateral, roots))
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
        elif certs[1] != signed.crl_issuer and not _crl_signed_by(
            collateral.pck_crl, collateral.pck_crl_der, certs[1]
        ):
            problems.append("PCK CRL signature does not verify with the PCK CA's key")
        if _revoked(collateral.pck_crl, certs[0]):
            problems.append(
                f"PCK certificate (serial {certs[0].serial:x}) is revoked by the PCK CRL"
            )
        for cert in certs[1:-1]:
            if _revoked(collateral.root_ca_crl, cert):
                problems.append(
                    f"PCK CA certificate (serial {cert.serial:x}) is revoked by the root CA CRL"
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
            check_padding(data, length)
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


def _collateral(
    source: CollateralSource | Collateral, quote: bytes
) -> Collateral:
    """The collateral ``source`` gives for this quote (a loaded Collateral is its own)."""
    if isinstance(source, Collateral | Bundle):
        return gather(source, Platform("", "", ""))
    if not isinstance(source, CollateralSource):
        raise TypeError("collateral must be a collateral source or a Collateral "
                        "(see attestcall.intel.fetch.source.collateral_source)")  # fmt: skip
    from attestcall.intel.fetch.pcs import quote_platform  # the quote's TEE, FMSPC and PCK CA

    return gather(source, Platform(*quote_platform(quote)))


def _appraise(
    parsed: _Parsed,
    source: CollateralSource | Collateral,
    at: datetime,
    roots: Sequence[x509.Certificate],
    quote: bytes,
) -> Appraisal:
    collateral = _collateral(source, quote)
    at = _utc(at)
    body = parsed.body
    tdx = isinstance(body, TdReportBody)
    qe = parsed.qe
    problems: list[str] = []
    if parsed.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        problems.append(f"QE vendor ID {parsed.header.qe_vendor_id.hex()} is not Intel's")

    roots_key = _roots_key(roots)
    chain_bytes = qe.certification_data.data
    platform = _platforms.get_or_create(
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
    quote: bytes,
    *,
    collateral: CollateralSource | Collateral,
    at: datetime,
    roots: Sequence[x509.Certificate],
) -> Appraisal:
    """Appraise an SGX quote (v3, or v4/v5 with TEE type SGX). ``collateral`` is a
    :class:`~attestcall.intel.fetch.source.CollateralSource` (see
    :func:`~attestcall.intel.fetch.source.collateral_source`) or a loaded :class:`Collateral`."""
    return _appraise_kind("an SGX", TEE_TYPE_SGX, ReportBody, quote, collateral, at, roots)


def appraise_tdx(
    quote: bytes,
    *,
    collateral: CollateralSource | Collateral,
    at: datetime,
    roots: Sequence[x509.Certificate],
) -> Appraisal:
    """Appraise a TDX quote (v4 or v5, TD report 1.0 or 1.5)."""
    return _appraise_kind("a TDX", TEE_TYPE_TDX, TdReportBody, quote, collateral, at, roots)


def _appraise_kind(
    name: str,
    tee_type: int,
    body_type: type,
    quote: bytes,
    collateral: CollateralSource | Collateral,
    at: datetime,
    roots: Sequence[x509.Certificate],
) -> Appraisal:
    """Appraise ``quote`` if its header says ``tee_type`` and its body is ``body_type``
    (``name``: "an SGX" or "a TDX", for the refusal)."""
    parsed = _parse(quote)
    if parsed.header.tee_type != tee_type or not isinstance(parsed.body, body_type):
        raise EvidenceError(
            f"not {name} quote: TEE type {parsed.header.tee_type:#x}, version "
            f"{parsed.header.version}"
        )
    return _appraise(parsed, collateral, at, roots, quote)


def appraise_intel(
    quote: bytes,
    *,
    collateral: CollateralSource | Collateral,
    at: datetime,
    roots: Sequence[x509.Certificate],
) -> Appraisal:
    """Appraise an SGX or TDX quote, chosen by its header."""
    parsed = _parse(quote)
    return _appraise(parsed, collateral, at, roots, quote)
