"""Adding a TEE is one folder plus one entry point: a toy TEE that lives only under tests/
(tests/tees/plugin/toy_tee.py) registers through the ``attestcall.tees`` entry-point group
exactly as a third-party package would, and every command works with it — run, attest,
verify (technology read from the bytes), keep serve + deploy — with its own policy table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(__file__).resolve().parent / "plugin"
HELLO = REPO / "examples" / "hello.wat"
NONCE = "ab" * 64


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python finds the toy's distribution (its entry point) and
    module, as `pip install toy-tee` would arrange."""
    site = tmp_path_factory.mktemp("site")
    info = site / "toy_tee-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-tee\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[attestcall.tees]\ntoy = toy_tee:TEE\n")
    env = dict(os.environ)
    paths = [str(site), str(PLUGIN), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def attestcall(env, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attestcall", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_nothing_under_src_names_the_toy():
    hits = [p for p in (REPO / "src").rglob("*.py") if "toy" in p.read_text().lower()]
    assert hits == []


def test_the_toy_is_unknown_without_its_entry_point():
    result = attestcall(dict(os.environ), "run", "--tee", "toy-sim", HELLO)
    assert result.returncode == 2 and "toy-sim" in result.stderr


def test_run_a_wasm_payload_in_a_toy_keep(toy_env):
    result = attestcall(toy_env, "run", "--tee", "toy-sim", HELLO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "technology: 200"
    assert lines[1] == "evidence:   176 bytes"


def test_the_toy_options_and_keeps_are_in_help(toy_env):
    result = attestcall(toy_env, "run", "--help")
    assert "--toy-measurement" in result.stdout and "toy-sim" in result.stdout


def test_attest_then_verify_detects_the_toy(toy_env, tmp_path):
    evidence = tmp_path / "toy.bin"
    measurement = "5a" * 32
    made = attestcall(toy_env, "attest", "--tee", "toy-sim", "--nonce", NONCE,
                      "--toy-measurement", measurement, "-o", evidence)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("technology 200 (TOY), 176 bytes")
    data = evidence.read_bytes()
    assert data[:8] == b"TOYQUOTE" and data[8:72] == bytes.fromhex(NONCE)
    assert data[72:104] == bytes.fromhex(measurement)

    untrusted = attestcall(toy_env, "verify", evidence)
    assert untrusted.returncode == 1 and "--trust-simulated" in untrusted.stdout

    accepted = attestcall(toy_env, "verify", evidence, "--trust-simulated", "--nonce", NONCE)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.startswith("accepted: toy quote [SIMULATED]")

    wrong_nonce = attestcall(toy_env, "verify", evidence, "--trust-simulated",
                             "--nonce", "cd" * 64)
    assert wrong_nonce.returncode == 1 and "nonce" in wrong_nonce.stdout

    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(data[:80] + bytes([data[80] ^ 1]) + data[81:])
    assert attestcall(toy_env, "verify", tampered, "--trust-simulated").returncode == 1

    # `attestcall show` decodes it through the toy's own describer (raw and hex alike)
    shown = attestcall(toy_env, "show", evidence, "--json")
    assert shown.returncode == 0, shown.stderr
    tree = json.loads(shown.stdout)
    assert (tree["kind"], tree["technology"]) == ("toy-quote", "toy")
    assert tree["quote"]["TOY_MEASUREMENT"] == measurement
    assert tree["quote"]["REPORT_DATA"] == NONCE
    as_hex = tmp_path / "toy.hex"
    as_hex.write_text(data.hex())
    again = json.loads(attestcall(toy_env, "show", as_hex, "--json").stdout)
    assert again == {**tree, "encoding": "hex"}
    assert "TOY_MEASUREMENT: " + measurement in attestcall(toy_env, "show", evidence).stdout


def test_the_toy_policy_table_is_checked_by_the_toys_schema(toy_env, tmp_path):
    evidence = tmp_path / "toy.bin"
    assert attestcall(toy_env, "attest", "--tee", "toy-sim", "--nonce", NONCE,
                      "--toy-measurement", "11" * 32, "-o", evidence).returncode == 0
    policy = tmp_path / "policy.toml"

    policy.write_text(f'[toy]\nmeasurement = ["{"11" * 32}"]\n')
    allowed = attestcall(toy_env, "verify", evidence, "--trust-simulated", "--policy", policy)
    assert allowed.returncode == 0, allowed.stdout

    policy.write_text(f'[toy]\nmeasurement = ["{"22" * 32}"]\n')
    refused = attestcall(toy_env, "verify", evidence, "--trust-simulated", "--policy", policy)
    assert refused.returncode == 1 and "allow-list" in refused.stdout

    policy.write_text('[toy]\nmeasurement = ["abc"]\n')
    malformed = attestcall(toy_env, "verify", evidence, "--trust-simulated", "--policy", policy)
    assert malformed.returncode == 2 and "64 hex digits" in malformed.stderr

    policy.write_text("[toy]\nmrenclave = []\n")
    unknown = attestcall(toy_env, "verify", evidence, "--trust-simulated", "--policy", policy)
    assert unknown.returncode == 2
    assert "unknown key 'mrenclave' in [toy]; known: allow_debug, measurement" in unknown.stderr


def toy_public_key(env) -> bytes:
    """The toy platform's public key (PEM), as its vendor would publish it."""
    code = ("import sys, toy_tee; from cryptography.hazmat.primitives import serialization as s;"
            "sys.stdout.write(toy_tee.simulated_roots()[0].public_bytes("
            "s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.encode()


def test_the_toys_trust_anchor_option_comes_from_its_record(toy_env, tmp_path):
    """``--toy-key`` is declared by the toy's record alone: verify and deploy offer it,
    and the key it names is trusted without --trust-simulated."""
    for command in ("verify", "deploy"):
        shown = attestcall(toy_env, command, "--help")
        assert "--toy-key FILE" in shown.stdout and "public key (PEM) to trust" in shown.stdout
    evidence = tmp_path / "toy.bin"
    assert attestcall(toy_env, "attest", "--tee", "toy-sim", "--nonce", NONCE,
                      "-o", evidence).returncode == 0
    key = tmp_path / "toy.pub.pem"
    key.write_bytes(toy_public_key(toy_env))
    accepted = attestcall(toy_env, "verify", "--toy-key", key, "--nonce", NONCE, evidence)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert accepted.stdout.startswith("accepted: toy quote") and "SIMULATED" not in \
        accepted.stdout

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = tmp_path / "other.pub.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    wrong = attestcall(toy_env, "verify", "--toy-key", other, evidence)
    assert wrong.returncode == 1 and "not signed by the given toy key" in wrong.stdout
    garbage = attestcall(toy_env, "verify", "--toy-key", evidence, evidence)
    assert garbage.returncode == 2 and "not a PEM public key" in garbage.stderr
    sgx = attestcall(toy_env, "verify", "--toy-key", key,
                     REPO / "tests/data/intel/sgx_quote_v3.bin")
    assert sgx.returncode == 2
    assert "--toy-key is not for SGX quote evidence; it takes --collateral or --pccs" in \
        sgx.stderr


def deploy_once(env, *options) -> tuple[subprocess.CompletedProcess, subprocess.Popen, str]:
    """``deploy`` with ``options`` to a toy keep serving one tenant: (deploy's result, the
    keep's process once it ended, the keep's log)."""
    keep = subprocess.Popen(
        [sys.executable, "-m", "attestcall", "keep", "serve", "--tee", "toy-sim", "--listen",
         "127.0.0.1:0", "--once"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = keep.stdout.readline()
        assert "listening on" in line, line + keep.stderr.read()
        address = line.rsplit(" ", 1)[1].strip()
        result = attestcall(env, "deploy", "--keep", address, *options, HELLO)
    finally:
        keep.wait(timeout=60)
    return result, keep, keep.stderr.read()


def test_deploy_trusts_the_toy_key_given(toy_env, tmp_path):
    key = tmp_path / "toy.pub.pem"
    key.write_bytes(toy_public_key(toy_env))
    result, _, keep_log = deploy_once(toy_env, "--toy-key", key)
    assert result.returncode == 0, result.stderr + keep_log
    assert result.stdout.splitlines()[0] == "technology: 200"


def test_deploy_to_a_toy_keep(toy_env, tmp_path):
    result, keep, keep_log = deploy_once(toy_env, "--trust-simulated")
    assert result.returncode == 0, result.stderr + keep_log
    assert result.stdout.splitlines()[0] == "technology: 200"
    assert keep.returncode == 0, keep_log
