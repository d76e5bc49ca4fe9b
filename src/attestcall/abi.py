"""The get_attestation contract as one pure function.

Everything a front end needs to answer syscall 0xEA01 lives here: the numbers, the
technology ids and the checks of docs/design.md section 1, in their normative order. The
function touches the payload only through a :class:`Memory` accessor and the platform only
through an :class:`EvidenceSource`, so the native (ptrace), WebAssembly and in-process
front ends are thin adapters over the same tested code.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

SYS_GET_ATTESTATION = 0xEA01
NONCE_SIZE = 64
SSIZE_MAX_NATIVE = (1 << 63) - 1
SSIZE_MAX_WASM32 = (1 << 31) - 1


class Technology(IntEnum):
    """Technology ids returned in rdx (the seed design's 0-2, extended with 3 and 4)."""

    NONE = 0
    SEV = 1
    SGX = 2
    SNP = 3
    TDX = 4


class MemoryFault(Exception):
    """The payload's memory cannot be read or written at the given range."""


class PlatformFailure(Exception):
    """The platform (or the host relaying to it) did not produce usable evidence."""


class HostFailure(PlatformFailure):
    """The untrusted host did not answer, or answered something the shim refuses."""


class Memory(Protocol):
    """Access to the payload's memory. Both methods raise MemoryFault on any fault."""

    def read(self, address: int, length: int) -> bytes: ...

    def write(self, address: int, data: bytes) -> None: ...


class EvidenceSource(Protocol):
    """What the trusted shim offers the core: the technology and the evidence.

    ``evidence_size`` is the exact byte count ``evidence`` would return now. Both raise
    PlatformFailure when the platform or the host fails.
    """

    @property
    def technology(self) -> int: ...

    def evidence_size(self) -> int: ...

    def evidence(self, nonce: bytes) -> bytes: ...


@dataclass(frozen=True)
class Outcome:
    """The syscall's result: ``ret`` goes to rax; ``technology`` to rdx, or None to leave
    rdx as the caller passed it (every error)."""

    ret: int
    technology: int | None

    @property
    def ok(self) -> bool:
        return self.ret >= 0


def _error(code: int) -> Outcome:
    return Outcome(-code, None)


def get_attestation(
    nonce_ptr: int,
    nonce_len: int,
    buf_ptr: int,
    buf_len: int,
    *,
    memory: Memory,
    source: EvidenceSource,
    ssize_max: int = SSIZE_MAX_NATIVE,
) -> Outcome:
    """Answer one get_attestation call, checks in the order docs/design.md section 1 fixes.

    Arguments are the raw register (or Wasm i32) values read as unsigned integers.
    """
    technology = int(source.technology)
    # 1. size query: nothing else is examined, nothing is written.
    if buf_ptr == 0:
        try:
            size = source.evidence_size()
        except PlatformFailure:
            return _error(errno.EIO)
        return Outcome(size, technology)
    # 2. buffer length
    if buf_len == 0 or buf_len > ssize_max:
        return _error(errno.EINVAL)
    # 3. nonce length
    if nonce_len != NONCE_SIZE:
        return _error(errno.EINVAL)
    # 4. nonce readable
    try:
        nonce = bytes(memory.read(nonce_ptr, NONCE_SIZE))
    except MemoryFault:
        return _error(errno.EFAULT)
    if len(nonce) != NONCE_SIZE:
        return _error(errno.EFAULT)
    # 5. buffer large enough
    try:
        size = source.evidence_size()
    except PlatformFailure:
        return _error(errno.EIO)
    if buf_len < size:
        return _error(errno.EMSGSIZE)
    # 6. evidence, exactly the size announced
    try:
        evidence = bytes(source.evidence(nonce))
    except PlatformFailure:
        return _error(errno.EIO)
    if len(evidence) != size:
        return _error(errno.EIO)
    # 7. buffer writable for the evidence's length
    if evidence:
        try:
            memory.write(buf_ptr, evidence)
        except MemoryFault:
            return _error(errno.EFAULT)
    # 8. success
    return Outcome(len(evidence), technology)


class BufferMemory:
    """A Memory over a bytearray, addresses offset by ``base``; used by ``attestcall attest``
    and the tests. Address 0 is never mapped (like a NULL page)."""

    def __init__(
        self, data: bytearray, base: int = 0x10000, readonly: tuple[int, int] | None = None
    ):
        self.data = data
        self.base = base
        self.readonly = readonly  # (start, end) addresses that refuse writes

    def _span(self, address: int, length: int) -> slice:
        start = address - self.base
        if address <= 0 or start < 0 or length < 0 or start + length > len(self.data):
            raise MemoryFault(f"{length} bytes at {address:#x} not mapped")
        return slice(start, start + length)

    def read(self, address: int, length: int) -> bytes:
        return bytes(self.data[self._span(address, length)])

    def write(self, address: int, data: bytes) -> None:
        span = self._span(address, len(data))
        if self.readonly is not None:
            lo, hi = self.readonly
            if address < hi and address + len(data) > lo:
                raise MemoryFault(f"{address:#x} is read-only")
        self.data[span] = data
