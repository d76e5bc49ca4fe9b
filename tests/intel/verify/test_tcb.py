"""TCB evaluation: level matching (SGX, TDX), the TDX module, the QE identity, the merge."""

import dataclasses
import json

import pytest
from cryptography import x509

from attestcall.intel.formats.collateral import Collateral, TcbInfo, TcbLevel, parse_tcb_info
from attestcall.intel.formats.pck import SGX_EXTENSION_OID, PckExtension, PckFormatError
from attestcall.intel.formats.quote import Quote
from attestcall.intel.formats.structs import ReportBody
from attestcall.intel.formats.tdx_quote import DcapQuote
from attestcall.intel.verify.tcb import (
    TcbResult,
    TdxTcb,
    converge,
    evaluate,
    evaluate_qe,
    match_sgx_level,
    match_tdx_level,
    merge_advisories,
    platform_tcb,
)
from tests import paths

DATA = paths.DATA / "intel"
SGX_C = Collateral.load(DATA / "sgx_quote_v3.collateral.json")
TDX_C = Collateral.load(DATA / "tdx_quote_v4.collateral.json")
SGX_Q = Quote.parse((DATA / "sgx_quote_v3.bin").read_bytes())
TDX_Q = DcapQuote.parse((DATA / "tdx_quote_v4.bin").read_bytes())
SGX_COMPS = (11, 11, 2, 2, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
TDX_COMPS = (3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
UP = TcbResult("UpToDate")
TDX_TCB = TdxTcb(TDX_Q.body.tee_tcb_svn, TDX_Q.body.mr_signer_seam, TDX_Q.body.seam_attributes)


@pytest.mark.parametrize(
    ("status", "other", "merged"),
    [
        ("UpToDate", "UpToDate", "UpToDate"),
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "OutOfDate", "OutOfDate"),
        ("OutOfDateConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationNeeded", "UpToDate", "ConfigurationNeeded"),
        ("UpToDate", "Revoked", "Revoked"),
        ("Revoked", "UpToDate", "Revoked"),
    ],
)
def test_converge(status, other, merged):
    assert converge(status, other) == merged


def test_merge_advisories_keeps_order_without_repeats():
    assert merge_advisories(("A", "B"), (), ("B", "C", "A")) == ("A", "B", "C")


def test_sgx_vector_matches_its_second_level():
    level = match_sgx_level(SGX_C.tcb_info, SGX_COMPS, 13)
    assert level is SGX_C.tcb_info.tcb_levels[1]
    assert level.status == "ConfigurationAndSWHardeningNeeded"


def test_sgx_level_needs_every_component_and_pcesvn():
    info = SGX_C.tcb_info
    # Component 7 at 12 meets the first level.
    assert match_sgx_level(info, SGX_COMPS[:6] + (12,) + SGX_COMPS[7:], 13) is info.tcb_levels[0]
    # One component lower than every level's, or a PCESVN below all: no level.
    assert match_sgx_level(info, (0,) + SGX_COMPS[1:], 13) is None
    assert match_sgx_level(info, SGX_COMPS, 0) is None
    lower = match_sgx_level(info, SGX_COMPS, 12)
    assert lower is not None and lower.pce_svn <= 12
    assert lower.status == "OutOfDateConfigurationNeeded"


def test_tdx_level_skips_the_module_bytes_when_the_module_version_is_set():
    info = TDX_C.tcb_info
    # TEE_TCB_SVN 06 01 03 ...: bytes 0 and 1 judged by the module identity, byte 2 (3) >= 2.
    assert match_tdx_level(info, TDX_COMPS, 11, TDX_TCB.tee_tcb_svn) is info.tcb_levels[0]
    # Module version 0: bytes 0 and 1 compared too (01 < 05): no level.
    assert match_tdx_level(info, TDX_COMPS, 11, bytes([1, 0, 3]) + bytes(13)) is None
    assert match_tdx_level(info, TDX_COMPS, 11, bytes([6, 1, 1]) + bytes(13)) is None


def test_tdx_vector_is_up_to_date():
    qe = evaluate_qe(TDX_C.qe_identity, TDX_Q.qe.qe_report)
    result = evaluate(TDX_C.tcb_info, TDX_COMPS, 11, qe, TDX_TCB)
    assert result == TcbResult("UpToDate", ())


def test_tdx_module_identity_rules():
    info = TDX_C.tcb_info
    old_module = dataclasses.replace(TDX_TCB, tee_tcb_svn=bytes([3, 1, 3]) + bytes(13))
    assert evaluate(info, TDX_COMPS, 11, UP, old_module).status == "OutOfDate"
    too_old = dataclasses.replace(TDX_TCB, tee_tcb_svn=bytes([1, 1, 3]) + bytes(13))
    result = evaluate(info, TDX_COMPS, 11, UP, too_old)
    assert result.status is None and "below every TDX_01" in result.problems[0]
    unknown = dataclasses.replace(TDX_TCB, tee_tcb_svn=bytes([6, 2, 3]) + bytes(13))
    result = evaluate(info, TDX_COMPS, 11, UP, unknown)
    assert result.status is None and "TDX_02" in result.problems[0]
    signer = dataclasses.replace(TDX_TCB, mr_signer_seam=b"\x01" * 48)
    assert "MRSIGNERSEAM" in evaluate(info, TDX_COMPS, 11, UP, signer).problems[0]
    attributes = dataclasses.replace(TDX_TCB, seam_attributes=b"\x01" + bytes(7))
    assert "SEAMATTRIBUTES" in evaluate(info, TDX_COMPS, 11, UP, attributes).problems[0]


def test_tdx_module_version_0_uses_tdx_module():
    raw = json.loads(TDX_C.key[4])
    for level in raw["tcbLevels"]:
        level["tcb"]["tdxtcbcomponents"][0]["svn"] = 0
    info = parse_tcb_info(json.dumps(raw))
    v0 = dataclasses.replace(TDX_TCB, tee_tcb_svn=bytes([0, 0, 3]) + bytes(13))
    assert evaluate(info, TDX_COMPS, 11, UP, v0).status == "UpToDate"


def test_td15_relaunch_advice():
    info = TDX_C.tcb_info
    old_module = TdxTcb(
        bytes([3, 1, 3]) + bytes(13), bytes(48), bytes(8), bytes([6, 1, 3]) + bytes(13)
    )
    assert evaluate(info, TDX_COMPS, 11, UP, old_module).status == "TDRelaunchAdvised"
    not_yet = dataclasses.replace(old_module, tee_tcb_svn2=bytes([3, 1, 3]) + bytes(13))
    assert evaluate(info, TDX_COMPS, 11, UP, not_yet).status == "OutOfDate"


def _qe_report(**changes) -> ReportBody:
    return dataclasses.replace(SGX_Q.signature_data.qe.qe_report, **changes)


def test_qe_identity_of_the_sgx_vector():
    assert evaluate_qe(SGX_C.qe_identity, _qe_report()) == TcbResult("UpToDate", ())


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"mr_signer": b"\x00" * 32}, "MRSIGNER"),
        ({"isv_prod_id": 2}, "ISVPRODID"),
        ({"misc_select": 1}, "MISCSELECT"),
        ({"attributes": bytes.fromhex("13" + "00" * 15)}, "ATTRIBUTES"),
        ({"isv_svn": 0}, "below every QE identity"),
    ],
)
def test_qe_identity_mismatches(changes, text):
    result = evaluate_qe(SGX_C.qe_identity, _qe_report(**changes))
    assert result.status is None and text in result.problems[0]


def test_qe_identity_masks_and_levels():
    identity = SGX_C.qe_identity
    # Bit 2 of ATTRIBUTES and all of XFRM are masked out.
    masked = _qe_report(attributes=bytes.fromhex("15" + "00" * 7 + "ff" * 8))
    assert evaluate_qe(identity, masked).status == "UpToDate"
    old = evaluate_qe(identity, _qe_report(isv_svn=7))
    assert old == TcbResult("OutOfDate", ("INTEL-SA-00615",))


def test_sgx_evaluation_of_the_vector():
    qe = evaluate_qe(SGX_C.qe_identity, _qe_report())
    result = evaluate(SGX_C.tcb_info, SGX_COMPS, 13, qe)
    assert result == TcbResult(
        "ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00289", "INTEL-SA-00615")
    )


def test_qe_out_of_date_merges_with_the_platform_status():
    qe = evaluate_qe(SGX_C.qe_identity, _qe_report(isv_svn=5))
    result = evaluate(SGX_C.tcb_info, SGX_COMPS, 13, qe)
    assert result.status == "OutOfDateConfigurationNeeded"
    assert result.advisories == ("INTEL-SA-00289", "INTEL-SA-00615", "INTEL-SA-00477")


def test_no_matching_level_is_a_problem():
    result = evaluate(SGX_C.tcb_info, (0,) * 16, 13, UP)
    assert result.status is None
    assert "no TCB level" in result.problems[0] and "not supported" in result.problems[0]


def test_qe_problems_are_carried():
    qe = evaluate_qe(SGX_C.qe_identity, _qe_report(isv_prod_id=9))
    result = evaluate(SGX_C.tcb_info, SGX_COMPS, 13, qe)
    assert result.status is None and "ISVPRODID" in result.problems[0]


def test_revoked_level_is_a_status():
    level = TcbLevel((0,) * 16, 0, None, SGX_C.tcb_info.tcb_levels[0].tcb_date, "Revoked", ("X",))
    info = TcbInfo(**{**SGX_C.tcb_info.__dict__, "tcb_levels": (level,)})
    assert evaluate(info, SGX_COMPS, 13, UP) == TcbResult("Revoked", ("X",))


def _pck_value(name: str) -> bytes:
    quote = (DATA / name).read_bytes()
    start = quote.index(b"-----BEGIN CERTIFICATE-----")
    end = quote.index(b"-----END CERTIFICATE-----") + 25
    cert = x509.load_pem_x509_certificate(quote[start:end])
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    return ext.value.value


@pytest.mark.parametrize("name", ["sgx_quote_v3.bin", "tdx_quote_v4.bin"])
def test_platform_tcb_agrees_with_the_strict_decoder(name):
    value = _pck_value(name)
    fast, strict = platform_tcb(value), PckExtension.decode(value)
    assert fast.comp_svns == strict.tcb.comp_svns and fast.pce_svn == strict.tcb.pce_svn
    assert fast.fmspc == strict.fmspc and fast.pce_id == strict.pce_id


def test_platform_tcb_rejects_malformed_values():
    value = _pck_value("sgx_quote_v3.bin")
    for bad in (b"", b"\x30", b"\x04\x00", value[:-1], value + b"\x00", b"\x30\x00"):
        with pytest.raises(PckFormatError):
            platform_tcb(bad)
