"""`attestcall show` on what attestcall itself makes: the simulators' evidence, a keep's
certificate (and whether its evidence is bound to its key), a keep's CSR, an attestation
service's certificate, and an SEV launch secret, whose private key must never be shown."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from attestcall.amd.formats import report as snp_report
from attestcall.amd.formats.sev_launch import pkcs8
from attestcall.deploy.identity import attest, build_certificate, make_identity
from attestcall.deploy.keys import generate_key, spki_der
from attestcall.intel.formats.quote import Quote
from attestcall.intel.formats.tdx_quote import DcapQuote
from attestcall.keep.platforms import open_keep
from attestcall.service import result as results
from attestcall.service.ca import ServiceCa
from attestcall.show import render, show
from tests.service.helpers import make_csr, verdict_for
from tests.show.helpers import assert_documented, run, shown

KEEPS = {
    "sgx": ("sgx-sim", {"identity": {"isv_prod_id": 7, "isv_svn": 3}}),
    "sgx-debug": ("sgx-sim", {"debug": True}),
    "tdx-v5": ("tdx-sim", {"quote_version": 5, "td_attributes": 1 << 28}),
    "snp-milan": ("snp-sim", {"host_data": bytes(range(32))}),
    "snp-turin-vlek": ("snp-sim", {"product": "turin", "vlek": True, "report_version": 5}),
}
NONCE = bytes(range(64))
PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER


@pytest.fixture(scope="module")
def keeps():
    """Each simulated keep of KEEPS, open for the module (the session's simulated home)."""
    opened = {name: open_keep(tee, b"", **options) for name, (tee, options) in KEEPS.items()}
    try:
        yield {name: keep.source for name, keep in opened.items()}
    finally:
        for keep in opened.values():
            keep.close()


def evidence(keeps, name: str) -> bytes:
    return attest(keeps[name], NONCE)[1]


def test_simulated_sgx_quote(keeps):
    quote = evidence(keeps, "sgx")
    tree = show(quote)
    assert_documented(tree)
    parsed = Quote.parse(quote)
    body = tree["body"]
    assert body["MRENCLAVE"] == parsed.body.mr_enclave.hex()
    assert body["MRSIGNER"] == parsed.body.mr_signer.hex()
    assert (body["ISVPRODID"], body["ISVSVN"]) == (7, 3)
    assert body["REPORTDATA"] == NONCE.hex()
    assert body["ATTRIBUTES"]["FLAGS"]["DEBUG"] is False
    chain = tree["signature_data"]["QE Certification Data"]["PCK Certificate Chain"]
    assert all("SIMULATED" in c["subject"] for c in chain)
    fmspc = tree["signature_data"]["QE Certification Data"]["FMSPC"]
    assert chain[0]["SGX Extensions"]["FMSPC"] == fmspc and len(fmspc) == 12
    debug = show(evidence(keeps, "sgx-debug"))
    assert debug["body"]["ATTRIBUTES"]["FLAGS"]["DEBUG"] is True


def test_simulated_tdx_quote_v5(keeps):
    quote = evidence(keeps, "tdx-v5")
    tree = show(quote)
    assert_documented(tree)
    parsed = DcapQuote.parse(quote)
    assert (tree["kind"], tree["header"]["Version"]) == ("tdx-quote", 5)
    assert tree["body_descriptor"] == {"Type": {"value": 3, "name": "TD report (TDX 1.5)"},
                                       "Size": 648}
    body = tree["body"]
    assert body["MRTD"] == parsed.body.mr_td.hex()
    assert body["MRSERVICETD"] == parsed.body.mr_service_td.hex()
    assert body["TEE_TCB_SVN_2"]["raw"] == parsed.body.tee_tcb_svn2.hex()
    assert body["TDATTRIBUTES"]["SEPT_VE_DISABLE"] and not body["TDATTRIBUTES"]["DEBUG"]
    assert body["REPORTDATA"] == NONCE.hex()
    assert tree["trailing_bytes"] == 0 and tree["size"] == len(quote)


def test_simulated_snp_report_with_its_table(keeps):
    blob = evidence(keeps, "snp-milan")
    tree = show(blob)
    assert_documented(tree)
    parsed = snp_report.parse(blob[:snp_report.REPORT_SIZE])
    report = tree["report"]
    assert report["VERSION"] == parsed.version >= 3
    assert report["MEASUREMENT"] == parsed.measurement.hex()
    assert report["HOST_DATA"] == bytes(range(32)).hex()
    assert report["CPUID_FAM_ID"] == "0x19"
    assert tree["product"] == {"name": "Milan", "from": "CPUID_FAM_ID/CPUID_MOD_ID"}
    assert [e["name"] for e in tree["certificate_table"]] == ["VCEK", "ASK", "ARK"]
    vcek = tree["certificate_table"][0]["certificate"]
    assert vcek["AMD Extensions"]["snpSPL"] == report["REPORTED_TCB"]["SNP"]
    assert "SIMULATED" in vcek["subject"]


def test_simulated_turin_vlek_report_v5(keeps):
    tree = show(evidence(keeps, "snp-turin-vlek"))
    report = tree["report"]
    assert report["VERSION"] == 5 and report["CPUID_FAM_ID"] == "0x1a"
    assert report["SIGNING_KEY"] == {"value": 1, "name": "VLEK"}
    assert tree["product"]["name"] == "Turin"
    assert "FMC" in report["REPORTED_TCB"]  # Turin's TCB layout
    assert "LAUNCH_MIT_VECTOR" in report and "CURRENT_MIT_VECTOR" in report
    table = tree["certificate_table"]
    assert [e["name"] for e in table] == ["VLEK", "ASK", "ARK"]
    assert "cspId" in table[0]["certificate"]["AMD Extensions"]


@pytest.mark.parametrize("name", ["sgx", "tdx-v5", "snp-milan"])
def test_a_keeps_certificate_and_its_binding(keeps, tmp_path, capsys, name):
    identity = make_identity(keeps[name])
    path = tmp_path / "keep.pem"
    path.write_bytes(identity.certificate.public_bytes(PEM))
    tree = shown(capsys, path)
    assert_documented(tree)
    assert tree["kind"] == "keep-certificate"
    assert tree["binding"] == {"holds": True, "detail": None}
    carried = tree["evidence"]
    assert carried["technology"] == name.split("-")[0]
    assert carried["size"] == len(identity.evidence)
    alone = show(identity.evidence)  # the evidence shown on its own, less its encoding
    assert carried["decoded"] == {k: v for k, v in alone.items() if k != "encoding"}
    assert carried["media_type"].startswith("application/vnd.attestcall.evidence.")
    code, text, _ = run(capsys, path)
    assert code == 0 and "binding:\n  holds: yes" in text


def test_evidence_bound_to_another_key_is_shown_unbound(keeps):
    identity = make_identity(keeps["snp-milan"])
    other = build_certificate(generate_key("p384"), identity.technology, identity.evidence)
    tree = show(other.public_bytes(DER))
    assert tree["kind"] == "keep-certificate"
    assert tree["binding"]["holds"] is False
    assert "not bound to this certificate's key" in tree["binding"]["detail"]
    assert tree["evidence"]["decoded"]["report"]["MEASUREMENT"]  # still decoded


def test_a_keep_without_a_tee_binds_nothing():
    with open_keep("none", b"") as keep:
        identity = make_identity(keep.source)
    tree = show(identity.certificate.public_bytes(DER))
    assert tree["kind"] == "keep-certificate"
    assert tree["evidence"] == {"technology": "none", "technology_id": 0,
                                "media_type": tree["evidence"]["media_type"], "size": 0,
                                "decoded": None}
    assert tree["binding"]["holds"] is False and "NONE" in tree["binding"]["detail"]


def test_a_plain_certificate_has_no_evidence():
    key = generate_key("ed25519")
    cert = build_certificate(key, None, b"", name="plain")
    tree = show(cert.public_bytes(DER))
    assert_documented(tree)
    assert tree["kind"] == "certificate"
    assert tree["certificate"]["subject"] == "CN=plain"
    assert tree["certificate"]["public_key"]["algorithm"] == "Ed25519"
    assert tree["certificate"]["public_key"]["spki_sha256"] == hashlib.sha256(
        spki_der(key.public_key())).hexdigest()


def test_a_post_quantum_certificate():
    key = generate_key("mldsa65")
    tree = show(build_certificate(key, None, b"", name="pq").public_bytes(DER))
    assert tree["certificate"]["public_key"]["algorithm"] == "ML-DSA-65"
    assert tree["certificate"]["signature_algorithm"] == "ML-DSA-65"


def test_a_keeps_csr_and_its_binding(keeps):
    challenge = bytes(range(32))
    csr, key = make_csr(keeps["sgx"], challenge, pem=True)
    tree = show(csr)
    assert_documented(tree)
    assert (tree["kind"], tree["encoding"], tree["pem_label"]) == ("csr", "pem",
                                                                   "CERTIFICATE REQUEST")
    assert tree["csr"]["signature_valid"] is True
    assert base64.urlsafe_b64decode(tree["csr"]["challengePassword"] + "=") == challenge
    assert tree["evidence"]["technology"] == "sgx"
    assert tree["evidence"]["decoded"]["kind"] == "sgx-quote"
    assert tree["binding"] == {"holds": True, "detail": None}
    unbound, _ = make_csr(keeps["sgx"], challenge, bind_challenge=bytes(32))
    tree = show(unbound)
    assert tree["encoding"] == "raw" and tree["binding"]["holds"] is False
    assert "not bound to this request" in tree["binding"]["detail"]


def test_a_service_certificate_and_its_result(tmp_path):
    ca = ServiceCa.load_or_create(tmp_path / "service")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    measurement = bytes(range(48)).hex()
    result = results.from_verdict(verdict_for("snp", {"measurement": measurement},
                                              tcb_status=None, advisories=[]),
                                  None, issued_at=now)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attestcall keep")])
    cert = ca.issue(generate_key("p256").public_key(), subject, lifetime=dt.timedelta(hours=1),
                    result=result, crl_url="http://127.0.0.1:1/v1/crl", now=now)
    tree = show(cert.public_bytes(PEM))
    assert_documented(tree)
    assert tree["kind"] == "service-certificate"
    assert tree["attestation_result"] == result.claims
    appraisal = tree["attestation_result"]["submods"]["snp"]
    assert appraisal["ear.veraison.annotated-evidence"]["measurement"] == measurement
    assert tree["certificate"]["issuer"] == ca.certificate.subject.rfc4514_string()
    assert tree["certificate"]["not_after"] == (now + dt.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert results.RESULT_OID in {e["oid"] for e in tree["certificate"]["extensions"]}
    assert "ear.status: affirming" in render(tree)


# ------------------------------------------------------------------ SEV launch secrets

KEYS = {
    "p256": (lambda: ec.generate_private_key(ec.SECP256R1()), {"algorithm": "EC",
                                                               "curve": "secp256r1"}),
    "p384": (lambda: ec.generate_private_key(ec.SECP384R1()), {"algorithm": "EC",
                                                               "curve": "secp384r1"}),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, {"algorithm": "Ed25519"}),
    "rsa2048": (lambda: rsa.generate_private_key(65537, 2048), {"algorithm": "RSA",
                                                                "bits": 2048}),
}


def _private_parts(key) -> list[bytes]:
    """Byte strings that belong to the private key only: the scalar / seed / primes."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        return [key.private_numbers().private_value.to_bytes(size, "big")]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return [key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())]
    numbers = key.private_numbers()
    return [n.to_bytes((n.bit_length() + 7) // 8, "big")
            for n in (numbers.p, numbers.q, numbers.d)]


def _leaks(output: str, secret: bytes) -> bool:
    """Whether any 8-byte window of ``secret`` appears in ``output`` as hex or base64."""
    lowered = output.lower()
    for start in range(0, len(secret) - 8 + 1):
        window = secret[start:start + 8]
        if window.hex() in lowered:
            return True
        for shift in range(3):  # base64 of a window at each alignment
            chunk = secret[start:start + 9][shift:shift + 6]
            if len(chunk) == 6 and base64.b64encode(chunk).decode() in output:
                return True
    return False


@pytest.mark.parametrize("name", KEYS)
def test_sev_launch_secret_shows_only_algorithm_and_fingerprint(capsys, tmp_path, name):
    make, algorithm = KEYS[name]
    key = make()
    der = pkcs8(key)
    pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    forms = {"raw": der, "hex": der.hex().encode(), "base64": base64.b64encode(der),
             "pem": pem}
    fingerprint = hashlib.sha256(spki_der(key.public_key())).hexdigest()
    for encoding, data in forms.items():
        path = tmp_path / encoding
        path.write_bytes(data)
        code, text, err = run(capsys, path)
        code_json, out, err_json = run(capsys, path, "--json")
        assert code == code_json == 0 and err == err_json == ""
        tree = json.loads(out)
        assert_documented(tree)
        assert (tree["kind"], tree["technology"], tree["encoding"]) == (
            "sev-launch-secret", "sev", encoding)
        assert algorithm.items() <= tree["algorithm"].items()
        assert tree["public_key_sha256"] == fingerprint
        for output in (text, out):
            assert "-----BEGIN" not in output and "PRIVATE KEY-----" not in output
            assert der.hex() not in output.lower()
            assert not any(_leaks(output, part) for part in _private_parts(key))
            assert not _leaks(output, der)
