"""`attestcall verify` and `attestcall show` of CCA tokens through the real command line,
in subprocesses: exit statuses 0 (accepted), 1 (refused), 2 (unusable input), one line
and no traceback on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from attestcall.arm import cca
from tests.arm import tokens


def attestcall(env: dict[str, str], *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attestcall", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return dict(os.environ, ATTESTCALL_HOME=str(tmp_path / "home"), ATTESTCALL_OFFLINE="1")


@pytest.fixture
def simulated(tmp_path, env) -> tokens.Made:
    """A token whose platform key is this (test) machine's simulated CPAK."""
    made = tokens.make()
    folder = tmp_path / "home" / cca.SIM_FOLDER
    folder.mkdir(parents=True)
    (folder / cca.SIM_CPAK).write_bytes(made.cpak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return made


def test_verify_a_simulated_token(tmp_path, env, simulated):
    evidence = tmp_path / "token.cbor"
    evidence.write_bytes(simulated.evidence)

    refused = attestcall(env, "verify", evidence)
    assert refused.returncode == 1, refused.stderr
    assert "--trust-simulated" in refused.stdout

    accepted = attestcall(env, "verify", evidence, "--trust-simulated", "--nonce",
                          tokens.NONCE.hex(), "--json")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    verdict = json.loads(accepted.stdout)
    assert verdict["technology"] == "cca" and verdict["simulated"]
    assert verdict["claims"]["rim"] == "22" * 32
    assert verdict["claims"]["lifecycle_state"] == "secured"

    wrong = attestcall(env, "verify", evidence, "--trust-simulated", "--nonce", "cd" * 64)
    assert wrong.returncode == 1 and "nonce" in wrong.stdout

    policy = tmp_path / "policy.toml"
    policy.write_text(f'[cca]\nrim = ["{"23" * 32}"]\n')
    by_policy = attestcall(env, "verify", evidence, "--trust-simulated", "--policy", policy)
    assert by_policy.returncode == 1 and "allow-list" in by_policy.stdout

    policy.write_text('[cca]\nrim = ["abc"]\n')
    malformed = attestcall(env, "verify", evidence, "--trust-simulated", "--policy", policy)
    assert malformed.returncode == 2 and "Traceback" not in malformed.stderr


@pytest.mark.parametrize("name, anchor", [
    (tokens.VECTOR, "fvp_test_cpak.pub.pem"),
    (tokens.VECTOR, "cca_token_draft_ffm_00.ta.json"),
    ("cca_token_01.cbor", "fvp_test_cpak.pub.pem"),
    ("cca_token_02.cbor", "cca_token_02.ta.json"),
])
def test_verify_the_public_tokens_with_cpak(env, name, anchor):
    result = attestcall(env, "verify", tokens.DATA / name, "--cpak", tokens.DATA / anchor,
                        "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["accepted"] and verdict["technology"] == "cca" and not verdict["simulated"]


def test_verify_with_cpak_refusals_and_unusable_anchors(tmp_path, env):
    vector = tokens.DATA / tokens.VECTOR
    nonce = attestcall(env, "verify", vector, "--cpak", tokens.DATA / "fvp_test_cpak.pub.pem",
                       "--nonce", tokens.VECTOR_CHALLENGE.hex())
    assert nonce.returncode == 0, nonce.stdout + nonce.stderr
    other = attestcall(env, "verify", vector, "--cpak", tokens.DATA / "cca_token_02.ta.json")
    assert other.returncode == 1 and "no trust anchor given is for this platform" in other.stdout
    unbound = attestcall(env, "verify", tokens.DATA / "cca_token_bug_33.cbor", "--cpak",
                         tokens.DATA / "cca_token_draft_ffm_00.ta.json")
    assert unbound.returncode == 1 and "not bound to the realm token" in unbound.stdout
    bad = attestcall(env, "verify", tokens.DATA / "cca_token_02.cbor", "--cpak",
                     tokens.DATA / "cca_token_02.ta_bad.json")
    assert bad.returncode == 2 and "not a point on P-256" in bad.stderr
    assert "Traceback" not in bad.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    unusable = attestcall(env, "verify", vector, "--cpak", garbage)
    assert unusable.returncode == 2 and "Traceback" not in unusable.stderr


def test_verify_a_real_token_without_its_anchor_is_exit_2(env):
    result = attestcall(env, "verify", tokens.DATA / tokens.VECTOR)
    assert result.returncode == 2
    assert "no trust anchor" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("size", [3, 100, 2123])
def test_verify_a_truncated_token_is_exit_2(tmp_path, env, size):
    evidence = tmp_path / "cut.cbor"
    evidence.write_bytes(tokens.read(tokens.VECTOR)[:size])
    result = attestcall(env, "verify", evidence, "--tech", "cca")
    assert result.returncode == 2, result.stdout
    assert "truncated" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------- show


def test_show_a_token_raw_hex_and_base64(tmp_path, env):
    from tests.show.helpers import assert_documented

    data = tokens.read(tokens.VECTOR)
    raw = attestcall(env, "show", tokens.DATA / tokens.VECTOR, "--json")
    assert raw.returncode == 0, raw.stderr
    tree = json.loads(raw.stdout)
    assert_documented(tree)
    assert (tree["kind"], tree["technology"], tree["size"]) == ("cca-token", "cca", len(data))
    assert tree["format"]["tag"] == 399
    platform, realm = tree["platform_token"], tree["realm_token"]
    assert platform["protected_header"]["alg"] == {"value": -35, "name": "ES384"}
    assert realm["claims"]["cca-realm-challenge"] == tokens.VECTOR_CHALLENGE.hex()
    assert realm["claims"]["cca-realm-profile"] == "tag:arm.com,2023:realm#1.0.0"
    assert realm["claims"]["cca-realm-public-key"]["encoding"] == "COSE_Key"
    assert realm["claims"]["cca-realm-public-key"]["key"]["curve"] == "secp384r1"
    assert len(realm["claims"]["cca-realm-extensible-measurements"]) == 4
    lifecycle = platform["claims"]["cca-platform-lifecycle"]
    assert lifecycle == {"value": 0x3003, "raw": "0x3003", "name": "secured"}
    components = platform["claims"]["cca-platform-sw-components"]
    assert [c["measurement-type"] for c in components][:3] == ["RSE_BL1_2", "RSE_BL2", "RSE_S"]
    assert tree["binding"]["holds"] is True

    for encoded, name in ((data.hex(), "hex"), (__import__("base64").b64encode(data).decode(),
                                                 "base64")):
        path = tmp_path / f"token.{name}"
        path.write_text(encoded)
        again = json.loads(attestcall(env, "show", path, "--json").stdout)
        assert again == {**tree, "encoding": name}

    text = attestcall(env, "show", tokens.DATA / tokens.VECTOR).stdout
    assert "cca-realm-challenge: " + tokens.VECTOR_CHALLENGE.hex() in text
    assert "name: secured" in text


def test_show_names_an_unbound_realm_and_a_legacy_raw_rak(env):
    tree = json.loads(attestcall(env, "show", tokens.DATA / "cca_token_bug_33.cbor",
                                 "--json").stdout)
    assert tree["binding"]["holds"] is False
    realm = tree["realm_token"]["claims"]
    assert realm["cca-realm-profile"] is None
    assert realm["cca-realm-public-key"]["encoding"] == "raw P-384 point"


def test_show_a_cmw_token_with_unknown_claims(tmp_path):
    from attestcall.arm.formats import describe

    made = tokens.make(form=907, realm_profile="tag:arm.com,2024:realm#2.0.0")
    tree = describe.describe_cca(made.evidence)
    assert tree["format"]["tag"] == 907
    realm = tree["realm_token"]["claims"]
    assert realm["cca-realm-instance-id"] == "01" + "44" * 32
    assert realm["cca-realm-mec-policy"] == "shared"
    assert describe.describe_cca(b"\x00" * 10) is None

    import cbor2

    from attestcall.arm.formats import cose, token

    decoded = token.decode(made.evidence)
    claims = {**cbor2.loads(decoded.realm.payload), 99999: [b"\x01", None, {"k": 2}]}
    extended = token.encode_collection(decoded.platform_bytes,
                                       cose.sign1(made.rak, "ES384", cbor2.dumps(claims)))
    tree = describe.describe_cca(extended)
    assert tree["realm_token"]["claims"]["unknown-claims"] == {"99999": ["01", None, {"k": 2}]}
    assert "unknown-claims" not in tree["platform_token"]["claims"]
    assert tree["binding"]["holds"] is True


def test_show_a_truncated_token_is_one_line_exit_2(tmp_path, env):
    cut = tmp_path / "cut.cbor"
    cut.write_bytes(tokens.read(tokens.VECTOR)[:1000])
    result = attestcall(env, "show", cut)
    assert result.returncode == 2 and "truncated" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
