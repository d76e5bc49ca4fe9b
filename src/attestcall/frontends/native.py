"""Native x86-64 front end: run an unmodified Linux program and answer its 0xEA01 calls.

The payload runs under a seccomp-bpf filter that traps only syscall 0xEA01 to its tracer
(``SECCOMP_RET_TRACE``); this module is that tracer. At each seccomp stop it reads the
arguments from the registers, asks :func:`attestcall.abi.get_attestation` (through a
:class:`ProcessMemory` for the calling thread), skips the real syscall (``orig_rax = -1``)
and stores the result in ``rax`` and, on success or size query, the technology in ``rdx``.
Threads, forked and vforked children and programs they exec are followed. Every other
syscall runs untouched, at full speed.

If the supervisor dies, the kernel detaches its tracees and the filter's TRACE action then
answers -ENOSYS: the payload sees "not in a keep", it never hangs. That is why the seize
does not use PTRACE_O_EXITKILL.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

from attestcall import abi
from attestcall.errors import PayloadError
from attestcall.frontends import ptrace, seccomp

TRACE_OPTIONS = (
    ptrace.PTRACE_O_TRACESECCOMP
    | ptrace.PTRACE_O_TRACECLONE
    | ptrace.PTRACE_O_TRACEFORK
    | ptrace.PTRACE_O_TRACEVFORK
    | ptrace.PTRACE_O_TRACEEXEC
)

_MASK64 = (1 << 64) - 1
_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_NEW_TRACEE_EVENTS = frozenset(
    {ptrace.PTRACE_EVENT_FORK, ptrace.PTRACE_EVENT_VFORK, ptrace.PTRACE_EVENT_CLONE}
)

# ELF header fields (the first 20 bytes are all we need).
_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_ET_EXEC, _ET_DYN = 2, 3
_EM_X86_64 = 62
_MACHINES = {
    3: "i386",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "s390",
    40: "ARM",
    62: "x86-64",
    183: "AArch64",
    243: "RISC-V",
}


# --------------------------------------------------------------------------- program


def check_program(program: str, env_path: str | None = None) -> str:
    """Resolve PROGRAM as execvp would and check that it can run natively here.

    Returns the path to execute. Raises PayloadError (one line for a person) when it is
    missing, a directory or other non-regular file, not executable, or an ELF file for
    another architecture than x86-64 (``#!`` scripts are accepted).
    """
    if not program:
        raise PayloadError("no program given")
    if "/" in program:
        path = program
    else:
        path = _search_path(program, os.environ.get("PATH", os.defpath) if env_path is None
                            else env_path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise PayloadError(f"{program}: not found (no such file)") from None
    except OSError as exc:
        raise PayloadError(f"{program}: cannot access: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise PayloadError(f"{program}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise PayloadError(f"{program}: not a regular file")
    if not os.access(path, os.X_OK) or not info.st_mode & 0o111:
        raise PayloadError(f"{program}: not executable (permission denied)")
    _check_format(program, path)
    return path


def _search_path(program: str, env_path: str) -> str:
    """execvp's PATH search: the first regular, executable candidate wins; when none,
    report the first candidate that exists (so the error says why) or 'not found'."""
    first_existing = None
    for directory in env_path.split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK):
            return candidate
        if first_existing is None:
            first_existing = candidate
    if first_existing is not None:
        return first_existing
    if os.path.isfile(program):  # the user most likely meant the file right here
        if not os.access(program, os.X_OK):
            raise PayloadError(f"{program}: not executable (a file here, not in PATH: "
                               f"chmod +x it and give ./{program})")
        raise PayloadError(f"{program}: command not found in PATH (to run the file here, "
                           f"give ./{program})")
    raise PayloadError(f"{program}: command not found in PATH")


def _check_format(program: str, path: str) -> None:
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return  # execute-only file: let execve judge it
    if header.startswith(b"#!"):
        return
    if not header.startswith(_ELF_MAGIC) or len(header) < 20:
        raise PayloadError(f"{program}: not an ELF executable or a #! script")
    elf_class, elf_data = header[4], header[5]
    byteorder = "<" if elf_data == _ELFDATA2LSB else ">"
    elf_type, machine = struct.unpack_from(byteorder + "HH", header, 16)
    if machine != _EM_X86_64 or elf_class != _ELFCLASS64 or elf_data != _ELFDATA2LSB:
        bits = {1: "32-bit", 2: "64-bit"}.get(elf_class, "unknown-class")
        name = _MACHINES.get(machine, f"machine {machine}")
        raise PayloadError(f"{program}: {bits} ELF for {name}, not an x86-64 (64-bit) program")
    if elf_type not in (_ET_EXEC, _ET_DYN):
        raise PayloadError(f"{program}: ELF file is not an executable (type {elf_type})")


# --------------------------------------------------------------------------- memory


class ProcessMemory:
    """abi.Memory over another thread's address space via process_vm_readv/writev.

    A short count or any error is a MemoryFault. The kernel honours page protections
    (unlike /proc/PID/mem), so a read-only buffer faults. One instance is reused for
    every call: set ``tid`` before use.
    """

    def __init__(self, tid: int = 0) -> None:
        self.tid = tid
        self._buffer = ctypes.create_string_buffer(abi.NONCE_SIZE)
        self._local = ptrace.IoVec(ctypes.addressof(self._buffer), 0)
        self._remote = ptrace.IoVec(0, 0)

    def _reserve(self, length: int) -> None:
        if length > len(self._buffer):
            self._buffer = ctypes.create_string_buffer(length)
            self._local.base = ctypes.addressof(self._buffer)

    def _aim(self, address: int, length: int) -> None:
        if address < 0 or length < 0 or address + length > _MASK64:
            raise abi.MemoryFault(f"{length} bytes at {address:#x} out of range")
        self._reserve(length)
        self._local.len = length
        self._remote.base = address
        self._remote.len = length

    def read(self, address: int, length: int) -> bytes:
        if length == 0:
            return b""
        self._aim(address, length)
        try:
            count = ptrace.process_vm_readv(self.tid, self._local, self._remote)
        except OSError as exc:
            raise abi.MemoryFault(f"read {length} bytes at {address:#x}: {exc}") from None
        if count != length:
            raise abi.MemoryFault(f"read {count} of {length} bytes at {address:#x}")
        return ctypes.string_at(self._buffer, length)

    def write(self, address: int, data: bytes) -> None:
        length = len(data)
        if length == 0:
            return
        self._aim(address, length)
        ctypes.memmove(self._buffer, data, length)
        try:
            count = ptrace.process_vm_writev(self.tid, self._local, self._remote)
        except OSError as exc:
            raise abi.MemoryFault(f"write {length} bytes at {address:#x}: {exc}") from None
        if count != length:
            raise abi.MemoryFault(f"wrote {count} of {length} bytes at {address:#x}")


# --------------------------------------------------------------------------- supervisor


class _Supervisor:
    """The ptrace loop. Every ptrace call happens on the thread that seized the payload."""

    def __init__(self, pid: int, source: abi.EvidenceSource) -> None:
        self.pid = pid
        self.source = source
        self.regs = ptrace.UserRegs()
        self.memory = ProcessMemory(pid)
        self.tracees: set[int] = {pid}

    def answer(self, tid: int) -> None:
        """Answer the 0xEA01 call ``tid`` is stopped in and skip the real syscall."""
        regs = self.regs
        ptrace.getregs(tid, regs)
        if regs.orig_rax != abi.SYS_GET_ATTESTATION:
            return  # a filter of the payload's own asked for a trace: let the call run
        memory = self.memory
        memory.tid = tid
        try:
            outcome = abi.get_attestation(
                regs.rdi, regs.rsi, regs.rdx, regs.r10, memory=memory, source=self.source
            )
            ret, technology = outcome.ret, outcome.technology
        except Exception:  # a broken source must not take the supervisor down
            ret, technology = -errno.EIO, None
        regs.orig_rax = _MASK64
        regs.rax = ret & _MASK64
        if technology is not None:
            regs.rdx = technology
        ptrace.setregs(tid, regs)

    def on_stop(self, tid: int, status: int) -> None:
        """Resume a tracee from whichever ptrace-stop it reports."""
        event = status >> 16
        sig = (status >> 8) & 0xFF
        try:
            if event == ptrace.PTRACE_EVENT_SECCOMP:
                self.answer(tid)
                ptrace.cont(tid)
            elif event == 0:
                # signal-delivery-stop: deliver the signal as if we were not here
                self.tracees.add(tid)
                ptrace.cont(tid, sig)
            elif event == ptrace.PTRACE_EVENT_STOP:
                # group-stop (a stop signal) or a new tracee's / SIGCONT's trap (SIGTRAP)
                self.tracees.add(tid)
                if sig in _STOP_SIGNALS:
                    ptrace.listen(tid)
                else:
                    ptrace.cont(tid)
            elif event in _NEW_TRACEE_EVENTS:
                self.tracees.add(ptrace.geteventmsg(tid))
                ptrace.cont(tid)
            elif event == ptrace.PTRACE_EVENT_EXEC:
                former = ptrace.geteventmsg(tid)
                if former != tid:  # a non-leader thread exec'd and took the leader's tid
                    self.tracees.discard(former)
                ptrace.cont(tid)
            else:
                ptrace.cont(tid)
        except ProcessLookupError:
            pass  # killed while stopped (SIGKILL): its exit will be reported

    def run(self) -> int:
        """Serve until the main payload process exits; return its wait status."""
        pid = self.pid
        on_stop = self.on_stop
        waitpid = os.waitpid
        while True:
            tid, status = waitpid(-1, ptrace.WALL)
            if status & 0xFF == 0x7F:
                on_stop(tid, status)
                continue
            self.tracees.discard(tid)
            if tid == pid:
                return status

    def release_others(self) -> None:
        """After the main process exits: detach what is left (its background children),
        so they run on (their 0xEA01 calls then get -ENOSYS) instead of hanging."""
        for tid in list(self.tracees):
            try:
                ptrace.interrupt(tid)
            except OSError:
                self.tracees.discard(tid)
        while self.tracees:
            try:
                tid, status = os.waitpid(-1, ptrace.WALL)
            except ChildProcessError:
                return
            if status & 0xFF != 0x7F:
                self.tracees.discard(tid)
                continue
            event = status >> 16
            sig = (status >> 8) & 0xFF
            try:
                if event == ptrace.PTRACE_EVENT_SECCOMP:
                    self.answer(tid)
                elif event in _NEW_TRACEE_EVENTS:
                    self.tracees.add(ptrace.geteventmsg(tid))
                ptrace.detach(tid, sig if event == 0 else 0)
            except ProcessLookupError:
                pass
            self.tracees.discard(tid)

    def kill_all(self) -> None:
        """Last resort when the supervisor itself fails: kill and reap the payload."""
        for tid in self.tracees | {self.pid}:
            try:
                os.kill(tid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, ptrace.WALL)
        except ChildProcessError:
            pass


# --------------------------------------------------------------------------- signals

_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _SignalGuard:
    """While the payload runs: terminal signals (the payload gets them itself, same process
    group) are ignored, SIGTERM/SIGHUP are forwarded to the payload. Restored on exit.
    Only possible on the main thread; elsewhere the caller's handlers stay as they are."""

    def __init__(self) -> None:
        self.target = 0
        self.saved: dict[int, _Handler] = {}

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if self.target:
            try:
                os.kill(self.target, signum)
            except OSError:
                pass

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _IGNORED_SIGNALS + _FORWARDED_SIGNALS:
            self.saved[signum] = signal.getsignal(signum)
        for signum in _IGNORED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        for signum in _FORWARDED_SIGNALS:
            signal.signal(signum, self._forward)

    def restore(self) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self.saved.clear()

    def restore_for_exec(self) -> None:
        """In the child: give the payload the dispositions the caller had."""
        self.restore()
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; exec keeps it
            signal.signal(signum, signal.SIG_DFL)


# --------------------------------------------------------------------------- run


def _exec_child(
    path: str, argv: list[str], env: dict[str, str], go: int, report: int, guard: _SignalGuard
) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        guard.restore_for_exec()
        if os.read(go, 1) == b"\x01":
            seccomp.install(seccomp.trap_program())
            os.execve(path, argv, env)
    except OSError as exc:
        code = exc.errno or errno.EINVAL
    except BaseException:
        code = errno.EINVAL
    try:
        if code:
            os.write(report, struct.pack("=i", code))
    finally:
        os._exit(127)


def run_native(
    argv: Sequence[str],
    source: abi.EvidenceSource,
    *,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run ``argv`` as a payload, answering its get_attestation calls from ``source``.

    Returns the payload's exit status, 128 + N when signal N killed it. Raises
    PayloadError when the program cannot be run (see :func:`check_program`), OSError when
    it cannot be traced. Standard streams are inherited. Must not be called concurrently
    from two threads of one process (waitpid(-1) would mix their tracees); it also reaps
    any other child of the calling process that exits meanwhile.
    """
    argv = [os.fspath(arg) for arg in argv]
    if not argv:
        raise PayloadError("no program given")
    env_dict = dict(os.environ if env is None else env)
    path = check_program(argv[0], env_dict.get("PATH", os.defpath))

    go_read, go_write = os.pipe()  # both ends close-on-exec (Python's default)
    report_read, report_write = os.pipe()
    guard = _SignalGuard()
    guard.install()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(go_write)
            os.close(report_read)
            _exec_child(path, argv, env_dict, go_read, report_write, guard)
        os.close(go_read)
        os.close(report_write)
        status = _supervise(pid, source, go_write, guard)
        failure = os.read(report_read, 4)
    finally:
        guard.restore()
        os.close(report_read)
    if len(failure) == 4:
        (code,) = struct.unpack("=i", failure)
        raise PayloadError(f"{argv[0]}: cannot execute: {os.strerror(code)}")
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _supervise(pid: int, source: abi.EvidenceSource, go_write: int, guard: _SignalGuard) -> int:
    try:
        ptrace.seize(pid, TRACE_OPTIONS)
    except OSError:
        os.close(go_write)  # the child reads EOF and exits without running the program
        os.waitpid(pid, 0)
        raise
    guard.target = pid
    supervisor = _Supervisor(pid, source)
    try:
        try:
            os.write(go_write, b"\x01")  # traced now: let the child install the filter
        finally:
            os.close(go_write)
        status = supervisor.run()
    except BaseException:
        supervisor.kill_all()
        raise
    finally:
        guard.target = 0
    supervisor.release_others()
    return status
