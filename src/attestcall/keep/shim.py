"""The trusted shim: the keep's side of get_attestation.

The shim is what the pure core (abi.get_attestation) calls as its EvidenceSource. It never
parses evidence and trusts nothing the host says: every reply goes through
``RequestBlock.read_reply`` (framing, op, sequence number, status, length within what was
asked) and then through the shim's own expectations (exact sizes). A host that hangs is
waited for at most ``timeout`` seconds. Any failure becomes PlatformFailure, which the core
turns into -EIO; nothing is ever written to the payload but by the core, within its buffer.
"""

from __future__ import annotations

import struct
import threading

from attestcall.abi import HostFailure, Technology
from attestcall.keep.block import BlockError, RequestBlock
from attestcall.keep.host import HostProcess

DEFAULT_TIMEOUT = 10.0




class Channel:
    """The shim's end of the request block: one serialised exchange at a time."""

    def __init__(
        self, block: RequestBlock, doorbell: HostProcess, timeout: float = DEFAULT_TIMEOUT
    ):
        self.block = block
        self.doorbell = doorbell
        self.timeout = timeout
        self._seq = 0
        self._lock = threading.Lock()

    def call(self, op: int, data: bytes, limit: int) -> bytes:
        with self._lock:
            self._seq += 1
            seq = self._seq
            try:
                self.block.write_request(op, seq, data, limit)
            except BlockError as exc:
                raise HostFailure(str(exc)) from exc
            if not self.doorbell.ring(self.timeout):
                raise HostFailure(f"host did not answer request {seq} within {self.timeout}s")
            try:
                return self.block.read_reply(op, seq, limit)
            except BlockError as exc:
                raise HostFailure(str(exc)) from exc

    def ask_size(self, op: int, minimum: int = 1) -> int:
        """Ask the host (op) how many bytes the evidence will be: a u32, between ``minimum``
        and what the request block carries, else HostFailure."""
        reply = self.call(op, b"", 4)
        if len(reply) != 4:
            raise HostFailure(f"size reply of {len(reply)} bytes, expected 4")
        (size,) = struct.unpack("<I", reply)
        if not minimum <= size <= self.block.capacity:
            raise HostFailure(f"size {size} outside {minimum}..{self.block.capacity}")
        return size


class NoneSource:
    """No TEE: technology 0, empty evidence. Nothing to ask the host."""

    technology = Technology.NONE

    def evidence_size(self) -> int:
        return 0

    def evidence(self, nonce: bytes) -> bytes:
        return b""
