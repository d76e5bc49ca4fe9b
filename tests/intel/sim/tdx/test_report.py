"""TDG.MR.REPORT on the simulated TDX module: the TDREPORT's layout, its MAC, the TD
identity, and the state on disk."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import stat

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from attestcall import simstate
from attestcall.errors import SimStateError
from attestcall.intel.formats.tdx_quote import TD_ATTR_DEBUG, TD_ATTR_SEPT_VE_DISABLE
from attestcall.intel.sim import tdx as tdx_sim
from attestcall.intel.sim.tdx import (
    SimulatedTdxModule,
    TdIdentity,
    TdReport,
    TdReportError,
    TdxState,
)
from attestcall.intel.sim.tdx.report import check_report, quote_body_bytes
from attestcall.tees import registry

NONCE = hashlib.sha512(b"tdreport nonce").digest()


@pytest.fixture(scope="module")
def identity() -> TdIdentity:
    return TdIdentity.for_payload(
        b"tdx payload", rtmr1=b"\x01" * 48, rtmr3=b"\x03" * 48, mrowner=b"\x0a" * 48
    )


@pytest.fixture(scope="module")
def raw(state: TdxState, identity: TdIdentity) -> bytes:
    return SimulatedTdxModule(state).report(NONCE, identity)


def test_layout_offset_by_offset(state: TdxState, identity: TdIdentity, raw: bytes) -> None:
    assert len(raw) == 1024
    assert raw[0:4] == bytes((0x81, 0, 1, 0))  # TDX, subtype 0, version 1 (SERVTD_HASH)
    assert raw[4:16] == bytes(12)
    assert raw[16:32] == state.sgx.cpu_svn
    assert raw[32:80] == hashlib.sha384(raw[256:495]).digest()  # TEE_TCB_INFO_HASH
    assert raw[80:128] == hashlib.sha384(raw[512:1024]).digest()  # TEE_INFO_HASH
    assert raw[128:192] == NONCE  # REPORTDATA
    assert raw[192:224] == bytes(32)
    # TEE_TCB_INFO
    module = state.tee_tcb_info
    assert int.from_bytes(raw[256:264], "little") == 0x3FFFE  # bytes 8..144 valid
    assert raw[264:280] == module.tee_tcb_svn
    assert raw[280:328] == module.mr_seam
    assert raw[328:376] == module.mr_signer_seam == bytes(48)
    assert raw[376:384] == module.attributes
    assert raw[384:400] == module.tee_tcb_svn2
    assert raw[400:512] == bytes(112)  # TEE_TCB_INFO reserved, then 17 reserved bytes
    # TDINFO
    assert int.from_bytes(raw[512:520], "little") == identity.td_attributes
    assert int.from_bytes(raw[520:528], "little") == identity.xfam == 0x206E7
    assert raw[528:576] == identity.mrtd == tdx_sim.measure_payload(b"tdx payload")
    assert raw[576:624] == bytes(48)  # MRCONFIGID
    assert raw[624:672] == b"\x0a" * 48  # MROWNER
    assert raw[672:720] == bytes(48)  # MROWNERCONFIG
    assert raw[720:912] == bytes(48) + b"\x01" * 48 + bytes(48) + b"\x03" * 48
    assert raw[912:1024] == bytes(112)  # SERVTD_HASH, reserved


def test_mac_is_hmac_sha256_under_the_documented_key(state: TdxState, raw: bytes) -> None:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None,
        info=b"attestcall-sim TDX REPORTMAC key v1" + state.sgx.cpu_svn,
    ).derive(state.sgx.cpu_secret)  # fmt: skip
    assert raw[224:256] == hmac.new(key, raw[:224], hashlib.sha256).digest()
    TdReport.unpack(raw).check(state.sgx.cpu_secret)
    with pytest.raises(TdReportError, match="MAC"):
        TdReport.unpack(raw).check(bytes(32))  # another CPU


def test_parse_roundtrip(raw: bytes, identity: TdIdentity) -> None:
    report = TdReport.unpack(raw)
    assert report.report_data == NONCE
    assert report.td_info == identity.td_info()
    assert report.td_info.pack() == raw[512:]
    assert report.tee_tcb_info.pack() == raw[256:495]
    body = report.quote_body(td15=True)
    assert (body.mr_td, body.rtmr3, body.report_data) == (identity.mrtd, b"\x03" * 48, NONCE)
    assert body.tee_tcb_svn2 == report.tee_tcb_info.tee_tcb_svn2
    assert report.quote_body(td15=False).size == 584


@pytest.mark.parametrize("size", [0, 1023, 1025])
def test_wrong_size_is_not_a_tdreport(raw: bytes, size: int) -> None:
    with pytest.raises(TdReportError, match="1024"):
        TdReport.unpack((raw * 2)[:size])


def test_another_report_type_is_refused(raw: bytes) -> None:
    with pytest.raises(TdReportError, match="REPORTTYPE"):
        TdReport.unpack(b"\x00" + raw[1:])  # an SGX type


@pytest.mark.parametrize("size", [0, 63, 65])
def test_reportdata_must_be_64_bytes(state: TdxState, identity: TdIdentity, size: int) -> None:
    with pytest.raises(TdReportError, match="REPORTDATA"):
        SimulatedTdxModule(state).report(bytes(size), identity)


def test_mrtd_follows_the_payload_and_debug_is_off() -> None:
    a, b = TdIdentity.for_payload(b"payload a"), TdIdentity.for_payload(b"payload b")
    assert a.mrtd != b.mrtd and len(a.mrtd) == 48
    assert a.mrtd == hashlib.sha384(b"attestcall-sim MRTD v1\x00payload a").digest()
    assert not a.debug
    assert a.td_attributes == TD_ATTR_SEPT_VE_DISABLE
    debug = a.replace(debug=True)
    assert debug.debug and debug.td_attributes == TD_ATTR_SEPT_VE_DISABLE | TD_ATTR_DEBUG
    assert not debug.replace(debug=False).debug
    assert a.replace(mrowner=None) is a


@pytest.mark.parametrize(
    "overrides",
    [{"rtmr0": bytes(47)}, {"mrconfigid": "00" * 48}, {"xfam": -1}, {"td_attributes": 1 << 64}],
)
def test_bad_identity_values_are_refused(overrides: dict) -> None:
    with pytest.raises(TdReportError):
        TdIdentity.for_payload(b"x", **overrides)


def test_state_is_private_and_registered(state: TdxState) -> None:
    assert simstate.platforms()["tdx"] is registry().get("tdx").sim_state
    folder = state.folder
    assert folder.name == "tdx" and folder.parent == state.sgx.folder.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "td_qe_attestation.key.pem").stat().st_mode) == 0o600
    assert tdx_sim.load_state(folder.parent) is state  # cached
    assert state.qe_identity.isv_prod_id == 2
    assert "Intel TDX (simulated)" in tdx_sim.describe_state(folder)


def test_a_state_for_another_sgx_platform_is_refused(state: TdxState, tmp_path) -> None:
    other_home = tmp_path / "home"
    other = tdx_sim.load_state(other_home)
    # Move this TDX state next to another SGX platform: its PCK is not the one recorded.
    shutil.rmtree(other_home / "tdx")
    shutil.copytree(state.folder, other_home / "tdx")
    with pytest.raises(SimStateError, match="another simulated SGX platform"):
        tdx_sim.read_state(other_home / "tdx", other.sgx)


@pytest.mark.parametrize("td15", [False, True])
def test_sliced_body_is_the_parsed_body(raw: bytes, td15: bool) -> None:
    assert quote_body_bytes(raw, td15) == TdReport.unpack(raw).quote_body(td15).pack()


def test_check_report_agrees_with_the_parsed_check(state: TdxState, raw: bytes) -> None:
    check_report(raw, state.sgx.cpu_secret)
    for offset in (0, 5, 200, 500, 224, 300, 700):
        altered = bytearray(raw)
        altered[offset] ^= 0x80
        with pytest.raises(TdReportError):
            check_report(bytes(altered), state.sgx.cpu_secret)
        with pytest.raises(TdReportError):
            TdReport.unpack(bytes(altered)).check(state.sgx.cpu_secret)
