"""CCA tokens made for tests, with keys generated here: every profile, both forms, every
algorithm; and the public vectors of tests/data/arm."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.arm.formats import cose, token
from tests import paths

DATA = paths.DATA / "arm"
NONCE = bytes(range(64))
IMPLEMENTATION_ID = bytes.fromhex("7f454c46" + "00" * 28)
INSTANCE_ID = b"\x01" + bytes(range(32))
CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}

# what the shared vector is documented to hold (tests/data/arm/PROVENANCE.md)
VECTOR = "cca_token_draft_ffm_00.cbor"
VECTOR_CHALLENGE = bytes.fromhex(
    "6e86d6d97cc713bc6dd43dbce491a6b40311c027a8bf85a39da63e9ce44c132a"
    "8a119d296fae6a6999e9bf3e4471b0ce01245d889424c31e89793b3b1d6b1504")


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


@dataclass
class Made:
    evidence: bytes
    cpak: ec.EllipticCurvePrivateKey
    rak: ec.EllipticCurvePrivateKey
    platform: token.PlatformClaims
    realm: token.RealmClaims


def component(name: str, value: bytes) -> token.SoftwareComponent:
    return token.SoftwareComponent(value=value, signer_id=hashlib.sha256(b"signer").digest(),
                                   type=name, version="1.0", hash_algo="sha-256")


def make(*, form: int = token.TAG_CMW, realm_profile: str | None = token.REALM_1_0,
         platform_profile: str | None = None, platform_alg: str = "ES384",
         realm_alg: str = "ES384", rak_hash: str = "sha-256", nonce: bytes = NONCE,
         lifecycle: int = 0x3000, cpak: ec.EllipticCurvePrivateKey | None = None,
         platform_changes: dict[str, Any] | None = None,
         realm_changes: dict[str, Any] | None = None) -> Made:
    """A signed token; ``*_changes`` replace claims before signing (the binding is computed
    from the RAK unless ``platform_changes`` sets the challenge)."""
    cpak = cpak or ec.generate_private_key(CURVES[platform_alg]())
    legacy = realm_profile is None
    rak = ec.generate_private_key(ec.SECP384R1() if legacy else CURVES[realm_alg]())
    rak_bytes = token.rak_claim(rak.public_key(), legacy=legacy)
    realm = token.RealmClaims(
        challenge=nonce, personalization_value=b"\x11" * 64,
        initial_measurement=b"\x22" * 32,
        extensible_measurements=(b"\x30" * 32, b"\x31" * 32, b"\x32" * 32, b"\x33" * 32),
        hash_algo="sha-256", public_key=rak_bytes, public_key_hash_algo=rak_hash,
        profile=realm_profile,
        instance_id=b"\x01" + b"\x44" * 32 if realm_profile == token.REALM_2_0 else None,
        mec_policy="shared" if realm_profile == token.REALM_2_0 else None)
    realm = dataclasses.replace(realm, **(realm_changes or {}))
    if platform_profile is None:
        platform_profile = {None: token.PLATFORM_LEGACY, token.REALM_1_0: token.PLATFORM_1_0,
                            token.REALM_2_0: token.PLATFORM_2_0}[realm_profile]
    platform = token.PlatformClaims(
        profile=platform_profile, challenge=token.binding(realm.public_key, rak_hash),
        implementation_id=IMPLEMENTATION_ID, instance_id=INSTANCE_ID, config=b"\xcf" * 4,
        lifecycle=lifecycle,
        software_components=(component("BL1", b"\x55" * 32), component("RMM", b"\x66" * 32)),
        hash_algo="sha-256", verification_service="https://verifier.example")
    platform = dataclasses.replace(platform, **(platform_changes or {}))
    realm_alg = "ES384" if legacy else realm_alg
    evidence = token.encode_collection(
        cose.sign1(cpak, platform_alg, token.encode_platform_claims(platform)),
        cose.sign1(rak, realm_alg, token.encode_realm_claims(realm)), form)
    return Made(evidence, cpak, rak, platform, realm)
