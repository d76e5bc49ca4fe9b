"""`attestcall completion SHELL`: a script generated from the parser, tried in a real bash."""

import subprocess
import sys


def script(shell: str) -> str:
    result = subprocess.run([sys.executable, "-m", "attestcall", "completion", shell],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def complete(tmp_path, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` with the script loaded."""
    path = tmp_path / "attestcall.bash"
    if not path.exists():
        path.write_text(script("bash"))
    line = " ".join(words)
    probe = (f'source "{path}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; '
             f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; _shtab_attestcall; '
             'printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completes_commands_options_choices_and_files(tmp_path):
    assert complete(tmp_path, ["attestcall", "ver"]) == ["verify"]
    assert complete(tmp_path, ["attestcall", "verify", "--trust"]) == ["--trust-simulated"]
    assert "sgx-sim" in complete(tmp_path, ["attestcall", "run", "--tee", "sg"])
    assert complete(tmp_path, ["attestcall", "sim", "sev"]) == ["sev-digest"]
    (tmp_path / "quote.bin").write_bytes(b"")
    assert "quote.bin" in complete(tmp_path, ["attestcall", "verify", "quo"])


def test_zsh_and_tcsh_scripts():
    assert script("zsh").startswith("#compdef attestcall")
    assert "complete attestcall" in script("tcsh")


def test_completion_costs_nothing_at_start():
    """shtab is imported by `completion` alone, never by every start of the command."""
    code = ("import sys; from attestcall.cli import main; main(['include-dir']); "
            "assert 'shtab' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True)
