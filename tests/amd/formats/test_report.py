from __future__ import annotations

import dataclasses

import pytest

from attestcall.amd.formats import report as snp
from attestcall.errors import EvidenceError
from tests.amd.conftest import read


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def test_milan_report_fields(milan_report):
    report = snp.parse(milan_report)
    assert report.version == 2
    assert report.policy == 0x30000
    assert report.vmpl == 0
    assert report.signature_algo == snp.SIG_ECDSA_P384_SHA384
    assert report.signing_key == snp.SIGNING_KEY_VCEK
    assert not report.debug and not report.migration_agent
    assert report.report_id_ma == b"\xff" * 32
    tcb = report.tcb("reported_tcb", snp.MILAN)
    assert (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, tcb.fmc) == (3, 0, 8, 115, None)
    assert tcb.raw.hex() == "0300000000000873"
    assert (report.current_major, report.current_minor, report.current_build) == (1, 0x34, 4)
    assert report.cpuid_product() is None


def test_debug_report_fields():
    report = snp.parse(read("milan_report_v2_debug.bin"))
    assert report.policy == 0xB0000
    assert report.debug
    assert report.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)
    tcb = report.tcb("reported_tcb", snp.GENOA)
    assert (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode) == (2, 0, 5, 68)


@pytest.mark.parametrize("name", ["milan_report_v2.bin", "milan_report_v2_debug.bin"])
def test_pack_round_trip(name):
    data = read(name)
    report = snp.parse(data)
    assert report.pack() == data
    assert report.signed_bytes() == data[:0x2A0]


def test_signature_components(milan_report):
    report = snp.parse(milan_report)
    r, s = report.signature_rs()
    assert r == int.from_bytes(milan_report[0x2A0:0x2A0 + 48], "little")
    assert s == int.from_bytes(milan_report[0x2E8:0x2E8 + 48], "little")
    assert 0 < r < 2**384 and 0 < s < 2**384


@pytest.mark.parametrize("size", [0, 1, 0x2A0, snp.REPORT_SIZE - 1, snp.REPORT_SIZE + 1])
def test_wrong_length(milan_report, size):
    data = (milan_report * 2)[:size]
    with pytest.raises(EvidenceError, match="1184"):
        snp.parse(data)


@pytest.mark.parametrize("offset", [0x4C, 0x4F, 0x188, 0x18A, 0x18B, 0x19F, 0x1EB, 0x1EF,
                                    0x1F8, 0x200, 0x207, 0x208, 0x29F])
def test_reserved_bytes_v2(milan_report, offset):
    with pytest.raises(EvidenceError, match="reserved"):
        snp.parse(flipped(milan_report, offset))


@pytest.mark.parametrize("offset", [0x2A0 + 48, 0x2A0 + 71, 0x2E8 + 48, 0x2E8 + 71, 0x330,
                                    0x49F])
def test_signature_padding_must_be_zero(milan_report, offset):
    with pytest.raises(EvidenceError, match="reserved"):
        snp.parse(flipped(milan_report, offset))


def test_signature_area_opaque_for_other_algorithms(base_report):
    other = dataclasses.replace(base_report, signature_algo=2,
                                signature=b"\x01" * snp.SIGNATURE_SIZE)
    assert snp.parse(other.pack()) == other


@pytest.mark.parametrize("policy, message", [
    (0x10000, "bit 17"),
    (0x30000 | 1 << 26, "63:26"),
    (0x30000 | 1 << 63, "63:26"),
])
def test_policy_reserved_bits(base_report, policy, message):
    data = dataclasses.replace(base_report, policy=policy).pack()
    with pytest.raises(EvidenceError, match=message):
        snp.parse(data)


def test_policy_defined_bits_accepted(base_report):
    policy = 0x30000 | (1 << 26) - 1
    assert snp.parse(dataclasses.replace(base_report, policy=policy).pack()).policy == policy


@pytest.mark.parametrize("signer_info", [1 << 5, 1 << 31, 2 << 2, 6 << 2])
def test_signer_info_reserved(base_report, signer_info):
    with pytest.raises(EvidenceError):
        snp.parse(dataclasses.replace(base_report, signer_info=signer_info).pack())


def test_signer_info_fields(base_report):
    report = snp.parse(dataclasses.replace(base_report, signer_info=0b11111).pack())
    assert report.author_key_en and report.mask_chip_key
    assert report.signing_key == snp.SIGNING_KEY_NONE


def test_version_3_cpuid_fields(base_report):
    v3 = dataclasses.replace(base_report, version=3, cpuid_fam_id=0x19, cpuid_mod_id=0x11,
                             cpuid_step=1)
    data = v3.pack()
    assert data[0x188:0x18B] == bytes([0x19, 0x11, 1])
    parsed = snp.parse(data)
    assert parsed == v3
    assert parsed.cpuid_product() == snp.GENOA
    with pytest.raises(EvidenceError):
        snp.parse(flipped(data, 0x18B))
    with pytest.raises(EvidenceError, match="mitigation"):
        snp.parse(flipped(data, 0x1F8))


def test_version_2_rejects_cpuid_bytes(base_report):
    data = dataclasses.replace(base_report, cpuid_fam_id=0x19).pack()
    with pytest.raises(EvidenceError, match="CPUID"):
        snp.parse(data)


def test_version_5_mitigation_vectors(base_report):
    v5 = dataclasses.replace(base_report, version=5, cpuid_fam_id=0x1A, cpuid_mod_id=0x02,
                             launch_mit_vector=0x0123456789ABCDEF, current_mit_vector=7)
    data = v5.pack()
    assert data[0x1F8:0x200] == (0x0123456789ABCDEF).to_bytes(8, "little")
    assert data[0x200:0x208] == (7).to_bytes(8, "little")
    parsed = snp.parse(data)
    assert parsed == v5 and parsed.cpuid_product() == snp.TURIN
    with pytest.raises(EvidenceError):
        snp.parse(flipped(data, 0x208))


def test_tcb_layouts():
    raw = int.from_bytes(bytes([1, 2, 3, 4, 5, 6, 7, 8]), "little")
    milan = snp.decode_tcb(raw, snp.MILAN)
    assert (milan.bootloader, milan.tee, milan.snp, milan.microcode, milan.fmc) == (1, 2, 7, 8,
                                                                                    None)
    turin = snp.decode_tcb(raw, snp.TURIN)
    assert (turin.fmc, turin.bootloader, turin.tee, turin.snp, turin.microcode) == (1, 2, 3, 4,
                                                                                    8)
    assert turin.as_dict() == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 8,
                               "raw": "0102030405060708"}
    assert "fmc" not in milan.as_dict()


def test_tcb_rejects_other_names(base_report):
    with pytest.raises(ValueError):
        base_report.tcb("policy", snp.MILAN)


@pytest.mark.parametrize("family, model, product", [
    (0x19, 0x01, snp.MILAN), (0x19, 0x11, snp.GENOA), (0x19, 0xA0, snp.GENOA),
    (0x1A, 0x02, snp.TURIN), (0x1A, 0x11, snp.TURIN), (0x19, 0x50, None), (0x17, 0x31, None),
])
def test_product_from_cpuid(family, model, product):
    assert snp.product_from_cpuid(family, model) == product


def test_migration_agent(base_report):
    assert dataclasses.replace(base_report, report_id_ma=b"\x12" * 32).migration_agent
    assert not dataclasses.replace(base_report, report_id_ma=bytes(32)).migration_agent


def test_smt_enabled(base_report):
    assert base_report.smt_enabled  # PLATFORM_INFO 1
    assert not dataclasses.replace(base_report, platform_info=2).smt_enabled
