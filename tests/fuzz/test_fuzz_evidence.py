"""Fuzz targets, one per evidence type attestcall verifies or reads (see mutate.py for the
long-run command): an SGX quote v3, a TDX quote v4 (real vectors), a TDX quote v5 and an
SGX quote in the v4 envelope (a test PKI's), an SEV-SNP report with its certificate table,
and SEV pre-attestation's PKCS#8 key."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given

import attestcall
from attestcall.amd.formats import certs
from attestcall.errors import AttestcallError
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.verify.appraise import appraise_intel
from tests import paths
from tests.fakes.dcap import AT as FAKE_AT
from tests.fakes.dcap import FakePlatform
from tests.fuzz.mutate import FUZZ, mutated

INTEL = paths.DATA / "intel"
AMD = paths.DATA / "amd"
SGX = (INTEL / "sgx_quote_v3.bin").read_bytes()
SGX_COLL = Collateral.load(INTEL / "sgx_quote_v3.collateral.json")
TDX = (INTEL / "tdx_quote_v4.bin").read_bytes()
TDX_COLL = Collateral.load(INTEL / "tdx_quote_v4.collateral.json")
SNP = ((AMD / "milan_report_v2.bin").read_bytes()
       + certs.pack_table([(certs.VCEK_GUID, (AMD / "milan_report_v2.vcek.der").read_bytes())])
       + bytes(512))
SNP_AT = "2025-01-01T00:00:00Z"
FAKE = FakePlatform(tdx=True)
FAKE_COLL = Collateral.load(FAKE.collateral())
TDX_V5 = FAKE.tdx_quote(version=5, td15=True)
PKCS8 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _verdict(evidence: bytes, **arguments):
    """The verdict, or None for unusable input; any other exception fails the target."""
    try:
        return attestcall.verify(evidence, **arguments)
    except AttestcallError:
        return None


def test_the_valid_inputs_are_accepted():  # else the targets would prove nothing
    assert _verdict(SGX, collateral=SGX_COLL, at="2025-07-19T10:01:17Z").problems == []
    assert _verdict(TDX, collateral=TDX_COLL, at="2025-07-19T10:00:33Z").accepted
    assert _verdict(SNP, at=SNP_AT).problems == []
    assert appraise_intel(TDX_V5, collateral=FAKE_COLL, at=FAKE_AT,
                          roots=[FAKE.root]).problems == []


@FUZZ
@given(mutated(SGX, hot=(432, 1100)))
def test_fuzz_sgx_quote_v3(evidence):
    verdict = _verdict(evidence, collateral=SGX_COLL, at="2025-07-19T10:01:17Z")
    if verdict is not None and not verdict.problems:
        assert evidence[:432] == SGX[:432]  # header and report body: signed


@FUZZ
@given(mutated(TDX, hot=(632, 1300)))
def test_fuzz_tdx_quote_v4(evidence):
    verdict = _verdict(evidence, collateral=TDX_COLL, at="2025-07-19T10:00:33Z")
    if verdict is not None and not verdict.problems:
        assert evidence[:632] == TDX[:632]
        assert not evidence[len(TDX) - 70:].strip(b"\0")  # nothing but zero padding after


@FUZZ
@given(mutated(TDX_V5, hot=(48, 760)))
def test_fuzz_tdx_quote_v5(evidence):
    try:
        appraisal = appraise_intel(evidence, collateral=FAKE_COLL, at=FAKE_AT, roots=[FAKE.root])
    except AttestcallError:
        return
    if not appraisal.problems:
        assert evidence[:54 + 648] == TDX_V5[:54 + 648]


@FUZZ
@given(mutated(SNP, hot=(1184, 1184 + 96)))
def test_fuzz_snp_report_and_certificate_table(evidence):
    verdict = _verdict(evidence, at=SNP_AT)
    if verdict is not None and not verdict.problems:
        assert evidence[:0x2A0] == SNP[:0x2A0]  # the signed part of the report


@FUZZ
@given(mutated(PKCS8))
def test_fuzz_sev_pre_attestation_key(evidence):
    """SEV's evidence is the keep's delivered key: the tenant side never verifies it, the
    keep reads it (``identity._pinned_key``) and the service refuses it by its shape."""
    from attestcall.deploy.identity import _pinned_key
    from attestcall.service.attestation import looks_like_private_key

    assert isinstance(looks_like_private_key(evidence), bool)
    try:
        _pinned_key(evidence)
    except AttestcallError:
        pass
    with pytest.raises(AttestcallError):
        attestcall.verify(evidence, at=dt.datetime.now(dt.UTC))
