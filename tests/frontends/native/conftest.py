"""Fixtures for the native front end: C payloads compiled once per session, and a
supervisor run in its own process (for tests that send signals to a process group)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests import paths

C_DIR = Path(__file__).parent / "c"
REPO = paths.REPO
SIZE = 4600

# Run in a child Python: run_native(argv) with FixedSource(size=SIZE); exits with its status.
SUPERVISOR_SCRIPT = """
import json, sys
from attestcall.frontends.native import run_native
from tests.fakes.source import FixedSource
sys.exit(run_native(json.loads(sys.argv[1]), FixedSource(size=int(sys.argv[2]))))
"""


@pytest.fixture(scope="session")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every tests/frontends/native/c/*.c compiled with gcc: name -> executable path."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the native test payloads")
    out = tmp_path_factory.mktemp("native-payloads")
    built = {}
    for source in sorted(C_DIR.glob("*.c")):
        exe = out / source.stem
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-Werror", "-pthread", "-o", str(exe), str(source)],
            check=True,
        )
        built[source.stem] = str(exe)
    return built


def start_supervisor(argv: list[str], **popen: object) -> subprocess.Popen[str]:
    """The supervisor in a new session (its own process group, no controlling terminal),
    so a test can signal the group without touching pytest."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SCRIPT, json.dumps(argv), str(SIZE)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def elf_header(elf_class: int, machine: int) -> bytes:
    """A minimal little-endian ELF executable header (enough for check_program)."""
    ident = b"\x7fELF" + bytes([elf_class, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHI", 2, machine, 1) + bytes(40)


@pytest.fixture(scope="session")
def elf32(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real 32-bit i386 executable when gcc -m32 can link one without libc; otherwise a
    crafted ELFCLASS32/EM_386 header. Either way, executable."""
    out = tmp_path_factory.mktemp("elf32")
    exe = out / "hello32"
    src = out / "hello32.c"
    src.write_text(
        'void _start(void) { __asm__ volatile("movl $1, %eax; xorl %ebx, %ebx; int $0x80"); }\n'
    )
    built = subprocess.run(
        ["gcc", "-m32", "-nostdlib", "-static", "-ffreestanding", "-fno-pic",
         "-o", str(exe), str(src)],
        capture_output=True,
    )
    if built.returncode != 0:
        exe.write_bytes(elf_header(1, 3))
    exe.chmod(0o755)
    return str(exe)
