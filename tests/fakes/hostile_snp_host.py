"""Hostile SNP hosts: each relays honestly until its ``strike``-th guest request, then
misbehaves once in one way, then relays honestly again (so a test can show that VMPCK0
stays disabled even when the host behaves)."""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod

from attestcall.amd.formats import guest_message as gm
from attestcall.amd.sim import snp as snp_sim
from attestcall.amd.sim.snp.keep import Op, SecretsPage, SnpHost, SnpShim
from attestcall.keep.keep import Keep, start_host


class Striking(SnpHost, ABC):
    strike = 1

    def __init__(self, psp: snp_sim.SimulatedPsp, table: bytes):
        super().__init__(psp, table)
        self.requests = 0
        self.first_request = b""
        self.first_response = b""

    def handle(self, op: int, data: bytes, limit: int) -> bytes:
        if op != Op.SNP_GUEST_REQUEST:
            return super().handle(op, data, limit)
        self.requests += 1
        if self.requests == self.strike:
            return self.misbehave(data, limit)
        reply = super().handle(op, data, limit)
        if self.requests == 1:
            self.first_request, self.first_response = data, reply
        return reply

    @abstractmethod
    def misbehave(self, data: bytes, limit: int) -> bytes:
        """What the host sends instead of the PSP's answer to request number ``strike``."""


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]


class TamperCiphertext(Striking):
    def misbehave(self, data, limit):
        return flip(super().handle(Op.SNP_GUEST_REQUEST, data, limit), gm.HEADER_SIZE + 0x100)


class TamperTag(Striking):
    def misbehave(self, data, limit):
        return flip(super().handle(Op.SNP_GUEST_REQUEST, data, limit), 3)


class TamperRequest(Striking):
    """Alters the guest's request before the PSP sees it: the PSP refuses it."""

    def misbehave(self, data, limit):
        return super().handle(Op.SNP_GUEST_REQUEST, flip(data, gm.HEADER_SIZE + 10), limit)


class ReplayResponse(Striking):
    """Answers the second request with the (genuine) response to the first."""

    strike = 2

    def misbehave(self, data, limit):
        return self.first_response


class ReplayRequest(Striking):
    """Sends the PSP the first request again instead of the second: the PSP refuses it."""

    strike = 2

    def misbehave(self, data, limit):
        return super().handle(Op.SNP_GUEST_REQUEST, self.first_request, limit)


class OtherSequenceNumber(Striking):
    """Relays honestly but labels the response with another sequence number."""

    def misbehave(self, data, limit):
        reply = super().handle(Op.SNP_GUEST_REQUEST, data, limit)
        seqno = int.from_bytes(reply[0x20:0x28], "little") + 2
        return reply[:0x20] + seqno.to_bytes(8, "little") + reply[0x28:]


class Reorder(Striking):
    """Holds back the second request and relays the third first: the PSP refuses the
    out-of-order one (the guest sends only one at a time, so the third is forged from the
    second's header with the next sequence number)."""

    strike = 2

    def misbehave(self, data, limit):
        later = data[:0x20] + (int.from_bytes(data[0x20:0x28], "little") + 2).to_bytes(
            8, "little") + data[0x28:]
        return super().handle(Op.SNP_GUEST_REQUEST, later, limit)


class Truncate(Striking):
    def misbehave(self, data, limit):
        return super().handle(Op.SNP_GUEST_REQUEST, data, limit)[:-16]


class Extend(Striking):
    def misbehave(self, data, limit):
        return super().handle(Op.SNP_GUEST_REQUEST, data, limit) + bytes(16)


class HeaderOnly(Striking):
    def misbehave(self, data, limit):
        return super().handle(Op.SNP_GUEST_REQUEST, data, limit)[:gm.HEADER_SIZE]


class Drop(Striking):
    """Never answers (the shim's timeout ends the wait; the keep kills the host)."""

    def misbehave(self, data, limit):
        time.sleep(60)
        return b""


class DropAfterRelaying(Striking):
    """Relays the request (the PSP advances) but never answers the guest."""

    def misbehave(self, data, limit):
        super().handle(Op.SNP_GUEST_REQUEST, data, limit)
        time.sleep(60)
        return b""


class Refuses(Striking):
    def misbehave(self, data, limit):
        raise RuntimeError("the host fell over")


HOSTILE: dict[str, type[Striking]] = {
    "tampered ciphertext": TamperCiphertext,
    "tampered tag": TamperTag,
    "tampered request": TamperRequest,
    "replayed response": ReplayResponse,
    "replayed request": ReplayRequest,
    "response for another seqno": OtherSequenceNumber,
    "reordered request": Reorder,
    "truncated": Truncate,
    "extended": Extend,
    "header only": HeaderOnly,
    "dropped": Drop,
    "dropped after relaying": DropAfterRelaying,
    "host error": Refuses,
}


def hostile_snp_keep(kind: type[SnpHost], payload: bytes = b"hostile test",
                     timeout: float = 0.3, product: str = "milan") -> Keep:
    """A keep like ``open_keep("snp-sim")`` with a hostile host behind the shim."""
    platform = snp_sim.snp_platform(product)
    vmpck0 = os.urandom(32)
    psp = snp_sim.SimulatedPsp(platform.chip, snp_sim.GuestLaunch.for_payload(payload), vmpck0,
                               platform.signer)
    channel, process = start_host(kind(psp, platform.certificate_table), timeout)
    return Keep("snp-sim", SnpShim(SecretsPage(vmpck0), channel), process)
