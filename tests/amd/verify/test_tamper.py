"""Every change to a report's signed bytes or signature is rejected; truncation never
raises anything but EvidenceError; changes to the certificate table are handled as the
format says (they can make the evidence unusable or break a chain, never crash)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.amd.formats import certs as amdcerts
from attestcall.amd.formats import report as snp
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import appraise_snp
from attestcall.errors import CollateralError, CollateralMissing, EvidenceError
from tests.amd.conftest import ask_ark, read

AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
BAD_SIGNATURE = "the report's signature does not verify with the VCEK"


def _reserved_bit(report: bytes, offset: int, bit: int) -> bool:
    """Whether flipping ``bit`` of byte ``offset`` makes a v2 VCEK-signed report malformed."""
    if 0x08 <= offset < 0x10:  # policy: bit 17 must be one, bits 63:26 must be zero
        policy_bit = (offset - 0x08) * 8 + bit
        return policy_bit == 17 or policy_bit >= 26
    if 0x48 <= offset < 0x4C:  # signer info: bits 31:5 zero, SIGNING_KEY 2..6 reserved
        info_bit = (offset - 0x48) * 8 + bit
        return info_bit >= 3  # SIGNING_KEY 0 becomes 2 or 4; higher bits are reserved
    return offset in range(0x4C, 0x50) or offset in range(0x188, 0x1A0) or offset in (
        0x1EB, 0x1EF) or offset in range(0x1F8, 0x2A0)


@pytest.mark.parametrize("report_name, vcek_name", [
    ("milan_report_v2.bin", "milan_report_v2.vcek.der"),
    ("milan_report_v2_debug.bin", "milan_report_v2_debug.vcek.der"),
])
def test_every_signed_byte(report_name, vcek_name):
    report, vcek = read(report_name), read(vcek_name)
    assert appraise_snp(report, certs=vcek, at=AT, arks=amd_arks()).problems == []
    malformed = 0
    for offset in range(snp.SIGNED_SIZE):
        bit = offset % 8
        tampered = bytearray(report)
        tampered[offset] ^= 1 << bit
        if _reserved_bit(report, offset, bit):
            with pytest.raises(EvidenceError):
                appraise_snp(bytes(tampered), certs=vcek, at=AT, arks=amd_arks())
            malformed += 1
            continue
        appraisal = appraise_snp(bytes(tampered), certs=vcek, at=AT, arks=amd_arks())
        if offset in range(0x34, 0x38):  # SIGNATURE_ALGO: no longer ECDSA P-384 SHA-384
            assert "unsupported signature algorithm" in appraisal.problems[0], hex(offset)
        else:
            assert BAD_SIGNATURE in appraisal.problems, hex(offset)
    assert 0 < malformed < 250


def test_every_signature_byte(milan_report, milan_vcek):
    for offset in range(snp.SIGNED_SIZE, snp.REPORT_SIZE):
        tampered = bytearray(milan_report)
        tampered[offset] ^= 1 << (offset % 8)
        in_rs = (offset - snp.SIGNED_SIZE) % 72 < 48 and offset < snp.SIGNED_SIZE + 144
        if in_rs:
            appraisal = appraise_snp(bytes(tampered), certs=milan_vcek, at=AT, arks=amd_arks())
            assert appraisal.problems == [BAD_SIGNATURE], hex(offset)
        else:
            with pytest.raises(EvidenceError):
                appraise_snp(bytes(tampered), certs=milan_vcek, at=AT, arks=amd_arks())


def _evidence_with_table(report: bytes, vcek: bytes) -> tuple[bytes, int]:
    ask, ark = ask_ark("milan")
    table = amdcerts.pack_table([(amdcerts.VCEK_GUID, vcek),
                                 (amdcerts.ASK_GUID, ask.public_bytes(Encoding.DER)),
                                 (amdcerts.ARK_GUID, ark.public_bytes(Encoding.DER))])
    return report + table, len(report) + 4 * amdcerts.ENTRY.size


def test_truncated_report(milan_report):
    for size in range(snp.REPORT_SIZE):
        with pytest.raises(EvidenceError):
            appraise_snp(milan_report[:size], at=AT, arks=amd_arks())


def test_truncated_report_and_table(milan_report, milan_vcek):
    evidence, _ = _evidence_with_table(milan_report, milan_vcek)
    assert appraise_snp(evidence, at=AT, arks=amd_arks()).problems == []
    for size in range(snp.REPORT_SIZE, len(evidence)):
        try:
            appraise_snp(evidence[:size], at=AT, arks=amd_arks())
        except EvidenceError:
            continue
        except CollateralMissing as exc:
            # Only the bare report (no table) parses: the VCEK is then missing.
            assert size == snp.REPORT_SIZE and "no VCEK" in str(exc), size
            continue
        raise AssertionError(f"a table cut at {size} was accepted")


def test_table_header_changes(milan_report, milan_vcek):
    evidence, header_end = _evidence_with_table(milan_report, milan_vcek)
    for offset in range(snp.REPORT_SIZE, header_end):
        tampered = bytearray(evidence)
        tampered[offset] ^= 1 << (offset % 8)
        try:
            appraise_snp(bytes(tampered), at=AT, arks=amd_arks())
        except (EvidenceError, CollateralMissing):  # a GUID flipped: the VCEK is gone
            pass


def test_vcek_changes_in_the_table_are_rejected(milan_report, milan_vcek):
    evidence, header_end = _evidence_with_table(milan_report, milan_vcek)
    for offset in range(header_end, header_end + len(milan_vcek)):
        tampered = bytearray(evidence)
        tampered[offset] ^= 1 << (offset % 8)
        try:
            appraisal = appraise_snp(bytes(tampered), at=AT, arks=amd_arks())
        except EvidenceError:
            continue
        assert appraisal.problems, hex(offset - header_end)


def test_ask_and_ark_changes_in_the_table_never_crash(milan_report, milan_vcek):
    """The table's ASK and ARK are not trusted: the pinned ones are used whenever the
    table's copies are damaged, so such changes are either unusable input or harmless."""
    evidence, header_end = _evidence_with_table(milan_report, milan_vcek)
    start = header_end + len(milan_vcek)
    for offset in range(start, len(evidence), 3):
        tampered = bytearray(evidence)
        tampered[offset] ^= 1 << (offset % 8)
        try:
            appraisal = appraise_snp(bytes(tampered), at=AT, arks=amd_arks())
        except EvidenceError:
            continue
        assert appraisal.problems == [], hex(offset - start)


def test_certs_file_changes_never_crash(milan_report, milan_vcek):
    for offset in range(0, len(milan_vcek), 2):
        tampered = bytearray(milan_vcek)
        tampered[offset] ^= 0x80
        try:
            appraisal = appraise_snp(milan_report, certs=bytes(tampered), at=AT,
                                     arks=amd_arks())
        except CollateralError:
            continue
        assert appraisal.problems, hex(offset)
