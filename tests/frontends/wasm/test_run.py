"""run_wasm: WASI arguments, environment, standard streams, exit statuses, traps and
modules that cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from attestcall.errors import PayloadError
from attestcall.frontends.wasm import TRAP_EXIT_STATUS, load_module, run_wasm
from tests import paths
from tests.fakes.source import FixedSource, expected_evidence

PAYLOADS = Path(__file__).parent / "payloads"
ATTEST_NONCE = b"0123456789abcdef" * 4  # the nonce attest.wat carries


def source() -> FixedSource:
    return FixedSource(technology=3, size=500)


def test_arguments_environment_stdout_and_exit_status(capfd: pytest.CaptureFixture) -> None:
    path = str(PAYLOADS / "echo.wat")
    status = run_wasm(path, ["one", "two words", "three"], source(), env={"K": "V", "E": ""})
    out = capfd.readouterr().out
    assert out.splitlines() == [path, "one", "two words", "three", "K=V", "E="]
    assert status == 3


def test_returning_from_start_is_status_zero(capfd: pytest.CaptureFixture) -> None:
    assert run_wasm(PAYLOADS / "echo.wat", [], source(), env={}) == 0
    assert capfd.readouterr().out == f"{PAYLOADS / 'echo.wat'}\n"


def test_environment_defaults_to_this_process(
    capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTESTCALL_WASM_TEST", "inherited")
    assert run_wasm(PAYLOADS / "echo.wat", [], source()) == 0
    assert "ATTESTCALL_WASM_TEST=inherited" in capfd.readouterr().out.splitlines()


def test_stdin_is_inherited(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from attestcall.frontends.wasm import run_wasm\n"
        "from tests.fakes.source import FixedSource\n"
        "sys.exit(run_wasm(sys.argv[1], [], FixedSource()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(PAYLOADS / "cat.wat")],
        input=b"through stdin\n", capture_output=True, timeout=60,
        cwd=paths.REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"through stdin\n"


def test_payload_gets_evidence_end_to_end(capfdbinary: pytest.CaptureFixture) -> None:
    src = source()
    assert run_wasm(PAYLOADS / "attest.wat", [], src, env={}) == 3  # exits with technology
    assert capfdbinary.readouterr().out == expected_evidence(ATTEST_NONCE, 500)
    assert src.calls == [ATTEST_NONCE]


def test_payload_sees_platform_failure(capfd: pytest.CaptureFixture) -> None:
    failing = FixedSource(technology=3, size=500, fail=True)
    assert run_wasm(PAYLOADS / "attest.wat", [], failing, env={}) == 101


def test_trap_is_134_with_one_line_on_stderr(capfd: pytest.CaptureFixture) -> None:
    assert run_wasm(PAYLOADS / "trap.wat", [], source(), env={}) == TRAP_EXIT_STATUS == 134
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert "trap.wat" in err and "unreachable" in err


def test_binary_module_runs(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    import wasmtime

    binary = tmp_path / "echo.wasm"
    binary.write_bytes(wasmtime.wat2wasm((PAYLOADS / "echo.wat").read_text()))
    assert run_wasm(binary, ["x"], source(), env={}) == 1
    assert capfd.readouterr().out.splitlines() == [str(binary), "x"]


BAD_MODULES = {
    "missing": (None, "cannot read"),
    "garbage.wasm": (b"\x7fELF\x02\x01\x01", "not a WebAssembly binary"),
    "truncated.wasm": (b"\0asm\x01\0\0\0\x01", "invalid WebAssembly module"),
    "syntax.wat": (b"(module (func $f (param i32) i32.add))", "invalid WebAssembly"),
    "text.wat": (b"this is not a module", "invalid WebAssembly text"),
    "unknown-import.wat": (
        b'(module (import "env" "nope" (func)) (func (export "_start")))',
        "cannot instantiate",
    ),
    "wrong-signature.wat": (
        b'(module (import "attestation" "get_attestation" (func (param i32) (result i32)))'
        b' (func (export "_start")))',
        "cannot instantiate",
    ),
}


@pytest.mark.parametrize("name", BAD_MODULES)
def test_bad_module_is_payload_error_with_one_line(tmp_path: Path, name: str) -> None:
    content, words = BAD_MODULES[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PayloadError, match=words) as info:
        run_wasm(path, [], source(), env={})
    assert "\n" not in str(info.value)
    assert name in str(info.value)


def test_module_without_start_is_payload_error() -> None:
    with pytest.raises(PayloadError, match="_start"):
        run_wasm(PAYLOADS / "nostart.wat", [], source(), env={})


def test_directory_is_payload_error(tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match="cannot read"):
        load_module(tmp_path)


def test_trap_in_the_start_function_is_134(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    path = tmp_path / "start-trap.wat"
    path.write_text('(module (func $s unreachable) (start $s) (func (export "_start")))')
    assert run_wasm(path, [], source(), env={}) == 134
    assert "unreachable" in capfd.readouterr().err
