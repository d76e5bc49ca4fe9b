"""The CCA token's formats: COSE_Sign1 and COSE_Key, both collections, both claim sets,
decoded strictly from the public vectors and from tokens made here."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.arm import cca
from attestcall.arm.formats import cose, token
from attestcall.errors import EvidenceError
from tests.arm import tokens

VECTORS = ("cca_token_draft_ffm_00.cbor", "cca_token_01.cbor", "cca_token_02.cbor",
           "trustee_cca_example_token.cbor", "veraison_services_cca_good.cbor",
           "veraison_services_e2e_evidence.cbor",
           "cca_token_bug_33.cbor")


# ------------------------------------------------------------------ the vectors


def test_the_shared_vector_decodes_to_its_documented_claims():
    data = tokens.read(tokens.VECTOR)
    decoded = token.decode(data)
    assert decoded.form == token.TAG_LEGACY
    assert decoded.platform.algorithm is cose.ES384 and decoded.realm.algorithm is cose.ES384
    realm, platform = decoded.realm_claims, decoded.platform_claims
    assert realm.challenge == tokens.VECTOR_CHALLENGE
    assert (platform.profile, realm.profile) == (token.PLATFORM_1_0, token.REALM_1_0)
    assert realm.public_key[:1] == b"\xa4" and isinstance(realm.rak, ec.EllipticCurvePublicKey)
    # the binding: SHA-256 of the RAK's exact COSE_Key bytes
    assert platform.challenge == hashlib.sha256(realm.public_key).digest()
    assert platform.lifecycle == 0x3003 and platform.lifecycle_state == "secured"
    assert len(platform.software_components) == 13
    assert platform.software_components[0].type == "RSE_BL1_2"
    assert platform.implementation_id.hex().startswith("7f454c46")
    assert platform.instance_id[0] == 1 and len(platform.instance_id) == 33
    assert len(realm.extensible_measurements) == 4
    assert realm.personalization_value.startswith(b"The quick brown fox")
    assert cca.report_data(data) == tokens.VECTOR_CHALLENGE
    assert decoded.realm.verify(realm.rak) is None  # signed by the RAK it carries


@pytest.mark.parametrize("name", VECTORS)
def test_every_vector_decodes_and_is_recognised(name):
    data = tokens.read(name)
    assert cca.recognise(data) and token.recognise(data)
    decoded = token.decode(data)
    assert decoded.realm.verify(decoded.realm_claims.rak) is None


def test_the_legacy_vectors_carry_a_raw_p384_rak_and_their_own_algorithms():
    legacy = token.decode(tokens.read("cca_token_02.cbor"))
    assert legacy.realm_claims.profile is None and legacy.realm_claims.raw_rak
    assert len(legacy.realm_claims.public_key) == 97
    assert legacy.realm_claims.public_key[0] == 4
    assert legacy.platform.algorithm is cose.ES256  # platform ES256, realm ES384
    assert legacy.realm.algorithm is cose.ES384
    assert legacy.realm_claims.public_key_hash_algo == "sha-512"
    assert legacy.platform_claims.challenge == hashlib.sha512(
        legacy.realm_claims.public_key).digest()


def test_the_legacy_collection_re_encodes_to_the_vectors_bytes():
    data = tokens.read(tokens.VECTOR)
    collection = token.decode_collection(data)
    assert token.encode_collection(collection.platform, collection.realm,
                                   token.TAG_LEGACY) == data


def test_the_cmw_collection_holds_the_same_tokens():
    collection = token.decode_collection(tokens.read(tokens.VECTOR))
    cmw = token.encode_collection(collection.platform, collection.realm)
    assert cmw[:3] == b"\xd9\x03\x8b" and cca.recognise(cmw)
    outer = cbor2.loads(cmw)
    assert outer.tag == 907
    assert list(outer.value[44234]) == [263, collection.platform]
    assert list(outer.value[44241]) == [263, collection.realm]
    again = token.decode_collection(cmw)
    assert (again.form, again.platform, again.realm) == (907, collection.platform,
                                                         collection.realm)
    assert cca.report_data(cmw) == tokens.VECTOR_CHALLENGE


def test_bug_33_is_a_token_whose_platform_challenge_is_not_its_raks_hash():
    decoded = token.decode(tokens.read("cca_token_bug_33.cbor"))
    rak = decoded.realm_claims
    assert decoded.platform_claims.challenge != token.binding(rak.public_key,
                                                              rak.public_key_hash_algo)


# ----------------------------------------------------------------------- COSE


@pytest.mark.parametrize("alg", [cose.ES256, cose.ES384, cose.ES512])
def test_sign1_round_trips_and_verifies_only_with_its_key(alg):
    key = ec.generate_private_key(alg.curve())
    signed = cose.sign1(key, alg.name, b"payload")
    message = cose.decode_sign1(signed)
    assert message.algorithm is alg and message.payload == b"payload"
    assert message.header == {1: alg.id} and len(message.signature) == 2 * alg.size
    assert message.verify(key.public_key()) is None
    other = ec.generate_private_key(alg.curve()).public_key()
    assert message.verify(other) == "the signature does not verify"
    assert cose.decode_sign1(signed[:-1] + bytes([signed[-1] ^ 1])).verify(
        key.public_key()) is not None


def test_a_signature_is_checked_against_the_algorithms_curve():
    key = ec.generate_private_key(ec.SECP256R1())
    message = cose.decode_sign1(cose.sign1(key, "ES256", b"x"))
    assert "needs a secp256r1 key" in message.verify(
        ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(ValueError):
        cose.sign1(key, "ES384", b"x")


def test_raw_and_der_signatures_convert_both_ways():
    key = ec.generate_private_key(ec.SECP521R1())
    der = key.sign(b"m", ec.ECDSA(cose.ES512.hash()))
    raw = cose.der_to_raw(der, 66)
    assert len(raw) == 132 and cose.raw_to_der(raw, 66) == der


@pytest.mark.parametrize("curve", [ec.SECP256R1, ec.SECP384R1, ec.SECP521R1])
def test_cose_keys_round_trip(curve):
    public = ec.generate_private_key(curve()).public_key()
    encoded = cose.encode_cose_key(public)
    assert cose.decode_cose_key(encoded) == public
    assert cbor2.loads(encoded)[1] == 2


@pytest.mark.parametrize("key, message", [
    ({1: 1, -1: 2, -2: b"x", -3: b"y"}, "not an EC2 key"),
    ({1: 2, -1: 7, -2: b"x", -3: b"y"}, "curve 7"),
    ({1: 2, -1: 2, -2: b"x" * 48}, "lacks x (-2) or y (-3)"),
    ({1: 2, -1: 2, -2: b"x" * 48, -3: True}, "lacks x (-2) or y (-3)"),
    ({1: 2, -1: 2, -2: b"x" * 47, -3: b"y" * 48}, "48 bytes each"),
    ({1: 2, -1: 2, -2: b"\x01" * 48, -3: b"\x02" * 48}, "not a point on secp384r1"),
    ([1, 2], "not a map"),
])
def test_malformed_cose_keys_are_evidence_errors(key, message):
    with pytest.raises(EvidenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cose.decode_cose_key(cbor2.dumps(key))


def test_a_sign1_with_an_unsupported_algorithm_is_refused():
    signed = cose.encode_sign1({1: -8}, b"p", b"s" * 64)  # EdDSA
    with pytest.raises(EvidenceError, match="not ES256"):
        _ = cose.decode_sign1(signed).algorithm
    with pytest.raises(EvidenceError, match="no algorithm"):
        _ = cose.decode_sign1(cose.encode_sign1({}, b"p", b"s")).algorithm


@pytest.mark.parametrize("data, message", [
    (cbor2.dumps([b"", {}, b"", b""]), "not tagged 18"),
    (cbor2.dumps(cbor2.CBORTag(17, [b"", {}, b"", b""])), "tag 17"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""])), "four items"),
    (cbor2.dumps(cbor2.CBORTag(18, [{}, {}, b"", b""])), "protected header is not"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"", [], b"", b""])), "unprotected header is not"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, None, b""])), "no embedded payload"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", "s"])), "signature is not"),
    (cbor2.dumps(cbor2.CBORTag(18, [b"\x81\x01", {}, b"", b""])), "protected header is not a map"),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {1: -7}, b"", b""])), "both buckets"),
])
def test_malformed_sign1_structures_are_evidence_errors(data, message):
    with pytest.raises(EvidenceError, match=message):
        cose.decode_sign1(data)


# ------------------------------------------------------------ tokens made here


@pytest.mark.parametrize("form", [token.TAG_CMW, token.TAG_LEGACY])
@pytest.mark.parametrize("profile", [None, token.REALM_1_0, token.REALM_2_0])
def test_made_tokens_decode_to_what_was_encoded(form, profile):
    made = tokens.make(form=form, realm_profile=profile)
    decoded = token.decode(made.evidence)
    assert decoded.form == form
    assert decoded.platform_claims == made.platform
    assert decoded.realm_claims == made.realm
    assert decoded.realm_claims.raw_rak == (profile is None)
    assert decoded.platform_claims.challenge == token.binding(made.realm.public_key, "sha-256")
    assert decoded.platform.verify(made.cpak.public_key()) is None
    assert decoded.realm.verify(decoded.realm_claims.rak) is None
    if profile == token.REALM_2_0:
        assert decoded.realm_claims.instance_id[0] == 1
        assert decoded.realm_claims.mec_policy == "shared"


def test_encode_collection_refuses_an_unknown_form():
    with pytest.raises(ValueError):
        token.encode_collection(b"", b"", 400)


def test_lifecycle_states_are_named_by_range():
    assert [token.lifecycle_state(v) for v in (0x0000, 0x10ff, 0x2001, 0x3000, 0x30ff,
                                               0x4000, 0x5055, 0x6000, 0x7000, -1)] == [
        "unknown", "assembly-and-test", "cca-platform-rot-provisioning", "secured", "secured",
        "non-cca-platform-debug", "recoverable-cca-platform-debug", "decommissioned",
        "invalid", "invalid"]


# ------------------------------------------------------------------ strictness


def _vector_parts() -> tuple[dict, dict]:
    decoded = token.decode(tokens.read(tokens.VECTOR))
    return dict(cbor2.loads(decoded.platform.payload)), dict(cbor2.loads(decoded.realm.payload))


PLATFORM_MANDATORY = (265, 10, 2396, 256, 2401, 2395, 2399, 2402)
REALM_MANDATORY = (10, 44235, 44238, 44239, 44236, 44237, 44240)


@pytest.mark.parametrize("label", PLATFORM_MANDATORY)
def test_a_missing_platform_claim_is_named(label):
    platform, _ = _vector_parts()
    del platform[label]
    with pytest.raises(EvidenceError, match=rf"platform token has no .* \({label}\)"):
        token.parse_platform_claims(cbor2.dumps(platform))


@pytest.mark.parametrize("label", REALM_MANDATORY)
def test_a_missing_realm_claim_is_named(label):
    _, realm = _vector_parts()
    del realm[label]
    with pytest.raises(EvidenceError, match=rf"realm token has no .* \({label}\)"):
        token.parse_realm_claims(cbor2.dumps(realm))


@pytest.mark.parametrize("label, value, message", [
    (10, b"\x00" * 31, "challenge .* 31 bytes"),
    (10, "text", "challenge .* not a byte string"),
    (2396, b"\x00" * 33, "implementation id .* 33 bytes"),
    (256, b"\x02" + b"\x00" * 32, "not a random UEID"),
    (2395, 0x10000, "lifecycle .* from 0 to 65535"),
    (2395, -1, "lifecycle"),
    (2395, True, "lifecycle"),
    (2399, [], "software components .* empty"),
    (2399, {}, "not an array"),
    (2399, [{2: b"\x00" * 32}], "no signer id"),
    (2399, [{2: b"\x00" * 31, 5: b"\x00" * 32}], "measurement value is 31 bytes"),
    (2399, [{2: b"\x00" * 32, 5: b"\x00" * 32, 1: 7}], "measurement type .* not a text"),
    (2399, ["x"], "software component 0 is not a map"),
    (265, "tag:example.com,2024:other", "profile .* is not one of"),
    (2402, b"sha-256", "hash algorithm id .* not a text"),
    (2400, 7, "verification service"),
])
def test_wrong_platform_claims_are_named(label, value, message):
    platform, _ = _vector_parts()
    platform[label] = value
    with pytest.raises(EvidenceError, match=message):
        token.parse_platform_claims(cbor2.dumps(platform))


@pytest.mark.parametrize("label, value, message", [
    (10, b"\x00" * 32, "challenge .* 32 bytes, not 64"),
    (44235, b"\x00" * 63, "personalization value .* 63 bytes"),
    (44238, b"\x00" * 20, "initial measurement .* 20 bytes"),
    (44239, [b"\x00" * 32] * 3, "3 extensible measurements"),
    (44239, [b"\x00" * 32] * 3 + [b"\x00"], "extensible measurement 3 .* 1 bytes"),
    (44236, 5, "hash algorithm id .* not a text"),
    (44240, "sha-1", r"public key hash algorithm id \(44240\) 'sha-1' is not one of"),
    (44237, b"\x04" + b"\x00" * 96, "public key .* 96 bytes after"),
    (265, "tag:arm.com,2023:realm#9", "profile"),
])
def test_wrong_realm_claims_are_named(label, value, message):
    _, realm = _vector_parts()
    realm[label] = value
    with pytest.raises(EvidenceError, match=message):
        token.parse_realm_claims(cbor2.dumps(realm))


def test_a_legacy_realm_needs_a_raw_p384_point():
    _, realm = _vector_parts()
    del realm[265]  # the legacy form: the RAK is a raw point, and this one is a COSE_Key
    with pytest.raises(EvidenceError, match="uncompressed secp384r1 point"):
        token.parse_realm_claims(cbor2.dumps(realm))


def test_a_realm_2_0_token_needs_its_mec_policy_and_a_valid_instance_id_if_any():
    made = tokens.make(realm_profile=token.REALM_2_0)
    realm = dict(cbor2.loads(token.decode(made.evidence).realm.payload))
    with pytest.raises(EvidenceError, match="no MEC policy"):
        token.parse_realm_claims(cbor2.dumps({k: v for k, v in realm.items() if k != 44243}))
    # draft-ffm-rats-cca-token-03's realm#2.0.0 has no instance id; the RMM's has one
    assert token.parse_realm_claims(cbor2.dumps(
        {k: v for k, v in realm.items() if k != 256})).instance_id is None
    with pytest.raises(EvidenceError, match="not a random UEID"):
        token.parse_realm_claims(cbor2.dumps({**realm, 256: b"\x02" + b"\x00" * 32}))
    with pytest.raises(EvidenceError, match="MEC policy .* not 0"):
        token.parse_realm_claims(cbor2.dumps({**realm, 44243: 2}))
    assert token.parse_realm_claims(cbor2.dumps({**realm, 44243: "private"})).mec_policy \
        == "private"


def test_the_platform_2_0_client_id():
    made = tokens.make(realm_profile=token.REALM_2_0, platform_changes={"client_id": 1})
    assert token.decode(made.evidence).platform_claims.client_id == 1
    platform, _ = _vector_parts()
    with pytest.raises(EvidenceError, match="client id"):
        token.parse_platform_claims(cbor2.dumps({**platform, 2394: "one"}))


def test_unknown_claims_are_ignored():
    platform, realm = _vector_parts()
    token.parse_platform_claims(cbor2.dumps({**platform, 99999: "x", "text": 1}))
    token.parse_realm_claims(cbor2.dumps({**realm, -70000: [1, 2]}))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (cbor2.dumps(cbor2.CBORTag(400, {})), "this one has tag 400"),
    (cbor2.dumps({44234: b"", 44241: b""}), "this one has no tag"),
    (cbor2.dumps(cbor2.CBORTag(399, [])), "not a map"),
    (cbor2.dumps(cbor2.CBORTag(399, {44234: b""})), "no realm token"),
    (cbor2.dumps(cbor2.CBORTag(399, {44241: b""})), "no platform token"),
    (cbor2.dumps(cbor2.CBORTag(399, {44234: b"", 44241: b"", 1: b""})), "unknown entries"),
    (cbor2.dumps(cbor2.CBORTag(399, {44234: "x", 44241: b""})), "platform token is not a byte"),
    (cbor2.dumps(cbor2.CBORTag(907, {44234: b"", 44241: b""})), "not a CMW record"),
    (cbor2.dumps(cbor2.CBORTag(907, {44234: [262, b""], 44241: [263, b""]})), "CMW type 262"),
    (cbor2.dumps(cbor2.CBORTag(907, {44234: [263, b""], 44241: [263, b"", 1]})),
     "realm entry is not a CMW record"),
])
def test_malformed_collections_are_evidence_errors(data, message):
    with pytest.raises(EvidenceError, match=message):
        token.decode_collection(data)


def test_trailing_bytes_are_refused_at_every_level():
    data = tokens.read(tokens.VECTOR)
    with pytest.raises(EvidenceError, match="1 bytes after"):
        token.decode(data + b"\x00")
    collection = token.decode_collection(data)
    padded = token.encode_collection(collection.platform + b"\x00", collection.realm)
    with pytest.raises(EvidenceError, match="platform token has 1 bytes after"):
        token.decode(padded)


def test_duplicate_map_keys_are_refused():
    # {10: h'00', 10: h'01'}: which challenge would count?
    with pytest.raises(EvidenceError, match="not well-formed"):
        cose.loads(b"\xa2\x0a\x41\x00\x0a\x41\x01", "claims")


@pytest.mark.parametrize("hostile", [
    b"\x81" * 100_000 + b"\x00",  # nesting far past any token
    b"\xd9\x01\x8f" + b"\x9f" * 5000,  # indefinite arrays, never closed
    b"\xd9\x01\x8f\x5b" + b"\x7f" + b"\xff" * 7,  # a byte string of 2^63 bytes
    b"\xd9\x01\x8f\xbb" + b"\x7f" + b"\xff" * 7,  # a map of 2^63 pairs
    b"\xd9\x01\x8f\xc2\x5a\x00\x10\x00\x00" + b"\xff" * 0x100000,  # a 1 MiB bignum
    b"\xd9\x01\x8f\xc1\x1b\xff\xff\xff\xff\xff\xff\xff\xff",  # a date past the calendar
    b"\xd9\x01\x8f\x7f\x62\xc3\x28\xff",  # invalid UTF-8 text
    b"\xd9\x01\x8f\xd8\x1c\x81\xd8\x1d\x00",  # a shared value referring to itself
    b"\xd9\x01\x8f\xff",  # a lone break
])
def test_hostile_cbor_is_an_evidence_error(hostile):
    with pytest.raises(EvidenceError):
        token.decode(hostile)


def test_every_truncation_is_a_clean_evidence_error():
    data = tokens.read(tokens.VECTOR)
    for size in range(len(data)):
        with pytest.raises(EvidenceError):
            token.decode(data[:size])


def test_the_record():
    assert (cca.TEE.technology, cca.TEE.name, cca.TEE.title) == (5, "cca", "CCA token")
    assert cca.TEE.media_type.startswith("application/eat-collection")
    assert not cca.recognise(b"\xd9\x01\x90") and not cca.recognise(b"")
