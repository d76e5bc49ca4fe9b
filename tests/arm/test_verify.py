"""CCA verification through the public API (``attestcall.verify``): the documented outcome
of every public vector, the trust anchor's forms, the nonce, the lifecycle, the ``[cca]``
policy, simulated tokens, and every single-bit change of a token refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import attestcall
from attestcall.arm import cca
from attestcall.arm.fetch import anchors
from attestcall.arm.formats import token
from attestcall.arm.verify.appraise import appraise_cca
from attestcall.errors import (
    CollateralError,
    CollateralMissing,
    EvidenceError,
    PolicyError,
)
from tests.arm import tokens

VECTOR = tokens.read(tokens.VECTOR)
PEM = tokens.DATA / "fvp_test_cpak.pub.pem"
STORE = tokens.DATA / "cca_token_draft_ffm_00.ta.json"


def pem(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(autouse=True)
def _empty_sim_home(tmp_path, monkeypatch):
    """No simulated CCA platform unless a test makes one."""
    monkeypatch.setenv("ATTESTCALL_HOME", str(tmp_path / "home"))
    anchors.clear_caches()


# ------------------------------------------------------------------ the vectors


@pytest.mark.parametrize("anchor", [PEM, STORE], ids=["pem", "store"])
def test_the_shared_vector_verifies_with_its_anchor(anchor):
    verdict = attestcall.verify(VECTOR, collateral=anchor, nonce=tokens.VECTOR_CHALLENGE)
    assert verdict.accepted, verdict.reasons
    assert verdict.technology == "cca" and not verdict.simulated
    claims = verdict.claims
    assert claims["challenge"] == tokens.VECTOR_CHALLENGE.hex()
    assert claims["lifecycle_state"] == "secured" and claims["token_format"] == 399
    assert claims["realm_profile"] == token.REALM_1_0
    assert claims["platform_alg"] == claims["realm_alg"] == "ES384"
    assert len(claims["software_components"]) == 13
    json.dumps(claims)  # --json prints them


def test_the_shared_vector_verifies_with_its_anchor_as_a_jwk_and_as_content():
    jwk = json.loads(STORE.read_text())[0]["pkey"]
    assert attestcall.verify(VECTOR, collateral=json.dumps(jwk)).accepted
    assert attestcall.verify(VECTOR, collateral=PEM.read_bytes()).accepted
    assert attestcall.verify(VECTOR, certs=PEM.read_text()).accepted


def test_the_shared_vector_in_the_cmw_form_verifies_the_same():
    collection = token.decode_collection(VECTOR)
    cmw = token.encode_collection(collection.platform, collection.realm, token.TAG_CMW)
    verdict = attestcall.verify(cmw, collateral=PEM)
    assert verdict.accepted and verdict.claims["token_format"] == 907


def test_the_tf_rmm_legacy_token_verifies_with_the_fvp_cpak():
    verdict = attestcall.verify(tokens.read("cca_token_01.cbor"), collateral=PEM)
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["realm_profile"] is None
    assert verdict.claims["platform_profile"] == token.PLATFORM_LEGACY
    assert len(bytes.fromhex(verdict.claims["rak"])) == 97


def test_cca_token_02_verifies_with_its_store_and_not_with_the_bad_one():
    data = tokens.read("cca_token_02.cbor")
    verdict = attestcall.verify(data, collateral=tokens.DATA / "cca_token_02.ta.json")
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["platform_alg"] == "ES256"
    assert verdict.claims["rak_hash_algo"] == "sha-512"
    with pytest.raises(CollateralError, match="not a point on P-256"):
        attestcall.verify(data, collateral=tokens.DATA / "cca_token_02.ta_bad.json")
    refused = attestcall.verify(data, collateral=PEM)  # a P-384 key for an ES256 token
    assert not refused.accepted and "does not verify with any trust anchor" in refused.reasons[0]


@pytest.mark.parametrize("name, anchor, realm_profile, rak_hash", [
    ("trustee_cca_example_token.cbor", STORE, None, "sha-256"),
    ("veraison_services_cca_good.cbor", tokens.DATA / "cca_token_02.ta.json",
     token.REALM_1_0, "sha-256"),
    ("veraison_services_e2e_evidence.cbor", tokens.DATA / "cca_token_02.ta.json",
     token.REALM_1_0, "sha-512"),
])
def test_the_trustee_and_veraison_services_tokens_verify(name, anchor, realm_profile,
                                                         rak_hash):
    data = tokens.read(name)
    verdict = attestcall.verify(data, collateral=anchor)
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["platform_profile"] == token.PLATFORM_LEGACY
    assert (verdict.claims["realm_profile"], verdict.claims["rak_hash_algo"]) == (
        realm_profile, rak_hash)
    assert not attestcall.verify(data, collateral=PEM if anchor != STORE else
                                 tokens.DATA / "cca_token_02.ta.json").accepted


def test_bug_33_has_a_trustworthy_platform_and_an_unbound_realm():
    verdict = attestcall.verify(tokens.read("cca_token_bug_33.cbor"), collateral=STORE)
    assert not verdict.accepted
    assert verdict.problems == ["the platform token is not bound to the realm token: its "
                                "challenge is not the sha-256 of the realm's public key"]


def test_any_other_platform_key_is_refused():
    other = pem(ec.generate_private_key(ec.SECP384R1()))
    verdict = attestcall.verify(VECTOR, collateral=other)
    assert not verdict.accepted
    assert "platform token's signature (ES384) does not verify" in verdict.reasons[0]


def test_a_store_for_another_platform_is_refused():
    entry = json.loads(STORE.read_text())[0]
    entry["instance-id"] = "01" + "ab" * 32
    verdict = attestcall.verify(VECTOR, collateral=json.dumps([entry]).encode())
    assert not verdict.accepted
    assert verdict.reasons[0].startswith("no trust anchor given is for this platform")


def test_the_store_picks_the_anchor_by_implementation_and_instance_id():
    entry = json.loads(STORE.read_text())[0]
    decoy = dict(entry, pkey=json.loads(STORE.read_text())[0]["pkey"] | {
        "x": entry["pkey"]["y"], "y": entry["pkey"]["x"]})
    stranger = {"pkey": entry["pkey"], "implementation-id": "00" * 32,
                "instance-id": entry["instance-id"]}
    loaded = anchors.parse(json.dumps([stranger, entry]).encode())
    decoded = token.decode(VECTOR).platform_claims
    chosen = loaded.for_platform(decoded.implementation_id, decoded.instance_id)
    assert [a.implementation_id for a in chosen] == [bytes.fromhex(entry["implementation-id"])]
    with pytest.raises(CollateralError):  # x and y swapped: not on the curve
        anchors.parse(json.dumps([decoy]).encode())


def test_without_an_anchor_a_real_token_is_a_missing_collateral():
    with pytest.raises(CollateralMissing, match="no trust anchor"):
        attestcall.verify(VECTOR)


def test_the_nonce_must_be_the_realm_challenge():
    verdict = attestcall.verify(VECTOR, collateral=PEM, nonce=b"\x00" * 64)
    assert not verdict.accepted and "nonce" in verdict.reasons[0]


@pytest.mark.parametrize("value, message", [
    (b"", "empty"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n", "no complete block"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a public key"),
    (b'{"kty": "RSA"}', "not an EC JWK"),
    (b'{"kty": "EC", "crv": "P-192", "x": "", "y": ""}', "P-192"),
    (b'{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}', "32 bytes each"),
    (b'{"kty": "EC", "crv": "P-256", "x": 1, "y": "AA"}', "x is missing"),
    (b"[]", "store is empty"),
    (b'[{"key": 1}]', "entry 0 is not an object"),
    (b"[{", "not valid JSON"),
    (b"\x30\x03\x02\x01\x01", "neither a PEM"),
])
def test_unusable_anchors_are_collateral_errors(value, message):
    with pytest.raises(CollateralError, match=message):
        anchors.parse(value)


def test_store_ids_are_checked():
    entry = json.loads(STORE.read_text())[0]
    for field, bad in (("implementation-id", "00"), ("instance-id", "zz" * 33)):
        with pytest.raises(CollateralError, match=field):
            anchors.parse(json.dumps([dict(entry, **{field: bad})]).encode())


def test_a_missing_anchor_file_is_a_collateral_error(tmp_path):
    with pytest.raises(CollateralError, match="cannot read"):
        attestcall.verify(VECTOR, collateral=tmp_path / "absent.pem")


def test_a_collateral_service_is_refused():
    with pytest.raises(CollateralError, match="no collateral service"):
        cca.collateral_source(VECTOR, None, "https://example.com")


# -------------------------------------------------------------- tokens made here


@pytest.mark.parametrize("form", [token.TAG_CMW, token.TAG_LEGACY])
@pytest.mark.parametrize("profile", [None, token.REALM_1_0, token.REALM_2_0])
@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_made_tokens_verify_for_every_form_profile_and_algorithm(form, profile, alg):
    made = tokens.make(form=form, realm_profile=profile, platform_alg=alg, realm_alg=alg,
                       rak_hash={"ES256": "sha-256", "ES384": "sha-384",
                                 "ES512": "sha-512"}[alg])
    verdict = attestcall.verify(made.evidence, collateral=pem(made.cpak), nonce=tokens.NONCE)
    assert verdict.accepted, verdict.reasons
    assert verdict.claims["platform_alg"] == alg
    assert verdict.claims["rim"] == "22" * 32
    assert verdict.claims["realm_profile"] == profile


def test_realm_2_0_claims_reach_the_verdict():
    made = tokens.make(realm_profile=token.REALM_2_0, platform_changes={"client_id": 7})
    claims = attestcall.verify(made.evidence, collateral=pem(made.cpak)).claims
    assert claims["platform_profile"] == token.PLATFORM_2_0 and claims["client_id"] == 7
    assert (claims["realm_instance_id"], claims["mec_policy"]) == ("01" + "44" * 32, "shared")


def test_a_realm_token_signed_by_another_key_is_refused():
    made = tokens.make()
    decoded = token.decode(made.evidence)
    impostor = ec.generate_private_key(ec.SECP384R1())
    from attestcall.arm.formats import cose

    forged = token.encode_collection(decoded.platform_bytes,
                                     cose.sign1(impostor, "ES384", decoded.realm.payload))
    verdict = attestcall.verify(forged, collateral=pem(made.cpak))
    assert not verdict.accepted
    assert verdict.problems == ["the realm token's signature does not verify with its RAK "
                                "(the signature does not verify)"]


def test_a_platform_challenge_of_another_rak_is_refused():
    made = tokens.make(platform_changes={"challenge": b"\x00" * 32})
    verdict = attestcall.verify(made.evidence, collateral=pem(made.cpak))
    assert not verdict.accepted and "not bound to the realm token" in verdict.problems[0]


# ----------------------------------------------------------- lifecycle and policy


@pytest.mark.parametrize("lifecycle, default, allowed", [
    (0x3000, True, True),
    (0x30FF, True, True),
    (0x4000, False, True),  # non-CCA platform debug
    (0x5001, False, True),  # recoverable CCA platform debug
    (0x6000, False, False),  # decommissioned: never
    (0x1000, False, False),  # assembly and test
    (0x0000, False, False),
    (0x7000, False, False),  # no defined state
])
def test_the_lifecycle_is_judged_by_the_policy(lifecycle, default, allowed):
    made = tokens.make(lifecycle=lifecycle)
    key = pem(made.cpak)
    verdict = attestcall.verify(made.evidence, collateral=key)
    assert verdict.accepted is default, verdict.reasons
    if not default:
        assert "lifecycle" in verdict.reasons[0]
        assert verdict.reasons[0].key == "allow_debug_lifecycle"
    policy = {"cca": {"allow_debug_lifecycle": True}}
    assert attestcall.verify(made.evidence, collateral=key, policy=policy).accepted is allowed


def test_the_policy_allow_lists():
    made = tokens.make()
    key = pem(made.cpak)

    def verdict(table):
        return attestcall.verify(made.evidence, collateral=key, policy={"cca": table})

    good = {"rim": ["22" * 32], "rem0": ["30" * 32], "rem3": ["33" * 32, "44" * 48],
            "personalization_value": ["11" * 64],
            "implementation_id": [tokens.IMPLEMENTATION_ID.hex()],
            "instance_id": [tokens.INSTANCE_ID.hex().upper()],
            "software_components": ["55" * 32, "66" * 32]}
    assert verdict(good).accepted
    for key_name, wrong in (("rim", ["23" * 32]), ("rem2", ["00" * 64]),
                            ("personalization_value", ["12" * 64]),
                            ("implementation_id", ["00" * 32]),
                            ("instance_id", ["01" + "00" * 32])):
        refused = verdict({**good, key_name: wrong})
        assert not refused.accepted and refused.reasons[0].key == key_name, key_name
    partial = verdict({"software_components": ["55" * 32]})
    assert partial.reasons == ["software component RMM measurement " + "66" * 32
                               + " is not in the policy's allow-list"]


@pytest.mark.parametrize("table, message", [
    ({"mrenclave": []}, "unknown key 'mrenclave' in \\[cca\\]"),
    ({"rim": ["00" * 31]}, "64, 96 or 128 hex digits"),
    ({"rim": "00" * 32}, "must be a list"),
    ({"instance_id": ["00" * 32]}, "66 hex digits"),
    ({"allow_debug_lifecycle": "yes"}, "true or false"),
    ({"software_components": ["xyz"]}, "hex digits"),
])
def test_a_malformed_cca_table_is_a_policy_error(table, message):
    with pytest.raises(PolicyError, match=message):
        attestcall.verify(VECTOR, collateral=PEM, policy={"cca": table})


# --------------------------------------------------------------------- simulated


def _simulate(home: Path, key: ec.EllipticCurvePrivateKey) -> None:
    folder = home / cca.SIM_FOLDER
    folder.mkdir(parents=True)
    (folder / cca.SIM_CPAK).write_bytes(pem(key))


def test_a_simulated_token_is_refused_unless_simulated_roots_are_trusted(tmp_path):
    made = tokens.make()
    _simulate(tmp_path / "home", made.cpak)
    assert cca.simulated_roots() == [made.cpak.public_key()]
    untrusted = attestcall.verify(made.evidence)
    assert not untrusted.accepted and untrusted.simulated
    assert "--trust-simulated" in untrusted.reasons[0]
    trusted = attestcall.verify(made.evidence, trust_simulated=True, nonce=tokens.NONCE)
    assert trusted.accepted and trusted.simulated, trusted.reasons
    # the simulated key given as an anchor is still the simulated platform
    given = attestcall.verify(made.evidence, collateral=pem(made.cpak), trust_simulated=True)
    assert given.accepted and given.simulated
    refused = attestcall.verify(made.evidence, collateral=pem(made.cpak))
    assert not refused.accepted and refused.simulated
    assert "--trust-simulated" in refused.reasons[0]


def test_trusting_simulated_roots_does_not_trust_another_platform(tmp_path):
    _simulate(tmp_path / "home", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(CollateralMissing):
        attestcall.verify(VECTOR, trust_simulated=False)
    with pytest.raises(CollateralMissing):  # the simulated key is no anchor for it
        attestcall.verify(VECTOR, trust_simulated=True)
    other = attestcall.verify(VECTOR, roots=[ec.generate_private_key(
        ec.SECP384R1()).public_key()])  # a root of the caller's own is an anchor
    assert not other.accepted and "does not verify with any trust anchor" in other.reasons[0]
    assert attestcall.verify(VECTOR, roots=[anchors.load(PEM).entries[0].key]).accepted
    assert attestcall.verify(VECTOR, collateral=PEM, trust_simulated=True).accepted


# --------------------------------------------------------------- every bit flip


def _refused(data: bytes, store: anchors.Anchors) -> bool:
    try:
        return bool(appraise_cca(data, store).problems)
    except EvidenceError:
        return True


def test_every_single_bit_flip_of_a_token_is_refused():
    """Exhaustively, over every bit of the whole token (both signed regions, the
    signatures and the framing): 17 000 tokens, each decoded and verified in-process."""
    store = anchors.load(PEM)
    assert not _refused(VECTOR, store)
    accepted = [(i, bit) for i in range(len(VECTOR)) for bit in range(8)
                if not _refused(VECTOR[:i] + bytes([VECTOR[i] ^ (1 << bit)]) + VECTOR[i + 1:],
                                store)]
    assert accepted == []


def test_the_cca_policy_keys_speak_about_ar4si_claims():
    from attestcall import ear
    from attestcall.verifier.policy import Policy

    made = tokens.make(lifecycle=0x4000)
    key = pem(made.cpak)
    policy = {"cca": {"rim": ["22" * 32], "software_components": ["55" * 32]}}
    verdict = attestcall.verify(made.evidence, collateral=key, policy=policy)
    vector = ear.vector_of(verdict, Policy.load(policy))
    assert vector[ear.RUNTIME_OPAQUE] == ear.REFUSED  # the debug lifecycle
    assert vector[ear.HARDWARE] == ear.REFUSED  # software components: RMM not listed
    assert vector[ear.EXECUTABLES] == ear.APPROVED[ear.EXECUTABLES]
