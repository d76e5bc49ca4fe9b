"""The command line: bad invocations give one clear line and a non-zero status."""

import subprocess
import sys

import pytest

NONCE = "ab" * 64


def attestcall(*args, **kw):
    return subprocess.run([sys.executable, "-m", "attestcall", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], None),
        (["frobnicate"], "invalid choice"),
        (["run"], "PROGRAM"),
        (["run", "--tee", "tdx-real", "/bin/true"], "invalid choice"),
        (["attest", "--tee", "none", "-o", "x"], "--nonce"),
        (["attest", "--tee", "none", "--nonce", "abcd", "-o", "x"], "128 hex digits"),
        (["attest", "--tee", "none", "--nonce", "zz" * 64, "-o", "x"], "hex digits"),
        (["attest", "--tee", "none", "--nonce", NONCE], "--output"),
        (["run", "--isv-svn", "70000", "/bin/true"], "outside 0..65535"),
        (["run", "--mrenclave", "00", "/bin/true"], "64 hex digits"),
        (["run", "--host-timeout", "-1", "/bin/true"], "greater than 0"),
        (["sim"], "show, reset, collateral or sev-digest"),
    ],
)
def test_bad_invocations_exit_2(args, needle, tmp_path):
    result = attestcall(*args, cwd=tmp_path)
    assert result.returncode == 2
    if needle is None:
        assert "usage" in result.stderr
    else:
        assert needle in one_line_error(result)


@pytest.mark.parametrize(
    "program, needle",
    [
        ("/nonexistent/payload", "not found"),
        ("no-such-command-anywhere", "not found"),
        ("/etc/passwd", "not executable"),
        ("/tmp", "directory"),
    ],
)
def test_payload_that_cannot_run_exits_127_with_one_line(program, needle):
    result = attestcall("run", "--tee", "none", program)
    assert result.returncode == 127
    assert needle in one_line_error(result).lower()


def test_bad_wasm_module_is_one_line(tmp_path):
    module = tmp_path / "broken.wasm"
    module.write_bytes(b"\0asm garbage")
    result = attestcall("run", "--tee", "none", str(module))
    assert result.returncode == 127
    one_line_error(result)


def test_help_lists_the_commands():
    result = attestcall("--help")
    assert result.returncode == 0
    for command in ("run", "attest", "sim", "include-dir"):
        assert command in result.stdout
    result = attestcall("run", "--help")
    assert "--tee" in result.stdout and "sgx-sim" in result.stdout


def test_attest_none_writes_empty_evidence(tmp_path):
    out = tmp_path / "e.bin"
    result = attestcall("attest", "--tee", "none", "--nonce", NONCE, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"technology 0 (NONE), 0 bytes written to {out}"
    assert out.read_bytes() == b""


def test_auto_falls_back_to_none_and_says_so(tmp_path):
    out = tmp_path / "e.bin"
    result = attestcall("attest", "--nonce", NONCE, "-o", str(out),
                        env={"PATH": "/usr/bin:/bin", "ATTESTCALL_TEE": "auto",
                             "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "no TEE hardware found" in result.stderr
    assert "technology 0" in result.stdout


def test_attest_into_unwritable_place_is_one_line(tmp_path):
    result = attestcall("attest", "--tee", "none", "--nonce", NONCE, "-o",
                        str(tmp_path / "missing-dir" / "e.bin"))
    assert result.returncode == 2
    assert "cannot write" in one_line_error(result)


def test_include_dir_holds_the_header():
    from pathlib import Path

    result = attestcall("include-dir")
    assert result.returncode == 0
    assert (Path(result.stdout.strip()) / "attestcall.h").is_file()


def test_devices_says_why_each_interface_is_unusable():
    result = attestcall("devices")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["tsm", "sev-guest", "gramine", "efi-secret"]
    assert all("unusable" in line and ": " in line for line in lines[:4])  # no TEE here
    assert lines[-1].startswith("--tee auto would use: none")


@pytest.mark.parametrize("tee", ["tsm", "sev-guest", "gramine", "efi-secret"])
def test_real_backend_without_hardware_is_one_line(tee):
    result = attestcall("run", "--tee", tee, "/bin/true")
    assert result.returncode == 1
    assert f"--tee {tee}" in one_line_error(result)


@pytest.mark.parametrize(("args", "prog"), [
    (["run"], "attestcall run"), (["sim"], "attestcall sim"), (["keep"], "attestcall keep"),
    (["service"], "attestcall service"),
    (["service", "collateral"], "attestcall service collateral"),
    (["verify"], "attestcall verify"), (["frobnicate"], "attestcall"),
    (["deploy", "--bogus", "--keep", "h:1", "w.wasm"], "attestcall deploy"),
    (["sim", "show", "--bogus"], "attestcall sim"),
])
def test_usage_errors_have_one_prefix(args, prog):
    line = one_line_error(attestcall(*args))
    assert line.startswith(f"{prog}: error: ")
    assert line.count("attestcall") == prog.count("attestcall") + line.count("'attestcall")


def test_run_args_are_optional():
    line = one_line_error(attestcall("run"))
    assert "PROGRAM" in line and "ARGS" not in line  # only PROGRAM is required
    assert "PROGRAM [ARGS ...]" in " ".join(attestcall("run", "--help").stdout.split())
    assert "WORKLOAD [ARGS ...]" in " ".join(attestcall("deploy", "--help").stdout.split())


def test_a_file_here_that_is_not_executable_is_said_so(tmp_path):
    (tmp_path / "payload").write_bytes(b"\x7fELF")
    line = one_line_error(attestcall("run", "--tee", "none", "payload", cwd=tmp_path))
    assert "not executable" in line and "./payload" in line and "not found" not in line
    (tmp_path / "payload").chmod(0o755)
    line = one_line_error(attestcall("run", "--tee", "none", "payload", cwd=tmp_path))
    assert "not found in PATH" in line and "./payload" in line


def test_nonce_forms(tmp_path):
    """--nonce: hex, @FILE or - (64 raw bytes or 128 hex digits), and attest's random."""
    raw = bytes(range(64))
    (tmp_path / "raw").write_bytes(raw)
    (tmp_path / "hex").write_text(raw.hex() + "\n")
    quote = tmp_path / "q.bin"
    made = attestcall("attest", "--tee", "sgx-sim", "--nonce", "@raw", "-o", "q.bin",
                      cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    collateral = attestcall("sim", "collateral", "-o", str(tmp_path / "c.json"))
    assert collateral.returncode == 0, collateral.stderr
    verify = ("verify", str(quote), "--collateral", str(tmp_path / "c.json"), "--trust-simulated")
    for nonce, stdin in ((raw.hex(), None), ("@" + str(tmp_path / "hex"), None),
                         ("-", raw), ("-", raw.hex().encode() + b"\n")):
        result = subprocess.run([sys.executable, "-m", "attestcall", *verify, "--nonce", nonce],
                                input=stdin, capture_output=True, timeout=120)
        assert result.returncode == 0, (nonce, result.stderr)
    wrong = attestcall(*verify, "--nonce", "00" * 64)
    assert wrong.returncode == 1 and "nonce" in wrong.stdout
    both = subprocess.run([sys.executable, "-m", "attestcall", "verify", "-", "--nonce", "-"],
                          input=quote.read_bytes(), capture_output=True, timeout=120)
    assert both.returncode == 2 and b"standard input already holds" in both.stderr
    short = attestcall(*verify, "--nonce", "@" + str(tmp_path / "q.bin"))
    assert short.returncode == 2 and "neither the nonce's 64 raw bytes" in short.stderr

    chosen = attestcall("attest", "--tee", "sgx-sim", "--nonce", "random", "-o", "r.bin",
                        cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    printed = chosen.stdout.splitlines()[0].split()
    assert printed[0] == "nonce" and len(bytes.fromhex(printed[1])) == 64
    again = attestcall("verify", str(tmp_path / "r.bin"), "--collateral",
                       str(tmp_path / "c.json"), "--trust-simulated", "--nonce", printed[1])
    assert again.returncode == 0, again.stderr
    assert attestcall("verify", str(quote), "--nonce", "random").returncode == 2
