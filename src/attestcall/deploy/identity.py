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

:func:`evidence_extensions` builds those extensions; the keep's CSR to the attestation
service (:mod:`attestcall.service.csr`) carries the same ones.

Tenant side: :func:`evidence_from_certificate` reads the CMW record (and checks any Enarx
extension agrees with it; :func:`evidence_from_extensions` does it for any extensions, a
CSR's too); :func:`check_binding` checks the evidence's report data is the nonce of this
certificate's own public key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from attestcall import abi, tls
from attestcall.abi import Technology
from attestcall.deploy.cmw import (
    CMW_EXTENSION_OID,
    EVIDENCE_INDICATOR,
    CmwError,
    CmwRecord,
    extension_value,
    parse_extension_value,
)
from attestcall.deploy.keys import (
    binding_hash,
    binding_hashes,
    binding_nonce,
    generate_key,
    key_type_of,
    nonce_with,
    pkcs8_algorithm,
    signature_hash,
    spki_der,
)
from attestcall.errors import AttestcallError
from attestcall.tees import Tee, registry

# The media types (our vendor tree, not registered with IANA: no registered type exists
# for these evidence formats) and Enarx's OIDs come from each TEE's plugin record; the
# value is the get_attestation buffer, byte for byte.
CERTIFICATE_VALIDITY = dt.timedelta(days=30)


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
    """The keep's TLS key, its certificate and the evidence inside it; ``chain`` holds the
    issuers served after the certificate (the attestation service's CA; empty when the
    certificate is self-signed)."""

    private_key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate
    technology: int
    evidence: bytes
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        """Certificate, its chain and private key (unencrypted PKCS#8), PEM, for the TLS
        stack."""
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        certificates = (self.certificate, *self.chain)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates) + key

    def server_context(self) -> SSL.Context:
        """A TLS 1.3 server context serving this identity (:mod:`attestcall.tls`: the key
        goes to OpenSSL from memory, never a file). TlsError if the key is not the
        certificate's."""
        return tls.server_context(self.certificate, self.private_key, self.chain)


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


def _tee(technology: int) -> Tee:
    tee = registry().by_id(technology)
    if tee is None:
        raise IdentityError(f"technology {technology} is not registered")
    return tee


def evidence_extensions(
    technology: int, evidence: bytes
) -> list[x509.Extension[x509.UnrecognizedExtension]]:
    """The non-critical extensions that carry ``evidence`` of ``technology``: the CMW
    extension, then Enarx's where Enarx defined one. A keep's certificate and its CSR to
    the attestation service carry the same ones."""
    tee = registry().by_id(technology)
    if tee is None or tee.media_type is None:
        raise IdentityError(f"technology {technology} has no evidence to put in a "
                            "certificate")
    record = CmwRecord(tee.media_type, evidence, EVIDENCE_INDICATOR)
    oid = x509.ObjectIdentifier(CMW_EXTENSION_OID)
    extensions = [x509.Extension(oid, False, x509.UnrecognizedExtension(
        oid, extension_value(record)))]
    enarx = tee.enarx_value(evidence) if tee.enarx_value is not None else None
    if tee.enarx_oid is not None and enarx is not None:
        oid = x509.ObjectIdentifier(tee.enarx_oid)
        extensions.append(x509.Extension(oid, False, x509.UnrecognizedExtension(oid, enarx)))
    return extensions


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
        for extension in evidence_extensions(technology, evidence):
            builder = builder.add_extension(extension.value, critical=extension.critical)
    return builder.sign(private_key, signature_hash(key_type_of(public_key)))


def _pinned_key(evidence: bytes) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_der_private_key(evidence, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        claimed = pkcs8_algorithm(evidence)
        if claimed is None:
            raise KeepAttestationFailed("the SEV launch secret is not a PKCS#8 key") from None
        raise KeepAttestationFailed(f"the SEV launch secret claims an {claimed} key in "
                                    f"PKCS#8 but is not a valid one (a malformed or "
                                    f"wrong-length key of {len(evidence)} bytes)") from None
    key_type_of(key.public_key())  # refuse key types TLS here cannot use
    return key  # type: ignore[return-value]


def make_identity(
    source: abi.EvidenceSource, key_type: str | None = None, *, name: str = "attestcall keep"
) -> KeepIdentity:
    """The keep's identity: for post-attestation TEEs (and none) a fresh key of
    ``key_type`` (default per technology, ``DEFAULT_KEY_TYPES``) and evidence bound to it;
    for SEV the key delivered at launch, without evidence."""
    technology = int(source.technology)
    tee = registry().by_id(technology)
    if tee is not None and tee.pre_attestation:
        _, secret = attest(source, bytes(abi.NONCE_SIZE))  # SEV ignores the nonce
        key = _pinned_key(secret)
        return KeepIdentity(key, build_certificate(key, None, b"", name=name), technology, b"")
    key = generate_key(key_type or (tee.default_key_type if tee is not None else "p256"))
    technology, evidence = attest(source, binding_nonce(key.public_key()))
    certificate = build_certificate(key, technology, evidence, name=name)
    return KeepIdentity(key, certificate, technology, evidence)


# ----------------------------------------------------------------------- tenant side


def _extension_bytes(extensions: x509.Extensions, oid: str, what: str) -> bytes | None:
    try:
        extension = extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    except x509.ExtensionNotFound:
        return None
    except (x509.DuplicateExtension, ValueError) as exc:
        raise CertificateEvidenceError(f"the {what}'s extensions are malformed: {exc}") \
            from None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise CertificateEvidenceError(f"extension {oid} is not an opaque value")
    return value.value


def _check_enarx(extensions: x509.Extensions, technology: int, evidence: bytes,
                 what: str) -> None:
    """Any Enarx extension present must say what the CMW says."""
    for tee in registry().tees:
        if tee.enarx_oid is None:
            continue
        value = _extension_bytes(extensions, tee.enarx_oid, what)
        if value is None:
            continue
        if tee.technology != technology:
            raise CertificateEvidenceError(f"Enarx extension {tee.enarx_oid} contradicts the "
                                           "CMW's technology")
        if tee.enarx_matches is not None:
            consistent = tee.enarx_matches(value, evidence)
        else:
            consistent = tee.enarx_value is not None and value == tee.enarx_value(evidence)
        if not consistent:
            raise CertificateEvidenceError(f"Enarx extension {tee.enarx_oid} disagrees with "
                                           "the CMW")


def evidence_from_extensions(
    extensions: x509.Extensions, *, what: str = "certificate"
) -> tuple[int, bytes]:
    """(technology, evidence) from the CMW extension among ``extensions`` (a certificate's
    or a CSR's, ``what`` naming which in messages), checked against any Enarx extension.
    Raises CertificateEvidenceError when there is none or it is unusable."""
    value = _extension_bytes(extensions, CMW_EXTENSION_OID, what)
    if value is None:
        raise CertificateEvidenceError(
            f"the {what} carries no attestation evidence (no CMW extension "
            f"{CMW_EXTENSION_OID})"
        )
    try:
        record = parse_extension_value(value)
    except CmwError as exc:
        raise CertificateEvidenceError(f"the CMW extension is malformed: {exc}") from None
    tee = next((t for t in registry().tees if t.media_type == record.media_type), None)
    if tee is None:
        raise CertificateEvidenceError(f"unknown evidence media type {record.media_type!r}")
    technology = tee.technology
    if record.indicator is not None and not record.indicator & EVIDENCE_INDICATOR:
        raise CertificateEvidenceError("the CMW record is not marked as Evidence")
    if technology == Technology.NONE and record.value:
        raise CertificateEvidenceError("a no-TEE keep's evidence must be empty")
    _check_enarx(extensions, technology, record.value, what)
    return technology, record.value


def evidence_from_certificate(cert: x509.Certificate) -> tuple[int, bytes]:
    """(technology, evidence) from the certificate's CMW extension. Raises
    CertificateEvidenceError when there is none or it is unusable."""
    try:
        extensions = cert.extensions
    except (x509.DuplicateExtension, ValueError) as exc:
        raise CertificateEvidenceError(f"the certificate's extensions are malformed: {exc}") \
            from None
    return evidence_from_extensions(extensions)


def report_data(evidence: bytes, technology: int) -> bytes:
    """The 64 report-data bytes of the evidence, as its TEE's own parser reads them."""
    tee = _tee(technology)
    if tee.report_data is None:
        raise CertificateEvidenceError(f"technology {technology} evidence has no report data")
    try:
        return tee.report_data(evidence)
    except (AttestcallError, ValueError) as exc:
        raise CertificateEvidenceError(f"the {tee.label} evidence cannot be parsed: "
                                       f"{exc}") from None


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
    found = report_data(evidence, technology)
    if found == expected:
        return
    key_type = key_type_of(public_key)
    spki = spki_der(public_key)
    for algorithm in binding_hashes():
        if nonce_with(algorithm, spki) == found:  # the right key, hashed the wrong way
            raise BindingError(
                f"the evidence binds this certificate's {key_type} key with "
                f"{algorithm.name.upper()}, but a {key_type} key binds with "
                f"{binding_hash(key_type).upper()}")
    raise BindingError("the evidence is not bound to this certificate's key (its report "
                       "data is not the hash of the certificate's public key)")
