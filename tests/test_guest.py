"""attestcall.guest outside a keep, and its syscall thunk against a seccomp filter that
checks every argument register."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
import textwrap

import pytest

from attestcall import guest
from attestcall.errors import AttestcallError
from attestcall.guest import (
    NotInKeepError,
    get_attestation,
    raw_get_attestation,
    technology_name,
)
from tests import paths


def test_outside_a_keep_get_attestation_raises_not_in_keep() -> None:
    with pytest.raises(NotInKeepError, match="^not running in a keep$") as info:
        get_attestation(b"\0" * 64)
    assert isinstance(info.value, AttestcallError)


@pytest.mark.parametrize("length", [0, 63, 65, 128])
def test_wrong_nonce_length_is_value_error_before_any_syscall(
    monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(guest, "raw_get_attestation", lambda *args: calls.append(args))
    with pytest.raises(ValueError, match="64 bytes"):
        get_attestation(b"\0" * length)
    assert calls == []


def test_nonce_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        get_attestation("0" * 64)  # type: ignore[arg-type]


def test_raw_call_outside_a_keep_is_enosys_with_rdx_untouched() -> None:
    nonce = ctypes.create_string_buffer(64)
    buffer = ctypes.create_string_buffer(256)
    buf_ptr = ctypes.addressof(buffer)
    rax, rdx = raw_get_attestation(ctypes.addressof(nonce), 64, buf_ptr, 256)
    assert rax == -errno.ENOSYS
    assert rdx == buf_ptr  # rdx carried the buffer pointer in, and is left as it was


def test_raw_size_query_outside_a_keep_is_enosys_with_rdx_untouched() -> None:
    nonce = ctypes.create_string_buffer(64)
    assert raw_get_attestation(ctypes.addressof(nonce), 64, 0, 0) == (-errno.ENOSYS, 0)


def test_technology_names() -> None:
    names = [technology_name(i) for i in range(5)]
    assert names == ["NONE", "SEV", "SGX", "SNP", "TDX"]
    assert technology_name(7) == "UNKNOWN(7)"


def test_a_plugins_technology_is_named_by_its_record(monkeypatch) -> None:
    from attestcall import tees

    known = tees.registry()
    plugin = tees.Tee(technology=201, name="widget")
    monkeypatch.setattr(tees, "_registry", tees.Registry([*known.tees, plugin]))
    assert technology_name(201) == "WIDGET"
    assert technology_name(202) == "UNKNOWN(202)"


# In a child process, a seccomp filter plays the kernel for syscall 0xEA01 and checks each
# argument register: a wrong rdi/rsi/rdx/r10 gives errno 1001..1004, all right gives
# EMSGSIZE, and a size query (rdx 0) gives EIO. rdx comes back as it went in.
CHILD = textwrap.dedent(
    """
    import ctypes, errno, struct, sys
    from attestcall import guest

    NONCE, NONCE_LEN, BUF, BUF_LEN = 0x1111111122222222, 64, 0x3333333344444444, 0x5555
    LD, JEQ, RET = 0x20, 0x15, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000

    def insn(code, k, jt=0, jf=0):
        return struct.pack("=HBBI", code, jt, jf, k)

    def must_equal(offset, value, code):  # load a 32-bit word; if it differs, fail
        return insn(LD, offset) + insn(JEQ, value, 1, 0) + insn(RET, ERRNO | code)

    program = (
        must_equal(4, 0xC000003E, errno.EPERM)  # arch x86-64
        + insn(LD, 0) + insn(JEQ, 0xEA01, 1, 0) + insn(RET, ALLOW)
        + insn(LD, 32) + insn(JEQ, 0, 0, 1) + insn(RET, ERRNO | errno.EIO)  # size query
    )
    for i, value in enumerate([NONCE, NONCE_LEN, BUF, BUF_LEN]):
        offset = 16 + 8 * i  # seccomp_data.args[i], little-endian halves
        program += must_equal(offset, value & 0xFFFFFFFF, 1001 + i)
        program += must_equal(offset + 4, value >> 32, 1001 + i)
    program += insn(RET, ERRNO | errno.EMSGSIZE)

    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("=HxxxxxxQ", len(program) // 8, ctypes.addressof(code))
    fprog_buffer = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    assert libc.prctl(22, 2, ctypes.addressof(fprog_buffer), 0, 0) == 0, ctypes.get_errno()

    print(*guest.raw_get_attestation(NONCE, NONCE_LEN, BUF, BUF_LEN))
    print(*guest.raw_get_attestation(NONCE, NONCE_LEN, BUF, 0x5556))
    print(*guest.raw_get_attestation(NONCE, 65, BUF, BUF_LEN))
    try:
        guest.get_attestation(bytes(64))
    except OSError as e:
        print(type(e).__name__, e.errno, e.strerror)
    """
)


def test_thunk_passes_each_register_and_returns_rdx() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
        cwd=paths.REPO,
    )
    assert result.returncode == 0, result.stderr
    buf = 0x3333333344444444
    assert result.stdout.splitlines() == [
        f"{-errno.EMSGSIZE} {buf}",  # every register as passed, rdx untouched
        f"-1004 {buf}",  # a different r10 is noticed
        f"-1002 {buf}",  # a different rsi is noticed
        f"OSError {errno.EIO} {os.strerror(errno.EIO)}",  # errors other than ENOSYS
    ]
