"""The SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI specification, versions 2, 3 and 5).

Formats only, no I/O. A report is 1184 (0x4A0) bytes, little-endian throughout:

    0x000 VERSION u32            0x004 GUEST_SVN u32        0x008 POLICY u64
    0x010 FAMILY_ID [16]         0x020 IMAGE_ID [16]        0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32     0x038 CURRENT_TCB u64      0x040 PLATFORM_INFO u64
    0x048 signer info u32 (bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY)
    0x04C reserved u32           0x050 REPORT_DATA [64]     0x090 MEASUREMENT [48]
    0x0C0 HOST_DATA [32]         0x0E0 ID_KEY_DIGEST [48]   0x110 AUTHOR_KEY_DIGEST [48]
    0x140 REPORT_ID [32]         0x160 REPORT_ID_MA [32]    0x180 REPORTED_TCB u64
    0x188 CPUID_FAM_ID u8, 0x189 CPUID_MOD_ID u8, 0x18A CPUID_STEP u8 (version 3 on;
          reserved in version 2)      0x18B..0x19F reserved
    0x1A0 CHIP_ID [64]           0x1E0 COMMITTED_TCB u64
    0x1E8 CURRENT_BUILD, _MINOR, _MAJOR u8, reserved u8
    0x1EC COMMITTED_BUILD, _MINOR, _MAJOR u8, reserved u8
    0x1F0 LAUNCH_TCB u64
    0x1F8 LAUNCH_MIT_VECTOR u64, 0x200 CURRENT_MIT_VECTOR u64 (version 5; reserved before)
    0x208..0x29F reserved
    0x2A0 SIGNATURE [512]: for ECDSA P-384 with SHA-384 (algorithm 1), R then S, each a
          72-byte little-endian integer zero-padded past its 48 bytes; the rest reserved.

The signature covers bytes 0x000-0x29F. Reserved bytes and bits must be zero; ``parse``
rejects anything else with :class:`EvidenceError`, so ``pack(parse(b)) == b``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from attestcall.errors import EvidenceError

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SIGNATURE_SIZE = REPORT_SIZE - SIGNED_SIZE
ECDSA_COMPONENT_SIZE = 72
P384_SIZE = 48

SIG_ECDSA_P384_SHA384 = 1

SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1
SIGNING_KEY_NONE = 7

POLICY_SMT_BIT = 16
POLICY_RESERVED_ONE_BIT = 17
POLICY_MIGRATE_MA_BIT = 18
POLICY_DEBUG_BIT = 19
POLICY_SINGLE_SOCKET_BIT = 20
POLICY_DEFINED_BITS = 26  # bits 25:0 defined (PAGE_SWAP_DISABLE at 25, ABI 1.58); 63:26 MBZ

PLATFORM_SMT_EN_BIT = 0

MILAN = "Milan"
GENOA = "Genoa"
TURIN = "Turin"
PRODUCTS = (MILAN, GENOA, TURIN)

# Layout up to the CPUID bytes, then from CHIP_ID to the end of the signed area.
_HEAD = struct.Struct("<IIQ16s16sIIQQII64s48s32s48s48s32s32sQBBB21s")
_TAIL = struct.Struct("<64sQBBBBBBBBQQQ152s")
assert _HEAD.size == 0x1A0 and _HEAD.size + _TAIL.size == SIGNED_SIZE

_NO_MA = b"\xff" * 32


@dataclass(frozen=True)
class TcbVersion:
    """One TCB_VERSION decoded for a product.

    Milan and Genoa: byte 0 BOOT_LOADER, 1 TEE, 2-5 reserved, 6 SNP, 7 MICROCODE.
    Turin: byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 4-6 reserved, 7 MICROCODE."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None
    raw: bytes

    def as_dict(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        out.update(bootloader=self.bootloader, tee=self.tee, snp=self.snp,
                   microcode=self.microcode, raw=self.raw.hex())
        return out

    def describe(self) -> str:
        fmc = f"fmc {self.fmc}, " if self.fmc is not None else ""
        return (f"{fmc}bootloader {self.bootloader}, tee {self.tee}, snp {self.snp}, "
                f"microcode {self.microcode}")


def decode_tcb(value: int, product: str) -> TcbVersion:
    """Decode a TCB_VERSION (the u64 as read from a report) with ``product``'s layout."""
    raw = value.to_bytes(8, "little")
    if product == TURIN:
        return TcbVersion(bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7],
                          fmc=raw[0], raw=raw)
    return TcbVersion(bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7], fmc=None,
                      raw=raw)


def product_from_cpuid(family: int, model: int) -> str | None:
    """The KDS product line for a CPUID family and model (version 3 reports on), or None."""
    if family == 0x19:
        if model <= 0x0F:
            return MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:  # Genoa, Bergamo/Siena
            return GENOA
        return None
    if family == 0x1A:
        return TURIN
    return None


@dataclass(frozen=True)
class Report:
    """A parsed ATTESTATION_REPORT. Byte fields are ``bytes``; TCBs are raw u64 values
    (decode them with :meth:`tcb` once the product is known)."""

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int
    cpuid_mod_id: int
    cpuid_step: int
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    launch_mit_vector: int
    current_mit_vector: int
    signature: bytes

    # -------------------------------------------------------------- interpretation

    @property
    def debug(self) -> bool:
        return bool(self.policy >> POLICY_DEBUG_BIT & 1)

    @property
    def migrate_ma_allowed(self) -> bool:
        return bool(self.policy >> POLICY_MIGRATE_MA_BIT & 1)

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.signer_info >> 1 & 1)

    @property
    def signing_key(self) -> int:
        return self.signer_info >> 2 & 7

    @property
    def smt_enabled(self) -> bool:
        return bool(self.platform_info >> PLATFORM_SMT_EN_BIT & 1)

    @property
    def migration_agent(self) -> bool:
        """True when the guest has a migration agent: REPORT_ID_MA is set to all ones by
        the firmware when there is none (all zeros is treated the same way)."""
        return self.report_id_ma not in (_NO_MA, bytes(32))

    def cpuid_product(self) -> str | None:
        """The product line from the CPUID fields (version 3 on), else None."""
        if self.version < 3:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    def tcb(self, name: str, product: str) -> TcbVersion:
        """Decode the TCB field ``name`` (current_tcb, reported_tcb, committed_tcb,
        launch_tcb) for ``product``."""
        if name not in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
            raise ValueError(f"not a TCB field: {name}")
        return decode_tcb(getattr(self, name), product)

    # -------------------------------------------------------------- signature

    def signed_bytes(self) -> bytes:
        """Bytes 0x000-0x29F, the part the signature covers."""
        return self.pack()[:SIGNED_SIZE]

    def signature_rs(self) -> tuple[int, int]:
        """R and S of an ECDSA P-384 signature (little-endian in the report)."""
        r = int.from_bytes(self.signature[:ECDSA_COMPONENT_SIZE], "little")
        s = int.from_bytes(self.signature[ECDSA_COMPONENT_SIZE:2 * ECDSA_COMPONENT_SIZE],
                           "little")
        return r, s

    def signature_der(self) -> bytes:
        """The signature as the DER ECDSA-Sig-Value ``cryptography`` verifies."""
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        return encode_dss_signature(*self.signature_rs())

    # -------------------------------------------------------------- encoding

    def pack(self) -> bytes:
        head = _HEAD.pack(
            self.version, self.guest_svn, self.policy, self.family_id, self.image_id,
            self.vmpl, self.signature_algo, self.current_tcb, self.platform_info,
            self.signer_info, 0, self.report_data, self.measurement, self.host_data,
            self.id_key_digest, self.author_key_digest, self.report_id, self.report_id_ma,
            self.reported_tcb, self.cpuid_fam_id, self.cpuid_mod_id, self.cpuid_step,
            bytes(21),
        )
        tail = _TAIL.pack(
            self.chip_id, self.committed_tcb, self.current_build, self.current_minor,
            self.current_major, 0, self.committed_build, self.committed_minor,
            self.committed_major, 0, self.launch_tcb, self.launch_mit_vector,
            self.current_mit_vector, bytes(152),
        )
        if len(self.signature) != SIGNATURE_SIZE:
            raise ValueError(f"signature field must be {SIGNATURE_SIZE} bytes")
        return head + tail + self.signature


def _mbz(data: bytes, start: int, end: int, what: str) -> None:
    if any(data[start:end]):
        raise EvidenceError(f"SNP report: reserved bytes {start:#x}-{end - 1:#x} ({what}) "
                            "are not zero")


def parse(data: bytes) -> Report:
    """Parse exactly one 1184-byte report; every reserved field must be zero."""
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise EvidenceError(f"SNP report is {len(data)} bytes, must be exactly {REPORT_SIZE}")
    head = _HEAD.unpack_from(data, 0)
    tail = _TAIL.unpack_from(data, _HEAD.size)
    (version, guest_svn, policy, family_id, image_id, vmpl, signature_algo, current_tcb,
     platform_info, signer_info, reserved0, report_data, measurement, host_data,
     id_key_digest, author_key_digest, report_id, report_id_ma, reported_tcb, fam, mod,
     step, _reserved1) = head
    (chip_id, committed_tcb, current_build, current_minor, current_major, reserved2,
     committed_build, committed_minor, committed_major, reserved3, launch_tcb,
     launch_mit, current_mit, _reserved4) = tail

    if not policy >> POLICY_RESERVED_ONE_BIT & 1:
        raise EvidenceError("SNP report: guest policy bit 17 is reserved and must be one")
    if policy >> POLICY_DEFINED_BITS:
        raise EvidenceError(f"SNP report: guest policy {policy:#x} sets reserved bits 63:26")
    if signer_info >> 5:
        raise EvidenceError(f"SNP report: signer info {signer_info:#x} sets reserved bits 31:5")
    if 2 <= signer_info >> 2 & 7 <= 6:
        raise EvidenceError(f"SNP report: SIGNING_KEY {signer_info >> 2 & 7} is reserved")
    if reserved0:
        raise EvidenceError("SNP report: reserved bytes 0x4c-0x4f are not zero")
    if version < 3:
        _mbz(data, 0x188, 0x1A0, "CPUID fields before version 3")
    else:
        _mbz(data, 0x18B, 0x1A0, "after CPUID_STEP")
    if reserved2 or reserved3:
        _mbz(data, 0x1EB, 0x1EC, "after CURRENT_MAJOR")
        _mbz(data, 0x1EF, 0x1F0, "after COMMITTED_MAJOR")
    if version < 4:
        _mbz(data, 0x1F8, SIGNED_SIZE, "mitigation vectors before version 5")
    else:
        _mbz(data, 0x208, SIGNED_SIZE, "after CURRENT_MIT_VECTOR")
    signature = data[SIGNED_SIZE:]
    if signature_algo == SIG_ECDSA_P384_SHA384:
        for start in (P384_SIZE, ECDSA_COMPONENT_SIZE + P384_SIZE):
            _mbz(data, SIGNED_SIZE + start, SIGNED_SIZE + start + 24,
                 "ECDSA P-384 component padding")
        _mbz(data, SIGNED_SIZE + 2 * ECDSA_COMPONENT_SIZE, REPORT_SIZE, "after ECDSA S")

    return Report(
        version=version, guest_svn=guest_svn, policy=policy, family_id=family_id,
        image_id=image_id, vmpl=vmpl, signature_algo=signature_algo, current_tcb=current_tcb,
        platform_info=platform_info, signer_info=signer_info, report_data=report_data,
        measurement=measurement, host_data=host_data, id_key_digest=id_key_digest,
        author_key_digest=author_key_digest, report_id=report_id, report_id_ma=report_id_ma,
        reported_tcb=reported_tcb, cpuid_fam_id=fam, cpuid_mod_id=mod, cpuid_step=step,
        chip_id=chip_id, committed_tcb=committed_tcb, current_build=current_build,
        current_minor=current_minor, current_major=current_major,
        committed_build=committed_build, committed_minor=committed_minor,
        committed_major=committed_major, launch_tcb=launch_tcb, launch_mit_vector=launch_mit,
        current_mit_vector=current_mit, signature=signature,
    )
