"""The simulated TDX platform's collateral: Intel's TDX shapes, signed by the simulated TCB
signing key; dcap-qvl (an independent verifier) and attestcall.verify both accept a
simulated quote with it and reject a tampered one."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import dcap_qvl
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall import verify
from attestcall.intel.formats.quote import signature_to_der
from attestcall.intel.sim.sgx.collateral import collateral_json as sgx_collateral_json
from attestcall.intel.sim.tdx import SimulatedTdxModule, TdIdentity, TdQuotingEnclave, TdxState
from attestcall.intel.sim.tdx.collateral import FIELDS, collateral, collateral_json
from tests import paths

VECTOR = json.loads(
    (paths.DATA / "intel/tdx_quote_v4.collateral.json").read_text()
)
ISSUED = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
AT = ISSUED + dt.timedelta(minutes=5)
NONCE = hashlib.sha512(b"tdx collateral nonce").digest()
REPORT_DATA_V4 = 48 + 520  # header, then REPORTDATA at 520 in the TD 1.0 body


@pytest.fixture(scope="module")
def produced(state: TdxState) -> dict[str, str]:
    return json.loads(collateral_json(state, issued=ISSUED))


@pytest.fixture(scope="module", params=[4, 5], ids=["v4", "v5"])
def quote(request: pytest.FixtureRequest, state: TdxState) -> bytes:
    report = SimulatedTdxModule(state).report(NONCE, TdIdentity.for_payload(b"verified TD"))
    return TdQuotingEnclave(state, request.param).quote(report)


def report_data_offset(quote: bytes) -> int:
    return REPORT_DATA_V4 + (6 if quote[0] == 5 else 0)


def test_fields_and_tcb_info_shape(state: TdxState, produced: dict[str, str]) -> None:
    assert list(produced) == list(FIELDS) == list(VECTOR)
    info = json.loads(produced["tcb_info"])
    vector = json.loads(VECTOR["tcb_info"])
    assert list(info) == list(vector)  # Intel's key order, tdxModule and identities included
    assert produced["tcb_info"] == json.dumps(info, separators=(",", ":"))
    assert info["id"] == "TDX" and info["version"] == 3
    assert info["fmspc"] == state.sgx.fmspc.hex().upper()
    assert info["nextUpdate"] == (ISSUED + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    module = state.tee_tcb_info
    assert info["tdxModule"] == {"mrsigner": "00" * 48, "attributes": "00" * 8,
                                 "attributesMask": "FF" * 8}  # fmt: skip
    [identity] = info["tdxModuleIdentities"]
    assert identity["id"] == f"TDX_{module.tee_tcb_svn[1]:02X}" == "TDX_01"
    assert identity["tcbLevels"][0]["tcb"] == {"isvsvn": module.tee_tcb_svn[0]}
    top = info["tcbLevels"][0]
    assert list(top["tcb"]) == ["sgxtcbcomponents", "pcesvn", "tdxtcbcomponents"]
    pck = state.sgx.pck_extension.tcb
    assert [c["svn"] for c in top["tcb"]["sgxtcbcomponents"]] == list(pck.comp_svns)
    assert top["tcb"]["pcesvn"] == pck.pce_svn
    assert bytes(c["svn"] for c in top["tcb"]["tdxtcbcomponents"]) == module.tee_tcb_svn
    assert top["tcbStatus"] == "UpToDate" and info["tcbLevels"][1]["tcbStatus"] == "OutOfDate"


def test_td_qe_identity_shape(state: TdxState, produced: dict[str, str]) -> None:
    identity = json.loads(produced["qe_identity"])
    vector = json.loads(VECTOR["qe_identity"])
    assert list(identity) == list(vector)
    assert identity["id"] == "TD_QE" and identity["isvprodid"] == 2
    assert identity["mrsigner"] == state.qe_identity.mrsigner.hex().upper()
    for name in ("attributes", "attributesMask", "miscselect", "miscselectMask"):
        assert identity[name] == vector[name]  # the same masked values as Intel's TD QE


def test_signatures_cover_the_exact_texts(state: TdxState, produced: dict[str, str]) -> None:
    key = state.sgx.tcb_signing_cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    for member in ("tcb_info", "qe_identity"):
        signature = signature_to_der(bytes.fromhex(produced[f"{member}_signature"]))
        key.verify(signature, produced[member].encode(), ec.ECDSA(hashes.SHA256()))
    sgx = json.loads(sgx_collateral_json(state.sgx, issued=ISSUED))  # the shared parts
    for member in ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain"):
        assert produced[member] == sgx[member]


def dcap_verify(quote: bytes, fields: dict[str, str], state: TdxState) -> dcap_qvl.VerifiedReport:
    return dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(json.dumps(fields)),
        state.sgx.root_cert.public_bytes(Encoding.DER),
        int(AT.timestamp()),
    )


def test_dcap_qvl_accepts_the_simulated_quote(
    quote: bytes, produced: dict[str, str], state: TdxState
) -> None:
    report = dcap_verify(quote, produced, state)
    assert report.status == "UpToDate"
    assert report.advisory_ids == []


def test_dcap_qvl_rejects_a_tampered_quote(
    quote: bytes, produced: dict[str, str], state: TdxState
) -> None:
    tampered = bytearray(quote)
    tampered[report_data_offset(quote)] ^= 1
    with pytest.raises(ValueError, match="(?i)signature"):
        dcap_verify(bytes(tampered), produced, state)


def test_dcap_qvl_rejects_sgx_collateral_for_a_tdx_quote(
    quote: bytes, state: TdxState
) -> None:
    with pytest.raises(ValueError):
        dcap_verify(quote, json.loads(sgx_collateral_json(state.sgx, issued=ISSUED)), state)


def test_attestcall_verify_accepts_only_when_trusting_simulated(
    quote: bytes, produced: dict[str, str]
) -> None:
    verdict = verify(quote, collateral=produced, at=AT, nonce=NONCE, trust_simulated=True)
    assert verdict.accepted, verdict.reasons
    assert verdict.technology == "tdx" and verdict.tcb_status == "UpToDate"
    assert verdict.simulated
    assert verdict.claims["mrtd"] == TdIdentity.for_payload(b"verified TD").mrtd.hex()
    untrusted = verify(quote, collateral=produced, at=AT, nonce=NONCE)
    assert not untrusted.accepted
    assert any("SIMULATED" in reason for reason in untrusted.reasons)


def test_attestcall_verify_rejects_a_tampered_quote(
    quote: bytes, produced: dict[str, str]
) -> None:
    tampered = bytearray(quote)
    tampered[report_data_offset(quote)] ^= 1
    verdict = verify(bytes(tampered), collateral=produced, at=AT, trust_simulated=True)
    assert not verdict.accepted
    assert any("quote signature" in reason for reason in verdict.reasons)


def test_a_revoked_pck_is_rejected_by_both(quote: bytes, state: TdxState) -> None:
    revoked = collateral(state, issued=ISSUED, revoked_pck=True)
    with pytest.raises(ValueError, match="(?i)revoked"):
        dcap_verify(quote, revoked, state)
    verdict = verify(quote, collateral=revoked, at=AT, trust_simulated=True)
    assert not verdict.accepted and any("revoked" in r for r in verdict.reasons)
