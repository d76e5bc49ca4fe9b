"""A hostile host gives the payload -EIO, and nothing around its buffer changes."""

import errno

import pytest

from attestcall.abi import BufferMemory, Outcome, get_attestation
from attestcall.intel.formats.quote import Quote
from attestcall.intel.sim.sgx.keep import Op, SgxHost
from attestcall.keep.block import HEADER_SIZE, REPLY_BIT
from attestcall.keep.host import Host
from attestcall.keep.platforms import open_keep
from tests.fakes.hostile_sgx_host import HOSTILE, hostile_keep

NONCE = bytes(range(100, 164))
BASE = 0x40000


def attempt(source, slack=512):
    """Size query, then a call into a buffer with guard bytes on both sides."""
    size_q = get_attestation(0, 0, 0, 0, memory=BufferMemory(bytearray(1)), source=source)
    size = size_q.ret if size_q.ok else 8192
    memory = BufferMemory(bytearray(b"\x5a" * (64 + 2 * slack + size)), base=BASE)
    memory.write(BASE, NONCE)
    buf = BASE + 64 + slack
    before = bytes(memory.data)
    outcome = get_attestation(BASE, 64, buf, size, memory=memory, source=source)
    return size_q, outcome, before, memory, buf


def test_an_honest_host_gives_a_quote_with_the_nonce():
    with open_keep("sgx-sim", b"honest") as keep:
        size_q, outcome, _, memory, buf = attempt(keep.source)
    assert size_q == Outcome(outcome.ret, 2) and outcome.technology == 2
    quote = Quote.parse(memory.read(buf, outcome.ret))
    assert quote.body.report_data == NONCE


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_host_gives_eio_and_leaves_memory_alone(name):
    keep = hostile_keep(HOSTILE[name])
    try:
        size_q, outcome, before, memory, _ = attempt(keep.source)
    finally:
        keep.close()
    assert outcome == Outcome(-errno.EIO, None) or (
        not size_q.ok and size_q == Outcome(-errno.EIO, None)
    )
    assert bytes(memory.data) == before


def test_the_shim_recovers_once_the_host_behaves_again():
    """A failure is per request: a host that garbled one reply can serve the next call."""

    class GarblesOnce(SgxHost, Host):
        garbled = 0

        def process(self, block):
            super().process(block)
            if block.buffer[6] == (Op.SGX_QUOTE | REPLY_BIT) & 0xFF and not self.garbled:
                self.garbled += 1
                block.buffer[:HEADER_SIZE] = bytes(HEADER_SIZE)

    keep = hostile_keep(GarblesOnce)
    try:
        memory = BufferMemory(bytearray(64 + 8192), base=BASE)
        memory.write(BASE, NONCE)
        size = get_attestation(0, 0, 0, 0, memory=memory, source=keep.source).ret
        first = get_attestation(BASE, 64, BASE + 64, size, memory=memory, source=keep.source)
        assert first.ret == -errno.EIO
        second = get_attestation(BASE, 64, BASE + 64, size, memory=memory, source=keep.source)
        assert second.ret == size
        assert Quote.parse(memory.read(BASE + 64, size)).body.report_data == NONCE
    finally:
        keep.close()


def test_targetinfo_is_asked_once_and_again_after_a_failed_quote():
    """Enclaves ask the QE's TARGETINFO once; the shim asks again only after a failure."""

    class GarblesFirstQuote(SgxHost, Host):
        done = False

        def process(self, block):
            super().process(block)
            if block.buffer[6] == (Op.SGX_QUOTE | REPLY_BIT) & 0xFF and not self.done:
                self.done = True
                block.buffer[:HEADER_SIZE] = bytes(HEADER_SIZE)

    keep = hostile_keep(GarblesFirstQuote)
    channel = keep.source.channel
    asked = []
    real_call = channel.call

    def recording_call(op, data, limit):
        asked.append(Op(op).name)
        return real_call(op, data, limit)

    channel.call = recording_call
    try:
        results = [attempt(keep.source)[1].ret for _ in range(3)]
    finally:
        keep.close()
    assert results[0] == -errno.EIO and results[1] > 0 and results[2] == results[1]
    assert asked.count("SGX_TARGET_INFO") == 2  # first call, and again after the failure
    assert asked.count("SGX_QUOTE") == 3


def test_a_size_change_costs_one_eio_then_the_size_query_is_right_again():
    """The shim keeps the quote size it was told; when the platform's quote grows (a new
    PCK certificate, say), the call that sees it fails and the next size query is fresh."""

    class GrowsAfterFirstQuote(SgxHost):
        quotes = 0

        def handle(self, op, data, limit):
            grown = self.quotes >= 1
            if op == Op.SGX_QUOTE_SIZE and grown:
                return (self.qe.quote_size() + 16).to_bytes(4, "little")
            reply = super().handle(op, data, limit)
            if op == Op.SGX_QUOTE:
                self.quotes += 1
                if grown:
                    reply += bytes(16)
            return reply

    keep = hostile_keep(GrowsAfterFirstQuote)
    try:
        first_size, first, *_ = attempt(keep.source)
        _, second, *_ = attempt(keep.source)  # size still cached: the longer quote is refused
        third_size, third, *_ = attempt(keep.source)
    finally:
        keep.close()
    assert first.ret == first_size.ret > 0
    assert second.ret == -errno.EIO
    assert third_size.ret == first_size.ret + 16 and third.ret == third_size.ret
