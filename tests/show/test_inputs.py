"""`attestcall show` input: raw, hex, base64 and PEM give the same tree; input it cannot
read is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import paths
from tests.show.helpers import process, run, shown

INTEL, AMD = paths.DATA / "intel", paths.DATA / "amd"
VECTORS = [INTEL / "sgx_quote_v3.bin", INTEL / "tdx_quote_v4.bin", AMD / "milan_report_v2.bin",
           AMD / "turin_vcek.der"]


def _wrapped(text: str, width: int = 64) -> str:
    return "\n".join(text[i:i + width] for i in range(0, len(text), width)) + "\n"


ENCODINGS = {
    "hex": lambda raw: raw.hex(),
    "hex, upper case, wrapped, 0x": lambda raw: "0x" + _wrapped(raw.hex().upper(), 80),
    "base64": lambda raw: base64.b64encode(raw).decode(),
    "base64, wrapped": lambda raw: _wrapped(base64.b64encode(raw).decode(), 76),
    "base64url, no padding": lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="),
}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda p: p.name)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_gives_the_raw_tree(capsys, tmp_path, vector, encoding):
    raw = shown(capsys, vector)
    assert raw["encoding"] == "raw"
    path = tmp_path / "encoded.txt"
    path.write_text(ENCODINGS[encoding](vector.read_bytes()))
    tree = shown(capsys, path)
    assert tree["encoding"] == encoding.split(",")[0].replace("base64url", "base64")
    assert {**tree, "encoding": "raw"} == raw


def test_pem_and_der_certificates_give_the_same_tree(capsys, tmp_path):
    der = (AMD / "turin_vcek.der").read_bytes()
    path = tmp_path / "vcek.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der)
                     + b"-----END CERTIFICATE-----\n")
    tree = shown(capsys, path)
    assert (tree.pop("encoding"), tree.pop("pem_label")) == ("pem", "CERTIFICATE")
    raw = shown(capsys, AMD / "turin_vcek.der")
    raw.pop("encoding")
    assert tree == raw


def _truncated_quote() -> bytes:
    return (INTEL / "sgx_quote_v3.bin").read_bytes()[:600]


def _snp_with_reserved_policy_bits() -> bytes:
    report = bytearray((AMD / "milan_report_v2.bin").read_bytes())
    report[0x08 + 7] = 0x80  # policy bit 63: reserved, must be zero
    return bytes(report)


def _traditional_ec_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


BAD = {
    "empty": (b"", "empty"),
    "whitespace": (b" \n\t\n", "empty"),
    "random bytes": (bytes(range(256)) * 3, "cannot tell what these 768 bytes are"),
    "zeros": (bytes(2000), "cannot tell"),
    "text": (b"hello, world: not evidence\n", "cannot tell"),
    "odd hex": (b"abc", "cannot tell"),
    "truncated SGX quote": (_truncated_quote(), "not a well-formed SGX quote: signature "
                            "data length"),
    "truncated SGX quote as hex": (_truncated_quote().hex().encode(),
                                   "not a well-formed SGX quote"),
    "truncated TDX quote": ((INTEL / "tdx_quote_v4.bin").read_bytes()[:1000],
                            "not a well-formed TDX quote: signature data length 4300 exceeds"),
    "quote header only": ((INTEL / "tdx_quote_v4.bin").read_bytes()[:50],
                          "not a well-formed TDX quote: truncated"),
    "SNP reserved policy bit": (_snp_with_reserved_policy_bits(),
                                "not a well-formed SEV-SNP report: SNP report: guest policy "
                                "0x8000000000030000 sets reserved bits"),
    "SNP report and a broken table": ((AMD / "milan_report_v2.bin").read_bytes()
                                      + b"\x01" * 30, "certificate table"),
    "truncated certificate": ((AMD / "turin_vcek.der").read_bytes()[:300], "cannot tell"),
    "PEM that is not base64": (b"-----BEGIN CERTIFICATE-----\n!!!!\n"
                               b"-----END CERTIFICATE-----\n", "not base64"),
    "PEM without an end": (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "no complete PEM block"),
    "PEM certificate that is not one": (
        b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"\x30\x03\x02\x01\x01")
        + b"\n-----END CERTIFICATE-----\n", "cannot tell"),
    "a traditional EC private key": (_traditional_ec_key(), "cannot tell"),
}


@pytest.mark.parametrize("name", BAD)
def test_unusable_input_is_one_line_and_exit_2(capsys, tmp_path, name):
    data, needle = BAD[name]
    path = tmp_path / "bad"
    path.write_bytes(data)
    for args in ((path,), (path, "--json")):
        code, out, err = run(capsys, *args)
        assert code == 2 and out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("attestcall show: "), err
        assert needle in lines[0], lines[0]
        assert "Traceback" not in err
        if name == "a traditional EC private key":
            assert "PRIVATE" not in err and data.split(b"\n")[1].decode() not in err


def test_a_missing_file_and_garbage_from_a_real_process(tmp_path):
    missing = process(tmp_path / "nowhere.bin")
    assert missing.returncode == 2
    assert missing.stderr.decode().strip() == (f"attestcall show: cannot read "
                                               f"{tmp_path / 'nowhere.bin'}: No such file "
                                               "or directory")
    garbage = process("-", stdin=os.urandom(4096))
    assert garbage.returncode == 2 and garbage.stdout == b""
    assert len(garbage.stderr.splitlines()) == 1 and b"Traceback" not in garbage.stderr
