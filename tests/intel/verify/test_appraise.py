"""Appraisal of Intel quotes: the documented outcomes, claims, roots, and each rejection."""

import dataclasses
import datetime as dt
import hashlib
import json

import dcap_qvl
import pytest
from cryptography.hazmat.primitives import serialization

from attestcall.appraisal import Appraisal
from attestcall.errors import EvidenceError
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.roots import INTEL_ROOT_SHA256, intel_root
from attestcall.intel.verify.appraise import appraise_intel, appraise_sgx, appraise_tdx, clear_cache
from tests import paths
from tests.fakes.dcap import AT, FakePlatform

DATA = paths.DATA / "intel"
SGX = (DATA / "sgx_quote_v3.bin").read_bytes()
TDX = (DATA / "tdx_quote_v4.bin").read_bytes()
SGX_JSON = json.loads((DATA / "sgx_quote_v3.collateral.json").read_text())
TDX_JSON = json.loads((DATA / "tdx_quote_v4.collateral.json").read_text())
SGX_C = Collateral.load(SGX_JSON)
TDX_C = Collateral.load(TDX_JSON)
SGX_AT = dt.datetime(2025, 7, 19, 10, 1, 17, tzinfo=dt.UTC)
TDX_AT = dt.datetime(2025, 7, 19, 10, 0, 33, tzinfo=dt.UTC)
ROOTS = [intel_root()]
INDEX_FINGERPRINT = (  # INDEX.md: "SHA-256 fingerprint 44:A0:19:6B:..."
    "44:A0:19:6B:2B:99:F8:89:B8:E1:49:E9:5B:80:7A:35:"
    "0E:74:24:96:43:99:E8:85:A7:CB:B8:CC:FA:B6:74:D3"
)

SGX_CLAIMS = {
    "mrenclave", "mrsigner", "isv_prod_id", "isv_svn", "attributes", "misc_select", "cpu_svn",
    "config_id", "config_svn", "isv_ext_prod_id", "isv_family_id", "report_data", "fmspc",
    "pce_id", "pce_svn", "tcb_components", "qe_svn",
}  # fmt: skip
TDX_CLAIMS = {
    "mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner", "mrownerconfig",
    "mrseam", "mrsignerseam", "seam_attributes", "td_attributes", "xfam", "tee_tcb_svn",
    "report_data", "fmspc", "pce_id", "pce_svn", "tcb_components",
}  # fmt: skip


def sgx(quote: bytes = SGX, collateral: Collateral = SGX_C, at=SGX_AT, roots=ROOTS) -> Appraisal:
    return appraise_sgx(quote, collateral=collateral, at=at, roots=roots)


def tdx(quote: bytes = TDX, collateral: Collateral = TDX_C, at=TDX_AT, roots=ROOTS) -> Appraisal:
    return appraise_tdx(quote, collateral=collateral, at=at, roots=roots)


# ------------------------------------------------------------------ documented outcomes


def test_sgx_vector_at_its_instant():
    result = sgx()
    assert result.problems == []
    assert result.technology == "sgx"
    assert result.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert result.advisories == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert not result.debug and not result.simulated
    assert result.report_data.startswith(b"Hello, world!")


def test_tdx_vector_at_its_instant():
    result = tdx()
    assert result.problems == []
    assert result.technology == "tdx"
    assert result.tcb_status == "UpToDate" and result.advisories == []
    assert not result.debug and not result.simulated


def test_tdx_vector_after_the_tcb_info_expired():
    result = tdx(at=dt.datetime(2025, 7, 20, tzinfo=dt.UTC))
    assert "TCB info expired at 2025-07-19T10:16:03Z" in result.problems


def test_tdx_vector_before_the_tcb_info_was_issued():
    result = tdx(at=dt.datetime(2025, 6, 18, tzinfo=dt.UTC))
    assert (
        "TCB info issued in the future (2025-06-19T10:16:03Z, verifying at 2025-06-18T00:00:00Z)"
        in result.problems
    )


def test_a_naive_instant_is_utc():
    assert tdx(at=TDX_AT.replace(tzinfo=None)).problems == []


# ------------------------------------------------------------------ claims


def test_sgx_claims():
    claims = sgx().claims
    assert set(claims) == SGX_CLAIMS
    assert claims["mrenclave"].startswith("33d8736d")
    assert claims["mrsigner"].startswith("815f42f1")
    assert claims["fmspc"] == "00a067110000" and claims["pce_id"] == "0000"
    assert claims["pce_svn"] == 13 and claims["qe_svn"] == 10
    assert claims["tcb_components"] == [11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert claims["attributes"] == "0500000000000000e700000000000000"
    assert isinstance(claims["isv_prod_id"], int) and isinstance(claims["misc_select"], int)


def test_tdx_claims():
    claims = tdx().claims
    assert set(claims) == TDX_CLAIMS
    assert claims["mrtd"].startswith("91eb2b44") and len(claims["mrtd"]) == 96
    assert claims["td_attributes"] == "0000001000000000"
    assert claims["tee_tcb_svn"] == "06010300000000000000000000000000"
    assert claims["fmspc"] == "b0c06f000000" and claims["pce_svn"] == 11


def test_td15_claims_and_debug():
    fake = FakePlatform(tdx=True)
    collateral = Collateral.load(fake.collateral())
    result = tdx(fake.tdx_quote(5, td15=True, debug=True), collateral, AT, [fake.root])
    assert result.problems == []
    assert set(result.claims) == TDX_CLAIMS | {"tee_tcb_svn2", "mrservicetd"}
    assert result.claims["mrservicetd"] == "55" * 48
    assert result.debug


# ------------------------------------------------------------------ dispatch and input


def test_dispatch_on_the_header():
    assert appraise_intel(SGX, collateral=SGX_C, at=SGX_AT, roots=ROOTS).technology == "sgx"
    assert appraise_intel(TDX, collateral=TDX_C, at=TDX_AT, roots=ROOTS).technology == "tdx"
    with pytest.raises(EvidenceError, match="not a TDX quote"):
        tdx(SGX, SGX_C, SGX_AT)
    with pytest.raises(EvidenceError, match="not an SGX quote"):
        sgx(TDX, TDX_C, TDX_AT)


@pytest.mark.parametrize(
    "quote",
    [b"", b"\x03\x00", SGX[:100], b"\x07\x00" + SGX[2:], SGX[:-1], bytes(5000)],
    ids=["empty", "two bytes", "short", "version 7", "cut", "zeros"],
)
def test_unusable_input_is_an_evidence_error(quote):
    with pytest.raises(EvidenceError):
        appraise_intel(quote, collateral=SGX_C, at=SGX_AT, roots=ROOTS)


def test_bytes_after_an_sgx_quote_are_ignored():
    assert sgx(SGX + bytes(64)).problems == []
    assert sgx(bytearray(SGX)).problems == []


def test_tdx_trailing_bytes_may_only_be_zero_padding():
    assert tdx(TDX[:4936] + bytes(70)).problems == []
    assert tdx(TDX[:4936]).problems == []
    with pytest.raises(EvidenceError, match="not all zero"):
        tdx(TDX[:4936] + b"\xa5" * 70)


def test_debug_from_the_enclave_attributes():
    fake = FakePlatform()
    collateral = Collateral.load(fake.collateral())
    assert not sgx(fake.sgx_quote(), collateral, AT, [fake.root]).debug
    body = bytearray(fake.sgx_quote())
    assert body[48 + 48] == 0x05  # ATTRIBUTES.FLAGS: INIT | MODE64BIT


# ------------------------------------------------------------------ roots


def test_pinned_root_fingerprint_is_the_documented_one():
    der = intel_root().public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest()
    assert digest == INTEL_ROOT_SHA256
    assert ":".join(f"{b:02X}" for b in bytes.fromhex(digest)) == INDEX_FINGERPRINT
    assert intel_root() is intel_root()


def test_a_quote_under_another_root_is_rejected():
    other = FakePlatform()
    result = sgx(roots=[other.root])
    assert "PCK certificate chain ends at a root that is not trusted" in result.problems
    assert not result.simulated


def test_simulated_root_needs_trust():
    fake = FakePlatform(root_cn="Intel SGX SIMULATED Root CA")
    collateral = Collateral.load(fake.collateral())
    refused = sgx(fake.sgx_quote(), collateral, AT, ROOTS)
    assert refused.simulated
    assert len(refused.problems) == 1
    assert "SIMULATED" in refused.problems[0] and "--trust-simulated" in refused.problems[0]
    trusted = sgx(fake.sgx_quote(), collateral, AT, [intel_root(), fake.root])
    assert trusted.problems == [] and trusted.simulated


def test_test_hierarchy_accepted_when_its_root_is_given():
    fake = FakePlatform()
    result = sgx(fake.sgx_quote(), Collateral.load(fake.collateral()), AT, [fake.root])
    assert result.problems == []
    assert result.tcb_status == "SWHardeningNeeded" and result.advisories == ["INTEL-SA-00615"]


# ------------------------------------------------------------------ collateral rejections


def _problems(quote: bytes, collateral: dict, at=AT, roots=None, fake=None) -> list[str]:
    roots = roots if roots is not None else [fake.root]
    return appraise_intel(
        quote, collateral=Collateral.load(collateral), at=at, roots=roots
    ).problems


def test_each_collateral_failure_has_its_own_reason():
    reasons = {}
    # Expired and not yet valid (the real TDX collateral).
    reasons["expired"] = tdx(at=dt.datetime(2025, 7, 20, tzinfo=dt.UTC)).problems
    reasons["future"] = tdx(at=dt.datetime(2025, 6, 18, tzinfo=dt.UTC)).problems
    # A byte of the signed TCB info text, or of its signature, changed.
    text = SGX_JSON["tcb_info"].replace('"tcbType":0', '"tcbType":1')
    assert text != SGX_JSON["tcb_info"]
    reasons["tcb text"] = sgx(collateral=Collateral.load({**SGX_JSON, "tcb_info": text})).problems
    signature = bytearray.fromhex(SGX_JSON["tcb_info_signature"])
    signature[10] ^= 1
    bad_sig = {**SGX_JSON, "tcb_info_signature": signature.hex()}
    reasons["tcb signature"] = sgx(collateral=Collateral.load(bad_sig)).problems
    qe_sig = bytearray.fromhex(SGX_JSON["qe_identity_signature"])
    qe_sig[40] ^= 0x80
    bad_qe = {**SGX_JSON, "qe_identity_signature": qe_sig.hex()}
    reasons["qe signature"] = sgx(collateral=Collateral.load(bad_qe)).problems
    # TCB info for another FMSPC, correctly signed by a test TCB signing key.
    other = FakePlatform(tcb_fmspc=bytes.fromhex("B0C06F000000"))
    reasons["fmspc"] = _problems(other.sgx_quote(), other.collateral(), fake=other)
    # A PCK CRL that lists the PCK certificate.
    revoked = FakePlatform(revoke_pck=True)
    reasons["revoked"] = _problems(revoked.sgx_quote(), revoked.collateral(), fake=revoked)
    # The TDX collateral for an SGX quote.
    reasons["wrong tee"] = sgx(collateral=TDX_C).problems
    expected = {
        "expired": "TCB info expired at 2025-07-19T10:16:03Z",
        "future": "TCB info issued in the future (2025-06-19T10:16:03Z",
        "tcb text": "TCB info signature does not verify with the TCB signing key",
        "tcb signature": "TCB info signature does not verify with the TCB signing key",
        "qe signature": "QE identity signature does not verify with the TCB signing key",
        "fmspc": "TCB info is for FMSPC B0C06F000000, the PCK certificate's FMSPC is 00A067110000",
        "revoked": "PCK certificate (serial 1234567) is revoked by the PCK CRL",
        "wrong tee": "TCB info is for TDX, the quote is SGX",
    }
    for case, problems in reasons.items():
        assert any(p.startswith(expected[case]) for p in problems), (case, problems)
    assert reasons["fmspc"] == [expected["fmspc"]]
    assert reasons["revoked"] == [expected["revoked"]]
    assert reasons["tcb signature"] == [expected["tcb signature"]]
    assert reasons["qe signature"] == [expected["qe signature"]]
    firsts = {case: problems[0] for case, problems in reasons.items()}
    distinct = {firsts[c] for c in ("expired", "future", "tcb signature", "fmspc", "revoked")}
    assert len(distinct) == 5


def test_root_crl_that_revokes_the_pck_ca():
    fake = FakePlatform()
    collateral = fake.collateral()
    collateral["root_ca_crl"] = fake.crl(fake.root_cn, fake.keys["root"], [fake.ca.serial_number])
    problems = _problems(fake.sgx_quote(), collateral, fake=fake)
    assert "PCK CA certificate (serial 2) is revoked by the root CA CRL" in problems
    assert "PCK CRL issuer certificate is revoked by the root CA CRL" in problems


def test_pck_crl_signed_by_another_key():
    fake = FakePlatform()
    collateral = fake.collateral()
    collateral["pck_crl"] = fake.crl("Test SGX PCK Platform CA", fake.keys["tcb"], [])
    problems = _problems(fake.sgx_quote(), collateral, fake=fake)
    assert problems == ["PCK CRL signature does not verify with its issuer's key"]


def test_pck_crl_from_another_issuer():
    fake = FakePlatform()
    collateral = fake.collateral()
    collateral["pck_crl"] = fake.crl("Test SGX PCK Processor CA", fake.keys["ca"], [])
    problems = _problems(fake.sgx_quote(), collateral, fake=fake)
    assert "PCK CRL is not issued by the PCK certificate's issuer" in problems


def test_certificates_outside_their_validity():
    fake = FakePlatform()
    late = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
    problems = _problems(fake.sgx_quote(), fake.collateral(), at=late, fake=fake)
    assert "PCK certificate expired at 2034-12-30T00:00:00Z" in problems
    early = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    problems = _problems(fake.sgx_quote(), fake.collateral(), at=early, fake=fake)
    assert any(p.startswith("PCK certificate is not yet valid at 2024-06-01") for p in problems)


def test_no_matching_tcb_level_is_a_problem():
    fake = FakePlatform(pck_comps=(1,) * 16)
    problems = _problems(fake.sgx_quote(), fake.collateral(), fake=fake)
    assert len(problems) == 1 and "no TCB level" in problems[0]


def test_qe_out_of_date_lowers_the_status():
    fake = FakePlatform(qe_isv_svn=7)
    result = appraise_intel(fake.sgx_quote(), collateral=Collateral.load(fake.collateral()),
                            at=AT, roots=[fake.root])  # fmt: skip
    assert result.problems == [] and result.tcb_status == "OutOfDate"


def test_collateral_under_another_root():
    fake, other = FakePlatform(), FakePlatform()
    collateral = other.collateral()
    problems = _problems(fake.sgx_quote(), collateral, roots=[fake.root, other.root])
    assert "the collateral is signed under another root than the PCK chain" in problems


# ------------------------------------------------------------------ cache


def test_warm_and_cold_agree():
    clear_cache()
    cold = sgx()
    warm = sgx()
    assert cold == warm
    clear_cache()
    assert tdx() == tdx()


def test_cache_keys_on_the_roots():
    assert sgx().problems == []
    assert sgx(roots=[FakePlatform().root]).problems != []
    assert sgx().problems == []


def test_cache_keys_on_the_collateral_bytes():
    assert sgx().problems == []
    text = SGX_JSON["tcb_info"].replace('"tcbType":0', '"tcbType":1')
    assert sgx(collateral=Collateral.load({**SGX_JSON, "tcb_info": text})).problems != []
    assert sgx().problems == []


# ------------------------------------------------------------------ agreement with dcap-qvl


@pytest.mark.parametrize(
    ("quote", "name", "at"),
    [(SGX, "sgx_quote_v3", SGX_AT), (TDX, "tdx_quote_v4", TDX_AT)],
    ids=["sgx", "tdx"],
)
def test_agrees_with_dcap_qvl(quote, name, at):
    text = (DATA / f"{name}.collateral.json").read_text()
    report = dcap_qvl.verify(quote, dcap_qvl.QuoteCollateralV3.from_json(text), int(at.timestamp()))
    ours = appraise_intel(quote, collateral=Collateral.load(text), at=at, roots=ROOTS)
    assert ours.problems == []
    assert ours.tcb_status == report.status
    assert ours.advisories == list(report.advisory_ids)


def test_agrees_with_dcap_qvl_on_expiry():
    text = (DATA / "tdx_quote_v4.collateral.json").read_text()
    late = dt.datetime(2025, 7, 20, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="expired"):
        dcap_qvl.verify(TDX, dcap_qvl.QuoteCollateralV3.from_json(text), int(late.timestamp()))
    assert any("expired" in p for p in tdx(at=late).problems)


def test_appraisal_is_a_plain_dataclass():
    result = sgx()
    assert dataclasses.asdict(result)["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
