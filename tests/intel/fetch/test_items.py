"""attestcall.intel.fetch.items: each PCS/PCCS answer checked on its own before a cache
keeps it: Intel's real answers pass, anything else (garbage, a signature that does not
verify, another item's answer, an untrusted root) is refused with its reason."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.errors import CollateralError
from attestcall.intel.fetch import items
from attestcall.intel.formats.collateral import Collateral
from attestcall.intel.sim.sgx import load_state
from attestcall.intel.sim.sgx.collateral import collateral as sim_collateral
from attestcall.intel.sim.sgx.collateral import pck_crl
from tests import paths
from tests.fakes.collateral_server import chain_header, signed_body
from tests.fakes.whitespace_der import ending_in_whitespace

DATA = paths.DATA / "intel"
SGX = json.loads((DATA / "sgx_quote_v3.collateral.json").read_text())
TDX = json.loads((DATA / "tdx_quote_v4.collateral.json").read_text())
UTC = dt.UTC


def tcb_answer(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return (signed_body("tcbInfo", fields["tcb_info"], fields["tcb_info_signature"]),
            {"TCB-Info-Issuer-Chain": chain_header(fields["tcb_info_issuer_chain"])})


def qe_answer(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return (signed_body("enclaveIdentity", fields["qe_identity"],
                        fields["qe_identity_signature"]),
            {"SGX-Enclave-Identity-Issuer-Chain":
             chain_header(fields["qe_identity_issuer_chain"])})


def crl_answer(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return (bytes.fromhex(fields["pck_crl"]),
            {"SGX-PCK-CRL-Issuer-Chain": chain_header(fields["pck_crl_issuer_chain"])})


# ------------------------------------------------------------------ Intel's answers pass


def test_intels_answers_pass_and_say_their_next_update():
    body, headers = tcb_answer(SGX)
    kept = items.check("tcb", "sgx/00A067110000", body, headers)
    assert kept.body == body and kept.headers == headers
    assert kept.next_update == dt.datetime(2025, 7, 19, 10, 56, 11, tzinfo=UTC)
    body, headers = qe_answer(TDX)
    kept = items.check("qeidentity", "tdx", body, headers)
    assert kept.next_update == dt.datetime(2025, 7, 19, 10, 32, 27, tzinfo=UTC)
    body, headers = crl_answer(SGX)
    kept = items.check("pckcrl", "processor", body, headers)
    assert kept.body == body and kept.next_update == dt.datetime(2025, 7, 19, 10, 23, 18,
                                                                 tzinfo=UTC)
    # The root CA CRL as a PCCS serves it (hex), as DER, or as PEM: kept as DER.
    der = bytes.fromhex(SGX["root_ca_crl"])
    for served in (SGX["root_ca_crl"].encode(), der):
        assert items.check("rootcacrl", "", served, {}).body == der


def test_an_older_header_name_is_kept_under_the_v4_name():
    body, headers = tcb_answer(SGX)
    old = {"SGX-TCB-Info-Issuer-Chain": headers["TCB-Info-Issuer-Chain"]}
    assert items.check("tcb", "sgx/00A067110000", body, old).headers == headers


def test_a_collateral_document_is_the_four_answers_a_pccs_gives():
    answers = items.answers_of(Collateral.from_dict(TDX))
    assert [(kind, key) for kind, key, _, _ in answers] == [
        ("pckcrl", "platform"), ("rootcacrl", ""), ("tcb", "tdx/B0C06F000000"),
        ("qeidentity", "tdx")]
    for kind, key, body, headers in answers:
        items.check(kind, key, body, headers)
    assert answers[2][2:] == tcb_answer(TDX)
    signed = items.signed_text("tcb", answers[2][2], answers[2][3])
    assert (signed.text, signed.signature, signed.issuer_chain) == (
        TDX["tcb_info"], TDX["tcb_info_signature"], TDX["tcb_info_issuer_chain"])


# ------------------------------------------------------------------ everything else fails


def tampered(fields: dict[str, str], **changes: str) -> dict[str, str]:
    return {**fields, **changes}


@pytest.mark.parametrize("case, kind, key, answer, reason", [
    ("garbage", "tcb", "sgx/00A067110000",
     (b"<html>busy</html>", tcb_answer(SGX)[1]), "not a JSON object"),
    ("a signature over other bytes", "tcb", "sgx/00A067110000",
     tcb_answer(tampered(SGX, tcb_info=SGX["tcb_info"].replace('"version":3',
                                                               '"version": 3'))),
     "signature does not verify"),
    ("another signature", "qeidentity", "sgx",
     qe_answer(tampered(SGX, qe_identity_signature=SGX["tcb_info_signature"])),
     "signature does not verify"),
    ("another FMSPC", "tcb", "sgx/00A067110001", tcb_answer(SGX), "FMSPC 00A067110000"),
    ("another TEE", "tcb", "tdx/00A067110000", tcb_answer(SGX), "SGX's, not TDX's"),
    ("the SGX QE for TDX", "qeidentity", "tdx", qe_answer(SGX), "QE's, not TD_QE's"),
    ("no issuer chain", "tcb", "sgx/00A067110000", (tcb_answer(SGX)[0], {}),
     "no TCB-Info-Issuer-Chain"),
    ("a chain that is not PEM", "tcb", "sgx/00A067110000",
     (tcb_answer(SGX)[0], {"TCB-Info-Issuer-Chain": "bm90IHBlbQ"}), "not a PEM"),
    ("a chain that is not encoded", "tcb", "sgx/00A067110000",
     (tcb_answer(SGX)[0], {"TCB-Info-Issuer-Chain": "-----BEGIN CERTIFICATE----- x"}),
     "not URL-encoded"),
    ("the PCK CRL's chain", "tcb", "sgx/00A067110000",
     (tcb_answer(SGX)[0], {"TCB-Info-Issuer-Chain": chain_header(SGX["pck_crl_issuer_chain"])}),
     "signature does not verify"),
    ("the other PCK CA's CRL", "pckcrl", "platform", crl_answer(SGX), "PCK Platform CA"),
    ("a CRL with the wrong chain", "pckcrl", "processor",
     crl_answer(tampered(SGX, pck_crl_issuer_chain=TDX["pck_crl_issuer_chain"])),
     "not issued by its issuer chain"),
    ("a PCK CRL as the root CA CRL", "rootcacrl", "", (bytes.fromhex(SGX["pck_crl"]), {}),
     "not issued and signed by a trusted Intel root"),
    ("a CRL that is not one", "rootcacrl", "", (b"0\x03\x02\x01\x00", {}), "not a CRL"),
])
def test_anything_but_the_item_is_refused(case, kind, key, answer, reason):
    body, headers = answer
    with pytest.raises(CollateralError, match=reason):
        items.check(kind, key, body, headers)


def test_simulated_collateral_is_refused_unless_its_root_is_trusted(tmp_path):
    state = load_state(tmp_path / "home")
    fields = sim_collateral(state)
    fmspc = state.fmspc.hex().upper()
    body, headers = tcb_answer(fields)
    with pytest.raises(CollateralError, match="does not end at a trusted Intel root"):
        items.check("tcb", f"sgx/{fmspc}", body, headers)
    assert items.check("tcb", f"sgx/{fmspc}", body, headers, [state.root_cert]).body == body
    # A PCK certificate, passed through by its query: its chain to the (trusted) root.
    chain = state.platform_ca_cert.public_bytes(Encoding.PEM) \
        + state.root_cert.public_bytes(Encoding.PEM)
    pck = state.pck_cert.public_bytes(Encoding.PEM)
    served = {"SGX-PCK-Certificate-Issuer-Chain": chain_header(chain.decode()),
              "SGX-TCBm": "0B0B0202FF010C000000000000000000" + "0D00", "Junk": "x"}
    kept = items.check("pckcert", "cpusvn=..", pck, served, [state.root_cert])
    assert kept.body == pck and kept.next_update == state.pck_cert.not_valid_after_utc
    assert set(kept.headers) == {"SGX-PCK-Certificate-Issuer-Chain", "SGX-TCBm"}
    with pytest.raises(CollateralError, match="trusted Intel root"):
        items.check("pckcert", "cpusvn=..", pck, served)
    with pytest.raises(CollateralError, match="does not hold"):  # the chain skips the CA
        items.check("pckcert", "cpusvn=..", pck, {"SGX-PCK-Certificate-Issuer-Chain":
                    chain_header(state.root_cert.public_bytes(Encoding.PEM).decode())},
                    [state.root_cert])


def test_a_der_crl_whose_signature_ends_in_a_whitespace_byte_passes_whole(tmp_path):
    # Stripped as text, it lost its last byte: "not a CRL", the service's 503 (one
    # simulated PCK CRL in about 43).
    state = load_state(tmp_path / "home")
    headers = crl_answer(sim_collateral(state))[1]
    der = ending_in_whitespace(lambda: pck_crl(state).public_bytes(Encoding.DER))
    kept = items.check("pckcrl", "platform", der, headers, [state.root_cert])
    assert kept.body == der
    assert items.load_crl(der.hex().encode() + b"\n", "CRL").public_bytes(Encoding.DER) \
        == der  # hex, as a PCCS serves it, is still read as text


def test_a_lone_pck_crl_gets_its_issuer_chain_from_the_certificates_given(tmp_path):
    state = load_state(tmp_path / "home")
    crl = Collateral.from_dict(sim_collateral(state)).pck_crl
    with pytest.raises(CollateralError, match="issuer chain is not given"):
        items.crl_answer(crl, [], [state.root_cert])
    kind, key, body, headers = items.crl_answer(crl, [state.platform_ca_cert],
                                                [state.root_cert])
    assert (kind, key) == ("pckcrl", "platform")
    assert items.check(kind, key, body, headers, [state.root_cert]).body == body


# ------------------------------------------------------------------------ keys and URLs


def test_keys_are_canonical_and_checked():
    assert items.tcb_key("tdx", "b0c06f000000") == "tdx/B0C06F000000"
    assert items.tcb_key("sgx", "00A067110000", "early") == "sgx/00A067110000/early"
    assert items.qe_key("sgx", "early") == "sgx/early"
    params = {"qeid": "ab" * 16, "cpusvn": "0b" * 16, "pcesvn": "0d00", "pceid": "0000",
              "encrypted_ppid": "cd" * 384}
    assert items.pckcert_key(params) == (
        f"cpusvn={'0B' * 16}&encrypted_ppid={'CD' * 384}&pceid=0000&pcesvn=0D00"
        f"&qeid={'AB' * 16}")
    for bad in ({**params, "fmspc": "00"}, {**params, "pcesvn": "0d0"},
                {k: v for k, v in params.items() if k != "cpusvn"},
                {k: v for k, v in params.items() if k not in ("qeid", "encrypted_ppid")}):
        with pytest.raises(CollateralError):
            items.pckcert_key(bad)
    for call in (lambda: items.tcb_key("sev", "00A067110000"), lambda: items.tcb_key("sgx", "0"),
                 lambda: items.qe_key("sgx", "late"), lambda: items.pckcrl_key("root")):
        with pytest.raises(CollateralError):
            call()


def test_upstream_urls():
    pccs = "https://pccs.example:8081/sgx/certification/v4/"
    assert items.url(pccs, "pckcrl", "platform") == (
        "https://pccs.example:8081/sgx/certification/v4/pckcrl?ca=platform&encoding=der")
    assert items.url(pccs, "rootcacrl", "") == \
        "https://pccs.example:8081/sgx/certification/v4/rootcacrl"
    assert items.url(pccs, "tcb", "tdx/B0C06F000000/early") == (
        "https://pccs.example:8081/tdx/certification/v4/tcb?fmspc=B0C06F000000&update=early")
    assert items.url(pccs, "qeidentity", "sgx") == \
        "https://pccs.example:8081/sgx/certification/v4/qe/identity"
    assert items.url("https://api.trustedservices.intel.com", "rootcacrl", "") == \
        "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    assert urllib.parse.urlsplit(items.url(pccs, "pckcert", "cpusvn=00")).query == "cpusvn=00"
