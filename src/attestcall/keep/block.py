"""The request block: the only channel between the trusted shim and the untrusted host.

Enarx calls it the sallyport. It is one fixed-size buffer: a 32-byte header and a data area
of ``CAPACITY`` bytes. The shim writes a request, rings the host and waits (bounded); the
host writes its reply in place. Exchanges are serialised by the shim.

Header (little-endian)::

    0   magic    4s  b"ACRB"
    4   version  u16 1
    6   op       u16 request op; a reply sets REPLY_BIT
    8   seq      u64 chosen by the shim, echoed by the host
    16  status   i32 0 = ok, otherwise a positive errno from the host
    20  length   u32 bytes used in the data area
    24  limit    u32 the most bytes the shim accepts in the reply
    28  reserved u32 zero

This module holds the layout and the two checks (request framing on the host side, reply
validation on the shim side); it does no waiting. The reply is read out of the block once
(header, then exactly ``length`` bytes) so a host that rewrites the block while the shim
reads it cannot make the shim see two different answers.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"ACRB"
VERSION = 1
HEADER = struct.Struct("<4sHHQiIII")
HEADER_SIZE = HEADER.size  # 32
CAPACITY = 256 * 1024
REPLY_BIT = 0x8000


class Op(IntEnum):
    """Requests the shim may send."""

    SGX_TARGET_INFO = 1  # -> 512-byte TARGETINFO of the quoting enclave
    SGX_QUOTE_SIZE = 2  # -> u32 size of the quote the QE would produce now
    SGX_QUOTE = 3  # REPORT (432 bytes) -> quote
    SNP_GUEST_REQUEST = 16  # encrypted SNP guest message -> encrypted response
    SNP_CERTS = 17  # -> the certificate table the host appends (VCEK/VLEK, ASK/ASVK, ARK)
    TDX_QUOTE_SIZE = 32  # -> u32 size of the quote the quote service would produce now
    TDX_QUOTE = 33  # TDREPORT (1024 bytes) -> quote


class BlockError(Exception):
    """A message in the block is malformed, oversized, or answers another request."""


@dataclass(frozen=True)
class Message:
    op: int
    seq: int
    status: int
    limit: int
    data: bytes


class RequestBlock:
    """The fixed-size buffer, an anonymous shared mapping: made before the host process is
    forked, it is the one piece of memory the shim and the host share."""

    def __init__(self, capacity: int = CAPACITY):
        self.capacity = capacity
        self.buffer = mmap.mmap(-1, HEADER_SIZE + capacity)

    # -- shim side -------------------------------------------------------------------------
    def write_request(self, op: int, seq: int, data: bytes, limit: int) -> None:
        if len(data) > self.capacity:
            raise BlockError(f"request of {len(data)} bytes exceeds the block's {self.capacity}")
        if not 0 < limit <= self.capacity:
            raise BlockError(f"reply limit {limit} outside 1..{self.capacity}")
        HEADER.pack_into(self.buffer, 0, MAGIC, VERSION, op, seq, 0, len(data), limit, 0)
        self.buffer[HEADER_SIZE : HEADER_SIZE + len(data)] = data

    def read_reply(self, op: int, seq: int, limit: int) -> bytes:
        """Validate the host's reply to request (op, seq) and return a private copy of its data.

        Raises BlockError for anything but a well-formed, successful reply to exactly this
        request whose length is within ``limit``."""
        header = bytes(self.buffer[:HEADER_SIZE])  # one snapshot
        magic, version, r_op, r_seq, status, length, _limit, reserved = HEADER.unpack(header)
        if magic != MAGIC or version != VERSION or reserved != 0:
            raise BlockError("reply header is not a request-block header")
        if r_op != (op | REPLY_BIT):
            raise BlockError(f"reply op {r_op:#x} does not answer op {op:#x}")
        if r_seq != seq:
            raise BlockError(f"reply for request {r_seq}, expected {seq}")
        if status != 0:
            raise BlockError(f"host reports error {status}")
        if length > limit or length > self.capacity:
            raise BlockError(f"reply of {length} bytes exceeds the {limit} asked for")
        data = bytes(self.buffer[HEADER_SIZE : HEADER_SIZE + length])
        if len(data) != length:
            raise BlockError("reply shorter than its header says")
        return data

    # -- host side -------------------------------------------------------------------------
    def read_request(self) -> Message:
        magic, version, op, seq, status, length, limit, _ = HEADER.unpack_from(self.buffer, 0)
        if magic != MAGIC or version != VERSION or op & REPLY_BIT or length > self.capacity:
            raise BlockError("malformed request")
        data = bytes(self.buffer[HEADER_SIZE : HEADER_SIZE + length])
        return Message(op, seq, status, limit, data)

    def write_reply(self, op: int, seq: int, data: bytes, status: int = 0) -> None:
        length = min(len(data), self.capacity)
        HEADER.pack_into(self.buffer, 0, MAGIC, VERSION, op | REPLY_BIT, seq, status, length,
                         0, 0)
        self.buffer[HEADER_SIZE : HEADER_SIZE + length] = data[:length]
