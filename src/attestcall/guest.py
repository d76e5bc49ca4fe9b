"""get_attestation for Python payloads running inside a keep.

The call is the real syscall 0xEA01, issued from this process. libc's ``syscall()``
returns only rax, and the technology comes back in rdx, so the call goes through a tiny
machine-code thunk written into an executable page once, on first use::

    long thunk(const void *nonce, size_t nonce_len, void *buf, size_t buf_len,
               uint64_t *rdx_out);

Outside a keep the kernel answers -ENOSYS, which :func:`get_attestation` reports as
:class:`NotInKeepError`. x86-64 Linux only.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import threading
from typing import NoReturn

from attestcall.abi import NONCE_SIZE, SYS_GET_ATTESTATION, Technology
from attestcall.errors import AttestcallError


class NotInKeepError(AttestcallError):
    """The kernel does not know get_attestation: this process is not running in a keep."""

    def __init__(self, message: str = "not running in a keep"):
        super().__init__(message)


# System V AMD64: the thunk's arguments arrive in rdi, rsi, rdx, rcx, r8. The syscall wants
# rdi, rsi, rdx, r10, so only the fourth moves; the fifth says where rdx goes afterwards.
_THUNK = b"".join([
    b"\x49\x89\xca",  # mov r10, rcx    REX.W+B, MOV r/m64 r64, ModRM 11 001 010
    b"\xb8" + SYS_GET_ATTESTATION.to_bytes(4, "little"),  # mov eax, 0xEA01 (zero-extends)
    b"\x0f\x05",  # syscall         rax = count or -errno, rdx = technology; rcx, r11 lost
    b"\x49\x89\x10",  # mov [r8], rdx   REX.W+B, MOV r/m64 r64, ModRM 00 010 000
    b"\xc3",  # ret             rax is the return value
])

_thunk: ctypes._CFuncPtr | None = None
_thunk_lock = threading.Lock()


def _libc_function(
    libc: ctypes.CDLL, name: str, restype: object, *argtypes: object
) -> ctypes._CFuncPtr:
    function = libc[name]
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


def _build_thunk() -> ctypes._CFuncPtr:
    """Map one page, copy the code in, then make it read+execute (never writable and
    executable at once)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise OSError(errno.ENOSYS, "get_attestation is defined for x86-64 only")
    libc = ctypes.CDLL(None, use_errno=True)
    c_void_p, c_size_t, c_int = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    mmap_ = _libc_function(libc, "mmap", c_void_p, c_void_p, c_size_t, c_int, c_int, c_int,
                           ctypes.c_long)
    mprotect = _libc_function(libc, "mprotect", c_int, c_void_p, c_size_t, c_int)
    size = mmap.PAGESIZE
    page = mmap_(None, size, mmap.PROT_READ | mmap.PROT_WRITE,
                 mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if page is None or page == ctypes.c_void_p(-1).value:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot map a page for the syscall thunk: {os.strerror(code)}")
    ctypes.memmove(page, _THUNK, len(_THUNK))
    if mprotect(page, size, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot make the syscall thunk executable: {os.strerror(code)}")
    prototype = ctypes.CFUNCTYPE(
        ctypes.c_long, c_void_p, c_size_t, c_void_p, c_size_t, ctypes.POINTER(ctypes.c_uint64)
    )
    return prototype(page)  # the page stays mapped for the life of the process


def _get_thunk() -> ctypes._CFuncPtr:
    global _thunk
    if _thunk is None:
        with _thunk_lock:
            if _thunk is None:
                _thunk = _build_thunk()
    return _thunk


def raw_get_attestation(
    nonce_ptr: int, nonce_len: int, buf_ptr: int, buf_len: int
) -> tuple[int, int]:
    """Issue syscall 0xEA01 with exactly these register values and return ``(rax, rdx)``.

    This is the raw interface, with no checks and no errno: ``rax`` is the byte count or
    ``-errno``; ``rdx`` is the technology on success and size queries, and on every error
    the value it went in with, which is ``buf_ptr`` (the buffer pointer travels in rdx).
    Pointers are plain addresses: the caller keeps the memory alive and sized. Meant for
    tests and for callers that manage their own buffers; use :func:`get_attestation`
    otherwise.
    """
    rdx = ctypes.c_uint64(0)
    rax = _get_thunk()(nonce_ptr, nonce_len, buf_ptr, buf_len, ctypes.byref(rdx))
    return rax, rdx.value


def _raise_for(code: int) -> NoReturn:
    if code == errno.ENOSYS:
        raise NotInKeepError()
    raise OSError(code, os.strerror(code))


def get_attestation(nonce: bytes) -> tuple[int, bytes]:
    """Attestation evidence binding ``nonce`` (exactly 64 bytes): ``(technology, evidence)``.

    Asks for the size, then for the evidence; if the size changed in between (-EMSGSIZE)
    it asks once more. A keep without a TEE answers ``(Technology.NONE, b"")``.
    Raises ValueError for a nonce of the wrong length, NotInKeepError outside a keep and
    OSError(errno, strerror) for any other error.
    """
    if not isinstance(nonce, (bytes, bytearray, memoryview)):
        raise TypeError(f"nonce must be bytes, not {type(nonce).__name__}")
    nonce = bytes(nonce)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be exactly {NONCE_SIZE} bytes, got {len(nonce)}")
    nonce_buffer = ctypes.create_string_buffer(nonce, NONCE_SIZE)
    nonce_ptr = ctypes.addressof(nonce_buffer)
    for _attempt in range(2):
        size, technology = raw_get_attestation(nonce_ptr, NONCE_SIZE, 0, 0)
        if size < 0:
            _raise_for(-size)
        if size == 0:
            return technology, b""  # nothing to fetch, and buf_len 0 would be EINVAL
        buffer = ctypes.create_string_buffer(size)
        count, technology = raw_get_attestation(
            nonce_ptr, NONCE_SIZE, ctypes.addressof(buffer), size
        )
        if count >= 0:
            return technology, buffer.raw[:count]
        if count != -errno.EMSGSIZE:
            break  # only a size that changed between the two calls is worth a retry
    _raise_for(-count)


def technology_name(technology: int) -> str:
    """``"SGX"`` for 2 and so on, a registered plugin's name for its id (``"CCA"`` for 5
    when that plugin is installed); ``"UNKNOWN(7)"`` for an id nothing here knows."""
    try:
        return Technology(technology).name
    except ValueError:
        pass
    from attestcall.tees import registry

    tee = registry().by_id(technology)
    return tee.label if tee is not None else f"UNKNOWN({technology})"
