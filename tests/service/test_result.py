"""The attestation-result extension: the EAR claims-set, one encoding, decoded strictly."""

import hashlib
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestcall import der, ear
from attestcall.service import result as results
from attestcall.service.result import (
    AttestationResult,
    MalformedResult,
    ResultError,
    decode,
    encode,
    from_verdict,
)
from tests.service.helpers import verdict_for

POLICY = b"[sgx]\naccept_tcb_status = [\"UpToDate\", \"SWHardeningNeeded\"]\n"
SAMPLE = from_verdict(
    verdict_for("sgx", {"mrenclave": bytes(range(32)).hex(), "mrsigner": "ff" * 32,
                        "isv_svn": 3, "debug": False},
                tcb_status="SWHardeningNeeded", advisories=["INTEL-SA-00334", "INTEL-SA-00615"]),
    POLICY, nonce=bytes(range(32)))


def utf8(text: bytes) -> bytes:
    return der.encode_tlv(0x0C, text)


def test_the_oid_is_ours_and_derived_from_the_uuid():
    assert results.RESULT_OID == f"2.25.{uuid.UUID(results.RESULT_UUID).int}"
    assert not results.RESULT_OID.startswith("1.3.6.1.4.1.58270")  # Enarx's arc


def test_the_encoding_is_a_utf8string_of_the_canonical_ear_json():
    data = encode(SAMPLE)
    assert data == utf8(ear.encode(SAMPLE.claims))
    text = der.decode(data).value.decode()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    assert decode(data) == SAMPLE


def test_the_result_reads_its_appraisal():
    assert SAMPLE.technology == 2 and SAMPLE.technology_name == "sgx"
    assert SAMPLE.measurement == bytes(range(32))
    assert SAMPLE.tcb_status == "SWHardeningNeeded"
    assert SAMPLE.advisories == ("INTEL-SA-00334", "INTEL-SA-00615")
    assert SAMPLE.policy_digest == hashlib.sha256(POLICY).digest()
    assert SAMPLE.status == "warning"  # SWHardeningNeeded: hardware 32
    assert SAMPLE.vector == {"instance-identity": 2, "configuration": 3, "hardware": 32,
                             "runtime-opaque": 2}
    assert SAMPLE.claims["eat_nonce"] == ear.encode_nonce(bytes(range(32)))
    assert SAMPLE.appraisal["ear.veraison.annotated-evidence"]["mrsigner"] == "ff" * 32


def test_a_result_without_a_tee_or_tcb_status():
    got = from_verdict(verdict_for("none", {}, tcb_status=None, advisories=[]), None)
    assert (got.technology, got.technology_name, got.measurement, got.tcb_status,
            got.advisories) == (0, "none", b"", "", ())
    assert got.policy_digest == hashlib.sha256(b"").digest()
    assert got.vector == {"runtime-opaque": 96} and got.status == "contraindicated"
    assert decode(encode(got)) == got
    assert from_verdict(verdict_for("none", {}), b"").policy_digest == hashlib.sha256(b"").digest()


@settings(max_examples=50)
@given(measurement=st.binary(min_size=48, max_size=48),
       tcb=st.sampled_from([None, *[s for s in ear.TCB_STATUS if s]]),
       advisories=st.lists(st.text(min_size=1, max_size=20), max_size=4),
       claims=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10),
                              max_size=4),
       debug=st.booleans())
def test_round_trip(measurement, tcb, advisories, claims, debug):
    verdict = verdict_for("tdx", {**claims, "mrtd": measurement.hex()}, tcb_status=tcb,
                          advisories=advisories, debug=debug)
    result = from_verdict(verdict, b"[tdx]\n")
    data = encode(result)
    assert decode(data) == result
    assert encode(decode(data)) == data
    assert result.measurement == measurement and result.advisories == tuple(advisories)


def test_every_truncation_is_refused():
    data = encode(SAMPLE)
    for end in range(0, len(data), 7):
        with pytest.raises(MalformedResult):
            decode(data[:end])


@pytest.mark.parametrize("tail", [b"\x00", b"\x30\x00", bytes(40)])
def test_trailing_bytes_are_refused(tail):
    with pytest.raises(MalformedResult, match="trailing"):
        decode(encode(SAMPLE) + tail)


def test_single_byte_tampering_is_refused_or_changes_the_result():
    """A flipped byte either breaks the structure or decodes to another result whose own
    encoding is exactly the tampered bytes: no second encoding of anything is accepted."""
    data = encode(SAMPLE)
    refused = 0
    for index in range(0, len(data), 3):
        for flip in (0x01, 0x20, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= flip
            try:
                got = decode(bytes(tampered))
            except MalformedResult:
                refused += 1
                continue
            assert got != SAMPLE
            assert encode(got) == bytes(tampered)
    assert refused > 0


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_or_canonical(data):
    try:
        got = decode(data)
    except MalformedResult:
        return
    assert encode(got) == data


def mutated(change) -> bytes:
    """SAMPLE's claims-set changed by ``change(claims, appraisal)``, encoded canonically."""
    claims = json.loads(ear.encode(SAMPLE.claims))
    change(claims, claims["submods"]["sgx"])
    return utf8(ear.encode(claims))


def _set(where, key, value):
    return lambda claims, item: (claims if where == "top" else item).__setitem__(key, value)


def _drop(where, key):
    return lambda claims, item: (claims if where == "top" else item).pop(key)


@pytest.mark.parametrize("why, data", [
    ("an OCTET STRING", der.encode_octet_string(ear.encode(SAMPLE.claims))),
    ("spaces in the JSON", utf8(json.dumps(SAMPLE.claims, sort_keys=True).encode())),
    ("keys not sorted", utf8(json.dumps(SAMPLE.claims, separators=(",", ":")).encode())),
    ("a repeated member", utf8(b'{"iat":1,' + ear.encode(SAMPLE.claims)[1:])),
    ("not UTF-8", utf8(b'{"x":"\xff"}')),
    ("not JSON", utf8(b"{nope")),
    ("NaN", utf8(b'{"iat":NaN}')),
    ("a list", utf8(b"[]")),
    ("another profile", mutated(_set("top", "eat_profile", "tag:github.com,2023:veraison/ear"))),
    ("no iat", mutated(_drop("top", "iat"))),
    ("a float iat", mutated(_set("top", "iat", 1.5))),
    ("exp before iat", mutated(_set("top", "exp", 0))),
    ("no verifier id", mutated(_drop("top", "ear.verifier-id"))),
    ("a verifier id without build", mutated(_set("top", "ear.verifier-id", {"developer": "x"}))),
    ("a short nonce", mutated(_set("top", "eat_nonce", "AAAA"))),
    ("a nonce not base64url", mutated(_set("top", "eat_nonce", "+" * 43))),
    ("two submods", mutated(lambda c, i: c["submods"].__setitem__("tdx", dict(i)))),
    ("no submods", mutated(_set("top", "submods", {}))),
    ("no status", mutated(_drop("item", "ear.status"))),
    ("an unknown status", mutated(_set("item", "ear.status", "fine"))),
    ("a status above its vector", mutated(_set("item", "ear.status", "affirming"))),
    ("an empty vector", mutated(_set("item", "ear.trustworthiness-vector", {}))),
    ("an unknown vector claim", mutated(_set("item", "ear.trustworthiness-vector",
                                             {"hardware": 2, "magic": 2}))),
    ("a vector value out of range", mutated(_set("item", "ear.trustworthiness-vector",
                                                 {"hardware": 128}))),
    ("a policy id of another form", mutated(_set("item", "ear.appraisal-policy-id",
                                                 "https://example/policy"))),
    ("evidence as a list", mutated(_set("item", "ear.veraison.annotated-evidence", []))),
    ("no mrenclave", mutated(lambda c, i: i["ear.veraison.annotated-evidence"].pop(
        "mrenclave"))),
    ("a measurement not hex", mutated(lambda c, i: i["ear.veraison.annotated-evidence"]
                                      .__setitem__("mrenclave", "zz"))),
    ("a measurement too long", mutated(lambda c, i: i["ear.veraison.annotated-evidence"]
                                       .__setitem__("mrenclave", "00" * 65))),
    ("a negative technology id", mutated(_set("item", "attestcall.technology-id", -1))),
    ("a boolean technology id", mutated(_set("item", "attestcall.technology-id", True))),
    ("advisories as text", mutated(_set("item", "attestcall.advisories", "INTEL-SA-1"))),
    ("simulated as 0", mutated(_set("item", "attestcall.simulated", 0))),
    ("an empty TCB status", mutated(_set("item", "attestcall.tcb-status", ""))),
    ("a vector claim as text", mutated(_set("item", "ear.trustworthiness-vector",
                                            {"hardware": "2"}))),
    ("a float iat far ahead", mutated(_set("top", "iat", 1e20))),
    ("an iat after year 9999", mutated(_set("top", "iat", 10 ** 12))),
])
def test_wrong_shapes_and_types_are_refused(why, data):
    with pytest.raises(MalformedResult):
        decode(data)


def test_claims_it_does_not_know_are_kept_and_ignored():
    """EAR is extensible: a later attestcall's (or another producer's) claims at the top
    and in the appraisal decode, kept as they are, and the result reads as before."""
    data = mutated(lambda claims, item: (
        claims.__setitem__("ear.raw-evidence", "AAAA"),
        item.__setitem__("attestcall.extra", {"nested": [1, 2]}),
        item.__setitem__("ear.veraison.policy-claims", {"x": 1})))
    got = decode(data)
    assert got.claims["ear.raw-evidence"] == "AAAA"
    assert got.appraisal["attestcall.extra"] == {"nested": [1, 2]}
    assert got.appraisal["ear.veraison.policy-claims"] == {"x": 1}
    assert (got.measurement, got.status, got.vector) == (
        SAMPLE.measurement, SAMPLE.status, SAMPLE.vector)
    assert encode(got) == data


def test_a_result_must_be_an_ear():
    with pytest.raises(MalformedResult, match="eat_profile"):
        AttestationResult({"eat_profile": "x"})


@pytest.mark.parametrize("name, technology, claim, size", [
    ("sgx", 2, "mrenclave", 32), ("tdx", 4, "mrtd", 48), ("snp", 3, "measurement", 48)])
def test_from_verdict_takes_the_technology_s_measurement(name, technology, claim, size):
    measurement = bytes(range(size))
    claims = {"mrsigner": "ff" * 32, "mrenclave": "00" * 32, "mrtd": "11" * 48,
              "measurement": "22" * 48, claim: measurement.hex()}
    got = from_verdict(verdict_for(name, claims), b"[sgx]\n")
    assert (got.technology, got.technology_name, got.measurement, got.tcb_status,
            got.advisories, got.policy_digest) == (
        technology, name, measurement, "UpToDate", ("INTEL-SA-00001",),
        hashlib.sha256(b"[sgx]\n").digest())
    assert got.appraisal["ear.veraison.annotated-evidence"] == claims


def test_from_verdict_refusals():
    with pytest.raises(ResultError, match="refused verdict"):
        from_verdict(verdict_for("sgx", {"mrenclave": "00" * 32}, accepted=False,
                                 reasons=["debug"]), None)
    with pytest.raises(ResultError, match="no measurement claim is known for technology 'sev'"):
        from_verdict(verdict_for("sev", {}), None)
    with pytest.raises(ResultError, match="'cove' is not registered"):
        from_verdict(verdict_for("cove", {}), None)
    with pytest.raises(ResultError, match="no mrtd claim"):
        from_verdict(verdict_for("tdx", {"mrenclave": "00" * 32}), None)
    with pytest.raises(ResultError, match="not hex"):
        from_verdict(verdict_for("snp", {"measurement": "zz"}), None)
