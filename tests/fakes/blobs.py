"""Realistically shaped evidence for the kernel-interface fakes: an SNP report carrying the
nonce in REPORT_DATA, a GHCB certificate table, a TDX quote v4 and an SGX DCAP quote v3
carrying it in REPORTDATA, a CCA token carrying it as the realm challenge. Unsigned (the
CCA token: signed by keys made for the fake, which nothing trusts): the fakes stand in for
the interfaces, not the vendors."""

from __future__ import annotations

import functools
import hashlib
import struct
from pathlib import Path

from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp

SNP_REPORT_DATA_OFFSET = 0x50
TDX_QUOTE_REPORT_DATA_OFFSET = 48 + 520  # header, then REPORTDATA at 520 in the TD report body
SGX_QUOTE_REPORT_DATA_OFFSET = 48 + 320  # header, then REPORTDATA at 320 in the report body


def _filler(label: str, size: int) -> bytes:
    return hashlib.shake_256(label.encode()).digest(size)


def snp_report(report_data: bytes, vmpl: int = 0) -> bytes:
    """A 1184-byte ATTESTATION_REPORT (version 3, Genoa CPUID) that
    ``attestcall.amd.formats.report`` parses, with ``report_data`` at 0x50."""
    assert len(report_data) == 64
    tcb = 0xDB18_0000_0000_0309
    signature = (_filler("r", 48) + bytes(24) + _filler("s", 48) + bytes(24)).ljust(
        snp.SIGNATURE_SIZE, b"\0")
    report = snp.Report(
        version=3, guest_svn=1, policy=0x30000, family_id=bytes(16), image_id=bytes(16),
        vmpl=vmpl, signature_algo=snp.SIG_ECDSA_P384_SHA384, current_tcb=tcb,
        platform_info=1, signer_info=0, report_data=bytes(report_data),
        measurement=_filler("measurement", 48), host_data=bytes(32),
        id_key_digest=bytes(48), author_key_digest=bytes(48),
        report_id=_filler("report id", 32), report_id_ma=b"\xff" * 32, reported_tcb=tcb,
        cpuid_fam_id=0x19, cpuid_mod_id=0x11, cpuid_step=1, chip_id=_filler("chip", 64),
        committed_tcb=tcb, current_build=21, current_minor=55, current_major=1,
        committed_build=21, committed_minor=55, committed_major=1, launch_tcb=tcb,
        launch_mit_vector=0, current_mit_vector=0, signature=signature,
    )
    data = report.pack()
    assert len(data) == snp.REPORT_SIZE
    return data


def cert_table() -> bytes:
    """A certificate table shaped like a host's: VCEK, ASK, ARK (about 4.5 KiB, so more than
    one page). The blobs are DER-sized filler, not certificates."""
    return amdcerts.pack_table([
        (amdcerts.VCEK_GUID, b"\x30\x82" + _filler("vcek", 1358)),
        (amdcerts.ASK_GUID, b"\x30\x82" + _filler("ask", 1601)),
        (amdcerts.ARK_GUID, b"\x30\x82" + _filler("ark", 1605)),
    ])


def tdx_quote(report_data: bytes, size: int = 5006) -> bytes:
    """A TDX quote v4 shape: header (version 4, ECDSA P-256, TEE type 0x81), the 584-byte TD
    report body with ``report_data`` at its offset 520, then signature data filler."""
    assert len(report_data) == 64
    header = struct.pack("<HHI", 4, 2, 0x81) + bytes(40)
    body = bytearray(_filler("td body", 584))
    body[520:584] = report_data
    rest = size - len(header) - len(body) - 4
    return header + bytes(body) + struct.pack("<I", rest) + _filler("tdx sig", rest)


def sgx_quote(report_data: bytes, size: int = 4734) -> bytes:
    """An SGX DCAP quote v3 shape: header (version 3, ECDSA P-256), the 384-byte report body
    with ``report_data`` at its offset 320, then signature data filler."""
    assert len(report_data) == 64
    header = struct.pack("<HHI", 3, 2, 0) + bytes(40)
    body = bytearray(_filler("sgx body", 384))
    body[320:384] = report_data
    rest = size - len(header) - len(body) - 4
    return header + bytes(body) + struct.pack("<I", rest) + _filler("sgx sig", rest)


@functools.cache
def _cca_platform():
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestcall.arm.sim import state

    cpak = ec.generate_private_key(ec.SECP384R1())
    components = tuple(state.SoftwareComponent(name, _filler(name, 32), "1.0.0",
                                               _filler("signer", 32))
                       for name in state.COMPONENTS[:4])
    return state.CcaState(Path("/nonexistent"), cpak, ec.generate_private_key(ec.SECP384R1()),
                          _filler("implementation", 32), state.instance_id(cpak.public_key()),
                          state.CONFIG, state.LIFECYCLE_SECURED, components,
                          state.VERIFICATION_SERVICE, state.PLATFORM_HASH_ALGO)


def cca_token(challenge: bytes, form: int = 907) -> bytes:
    """A CCA attestation token (the collection of ``form``) whose realm challenge is
    ``challenge`` (64 bytes), as the RMM hands it to arm_cca_guest; signed with keys made
    for the fake."""
    from attestcall.arm.sim import token

    assert len(challenge) == 64
    platform = _cca_platform()
    identity = token.RealmIdentity.for_payload(b"fake realm")
    rak = token.rak_claim(platform.rak, form)
    return token.attestation_token(
        token.platform_token(platform, rak, form),
        token.realm_token(platform.rak, rak, identity, challenge, form), form)
