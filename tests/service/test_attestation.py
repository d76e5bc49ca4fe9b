"""``POST /v1/attestation``: EAR tokens from a real uvicorn on 127.0.0.1, verified with a
standard JOSE library (joserfc) from ``/.well-known/jwks.json`` alone, each claim checked
against the verdict ``attestcall.verify`` gives for the same evidence."""
# ruff: noqa: F811 - the service fixtures are test_app's, imported (pytest finds them here)

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwk, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError

from attestcall import ear, verify
from attestcall.deploy.identity import attest
from attestcall.deploy.keys import generate_key
from attestcall.service import result as results
from attestcall.service import tokens
from attestcall.service.app import MAX_BODY, TOKEN_LIFETIME
from attestcall.service.storage import DATABASE_FILE
from attestcall.tees import registry
from attestcall.verifier.policy import Policy
from tests.service.helpers import TEES, assert_problem, database_away
from tests.service.test_app import _raw, obtain, serve, service  # noqa: F401
from tests.service.test_csr import assert_no_window

JSON = "application/json"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def post(service, document, content_type: str = JSON):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return service.request("POST", "/v1/attestation", body, content_type)


def keyset(service) -> jwk.KeySet:
    status, headers, body = service.request("GET", "/.well-known/jwks.json")
    assert status == 200 and headers["content-type"] == "application/jwk-set+json"
    document = json.loads(body)
    (key,) = document["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-384"
    assert (key["alg"], key["use"]) == ("ES384", "sig")
    assert key["kid"] == jwk.ECKey.import_key(key).thumbprint()  # RFC 7638
    assert "d" not in key
    return jwk.KeySet.import_key_set(document)


def token_of(service, document) -> jwt.Token:
    """The token the service answers ``document`` with, verified from the JWKS alone."""
    status, headers, body = post(service, document)
    assert status == 200, body
    assert headers["content-type"] == JSON and headers["cache-control"] == "no-store"
    answer = json.loads(body)
    assert set(answer) == {"token"}
    token = jwt.decode(answer["token"], keyset(service), algorithms=["ES384"])
    assert token.header["alg"] == "ES384" and token.header["typ"] == "JWT"
    assert token.header["kid"] == keyset(service).keys[0].kid
    ear.check(token.claims)  # attestcall's profile, strictly
    return token


def collateral(tee: str, evidence: bytes):
    """What the service verifies ``tee``'s simulated evidence with (SNP's is inside it)."""
    record = registry().by_name(tee)
    return record.simulated_collateral(evidence) if record.simulated_collateral else None


def expect_claims(token: jwt.Token, verdict, *, nonce: bytes | None, policy_bytes=None,
                  policy=None) -> dict:
    """Every claim of ``token`` against ``verdict``; the appraisal."""
    claims = token.claims
    assert claims["eat_profile"] == ear.PROFILE
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME.total_seconds()
    assert claims["ear.verifier-id"] == {"developer": ear.DEVELOPER, "build": ear.BUILD}
    if nonce is None:
        assert "eat_nonce" not in claims
    else:
        assert ear.decode_nonce(claims["eat_nonce"]) == nonce
    (name,) = claims["submods"]
    assert name == verdict.technology
    item = claims["submods"][name]
    tee = registry().by_name(name)
    assert item["attestcall.technology-id"] == tee.technology
    assert item["ear.veraison.annotated-evidence"] == verdict.claims
    assert item["attestcall.tcb-status"] if verdict.tcb_status else \
        "attestcall.tcb-status" not in item
    assert item.get("attestcall.tcb-status") == verdict.tcb_status
    assert item["attestcall.advisories"] == verdict.advisories
    assert item["attestcall.reasons"] == [str(r) for r in verdict.reasons]
    assert item["attestcall.simulated"] is verdict.simulated
    assert item["ear.appraisal-policy-id"] == \
        "policy:sha256:" + hashlib.sha256(policy_bytes or b"").hexdigest()
    vector = ear.vector_of(verdict, policy)
    assert item["ear.trustworthiness-vector"] == vector
    assert item["ear.status"] == ear.status_of(vector, refused=not verdict.accepted)
    return item


# ------------------------------------------------------------------- tokens


@pytest.mark.parametrize("tee", sorted(TEES))
def test_evidence_bound_to_a_challenge_gets_an_affirming_token(service, keeps, tee):
    name = TEES[tee]
    challenge = service.challenge()
    _, evidence = attest(keeps[tee], hashlib.sha512(challenge).digest())
    token = token_of(service, {"evidence": b64(evidence), "technology": name,
                               "challenge": b64(challenge)})
    verdict = verify(evidence, technology=name, collateral=collateral(name, evidence),
                     nonce=hashlib.sha512(challenge).digest(), trust_simulated=True)
    assert verdict.accepted
    item = expect_claims(token, verdict, nonce=challenge)
    assert item["ear.status"] == "affirming"
    assert item["ear.trustworthiness-vector"]["hardware"] == 2
    (entry,) = service.storage.audit_log()
    assert (entry.kind, entry.outcome, entry.peer, entry.technology, entry.serial,
            entry.reasons) == ("token", "accepted", "127.0.0.1", name, None, ())
    assert entry.measurement == verdict.claims[{"sgx": "mrenclave", "tdx": "mrtd",
                                                "snp": "measurement", "cca": "rim"}[name]]
    # the challenge served once: the same request again is refused, and audited
    document = assert_problem(*post(service, {"evidence": b64(evidence),
                                              "challenge": b64(challenge)}), 403)
    assert "unknown, expired or already used" in document["detail"]
    assert [(e.kind, e.outcome) for e in service.storage.audit_log()] == [
        ("token", "accepted"), ("token", "refused")]


def test_a_nonce_detected_technology_and_a_numeric_id(service, keeps):
    nonce = os.urandom(64)
    _, evidence = attest(keeps["tdx-sim"], nonce)
    verdict = verify(evidence, collateral=collateral("tdx", evidence), nonce=nonce,
                     trust_simulated=True)
    for technology in ({}, {"technology": 4}, {"technology": "tdx"}):
        token = token_of(service, {"evidence": b64(evidence), "nonce": b64(nonce),
                                   **technology})
        assert expect_claims(token, verdict, nonce=nonce)["ear.status"] == "affirming"
    # unbound: neither challenge nor nonce, no eat_nonce (the evidence is still appraised)
    token = token_of(service, {"evidence": b64(evidence)})
    plain = verify(evidence, collateral=collateral("tdx", evidence), trust_simulated=True)
    expect_claims(token, plain, nonce=None)


def test_evidence_that_does_not_bind_the_nonce_is_contraindicated(service, keeps):
    _, evidence = attest(keeps["snp-sim"], b"\x01" * 64)
    nonce = b"\x02" * 64
    token = token_of(service, {"evidence": b64(evidence), "nonce": b64(nonce)})
    verdict = verify(evidence, collateral=collateral("snp", evidence), nonce=nonce,
                     trust_simulated=True)
    item = expect_claims(token, verdict, nonce=nonce)
    assert item["ear.status"] == "contraindicated"
    assert set(item["ear.trustworthiness-vector"].values()) == {99}
    assert item["attestcall.reasons"] == ["the report data does not equal the nonce"]
    assert service.storage.audit_log()[0].outcome == "refused"
    # evidence bound to another challenge: the same
    challenge = service.challenge()
    token = token_of(service, {"evidence": b64(evidence), "challenge": b64(challenge)})
    assert token.claims["submods"]["snp"]["ear.status"] == "contraindicated"


def test_a_policy_refusal_and_the_deny_list_contraindicate_executables(serve, keeps):
    policy_bytes = b'[sgx]\nmrenclave = ["' + b"ab" * 32 + b'"]\n'
    service = serve(policy_bytes=policy_bytes)
    _, evidence = attest(keeps["sgx-sim"], b"\x03" * 64)
    token = token_of(service, {"evidence": b64(evidence)})
    policy = Policy.from_bytes(policy_bytes)
    verdict = verify(evidence, collateral=collateral("sgx", evidence), policy=policy,
                     trust_simulated=True)
    assert not verdict.accepted
    item = expect_claims(token, verdict, nonce=None, policy_bytes=policy_bytes, policy=policy)
    assert item["ear.status"] == "contraindicated"
    assert item["ear.trustworthiness-vector"]["executables"] == 96
    assert any("mrenclave" in r for r in item["attestcall.reasons"])
    # the [sgx] table says nothing of SNP evidence; a denied measurement does
    _, snp = attest(keeps["snp-sim"], b"\x03" * 64)
    item = token_of(service, {"evidence": b64(snp)}).claims["submods"]["snp"]
    assert item["ear.status"] == "affirming" and "executables" not in \
        item["ear.trustworthiness-vector"]
    measurement = item["ear.veraison.annotated-evidence"]["measurement"]
    service.storage.deny_measurement(measurement, "test")
    item = token_of(service, {"evidence": b64(snp)}).claims["submods"]["snp"]
    assert item["ear.status"] == "contraindicated"
    assert item["ear.trustworthiness-vector"]["executables"] == 96
    assert item["attestcall.reasons"] == [f"measurement {measurement} is on the service's "
                                          "deny-list"]
    assert [e.outcome for e in service.storage.audit_log()] == ["refused", "accepted",
                                                                "refused"]


def test_untrusted_simulated_evidence_gets_a_contraindicated_token(serve, keeps):
    service = serve(trust_simulated=False)
    _, evidence = attest(keeps["snp-sim"], b"\x04" * 64)
    status, _, body = post(service, {"evidence": b64(evidence)})
    assert status == 200, body
    item = token_of(service, {"evidence": b64(evidence)}).claims["submods"]["snp"]
    assert item["ear.status"] == "contraindicated"
    assert set(item["ear.trustworthiness-vector"].values()) == {99}
    assert any("simulated" in r for r in item["attestcall.reasons"])


def test_a_tampered_token_or_another_key_does_not_verify(service, keeps, tmp_path):
    _, evidence = attest(keeps["sgx-sim"], b"\x05" * 64)
    status, _, body = post(service, {"evidence": b64(evidence)})
    token = json.loads(body)["token"]
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["submods"]["sgx"]["ear.status"] == "affirming"
    claims["exp"] += 3600  # a longer life for a genuine result
    forged = ".".join([head, b64(ear.encode(claims)), signature])
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, keyset(service), algorithms=["ES384"])
    other = tokens.TokenSigner.load_or_create(tmp_path / "other")
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(other.sign(claims), keyset(service), algorithms=["ES384"])


def test_the_certificate_and_the_token_speak_one_vocabulary(service, keeps):
    issued, _ = obtain(service, keeps["sgx-sim"])
    result = results.from_certificate(issued)
    _, evidence = attest(keeps["sgx-sim"], b"\x0b" * 64)
    token = token_of(service, {"evidence": b64(evidence)})
    item = token.claims["submods"]["sgx"]
    assert set(item) == set(result.appraisal)
    for claim in ("ear.status", "ear.trustworthiness-vector", "ear.appraisal-policy-id",
                  "attestcall.technology-id", "attestcall.tcb-status", "attestcall.reasons"):
        assert item[claim] == result.appraisal[claim]
    assert set(token.claims) - {"exp", "eat_nonce"} == set(result.claims) - {"eat_nonce"}
    assert result.claims["eat_profile"] == token.claims["eat_profile"] == ear.PROFILE
    assert result.claims["ear.verifier-id"] == token.claims["ear.verifier-id"]


# ------------------------------------------------------------------- the signing key


def test_the_signing_key_is_its_own_private_file_shared_by_replicas(serve, tmp_path):
    first = serve()
    path = first.home / tokens.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signing = serialization.load_pem_private_key(path.read_bytes(), None)
    ca_public = first.ca.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signing.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != ca_public
    kid = keyset(first).keys[0].kid
    replica = serve()  # another home, another key
    assert keyset(replica).keys[0].kid != kid
    shared = tmp_path / "shared"
    shutil.copytree(first.home, shared, ignore=shutil.ignore_patterns(f"{DATABASE_FILE}*"))
    again = tokens.TokenSigner.load_or_create(shared)
    assert again.kid == kid and again.jwks() == {"keys": [again.jwk]}


# ------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("why, body, words", [
    ("not JSON", b"{nope", "not a JSON object"),
    ("not UTF-8", b'{"evidence": "\xff"}', "not a JSON object"),
    ("a list", b"[]", "not a JSON object"),
    ("no evidence", {"nonce": b64(bytes(64))}, "no evidence"),
    ("an unknown member", {"evidence": "AAAA", "colour": "red"}, "unknown members"),
    ("evidence not a string", {"evidence": 5}, "base64url"),
    ("evidence empty", {"evidence": ""}, "base64url"),
    ("evidence in standard base64", {"evidence": "ab+/"}, "not base64url"),
    ("evidence with spaces", {"evidence": "AA AA"}, "not base64url"),
    ("evidence of impossible length", {"evidence": "AAAAA"}, "not base64url"),
    ("garbage evidence", {"evidence": b64(b"garbage" * 10)}, "cannot tell the technology"),
    ("garbage SGX evidence", {"evidence": b64(b"garbage" * 10), "technology": "sgx"},
     "unusable"),
    ("an unknown technology", {"evidence": "AAAA", "technology": "cove"}, "unknown technology"),
    ("an unknown id", {"evidence": "AAAA", "technology": 77}, "unknown technology"),
    ("a boolean technology", {"evidence": "AAAA", "technology": True}, "unknown technology"),
    ("no TEE", {"evidence": "AAAA", "technology": "none"}, "cannot be verified"),
    ("a short challenge", {"evidence": "AAAA", "challenge": b64(bytes(16))}, "32 bytes"),
    ("a short nonce", {"evidence": "AAAA", "nonce": b64(bytes(32))}, "64 bytes"),
    ("both", {"evidence": "AAAA", "nonce": b64(bytes(64)), "challenge": b64(bytes(32))},
     "not both"),
])
def test_bad_requests_are_400_problem_documents(service, why, body, words):
    document = assert_problem(*post(service, body), 400)
    assert words in document["detail"], document
    (entry,) = service.storage.audit_log()
    assert entry.outcome == "refused" and entry.reasons == tuple(document["reasons"])


def test_an_unknown_challenge_is_403_and_garbage_never_consumes_one(service, keeps):
    _, evidence = attest(keeps["sgx-sim"], b"\x06" * 64)
    document = assert_problem(*post(service, {"evidence": b64(evidence),
                                              "challenge": b64(os.urandom(32))}), 403)
    assert "unknown, expired or already used" in document["detail"]
    challenge = service.challenge()
    assert_problem(*post(service, {"evidence": "!!", "challenge": b64(challenge)}), 400)
    _, bound = attest(keeps["sgx-sim"], hashlib.sha512(challenge).digest())
    token = token_of(service, {"evidence": b64(bound), "challenge": b64(challenge)})
    assert token.claims["submods"]["sgx"]["ear.status"] == "affirming"


def test_an_oversized_body_is_413(service):
    head = (b"POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    answer = _raw(service.port, head + b"{" * 16384)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer


def test_a_vanished_database_answers_503_then_recovers(service, keeps):
    _, evidence = attest(keeps["sgx-sim"], b"\x09" * 64)
    with database_away(service.home):
        document = assert_problem(*post(service, {"evidence": b64(evidence)}), 503)
        assert "database" in document["detail"]
    token_of(service, {"evidence": b64(evidence)})


def test_metrics_and_openapi(service, keeps):
    _, evidence = attest(keeps["tdx-sim"], b"\x0a" * 64)
    token_of(service, {"evidence": b64(evidence)})
    token_of(service, {"evidence": b64(evidence), "nonce": b64(bytes(64))})
    post(service, b"junk")
    text = service.request("GET", "/metrics")[2].decode()
    assert 'attestcall_service_tokens_total{status="affirming",technology="tdx"} 1.0' in text
    assert 'attestcall_service_tokens_total{status="contraindicated",technology="tdx"} 1.0' \
        in text
    assert 'attestcall_service_requests_total{path="/v1/attestation",status="200"} 2.0' in text
    assert 'attestcall_service_requests_total{path="/v1/attestation",status="400"} 1.0' in text
    assert 'attestcall_service_verdicts_total{outcome="accepted",technology="tdx"} 1.0' in text
    document = json.loads(service.request("GET", "/openapi.json")[2])
    operation = document["paths"]["/v1/attestation"]["post"]
    assert set(operation["responses"]) == {"200", "400", "403", "408", "413", "503"}
    schema = document["components"]["schemas"]["AttestationRequest"]
    assert set(schema["properties"]) == {"evidence", "technology", "challenge", "nonce"}
    assert "get" in document["paths"]["/.well-known/jwks.json"]


# ------------------------------------------------------------------- SEV key material


def test_sev_key_material_is_refused_and_never_stored_or_logged(service, caplog):
    """An SEV keep's delivered key (technology 1), however it is labelled, is a 400, and no
    window of it is in an answer, the service's log or the database."""
    sev_key = generate_key("p384").private_bytes(serialization.Encoding.DER,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
    caplog.set_level(logging.DEBUG)
    answers = []
    for technology in (None, 1, "sev", "sgx", 3, "tdx"):
        for binding in ({}, {"nonce": b64(bytes(64))},
                        {"challenge": b64(service.challenge())}):
            document = {"evidence": b64(sev_key), **binding}
            if technology is not None:
                document["technology"] = technology
            answers.append(post(service, document))
    for status, headers, body in answers:
        document = assert_problem(status, headers, body, 400)
        assert "pre-attestation" in document["detail"] or "private key" in document["detail"]
        assert_no_window(sev_key, Exception(body.decode("latin-1")))
    log = service.storage.audit_log()
    assert len(log) == len(answers)
    assert all(e.outcome == "refused" and e.kind == "token" for e in log)
    assert_no_window(sev_key, Exception(json.dumps([e.as_json() for e in log])))
    assert_no_window(sev_key, Exception(caplog.text))
    for name in os.listdir(service.home):
        if name.startswith(DATABASE_FILE):
            assert_no_window(sev_key, Exception((service.home / name).read_bytes()
                                                .decode("latin-1")))
