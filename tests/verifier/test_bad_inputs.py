"""Issue 12, "every bad input is a clean error": each input the fuzz runs found ending in an
internal error (exit 70) or silently misread, through the API and the command."""

import base64
import json
import re
import subprocess
import sys
import warnings

import pytest

import attestcall
from attestcall.errors import CollateralError, EvidenceError, PolicyError, UsageError
from attestcall.verifier.inputs import verify_arguments
from attestcall.verifier.policy import Policy
from tests import paths

INTEL = paths.DATA / "intel"
TDX = (INTEL / "tdx_quote_v4.bin").read_bytes()
TDX_COLL = INTEL / "tdx_quote_v4.collateral.json"
TDX_AT = "2025-07-19T10:00:33Z"
SGX = (INTEL / "sgx_quote_v3.bin").read_bytes()
SGX_COLL = INTEL / "sgx_quote_v3.collateral.json"
SGX_AT = "2025-07-19T10:01:17Z"
SNP = paths.DATA / "amd" / "milan_report_v2.bin"
SNP_VCEK = paths.DATA / "amd" / "milan_report_v2.vcek.der"


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{paths.REPO / 'src'}:{paths.REPO}", "PATH": "/usr/bin:/bin",
           "ATTESTCALL_OFFLINE": "1"}  # no default collateral service is asked
    return subprocess.run([sys.executable, "-m", "attestcall", *args], input=stdin,
                          capture_output=True, env=env, timeout=60)


def one_clean_line(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "internal error" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ---- 1. an invalid X.509 version in a collateral issuer chain


def _bad_version_collateral() -> dict:
    data = json.loads(TDX_COLL.read_text())
    chain = data["pck_crl_issuer_chain"]
    body = re.search(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END", chain, re.S).group(1)
    der = base64.b64decode(body)
    assert der[8:13] == bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (v3)
    bad = der[:8] + bytes.fromhex("a003020142") + der[13:]
    data["pck_crl_issuer_chain"] = chain.replace(body, base64.encodebytes(bad).decode(), 1)
    return data


def test_invalid_x509_version_in_an_issuer_chain(tmp_path):
    with pytest.raises(CollateralError, match="pck_crl_issuer_chain .*X509 version"):
        attestcall.verify(TDX, collateral=_bad_version_collateral(), at=TDX_AT)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_bad_version_collateral()))
    err = one_clean_line(cli("verify", str(INTEL / "tdx_quote_v4.bin"), "--collateral",
                             str(path), "--at", TDX_AT))
    assert "pck_crl_issuer_chain" in err


# ---- 2. str collateral, certs and policy: content, or (deprecated) an existing path


@pytest.mark.parametrize("value", ["\x00", "no/such/file.json", "x" * 5000])
def test_a_str_that_is_neither_content_nor_a_file(value):
    with pytest.raises(CollateralError, match="neither its content nor an existing file"):
        attestcall.verify(TDX, collateral=value, at=TDX_AT)
    with pytest.raises(CollateralError, match="neither its content nor an existing file"):
        attestcall.verify(SNP.read_bytes(), certs=value)
    with pytest.raises(PolicyError, match="neither its content nor an existing file"):
        attestcall.verify(TDX, collateral=TDX_COLL, at=TDX_AT, policy=value)


def test_str_and_bytes_are_content_paths_are_pathlike():
    text = TDX_COLL.read_text()
    for given in (TDX_COLL, text, text.encode(), bytearray(text.encode())):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # none of these is deprecated
            assert attestcall.verify(TDX, collateral=given, at=TDX_AT).accepted
    pem = SNP_VCEK.read_bytes()
    for given in (SNP_VCEK, pem):
        assert attestcall.verify(SNP.read_bytes(), certs=given, at="2025-01-01T00:00:00Z",
                                 ).problems == []
    toml = '[tdx]\nmrtd = ["' + "00" * 48 + '"]\n'
    verdict = attestcall.verify(TDX, collateral=TDX_COLL, at=TDX_AT, policy=toml)
    assert not verdict.accepted and "mrtd" in verdict.reasons[0]
    assert not attestcall.verify(TDX, collateral=TDX_COLL, at=TDX_AT,
                                 policy=toml.encode()).accepted


def test_a_str_naming_a_file_still_works_but_is_deprecated(tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text('[tdx]\nmrtd = ["' + "00" * 48 + '"]\n')
    with pytest.warns(DeprecationWarning, match="pathlib.Path") as caught:
        verdict = attestcall.verify(TDX, collateral=str(TDX_COLL), at=TDX_AT)
    assert verdict.accepted
    assert caught[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning):
        assert not attestcall.verify(TDX, collateral=TDX_COLL, at=TDX_AT,
                                     policy=str(policy)).accepted
    with pytest.warns(DeprecationWarning):
        attestcall.verify(SNP.read_bytes(), certs=str(SNP_VCEK))


# ---- 3. --at values that are not instants


@pytest.mark.parametrize("at", ["--5", "²", "9" * 5000, "-" * 30, "1e5", " 12 34 "])
def test_at_values_that_are_not_instants(at):
    with pytest.raises(UsageError, match="not an instant"):
        attestcall.verify(TDX, collateral=TDX_COLL, at=at)
    err = one_clean_line(cli("verify", str(INTEL / "tdx_quote_v4.bin"), "--collateral",
                             str(TDX_COLL), f"--at={at}"))
    assert "not an instant" in err and len(err) < 300


# ---- 4. policies that break the TOML parser or Python's int()


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000,
    "a = " + "{a=" * 5000,
    "[tdx]\nmin_tee_tcb_svn = " + "9" * 5000,
    "[sgx]\nmin_isv_svn = " + "9" * 5000,
])
def test_policies_that_break_the_parser(tmp_path, text):
    with pytest.raises(PolicyError):
        Policy.from_bytes(text.encode())
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError):
        Policy.load(path)
    err = one_clean_line(cli("verify", str(INTEL / "tdx_quote_v4.bin"), "--collateral",
                             str(TDX_COLL), "--at", TDX_AT, "--policy", str(path)))
    assert "TOML" in err


# ---- 5. wrong argument types to attestcall.verify


@pytest.mark.parametrize(("arguments", "message"), [
    ({"policy": 123}, "policy must be"),
    ({"certs": 5}, "certs must be"),
    ({"collateral": 5.0}, "collateral must be"),
    ({"collateral": [TDX_COLL]}, "collateral must be"),
    ({"nonce": 5}, "nonce must be"),
    ({"nonce": "ab" * 32}, "got a str; for hex text pass bytes.fromhex"),
    ({"nonce": "ab" * 64}, "got a str"),
    ({"nonce": bytes(63)}, "must be 64 bytes, got 63"),
    ({"technology": 2}, "technology must be"),
    ({"trust_simulated": "yes"}, "trust_simulated must be"),
    ({"collateral_url": b"http://x"}, "collateral_url must be"),
    ({"collateral": TDX_COLL, "certs": SNP_VCEK}, "not both"),
])
def test_wrong_argument_types(arguments, message):
    if "collateral" not in arguments and "certs" not in arguments:
        arguments["collateral"] = TDX_COLL
    with pytest.raises(UsageError, match=message):
        attestcall.verify(TDX, at=TDX_AT, **arguments)


@pytest.mark.parametrize("evidence", ["abc", TDX.hex(), 5, None, [1, 2]])
def test_evidence_must_be_bytes(evidence):
    with pytest.raises(UsageError, match="evidence must be bytes"):
        attestcall.verify(evidence, collateral=TDX_COLL, at=TDX_AT)


def test_the_helper_is_what_verify_uses():
    checked = verify_arguments(bytearray(b"q"), nonce=memoryview(bytes(64)),
                               policy=b"", collateral=TDX_COLL.read_text())
    assert checked.evidence == b"q" and checked.nonce == bytes(64)
    assert checked.policy == b"" and checked.collateral == TDX_COLL.read_bytes()


# ---- 6. trailing bytes after a quote or an SNP certificate table


def test_trailing_bytes_after_a_quote():
    end = len(TDX) - 70
    assert attestcall.verify(TDX[:end] + bytes(300), collateral=TDX_COLL, at=TDX_AT).accepted
    with pytest.raises(EvidenceError, match="not all zero"):
        attestcall.verify(TDX[:end] + b"\x01", collateral=TDX_COLL, at=TDX_AT)
    assert attestcall.verify(SGX + bytes(9), collateral=SGX_COLL, at=SGX_AT).problems == []
    with pytest.raises(EvidenceError, match="not all zero"):  # the same rule for v3
        attestcall.verify(SGX + bytes(8) + b"\x80", collateral=SGX_COLL, at=SGX_AT)


def test_trailing_bytes_after_an_snp_certificate_table():
    from attestcall.amd.formats import certs

    table = certs.pack_table([(certs.VCEK_GUID, SNP_VCEK.read_bytes())])
    report = SNP.read_bytes()
    at = "2025-01-01T00:00:00Z"
    assert attestcall.verify(report + table + bytes(4096 - len(table)), at=at).problems == []
    with pytest.raises(EvidenceError, match="not zero padding"):
        attestcall.verify(report + table + b"\x00\x00extra", at=at)


# ---- 7. hex with spaces (or other non-digits) is not a measurement


@pytest.mark.parametrize("value", ["aa " * 47 + "aa", " " + "aa" * 48, "0x" + "aa" * 47,
                                   "aa" * 47 + "a\n"])
def test_policy_hex_must_be_digits_only(value):
    with pytest.raises(PolicyError, match="is not 96 hex digits"):
        Policy.parse({"tdx": {"mrtd": [value]}})
    assert Policy.parse({"tdx": {"mrtd": ["AA" * 48]}}).get("tdx", "mrtd") == ("aa" * 48,)


# ---- exit codes: missing collateral or certificates is unusable input for every TEE


@pytest.mark.parametrize("evidence", [INTEL / "sgx_quote_v3.bin", INTEL / "tdx_quote_v4.bin",
                                      SNP])
def test_missing_collateral_is_exit_2_for_sgx_tdx_and_snp(evidence):
    err = one_clean_line(cli("verify", str(evidence)))
    assert "collateral" in err or "VCEK" in err
    with pytest.raises(CollateralError):
        attestcall.verify(evidence.read_bytes())


def test_a_crl_follows_the_same_rule(tmp_path):
    """``crl=``: a Path is a file, bytes and str are content (PEM text), and a str that is
    neither PEM nor an existing file is a clean error."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    report = (paths.DATA / "amd/milan_report_v2.bin").read_bytes()
    vcek = (paths.DATA / "amd/milan_report_v2.vcek.der").read_bytes()
    der = (paths.DATA / "amd/crl_milan.der").read_bytes()
    pem = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM).decode()
    at = "2026-07-01T00:00:00Z"  # inside the real CRL's window
    path = tmp_path / "crl.pem"
    path.write_text(pem)
    for crl in (der, pem, path):
        assert attestcall.verify(report, certs=vcek, crl=crl, at=at).accepted, crl
    with pytest.raises(CollateralError, match="crl 'crl.pem' is neither its content nor"):
        attestcall.verify(report, certs=vcek, crl="crl.pem", at=at)
