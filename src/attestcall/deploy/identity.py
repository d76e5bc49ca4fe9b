"""The keep's identity: a key made inside the keep, and a self-signed certificate carrying
the keep's evidence bound to that key.

Keep side (:func:`make_identity`): generate the key, ask ``get_attestation`` through the
keep's EvidenceSource the way a payload does (:func:`attest`: a size query, then the call
with a :class:`attestcall.abi.BufferMemory`), nonce = :func:`binding_nonce` of the key, and
put the evidence in non-critical extensions of a self-signed certificate:

- the CMW extension (``id-pe-cmw``, see :mod:`attestcall.deploy.cmw`) for every technology:
  a CBOR record whose media type names the technology (``MEDIA_TYPES``) and whose value is
  exactly what get_attestation wrote, with the Evidence indicator;
- Enarx's extension where Enarx defined one, encoded as Enarx did: 1.3.6.1.4.1.58270.1.1
  (no TEE, "KVM") with an empty value, .1.2 (SGX) with the raw quote, .1.3 (SNP) with DER
  ``SEQUENCE { vcek Certificate, report OCTET STRING }`` (the VCEK or VLEK from the
  certificate table and the 1184-byte report). TDX has no Enarx OID.

SEV (technology 1) is pre-attestation: get_attestation gives the PKCS#8 key the tenant
delivered, the certificate uses that key and carries no evidence; the tenant pins the key.

Tenant side: :func:`evidence_from_certificate` reads the CMW record (and checks any Enarx
extension agrees with it); :func:`check_binding` checks the evidence's report data is the
nonce of this certificate's own public key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from attestcall import abi, der
from attestcall.abi import Technology
from attestcall.deploy.cmw import (
    CMW_EXTENSION_OID,
    EVIDENCE_INDICATOR,
    CmwError,
    CmwRecord,
    extension_value,
    parse_extension_value,
)
from attestcall.deploy.keys import binding_nonce, generate_key, key_type_of, signature_hash
from attestcall.errors import AttestcallError

# Our media types (vendor tree, not registered with IANA; no registered type exists for
# these evidence formats). The value is the get_attestation buffer, byte for byte.
MEDIA_TYPES: dict[int, str] = {
    Technology.NONE: "application/vnd.attestcall.evidence.none",
    Technology.SGX: "application/vnd.attestcall.evidence.sgx-dcap-quote",
    Technology.SNP: "application/vnd.attestcall.evidence.snp-report",
    Technology.TDX: "application/vnd.attestcall.evidence.tdx-dcap-quote",
}
ENARX_OIDS: dict[int, str] = {
    Technology.NONE: "1.3.6.1.4.1.58270.1.1",
    Technology.SGX: "1.3.6.1.4.1.58270.1.2",
    Technology.SNP: "1.3.6.1.4.1.58270.1.3",
}
DEFAULT_KEY_TYPES: dict[int, str] = {
    Technology.NONE: "p256",
    Technology.SGX: "p256",  # the PCK's curve
    Technology.SNP: "p384",  # the VCEK's curve
    Technology.TDX: "p256",
}
VERIFIER_NAMES: dict[int, str] = {Technology.SGX: "sgx", Technology.SNP: "snp",
                                  Technology.TDX: "tdx"}
CERTIFICATE_VALIDITY = dt.timedelta(days=30)
SNP_REPORT_SIZE = 0x4A0


class IdentityError(AttestcallError):
    """Base of the keep-identity errors."""


class KeepAttestationFailed(IdentityError):
    """get_attestation failed inside the keep while making its identity."""


class CertificateEvidenceError(IdentityError):
    """The certificate carries no usable evidence: no CMW extension, a malformed one, an
    unknown media type, or an Enarx extension that disagrees with it."""


class BindingError(IdentityError):
    """The evidence's report data is not the nonce of the certificate's public key."""


@dataclass(frozen=True)
class KeepIdentity:
    """The keep's TLS key, its certificate and the evidence inside it."""

    private_key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate
    technology: int
    evidence: bytes

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        """Certificate and private key (unencrypted PKCS#8), PEM, for the TLS stack."""
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self.certificate.public_bytes(serialization.Encoding.PEM) + key


# ------------------------------------------------------------------------- keep side


def attest(source: abi.EvidenceSource, nonce: bytes) -> tuple[int, bytes]:
    """(technology, evidence) from ``source`` through the syscall contract: a size query,
    then one call with ``nonce`` into a buffer of that size. Raises KeepAttestationFailed."""
    query = abi.get_attestation(0, 0, 0, 0, memory=abi.BufferMemory(bytearray()), source=source)
    if not query.ok or query.technology is None:
        raise KeepAttestationFailed(f"get_attestation size query failed (errno {-query.ret})")
    size = query.ret
    buf_len = max(size, 1)  # a zero-length buffer is -EINVAL even when nothing is written
    memory = abi.BufferMemory(bytearray(abi.NONCE_SIZE + buf_len))
    memory.write(memory.base, nonce)
    buf_ptr = memory.base + abi.NONCE_SIZE
    outcome = abi.get_attestation(memory.base, len(nonce), buf_ptr, buf_len,
                                  memory=memory, source=source)
    if not outcome.ok or outcome.technology is None:
        raise KeepAttestationFailed(f"get_attestation failed (errno {-outcome.ret})")
    if outcome.ret != size or outcome.technology != query.technology:
        raise KeepAttestationFailed("get_attestation answered differently from its size query")
    return outcome.technology, memory.read(buf_ptr, size) if size else b""


def _snp_enarx_value(evidence: bytes) -> bytes | None:
    """Enarx's SNP extension value, or None without a VCEK/VLEK in the certificate table."""
    from attestcall.amd import certs as amdcerts

    try:
        entries = amdcerts.parse_table(evidence[SNP_REPORT_SIZE:])
    except AttestcallError:
        return None
    veks = [e.data for e in entries if e.guid in (amdcerts.VCEK_GUID, amdcerts.VLEK_GUID)]
    if not veks:
        return None
    return der.encode_sequence(veks[0], der.encode_octet_string(evidence[:SNP_REPORT_SIZE]))


def _enarx_value(technology: int, evidence: bytes) -> bytes | None:
    if technology == Technology.NONE:
        return b""
    if technology == Technology.SGX:
        return evidence
    if technology == Technology.SNP:
        return _snp_enarx_value(evidence)
    return None


def build_certificate(
    private_key: CertificateIssuerPrivateKeyTypes,
    technology: int | None,
    evidence: bytes,
    *,
    name: str = "attestcall keep",
) -> x509.Certificate:
    """A self-signed certificate for ``private_key`` carrying ``evidence`` of
    ``technology`` (None: no evidence extensions, as for SEV's pinned key)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public_key = private_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if technology is not None:
        if technology not in MEDIA_TYPES:
            raise IdentityError(f"technology {technology} has no evidence to put in a "
                                "certificate")
        record = CmwRecord(MEDIA_TYPES[technology], evidence, EVIDENCE_INDICATOR)
        cmw = x509.UnrecognizedExtension(x509.ObjectIdentifier(CMW_EXTENSION_OID),
                                         extension_value(record))
        builder = builder.add_extension(cmw, critical=False)
        enarx = _enarx_value(technology, evidence)
        if enarx is not None:
            oid = x509.ObjectIdentifier(ENARX_OIDS[technology])
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, enarx),
                                            critical=False)
    return builder.sign(private_key, signature_hash(key_type_of(public_key)))


def _pinned_key(evidence: bytes) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_der_private_key(evidence, password=None)
    except (ValueError, TypeError) as exc:
        raise KeepAttestationFailed(f"the SEV launch secret is not a PKCS#8 key: {exc}") from None
    key_type_of(key.public_key())  # refuse key types TLS here cannot use
    return key  # type: ignore[return-value]


def make_identity(
    source: abi.EvidenceSource, key_type: str | None = None, *, name: str = "attestcall keep"
) -> KeepIdentity:
    """The keep's identity: for post-attestation TEEs (and none) a fresh key of
    ``key_type`` (default per technology, ``DEFAULT_KEY_TYPES``) and evidence bound to it;
    for SEV the key delivered at launch, without evidence."""
    technology = int(source.technology)
    if technology == Technology.SEV:
        _, secret = attest(source, bytes(abi.NONCE_SIZE))  # SEV ignores the nonce
        key = _pinned_key(secret)
        return KeepIdentity(key, build_certificate(key, None, b"", name=name), technology, b"")
    key = generate_key(key_type or DEFAULT_KEY_TYPES.get(technology, "p256"))
    technology, evidence = attest(source, binding_nonce(key.public_key()))
    certificate = build_certificate(key, technology, evidence, name=name)
    return KeepIdentity(key, certificate, technology, evidence)


# ----------------------------------------------------------------------- tenant side


def _extension_bytes(cert: x509.Certificate, oid: str) -> bytes | None:
    try:
        extension = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    except (x509.DuplicateExtension, ValueError) as exc:
        raise CertificateEvidenceError(f"the certificate's extensions are malformed: {exc}") \
            from None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise CertificateEvidenceError(f"extension {oid} is not an opaque value")
    return value.value


def _check_enarx(cert: x509.Certificate, technology: int, evidence: bytes) -> None:
    """Any Enarx extension present must say what the CMW says."""
    for tech, oid in ENARX_OIDS.items():
        value = _extension_bytes(cert, oid)
        if value is None:
            continue
        if tech != technology:
            raise CertificateEvidenceError(f"Enarx extension {oid} contradicts the CMW's "
                                           "technology")
        if tech == Technology.SNP:
            try:
                items = der.decode(value).children()
                report = items[1].as_octet_string() if len(items) == 2 else None
            except der.DerError:
                report = None
            consistent = report == evidence[:SNP_REPORT_SIZE]
        else:
            consistent = value == _enarx_value(tech, evidence)
        if not consistent:
            raise CertificateEvidenceError(f"Enarx extension {oid} disagrees with the CMW")


def evidence_from_certificate(cert: x509.Certificate) -> tuple[int, bytes]:
    """(technology, evidence) from the certificate's CMW extension. Raises
    CertificateEvidenceError when there is none or it is unusable."""
    value = _extension_bytes(cert, CMW_EXTENSION_OID)
    if value is None:
        raise CertificateEvidenceError(
            f"the certificate carries no attestation evidence (no CMW extension "
            f"{CMW_EXTENSION_OID})"
        )
    try:
        record = parse_extension_value(value)
    except CmwError as exc:
        raise CertificateEvidenceError(f"the CMW extension is malformed: {exc}") from None
    by_media_type = {media: tech for tech, media in MEDIA_TYPES.items()}
    technology = by_media_type.get(record.media_type)
    if technology is None:
        raise CertificateEvidenceError(f"unknown evidence media type {record.media_type!r}")
    if record.indicator is not None and not record.indicator & EVIDENCE_INDICATOR:
        raise CertificateEvidenceError("the CMW record is not marked as Evidence")
    if technology == Technology.NONE and record.value:
        raise CertificateEvidenceError("a no-TEE keep's evidence must be empty")
    _check_enarx(cert, technology, record.value)
    return technology, record.value


def report_data(evidence: bytes, technology: int) -> bytes:
    """The 64 report-data bytes of SGX, SNP or TDX evidence (strictly parsed)."""
    from attestcall.amd import report as snp_report
    from attestcall.intel.quote import Quote
    from attestcall.intel.tdx_quote import DcapQuote

    try:
        if technology == Technology.SGX:
            if evidence[:2] == b"\x03\x00":
                return Quote.parse(evidence).body.report_data
            return DcapQuote.parse(evidence).body.report_data
        if technology == Technology.TDX:
            return DcapQuote.parse(evidence).body.report_data
        if technology == Technology.SNP:
            return snp_report.parse(evidence[:SNP_REPORT_SIZE]).report_data
    except (AttestcallError, ValueError) as exc:
        raise CertificateEvidenceError(f"the {VERIFIER_NAMES[technology].upper()} evidence "
                                       f"cannot be parsed: {exc}") from None
    raise CertificateEvidenceError(f"technology {technology} evidence has no report data")


def check_binding(cert: x509.Certificate, evidence: bytes, technology: int) -> None:
    """Raise BindingError unless ``evidence`` is bound to ``cert``'s public key: its report
    data equals :func:`binding_nonce` of that key. Technology NONE binds nothing (its
    evidence is empty): the caller must refuse it unless its policy allows a no-TEE keep."""
    if technology == Technology.NONE:
        if evidence:
            raise BindingError("a no-TEE keep's evidence must be empty")
        return
    public_key: CertificatePublicKeyTypes = cert.public_key()  # type: ignore[assignment]
    expected = binding_nonce(public_key)
    if report_data(evidence, technology) != expected:
        raise BindingError("the evidence is not bound to this certificate's key (its report "
                           "data is not the hash of the certificate's public key)")
