"""Appraise SEV-SNP evidence: the report's signature, the VCEK/VLEK chain to a pinned ARK,
the TCB and chip binding. Policy (measurement, debug, TCB minimums, nonce) is the caller's.

Certificates come from an injected source (:mod:`attestcall.amd.fetch.source`: a ``--certs``
file, a KDS, certificates in memory), then from the certificate table after the report.

Checks that fail become one-line entries in ``Appraisal.problems``; only unusable input
raises (:class:`EvidenceError` for the evidence, :class:`CollateralError` for ``certs``).

Chain links (child DER, issuer DER) and per-certificate facts (parsed certificate, AMD
extensions, validity window) are cached by their exact DER bytes in bounded, thread-safe
LRU caches (:mod:`attestcall.lru`); validity is evaluated at ``at`` on every call, so a
warm appraisal costs one ECDSA P-384 verification plus parsing. Nothing is keyed on serial
numbers (AMD's are all 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from attestcall import pki
from attestcall.amd.fetch import kds, source
from attestcall.amd.fetch.source import (
    CertSource,
    TableSource,
    VcekRequest,
    certs_source,
    guess_product,
)
from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.roots import amd_asks
from attestcall.amd.verify import revocation
from attestcall.appraisal import Appraisal
from attestcall.errors import CollateralError, CollateralMissing, EvidenceError
from attestcall.lru import Lru

AMD_RSA_BITS = 4096
SIMULATED_MARK = "SIMULATED"
_CACHE_LIMIT = 512


# ---------------------------------------------------------------------------- caches


@dataclass
class _CertInfo:
    cert: x509.Certificate
    der: bytes
    not_before: datetime
    not_after: datetime
    window: pki.Window  # notBefore..notAfter, both inclusive
    subject: bytes  # DER of the subject and issuer names, compared when chaining
    issuer: bytes
    label: str  # subject CN, for messages
    issuer_label: str
    names: str  # subject and issuer, to look for SIMULATED
    vek: amdcerts.VekExtensions | None = None
    vek_error: str | None = None

    @property
    def simulated(self) -> bool:
        return SIMULATED_MARK in self.names.upper()


_INFO: Lru[bytes, _CertInfo] = Lru(_CACHE_LIMIT)
# id(certificate) -> (certificate, info); holds the object, so its id is not reused
_BY_OBJECT: Lru[int, tuple[x509.Certificate, _CertInfo]] = Lru(_CACHE_LIMIT)
_LINKS: Lru[tuple[bytes, bytes], str | None] = Lru(_CACHE_LIMIT)


def clear_caches() -> None:
    """Forget every cached certificate, chain link and ``--certs`` input."""
    _INFO.clear()
    _BY_OBJECT.clear()
    _LINKS.clear()
    source.clear_caches()
    revocation.clear_caches()


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _make_info(der: bytes) -> _CertInfo:
    cert = amdcerts.load_certificate(der)
    info = _CertInfo(
        cert=cert, der=der, not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc, window=pki.cert_window(cert),
        subject=cert.subject.public_bytes(),
        issuer=cert.issuer.public_bytes(), label=_common_name(cert.subject),
        issuer_label=_common_name(cert.issuer),
        names=cert.subject.rfc4514_string() + " " + cert.issuer.rfc4514_string(),
    )
    if isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        try:
            info.vek = amdcerts.vek_extensions(cert)
        except CollateralError as exc:
            info.vek_error = str(exc)
    else:
        info.vek_error = "its key is not an ECDSA key"
    return info


def _info_from_der(der: bytes) -> _CertInfo:
    return _INFO.get_or_create(der, lambda: _make_info(der))


def _info(cert: x509.Certificate) -> _CertInfo:
    """Facts about a certificate object, cached by identity (the cache holds the object, so
    its id is not reused while cached) and by DER."""
    found = _BY_OBJECT.get(id(cert))
    if found is not None and found[0] is cert:
        return found[1]
    info = _info_from_der(cert.public_bytes(Encoding.DER))
    _BY_OBJECT.put(id(cert), (cert, info))
    return info


def _check_link(child: _CertInfo, issuer: _CertInfo) -> str | None:
    """Why ``issuer`` did not sign ``child`` with AMD's algorithm, or None if it did."""
    return _LINKS.get_or_create((child.der, issuer.der), lambda: _verify_link(child, issuer))


def _verify_link(child: _CertInfo, issuer: _CertInfo) -> str | None:
    cert = child.cert
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS or not isinstance(
        cert.signature_hash_algorithm, hashes.SHA384
    ):
        return f"{child.label} is not signed with RSASSA-PSS SHA-384"
    issuer_key = issuer.cert.public_key()
    if not isinstance(issuer_key, rsa.RSAPublicKey) or issuer_key.key_size != AMD_RSA_BITS:
        return f"{issuer.label} does not have an RSA-{AMD_RSA_BITS} key"
    try:
        constraints = issuer.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError as exc:
        return f"{issuer.label} has malformed extensions ({exc})"
    if constraints is not None and not constraints.value.ca:
        return f"{issuer.label} is not a CA certificate"
    # pki checks the names and verifies RSASSA-PSS with the hash, MGF1 hash and salt
    # length the certificate's signature parameters state.
    failure = pki.issued_by(cert, issuer.cert)
    if failure is None:
        return None
    if failure.fault is pki.Fault.BAD_SIGNATURE:
        return f"{child.label}'s signature does not verify with {issuer.label}'s key"
    return f"{child.label} cannot be verified with {issuer.label} ({failure.detail})"


# ---------------------------------------------------------------------------- helpers


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _validity_problem(info: _CertInfo, role: str, at: datetime) -> str | None:
    if info.window.timing(at) is pki.Timing.VALID:
        return None
    return (f"the {role} ({info.label}) is not valid at {at.isoformat()} (valid "
            f"{info.not_before.isoformat()} to {info.not_after.isoformat()})")


def _unique(infos: Sequence[_CertInfo]) -> list[_CertInfo]:
    seen: set[bytes] = set()
    out: list[_CertInfo] = []
    for info in infos:
        if info.der not in seen:
            seen.add(info.der)
            out.append(info)
    return out


def kds_vcek_path(report: snp.Report | bytes, product: str | None = None) -> str:
    """The AMD KDS path of the report's VCEK (see :func:`attestcall.amd.fetch.kds.vcek_path`)."""
    if not isinstance(report, snp.Report):
        report = snp.parse(report)
    return kds.vcek_path(VcekRequest.from_report(report), product)


def _product_in(label: str) -> str | None:
    for product in snp.PRODUCTS:
        if product.lower() in label.lower():
            return product
    return None


# ---------------------------------------------------------------------------- the chain


@dataclass
class _Chain:
    intermediate: _CertInfo | None = None
    root: _CertInfo | None = None
    trusted: bool = False


def _root_for(ask: _CertInfo, roots: list[_CertInfo]) -> tuple[_CertInfo | None, str | None]:
    """The first root that signed ``ask`` and itself, else (None, the last reason)."""
    reason = None
    for ark in roots:
        if ark.subject != ask.issuer:
            continue
        reason = _check_link(ask, ark) or _check_link(ark, ark)
        if reason is None:
            return ark, None
    return None, reason


def _build_chain(vek: _CertInfo, kind: str, intermediates: list[_CertInfo],
                 roots: list[_CertInfo], trusted: list[_CertInfo],
                 problems: list[str]) -> _Chain:
    """VEK → ASK/ASVK → ARK, preferring a path to a trusted ARK over any other."""
    ask_name = "ASK" if kind == "VCEK" else "ASVK"
    candidates = [i for i in intermediates if i.subject == vek.issuer]
    if not candidates:
        problems.append(f"no {ask_name} ({vek.issuer_label}) to check the {kind} "
                        "against: pass --certs with the certificate chain")
        return _Chain()
    signers = []
    link_problem = None
    for candidate in candidates:
        link_problem = _check_link(vek, candidate)
        if link_problem is None:
            signers.append(candidate)
    if not signers:
        problems.append(f"the {kind} does not chain to the {ask_name}: {link_problem}")
        return _Chain()
    for ask in signers:
        ark, _ = _root_for(ask, trusted)
        if ark is not None:
            return _Chain(intermediate=ask, root=ark, trusted=True)
    reason = None
    for ask in signers:
        ark, reason = _root_for(ask, roots)
        if ark is None:
            continue
        if ark.simulated and any(root.simulated for root in trusted):
            problems.append(f"the chain ends at a simulated root ({ark.label}) that is no "
                            "longer this machine's: the simulated platform was reset since "
                            "(attestcall sim reset), or the evidence comes from another "
                            "machine; it cannot be verified here")
        elif ark.simulated:
            problems.append(f"the evidence is simulated: its chain ends at the simulated root "
                            f"{ark.label}; pass --trust-simulated to accept it")
        else:
            problems.append(f"the chain ends at an ARK that is not pinned ({ark.label})")
        return _Chain(intermediate=ask, root=ark)
    ask = signers[0]
    if reason is not None:
        problems.append(f"the {ask_name} does not chain to an ARK: {reason}")
    else:
        problems.append(f"the {ask_name} ({ask.label}) is not signed by any pinned ARK "
                        f"({ask.issuer_label})")
    return _Chain(intermediate=ask)


# ---------------------------------------------------------------------------- appraisal


def _claims(report: snp.Report, product: str | None) -> dict[str, Any]:
    layout = product or snp.MILAN  # Milan and Genoa share a layout
    return {
        "version": report.version,
        "guest_svn": report.guest_svn,
        "policy": report.policy,
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "current_tcb": report.tcb("current_tcb", layout).as_dict(),
        "reported_tcb": report.tcb("reported_tcb", layout).as_dict(),
        "committed_tcb": report.tcb("committed_tcb", layout).as_dict(),
        "launch_tcb": report.tcb("launch_tcb", layout).as_dict(),
        "platform_info": report.platform_info,
        "signer_info": {
            "author_key_en": report.author_key_en,
            "mask_chip_key": report.mask_chip_key,
            "signing_key": report.signing_key,
        },
        "report_data": report.report_data.hex(),
        "measurement": report.measurement.hex(),
        "host_data": report.host_data.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "chip_id": report.chip_id.hex(),
        "product": product,
        "migration_agent": report.migration_agent,
        "smt_enabled": report.smt_enabled,
    }


def _verifies(report: snp.Report, signed: bytes, vek: _CertInfo) -> bool:
    key = vek.cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return False
    try:
        key.verify(report.signature_der(), signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


def _split(evidence: bytes) -> tuple[snp.Report, TableSource]:
    if len(evidence) < snp.REPORT_SIZE:
        raise EvidenceError(f"SNP evidence is {len(evidence)} bytes; an ATTESTATION_REPORT "
                            f"alone is {snp.REPORT_SIZE}")
    report = snp.parse(evidence[:snp.REPORT_SIZE])
    return report, TableSource(amdcerts.parse_table(evidence[snp.REPORT_SIZE:]))


def _infos(*groups: Sequence[x509.Certificate]) -> list[_CertInfo]:
    return _unique([_info(cert) for group in groups for cert in group])


def _revocation(given: CertSource, vek: _CertInfo, kind: str, chain: _Chain, at: datetime,
                extra: Sequence[x509.CertificateRevocationList]) -> list[str]:
    """Whether the ARK's CRL revokes the ASK/ASVK or the VCEK/VLEK of a trusted chain."""
    assert chain.root is not None and chain.intermediate is not None
    root, ask = chain.root, chain.intermediate
    product = _product_in(root.label)
    family = "vlek" if kind == "VLEK" else "vcek"
    crls_of = getattr(given, "crls", None)
    fetched = list(crls_of(family, product, root.cert)) if crls_of is not None else []
    links = [revocation.Link("ASK" if kind == "VCEK" else "ASVK", ask.label, ask.cert),
             revocation.Link(kind, vek.label, vek.cert)]
    return revocation.check(ark=root.cert, ark_label=root.label, product=product, links=links,
                            at=at, given=fetched, extra=extra,
                            required=bool(getattr(given, "revocation_required", False)))


def appraise_snp(evidence: bytes, *,
                 certs: CertSource | bytes | bytearray | str | Path | None = None,
                 at: datetime, arks: Sequence[x509.Certificate],
                 crls: Sequence[x509.CertificateRevocationList] = ()) -> Appraisal:
    """Appraise SNP evidence (a report, optionally followed by its certificate table).

    ``certs`` is where AMD certificates come from: a
    :class:`~attestcall.amd.fetch.source.CertSource` (e.g. a KDS), or the content or path of a
    ``--certs`` file (DER, PEM or a certificate table); its certificates are preferred to
    the table's, which is always consulted. ``arks`` are the trusted roots. Revocation
    uses the CRLs the source gives (:mod:`attestcall.amd.verify.revocation`) and ``crls``,
    more CRLs used when one is the chain's ARK's (the simulators')."""
    evidence = bytes(evidence)
    at = _utc(at)
    report, table = _split(evidence)
    given = certs_source(certs)
    problems: list[str] = []

    if not 2 <= report.version <= 5:
        problems.append(f"report version {report.version} is not supported (2 to 5)")
    kind = {snp.SIGNING_KEY_VCEK: "VCEK", snp.SIGNING_KEY_VLEK: "VLEK"}.get(report.signing_key)

    if kind == "VCEK":
        request = VcekRequest.from_report(report)
        veks = _infos(given.vceks(request), table.vceks(request))
    elif kind == "VLEK":
        veks = _infos(given.vleks(), table.vleks())
    else:
        veks = []
    trusted = _infos(arks)

    product = guess_product(report)
    vek: _CertInfo | None = None
    chain = _Chain()
    signed = evidence[:snp.SIGNED_SIZE]

    if kind is None:
        problems.append("the report is not signed (SIGNING_KEY is none)")
    elif not veks:
        if kind == "VCEK":
            try:
                where = f" (KDS path {kds_vcek_path(report)})"
            except EvidenceError:
                where = ""
            raise CollateralMissing("no VCEK: the evidence has no certificate table with one; "
                                    f"pass --certs with the VCEK or use --kds to fetch "
                                    f"it{where}")
        raise CollateralMissing("no VLEK: the evidence has no certificate table with one; "
                                "pass --certs with the VLEK the cloud provider uses")
    else:
        if report.signature_algo != snp.SIG_ECDSA_P384_SHA384:
            problems.append(f"unsupported signature algorithm {report.signature_algo} "
                            "(only 1, ECDSA P-384 with SHA-384)")
            vek = veks[0]
        else:
            vek = next((v for v in veks if _verifies(report, signed, v)), None)
            if vek is None:
                vek = veks[0]
                problems.append(f"the report's signature does not verify with the {kind}")
        line = vek.vek.product if vek.vek is not None else None
        line = line if line in snp.PRODUCTS else product
        intermediates = _infos(given.signing_cas(line), table.signing_cas(line), amd_asks())
        roots = _infos(given.arks(line), table.arks(line))
        chain = _build_chain(vek, kind, intermediates, roots, trusted, problems)
        if chain.trusted and chain.root is not None and chain.intermediate is not None:
            problems += _revocation(given, vek, kind, chain, at, crls)
        for info, role in ((vek, kind), (chain.intermediate, "ASK"), (chain.root, "ARK")):
            if info is not None:
                problem = _validity_problem(info, role, at)
                if problem:
                    problems.append(problem)
        product = _check_vek(report, vek, kind, chain, product, problems)

    simulated = _is_simulated(vek, chain)
    return Appraisal(
        technology="snp",
        claims=_claims(report, product),
        report_data=report.report_data,
        debug=report.debug,
        problems=problems,
        simulated=simulated,
    )


def _is_simulated(vek: _CertInfo | None, chain: _Chain) -> bool:
    if chain.root is not None:
        return chain.root.simulated
    if chain.intermediate is not None:
        return SIMULATED_MARK in chain.intermediate.cert.issuer.rfc4514_string().upper()
    return vek is not None and SIMULATED_MARK in vek.cert.issuer.rfc4514_string().upper()


def _check_vek(report: snp.Report, vek: _CertInfo, kind: str, chain: _Chain,
               guessed: str | None, problems: list[str]) -> str | None:
    """The TCB, hardware id and product checks; returns the product line."""
    ext = vek.vek
    if ext is None:
        problems.append(f"the {kind} has no usable AMD extensions: {vek.vek_error}")
        return guessed
    product = ext.product if ext.product in snp.PRODUCTS else None
    chain_product = _product_in(chain.root.label) if chain.root is not None else None
    if product is None:
        problems.append(f"the {kind}'s product name {ext.product_name!r} is not Milan, Genoa "
                        "or Turin")
        product = chain_product or guessed
    elif chain_product is not None and chain_product != product:
        problems.append(f"the {kind} is for {product} but its chain is {chain_product}'s")
    cpuid_product = report.cpuid_product()
    if product is not None and cpuid_product is not None and cpuid_product != product:
        problems.append(f"the report's CPUID says {cpuid_product}, the {kind} is for {product}")
    if product is None:
        return None

    reported = report.tcb("reported_tcb", product)
    mine = snp.TcbVersion(bootloader=ext.bootloader, tee=ext.tee, snp=ext.snp,
                          microcode=ext.microcode,
                          fmc=ext.fmc if product == snp.TURIN else None, raw=b"")
    if product == snp.TURIN and ext.fmc is None:
        problems.append(f"the Turin {kind} has no FMC SPL extension")
    elif (mine.bootloader, mine.tee, mine.snp, mine.microcode, mine.fmc) != (
            reported.bootloader, reported.tee, reported.snp, reported.microcode, reported.fmc):
        problems.append(f"the {kind}'s TCB ({mine.describe()}) is not the report's "
                        f"REPORTED_TCB ({reported.describe()})")

    if kind == "VCEK":
        expected = report.chip_id[:8] if product == snp.TURIN else report.chip_id
        if ext.hwid is None:
            problems.append("the VCEK has no hardware id extension")
        elif report.mask_chip_key:
            pass  # CHIP_ID is zeroed by request; the signature alone binds the chip
        elif ext.hwid != expected:
            problems.append(f"the VCEK is for another chip (hwid {ext.hwid.hex()[:16]}…, "
                            f"CHIP_ID {report.chip_id.hex()[:16]}…)")
    return product
