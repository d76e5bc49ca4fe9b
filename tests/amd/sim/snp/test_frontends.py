"""snp-sim behind every front end: native programs (the contract payload and 8 threads at
once), a Python payload using attestcall.guest, and a WebAssembly module."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

import attestcall
from attestcall.amd.formats import report as snp
from attestcall.frontends.native import run_native
from attestcall.frontends.wasm import WasmKeep
from attestcall.include_dir import include_dir
from attestcall.keep.platforms import open_keep
from tests import paths

TESTS = paths.TESTS
CONTRACT_C = paths.NATIVE_C / "contract.c"
THREADS_C = paths.C / "snp_threads.c"
ATTEST_WAT = paths.WASM_PAYLOADS / "attest.wat"


def seeded(seed: int, step: int = 1) -> bytes:
    return bytes((seed + step * i) & 0xFF for i in range(64))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("snp-payloads")
    exes = {}
    for name, source, extra in (("contract", CONTRACT_C, []),
                                ("snp_threads", THREADS_C, ["-I", str(include_dir())])):
        exe = out / name
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread", *extra, "-o", str(exe),
                        str(source)], check=True, timeout=120)
        exes[name] = str(exe)
    return exes


@pytest.fixture(scope="module")
def keep(tmp_path_factory: pytest.TempPathFactory):
    """One keep for the module, in the session's simulated-platform home (the same one
    tests/conftest.py gives each test, which is set only after module fixtures run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(tmp_path_factory.getbasetemp() / "attestcall-home"))
        with open_keep("snp-sim", b"front-end payload") as running:
            yield running


def verify_snp(evidence: bytes, nonce: bytes) -> None:
    verdict = attestcall.verify(evidence, trust_simulated=True, nonce=nonce)
    assert verdict.accepted, verdict.reasons
    assert verdict.technology == "snp"
    assert snp.parse(evidence[:snp.REPORT_SIZE]).report_data == nonce


# ------------------------------------------------------------------ native: the contract


def run_case(built, capfd, keep, case: str) -> dict[str, str]:
    status = run_native([built["contract"], case], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    return dict(item.partition("=")[::2] for item in out.split())


def assert_error(fields: dict[str, str], code: int) -> None:
    assert int(fields["ret"]) == -code
    assert fields["rdx"] == fields["rdx_in"], "rdx must be left as the caller passed it"


@pytest.mark.parametrize("case", ["size", "size-ignores-args"])
def test_size_query(built, capfd, keep, case) -> None:
    fields = run_case(built, capfd, keep, case)
    assert int(fields["ret"]) == keep.source.evidence_size()
    assert int(fields["rdx"], 16) == 3


def test_success_writes_evidence_that_verifies(built, capfd, keep) -> None:
    fields = run_case(built, capfd, keep, "success")
    assert int(fields["ret"]) == int(fields["size"]) and int(fields["rdx"], 16) == 3
    assert fields["guards"] == "ok"
    verify_snp(bytes.fromhex(fields["evidence"]), seeded(0x11, 7))


def test_larger_buffer_gets_only_the_evidence(built, capfd, keep) -> None:
    fields = run_case(built, capfd, keep, "larger-buffer")
    assert int(fields["ret"]) == keep.source.evidence_size() and fields["guards"] == "ok"


def test_short_buffer_is_emsgsize(built, capfd, keep) -> None:
    fields = run_case(built, capfd, keep, "short")
    assert_error(fields, errno.EMSGSIZE)
    assert fields["untouched"] == "ok" and fields["guards"] == "ok"


@pytest.mark.parametrize("case", ["nonce63", "nonce65", "buflen0", "buflen-huge", "buflen-max"])
def test_invalid_lengths_are_einval(built, capfd, keep, case) -> None:
    assert_error(run_case(built, capfd, keep, case), errno.EINVAL)


@pytest.mark.parametrize("case", ["nonce-null", "nonce-unmapped", "nonce-straddle",
                                  "buf-unmapped", "buf-straddle", "buf-readonly"])
def test_faults_are_efault(built, capfd, keep, case) -> None:
    fields = run_case(built, capfd, keep, case)
    assert_error(fields, errno.EFAULT)
    if case == "buf-readonly":
        assert fields["untouched"] == "ok"


def test_the_keep_still_works_after_payload_errors(built, capfd, keep) -> None:
    """EFAULT after the report was made is the payload's fault: VMPCK0 stays usable."""
    run_case(built, capfd, keep, "buf-unmapped")
    fields = run_case(built, capfd, keep, "success")
    verify_snp(bytes.fromhex(fields["evidence"]), seeded(0x11, 7))
    assert not keep.source.secrets.disabled


# ------------------------------------------------------------------ native: 8 threads


def test_eight_threads_each_get_their_own_nonce(built, keep, tmp_path) -> None:
    assert run_native([built["snp_threads"], str(tmp_path)], keep.source) == 0
    for seed in range(1, 9):
        verify_snp((tmp_path / f"t{seed}.bin").read_bytes(), seeded(seed))


# ------------------------------------------------------------------ Python payload

GUEST = """
from attestcall import guest
technology, evidence = guest.get_attestation(bytes(range(64)))
print(technology, guest.technology_name(technology))
print(evidence.hex())
"""


def test_python_guest(keep, capfd) -> None:
    status = run_native([sys.executable, "-c", GUEST], keep.source)
    captured = capfd.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0] == "3 SNP"
    verify_snp(bytes.fromhex(lines[1]), bytes(range(64)))


# ------------------------------------------------------------------ WebAssembly


def test_wasm_module(keep, capfdbinary) -> None:
    status = WasmKeep(ATTEST_WAT, keep.source, env={}).run()
    out = capfdbinary.readouterr().out
    assert status == 3  # attest.wat exits with the technology id
    verify_snp(out, b"0123456789abcdef" * 4)
