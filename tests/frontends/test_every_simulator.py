"""Every simulated post-attestation keep the registry has (sgx-sim, snp-sim, tdx-sim,
cca-sim, and whatever a plugin adds) behind every front end: a native program (the
contract's rows), the shipped C header, the Python guest and a WebAssembly module. Each
answers its record's technology, the size query's size, and evidence whose report data
(the record's ``report_data``) is the caller's nonce (docs/design.md sections 1 and 4)."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys

import pytest

from attestcall.frontends.native import run_native
from attestcall.frontends.wasm import WasmKeep
from attestcall.include_dir import include_dir
from attestcall.keep.platforms import open_keep
from attestcall.tees import registry
from tests import paths

SIMULATORS = sorted(backend.name for tee in registry().tees if not tee.pre_attestation
                    for backend in tee.backends if backend.simulated)
NONCE = bytes(range(100, 164))


def seeded(seed: int, step: int = 1) -> bytes:
    return bytes((seed + step * i) & 0xFF for i in range(64))


@pytest.fixture(scope="module")
def executables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the native test payloads")
    out = tmp_path_factory.mktemp("simulator-payloads")
    built = {}
    for name, source, flags in (("contract", paths.NATIVE_C / "contract.c", []),
                                ("in_keep", paths.C / "in_keep.c", [f"-I{include_dir()}"])):
        built[name] = str(out / name)
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", *flags, "-o", built[name],
                        str(source)], check=True, timeout=120)
    return built


@pytest.fixture(scope="module", params=SIMULATORS)
def keep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One keep per simulator, in the session's simulated-platform home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTESTCALL_HOME", str(tmp_path_factory.getbasetemp() / "attestcall-home"))
        with open_keep(request.param, b"front-end payload") as running:
            yield running


def record(keep):
    tee, _ = registry().backend(keep.tee)
    return tee


def test_the_matrix_covers_the_simulators():
    assert {"sgx-sim", "snp-sim", "tdx-sim", "cca-sim"} <= set(SIMULATORS)
    assert "sev-sim" not in SIMULATORS  # pre-attestation: buf holds a key, not evidence


def run_contract(executables, capfd, keep, case: str) -> dict[str, str]:
    status = run_native([executables["contract"], case], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    return dict(item.partition("=")[::2] for item in out.split())


def test_native_size_query_and_success(executables, capfd, keep) -> None:
    tee = record(keep)
    size = run_contract(executables, capfd, keep, "size")
    assert int(size["rdx"], 16) == tee.technology
    fields = run_contract(executables, capfd, keep, "success")
    assert int(fields["ret"]) == int(fields["size"]) == int(size["ret"])
    assert int(fields["rdx"], 16) == tee.technology and fields["guards"] == "ok"
    assert tee.report_data(bytes.fromhex(fields["evidence"])) == seeded(0x11, 7)


@pytest.mark.parametrize(
    ("case", "code"),
    [("short", errno.EMSGSIZE), ("nonce63", errno.EINVAL), ("nonce-unmapped", errno.EFAULT),
     ("buf-readonly", errno.EFAULT)],
)
def test_native_error_rows(executables, capfd, keep, case: str, code: int) -> None:
    fields = run_contract(executables, capfd, keep, case)
    assert int(fields["ret"]) == -code
    assert fields["rdx"] == fields["rdx_in"]
    assert fields.get("untouched", "ok") == "ok" and fields.get("guards", "ok") == "ok"


def test_c_header(executables, capfd, keep) -> None:
    tee = record(keep)
    assert run_native([executables["in_keep"]], keep.source) == 0
    lines = capfd.readouterr().out.splitlines()
    size = keep.source.evidence_size()
    assert lines[:3] == [f"size-query {size} {tee.technology}",
                         f"short -1 {errno.EMSGSIZE} 77", f"call {size} {tee.technology}"]
    assert tee.report_data(bytes.fromhex(lines[3])) == bytes(range(64))


GUEST = r"""
import ctypes, json
from attestcall import guest
technology, evidence = guest.get_attestation(bytes(range(100, 164)))
nonce = ctypes.create_string_buffer(bytes(range(64)), 64)
buf = ctypes.create_string_buffer(16384)
n, b = ctypes.addressof(nonce), ctypes.addressof(buf)
size = guest.raw_get_attestation(0, 0, 0, 0)
print(json.dumps({
    "technology": technology, "name": guest.technology_name(technology),
    "evidence": evidence.hex(), "size": size, "buf": b,
    "short": guest.raw_get_attestation(n, 64, b, size[0] - 1),
    "nonce63": guest.raw_get_attestation(n, 63, b, 16384),
    "untouched": ctypes.string_at(b, 16384) == bytes(16384),
}))
"""


def test_python_guest(capfd, keep) -> None:
    tee = record(keep)
    status = run_native([sys.executable, "-c", GUEST], keep.source)
    out = capfd.readouterr().out
    assert status == 0, out
    result = json.loads(out)
    evidence = bytes.fromhex(result["evidence"])
    assert result["technology"] == tee.technology and result["name"] == tee.label
    assert result["size"] == [len(evidence), tee.technology]
    assert tee.report_data(evidence) == NONCE
    assert result["short"] == [-errno.EMSGSIZE, result["buf"]]
    assert result["nonce63"] == [-errno.EINVAL, result["buf"]]
    assert result["untouched"]


def test_wasm_module(capfdbinary, keep) -> None:
    tee = record(keep)
    status = WasmKeep(paths.WASM_PAYLOADS / "attest.wat", keep.source, env={}).run()
    assert status == tee.technology  # attest.wat exits with the technology
    evidence = capfdbinary.readouterr().out  # ... and writes the evidence to stdout
    assert len(evidence) == keep.source.evidence_size()
    assert tee.report_data(evidence) == b"0123456789abcdef" * 4
