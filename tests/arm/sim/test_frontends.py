"""--tee cca-sim through every front end: a native program (the contract rows), the shipped
C header, the Python guest, a WebAssembly module, and the command line (``run``,
``attest``, ``sim``). Each gets technology 5 and a CCA token whose realm challenge is its
nonce (docs/design.md sections 1 and 4)."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from attestcall.arm.formats import token as fmt
from attestcall.frontends.native import run_native
from attestcall.frontends.wasm import WasmKeep
from attestcall.include_dir import include_dir
from attestcall.keep.keep import Keep
from attestcall.keep.platforms import open_keep, tee_names
from tests import paths
from tests.test_end_to_end import attestcall

PAYLOAD = b"cca front-end payload"
NONCE = bytes(range(100, 164))
GUARD = 0x5A


def seeded(seed: int, step: int = 1) -> bytes:
    return bytes((seed + step * i) & 0xFF for i in range(64))


def realm(token: bytes) -> fmt.RealmClaims:
    return fmt.decode(token).realm_claims


@pytest.fixture(scope="module")
def keep(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(tmp_path_factory.getbasetemp() / "attestcall-home"))
        keep = open_keep("cca-sim", PAYLOAD)
    with keep:
        yield keep


@pytest.fixture(scope="module")
def executables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the native test payloads")
    out = tmp_path_factory.mktemp("cca-payloads")
    built = {}
    for name, source, flags in (("contract", paths.NATIVE_C / "contract.c", []),
                                ("in_keep", paths.C / "in_keep.c", [f"-I{include_dir()}"])):
        exe = out / name
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread", *flags, "-o", str(exe),
                        str(source)], check=True, timeout=120)
        built[name] = str(exe)
    return built


def test_registered() -> None:
    assert "cca-sim" in tee_names()


# ------------------------------------------------------------------------ native front end


def run_contract(executables, capfd, keep: Keep, case: str) -> dict[str, str]:
    status = run_native([executables["contract"], case], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    return dict(item.partition("=")[::2] for item in out.split())


def test_native_size_query_and_success(executables, capfd, keep: Keep) -> None:
    size = run_contract(executables, capfd, keep, "size")
    assert int(size["rdx"], 16) == 5
    fields = run_contract(executables, capfd, keep, "success")
    assert int(fields["ret"]) == int(fields["size"]) == int(size["ret"])
    assert int(fields["rdx"], 16) == 5 and fields["guards"] == "ok"
    claims = realm(bytes.fromhex(fields["evidence"]))
    assert claims.challenge == seeded(0x11, 7)  # contract.c's nonce
    assert claims.initial_measurement == hashlib.sha256(PAYLOAD).digest()


@pytest.mark.parametrize(
    ("case", "code"),
    [("short", errno.EMSGSIZE), ("nonce63", errno.EINVAL), ("buflen0", errno.EINVAL),
     ("nonce-unmapped", errno.EFAULT), ("buf-straddle", errno.EFAULT),
     ("buf-readonly", errno.EFAULT)],
)
def test_native_error_rows(executables, capfd, keep: Keep, case: str, code: int) -> None:
    fields = run_contract(executables, capfd, keep, case)
    assert int(fields["ret"]) == -code
    assert fields["rdx"] == fields["rdx_in"]
    assert fields.get("untouched", "ok") == "ok" and fields.get("guards", "ok") == "ok"


def test_c_header_in_the_keep(executables, capfd, keep: Keep) -> None:
    assert run_native([executables["in_keep"]], keep.source) == 0
    lines = capfd.readouterr().out.splitlines()
    size = keep.source.evidence_size()
    assert lines[:3] == [f"size-query {size} 5", f"short -1 {errno.EMSGSIZE} 77",
                         f"call {size} 5"]
    assert realm(bytes.fromhex(lines[3])).challenge == bytes(range(64))


# ----------------------------------------------------------------- Python front end (guest)

GUEST = r"""
import ctypes, json
from attestcall import guest
technology, evidence = guest.get_attestation(bytes(range(100, 164)))
nonce = ctypes.create_string_buffer(bytes(range(64)), 64)
buf = ctypes.create_string_buffer(8192)
n, b = ctypes.addressof(nonce), ctypes.addressof(buf)
size = guest.raw_get_attestation(0, 0, 0, 0)
print(json.dumps({
    "technology": technology, "evidence": evidence.hex(), "size": size, "buf": b,
    "short": guest.raw_get_attestation(n, 64, b, size[0] - 1),
    "nonce63": guest.raw_get_attestation(n, 63, b, 8192),
    "untouched": ctypes.string_at(b, 8192) == bytes(8192),
}))
"""


def test_python_guest_in_the_keep(capfd, keep: Keep) -> None:
    status = run_native([sys.executable, "-c", GUEST], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    result = json.loads(out)
    evidence = bytes.fromhex(result["evidence"])
    assert result["technology"] == 5 and result["size"] == [len(evidence), 5]
    assert realm(evidence).challenge == NONCE
    assert result["short"] == [-errno.EMSGSIZE, result["buf"]]
    assert result["nonce63"] == [-errno.EINVAL, result["buf"]]
    assert result["untouched"]


# ---------------------------------------------------------------------- Wasm front end

WAT = paths.WASM_PAYLOADS


def test_wasm_payload_gets_technology_5(capfdbinary, keep: Keep) -> None:
    status = WasmKeep(WAT / "attest.wat", keep.source, env={}).run()
    assert status == 5  # attest.wat exits with the technology
    token = capfdbinary.readouterr().out  # ... and writes the evidence to stdout
    assert realm(token).challenge == b"0123456789abcdef" * 4


def test_wasm_contract_rows(keep: Keep) -> None:
    wasm = WasmKeep(WAT / "contract.wat", keep.source, env={})
    memory = wasm.memory
    assert memory is not None
    nonce_at, buf_at, tech_at, page = 0x1000, 0x3000, 0x100, 0x10000
    memory.write(wasm.store, NONCE, nonce_at)
    memory.write(wasm.store, bytes([GUARD]) * (page - buf_at), buf_at)
    size = wasm.call("call", nonce_at, 64, 0, 0, tech_at)
    assert memory.read(wasm.store, tech_at, tech_at + 4) == (5).to_bytes(4, "little")
    before = bytes(memory.read(wasm.store))
    assert wasm.call("call", nonce_at, 64, buf_at, size - 1, tech_at) == -errno.EMSGSIZE
    assert wasm.call("call", nonce_at, 63, buf_at, size, tech_at) == -errno.EINVAL
    assert wasm.call("call", page - 1, 64, buf_at, size, tech_at) == -errno.EFAULT
    assert bytes(memory.read(wasm.store)) == before
    assert wasm.call("call", nonce_at, 64, buf_at, size + 100, tech_at) == size
    after = bytes(memory.read(wasm.store))
    assert realm(after[buf_at:buf_at + size]).challenge == NONCE
    assert after[buf_at + size:] == before[buf_at + size:]


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


def test_sim_show_and_collateral(tmp_path) -> None:
    shown = attestcall("sim", "show").stdout.decode()
    assert "Arm CCA (simulated)" in shown
    out = tmp_path / "anchors.json"
    attestcall("sim", "collateral", "--tee", "cca-sim", "-o", str(out))
    (anchor,) = json.loads(out.read_text())
    assert anchor["instance-id"].startswith("01") and len(anchor["instance-id"]) == 66
