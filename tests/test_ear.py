"""attestcall.ear: a verdict as an EAR claims-set; the mapping to AR4SI, row by row."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestcall import ear, verify
from attestcall.deploy.identity import attest
from attestcall.deploy.tenant import simulated_collateral
from attestcall.keep.platforms import open_keep
from attestcall.schema import Reason
from attestcall.verifier.policy import Policy
from tests.service.helpers import verdict_for

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
SGX = {"mrenclave": "00" * 32, "mrsigner": "11" * 32, "isv_svn": 1}
SNP = {"measurement": "22" * 48, "smt_enabled": True}


def vector(technology="sgx", claims=SGX, policy=None, **fields):
    return ear.vector_of(verdict_for(technology, claims, **fields), policy)


# ------------------------------------------------------------------ tiers and ranges


@pytest.mark.parametrize("value, expected", [
    (0, "none"), (1, "none"), (-1, "none"),
    (2, "affirming"), (31, "affirming"), (-2, "affirming"), (-32, "affirming"),
    (32, "warning"), (95, "warning"), (-33, "warning"), (-96, "warning"),
    (96, "contraindicated"), (127, "contraindicated"), (-97, "contraindicated"),
    (-128, "contraindicated")])
def test_tiers_follow_ar4si_ranges(value, expected):
    assert ear.tier(value) == expected


def test_values_outside_a_signed_byte_have_no_tier():
    for value in (128, -129):
        with pytest.raises(ear.EarError):
            ear.tier(value)


def test_every_value_attestcall_assigns_is_a_documented_standard_code_point():
    values = {(claim, value) for claim, value in ear.CODE_POINTS}
    for hardware, configuration in (*ear.TCB_STATUS.values(), ear.UNKNOWN_TCB_STATUS):
        assert (ear.HARDWARE, hardware) in values
        assert configuration is None or (ear.CONFIGURATION, configuration) in values
    for claim in set(ear.POLICY_KEYS.values()):
        assert (claim, ear.REFUSED) in values
    for claim, value in ear.APPROVED.items():
        assert (claim, value) in values
    for claim, value in values:  # standard ranges only: none 0/1, affirming 2..31, ...
        assert claim in ear.AR4SI_CLAIMS and (value in (0, 1) or 2 <= value <= 127)


def test_worse_keeps_the_least_trustworthy_tier_then_the_stronger_statement():
    assert ear.worse(None, 3) == 3
    assert ear.worse(2, 96) == 96 and ear.worse(96, 2) == 96
    assert ear.worse(3, 32) == 32 and ear.worse(32, 3) == 32
    assert ear.worse(3, 2) == 2 and ear.worse(2, 3) == 2  # same tier: the smaller value
    assert ear.worse(1, 2) == 2  # "none" is below affirming


def test_status_is_the_worst_tier_and_contraindicated_when_refused():
    assert ear.status_of({"hardware": 2, "configuration": 3}) == "affirming"
    assert ear.status_of({"hardware": 32, "runtime-opaque": 2}) == "warning"
    assert ear.status_of({"hardware": 2, "runtime-opaque": 96}) == "contraindicated"
    assert ear.status_of({"hardware": 1}) == "none"
    assert ear.status_of({"hardware": 2}, refused=True) == "contraindicated"


# ------------------------------------------------------------------ the mapping table


@pytest.mark.parametrize("status, hardware, configuration", [
    ("UpToDate", 2, 3),
    ("SWHardeningNeeded", 32, 3),
    ("ConfigurationNeeded", 2, 32),
    ("ConfigurationAndSWHardeningNeeded", 32, 32),
    ("OutOfDate", 32, 3),
    ("OutOfDateConfigurationNeeded", 32, 32),
    ("Revoked", 96, None),
    (None, 2, None),
    ("SomethingNew", 1, None),
])
def test_tcb_status_rows(status, hardware, configuration):
    got = vector(tcb_status=status)
    expected = {"instance-identity": 2, "hardware": hardware, "runtime-opaque": 2}
    if configuration is not None:
        expected["configuration"] = configuration
    assert got == expected


def test_debug_makes_runtime_opaque_contraindicated_even_when_the_policy_allows_it():
    allowed = Policy.parse({"sgx": {"allow_debug": True}})
    got = ear.appraisal(verdict_for("sgx", SGX, debug=True), policy=allowed)
    assert got[ear.VECTOR]["runtime-opaque"] == 96
    assert got[ear.STATUS] == "contraindicated"


@pytest.mark.parametrize("key, claim", sorted(ear.POLICY_KEYS.items()))
def test_a_refusal_by_a_policy_key_contraindicates_its_claim(key, claim):
    reason = Reason(f"refused by {key}", key)
    got = vector(accepted=False, reasons=[reason])
    assert got[claim] == 96
    assert {c for c, v in got.items() if v == 96} == {claim}
    assert ear.appraisal(verdict_for("sgx", SGX, accepted=False, reasons=[reason])
                         )[ear.STATUS] == "contraindicated"


def test_a_refusal_no_key_names_is_contraindicated_without_a_claim():
    got = ear.appraisal(verdict_for("sgx", SGX, accepted=False, reasons=["a toy reason"]))
    assert got[ear.STATUS] == "contraindicated"
    assert got[ear.VECTOR] == vector()
    assert got[ear.REASONS] == ["a toy reason"]


def test_constrained_keys_that_pass_approve_executables_and_configuration():
    policy = Policy.parse({"snp": {"measurement": ["22" * 48], "allow_smt": False}})
    got = vector("snp", SNP, policy, tcb_status=None)
    assert got == {"instance-identity": 2, "configuration": 2, "executables": 2,
                   "hardware": 2, "runtime-opaque": 2}
    # permissive values (an empty allow-list, allow_* = true) approve nothing
    lax = Policy.parse({"snp": {"measurement": [], "allow_smt": True}})
    assert "executables" not in vector("snp", SNP, lax, tcb_status=None)
    assert "configuration" not in vector("snp", SNP, lax, tcb_status=None)
    # a known vulnerability in the configuration outweighs its approval
    tdx = Policy.parse({"tdx": {"mrconfigid": ["33" * 48]}})
    assert vector("tdx", {"mrtd": "44" * 48}, tdx,
                  tcb_status="ConfigurationNeeded")["configuration"] == 32
    assert vector("tdx", {"mrtd": "44" * 48}, tdx)["configuration"] == 2
    # another technology's table says nothing about this one
    assert "executables" not in vector("sgx", SGX, policy)


def test_unproven_evidence_is_99_in_every_claim():
    problem = ["quote signature does not verify with the attestation key"]
    got = vector(accepted=False, reasons=problem, problems=problem, tcb_status=None)
    assert got == {"instance-identity": 99, "hardware": 99, "runtime-opaque": 99}
    nonce = [Reason("the report data does not equal the nonce", "nonce")]
    got = vector(accepted=False, reasons=nonce)
    assert set(got.values()) == {99} and "configuration" in got


def test_a_keep_without_a_tee_is_visible_memory_and_nothing_else():
    got = ear.appraisal(verdict_for("none", {}, tcb_status=None, advisories=[]))
    assert got[ear.VECTOR] == {"runtime-opaque": 96}
    assert got[ear.STATUS] == "contraindicated"


# ------------------------------------------------------------------ the claims-set


def test_the_claims_set():
    policy_bytes = b'[sgx]\nmrenclave = ["' + b"00" * 32 + b'"]\n'
    verdict = verdict_for("sgx", SGX, advisories=["INTEL-SA-00001"], simulated=True)
    claims = ear.claims_set(verdict, issued_at=NOW, expires_at=NOW + dt.timedelta(minutes=5),
                            nonce=b"\xff" * 64, policy=Policy.from_bytes(policy_bytes),
                            policy_bytes=policy_bytes)
    assert claims == {
        "eat_profile": ear.PROFILE,
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 300,
        "ear.verifier-id": {"developer": ear.DEVELOPER, "build": ear.BUILD},
        "eat_nonce": "_" * 85 + "w",
        "submods": {"sgx": {
            "ear.status": "affirming",
            "ear.trustworthiness-vector": {"instance-identity": 2, "configuration": 3,
                                           "executables": 2, "hardware": 2,
                                           "runtime-opaque": 2},
            "ear.appraisal-policy-id": "policy:sha256:" + hashlib.sha256(policy_bytes)
            .hexdigest(),
            "ear.veraison.annotated-evidence": SGX,
            "attestcall.technology-id": 2,
            "attestcall.tcb-status": "UpToDate",
            "attestcall.advisories": ["INTEL-SA-00001"],
            "attestcall.reasons": [],
            "attestcall.simulated": True,
        }},
    }
    assert ear.decode(ear.encode(claims)) == claims
    assert ear.decode_nonce(claims["eat_nonce"]) == b"\xff" * 64
    assert ear.PROFILE.startswith("tag:") and ear.BUILD.startswith("attestcall ")


def test_claims_set_refusals():
    verdict = verdict_for("sgx", SGX)
    with pytest.raises(ear.EarError, match="8 to 64"):
        ear.claims_set(verdict, issued_at=NOW, nonce=b"short")
    with pytest.raises(ear.EarError, match="expire after"):
        ear.claims_set(verdict, issued_at=NOW, expires_at=NOW)
    with pytest.raises(ear.EarError, match="timezone"):
        ear.claims_set(verdict, issued_at=dt.datetime(2026, 1, 1))
    with pytest.raises(ear.EarError, match="not registered"):
        ear.claims_set(verdict_for("cove", {}), issued_at=NOW)


@pytest.mark.parametrize("tee", ["sgx-sim", "snp-sim", "tdx-sim", "cca-sim"])
def test_real_verdicts_of_the_simulators(tee, tmp_path, monkeypatch):
    """From real (simulated) evidence through attestcall.verify: accepted is affirming,
    a refusal by the measurement allow-list contraindicates executables, and untrusted
    simulated roots are a failed cryptographic validation."""
    monkeypatch.setenv("ATTESTCALL_HOME", str(tmp_path))
    name = tee.removesuffix("-sim")
    with open_keep(tee, b"") as keep:
        _, evidence = attest(keep.source, b"\x07" * 64)
    collateral = simulated_collateral(name, evidence)
    accepted = verify(evidence, technology=name, collateral=collateral, nonce=b"\x07" * 64,
                      trust_simulated=True)
    assert accepted.accepted, accepted.reasons
    got = ear.appraisal(accepted)
    assert got[ear.STATUS] == "affirming"
    assert got[ear.VECTOR]["instance-identity"] == 2 and got[ear.VECTOR]["hardware"] == 2
    assert got[ear.ANNOTATED_EVIDENCE] == accepted.claims
    claim = {"sgx": "mrenclave", "tdx": "mrtd", "snp": "measurement", "cca": "rim"}[name]
    policy = Policy.parse({name: {claim: ["00" * len(bytes.fromhex(accepted.claims[claim]))]}})
    refused = verify(evidence, technology=name, collateral=collateral, trust_simulated=True,
                     policy=policy)
    got = ear.appraisal(refused, policy=policy)
    assert got[ear.STATUS] == "contraindicated" and got[ear.VECTOR]["executables"] == 96
    assert got[ear.REASONS] == refused.reasons
    unbound = verify(evidence, technology=name, collateral=collateral, nonce=b"\x08" * 64,
                     trust_simulated=True)
    assert set(ear.vector_of(unbound).values()) == {99}
    untrusted = verify(evidence, technology=name, collateral=collateral)
    assert set(ear.vector_of(untrusted).values()) == {99}
    assert ear.appraisal(untrusted)[ear.STATUS] == "contraindicated"


# ------------------------------------------------------------------ reading others' EARs


def veraison_like() -> dict:
    """An EAR claims-set in the shape Veraison's verifier emits (its profile, two submods,
    every AR4SI claim, its ear.veraison.* extensions and ear.raw-evidence): nothing here is
    attestcall's."""
    return {
        "eat_profile": "tag:github.com,2023:veraison/ear",
        "iat": 1_700_000_000,
        "ear.verifier-id": {"build": "veraison 0.0.2402", "developer": "https://veraison.example"},
        "ear.raw-evidence": "3q2-7w",
        "eat_nonce": "TUlEQk5IMjhpaW9pc2pQeXh4eHh4eHh4eHh4eHh4eHg=",
        "submods": {
            "PSA_IOT": {
                "ear.status": "affirming",
                "ear.trustworthiness-vector": dict.fromkeys(ear.AR4SI_CLAIMS, 2),
                "ear.appraisal-policy-id": "policy:PSA_IOT",
                "ear.veraison.annotated-evidence": {"psa-instance-id": "AQID",
                                                    "psa-software-components": []},
                "ear.veraison.policy-claims": {"problem": None},
                "ear.veraison.key-attestation": {"akpub": "MFkwEwYHKoZIzj0CAQ"},
            },
            "CCA_REALM": {
                "ear.status": "warning",
                "ear.trustworthiness-vector": {"executables": 33, "instance-identity": 2,
                                               "runtime-opaque": -2},
                "ear.veraison.verifier-added-claims": {"bar": "baz"},
            },
            "MINIMAL": {"ear.status": "none"},
        },
        "ear.veraison.some-future-claim": [1, {"a": None}],
    }


def test_another_producers_ear_is_read_with_its_unknown_claims_kept():
    claims = veraison_like()
    data = json.dumps(claims, indent=2).encode()  # any spacing and order
    assert ear.parse(data) == claims
    with pytest.raises(ear.MalformedEar, match="eat_profile"):
        ear.decode(ear.encode(claims))  # decode is for attestcall's own results only


def test_attestcalls_own_ear_is_parsed_strictly_with_unknown_claims_ignored():
    verdict = verdict_for("sgx", SGX)
    claims = ear.claims_set(verdict, issued_at=NOW, nonce=bytes(range(32)))
    claims["ear.raw-evidence"] = "AAAA"
    claims["submods"]["sgx"]["attestcall.from-a-later-version"] = {"x": 1}
    assert ear.parse(json.dumps(claims, indent=1).encode()) == claims
    assert ear.decode(ear.encode(claims)) == claims
    # its profile's own rules hold under parse: one submod, its required claims, its forms
    for broken in (lambda c: c["submods"].__setitem__("tdx", dict(c["submods"]["sgx"])),
                   lambda c: c["submods"]["sgx"].pop("attestcall.simulated"),
                   lambda c: c["submods"]["sgx"].__setitem__("ear.appraisal-policy-id", "p1"),
                   lambda c: c.__setitem__("eat_nonce", "not base64url!")):
        copy = json.loads(ear.encode(claims))
        broken(copy)
        with pytest.raises(ear.MalformedEar):
            ear.parse(ear.encode(copy))


def _changed(path: tuple, value) -> bytes:
    """veraison_like() with the member at ``path`` set to ``value`` (None: removed)."""
    claims = veraison_like()
    *parents, last = path
    target = claims
    for key in parents:
        target = target[key]
    if value is None:
        target.pop(last)
    else:
        target[last] = value
    return json.dumps(claims).encode()


PSA = ("submods", "PSA_IOT")
VECTOR = (*PSA, "ear.trustworthiness-vector")


@pytest.mark.parametrize("path, value, message", [
    (("eat_profile",), None, "eat_profile"),
    (("eat_profile",), 7, "eat_profile"),
    (("iat",), None, "iat"),
    (("iat",), "1700000000", "iat"),
    (("iat",), True, "iat"),
    (("iat",), 1.7e9, "iat"),
    (("iat",), -1, "iat"),
    (("iat",), 10 ** 12, "iat"),  # after the year 9999
    (("exp",), 1_700_000_000, "exp"),
    (("exp",), "soon", "exp"),
    (("ear.verifier-id",), None, "verifier-id"),
    (("ear.verifier-id",), {"developer": "x"}, "verifier-id"),
    (("ear.verifier-id",), {"developer": "x", "build": 5}, "verifier-id"),
    (("ear.verifier-id",), "veraison", "verifier-id"),
    (("eat_nonce",), 12345678901, "eat_nonce"),
    (("eat_nonce",), [], "eat_nonce"),
    (("eat_nonce",), "n" * 89, "eat_nonce"),
    (("submods",), None, "submods"),
    (("submods",), {}, "submods"),
    (("submods",), [{"ear.status": "affirming"}], "submods"),
    (("submods", ""), {"ear.status": "affirming"}, "without a name"),
    (PSA, "affirming", "not an object"),
    ((*PSA, "ear.status"), None, "lacks ear.status"),
    ((*PSA, "ear.status"), 2, "not a tier"),
    ((*PSA, "ear.status"), "AFFIRMING", "not a tier"),
    ((*PSA, "ear.status"), "trustworthy", "not a tier"),
    (VECTOR, [2, 2], "trustworthiness vector"),
    (VECTOR, {}, "trustworthiness vector"),
    ((*VECTOR, "hardware"), "2", "trustworthiness vector"),
    ((*VECTOR, "hardware"), 2.0, "trustworthiness vector"),
    ((*VECTOR, "hardware"), True, "trustworthiness vector"),
    ((*VECTOR, "hardware"), 128, "trustworthiness vector"),
    ((*VECTOR, "hardware"), -129, "trustworthiness vector"),
    ((*VECTOR, "hardware"), 10 ** 30, "trustworthiness vector"),
    ((*VECTOR, "sparkle"), 2, "trustworthiness vector"),  # AR4SI's vector is closed
    ((*VECTOR, "hardware"), 96, "more trusting than its vector"),
    ((*PSA, "ear.appraisal-policy-id"), 7, "appraisal-policy-id"),
    ((*PSA, "ear.appraisal-policy-id"), "", "appraisal-policy-id"),
    ((*PSA, "ear.veraison.annotated-evidence"), ["a"], "evidence"),
    ((*PSA, "attestcall.simulated"), "yes", "simulated"),
    ((*PSA, "attestcall.technology-id"), -1, "technology id"),
    ((*PSA, "attestcall.advisories"), "INTEL-SA-1", "advisories"),
])
def test_known_claims_of_the_wrong_type_or_range_are_refused(path, value, message):
    with pytest.raises(ear.MalformedEar, match=message):
        ear.parse(_changed(path, value))


@pytest.mark.parametrize("data, message", [
    (b"[]", "JSON object"),
    (b'"ear"', "JSON object"),
    (b"{nope", "not UTF-8 JSON"),
    (b'{"iat": 1, "iat": 2}', "repeats the member 'iat'"),
    (b'{"iat": NaN}', "NaN"),
    (b'{"iat": Infinity}', "Infinity"),
    (b'{"x": "\xff"}', "not UTF-8"),
    (b'{"iat": ' + b"9" * 5000 + b"}", "not UTF-8 JSON"),  # Python's digit limit
    (b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nests too deep"),
])
def test_bytes_that_are_not_an_ear_object_are_refused(data, message):
    with pytest.raises(ear.MalformedEar, match=message):
        ear.parse(data)


def test_an_ear_over_the_size_limit_is_refused_before_it_is_read():
    claims = veraison_like()
    claims["padding"] = ""
    room = ear.MAX_EAR - len(json.dumps(claims).encode())
    claims["padding"] = "x" * room
    exactly = json.dumps(claims).encode()
    assert len(exactly) == ear.MAX_EAR
    assert ear.parse(exactly)["padding"] == "x" * room
    with pytest.raises(ear.EarTooLarge, match=f"limit is {ear.MAX_EAR}"):
        ear.parse(exactly + b" ")
    with pytest.raises(ear.EarTooLarge):
        ear.decode(b"{" + b" " * ear.MAX_EAR + b"}")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["eat_profile", "iat", "exp", "eat_nonce", "submods",
                         "ear.verifier-id", "ear.status", "ear.trustworthiness-vector",
                         "hardware", "developer", "build", "x"]), inner, max_size=6),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_any_json_value_is_read_or_refused_as_malformed_never_another_error(value):
    try:
        claims = ear.parse(json.dumps(value).encode())
    except ear.MalformedEar:
        return
    assert claims == value


def test_nesting_near_the_stack_limit_is_malformed_in_decode_too(monkeypatch):
    """Decoding re-encodes the claims to check the encoding is canonical: nesting that
    reads but is too deep to write again (here: read, then written on a shorter stack) is
    refused as malformed, not a RecursionError."""
    claims = ear.claims_set(verdict_for("sgx", SGX), issued_at=NOW)
    depth = 400
    data = ear.encode(claims)[:-1] + b',"z":' + b"[" * depth + b"]" * depth + b"}"
    assert ear.decode(data)["z"]  # an unknown claim, kept
    limit, encode = sys.getrecursionlimit(), ear.encode

    def on_a_short_stack(value):
        sys.setrecursionlimit(depth)
        try:
            return encode(value)
        finally:
            sys.setrecursionlimit(limit)

    monkeypatch.setattr(ear, "encode", on_a_short_stack)
    with pytest.raises(ear.MalformedEar, match="nests too deep"):
        ear.decode(data)


def test_a_plugins_own_policy_keys_speak_about_the_claims_its_record_names(monkeypatch):
    """A TEE's policy table says which AR4SI claim each of its own keys is about
    (``PolicyTable.ear_claims``): constrained and passing, the claim is approved; refused,
    it is contraindicated. A key no table names speaks about nothing."""
    from attestcall import schema, tees

    widget = tees.Tee(technology=201, name="widget", policy=tees.PolicyTable(
        {"rim": schema.hex_list(32), "colour": schema.hex_list(32)},
        ear_claims={"rim": ear.EXECUTABLES}))
    monkeypatch.setattr(tees, "_registry", tees.Registry([*tees.registry().tees, widget]))
    policy = Policy.load({"widget": {"rim": ["ab" * 32], "colour": ["cd" * 32]}})
    claims = {"rim": "ab" * 32}
    assert vector("widget", claims, policy)[ear.EXECUTABLES] == ear.APPROVED[ear.EXECUTABLES]
    refused = vector("widget", claims, policy, accepted=False,
                     reasons=[Reason("the rim is not allowed", "rim")])
    assert refused[ear.EXECUTABLES] == ear.REFUSED
    other = vector("widget", claims, policy, accepted=False,
                   reasons=[Reason("the colour is not allowed", "colour")])
    assert other[ear.EXECUTABLES] == ear.APPROVED[ear.EXECUTABLES]  # rim still passed
    assert ear.REFUSED not in other.values()  # colour is about no claim
