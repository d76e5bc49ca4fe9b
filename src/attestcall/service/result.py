"""The attestation result a service certificate carries: the EAR claims-set, unsigned.

When the service accepts a keep's evidence it puts what it concluded into a non-critical
extension of the certificate it issues, so a tenant can apply its own policy without the
evidence. What it puts there is the same EAR claims-set (:mod:`attestcall.ear`) its
``POST /v1/attestation`` tokens carry and ``attestcall verify --ear`` prints: one
vocabulary, not a second format. The certificate's signature covers it, so it goes
unsigned, as JSON (the JWT's own serialisation: the same bytes a token's payload decodes
to; an EAR in CBOR would use integer labels, a second spelling of every claim). The
extension's value is DER::

    AttestationResult ::= UTF8String  -- ear.encode(): UTF-8 JSON, keys sorted, no spaces

One result has exactly one encoding, and :func:`decode` accepts only that one (DER
checked, UTF-8 strict, JSON canonical, the claims-set checked by :func:`attestcall.ear.check`,
exactly one submod, the technology's measurement present).

The extension's OID, :data:`RESULT_OID`, is attestcall's own: a UUID-derived OID under
``2.25`` (ITU-T X.667 / ISO/IEC 9834-8), which needs no registration. It is
``2.25.`` followed by the decimal value of the random UUID
``edc817e3-3304-4711-a69b-0c396455fb38``, generated once for this purpose.
(1.3.6.1.4.1.58270 is Enarx's private enterprise arc, not ours.)

Which claim of a verdict is the measurement each plugin record says
(``Tee.measurement_claim``; :func:`measurement_claim`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from attestcall import der, ear
from attestcall.errors import AttestcallError
from attestcall.tees import registry
from attestcall.verifier.policy import Policy
from attestcall.verifier.verdict import Verdict

RESULT_UUID = "edc817e3-3304-4711-a69b-0c396455fb38"
RESULT_OID = "2.25.316065978868734708948119949765399411512"
UTF8_STRING = 0x0C
MAX_MEASUREMENT = 64



def measurement_claim(technology: str) -> str | None:
    """The verdict claim holding ``technology``'s launch measurement (hex), as its plugin
    record names it; "" for a TEE without one (no TEE); None for an unknown technology or
    one whose record names no claim."""
    tee = registry().by_name(technology)
    return None if tee is None else tee.measurement_claim


class ResultError(AttestcallError):
    """An attestation result that cannot be built or encoded."""


class MalformedResult(ResultError):
    """Bytes that are not exactly the encoding of an attestation result."""


def _hex_measurement(value: Any, technology: str, claim: str) -> bytes:
    if not isinstance(value, str):
        raise ResultError(f"the {technology} verdict has no {claim} claim")
    try:
        measurement = bytes.fromhex(value)
    except ValueError:
        raise ResultError(f"the {technology} verdict's {claim} claim is not hex") from None
    if len(measurement) > MAX_MEASUREMENT:
        raise ResultError(f"a measurement of {len(measurement)} bytes is longer than "
                          f"{MAX_MEASUREMENT}")
    return measurement


@dataclass(frozen=True)
class AttestationResult:
    """What the service concluded about a keep, as its certificate carries it: an EAR
    claims-set with one appraisal. The properties read that appraisal."""

    claims: dict[str, Any]

    def __post_init__(self) -> None:
        try:
            ear.check(self.claims)
        except ear.MalformedEar as exc:
            raise MalformedResult(f"the attestation result is malformed: {exc}") from None

    @property
    def appraisal(self) -> dict[str, Any]:
        return ear.only_appraisal(self.claims)[1]

    @property
    def technology_name(self) -> str:
        return ear.only_appraisal(self.claims)[0]

    @property
    def technology(self) -> int:
        return int(self.appraisal[ear.TECHNOLOGY_ID])

    @property
    def measurement(self) -> bytes:
        """The launch measurement (empty for a keep without a TEE, or a technology this
        tenant has no measurement claim for)."""
        claim = measurement_claim(self.technology_name)
        if not claim:
            return b""
        value = self.appraisal[ear.ANNOTATED_EVIDENCE].get(claim)
        try:
            return _hex_measurement(value, self.technology_name, claim)
        except ResultError as exc:
            raise MalformedResult(f"the attestation result is malformed: {exc}") from None

    @property
    def tcb_status(self) -> str:
        """The TCB status, "" when the technology has none."""
        return str(self.appraisal.get(ear.TCB_STATUS_CLAIM, ""))

    @property
    def advisories(self) -> tuple[str, ...]:
        return tuple(self.appraisal[ear.ADVISORIES])

    @property
    def status(self) -> str:
        return str(self.appraisal[ear.STATUS])

    @property
    def vector(self) -> dict[str, int]:
        return dict(self.appraisal[ear.VECTOR])

    @property
    def policy_digest(self) -> bytes:
        """SHA-256 of the service's policy file (from ``ear.appraisal-policy-id``)."""
        return bytes.fromhex(self.appraisal[ear.POLICY_ID][len(ear.POLICY_ID_PREFIX):])


def policy_digest(policy_bytes: bytes | None) -> bytes:
    """SHA-256 of the policy file's bytes (None or b"": the default policy)."""
    return hashlib.sha256(policy_bytes or b"").digest()


def encode(result: AttestationResult) -> bytes:
    """The DER encoding of ``result`` (the extension's value)."""
    return der.encode_tlv(UTF8_STRING, ear.encode(result.claims))


def decode(data: bytes) -> AttestationResult:
    """The result encoded in ``data``; MalformedResult unless it is exactly its encoding."""
    try:
        item = der.decode(bytes(data))
    except der.DerError as exc:
        raise MalformedResult(f"the attestation result is malformed: {exc}") from None
    if item.tag != UTF8_STRING:
        raise MalformedResult(f"the attestation result must be a UTF8String, found "
                              f"{der.tag_name(item.tag)}")
    try:
        claims = ear.decode(item.value)
    except ear.MalformedEar as exc:
        raise MalformedResult(f"the attestation result is malformed: {exc}") from None
    result = AttestationResult(claims)
    result.measurement  # noqa: B018 - checks the measurement is there and well-formed
    return result


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
    claim = measurement_claim(verdict.technology)
    if claim is None:
        raise ResultError(f"no measurement claim is known for technology "
                          f"{verdict.technology!r}")
    if not claim:
        return b""
    return _hex_measurement(verdict.claims.get(claim), verdict.technology, claim)


def from_verdict(verdict: Verdict, policy_bytes: bytes | None, *,
                 policy: Policy | None = None, issued_at: dt.datetime | None = None,
                 nonce: bytes | None = None) -> AttestationResult:
    """The result of an accepted verdict under the policy file ``policy_bytes`` (None or
    b"": the default policy; ``policy`` its parsed form, parsed here when not given),
    issued at ``issued_at`` (default now), echoing the request's ``nonce`` (the challenge).
    A refused verdict has no result to certify (ResultError)."""
    if not verdict.accepted:
        raise ResultError("a refused verdict has no attestation result to certify")
    if registry().by_name(verdict.technology) is None:
        raise ResultError(f"technology {verdict.technology!r} is not registered")
    measurement_of(verdict)  # the measurement a tenant's policy checks must be there
    claims = ear.claims_set(
        verdict, issued_at=issued_at or dt.datetime.now(dt.UTC), nonce=nonce,
        policy=policy if policy is not None else Policy.from_bytes(policy_bytes),
        policy_bytes=policy_bytes)
    return AttestationResult(claims)

