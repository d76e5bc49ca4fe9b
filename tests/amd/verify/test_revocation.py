"""Revocation with AMD's own Milan CRL (tests/data/amd/crl_milan.der, see PROVENANCE.md):
the real report and VCEK verify with it inside its window; outside it, tampered, or given
for another chain, the CRL is unusable input (exit 2), never a silent pass."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.amd.fetch.source import certs_source
from attestcall.amd.formats.certs import load_certificate
from attestcall.amd.formats.crl import load_crls
from attestcall.amd.roots import amd_arks
from attestcall.amd.verify.appraise import appraise_snp
from attestcall.errors import CollateralError
from tests.amd.conftest import DATA, read

CRL = read("crl_milan.der")
INSIDE = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
NEXT_UPDATE = dt.datetime(2026, 8, 8, tzinfo=dt.UTC)


def appraise(report: bytes, vcek: bytes, crl: bytes, at: dt.datetime) -> list[str]:
    source = certs_source(vcek, crl=crl)
    return appraise_snp(report, certs=source, at=at, arks=amd_arks()).problems


def test_the_real_crl_is_the_milan_arks(milan_report, milan_vcek) -> None:
    (crl,) = load_crls(CRL)
    assert crl.issuer == amd_arks()[0].subject and len(crl) == 0
    assert appraise(milan_report, milan_vcek, CRL, INSIDE) == []
    pem = x509.load_der_x509_crl(CRL).public_bytes(Encoding.PEM)
    assert appraise(milan_report, milan_vcek, pem, INSIDE) == []


@pytest.mark.parametrize("at, message", [
    (NEXT_UPDATE, "CRL of ARK-Milan has expired: its nextUpdate is 2026-08-08"),
    (dt.datetime(2026, 6, 1, tzinfo=dt.UTC), "not valid before its thisUpdate 2026-06-22"),
])
def test_outside_its_window_the_crl_is_unusable(milan_report, milan_vcek, at, message) -> None:
    with pytest.raises(CollateralError, match=message):
        appraise(milan_report, milan_vcek, CRL, at)


def test_a_tampered_crl_is_unusable(milan_report, milan_vcek) -> None:
    signature = bytearray(CRL)
    signature[-20] ^= 0x01
    with pytest.raises(CollateralError, match="does not verify with its key"):
        appraise(milan_report, milan_vcek, bytes(signature), INSIDE)
    renamed = CRL.replace(b"ARK-Milan", b"ARK-Genoa")  # the signed issuer name changed
    with pytest.raises(CollateralError, match="the CRL is ARK-Genoa's, for Genoa; the "
                                              "evidence's chain is Milan's"):
        appraise(milan_report, milan_vcek, renamed, INSIDE)
    with pytest.raises(CollateralError, match="not a CRL"):
        appraise(milan_report, milan_vcek, b"\x30\x03\x02\x01\x00", INSIDE)


def test_a_certs_bundle_may_carry_the_crl(milan_report, milan_vcek) -> None:
    """``attestcall collateral`` writes VCEK + ASK + ARK + CRL as one PEM file."""
    vcek = load_certificate(milan_vcek)
    bundle = (vcek.public_bytes(Encoding.PEM) + read("ask_ark_milan.pem")
              + x509.load_der_x509_crl(CRL).public_bytes(Encoding.PEM))
    assert appraise_snp(milan_report, certs=bundle, at=INSIDE, arks=amd_arks()).problems == []
    with pytest.raises(CollateralError, match="has expired"):
        appraise_snp(milan_report, certs=bundle, at=NEXT_UPDATE, arks=amd_arks())


def test_without_any_crl_revocation_is_not_checked(milan_report, milan_vcek) -> None:
    """A --certs file without a CRL, offline: the chain is checked, revocation is not."""
    assert appraise_snp(milan_report, certs=milan_vcek, at=NEXT_UPDATE,
                        arks=amd_arks()).problems == []


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "attestcall", "verify", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_verify_with_crl() -> None:
    common = ["--certs", str(DATA / "milan_report_v2.vcek.der"), "--crl",
              str(DATA / "crl_milan.der"), str(DATA / "milan_report_v2.bin")]
    done = run_verify("--at", "2026-07-01T00:00:00Z", *common)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("accepted: SEV-SNP report")
    late = run_verify("--at", "2026-09-01T00:00:00Z", *common)
    assert late.returncode == 2
    assert late.stderr.splitlines() == [
        "attestcall verify: the CRL of ARK-Milan has expired: its nextUpdate is "
        "2026-08-08T00:00:00+00:00, verifying at 2026-09-01T00:00:00+00:00; fetch a "
        "current one"]
    sgx = run_verify("--crl", str(DATA / "crl_milan.der"),
                     str(DATA.parent / "intel/sgx_quote_v3.bin"))
    assert sgx.returncode == 2 and "--crl is not for SGX quote evidence" in sgx.stderr
