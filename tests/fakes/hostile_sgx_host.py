"""Hostile hosts: each misbehaves in one way the shim must survive (docs/design.md section 2)."""

from __future__ import annotations

import os
import time

from attestcall.intel.sim import sgx as sgx_sim
from attestcall.intel.sim.sgx.keep import Op, SgxHost, SgxShim
from attestcall.keep.block import HEADER, HEADER_SIZE
from attestcall.keep.host import Host
from attestcall.keep.keep import Keep, start_host


class TooLong(SgxHost):
    """Answers the quote with more bytes than the shim asked for."""

    def handle(self, op, data, limit):
        reply = super().handle(op, data, limit)
        return reply + b"\0" * 64 if op == Op.SGX_QUOTE else reply


class Short(SgxHost):
    """Answers the quote one byte short."""

    def handle(self, op, data, limit):
        reply = super().handle(op, data, limit)
        return reply[:-1] if op == Op.SGX_QUOTE else reply


class ShortTargetInfo(SgxHost):
    def handle(self, op, data, limit):
        reply = super().handle(op, data, limit)
        return reply[:-8] if op == Op.SGX_TARGET_INFO else reply


class GarbageTargetInfo(SgxHost):
    """A TARGETINFO of the right size whose reserved bytes are not zero."""

    def handle(self, op, data, limit):
        if op == Op.SGX_TARGET_INFO:
            return b"\xff" * 512
        return super().handle(op, data, limit)


class HugeSize(SgxHost):
    """Announces a quote larger than anything the request block can carry."""

    def handle(self, op, data, limit):
        if op == Op.SGX_QUOTE_SIZE:
            return (2**32 - 1).to_bytes(4, "little")
        return super().handle(op, data, limit)


class OtherRequest(SgxHost, Host):
    """Replies correctly, but labelled with another request's sequence number."""

    def process(self, block):
        super().process(block)
        fields = list(HEADER.unpack_from(block.buffer, 0))
        if fields[2] == (Op.SGX_QUOTE | 0x8000):
            fields[3] -= 1
            HEADER.pack_into(block.buffer, 0, *fields)


class Garbage(SgxHost, Host):
    """Overwrites the reply with random bytes."""

    def process(self, block):
        super().process(block)
        if block.buffer[4:8] and HEADER.unpack_from(block.buffer, 0)[2] == Op.SGX_QUOTE | 0x8000:
            block.buffer[: HEADER_SIZE + 64] = os.urandom(HEADER_SIZE + 64)


class Raises(SgxHost):
    def handle(self, op, data, limit):
        if op == Op.SGX_QUOTE:
            raise RuntimeError("the host fell over")
        return super().handle(op, data, limit)


class Hangs(SgxHost):
    """Never answers the quote request (the keep kills it when it closes)."""

    def handle(self, op, data, limit):
        if op == Op.SGX_QUOTE:
            time.sleep(60)
        return super().handle(op, data, limit)


class TamperedReport(SgxHost):
    """Alters the enclave's REPORT before the QE sees it: the QE must refuse it."""

    def handle(self, op, data, limit):
        if op == Op.SGX_QUOTE:
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return super().handle(op, data, limit)


HOSTILE: dict[str, type[Host]] = {
    "longer than asked": TooLong,
    "short quote": Short,
    "short TARGETINFO": ShortTargetInfo,
    "garbage TARGETINFO": GarbageTargetInfo,
    "impossible size": HugeSize,
    "reply for another request": OtherRequest,
    "garbage": Garbage,
    "exception": Raises,
    "hang": Hangs,
    "tampered report": TamperedReport,
}


def hostile_keep(kind: type[Host], payload: bytes = b"hostile test", timeout: float = 0.3) -> Keep:
    """A keep like ``open_keep("sgx-sim")`` but with a hostile host behind the shim."""
    state = sgx_sim.load_state()
    host = kind(sgx_sim.QuotingEnclave(state))
    channel, process = start_host(host, timeout)
    identity = sgx_sim.EnclaveIdentity.for_payload(payload, state)
    return Keep("sgx-sim", SgxShim(sgx_sim.SimulatedCpu(state), identity, channel), process)
