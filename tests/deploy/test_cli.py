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


@pytest.mark.parametrize("tee", ["sgx-sim", "tdx-sim", "snp-sim"])
def test_deploy_runs_the_workload_and_returns_its_output(tee):
    keep, address = start_keep("--tee", tee, "--once")
    try:
        result = deploy(address, "--trust-simulated", HELLO)
    finally:
        keep.wait(timeout=60)
    keep_log = keep.stderr.read()
    assert result.returncode == 0, result.stderr + keep_log
    technology = {"sgx-sim": 2, "snp-sim": 3, "tdx-sim": 4}[tee]
    assert result.stdout.splitlines()[0] == f"technology: {technology}"
    key = "p384" if tee == "snp-sim" else "p256"
    assert (f"attestcall deploy: keep {address} trusted: TLS 1.3, key exchange "
            f"X25519MLKEM768, keep key {key}") in result.stderr.splitlines()
    assert keep.returncode == 0, keep_log


def test_a_debug_keep_is_refused_and_receives_nothing():
    keep, address = start_keep("--tee", "sgx-sim", "--debug", "--once")
    try:
        result = deploy(address, "--trust-simulated", HELLO)
    finally:
        keep.wait(timeout=60)
    assert result.returncode == 3
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
    assert refused.returncode == 3
    assert allowed.returncode == 0 and allowed.stdout.startswith("technology: 0")


@pytest.mark.parametrize("args, needle", [
    (["--keep", "nowhere", HELLO], "HOST:PORT"),
    (["--keep", "127.0.0.1:1", HELLO], "cannot connect"),
    (["--keep", "127.0.0.1:1", "/nonexistent.wasm"], "cannot read"),
])
def test_bad_deploy_invocations_are_one_line(args, needle):
    result = subprocess.run([sys.executable, "-m", "attestcall", "deploy", *map(str, args)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert needle in result.stderr and "Traceback" not in result.stderr


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
    assert wrong.returncode == 3 and "nothing was sent" in wrong.stderr
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
