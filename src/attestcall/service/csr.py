"""The keep's certificate signing request to the attestation service: both sides, no I/O.

The keep (:func:`build_csr`) makes its key inside the keep, asks ``get_attestation`` with
the nonce :func:`binding_nonce` = SHA-512(DER SubjectPublicKeyInfo ‖ challenge), where the
challenge is the 32 bytes the service handed out, and sends a PKCS#10 CSR signed with that
key carrying

- the challenge, as base64url text without padding (43 characters), in the PKCS#9
  ``challengePassword`` attribute (1.2.840.113549.1.9.7);
- the evidence in the same non-critical extensions a keep puts in its self-signed
  certificate (:func:`attestcall.deploy.identity.evidence_extensions`: the CMW extension,
  and Enarx's where Enarx defined one), requested through the ``extensionRequest``
  attribute.

The service (:func:`read_csr`, then :func:`check_binding`) takes DER or PEM, refuses more
than :data:`MAX_CSR_SIZE` bytes before parsing, and refuses a CSR whose signature does not
verify, which carries no or several challenges or one that is not 32 bytes, whose evidence
is missing or malformed, or whose evidence is not bound to its key and challenge.

SEV (technology 1, pre-attestation) is refused on both sides: what get_attestation gives
an SEV keep is its private key, which never goes into a CSR. The refusal names the
technology only; no error here ever quotes evidence bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import AttributeOID, NameOID

from attestcall.abi import NONCE_SIZE, Technology
from attestcall.deploy.identity import (
    CertificateEvidenceError,
    IdentityError,
    evidence_extensions,
    evidence_from_extensions,
)
from attestcall.deploy.keys import UnsupportedKeyType, key_type_of, signature_hash, spki_der
from attestcall.errors import AttestcallError
from attestcall.tees import registry

CHALLENGE_SIZE = 32
CHALLENGE_TEXT_SIZE = 43  # base64url of 32 bytes, without padding
MAX_CSR_SIZE = 1 << 20  # 1 MiB
_DIRECTORY_STRING_TAGS = (0x0C, 0x13)  # UTF8String, PrintableString


class CsrError(AttestcallError):
    """A certificate signing request the service refuses, or one a keep cannot build.

    ``str()`` is one line meant for a person."""


class CsrTooLarge(CsrError):
    """The request is larger than MAX_CSR_SIZE (refused before parsing)."""


class MalformedCsr(CsrError):
    """Not a DER or PEM PKCS#10 request, or one whose parts cannot be read."""


class CsrKeyRefused(CsrError):
    """The request's public key is of a type the service does not certify."""


class CsrSignatureInvalid(CsrError):
    """The request's own signature does not verify with its public key."""


class ChallengeError(CsrError):
    """No challengePassword attribute, several, or one that is not 32 base64url bytes."""


class CsrEvidenceError(CsrError):
    """The request carries no usable evidence."""


class PreAttestationRefused(CsrError):
    """Evidence of a pre-attestation technology (SEV): a delivered private key, never sent."""


class CsrBindingError(CsrError):
    """The evidence's report data is not the binding nonce of the request's key and
    challenge."""


@dataclass(frozen=True)
class CsrContents:
    """What the service read from a request whose signature verified."""

    csr: x509.CertificateSigningRequest = field(repr=False)
    public_key: CertificatePublicKeyTypes = field(repr=False)
    subject: x509.Name
    challenge: bytes
    technology: int
    evidence: bytes = field(repr=False)


# ------------------------------------------------------------------------ shared


def binding_nonce(public_key: CertificatePublicKeyTypes, challenge: bytes) -> bytes:
    """The 64-byte nonce binding evidence to ``public_key`` and ``challenge``:
    SHA-512(DER SubjectPublicKeyInfo ‖ challenge)."""
    return hashlib.sha512(spki_der(public_key) + bytes(challenge)).digest()


def encode_challenge(challenge: bytes) -> str:
    """The challenge as the service hands it out and the CSR carries it: base64url, no
    padding."""
    return base64.urlsafe_b64encode(bytes(challenge)).rstrip(b"=").decode("ascii")


def decode_challenge(text: str) -> bytes:
    """The 32 challenge bytes of ``text`` (base64url, padding optional); ChallengeError
    for anything else."""
    body = text[:-1] if text.endswith("=") else text
    if len(body) != CHALLENGE_TEXT_SIZE or "=" in body:
        raise ChallengeError(f"the challenge must be {CHALLENGE_SIZE} bytes as "
                             f"{CHALLENGE_TEXT_SIZE} base64url characters")
    try:
        challenge = base64.urlsafe_b64decode(body + "=")
    except (binascii.Error, ValueError):
        raise ChallengeError("the challenge is not base64url") from None
    if encode_challenge(challenge) != body:  # non-alphabet or non-canonical characters
        raise ChallengeError("the challenge is not canonical base64url")
    return challenge


def _is_pre_attestation(technology: int) -> bool:
    tee = registry().by_id(technology)
    return technology == Technology.SEV or (tee is not None and tee.pre_attestation)


def _pre_attestation_refused(technology: int) -> PreAttestationRefused:
    return PreAttestationRefused(
        f"technology {technology} is pre-attestation: what get_attestation returns there is "
        "the keep's delivered private key, which is never sent to the attestation service")


# ------------------------------------------------------------------------ keep side


def build_csr(
    private_key: CertificateIssuerPrivateKeyTypes,
    technology: int,
    evidence: bytes,
    challenge: bytes,
    subject: str | x509.Name = "attestcall keep",
) -> x509.CertificateSigningRequest:
    """The CSR for ``private_key`` with ``challenge`` and ``evidence`` of ``technology``
    (evidence the keep got with nonce :func:`binding_nonce` of its key and the challenge)."""
    if _is_pre_attestation(technology):
        raise _pre_attestation_refused(technology)
    if len(challenge) != CHALLENGE_SIZE:
        raise ChallengeError(f"the challenge must be {CHALLENGE_SIZE} bytes, not "
                             f"{len(challenge)}")
    name = (subject if isinstance(subject, x509.Name)
            else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
    try:
        extensions = evidence_extensions(technology, bytes(evidence))
    except IdentityError as exc:
        raise CsrEvidenceError(str(exc)) from None
    builder = (x509.CertificateSigningRequestBuilder()
               .subject_name(name)
               .add_attribute(AttributeOID.CHALLENGE_PASSWORD,
                              encode_challenge(challenge).encode("ascii")))
    for extension in extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    try:
        hash_algorithm = signature_hash(key_type_of(private_key.public_key()))
    except UnsupportedKeyType as exc:
        raise CsrKeyRefused(str(exc)) from None
    return builder.sign(private_key, hash_algorithm)


# ------------------------------------------------------------------------ service side


def _parse(data: bytes) -> x509.CertificateSigningRequest:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise MalformedCsr("the body is not a DER or PEM PKCS#10 certificate request") \
            from None


def _challenge(csr: x509.CertificateSigningRequest) -> bytes:
    try:
        attributes = list(csr.attributes)
    except (ValueError, TypeError):
        raise MalformedCsr("the request's attributes are malformed") from None
    found = [a for a in attributes if a.oid == AttributeOID.CHALLENGE_PASSWORD]
    if not found:
        raise ChallengeError("the request carries no challengePassword attribute "
                             "(get one from /v1/challenge)")
    if len(found) > 1:
        raise ChallengeError("the request carries more than one challengePassword attribute")
    attribute = found[0]
    if attribute._type not in _DIRECTORY_STRING_TAGS:
        raise ChallengeError("the challengePassword is not a UTF8String or PrintableString")
    try:
        text = attribute.value.decode("ascii")
    except UnicodeDecodeError:
        raise ChallengeError("the challenge is not base64url") from None
    return decode_challenge(text)


def read_csr(data: bytes) -> CsrContents:
    """Read and check a request (DER or PEM): size, syntax, key type, signature, challenge,
    evidence. Raises a CsrError subclass; the binding is :func:`check_binding`'s."""
    if len(data) > MAX_CSR_SIZE:
        raise CsrTooLarge(f"the request is {len(data)} bytes; the limit is {MAX_CSR_SIZE}")
    csr = _parse(bytes(data))
    try:
        public_key = csr.public_key()
        key_type_of(public_key)  # type: ignore[arg-type]
    except (ValueError, UnsupportedAlgorithm, UnsupportedKeyType) as exc:
        raise CsrKeyRefused(f"the request's public key is not usable: {exc}") from None
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        signature_ok = False
    if not signature_ok:
        raise CsrSignatureInvalid("the request's signature does not verify with its own key")
    challenge = _challenge(csr)
    try:
        extensions = csr.extensions
    except (x509.DuplicateExtension, ValueError):
        raise MalformedCsr("the request's extensions are malformed") from None
    try:
        technology, evidence = evidence_from_extensions(extensions, what="request")
    except CertificateEvidenceError as exc:
        raise CsrEvidenceError(str(exc)) from None
    if _is_pre_attestation(technology):
        raise _pre_attestation_refused(technology)
    try:
        subject = csr.subject
    except ValueError:
        raise MalformedCsr("the request's subject is malformed") from None
    return CsrContents(csr, public_key, subject, challenge,  # type: ignore[arg-type]
                       technology, evidence)


def check_binding(contents: CsrContents) -> None:
    """Raise CsrBindingError unless the evidence's report data is
    :func:`binding_nonce` of the request's key and challenge. A keep without a TEE has no
    report data, so it can bind nothing and is refused here too."""
    tee = registry().by_id(contents.technology)
    if tee is None or tee.report_data is None:
        raise CsrBindingError(f"technology {contents.technology} evidence has no report data "
                              "to bind the request's key and challenge")
    try:
        report_data = tee.report_data(contents.evidence)
    except (AttestcallError, ValueError) as exc:
        raise CsrEvidenceError(f"the {tee.label} evidence cannot be parsed: {exc}") from None
    expected = binding_nonce(contents.public_key, contents.challenge)
    if len(report_data) != NONCE_SIZE or not hmac.compare_digest(report_data, expected):
        raise CsrBindingError("the evidence is not bound to this request (its report data is "
                              "not SHA-512 of the request's public key and challenge)")
