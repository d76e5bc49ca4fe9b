"""The seccomp-bpf filter of the native front end: trap syscall 0xEA01 to the tracer.

The program, as ``struct sock_filter`` entries (linux/filter.h, linux/seccomp.h):

    ld  [arch]                          ; seccomp_data.arch, offset 4
    jeq AUDIT_ARCH_X86_64, +0, allow    ; any other ABI (int 0x80, ...) is allowed
    ld  [nr]                            ; seccomp_data.nr, offset 0
    jeq 0xEA01, trace, allow
    trace: ret SECCOMP_RET_TRACE
    allow: ret SECCOMP_RET_ALLOW

x32 calls carry bit 30 in ``nr`` so they never equal 0xEA01 and are allowed (the kernel
answers them -ENOSYS).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from attestcall.abi import SYS_GET_ATTESTATION

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_TRACE = 0x7FF00000

SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4

# Classic BPF opcodes.
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2

_SOCK_FILTER = struct.Struct("=HBBI")


def instruction(code: int, jt: int, jf: int, k: int) -> bytes:
    """One ``struct sock_filter``: u16 code, u8 jt, u8 jf, u32 k."""
    return _SOCK_FILTER.pack(code, jt, jf, k)


def trap_program(syscall_nr: int = SYS_GET_ATTESTATION) -> bytes:
    """The filter as bytes: TRACE for ``syscall_nr`` on x86-64, ALLOW for everything else."""
    return b"".join(
        [
            instruction(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
            instruction(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
            instruction(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
            instruction(BPF_JEQ_K, 0, 1, syscall_nr),
            instruction(BPF_RET_K, 0, 0, SECCOMP_RET_TRACE),
            instruction(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        ]
    )


class SockFprog(ctypes.Structure):
    """``struct sock_fprog``."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def install(program: bytes) -> None:
    """Set no_new_privs and install ``program`` on the calling thread (for good: a filter
    can never be removed). Meant for a freshly forked child just before execve."""
    if len(program) % _SOCK_FILTER.size:
        raise ValueError("a BPF program is a whole number of 8-byte instructions")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    code = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // _SOCK_FILTER.size, ctypes.addressof(code))
    # The filter is a trap, not a sandbox: SPEC_ALLOW keeps the kernel from forcing
    # speculative-store-bypass mitigations on the payload just because a filter exists
    # (kernels before 5.16 did so by default). Kernels without the flag get none.
    flags = SECCOMP_FILTER_FLAG_SPEC_ALLOW
    result = _libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))
    if result != 0 and ctypes.get_errno() == errno.EINVAL:
        result = _libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog))
    _check(result, "seccomp(SECCOMP_SET_MODE_FILTER)")
