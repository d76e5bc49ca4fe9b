"""What the simulated firmware records about a guest at launch: its policy, measurement,
host data and ID-block fields, and the report id it assigns.

MEASUREMENT is the launch digest. The simulation does not model page-by-page
SNP_LAUNCH_UPDATE: it takes SHA-384 over a fixed label and the payload's bytes, so two
payloads get two measurements and a tenant can recompute it with :func:`measure_payload`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from attestcall.amd.formats import report as snp

MEASUREMENT_LABEL = b"attestcall snp-sim launch digest v1\0"
NO_MIGRATION_AGENT = b"\xff" * 32


def measure_payload(payload: bytes) -> bytes:
    """The simulated launch digest (48 bytes) of ``payload``."""
    return hashlib.sha384(MEASUREMENT_LABEL + bytes(payload)).digest()


@dataclass(frozen=True)
class GuestPolicy:
    """The guest policy (SNP_LAUNCH_START). Bit 17 is reserved and always one."""

    abi_major: int = 0  # the oldest firmware ABI the guest accepts
    abi_minor: int = 0
    smt: bool = True
    migrate_ma: bool = False
    debug: bool = False
    single_socket: bool = False

    def encode(self) -> int:
        if not (0 <= self.abi_major <= 255 and 0 <= self.abi_minor <= 255):
            raise ValueError("policy ABI version components must be 0..255")
        return (self.abi_minor | self.abi_major << 8
                | int(self.smt) << snp.POLICY_SMT_BIT
                | 1 << snp.POLICY_RESERVED_ONE_BIT
                | int(self.migrate_ma) << snp.POLICY_MIGRATE_MA_BIT
                | int(self.debug) << snp.POLICY_DEBUG_BIT
                | int(self.single_socket) << snp.POLICY_SINGLE_SOCKET_BIT)


@dataclass(frozen=True)
class GuestLaunch:
    """One launched guest, as the firmware remembers it."""

    measurement: bytes
    policy: GuestPolicy = GuestPolicy()
    host_data: bytes = bytes(32)
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    guest_svn: int = 0
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = field(default_factory=lambda: os.urandom(32))
    report_id_ma: bytes = NO_MIGRATION_AGENT

    def __post_init__(self) -> None:
        sizes = {"measurement": 48, "host_data": 32, "family_id": 16, "image_id": 16,
                 "id_key_digest": 48, "author_key_digest": 48, "report_id": 32,
                 "report_id_ma": 32}
        for name, size in sizes.items():
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{name} must be {size} bytes")
        if not 0 <= self.guest_svn < 2**32:
            raise ValueError("guest_svn must be a u32")

    @classmethod
    def for_payload(cls, payload: bytes, **fields: object) -> GuestLaunch:
        return cls(measurement=measure_payload(payload), **fields)  # type: ignore[arg-type]
