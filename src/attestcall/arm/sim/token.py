"""The simulated CCA attestation token: what the realm's measurements are, and the two
signed tokens the RMM returns.

- :class:`RealmIdentity`: the realm's hash algorithm, RIM, REMs and personalization value.
  The RIM is the hash, with the realm's hash algorithm (SHA-256 by default, or SHA-512), of
  the payload's bytes. (A real RMM extends the RIM over every granule the host populates
  the realm with, with the RMM specification's measurement descriptors; the simulator
  measures the payload as one.) REMs default to zero, as a realm's start with; the
  personalization value to 64 zero bytes.
- :func:`platform_token`: the HES's CCA platform token, signed with the CPAK (ES384), its
  challenge the SHA-256 of the RAK claim's exact bytes (the binding).
- :func:`realm_token`: the RMM's realm token for a 64-byte challenge, signed with the RAK
  (ES384).
- :func:`attestation_token`: both as the collection (tag 907 by default, 399 legacy).

Forms: 907 is the RMM 1.0 token (platform profile ``tag:arm.com,2023:cca_platform#1.0.0``,
realm profile ``tag:arm.com,2023:realm#1.0.0``, the RAK a COSE_Key); 399 is the one TF-RMM
emitted up to v0.8 (platform profile ``http://arm.com/CCA-SSD/1.0.0``, no realm profile,
the RAK a raw P-384 point). The encoding is the formats package's (deterministic CBOR), so
a token's size does not depend on the challenge: the keep's size query relies on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.arm.formats import cose
from attestcall.arm.formats import token as fmt
from attestcall.arm.sim.state import CcaState

HASH_ALGOS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
DEFAULT_HASH_ALGO = "sha-256"
RAK_HASH_ALGO = "sha-256"
PERSONALIZATION_SIZE = 64
FORMS = (fmt.TAG_CMW, fmt.TAG_LEGACY)
LIFECYCLE_DEBUG = 0x5000  # recoverable-cca-platform-debug: what --debug boots the platform in


def measure_payload(payload: bytes, hash_algo: str = DEFAULT_HASH_ALGO) -> bytes:
    """The simulated RIM of a realm running ``payload``."""
    return HASH_ALGOS[hash_algo](payload).digest()


@dataclass(frozen=True)
class RealmIdentity:
    """What the realm token says about the realm, besides its challenge."""

    hash_algo: str
    rim: bytes
    rems: tuple[bytes, bytes, bytes, bytes]
    personalization_value: bytes

    def __post_init__(self) -> None:
        if self.hash_algo not in HASH_ALGOS:
            raise ValueError(f"the realm hash algorithm is one of {', '.join(HASH_ALGOS)}")
        size = HASH_ALGOS[self.hash_algo]().digest_size
        if len(self.rim) != size or len(self.rems) != 4 or \
                any(len(rem) != size for rem in self.rems):
            raise ValueError(f"with {self.hash_algo} the RIM and the four REMs are "
                             f"{size} bytes each")
        if len(self.personalization_value) != PERSONALIZATION_SIZE:
            raise ValueError("the personalization value is 64 bytes")

    @classmethod
    def for_payload(cls, payload: bytes, hash_algo: str = DEFAULT_HASH_ALGO,
                    rems: Sequence[bytes | None] = (None,) * 4,
                    personalization_value: bytes | None = None) -> RealmIdentity:
        size = HASH_ALGOS[hash_algo]().digest_size
        return cls(hash_algo, measure_payload(payload, hash_algo),
                   tuple(bytes(size) if rem is None else rem for rem in rems),  # type: ignore[arg-type]
                   personalization_value or bytes(PERSONALIZATION_SIZE))


def rak_claim(rak: ec.EllipticCurvePrivateKey, form: int) -> bytes:
    """The realm token's RAK claim: a COSE_Key (907), a raw point (399)."""
    return fmt.rak_claim(rak.public_key(), legacy=form == fmt.TAG_LEGACY)


def platform_token(state: CcaState, rak: bytes, form: int = fmt.TAG_CMW,
                   lifecycle: int | None = None) -> bytes:
    """The HES's platform token binding the RAK claim ``rak`` (a tagged COSE_Sign1)."""
    claims = fmt.PlatformClaims(
        profile=fmt.PLATFORM_LEGACY if form == fmt.TAG_LEGACY else fmt.PLATFORM_1_0,
        challenge=fmt.binding(rak, RAK_HASH_ALGO),
        implementation_id=state.implementation_id,
        instance_id=state.instance_id,
        config=state.config,
        lifecycle=state.lifecycle if lifecycle is None else lifecycle,
        software_components=tuple(
            fmt.SoftwareComponent(value=c.measurement, signer_id=c.signer_id, type=c.type,
                                  version=c.version, hash_algo=c.hash_algo)
            for c in state.components),
        hash_algo=state.hash_algo,
        verification_service=state.verification_service,
    )
    return cose.sign1(state.cpak, cose.ES384, fmt.encode_platform_claims(claims))


def realm_token(rak_key: ec.EllipticCurvePrivateKey, rak: bytes, identity: RealmIdentity,
                challenge: bytes, form: int = fmt.TAG_CMW) -> bytes:
    """The RMM's realm token for ``challenge`` (a tagged COSE_Sign1)."""
    if len(challenge) != fmt.CHALLENGE_SIZE:
        raise ValueError("the realm challenge is 64 bytes")
    claims = fmt.RealmClaims(
        challenge=bytes(challenge),
        personalization_value=identity.personalization_value,
        initial_measurement=identity.rim,
        extensible_measurements=identity.rems,
        hash_algo=identity.hash_algo,
        public_key=rak,
        public_key_hash_algo=RAK_HASH_ALGO,
        profile=None if form == fmt.TAG_LEGACY else fmt.REALM_1_0,
    )
    return cose.sign1(rak_key, cose.ES384, fmt.encode_realm_claims(claims))


def attestation_token(platform: bytes, realm: bytes, form: int = fmt.TAG_CMW) -> bytes:
    """The token the RMM hands the realm: both tokens in the collection of ``form``."""
    return fmt.encode_collection(platform, realm, form)
