"""Thin ctypes bindings for ptrace(2) and process_vm_readv/writev(2) on x86-64 Linux.

Only what the native front end needs. Every call raises OSError (with the errno) on
failure; nothing here knows about get_attestation.
"""

from __future__ import annotations

import ctypes
import os

# Requests (linux/ptrace.h).
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208

# Events, as found in ``status >> 16`` of a ptrace-stop.
PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_VFORK_DONE = 5
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

# Options: bit N enables event N.
PTRACE_O_TRACESYSGOOD = 1
PTRACE_O_TRACEFORK = 1 << PTRACE_EVENT_FORK
PTRACE_O_TRACEVFORK = 1 << PTRACE_EVENT_VFORK
PTRACE_O_TRACECLONE = 1 << PTRACE_EVENT_CLONE
PTRACE_O_TRACEEXEC = 1 << PTRACE_EVENT_EXEC
PTRACE_O_TRACEVFORKDONE = 1 << PTRACE_EVENT_VFORK_DONE
PTRACE_O_TRACEEXIT = 1 << PTRACE_EVENT_EXIT
PTRACE_O_TRACESECCOMP = 1 << PTRACE_EVENT_SECCOMP
PTRACE_O_EXITKILL = 1 << 20

# waitpid flag: wait for every child, clone or not (linux/wait.h).
WALL = 0x40000000


class UserRegs(ctypes.Structure):
    """``struct user_regs_struct`` for x86-64: 27 unsigned longs in the kernel's order."""

    _fields_ = [
        (name, ctypes.c_ulong)
        for name in (
            "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
            "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
            "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
        )
    ]


class IoVec(ctypes.Structure):
    """``struct iovec``."""

    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)

_ptrace = _libc.ptrace
_ptrace.restype = ctypes.c_long
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

_vm_argtypes = [
    ctypes.c_int,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_process_vm_readv = _libc.process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_readv.argtypes = _vm_argtypes
_process_vm_writev = _libc.process_vm_writev
_process_vm_writev.restype = ctypes.c_ssize_t
_process_vm_writev.argtypes = _vm_argtypes


def _fail(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def ptrace(request: int, tid: int, addr: int | None = None, data: object = None) -> int:
    """Raw ptrace(2); ``data`` is an int, None or a ctypes pointer/byref."""
    result = _ptrace(request, tid, addr, data)
    if result == -1:
        raise _fail(f"ptrace({request:#x}, {tid})")
    return result


def seize(tid: int, options: int) -> None:
    ptrace(PTRACE_SEIZE, tid, None, options)


def cont(tid: int, signal: int = 0) -> None:
    if _ptrace(PTRACE_CONT, tid, None, signal) == -1:
        raise _fail(f"PTRACE_CONT {tid}")


def listen(tid: int) -> None:
    ptrace(PTRACE_LISTEN, tid, None, None)


def interrupt(tid: int) -> None:
    ptrace(PTRACE_INTERRUPT, tid, None, None)


def detach(tid: int, signal: int = 0) -> None:
    ptrace(PTRACE_DETACH, tid, None, signal)


def getregs(tid: int, regs: UserRegs) -> None:
    if _ptrace(PTRACE_GETREGS, tid, None, ctypes.byref(regs)) == -1:
        raise _fail(f"PTRACE_GETREGS {tid}")


def setregs(tid: int, regs: UserRegs) -> None:
    if _ptrace(PTRACE_SETREGS, tid, None, ctypes.byref(regs)) == -1:
        raise _fail(f"PTRACE_SETREGS {tid}")


def geteventmsg(tid: int) -> int:
    message = ctypes.c_ulong()
    ptrace(PTRACE_GETEVENTMSG, tid, None, ctypes.byref(message))
    return message.value


def process_vm_readv(tid: int, local: IoVec, remote: IoVec) -> int:
    """One local and one remote iovec; returns the byte count (may be short)."""
    count = _process_vm_readv(tid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if count < 0:
        raise _fail(f"process_vm_readv {tid}")
    return count


def process_vm_writev(tid: int, local: IoVec, remote: IoVec) -> int:
    """One local and one remote iovec; returns the byte count (may be short)."""
    count = _process_vm_writev(tid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if count < 0:
        raise _fail(f"process_vm_writev {tid}")
    return count
