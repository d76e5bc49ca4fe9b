"""The attestation result a service certificate carries, and its one encoding.

When the service accepts a keep's evidence it puts what it concluded into a non-critical
extension of the certificate it issues, so a tenant can apply its own policy without the
evidence. The extension's value is DER::

    AttestationResult ::= SEQUENCE {
        technology      INTEGER (0..4294967295),  -- the get_attestation technology id
        technologyName  UTF8String,               -- the plugin record's name ("sgx", ...)
        measurement     OCTET STRING (SIZE (0..64)),  -- MRENCLAVE, MRTD, SNP MEASUREMENT;
                                                  -- empty for a keep without a TEE
        tcbStatus       UTF8String,               -- the verdict's TCB status, or empty
        advisories      SEQUENCE OF UTF8String,   -- advisory ids, in the verdict's order
        policyDigest    OCTET STRING (SIZE (32))  -- SHA-256 of the policy file's bytes,
                                                  -- SHA-256(b"") for the default policy
    }

DER is deterministic: one result has exactly one encoding, and :func:`decode` accepts
only that one (every tag, length and type checked, UTF-8 strict, nothing trailing).

The extension's OID, :data:`RESULT_OID`, is attestcall's own: a UUID-derived OID under
``2.25`` (ITU-T X.667 / ISO/IEC 9834-8), which needs no registration. It is
``2.25.`` followed by the decimal value of the random UUID
``edc817e3-3304-4711-a69b-0c396455fb38``, generated once for this purpose.
(1.3.6.1.4.1.58270 is Enarx's private enterprise arc, not ours.)

Which claim of a verdict is the measurement is a small table here keyed by the technology
name (:data:`MEASUREMENT_CLAIMS`); a later change may move it into the plugin record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509

from attestcall import der
from attestcall.errors import AttestcallError
from attestcall.tees import registry
from attestcall.verifier.verdict import Verdict

RESULT_UUID = "edc817e3-3304-4711-a69b-0c396455fb38"
RESULT_OID = "2.25.316065978868734708948119949765399411512"
UTF8_STRING = 0x0C
POLICY_DIGEST_SIZE = 32
MAX_MEASUREMENT = 64
MAX_TECHNOLOGY = 0xFFFF_FFFF

# The verdict claim holding each technology's launch measurement (hex), as the vendor
# appraisals name it (intel/verify/appraise.py, amd/verify/appraise.py); None: no
# measurement (a keep without a TEE).
MEASUREMENT_CLAIMS: dict[str, str | None] = {
    "none": None,
    "sgx": "mrenclave",
    "tdx": "mrtd",
    "snp": "measurement",
}


class ResultError(AttestcallError):
    """An attestation result that cannot be built or encoded."""


class MalformedResult(ResultError):
    """Bytes that are not exactly the DER encoding of an attestation result."""


@dataclass(frozen=True)
class AttestationResult:
    """What the service concluded about a keep, as its certificate carries it."""

    technology: int
    technology_name: str
    measurement: bytes
    tcb_status: str  # "" when the technology has none
    advisories: tuple[str, ...]
    policy_digest: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.technology <= MAX_TECHNOLOGY:
            raise ResultError(f"technology id {self.technology} is out of range")
        if len(self.measurement) > MAX_MEASUREMENT:
            raise ResultError(f"a measurement of {len(self.measurement)} bytes is longer than "
                              f"{MAX_MEASUREMENT}")
        if len(self.policy_digest) != POLICY_DIGEST_SIZE:
            raise ResultError(f"the policy digest must be {POLICY_DIGEST_SIZE} bytes, not "
                              f"{len(self.policy_digest)}")
        if not isinstance(self.advisories, tuple):
            object.__setattr__(self, "advisories", tuple(self.advisories))


def policy_digest(policy_bytes: bytes | None) -> bytes:
    """SHA-256 of the policy file's bytes (None or b"": the default policy)."""
    return hashlib.sha256(policy_bytes or b"").digest()


def _utf8(text: str) -> bytes:
    try:
        return der.encode_tlv(UTF8_STRING, text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ResultError("a result string is not encodable as UTF-8") from None


def encode(result: AttestationResult) -> bytes:
    """The DER encoding of ``result`` (the extension's value)."""
    return der.encode_sequence(
        der.encode_integer(result.technology),
        _utf8(result.technology_name),
        der.encode_octet_string(result.measurement),
        _utf8(result.tcb_status),
        der.encode_sequence(*(_utf8(a) for a in result.advisories)),
        der.encode_octet_string(result.policy_digest),
    )


def _text(item: der.Tlv, what: str) -> str:
    if item.tag != UTF8_STRING:
        raise MalformedResult(f"{what} must be a UTF8String, found {der.tag_name(item.tag)}")
    try:
        return item.value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedResult(f"{what} is not valid UTF-8") from None


def decode(data: bytes) -> AttestationResult:
    """The result encoded in ``data``; MalformedResult unless it is exactly its DER."""
    try:
        items = der.decode(bytes(data)).children()
        if len(items) != 6:
            raise MalformedResult(f"an attestation result has 6 fields, not {len(items)}")
        technology = items[0].as_integer()
        name = _text(items[1], "the technology name")
        measurement = items[2].as_octet_string()
        tcb_status = _text(items[3], "the TCB status")
        advisories = tuple(_text(a, "an advisory") for a in items[4].children())
        digest = items[5].as_octet_string()
    except der.DerError as exc:
        raise MalformedResult(f"the attestation result is malformed: {exc}") from None
    try:
        return AttestationResult(technology, name, measurement, tcb_status, advisories, digest)
    except MalformedResult:
        raise
    except ResultError as exc:
        raise MalformedResult(f"the attestation result is malformed: {exc}") from None


def extension(result: AttestationResult) -> x509.UnrecognizedExtension:
    """The certificate extension carrying ``result`` (to be added non-critical)."""
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(RESULT_OID), encode(result))


def from_certificate(cert: x509.Certificate) -> AttestationResult | None:
    """The result a certificate carries, None if it carries none; MalformedResult if the
    extension is there but unusable."""
    try:
        found = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(RESULT_OID))
    except x509.ExtensionNotFound:
        return None
    except (x509.DuplicateExtension, ValueError) as exc:
        raise MalformedResult(f"the certificate's extensions are malformed: {exc}") from None
    value = found.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - our OID
        raise MalformedResult("the attestation result extension is not an opaque value")
    return decode(value.value)


def measurement_of(verdict: Verdict) -> bytes:
    """The launch measurement among the verdict's claims (empty for no TEE)."""
    if verdict.technology not in MEASUREMENT_CLAIMS:
        raise ResultError(f"no measurement claim is known for technology "
                          f"{verdict.technology!r}")
    claim = MEASUREMENT_CLAIMS[verdict.technology]
    if claim is None:
        return b""
    value = verdict.claims.get(claim)
    if not isinstance(value, str):
        raise ResultError(f"the {verdict.technology} verdict has no {claim} claim")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ResultError(f"the {verdict.technology} verdict's {claim} claim is not hex") \
            from None


def from_verdict(verdict: Verdict, policy_bytes: bytes | None) -> AttestationResult:
    """The result of an accepted verdict under the policy file ``policy_bytes`` (None or
    b"": the default policy). A refused verdict has no result to certify (ResultError)."""
    if not verdict.accepted:
        raise ResultError("a refused verdict has no attestation result to certify")
    tee = registry().by_name(verdict.technology)
    if tee is None:
        raise ResultError(f"technology {verdict.technology!r} is not registered")
    return AttestationResult(
        technology=tee.technology,
        technology_name=tee.name,
        measurement=measurement_of(verdict),
        tcb_status=verdict.tcb_status or "",
        advisories=tuple(verdict.advisories),
        policy_digest=policy_digest(policy_bytes),
    )
