"""attestcall.ear: a verdict as an EAR claims-set; the mapping to AR4SI, row by row."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

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
        ear.claims_set(verdict_for("cca", {}), issued_at=NOW)


@pytest.mark.parametrize("tee", ["sgx-sim", "snp-sim", "tdx-sim"])
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
    claim = {"sgx": "mrenclave", "tdx": "mrtd", "snp": "measurement"}[name]
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
