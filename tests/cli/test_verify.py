"""`attestcall verify` on the real-hardware vectors: every documented outcome, the JSON
object, exit statuses, and unusable input as one line, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

from tests import paths

DATA = paths.DATA
INTEL, AMD = DATA / "intel", DATA / "amd"
SGX_AT, TDX_AT = "2025-07-19T10:01:17Z", "2025-07-19T10:00:33Z"


def verify(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "attestcall", "verify", *map(str, args)],
                          capture_output=True, input=stdin, timeout=120)


def verdict(*args):
    result = verify(*args, "--json")
    assert b"Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


# -- Intel (INDEX.md: documented outcomes) -----------------------------------------------


def test_sgx_vector_verifies_with_its_status_and_advisories(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[sgx]\naccept_tcb_status = ["ConfigurationAndSWHardeningNeeded"]\n')
    code, out = verdict(INTEL / "sgx_quote_v3.bin", "--collateral",
                        INTEL / "sgx_quote_v3.collateral.json", "--at", SGX_AT, "--policy", policy)
    assert code == 0, out
    assert out["technology"] == "sgx"
    assert out["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert sorted(out["advisories"]) == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert out["claims"]["mrenclave"].startswith("33d8736d")
    assert out["claims"]["mrsigner"].startswith("815f42f1")
    assert bytes.fromhex(out["claims"]["report_data"]).startswith(b"Hello, world!")
    assert out["reasons"] == []


def test_sgx_vector_under_the_default_policy_is_rejected_for_its_tcb_status():
    code, out = verdict(INTEL / "sgx_quote_v3.bin", "--collateral",
                        INTEL / "sgx_quote_v3.collateral.json", "--at", SGX_AT)
    assert code == 1 and not out["accepted"]
    assert out["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert any("not accepted by the policy" in r for r in out["reasons"])


def test_tdx_vector_is_up_to_date():
    code, out = verdict(INTEL / "tdx_quote_v4.bin", "--collateral",
                        INTEL / "tdx_quote_v4.collateral.json", "--at", TDX_AT)
    assert code == 0, out
    assert (out["technology"], out["tcb_status"], out["advisories"]) == ("tdx", "UpToDate", [])
    assert out["claims"]["td_attributes"]


@pytest.mark.parametrize("at, needle", [("2025-07-20T00:00:00Z", "expired"),
                                        ("2025-06-18T00:00:00Z", "future")])
def test_tdx_vector_outside_its_collateral_window_is_rejected(at, needle):
    code, out = verdict(INTEL / "tdx_quote_v4.bin", "--collateral",
                        INTEL / "tdx_quote_v4.collateral.json", "--at", at)
    assert code == 1
    assert any(needle in r and "TCB info" in r for r in out["reasons"]), out["reasons"]


def test_tampered_quote_is_rejected_in_one_line(tmp_path):
    quote = bytearray((INTEL / "sgx_quote_v3.bin").read_bytes())
    quote[0x70] ^= 1  # MRENCLAVE
    path = tmp_path / "q.bin"
    path.write_bytes(quote)
    result = verify(path, "--collateral", INTEL / "sgx_quote_v3.collateral.json", "--at", SGX_AT)
    assert result.returncode == 1
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rejected: SGX quote")


def test_intel_without_collateral_is_unusable_input():
    result = verify(INTEL / "sgx_quote_v3.bin", "--at", SGX_AT)
    assert result.returncode == 2
    assert b"--collateral" in result.stderr


# -- AMD ---------------------------------------------------------------------------------


def test_milan_report_verifies_with_its_vcek():
    code, out = verdict(AMD / "milan_report_v2.bin", "--certs", AMD / "milan_report_v2.vcek.der")
    assert code == 0, out
    assert out["technology"] == "snp" and out["tcb_status"] is None
    assert out["claims"]["reported_tcb"]["snp"] == 8
    assert out["claims"]["reported_tcb"]["microcode"] == 115


def test_debug_report_rejected_by_default_accepted_when_policy_allows(tmp_path):
    args = [AMD / "milan_report_v2_debug.bin", "--certs", AMD / "milan_report_v2_debug.vcek.der"]
    code, out = verdict(*args)
    assert code == 1 and any("debug" in r for r in out["reasons"])
    policy = tmp_path / "p.toml"
    policy.write_text("[snp]\nallow_debug = true\n")
    code, out = verdict(*args, "--policy", policy)
    assert code == 0, out
    assert bytes.fromhex(out["claims"]["report_data"]).startswith(b"\x01\x02\x03\x04\x05\x00")


def test_report_from_standard_input_with_nonce():
    report = (AMD / "milan_report_v2.bin").read_bytes()
    nonce = report[0x50:0x90].hex()
    result = subprocess.run([sys.executable, "-m", "attestcall", "verify", "-", "--certs",
                             str(AMD / "milan_report_v2.vcek.der"), "--nonce", nonce],
                            input=report, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    wrong = verify("-", "--certs", AMD / "milan_report_v2.vcek.der", "--nonce", "00" * 64,
                   stdin=report)
    assert wrong.returncode == 1 and b"nonce" in wrong.stdout


def test_signed_byte_change_in_report_is_rejected(tmp_path):
    report = bytearray((AMD / "milan_report_v2.bin").read_bytes())
    report[0x90] ^= 0x80  # MEASUREMENT
    path = tmp_path / "r.bin"
    path.write_bytes(report)
    code, out = verdict(path, "--certs", AMD / "milan_report_v2.vcek.der")
    assert code == 1 and any("signature" in r for r in out["reasons"])


# -- unusable input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (["/nonexistent"], b"cannot read"),
        ([os.devnull], b"--tech"),
        ([AMD / "milan_report_v2.bin", "--collateral", "x.json"],
         b"--collateral is not for SEV-SNP"),
        ([INTEL / "sgx_quote_v3.bin", "--certs", "x.der"], b"--certs is not for SGX"),
        ([AMD / "milan_report_v2.bin", "--at", "soon"], b"not an instant"),
        ([AMD / "milan_report_v2.bin", "--nonce", "00"], b"128 hex digits"),
        ([AMD / "milan_report_v2.bin", "--certs", "/nonexistent"], b"cannot read"),
        ([INTEL / "sgx_quote_v3.bin", "--collateral", "/nonexistent", "--at", SGX_AT], b""),
        ([AMD / "milan_report_v2.bin", "--tech", "sev"], b"invalid choice"),
        ([AMD / "milan_report_v2.bin", "--policy", "/nonexistent"], b"cannot read policy"),
    ],
)
def test_unusable_input_exits_2_with_one_line(args, needle):
    result = verify(*args)
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr


@pytest.mark.parametrize("cut", [0, 1, 47, 48, 432, 436, 1000, 4599])
def test_truncated_quote_is_unusable_not_a_crash(tmp_path, cut):
    path = tmp_path / "q.bin"
    path.write_bytes((INTEL / "sgx_quote_v3.bin").read_bytes()[:cut])
    result = verify(path, "--tech", "sgx", "--collateral", INTEL / "sgx_quote_v3.collateral.json",
                    "--at", SGX_AT)
    assert result.returncode in (1, 2)
    assert b"Traceback" not in result.stderr


def test_json_on_unusable_input_is_still_one_object():
    result = verify(os.devnull, "--json")
    assert result.returncode == 2
    out = json.loads(result.stdout)
    assert set(out) == {"accepted", "error"} and out["accepted"] is False
    assert "--tech" in out["error"]


# -- simulated evidence: the keep's quotes travel the same path ----------------------------


@pytest.mark.parametrize("tee", ["sgx-sim", "tdx-sim"])
def test_simulated_quote_needs_trust_simulated(tmp_path, tee):
    nonce = "5a" * 64
    quote, coll = tmp_path / "q.bin", tmp_path / "c.json"
    for args in (["attest", "--tee", tee, "--nonce", nonce, "-o", quote],
                 ["sim", "collateral", "--tee", tee, "-o", coll]):
        done = subprocess.run([sys.executable, "-m", "attestcall", *map(str, args)],
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
    code, out = verdict(quote, "--collateral", coll, "--nonce", nonce)
    assert code == 1 and out["simulated"] is True
    assert any("simulated" in r and "--trust-simulated" in r for r in out["reasons"])
    code, out = verdict(quote, "--collateral", coll, "--nonce", nonce, "--trust-simulated")
    assert code == 0, out
    assert out["tcb_status"] == "UpToDate" and out["simulated"] is True
    code, out = verdict(quote, "--collateral", coll, "--nonce", "00" * 64, "--trust-simulated")
    assert code == 1 and out["reasons"] == ["the report data does not equal the nonce"]


# -- --ear: the EAR claims-set, the vocabulary of the service's tokens and certificates -----


def test_ear_output_is_the_attestation_result_of_the_verdict(tmp_path):
    import datetime as dt
    import hashlib

    from attestcall import ear

    policy = tmp_path / "p.toml"
    policy.write_text('[sgx]\naccept_tcb_status = ["ConfigurationAndSWHardeningNeeded"]\n')
    args = (INTEL / "sgx_quote_v3.bin", "--collateral", INTEL / "sgx_quote_v3.collateral.json",
            "--at", SGX_AT)
    _, plain = verdict(*args, "--policy", policy)
    done = verify(*args, "--policy", policy, "--ear")
    assert done.returncode == 0, done.stderr
    claims = json.loads(done.stdout)
    ear.check(claims)
    assert claims["iat"] == int(dt.datetime.fromisoformat(SGX_AT).timestamp())
    assert "eat_nonce" not in claims and "exp" not in claims
    item = claims["submods"]["sgx"]
    assert item["ear.status"] == "warning"
    assert item["ear.trustworthiness-vector"] == {
        "instance-identity": 2, "configuration": 32, "hardware": 32, "runtime-opaque": 2}
    assert item["ear.veraison.annotated-evidence"] == plain["claims"]
    assert item["attestcall.tcb-status"] == "ConfigurationAndSWHardeningNeeded"
    assert sorted(item["attestcall.advisories"]) == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert item["ear.appraisal-policy-id"] == \
        "policy:sha256:" + hashlib.sha256(policy.read_bytes()).hexdigest()
    assert item["attestcall.simulated"] is False and item["attestcall.technology-id"] == 2
    # the default policy refuses that TCB status: the same vocabulary says so
    refused = verify(*args, "--ear", "--nonce", "00" * 64)
    assert refused.returncode == 1
    claims = json.loads(refused.stdout)
    item = claims["submods"]["sgx"]
    assert item["ear.status"] == "contraindicated"
    assert set(item["ear.trustworthiness-vector"].values()) == {99}  # and the nonce is wrong
    assert ear.decode_nonce(claims["eat_nonce"]) == bytes(64)
    assert any("not accepted by the policy" in r for r in item["attestcall.reasons"])
    no_nonce = json.loads(verify(*args, "--ear").stdout)["submods"]["sgx"]
    assert no_nonce["ear.trustworthiness-vector"]["hardware"] == 96


def test_ear_refusals_are_one_line():
    both = verify(INTEL / "sgx_quote_v3.bin", "--json", "--ear")
    assert both.returncode == 2  # --json's one object says why, as for any unusable input
    assert json.loads(both.stdout) == {"accepted": False, "error": "give --json or --ear, not both"}
    assert b"--json or --ear" in both.stderr and b"Traceback" not in both.stderr
    unusable = verify(os.devnull, "--ear")
    assert unusable.returncode == 2 and unusable.stdout == b""
    assert unusable.stderr.count(b"\n") == 1 and b"Traceback" not in unusable.stderr
