"""--tee cca-sim on the command line: ``attest`` (both forms), ``run``, ``verify``, ``sim
show`` and ``sim collateral``. (The native, C, Python and Wasm front ends run every
simulator, cca-sim among them: tests/frontends/test_every_simulator.py.)"""

from __future__ import annotations

import hashlib
import json
import os

from attestcall.arm.formats import token as fmt
from attestcall.keep.platforms import tee_names
from tests import paths
from tests.test_end_to_end import attestcall

NONCE = bytes(range(100, 164))
WAT = paths.WASM_PAYLOADS


def realm(token: bytes) -> fmt.RealmClaims:
    return fmt.decode(token).realm_claims


def test_registered() -> None:
    assert "cca-sim" in tee_names()


# ---------------------------------------------------------------------- the command line


def test_attest_writes_the_token_of_the_nonce_in_either_form(tmp_path) -> None:
    for form in (907, 399):
        out = tmp_path / f"token-{form}.cbor"
        attestcall("attest", "--tee", "cca-sim", "--nonce", NONCE.hex(), "-o", str(out),
                   "--cca-token-format", str(form), "--cca-personalization-value", "ab" * 64)
        decoded = fmt.decode(out.read_bytes())
        assert decoded.form == form and decoded.realm_claims.challenge == NONCE
        assert decoded.realm_claims.personalization_value == b"\xab" * 64


def test_run_a_wasm_module() -> None:
    result = attestcall("run", "--tee", "cca-sim", "--cca-hash-algo", "sha-512",
                        str(WAT / "attest.wat"), check=False)
    assert result.returncode == 5, result.stderr.decode()
    claims = realm(result.stdout)
    assert claims.hash_algo == "sha-512"
    # the RIM is the hash of the payload: the module's bytes as given
    assert claims.initial_measurement == hashlib.sha512((WAT / "attest.wat").read_bytes()).digest()


def test_bad_option_is_one_line(tmp_path) -> None:
    result = attestcall("attest", "--tee", "cca-sim", "--nonce", NONCE.hex(), "-o",
                        str(tmp_path / "x"), "--cca-hash-algo", "sha-512", "--cca-rem0",
                        "00" * 32, check=False)
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "REMs are 64 bytes" in lines[0]


def test_a_sha512_realm_takes_64_byte_rems_on_the_command_line(tmp_path) -> None:
    from attestcall.arm.formats.token import decode

    out = tmp_path / "token.cbor"
    result = attestcall("attest", "--tee", "cca-sim", "--nonce", NONCE.hex(), "-o", str(out),
                        "--cca-hash-algo", "sha-512", "--cca-rem3", "cd" * 64, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert decode(out.read_bytes()).realm_claims.extensible_measurements[3] == b"\xcd" * 64
    odd = attestcall("attest", "--tee", "cca-sim", "--nonce", NONCE.hex(), "-o", str(out),
                     "--cca-rem3", "cd" * 40, check=False)
    assert odd.returncode == 2
    assert "--cca-rem3 must be 64 or 128 hex digits (32 or 64 bytes), got 80" in \
        odd.stderr.decode()


def test_sim_reset_makes_a_new_platform(tmp_path) -> None:
    env = dict(os.environ, ATTESTCALL_HOME=str(tmp_path / "home"))

    def instance_id() -> str:
        shown = attestcall("sim", "show", env=env).stdout.decode()
        (line,) = [line for line in shown.splitlines() if "instance id" in line]
        return line.split()[-1]

    before, public = instance_id(), (tmp_path / "home" / "cca" / "cpak.pub.pem").read_bytes()
    attestcall("sim", "reset", env=env)
    assert instance_id() != before
    assert (tmp_path / "home" / "cca" / "cpak.pub.pem").read_bytes() != public


def test_sim_show_and_collateral(tmp_path) -> None:
    shown = attestcall("sim", "show").stdout.decode()
    assert "Arm CCA (simulated)" in shown
    out = tmp_path / "anchors.json"
    attestcall("sim", "collateral", "--tee", "cca-sim", "-o", str(out))
    (anchor,) = json.loads(out.read_text())
    assert anchor["instance-id"].startswith("01") and len(anchor["instance-id"]) == 66


def test_attest_then_verify_only_with_trust_simulated(tmp_path) -> None:
    out = tmp_path / "token.cbor"
    attestcall("attest", "--tee", "cca-sim", "--nonce", NONCE.hex(), "-o", str(out))
    trusted = attestcall("verify", "--trust-simulated", "--nonce", NONCE.hex(), str(out))
    assert trusted.stdout.decode().startswith("accepted: CCA token [SIMULATED]")
    untrusted = attestcall("verify", "--nonce", NONCE.hex(), str(out), check=False)
    assert untrusted.returncode == 1
    assert "simulated" in untrusted.stdout.decode() + untrusted.stderr.decode()
    other = attestcall("verify", "--trust-simulated", "--nonce", "00" * 64, str(out),
                       check=False)
    assert other.returncode == 1, "another nonce is refused"
    # the trust-anchor store `sim collateral` writes names the simulated CPAK: as the
    # user's own anchor it verifies the token, which is still refused for being simulated
    # unless the simulated platforms are trusted
    anchors = tmp_path / "anchors.json"
    attestcall("sim", "collateral", "--tee", "cca-sim", "-o", str(anchors))
    stored = attestcall("verify", "--cpak", str(anchors), "--nonce", NONCE.hex(), str(out),
                        check=False)
    assert stored.returncode == 1 and "simulated" in stored.stdout.decode()
    assert "--trust-simulated" in stored.stdout.decode()
    both = attestcall("verify", "--cpak", str(anchors), "--trust-simulated", "--nonce",
                      NONCE.hex(), str(out))
    assert both.stdout.decode().startswith("accepted: CCA token [SIMULATED]")
