"""The request block and the shim's channel: framing, sequence numbers, bounded waits."""

import time

import pytest

from attestcall.abi import HostFailure
from attestcall.errors import HostError
from attestcall.keep.block import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    REPLY_BIT,
    BlockError,
    RequestBlock,
)
from attestcall.keep.host import Host
from attestcall.keep.keep import start_host


class Echo(Host):
    def handle(self, op, data, limit):
        if op == 9:
            raise HostError("refused")
        return data[::-1]


def test_round_trip_through_the_host_thread():
    channel, process = start_host(Echo(), timeout=2)
    try:
        assert channel.call(1, b"abc", 16) == b"cba"
        assert channel.call(1, b"", 16) == b""
        with pytest.raises(HostFailure, match="error"):
            channel.call(9, b"x", 16)
        assert channel.call(1, b"xyz", 16) == b"zyx"  # the channel goes on after an error
    finally:
        process.stop()


def test_request_larger_than_block_is_refused_before_the_host_sees_it():
    block = RequestBlock(capacity=64)
    with pytest.raises(BlockError):
        block.write_request(1, 1, b"x" * 65, 16)
    with pytest.raises(BlockError):
        block.write_request(1, 1, b"x", 65)  # limit beyond capacity
    with pytest.raises(BlockError):
        block.write_request(1, 1, b"x", 0)


def reply(block, op=1 | REPLY_BIT, seq=5, status=0, length=3, data=b"abc", magic=MAGIC):
    HEADER.pack_into(block.buffer, 0, magic, 1, op, seq, status, length, 0, 0)
    block.buffer[HEADER_SIZE : HEADER_SIZE + len(data)] = data


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"magic": b"NOPE"}, "not a request-block"),
        ({"op": 1}, "does not answer"),
        ({"op": 2 | REPLY_BIT}, "does not answer"),
        ({"seq": 4}, "expected 5"),
        ({"status": 5}, "error 5"),
        ({"length": 17, "data": b"a" * 17}, "exceeds"),
        ({"length": 2**32 - 1}, "exceeds"),
    ],
)
def test_reply_validation(kwargs, message):
    block = RequestBlock(capacity=1024)
    reply(block, **kwargs)
    with pytest.raises(BlockError, match=message):
        block.read_reply(1, 5, 16)


def test_valid_reply_is_a_private_copy():
    block = RequestBlock(capacity=1024)
    reply(block)
    data = block.read_reply(1, 5, 16)
    block.buffer[HEADER_SIZE] = ord("z")
    assert data == b"abc"


def test_garbage_request_gets_an_error_status_not_a_crash():
    block = RequestBlock(capacity=64)
    block.buffer[:HEADER_SIZE] = b"\xff" * HEADER_SIZE
    Echo().process(block)
    _, _, _, _, status, _, _, _ = HEADER.unpack_from(block.buffer)
    assert status != 0


def test_hung_host_times_out_and_a_late_reply_is_not_taken_for_the_next_one():
    class Slow(Host):
        def handle(self, op, data, limit):
            if data == b"hang":
                time.sleep(0.5)
            return data

    channel, process = start_host(Slow(), timeout=0.2)
    try:
        with pytest.raises(HostFailure, match="did not answer"):
            channel.call(1, b"hang", 16)
        # The stale reply to request 1 lands in the block while later requests are made.
        # Each later exchange either gets its own answer or fails; none sees b"hang".
        answers = []
        for _ in range(8):
            try:
                answers.append(channel.call(1, b"next", 16))
                break
            except HostFailure:
                continue
        assert answers == [b"next"], "the channel never recovered"
    finally:
        process.stop()


def test_host_process_that_dies_gives_failure_not_a_hang():
    class Dies(Host):
        def process(self, block):
            raise RuntimeError("host crashed")

    channel, process = start_host(Dies(), timeout=60)
    with pytest.raises(HostFailure):
        channel.call(1, b"x", 16)
    with pytest.raises(HostFailure):  # and keeps failing, at once (EOF), not after 60 s
        channel.call(1, b"x", 16)
    process.stop()
