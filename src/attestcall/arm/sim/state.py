"""The simulated Arm CCA platform on disk, under ``sim_home()/cca``.

::

    cca/
      state.json        the manifest (platform "cca")
      cpak.key.pem      the CCA platform attestation key (HES), ECDSA P-384, mode 0600
      cpak.pub.pem      its public key: what ``--trust-simulated`` trusts
      rak.key.pem       the RMM's realm attestation key, ECDSA P-384, mode 0600
      platform.json     implementation id, instance id, config, lifecycle, software
                        components, verification service, hash algorithm

The instance id is 0x01 followed by the SHA-256 of the CPAK's public key as an uncompressed
point (0x04 || X || Y), as Arm's reference firmware (TF-M's initial attestation) computes
it; the implementation id is 32 random bytes. Every label says SIMULATED.

:func:`trust_anchors_json` is the simulated platform's trust-anchor store in
veraison/rust-ccatoken's format: a list of ``{"pkey": JWK, "implementation-id": hex,
"instance-id": hex}`` (``attestcall sim collateral --tee cca-sim``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall import simstate
from attestcall.errors import AttestcallError

PLATFORM = "cca"
CPAK_KEY = "cpak.key.pem"
CPAK_PUBLIC = "cpak.pub.pem"
RAK_KEY = "rak.key.pem"
PLATFORM_JSON = "platform.json"
_FILES = (CPAK_KEY, CPAK_PUBLIC, RAK_KEY, PLATFORM_JSON)

LIFECYCLE_SECURED = 0x3000  # cca-platform-lifecycle "secured" (0x3000..0x30ff)
PLATFORM_HASH_ALGO = "sha-256"
VERIFICATION_SERVICE = "https://SIMULATED.attestcall.invalid/cca/verification"
CONFIG = b"SIMULATED-CCA-CFG"
# The boot chain of an Arm reference CCA platform (RSE, then the application processor's
# firmware up to the RMM), as the platform token lists it.
COMPONENTS = ("RSE_BL1_2", "RSE_BL2", "RSE_S", "AP_BL1", "AP_BL2", "SCP_BL1", "AP_BL31",
              "RMM", "HW_CONFIG", "FW_CONFIG", "TB_FW_CONFIG", "SOC_FW_CONFIG")


@dataclass(frozen=True)
class SoftwareComponent:
    """One ``cca-platform-sw-components`` entry."""

    type: str
    measurement: bytes
    version: str
    signer_id: bytes
    hash_algo: str = PLATFORM_HASH_ALGO

    def to_record(self) -> dict[str, str]:
        return {"type": self.type, "measurement": self.measurement.hex(),
                "version": self.version, "signer_id": self.signer_id.hex(),
                "hash_algo": self.hash_algo}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SoftwareComponent:
        return cls(record["type"], bytes.fromhex(record["measurement"]), record["version"],
                   bytes.fromhex(record["signer_id"]), record["hash_algo"])


@dataclass(frozen=True, eq=False)
class CcaState:
    """The loaded simulated CCA platform."""

    folder: Path
    cpak: ec.EllipticCurvePrivateKey
    rak: ec.EllipticCurvePrivateKey
    implementation_id: bytes
    instance_id: bytes
    config: bytes
    lifecycle: int
    components: tuple[SoftwareComponent, ...]
    verification_service: str
    hash_algo: str


def instance_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """0x01 || SHA-256 of the uncompressed point: the instance id Arm's firmware derives."""
    point = public_key.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint)
    return b"\x01" + hashlib.sha256(point).digest()


def load_state(home: Path | str | None = None) -> CcaState:
    """The CCA state under ``home`` (default ``sim_home()``), created on first use; loaded
    once per process while its files do not change."""
    return simstate.load_state(PLATFORM, create_state, read_state, home)


def _p384(folder: Path, name: str, data: bytes) -> ec.EllipticCurvePrivateKey:
    key = simstate.load_private_key(folder, name, data)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise simstate.corrupt(folder, f"{name} is not an ECDSA P-384 key")
    return key


def read_state(folder: Path) -> CcaState:
    """Load and check the CCA state in ``folder`` (no cache)."""
    files = simstate.check_manifest(folder, PLATFORM, _FILES)
    try:
        cpak = _p384(folder, CPAK_KEY, files[CPAK_KEY])
        rak = _p384(folder, RAK_KEY, files[RAK_KEY])
        published = serialization.load_pem_public_key(files[CPAK_PUBLIC])
        if published != cpak.public_key():
            raise simstate.corrupt(folder, f"{CPAK_PUBLIC} is not the CPAK's public key")
        info = json.loads(files[PLATFORM_JSON])
        state = CcaState(
            folder, cpak, rak,
            implementation_id=bytes.fromhex(info["implementation_id"]),
            instance_id=bytes.fromhex(info["instance_id"]),
            config=bytes.fromhex(info["config"]),
            lifecycle=int(info["lifecycle"]),
            components=tuple(SoftwareComponent.from_record(c) for c in info["components"]),
            verification_service=str(info["verification_service"]),
            hash_algo=str(info["hash_algo"]),
        )
    except simstate.SimStateError:
        raise
    except (KeyError, TypeError, ValueError, AttestcallError) as exc:
        raise simstate.corrupt(folder, f"{type(exc).__name__}: {exc}") from exc
    if len(state.implementation_id) != 32:
        raise simstate.corrupt(folder, "the implementation id is not 32 bytes")
    if state.instance_id != instance_id(cpak.public_key()):
        raise simstate.corrupt(folder, "the instance id is not the CPAK's")
    return state


def create_state(folder: Path) -> None:
    """Generate a fresh simulated CCA platform into the (private, empty) ``folder``."""
    cpak = ec.generate_private_key(ec.SECP384R1())
    rak = ec.generate_private_key(ec.SECP384R1())
    signer = os.urandom(32)
    components = [SoftwareComponent(name, os.urandom(32), f"1.{i}.0", signer)
                  for i, name in enumerate(COMPONENTS)]
    info = {
        "comment": "SIMULATED Arm CCA platform (attestcall); not a real machine",
        "implementation_id": os.urandom(32).hex(),
        "instance_id": instance_id(cpak.public_key()).hex(),
        "config": CONFIG.hex(),
        "lifecycle": LIFECYCLE_SECURED,
        "components": [c.to_record() for c in components],
        "verification_service": VERIFICATION_SERVICE,
        "hash_algo": PLATFORM_HASH_ALGO,
    }
    public = cpak.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    simstate.write_private_key(folder / CPAK_KEY, cpak)
    simstate.write_public(folder / CPAK_PUBLIC, public)
    simstate.write_private_key(folder / RAK_KEY, rak)
    simstate.write_public(folder / PLATFORM_JSON,
                          json.dumps(info, indent=2).encode() + b"\n")
    simstate.write_manifest(folder, PLATFORM, _FILES)


def describe_state(folder: Path) -> str:
    """Human-readable account of the CCA state in ``folder``."""
    state = read_state(folder)
    lines = [
        f"Arm CCA (simulated): {folder}",
        f"  platform (HES): CPAK ECDSA P-384, public key {folder / CPAK_PUBLIC}",
        f"    implementation id {state.implementation_id.hex()}",
        f"    instance id {state.instance_id.hex()}",
        f"    lifecycle {state.lifecycle:#06x}, {len(state.components)} software components "
        f"({', '.join(c.type for c in state.components)})",
        "  RMM: RAK ECDSA P-384",
    ]
    return "\n".join(lines)


def _b64url(value: int) -> str:
    raw = value.to_bytes(48, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """An EC P-384 public key as a JWK (RFC 7518)."""
    numbers = public_key.public_numbers()
    return {"kty": "EC", "crv": "P-384", "x": _b64url(numbers.x), "y": _b64url(numbers.y)}


def trust_anchors(state: CcaState) -> list[dict[str, Any]]:
    """The simulated platform's trust-anchor store (rust-ccatoken's format)."""
    return [{"pkey": jwk(state.cpak.public_key()),
             "implementation-id": state.implementation_id.hex(),
             "instance-id": state.instance_id.hex()}]


def trust_anchors_json(evidence: bytes = b"") -> str:
    """``simulated_collateral``: the store as JSON text (the evidence is not needed: the
    simulator has one platform)."""
    del evidence
    return json.dumps(trust_anchors(load_state()), indent=2) + "\n"
