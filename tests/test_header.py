"""include/attestcall.h: compiles warning-free as C and C++, and its inline asm speaks
the raw interface (checked outside a keep, and against an in-process fake kernel)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from attestcall.include_dir import HEADER, include_dir
from tests import paths

PROGRAMS = paths.C
WARNINGS = ["-Wall", "-Wextra", "-Werror"]


def build(tmp_path: Path, compiler: str, flags: list[str], source: str) -> Path:
    executable = tmp_path / f"{Path(source).stem}-{compiler}-{'-'.join(flags)}"
    command = [compiler, *WARNINGS, *flags, "-I", str(include_dir()),
               str(PROGRAMS / source), "-o", str(executable)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
    assert result.stderr == "", result.stderr  # warning-free
    return executable


def run(executable: Path) -> list[str]:
    result = subprocess.run([str(executable)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_include_dir_holds_the_header() -> None:
    assert (include_dir() / HEADER).is_file()
    assert "#ifndef ATTESTCALL_H" in (include_dir() / HEADER).read_text()


BUILDS = {
    "c11": ("gcc", ["-std=c11"]),
    "c11-O2-pedantic": ("gcc", ["-std=c11", "-O2", "-pedantic"]),
    "gnu99": ("gcc", ["-std=gnu99"]),
    "c++": ("g++", ["-x", "c++"]),
    "c++11-O2": ("g++", ["-x", "c++", "-std=c++11", "-O2"]),
    "c++20": ("g++", ["-x", "c++", "-std=c++20"]),
}


@pytest.mark.parametrize("compiler, flags", BUILDS.values(), ids=BUILDS.keys())
def test_outside_a_keep_enosys_and_technology_untouched(
    tmp_path: Path, compiler: str, flags: list[str]
) -> None:
    lines = run(build(tmp_path, compiler, flags, "enosys.c"))
    enosys = errno.ENOSYS
    assert lines == [
        f"size-query -1 {enosys} 5eed",
        f"call -1 {enosys} 5eed 1",
        f"null-technology -1 {enosys}",
        "macros 0xea01 64 0 1 2 3 4",
    ]


@pytest.mark.parametrize("flags", [["-std=c11"], ["-std=gnu99", "-O2"]], ids=["c11", "gnu99-O2"])
def test_registers_against_a_fake_kernel(tmp_path: Path, flags: list[str]) -> None:
    lines = run(build(tmp_path, "gcc", flags, "fake_kernel.c"))
    assert lines == [
        # size query: buf NULL in rdx, technology from rdx
        "size-query ret=100 errno=0 technology=3 nonce=1 len=64 buf=1 buf_len=0",
        # error: -1 with errno, *technology left alone although rdx held the buffer
        f"short ret=-1 errno={errno.EMSGSIZE} technology=77 nonce=1 len=64 buf=1 buf_len=99",
        # success: buf_len went in r10, the count comes back, technology from rdx
        "call ret=100 errno=0 technology=3 nonce=1 len=64 buf=1 buf_len=108",
        "buffer 1",
        "null-technology ret=100 errno=0 technology=0 nonce=1 len=64 buf=1 buf_len=108",
    ]
