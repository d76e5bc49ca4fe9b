"""`attestcall keep serve` and `attestcall deploy` as a person runs them: two processes."""

import subprocess
import sys

import pytest

from tests import paths

REPO = paths.REPO
HELLO = REPO / "examples" / "hello.wat"


def start_keep(*args):
    keep = subprocess.Popen(
        [sys.executable, "-m", "attestcall", "keep", "serve", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = keep.stdout.readline()
    assert "listening on" in line, line + keep.stderr.read()
    return keep, line.rsplit(" ", 1)[1].strip()


def deploy(address, *args):
    return subprocess.run([sys.executable, "-m", "attestcall", "deploy", "--keep", address,
                           *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tee", ["sgx-sim", "tdx-sim", "snp-sim", "cca-sim"])
def test_deploy_runs_the_workload_and_returns_its_output(tee):
    keep, address = start_keep("--tee", tee, "--once")
    try:
        result = deploy(address, "--trust-simulated", HELLO)
    finally:
        keep.wait(timeout=60)
    keep_log = keep.stderr.read()
    assert result.returncode == 0, result.stderr + keep_log
    technology = {"sgx-sim": 2, "snp-sim": 3, "tdx-sim": 4, "cca-sim": 5}[tee]
    assert result.stdout.splitlines()[0] == f"technology: {technology}"
    key = "p384" if tee in ("snp-sim", "cca-sim") else "p256"
    assert (f"attestcall deploy: keep {address} trusted: TLS 1.3, key exchange "
            f"X25519MLKEM768, keep key {key}") in result.stderr.splitlines()
    assert keep.returncode == 0, keep_log


def test_a_debug_keep_is_refused_and_receives_nothing():
    keep, address = start_keep("--tee", "sgx-sim", "--debug", "--once")
    try:
        result = deploy(address, "--trust-simulated", HELLO)
    finally:
        keep.wait(timeout=60)
    assert result.returncode == 125
    assert "nothing was sent" in result.stderr and "debug" in result.stderr
    assert "ran" not in keep.stderr.read()  # the keep never ran a module


def test_a_none_keep_needs_the_policy_to_allow_it(tmp_path):
    keep, address = start_keep("--tee", "none")
    try:
        refused = deploy(address, HELLO)
        policy = tmp_path / "p.toml"
        policy.write_text("[none]\nallow = true\n")
        allowed = deploy(address, "--policy", policy, HELLO)
    finally:
        keep.terminate()
        keep.wait(timeout=60)
    assert refused.returncode == 125
    assert allowed.returncode == 0 and allowed.stdout.startswith("technology: 0")


@pytest.mark.parametrize("args, needle", [
    (["--keep", "nowhere", HELLO], "HOST:PORT"),
    (["--keep", "127.0.0.1:1", HELLO], "cannot connect"),
    (["--keep", "127.0.0.1:1", "/nonexistent.wasm"], "cannot read"),
])
def test_bad_deploy_invocations_are_one_line(args, needle):
    result = subprocess.run([sys.executable, "-m", "attestcall", "deploy", *map(str, args)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 125  # deploy's own failure, never a workload's status
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_sev_keep_provisioned_from_the_command_line(tmp_path):
    digest = subprocess.run([sys.executable, "-m", "attestcall", "sim", "sev-digest"],
                            capture_output=True, text=True, timeout=60)
    assert digest.returncode == 0 and len(digest.stdout.strip()) == 64
    keep, address = start_keep("--tee", "sev-sim", "--once")
    policy = tmp_path / "p.toml"
    try:
        policy.write_text(f'[sev]\nlaunch_digest = ["{"00" * 32}"]\n')
        wrong = deploy(address, "--trust-simulated", "--policy", policy, HELLO)
        policy.write_text(f'[sev]\nlaunch_digest = ["{digest.stdout.strip()}"]\n')
        right = deploy(address, "--trust-simulated", "--policy", policy, HELLO)
    finally:
        keep.wait(timeout=60)
    assert wrong.returncode == 125 and "nothing was sent" in wrong.stderr
    assert right.returncode == 0, right.stderr
    assert right.stdout.splitlines()[0] == "technology: 1"


def test_cli_serves_and_deploys_an_mldsa87_keep():
    keep, address = start_keep("--tee", "tdx-sim", "--key-type", "mldsa87", "--once")
    try:
        result = deploy(address, "--trust-simulated", "--key-type", "mldsa87", HELLO)
    finally:
        keep.wait(timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "technology: 4"
    assert (f"attestcall deploy: keep {address} trusted: TLS 1.3, key exchange "
            "X25519MLKEM768, keep key mldsa87") in result.stderr.splitlines()


EXIT_3 = """(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1) (func (export "_start") i32.const 3 call $exit))"""
UNLINKABLE = """(module (import "env" "not_provided" (func)) (memory (export "memory") 1)
  (func (export "_start")))"""


def test_deploy_exit_codes_never_mistake_a_workload_for_a_refusal(tmp_path):
    """Issue 12: deploy's own outcomes are 125 (nothing ran) and 126 (the keep took the
    workload but reported no exit); a workload's 3 is the workload's."""
    import json

    (tmp_path / "exit3.wat").write_text(EXIT_3)
    (tmp_path / "unlinkable.wat").write_text(UNLINKABLE)
    (tmp_path / "notes.txt").write_text("hello\n")
    keep, address = start_keep("--tee", "sgx-sim")
    try:
        workload = deploy(address, "--trust-simulated", "--json", tmp_path / "exit3.wat")
        refused = deploy(address, "--json", tmp_path / "exit3.wat")  # simulated: untrusted
        broken = deploy(address, "--trust-simulated", tmp_path / "unlinkable.wat")
        text = deploy(address, "--trust-simulated", tmp_path / "notes.txt")
        native = deploy(address, "--trust-simulated", sys.executable)
        verbose = deploy(address, "--trust-simulated", "-v", HELLO)
    finally:
        keep.terminate()
        keep.wait(timeout=60)
    assert workload.returncode == 3, workload.stderr
    first, *_, last = [json.loads(line) for line in workload.stderr.splitlines()]
    assert first["trusted"] and first["trusted_by"] == "evidence"
    assert first["verdict"]["technology"] == "sgx" and first["verdict"]["simulated"]
    assert first["tls"]["version"] == "TLSv1.3"
    assert last == {"exit_status": 3, "by": "workload", "error": None}

    assert refused.returncode == 125
    first, last = [json.loads(line) for line in refused.stderr.splitlines()]
    assert not first["trusted"] and first["reasons"]
    assert last["by"] == "attestcall" and last["exit_status"] == 125

    assert broken.returncode == 126, broken.stderr
    assert "the keep refused the workload" in broken.stderr

    for result, what in ((text, "not a WebAssembly module"), (native, "an ELF program")):
        assert result.returncode == 125
        assert result.stderr.count("\n") == 1 and what in result.stderr, result.stderr

    assert verbose.returncode == 0
    assert "  evidence accepted: SGX quote [SIMULATED]" in verbose.stderr
    assert "  bound to this TLS session's key" in verbose.stderr
    assert "  mrenclave " in verbose.stderr


def test_deploy_takes_collateral_like_verify(tmp_path):
    """--collateral reaches the verification (the real SGX vector's collateral does not fit
    a simulated quote), the simulators' own file lets it through, and without
    --trust-simulated the keep is refused for being simulated, not for collateral."""
    simulated = tmp_path / "sim.json"
    made = subprocess.run([sys.executable, "-m", "attestcall", "sim", "collateral",
                           "--tee", "sgx-sim", "-o", str(simulated)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    keep, address = start_keep("--tee", "sgx-sim")
    try:
        untrusted = deploy(address, HELLO)
        real = deploy(address, "--trust-simulated", "--collateral",
                      paths.DATA / "intel/sgx_quote_v3.collateral.json", HELLO)
        good = deploy(address, "--trust-simulated", "--collateral", simulated, HELLO)
    finally:
        keep.terminate()
        keep.wait(timeout=60)
    assert untrusted.returncode != 0 and "nothing was sent" in untrusted.stderr
    assert "the evidence is simulated; pass --trust-simulated" in untrusted.stderr
    assert "collateral" not in untrusted.stderr
    assert real.returncode != 0 and "nothing was sent" in real.stderr
    assert "collateral" in real.stderr
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("technology: 2")
