"""The CCA attestation token: the collection, the platform token and the realm token.

Facts from Arm's RMM specification (DEN0137, "Realm attestation") and
draft-ffm-rats-cca-token; no I/O. The token the RMM returns is one of two collections:

- tag 399 (TF-RMM up to v0.8): ``399({44234: platform, 44241: realm})``, each value a
  tagged COSE_Sign1's bytes;
- tag 907, a CMW collection (newer RMMs): ``907({44234: [263, platform], 44241:
  [263, realm]})``, each entry a CBOR-record CMW whose type 263 is the CoAP content
  format of an EAT in a CWT.

Platform claims (the CCA platform token, signed by the platform key CPAK): profile (265),
challenge (10: the hash of the realm's public key, the binding), implementation id
(2396), instance id (256), config (2401), lifecycle (2395), software components (2399,
each ``{1: type, 2: value, 4: version, 5: signer id, 6: hash algorithm}``), verification
service (2400), hash algorithm (2402), client id (2394, platform 2.0).

Realm claims (the realm token, signed by the realm attestation key RAK): challenge (10,
64 bytes), profile (265; absent in the legacy form), instance id (256, realm 2.0 in the
RMM specification; draft-ffm-rats-cca-token-03 has none),
personalization value (44235), initial measurement (44238), four extensible measurements
(44239), hash algorithm (44236), the RAK (44237: a raw P-384 point in the legacy form, a
COSE_Key's bytes otherwise), the RAK's hash algorithm (44240), MEC policy (44243, realm
2.0), LFA policy (44244) and devices token hash (44257).

Decoding is strict: a missing mandatory claim, a wrong type or length, bytes after a data
item or an unknown top-level tag is an :class:`attestcall.errors.EvidenceError`. Claims
not named here are ignored, as EAT asks. Encoding (for the simulator) writes the same
structures deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.arm.formats import cose
from attestcall.errors import EvidenceError

TAG_LEGACY = 399
TAG_CMW = 907
FORMS = (TAG_CMW, TAG_LEGACY)
PLATFORM_LABEL = 44234  # 0xACCA
REALM_LABEL = 44241  # 0xACD1
CMW_TYPE = 263  # CoAP content format: application/eat+cwt
_PREFIXES = (b"\xd9\x01\x8f", b"\xd9\x03\x8b")  # the tag heads of 399 and 907

# ------------------------------------------------------------------ claim labels

PROFILE = 265
CHALLENGE = 10
INSTANCE_ID = 256
# platform
IMPLEMENTATION_ID = 2396
CONFIG = 2401
LIFECYCLE = 2395
SOFTWARE_COMPONENTS = 2399
VERIFICATION_SERVICE = 2400
PLATFORM_HASH_ALGO = 2402
CLIENT_ID = 2394  # platform 2.0
# software component
SWC_TYPE, SWC_VALUE, SWC_VERSION, SWC_SIGNER_ID, SWC_HASH_ALGO = 1, 2, 4, 5, 6
# realm
PERSONALIZATION_VALUE = 44235
REALM_HASH_ALGO = 44236
RAK = 44237
RIM = 44238
REMS = 44239
RAK_HASH_ALGO = 44240
MEC_POLICY = 44243
LFA_POLICY = 44244
DEVICES_TOKEN_HASH = 44257

# ---------------------------------------------------------------------- profiles

PLATFORM_LEGACY = "http://arm.com/CCA-SSD/1.0.0"
PLATFORM_1_0 = "tag:arm.com,2023:cca_platform#1.0.0"
PLATFORM_2_0 = "tag:arm.com,2024:cca_platform#2.0.0"
PLATFORM_PROFILES = (PLATFORM_LEGACY, PLATFORM_1_0, PLATFORM_2_0)
REALM_1_0 = "tag:arm.com,2023:realm#1.0.0"
REALM_2_0 = "tag:arm.com,2024:realm#2.0.0"
REALM_PROFILES = (REALM_1_0, REALM_2_0)

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha-256": hashes.SHA256, "sha-384": hashes.SHA384, "sha-512": hashes.SHA512}
HASH_SIZES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
MEASUREMENT_SIZES = (32, 48, 64)
CHALLENGE_SIZE = 64
IMPLEMENTATION_ID_SIZE = 32
UEID_SIZE = 33  # type byte 0x01 (RAND) and 32 random bytes
RAW_RAK_SIZE = 97  # 0x04 || x || y on P-384
MEC_POLICIES = {0: "shared", 1: "private"}

# the lifecycle claim's ranges (PSA / CCA security lifecycle: the high byte names it)
LIFECYCLE_STATES = {
    0x00: "unknown",
    0x10: "assembly-and-test",
    0x20: "cca-platform-rot-provisioning",
    0x30: "secured",
    0x40: "non-cca-platform-debug",
    0x50: "recoverable-cca-platform-debug",
    0x60: "decommissioned",
}
SECURED = "secured"
DEBUG_STATES = ("non-cca-platform-debug", "recoverable-cca-platform-debug")


def lifecycle_state(value: int) -> str:
    """The name of a lifecycle claim's state (``"secured"`` for 0x3000..0x30ff);
    ``"invalid"`` outside the defined ranges."""
    return LIFECYCLE_STATES.get(value >> 8, "invalid") if 0 <= value <= 0xFFFF else "invalid"


# ------------------------------------------------------------------- collection


@dataclass(frozen=True)
class Collection:
    """The top level: its ``form`` (907 or 399) and both tokens' COSE_Sign1 bytes."""

    form: int
    platform: bytes
    realm: bytes


def recognise(data: bytes) -> bool:
    """Whether ``data`` starts like a CCA token (tag 399 or 907)."""
    return bytes(data[:3]) in _PREFIXES


def decode_collection(data: bytes) -> Collection:
    value = cose.loads(data, "CCA token")
    if not isinstance(value, cbor2.CBORTag) or value.tag not in FORMS:
        found = f"tag {value.tag}" if isinstance(value, cbor2.CBORTag) else "no tag"
        raise EvidenceError(f"a CCA token is tagged {TAG_CMW} (a CMW collection) or "
                            f"{TAG_LEGACY} (the legacy collection); this one has {found}")
    body = value.value
    if not isinstance(body, Mapping):
        raise EvidenceError(f"the CCA token's collection (tag {value.tag}) is not a map")
    unknown = [k for k in body if k not in (PLATFORM_LABEL, REALM_LABEL)]
    if unknown:
        raise EvidenceError(f"the CCA token's collection has unknown entries {unknown!r} "
                            f"(only {PLATFORM_LABEL} and {REALM_LABEL})")
    tokens = []
    for label, name in ((PLATFORM_LABEL, "platform"), (REALM_LABEL, "realm")):
        if label not in body:
            raise EvidenceError(f"the CCA token has no {name} token ({label})")
        entry = body[label]
        if value.tag == TAG_CMW:
            if not isinstance(entry, cose.ARRAY) or len(entry) != 2:
                raise EvidenceError(f"the CCA token's {name} entry is not a CMW record "
                                    f"[{CMW_TYPE}, token]")
            kind, entry = entry
            if kind != CMW_TYPE or type(kind) is not int:
                raise EvidenceError(f"the CCA token's {name} entry has CMW type {kind!r}, "
                                    f"not {CMW_TYPE}")
        if not isinstance(entry, bytes):
            raise EvidenceError(f"the CCA token's {name} token is not a byte string")
        tokens.append(entry)
    return Collection(value.tag, tokens[0], tokens[1])


def encode_collection(platform: bytes, realm: bytes, form: int = TAG_CMW) -> bytes:
    """Both COSE_Sign1 tokens as a collection of ``form`` 907 (CMW) or 399 (legacy)."""
    if form == TAG_CMW:
        body: dict[int, Any] = {PLATFORM_LABEL: [CMW_TYPE, platform],
                                REALM_LABEL: [CMW_TYPE, realm]}
    elif form == TAG_LEGACY:
        body = {PLATFORM_LABEL: platform, REALM_LABEL: realm}
    else:
        raise ValueError(f"a CCA token's form is {TAG_CMW} or {TAG_LEGACY}, not {form!r}")
    return cose.dumps(cbor2.CBORTag(form, body))


# ------------------------------------------------------------------- claim types


class _Claims:
    """Typed access to one claims map, every failure an EvidenceError naming the claim."""

    def __init__(self, data: bytes, what: str):
        value = cose.loads(data, f"{what}'s claims")
        if not isinstance(value, Mapping):
            raise EvidenceError(f"the {what}'s claims are not a map")
        self.map, self.what = value, what

    def has(self, label: int) -> bool:
        return label in self.map

    def get(self, label: int, name: str) -> Any:
        if label not in self.map:
            raise EvidenceError(f"the {self.what} has no {name} claim ({label})")
        return self.map[label]

    def _name(self, label: int, name: str) -> str:
        return f"{self.what}'s {name} ({label})"

    def bstr(self, label: int, name: str, sizes: Sequence[int] | None = None) -> bytes:
        return _bytes(self.get(label, name), self._name(label, name), sizes)

    def optional_bytes(self, label: int, name: str,
                       sizes: Sequence[int] | None = None) -> bytes | None:
        return self.bstr(label, name, sizes) if label in self.map else None

    def text(self, label: int, name: str, choices: Sequence[str] | None = None) -> str:
        return _text(self.get(label, name), self._name(label, name), choices)

    def optional_text(self, label: int, name: str,
                      choices: Sequence[str] | None = None) -> str | None:
        return self.text(label, name, choices) if label in self.map else None

    def uint(self, label: int, name: str, maximum: int) -> int:
        value = self.get(label, name)
        if type(value) is not int or not 0 <= value <= maximum:
            raise EvidenceError(f"the {self._name(label, name)} is not an integer from 0 "
                                f"to {maximum}")
        return value

    def array(self, label: int, name: str) -> Sequence[Any]:
        value = self.get(label, name)
        if not isinstance(value, cose.ARRAY):
            raise EvidenceError(f"the {self._name(label, name)} is not an array")
        return value


def _bytes(value: Any, what: str, sizes: Sequence[int] | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise EvidenceError(f"the {what} is not a byte string")
    if sizes is not None and len(value) not in sizes:
        wanted = " or ".join(map(str, sizes))
        raise EvidenceError(f"the {what} is {len(value)} bytes, not {wanted}")
    return value


def _text(value: Any, what: str, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str):
        raise EvidenceError(f"the {what} is not a text string")
    if choices is not None and value not in choices:
        raise EvidenceError(f"the {what} {value!r} is not one of {', '.join(choices)}")
    return value


def _ueid(value: bytes, what: str) -> bytes:
    if value[0] != 0x01:
        raise EvidenceError(f"the {what} is not a random UEID (its first byte is "
                            f"{value[0]:#04x}, not 0x01)")
    return value


# ------------------------------------------------------------------ platform token


@dataclass(frozen=True)
class SoftwareComponent:
    value: bytes  # the measurement value (2)
    signer_id: bytes  # (5)
    type: str | None = None  # (1)
    version: str | None = None  # (4)
    hash_algo: str | None = None  # (6)


@dataclass(frozen=True)
class PlatformClaims:
    profile: str
    challenge: bytes
    implementation_id: bytes
    instance_id: bytes
    config: bytes
    lifecycle: int
    software_components: tuple[SoftwareComponent, ...]
    hash_algo: str
    verification_service: str | None = None
    client_id: int | None = None  # platform 2.0 (draft-ffm-rats-cca-token-03)

    @property
    def lifecycle_state(self) -> str:
        return lifecycle_state(self.lifecycle)


def parse_platform_claims(payload: bytes) -> PlatformClaims:
    c = _Claims(payload, "platform token")
    profile = c.text(PROFILE, "profile", PLATFORM_PROFILES)
    components = tuple(_component(item, i) for i, item in enumerate(
        c.array(SOFTWARE_COMPONENTS, "software components")))
    if not components:
        raise EvidenceError("the platform token's software components (2399) are empty")
    return PlatformClaims(
        profile=profile,
        challenge=c.bstr(CHALLENGE, "challenge", MEASUREMENT_SIZES),
        implementation_id=c.bstr(IMPLEMENTATION_ID, "implementation id",
                                  (IMPLEMENTATION_ID_SIZE,)),
        instance_id=_ueid(c.bstr(INSTANCE_ID, "instance id", (UEID_SIZE,)),
                          "platform token's instance id (256)"),
        config=c.bstr(CONFIG, "config"),
        lifecycle=c.uint(LIFECYCLE, "lifecycle", 0xFFFF),
        software_components=components,
        hash_algo=c.text(PLATFORM_HASH_ALGO, "hash algorithm id"),
        verification_service=c.optional_text(VERIFICATION_SERVICE, "verification service"),
        client_id=(c.uint(CLIENT_ID, "client id", 0xFFFFFFFF) if c.has(CLIENT_ID)
                   else None),
    )


def _component(item: Any, index: int) -> SoftwareComponent:
    what = f"platform token's software component {index}"
    if not isinstance(item, Mapping):
        raise EvidenceError(f"the {what} is not a map")
    for label, name in ((SWC_VALUE, "measurement value"), (SWC_SIGNER_ID, "signer id")):
        if label not in item:
            raise EvidenceError(f"the {what} has no {name} ({label})")

    def optional_text(label: int, name: str) -> str | None:
        return _text(item[label], f"{what}'s {name} ({label})") if label in item else None

    return SoftwareComponent(
        value=_bytes(item[SWC_VALUE], f"{what}'s measurement value", MEASUREMENT_SIZES),
        signer_id=_bytes(item[SWC_SIGNER_ID], f"{what}'s signer id", MEASUREMENT_SIZES),
        type=optional_text(SWC_TYPE, "measurement type"),
        version=optional_text(SWC_VERSION, "version"),
        hash_algo=optional_text(SWC_HASH_ALGO, "hash algorithm id"),
    )


def encode_platform_claims(claims: PlatformClaims) -> bytes:
    """The platform token's payload (for the simulator)."""
    body: dict[int, Any] = {
        PROFILE: claims.profile, CHALLENGE: claims.challenge,
        IMPLEMENTATION_ID: claims.implementation_id, INSTANCE_ID: claims.instance_id,
        CONFIG: claims.config, LIFECYCLE: claims.lifecycle,
        SOFTWARE_COMPONENTS: [_encode_component(s) for s in claims.software_components],
        PLATFORM_HASH_ALGO: claims.hash_algo,
    }
    if claims.verification_service is not None:
        body[VERIFICATION_SERVICE] = claims.verification_service
    if claims.client_id is not None:
        body[CLIENT_ID] = claims.client_id
    return cose.dumps(body)


def _encode_component(component: SoftwareComponent) -> dict[int, Any]:
    out: dict[int, Any] = {SWC_VALUE: component.value, SWC_SIGNER_ID: component.signer_id}
    for label, value in ((SWC_TYPE, component.type), (SWC_VERSION, component.version),
                         (SWC_HASH_ALGO, component.hash_algo)):
        if value is not None:
            out[label] = value
    return out


# --------------------------------------------------------------------- realm token


@dataclass(frozen=True)
class RealmClaims:
    challenge: bytes
    personalization_value: bytes
    initial_measurement: bytes
    extensible_measurements: tuple[bytes, bytes, bytes, bytes]
    hash_algo: str
    public_key: bytes  # the RAK claim's exact bytes (what the binding hashes)
    public_key_hash_algo: str
    profile: str | None = None  # None: the legacy form
    instance_id: bytes | None = None  # realm 2.0
    mec_policy: str | None = None  # realm 2.0: "shared" or "private"
    lfa_policy: int | None = None
    devices_token_hash: bytes | None = None
    rak: ec.EllipticCurvePublicKey | None = field(default=None, compare=False, repr=False)

    @property
    def raw_rak(self) -> bool:
        """Whether the RAK claim is a raw P-384 point (the legacy form), not a COSE_Key."""
        return self.profile is None


def parse_realm_claims(payload: bytes) -> RealmClaims:
    c = _Claims(payload, "realm token")
    profile = c.optional_text(PROFILE, "profile", REALM_PROFILES)
    hash_algo = c.text(REALM_HASH_ALGO, "hash algorithm id")
    # sizes are not tied to the hash algorithm: TF-RMM tokens in the field carry 64-byte
    # measurements under "sha-256"
    size = MEASUREMENT_SIZES
    rems = c.array(REMS, "extensible measurements")
    if len(rems) != 4:
        raise EvidenceError(f"the realm token has {len(rems)} extensible measurements "
                            f"({REMS}), not 4")
    key = c.bstr(RAK, "public key")
    if profile is None:
        rak = cose.point_to_key(key, ec.SECP384R1(), f"realm token's public key ({RAK})")
    else:
        rak = cose.decode_cose_key(key, f"realm token's public key ({RAK})")
    instance_id = mec = lfa = None
    if profile == REALM_2_0:
        # the RMM specification 2.0 has the instance id; draft-ffm-rats-cca-token-03's
        # realm#2.0.0 does not: checked when present
        raw_id = c.optional_bytes(INSTANCE_ID, "instance id", (UEID_SIZE,))
        if raw_id is not None:
            instance_id = _ueid(raw_id, "realm token's instance id (256)")
        mec = _mec_policy(c.get(MEC_POLICY, "MEC policy"))
        lfa = c.uint(LFA_POLICY, "LFA policy", 1) if c.has(LFA_POLICY) else None
    devices = c.optional_bytes(DEVICES_TOKEN_HASH, "devices token hash", MEASUREMENT_SIZES)
    return RealmClaims(
        challenge=c.bstr(CHALLENGE, "challenge", (CHALLENGE_SIZE,)),
        personalization_value=c.bstr(PERSONALIZATION_VALUE,
                                      "personalization value", (64,)),
        initial_measurement=c.bstr(RIM, "initial measurement", size),
        extensible_measurements=tuple(
            _bytes(m, f"realm token's extensible measurement {i} ({REMS})", size)
            for i, m in enumerate(rems)),
        hash_algo=hash_algo,
        public_key=key,
        public_key_hash_algo=c.text(RAK_HASH_ALGO, "public key hash algorithm id",
                                    tuple(HASHES)),
        profile=profile,
        instance_id=instance_id,
        mec_policy=mec,
        lfa_policy=lfa,
        devices_token_hash=devices,
        rak=rak,
    )


def _mec_policy(value: Any) -> str:
    # the RMM specification encodes it as 0 / 1, draft-ffm-rats-cca-token as text
    if type(value) is int and value in MEC_POLICIES:
        return MEC_POLICIES[value]
    if isinstance(value, str) and value in MEC_POLICIES.values():
        return value
    raise EvidenceError(f"the realm token's MEC policy ({MEC_POLICY}) {value!r} is not "
                        "0 (shared) or 1 (private)")


def encode_realm_claims(claims: RealmClaims) -> bytes:
    """The realm token's payload (for the simulator); ``public_key`` as given."""
    body: dict[int, Any] = {
        CHALLENGE: claims.challenge, PERSONALIZATION_VALUE: claims.personalization_value,
        RIM: claims.initial_measurement, REMS: list(claims.extensible_measurements),
        REALM_HASH_ALGO: claims.hash_algo, RAK: claims.public_key,
        RAK_HASH_ALGO: claims.public_key_hash_algo,
    }
    optional = ((PROFILE, claims.profile), (INSTANCE_ID, claims.instance_id),
                (LFA_POLICY, claims.lfa_policy), (DEVICES_TOKEN_HASH, claims.devices_token_hash))
    for label, value in optional:
        if value is not None:
            body[label] = value
    if claims.mec_policy is not None:
        body[MEC_POLICY] = {v: k for k, v in MEC_POLICIES.items()}[claims.mec_policy]
    return cose.dumps(body)


def rak_claim(key: ec.EllipticCurvePublicKey, legacy: bool = False) -> bytes:
    """The RAK claim's bytes for ``key``: a raw point (legacy) or a COSE_Key."""
    return cose.raw_point(key) if legacy else cose.encode_cose_key(key)


def binding(rak: bytes, hash_algo: str) -> bytes:
    """The platform challenge that binds a realm token: the hash of the RAK claim's bytes."""
    digest = hashes.Hash(HASHES[hash_algo]())
    digest.update(rak)
    return digest.finalize()


# --------------------------------------------------------------------------- token


@dataclass(frozen=True)
class Token:
    """A decoded CCA token (nothing verified)."""

    form: int
    platform: cose.Sign1
    realm: cose.Sign1
    platform_claims: PlatformClaims
    realm_claims: RealmClaims
    platform_bytes: bytes
    realm_bytes: bytes


def decode(data: bytes) -> Token:
    """Decode a CCA token, strictly (module documentation)."""
    collection = decode_collection(data)
    platform = cose.decode_sign1(collection.platform, "platform token")
    realm = cose.decode_sign1(collection.realm, "realm token")
    return Token(collection.form, platform, realm, parse_platform_claims(platform.payload),
                 parse_realm_claims(realm.payload), collection.platform, collection.realm)


def realm_challenge(data: bytes) -> bytes:
    """The realm token's challenge: the 64 bytes the nonce went into."""
    collection = decode_collection(data)
    realm = cose.decode_sign1(collection.realm, "realm token")
    return parse_realm_claims(realm.payload).challenge
