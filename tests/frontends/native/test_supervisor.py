"""The supervisor as a process manager: threads, children, exec, signals, exit status,
standard streams, and check_program's refusals."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from attestcall.errors import PayloadError
from attestcall.frontends.native import check_program, run_native
from tests.fakes.source import FixedSource, expected_evidence
from tests.frontends.native.conftest import SIZE, elf_header, start_supervisor


def nonce(seed: int) -> bytes:
    return bytes((seed + 7 * i) & 0xFF for i in range(64))


# --------------------------------------------------------------------------- following


def test_threads_each_get_evidence_for_their_own_nonce(payloads, capfd):
    source = FixedSource(size=SIZE)
    assert run_native([payloads["threads"]], source) == 0
    lines = capfd.readouterr().out.splitlines()
    assert len(lines) == 8
    seeds = set()
    for line in lines:
        fields = dict(item.partition("=")[::2] for item in line.split()[2:])
        seed = int(fields["seed"])
        seeds.add(seed)
        assert fields["calls_ok"] == "25"
        assert bytes.fromhex(fields["evidence"]) == expected_evidence(nonce(seed), SIZE)
    assert len(seeds) == 8
    assert len(source.calls) == 8 * 25
    assert {bytes(n) for n in source.calls} == {nonce(seed) for seed in seeds}


def test_forked_child_is_answered(payloads, capfd):
    assert run_native([payloads["forker"], "fork"], FixedSource(size=SIZE)) == 0
    out = capfd.readouterr().out
    assert f"child ret={SIZE} rdx=2 ok=1" in out
    assert f"parent ret={SIZE} rdx=2 ok=1" in out


def test_vforked_child_that_execs_is_answered(payloads, capfd):
    argv = [payloads["forker"], "vfork", payloads["contract"], "size"]
    assert run_native(argv, FixedSource(size=SIZE)) == 0
    assert f"ret={SIZE} rdx=0x2" in capfd.readouterr().out


def test_exec_into_another_program_is_answered(payloads, capfd):
    argv = [payloads["execer"], payloads["contract"], "size"]
    assert run_native(argv, FixedSource(size=SIZE)) == 0
    assert f"ret={SIZE} rdx=0x2" in capfd.readouterr().out


def test_exec_from_a_secondary_thread_is_answered(payloads, capfd):
    argv = [payloads["execer"], "--thread", payloads["contract"], "size"]
    assert run_native(argv, FixedSource(size=SIZE)) == 0
    assert f"ret={SIZE} rdx=0x2" in capfd.readouterr().out


def test_runs_from_a_secondary_thread(payloads, capfd):
    results: list[int] = []
    worker = threading.Thread(
        target=lambda: results.append(
            run_native([payloads["contract"], "size"], FixedSource(size=SIZE))
        )
    )
    worker.start()
    worker.join(timeout=10)
    assert results == [0]
    assert f"ret={SIZE} rdx=0x2" in capfd.readouterr().out


def test_background_child_is_released_when_the_payload_exits(payloads, tmp_path):
    result = tmp_path / "background.txt"
    started = time.monotonic()
    assert run_native([payloads["forker"], "background", str(result)], FixedSource()) == 0
    assert time.monotonic() - started < 0.3, "must not wait for the background child"
    deadline = time.monotonic() + 5
    while not result.exists() or not result.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the detached child hung"
        time.sleep(0.02)
    # no keep any more: the filter's TRACE with no tracer answers -ENOSYS
    assert result.read_text() == f"ret={-errno.ENOSYS}\n"


# --------------------------------------------------------------------------- exit status


def test_exit_status_passes_through(payloads):
    assert run_native([payloads["misc"], "exit", "7"], FixedSource()) == 7


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGSEGV, signal.SIGKILL])
def test_death_by_signal_is_128_plus_n(payloads, signum):
    assert run_native([payloads["misc"], "kill", str(int(signum))], FixedSource()) == 128 + signum


def test_signal_handlers_are_restored(payloads):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    run_native([payloads["misc"], "exit", "0"], FixedSource())
    assert {s: signal.getsignal(s) for s in before} == before


def test_env_is_given_to_the_payload(tmp_path, capfd):
    script = tmp_path / "show-env"
    script.write_text("#!/bin/sh\necho \"value=$ATTESTCALL_TEST_VALUE\"\n")
    script.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "ATTESTCALL_TEST_VALUE": "forty-two"}
    assert run_native([str(script)], FixedSource(), env=env) == 0
    assert capfd.readouterr().out == "value=forty-two\n"


# --------------------------------------------------------------------------- signals


def read_ready(proc: subprocess.Popen[str]) -> int:
    line = proc.stdout.readline()
    assert line.startswith("ready "), line
    return int(line.split()[1])


def test_sigint_to_the_group_reaches_the_payload_and_supervisor_survives(payloads):
    proc = start_supervisor([payloads["misc"], "sigint"], stdout=subprocess.PIPE)
    try:
        read_ready(proc)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 42
    assert f"after ret={SIZE} rdx=2" in out


def test_sigint_kills_a_payload_with_default_handling(payloads):
    proc = start_supervisor([payloads["misc"], "pause"], stdout=subprocess.PIPE)
    try:
        read_ready(proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT


def test_sigterm_to_the_supervisor_is_forwarded(payloads):
    proc = start_supervisor([payloads["misc"], "pause"], stdout=subprocess.PIPE)
    try:
        read_ready(proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM


def process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_sigstop_and_sigcont_do_not_hang(payloads):
    proc = start_supervisor([payloads["misc"], "ticks", "30"], stdout=subprocess.PIPE)
    try:
        pid = read_ready(proc)
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process_state(pid) not in "Tt":
            assert time.monotonic() < deadline, "the payload did not stop"
            time.sleep(0.01)
        time.sleep(0.2)
        assert process_state(pid) in "Tt", "the payload must stay stopped until SIGCONT"
        assert proc.poll() is None
        os.kill(pid, signal.SIGCONT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "good=30" in out


def test_standard_streams_pass_through(payloads):
    proc = start_supervisor(
        [payloads["misc"], "echo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate("hello keep\n", timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out == "out:hello keep\n"
    assert err == "err:hello keep\n"


# --------------------------------------------------------------------------- check_program


def test_check_program_searches_path(tmp_path, payloads):
    assert check_program("contract", env_path=os.path.dirname(payloads["contract"])) == (
        payloads["contract"]
    )


def test_check_program_skips_non_executables_in_path(tmp_path, payloads):
    shadow = tmp_path / "contract"
    shadow.write_text("not me")
    path = f"{tmp_path}:{os.path.dirname(payloads['contract'])}"
    assert check_program("contract", env_path=path) == payloads["contract"]


def test_check_program_accepts_a_script(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    assert check_program(str(script)) == str(script)


def test_missing_program(tmp_path):
    with pytest.raises(PayloadError, match="not found"):
        check_program(str(tmp_path / "absent"))
    with pytest.raises(PayloadError, match="not found"):
        check_program("attestcall-no-such-program", env_path=str(tmp_path))


def test_directory_is_refused(tmp_path):
    with pytest.raises(PayloadError, match="is a directory"):
        check_program(str(tmp_path))


def test_non_executable_is_refused(tmp_path, payloads):
    copy = tmp_path / "contract"
    copy.write_bytes(Path(payloads["contract"]).read_bytes())
    copy.chmod(0o644)
    with pytest.raises(PayloadError, match="not executable"):
        check_program(str(copy))


def test_32_bit_elf_is_refused(elf32):
    with pytest.raises(PayloadError, match="32-bit ELF for i386"):
        check_program(elf32)


def test_aarch64_elf_is_refused(tmp_path):
    exe = tmp_path / "arm64"
    exe.write_bytes(elf_header(2, 183))
    exe.chmod(0o755)
    with pytest.raises(PayloadError, match="64-bit ELF for AArch64"):
        check_program(str(exe))


def test_unknown_format_is_refused(tmp_path):
    exe = tmp_path / "data"
    exe.write_bytes(b"just some bytes\n")
    exe.chmod(0o755)
    with pytest.raises(PayloadError, match="not an ELF executable"):
        check_program(str(exe))


def test_run_native_refuses_before_starting(elf32):
    with pytest.raises(PayloadError):
        run_native([elf32], FixedSource())


def test_exec_failure_is_a_payload_error(tmp_path):
    script = tmp_path / "bad-interpreter"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(PayloadError, match="cannot execute"):
        run_native([str(script)], FixedSource())
