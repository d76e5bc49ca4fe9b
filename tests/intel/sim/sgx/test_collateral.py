"""The simulated SGX platform's collateral: its format, signatures, chains, CRLs, and an
independent verifier's (dcap-qvl's) agreement."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from attestcall.intel.formats.quote import signature_to_der
from attestcall.intel.sim.sgx import (
    EnclaveIdentity,
    QuotingEnclave,
    SgxState,
    SimulatedCpu,
    load_state,
)
from attestcall.intel.sim.sgx.collateral import FIELDS, collateral, collateral_json
from tests import paths

VECTOR = json.loads(
    (paths.DATA / "intel/sgx_quote_v3.collateral.json").read_text()
)
ISSUED = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
NONCE = hashlib.sha512(b"collateral nonce").digest()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> SgxState:
    return load_state(tmp_path_factory.getbasetemp() / "attestcall-home")


@pytest.fixture(scope="module")
def produced(state: SgxState) -> dict[str, str]:
    return json.loads(collateral_json(state, issued=ISSUED))


@pytest.fixture(scope="module")
def quote(state: SgxState) -> bytes:
    cpu, qe = SimulatedCpu(state), QuotingEnclave(state)
    identity = EnclaveIdentity.for_payload(b"collateral payload", state)
    return qe.quote(cpu.ereport(qe.target_info(), NONCE, identity))


def stamp(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_raw(cert: x509.Certificate, signature_hex: str, text: str) -> None:
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signature = signature_to_der(bytes.fromhex(signature_hex))
    key.verify(signature, text.encode(), ec.ECDSA(hashes.SHA256()))


def pem_chain(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode())


# ------------------------------------------------------------------------------ format


def test_fields_are_the_vectors(produced: dict[str, str]) -> None:
    assert list(produced) == list(VECTOR) == list(FIELDS)
    assert all(isinstance(value, str) for value in produced.values())
    for name in ("root_ca_crl", "pck_crl", "tcb_info_signature", "qe_identity_signature"):
        bytes.fromhex(produced[name])
    assert len(bytes.fromhex(produced["tcb_info_signature"])) == 64
    assert len(bytes.fromhex(produced["qe_identity_signature"])) == 64


def test_tcb_info_is_intels_v3_shape(state: SgxState, produced: dict[str, str]) -> None:
    text = produced["tcb_info"]
    info = json.loads(text)
    vector = json.loads(VECTOR["tcb_info"])
    assert list(info) == list(vector)  # Intel's key order
    assert text == json.dumps(info, separators=(",", ":"))  # compact, as Intel signs it
    assert info["id"] == "SGX" and info["version"] == 3 and info["tcbType"] == 0
    assert info["fmspc"] == state.fmspc.hex().upper() == "00906ED50000"
    assert info["pceId"] == state.pce_id.hex().upper()
    assert isinstance(info["tcbEvaluationDataNumber"], int)
    assert info["issueDate"] == stamp(ISSUED)
    assert info["nextUpdate"] == stamp(ISSUED + dt.timedelta(days=30))
    levels = info["tcbLevels"]
    assert [list(level) for level in levels][0] == ["tcb", "tcbDate", "tcbStatus"]
    assert list(levels[0]["tcb"]) == list(vector["tcbLevels"][0]["tcb"])
    top = levels[0]
    pck_tcb = state.pck_extension.tcb
    assert top["tcbStatus"] == "UpToDate"
    assert [c["svn"] for c in top["tcb"]["sgxtcbcomponents"]] == list(pck_tcb.comp_svns)
    assert top["tcb"]["pcesvn"] == pck_tcb.pce_svn
    for level in levels[1:]:
        assert level["tcbStatus"] != "UpToDate"
        assert level["advisoryIDs"]


def test_qe_identity_is_intels_v2_shape(state: SgxState, produced: dict[str, str]) -> None:
    text = produced["qe_identity"]
    identity = json.loads(text)
    assert list(identity) == list(json.loads(VECTOR["qe_identity"]))
    assert text == json.dumps(identity, separators=(",", ":"))
    qe = state.qe_identity
    assert identity["id"] == "QE" and identity["version"] == 2
    assert identity["mrsigner"] == qe.mrsigner.hex().upper()
    assert identity["isvprodid"] == qe.isv_prod_id
    assert identity["miscselect"] == "00000000" and identity["miscselectMask"] == "FFFFFFFF"
    # The vector's masks: MODE64BIT ignored, XFRM ignored.
    assert identity["attributesMask"] == json.loads(VECTOR["qe_identity"])["attributesMask"]
    attributes = int.from_bytes(bytes.fromhex(identity["attributes"]), "little")
    mask = int.from_bytes(bytes.fromhex(identity["attributesMask"]), "little")
    assert attributes == int.from_bytes(qe.attributes, "little") & mask
    assert identity["tcbLevels"][0] == {
        "tcb": {"isvsvn": qe.isv_svn},
        "tcbDate": identity["tcbLevels"][0]["tcbDate"],
        "tcbStatus": "UpToDate",
    }
    assert identity["issueDate"] == stamp(ISSUED)
    assert identity["nextUpdate"] == stamp(ISSUED + dt.timedelta(days=30))


def test_issued_defaults_to_now(state: SgxState) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    info = json.loads(collateral(state)["tcb_info"])
    after = dt.datetime.now(dt.UTC)
    issued = dt.datetime.fromisoformat(info["issueDate"].replace("Z", "+00:00"))
    assert before <= issued <= after


def test_naive_issued_is_refused(state: SgxState) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        collateral(state, issued=dt.datetime(2025, 1, 1))


# -------------------------------------------------------------------- signatures, chains


@pytest.mark.parametrize("member", ["tcb_info", "qe_identity"])
def test_signatures_cover_the_exact_text(
    state: SgxState, produced: dict[str, str], member: str
) -> None:
    chain = pem_chain(produced[f"{member}_issuer_chain"])
    assert chain[0] == state.tcb_signing_cert
    verify_raw(chain[0], produced[f"{member}_signature"], produced[member])
    reserialised = json.dumps(json.loads(produced[member]), indent=1)
    with pytest.raises(InvalidSignature):
        verify_raw(chain[0], produced[f"{member}_signature"], reserialised)


@pytest.mark.parametrize(
    ("member", "leaf"),
    [("tcb_info_issuer_chain", "tcb_signing_cert"),
     ("qe_identity_issuer_chain", "tcb_signing_cert"),
     ("pck_crl_issuer_chain", "platform_ca_cert")],
)  # fmt: skip
def test_chains_end_at_the_simulated_root(
    state: SgxState, produced: dict[str, str], member: str, leaf: str
) -> None:
    chain = pem_chain(produced[member])
    assert chain == [getattr(state, leaf), state.root_cert]
    assert "SIMULATED" in state.root_cert.subject.rfc4514_string()
    chain[0].verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(chain[1])


def crl_of(hex_der: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(bytes.fromhex(hex_der))


def check_crl(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, validity: dt.timedelta
) -> None:
    assert crl.issuer == issuer.subject
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert isinstance(crl.signature_hash_algorithm, hashes.SHA256)
    assert crl.last_update_utc == ISSUED
    assert crl.next_update_utc == ISSUED + validity
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert crl.public_bytes(Encoding.DER)[:1] == b"\x30"


def test_crls_are_signed_by_their_cas_and_empty(state: SgxState, produced: dict[str, str]) -> None:
    root_crl, pck_crl = crl_of(produced["root_ca_crl"]), crl_of(produced["pck_crl"])
    check_crl(root_crl, state.root_cert, dt.timedelta(days=365))
    check_crl(pck_crl, state.platform_ca_cert, dt.timedelta(days=30))
    assert len(root_crl) == 0 and len(pck_crl) == 0
    assert not pck_crl.is_signature_valid(state.root_cert.public_key())  # type: ignore[arg-type]
    # The vector's CRLs have the same shape: version 2, CRL number then AKI.
    vector_crl = crl_of(VECTOR["pck_crl"])
    assert [e.oid for e in vector_crl.extensions] == [e.oid for e in pck_crl.extensions]


def test_revoked_pck_crl_lists_the_pck(state: SgxState) -> None:
    revoked = collateral(state, issued=ISSUED, revoked_pck=True)
    crl = crl_of(revoked["pck_crl"])
    check_crl(crl, state.platform_ca_cert, dt.timedelta(days=30))
    entry = crl.get_revoked_certificate_by_serial_number(state.pck_cert.serial_number)
    assert entry is not None and len(crl) == 1
    assert entry.revocation_date_utc == ISSUED


# -------------------------------------------------------------- an independent verifier


def dcap_verify(
    quote: bytes, produced: dict[str, str], state: SgxState, at: dt.datetime
) -> dcap_qvl.VerifiedReport:
    return dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(json.dumps(produced)),
        state.root_cert.public_bytes(Encoding.DER),
        int(at.timestamp()),
    )


def test_dcap_qvl_accepts_a_simulated_quote(
    quote: bytes, produced: dict[str, str], state: SgxState
) -> None:
    report = dcap_verify(quote, produced, state, ISSUED + dt.timedelta(minutes=5))
    assert report.status == "UpToDate"
    assert report.advisory_ids == []


def test_dcap_qvl_rejects_a_tampered_quote(
    quote: bytes, produced: dict[str, str], state: SgxState
) -> None:
    report_data_offset = 48 + 320  # header, then REPORTDATA at 320 in the report body
    tampered = bytearray(quote)
    tampered[report_data_offset] ^= 1
    with pytest.raises(ValueError, match="report signature is invalid"):
        dcap_verify(bytes(tampered), produced, state, ISSUED + dt.timedelta(minutes=5))


def test_dcap_qvl_rejects_a_tampered_tcb_info(
    quote: bytes, produced: dict[str, str], state: SgxState
) -> None:
    forged = dict(produced, tcb_info=produced["tcb_info"].replace('"tcbType":0', '"tcbType":0 '))
    assert json.loads(forged["tcb_info"]) == json.loads(produced["tcb_info"])  # same JSON
    with pytest.raises(ValueError, match="Signature is invalid for tcb_info"):
        dcap_verify(quote, forged, state, ISSUED + dt.timedelta(minutes=5))


def test_dcap_qvl_rejects_after_next_update(
    quote: bytes, produced: dict[str, str], state: SgxState
) -> None:
    with pytest.raises(ValueError, match="TCBInfo expired"):
        dcap_verify(quote, produced, state, ISSUED + dt.timedelta(days=30, seconds=1))


def test_dcap_qvl_rejects_a_revoked_pck(quote: bytes, state: SgxState) -> None:
    revoked = collateral(state, issued=ISSUED, revoked_pck=True)
    with pytest.raises(ValueError, match="(?i)revoked"):
        dcap_verify(quote, revoked, state, ISSUED + dt.timedelta(minutes=5))


def test_dcap_qvl_rejects_another_root(
    quote: bytes, produced: dict[str, str], state: SgxState
) -> None:
    with pytest.raises(ValueError, match="InvalidCrlSignatureForPublicKey"):
        dcap_qvl.verify(
            quote,
            dcap_qvl.QuoteCollateralV3.from_json(json.dumps(produced)),
            int((ISSUED + dt.timedelta(minutes=5)).timestamp()),
        )  # dcap-qvl's built-in root is Intel's: the simulated chain must not pass


def test_attestcalls_verifier_agrees(quote: bytes, state: SgxState) -> None:
    from attestcall.verifier.api import verify

    at = ISSUED + dt.timedelta(minutes=5)
    verdict = verify(quote, collateral=collateral_json(state, issued=ISSUED), at=at,
                     trust_simulated=True)  # fmt: skip
    assert verdict.accepted, verdict.reasons
    assert verdict.tcb_status == "UpToDate" and verdict.simulated
    revoked = collateral(state, issued=ISSUED, revoked_pck=True)
    verdict = verify(quote, collateral=revoked, at=at, trust_simulated=True)
    assert not verdict.accepted
    assert any("revoked" in reason for reason in verdict.reasons)


# ------------------------------------------------------------------------------- the CLI


def test_cli_writes_the_collateral(state: SgxState, tmp_path: Path) -> None:
    out = tmp_path / "collateral.json"
    env = dict(os.environ, ATTESTCALL_HOME=str(state.folder.parent))
    done = subprocess.run(
        [sys.executable, "-m", "attestcall", "sim", "collateral", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    written = json.loads(out.read_text())
    assert list(written) == list(FIELDS)
    verify_raw(state.tcb_signing_cert, written["tcb_info_signature"], written["tcb_info"])
    info = json.loads(written["tcb_info"])
    issued = dt.datetime.fromisoformat(info["issueDate"].replace("Z", "+00:00"))
    assert abs(issued - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
