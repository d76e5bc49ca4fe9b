"""The simulated PSP: sequence numbers, refusals, and reports filled as firmware fills them."""

from __future__ import annotations

import datetime as dt

import pytest

import attestcall
from attestcall.amd.formats import guest_message as gm
from attestcall.amd.formats import report as snp
from attestcall.amd.sim import snp as snp_sim
from attestcall.amd.sim.snp.launch import NO_MIGRATION_AGENT
from tests.amd.sim.snp.conftest import make_psp

KEY = bytes(range(32))
NONCE = bytes(range(0x80, 0xC0))


def request(seqno: int, report_data: bytes = NONCE, key: bytes = KEY, **kw: int) -> bytes:
    body = gm.ReportRequest(report_data, **kw).pack()
    return gm.seal(key, seqno, gm.MSG_REPORT_REQ, body)


def answer(response: bytes, seqno: int, key: bytes = KEY) -> tuple[int, bytes]:
    header = gm.parse_header(response)
    assert header.seqno == seqno and header.msg_type == gm.MSG_REPORT_RSP
    return gm.unpack_report_response(gm.open_payload(key, response, header))


def test_responses_carry_the_next_sequence_number(milan) -> None:
    psp = make_psp(milan)
    for seqno in (1, 3, 5):
        status, report = answer(psp.guest_request(request(seqno)), seqno + 1)
        assert status == 0 and snp.parse(report).report_data == NONCE


def test_a_replayed_request_is_refused(milan) -> None:
    psp = make_psp(milan)
    first = request(1)
    psp.guest_request(first)
    with pytest.raises(snp_sim.GuestRequestRefused, match="replayed"):
        psp.guest_request(first)
    psp.guest_request(request(3))  # the refusal did not move the count


@pytest.mark.parametrize("seqno", [2, 3, 99])
def test_an_out_of_order_request_is_refused(milan, seqno: int) -> None:
    psp = make_psp(milan)
    with pytest.raises(snp_sim.GuestRequestRefused, match="out-of-order"):
        psp.guest_request(request(seqno))
    psp.guest_request(request(1))


def test_a_request_under_another_key_or_tampered_is_refused(milan) -> None:
    psp = make_psp(milan)
    with pytest.raises(snp_sim.GuestRequestRefused, match="tag"):
        psp.guest_request(request(1, key=bytes(31) + b"\x01"))
    tampered = bytearray(request(1))
    tampered[0x70] ^= 0x80
    with pytest.raises(snp_sim.GuestRequestRefused):
        psp.guest_request(bytes(tampered))
    psp.guest_request(request(1))


def test_bad_parameters_get_an_error_status(milan) -> None:
    psp = make_psp(milan)
    assert answer(psp.guest_request(request(1, vmpl=4)), 2) == (gm.STATUS_INVALID_PARAM, b"")
    status, _ = answer(psp.guest_request(request(3, key_sel=gm.KEY_SEL_VLEK)), 4)
    assert status == gm.STATUS_INVALID_KEY  # no VLEK loaded on this chip
    status, _ = answer(psp.guest_request(request(5, key_sel=gm.KEY_SEL_VCEK)), 6)
    assert status == gm.STATUS_SUCCESS


def test_the_report_is_filled_as_firmware_fills_it(milan) -> None:
    launch = snp_sim.GuestLaunch.for_payload(
        b"the payload", host_data=b"H" * 32, family_id=b"F" * 16, image_id=b"I" * 16)
    psp = snp_sim.SimulatedPsp(milan.chip, launch, KEY, milan.signer)
    report = snp.parse(psp.report(NONCE, vmpl=1))
    tcb = snp_sim.product("milan").default_tcb.encode("Milan")
    assert report.version == 3 and report.guest_svn == 0
    assert report.policy == 0x30000  # SMT allowed, reserved bit 17, ABI 0.0, no debug
    assert not report.debug
    assert (report.family_id, report.image_id, report.host_data) == (b"F" * 16, b"I" * 16,
                                                                      b"H" * 32)
    assert report.vmpl == 1 and report.signature_algo == 1
    assert report.current_tcb == report.reported_tcb == report.committed_tcb == tcb
    assert report.launch_tcb == tcb
    assert report.platform_info == 1 and report.smt_enabled
    assert report.signing_key == snp.SIGNING_KEY_VCEK and not report.mask_chip_key
    assert (report.cpuid_fam_id, report.cpuid_mod_id) == (0x19, 0x01)
    assert report.chip_id == milan.chip.chip_id and len(report.chip_id) == 64
    assert report.report_data == NONCE
    assert report.measurement == snp_sim.measure_payload(b"the payload")
    assert report.report_id == launch.report_id and report.report_id_ma == NO_MIGRATION_AGENT
    assert (report.current_major, report.current_minor) == (1, 55)
    assert report.launch_mit_vector == report.current_mit_vector == 0


def test_version_5_and_debug() -> None:
    platform = snp_sim.snp_platform("genoa")
    launch = snp_sim.GuestLaunch.for_payload(b"x", policy=snp_sim.GuestPolicy(debug=True))
    psp = snp_sim.SimulatedPsp(platform.chip, launch, KEY, platform.signer, report_version=5)
    report = snp.parse(psp.report(NONCE))
    assert report.version == 5 and report.debug and report.cpuid_product() == "Genoa"
    with pytest.raises(ValueError):
        snp_sim.SimulatedPsp(platform.chip, launch, KEY, platform.signer, report_version=4)


def test_the_signature_is_little_endian_r_and_s_over_the_signed_bytes(milan) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    raw = make_psp(milan).report(NONCE)
    report = snp.parse(raw)
    milan.vek.public_key().verify(report.signature_der(), raw[:0x2A0],
                                  ec.ECDSA(hashes.SHA384()))
    assert not any(raw[0x2A0 + 48:0x2A0 + 72]) and not any(raw[0x2A0 + 144:])


def test_two_payloads_two_measurements(milan) -> None:
    one = snp.parse(make_psp(milan, b"one").report(NONCE)).measurement
    two = snp.parse(make_psp(milan, b"two").report(NONCE)).measurement
    assert one != two and len(one) == 48


def test_turin_reports_verify_with_an_eight_byte_chip_id() -> None:
    platform = snp_sim.snp_platform("turin")
    raw = make_psp(platform).report(NONCE)
    report = snp.parse(raw)
    assert len(platform.chip.chip_id) == 8
    assert report.chip_id == platform.chip.chip_id + bytes(56)
    turin_tcb = report.tcb("reported_tcb", "Turin")
    assert turin_tcb.fmc == 1 and turin_tcb.microcode == 9
    verdict = attestcall.verify(raw + platform.certificate_table, trust_simulated=True,
                                nonce=NONCE)
    assert verdict.accepted, verdict.reasons


def test_a_new_tcb_gives_a_new_vcek_and_the_report_says_so() -> None:
    old = snp_sim.snp_platform("milan")
    tcb = snp_sim.Tcb(bootloader=4, tee=0, snp=23, microcode=214)
    new = snp_sim.snp_platform("milan", tcb=tcb)
    assert new.vek.public_key() != old.vek.public_key()
    assert snp_sim.snp_platform("milan").vek.public_key() == old.vek.public_key()  # derived
    evidence = make_psp(new).report(NONCE) + new.certificate_table
    verdict = attestcall.verify(evidence, trust_simulated=True)
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["reported_tcb"]["snp"] == 23
    # the old VCEK does not match the new report
    mixed = make_psp(new).report(NONCE) + old.certificate_table
    assert not attestcall.verify(mixed, trust_simulated=True).accepted


@pytest.mark.parametrize("product", ["milan", "genoa", "turin"])
def test_vlek_reports_verify(product: str) -> None:
    platform = snp_sim.snp_platform(product, vlek=True)
    raw = make_psp(platform).report(NONCE)
    assert snp.parse(raw).signing_key == snp.SIGNING_KEY_VLEK
    at = dt.datetime.now(dt.UTC)
    verdict = attestcall.verify(raw + platform.certificate_table, trust_simulated=True, at=at)
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["signer_info"]["signing_key"] == snp.SIGNING_KEY_VLEK
