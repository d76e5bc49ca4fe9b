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

from attestcall.abi import PlatformFailure, Technology
from attestcall.intel.sgx_sim import EreportError
from attestcall.intel.structs import SgxFormatError, TargetInfo
from attestcall.keep.block import BlockError, Op, RequestBlock
from attestcall.keep.host import HostProcess

DEFAULT_TIMEOUT = 10.0


class HostFailure(PlatformFailure):
    """The host did not answer, or answered something the shim refuses."""


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


class NoneSource:
    """No TEE: technology 0, empty evidence. Nothing to ask the host."""

    technology = Technology.NONE

    def evidence_size(self) -> int:
        return 0

    def evidence(self, nonce: bytes) -> bytes:
        return b""


TARGET_INFO_SIZE = 512
REPORT_SIZE = 432


class SgxShim:
    """SGX: EREPORT on the (simulated) CPU targeted at the QE, then the host relays the
    report to the QE and returns its quote."""

    technology = Technology.SGX

    def __init__(self, cpu, identity, channel: Channel):
        self.cpu = cpu
        self.identity = identity
        self.channel = channel
        self._size: int | None = None
        self._qe_target: bytes | None = None

    def evidence_size(self) -> int:
        reply = self.channel.call(Op.SGX_QUOTE_SIZE, b"", 4)
        if len(reply) != 4:
            raise HostFailure(f"quote size reply of {len(reply)} bytes, expected 4")
        (size,) = struct.unpack("<I", reply)
        if not 0 < size <= self.channel.block.capacity:
            raise HostFailure(f"quote size {size} outside what the request block carries")
        self._size = size
        return size

    def evidence(self, nonce: bytes) -> bytes:
        size = self._size if self._size is not None else self.evidence_size()
        try:
            report = self.cpu.ereport(self._target_info(), nonce, self.identity)
        except EreportError as exc:
            raise HostFailure(f"EREPORT refused the host's TARGETINFO: {exc}") from exc
        try:
            return self.channel.call(Op.SGX_QUOTE, report, size)
        except HostFailure:
            self._qe_target = None  # perhaps the QE changed: ask again next time
            raise

    def _target_info(self) -> bytes:
        """The QE's TARGETINFO, asked once (as enclaves do at start) and kept until a quote
        request fails. A malformed one is refused here, before EREPORT uses it."""
        if self._qe_target is None:
            target_info = self.channel.call(Op.SGX_TARGET_INFO, b"", TARGET_INFO_SIZE)
            if len(target_info) != TARGET_INFO_SIZE:
                raise HostFailure(f"TARGETINFO of {len(target_info)} bytes, expected 512")
            try:
                TargetInfo.unpack(target_info)
            except SgxFormatError as exc:
                raise HostFailure(f"the host's TARGETINFO is malformed: {exc}") from exc
            self._qe_target = target_info
        return self._qe_target
