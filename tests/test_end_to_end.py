"""`attestcall run` / `attest` under sgx-sim, end to end: real processes, the shipped header,
the demos, and quotes that verify to the simulated root carrying each caller's own nonce."""

import os
import subprocess
import sys

import pytest

from attestcall.include_dir import include_dir
from attestcall.intel.formats.quote import Quote
from attestcall.intel.formats.structs import ATTR_DEBUG
from tests import paths
from tests.fakes.sgx_quote_check import check_quote, seeded_nonce

REPO = paths.REPO
NONCE = bytes.fromhex("ab" * 64)


def attestcall(*args, check=True, **kw):
    result = subprocess.run([sys.executable, "-m", "attestcall", *args], capture_output=True,
                            timeout=120, **kw)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


@pytest.fixture(scope="module")
def sgx_payload(tmp_path_factory):
    exe = tmp_path_factory.mktemp("e2e") / "sgx_payload"
    subprocess.run(["cc", "-Wall", "-Werror", "-pthread", f"-I{include_dir()}", "-o", str(exe),
                    str(REPO / "tests" / "c" / "sgx_payload.c")], check=True)
    return str(exe)


def test_one_call_gives_a_quote_that_verifies(sgx_payload, tmp_path):
    out = tmp_path / "q.bin"
    attestcall("run", "--tee", "sgx-sim", sgx_payload, "one", "7", str(out))
    quote = check_quote(out.read_bytes(), seeded_nonce(7))
    assert not quote.body.debug


def test_eight_threads_each_get_their_own_nonce(sgx_payload, tmp_path):
    attestcall("run", "--tee", "sgx-sim", sgx_payload, "threads", str(tmp_path))
    for seed in range(1, 9):
        check_quote((tmp_path / f"t{seed}.bin").read_bytes(), seeded_nonce(seed))


@pytest.mark.parametrize("mode, seed", [("fork", 0x42), ("exec", 0x43)])
def test_children_and_exec_are_followed(sgx_payload, tmp_path, mode, seed):
    out = tmp_path / "q.bin"
    attestcall("run", "--tee", "sgx-sim", sgx_payload, mode, str(out))
    check_quote(out.read_bytes(), seeded_nonce(seed))


def test_wasm_demo(tmp_path):
    result = attestcall("run", "--tee", "sgx-sim", str(REPO / "examples" / "hello.wat"))
    lines = result.stdout.decode().splitlines()
    nonce = b"nonce from examples/hello.wat: the keep binds these 64 bytes...."
    assert lines[0] == "technology: 2"
    assert lines[2] == f"REPORTDATA: {nonce.hex()}"


def test_python_demo():
    result = attestcall("run", "--tee", "sgx-sim", sys.executable,
                        str(REPO / "examples" / "hello.py"))
    out = result.stdout.decode()
    assert "technology: 2 (SGX)" in out and "nonce bound: True" in out


def test_c_demo_builds_with_the_include_dir_and_runs(tmp_path):
    exe = tmp_path / "hello"
    incdir = attestcall("include-dir").stdout.decode().strip()
    subprocess.run(["cc", f"-I{incdir}", "-o", str(exe), str(REPO / "examples" / "hello.c")],
                   check=True)
    out = attestcall("run", "--tee", "sgx-sim", str(exe)).stdout.decode()
    assert "nonce bound: yes" in out
    plain = subprocess.run([str(exe)], capture_output=True, text=True)  # outside a keep
    assert plain.returncode == 1 and "not running in a keep" in plain.stderr


def test_attest_writes_a_verified_quote(tmp_path):
    out = tmp_path / "q.bin"
    result = attestcall("attest", "--tee", "sgx-sim", "--nonce", NONCE.hex(), "-o", str(out))
    size = out.stat().st_size
    assert result.stdout.decode().strip() == f"technology 2 (SGX), {size} bytes written to {out}"
    check_quote(out.read_bytes(), NONCE)


def test_attest_to_standard_output(tmp_path):
    result = attestcall("attest", "--tee", "sgx-sim", "--nonce", NONCE.hex(), "-o", "-")
    check_quote(result.stdout, NONCE)
    assert b"bytes written to standard output" in result.stderr


def test_identity_defaults_follow_the_payload_and_options_override(tmp_path):
    def mrenclave(*extra):
        out = tmp_path / "q.bin"
        attestcall("attest", "--tee", "sgx-sim", "--nonce", NONCE.hex(), "-o", str(out), *extra)
        return Quote.parse(out.read_bytes()).body

    (tmp_path / "a").write_bytes(b"payload a")
    (tmp_path / "b").write_bytes(b"payload b")
    a, b = mrenclave("--payload", str(tmp_path / "a")), mrenclave("--payload", str(tmp_path / "b"))
    assert a.mr_enclave != b.mr_enclave and a.mr_signer == b.mr_signer
    pinned = mrenclave("--payload", str(tmp_path / "a"), "--mrenclave", "11" * 32,
                       "--mrsigner", "22" * 32, "--isv-prodid", "7", "--isv-svn", "0x10")
    assert (pinned.mr_enclave, pinned.mr_signer) == (b"\x11" * 32, b"\x22" * 32)
    assert (pinned.isv_prod_id, pinned.isv_svn) == (7, 16)
    assert not pinned.attribute_flags & ATTR_DEBUG
    assert mrenclave("--debug-enclave").attribute_flags & ATTR_DEBUG


def test_exit_status_and_signals_pass_through():
    exited = attestcall("run", "--tee", "none", "/bin/sh", "-c", "exit 7", check=False)
    assert exited.returncode == 7
    killed = attestcall("run", "--tee", "none", "/bin/sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 128 + 9


def test_sim_show_and_reset(tmp_path):
    env = dict(os.environ, ATTESTCALL_HOME=str(tmp_path / "home"))
    shown = attestcall("sim", "show", env=env).stdout.decode()
    assert "SIMULATED" in shown and str(tmp_path / "home") in shown

    def signer(text):
        return [line for line in text.splitlines() if "enclave signer MRSIGNER" in line]

    assert len(signer(shown)) == 1
    reset = attestcall("sim", "reset", env=env).stdout.decode()
    assert "recreated" in reset
    after = attestcall("sim", "show", env=env).stdout.decode()
    assert signer(after) != signer(shown)  # new keys
    assert "SIMULATED" in after


def test_ctrl_c_reaches_the_payload_and_the_keep_exits_with_it(tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does): the payload gets
    it, the supervisor and the host process ignore it, and the status is the payload's."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "attestcall", "run", "--tee", "sgx-sim", "/bin/sh", "-c",
         "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.05; done"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert out.strip() == "got-int"
    assert proc.returncode == 42
