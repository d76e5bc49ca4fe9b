"""The wire protocol, sans I/O: framing, limits, the keep's receive state machine."""

import pytest

from attestcall.deploy import protocol as p


def keep_receives(*chunks: bytes) -> p.KeepSession:
    session = p.KeepSession()
    for chunk in chunks:
        session.receive(chunk)
    return session


def test_frames_cut_from_any_chunking():
    stream = p.hello() + b"".join(p.workload_frames(b"\0asm-module", ["a", "é"]))
    for size in (1, 2, 5, 7, len(stream)):
        session = p.KeepSession()
        workload = None
        for start in range(0, len(stream), size):
            workload = session.receive(stream[start:start + size]) or workload
        assert workload == p.Workload(b"\0asm-module", ("a", "é"))
        assert session.workload_bytes == len(stream) - 7 - 5  # minus HELLO and one header


def test_large_workload_spans_frames():
    module = bytes(range(256)) * 9000  # 2.3 MB: three WORKLOAD frames
    frames = list(p.workload_frames(module, ["x"]))
    assert len(frames) == 3
    assert all(len(f) <= p.MAX_FRAME_PAYLOAD + p.HEADER.size for f in frames)
    assert keep_receives(p.hello(), *frames).workload == p.Workload(module, ("x",))


def test_unknown_and_misdirected_types():
    with pytest.raises(p.UnknownFrameType, match="0x7f"):
        keep_receives(b"\x7f\0\0\0\0")
    with pytest.raises(p.UnknownFrameType, match="OUTPUT"):
        keep_receives(p.encode_frame(p.FrameType.OUTPUT, b"\1x"))


def test_oversized_frame_refused_from_its_header_alone():
    with pytest.raises(p.FrameTooLarge):
        keep_receives(p.hello(), p.HEADER.pack(p.FrameType.WORKLOAD, p.MAX_FRAME_PAYLOAD + 1))


def test_truncated_frame_at_the_end():
    session = keep_receives(p.hello(), p.HEADER.pack(p.FrameType.WORKLOAD, 10) + b"abc")
    with pytest.raises(p.TruncatedFrame):
        session.end()
    session = keep_receives(p.hello()[:3])
    with pytest.raises(p.TruncatedFrame):
        session.end()


def test_incomplete_workload_and_silent_tenant():
    first = next(iter(p.workload_frames(b"\0asm" * 10, [])))
    short = p.encode_frame(p.FrameType.WORKLOAD, first[p.HEADER.size:][:-4])
    with pytest.raises(p.IncompleteWorkload):
        keep_receives(p.hello(), short).end()
    p.KeepSession().end()  # a tenant that sent nothing: not an error


def test_order_and_version():
    with pytest.raises(p.UnexpectedFrame, match="before HELLO"):
        keep_receives(*p.workload_frames(b"m", []))
    with pytest.raises(p.UnexpectedFrame, match="second HELLO"):
        keep_receives(p.hello(), p.hello())
    with pytest.raises(p.UnsupportedVersion):
        keep_receives(p.hello(2))
    with pytest.raises(p.MalformedMessage):
        keep_receives(p.encode_frame(p.FrameType.HELLO, b"\1"))
    with pytest.raises(p.UnexpectedFrame, match="after the complete workload"):
        keep_receives(p.hello(), *p.workload_frames(b"m", []), p.hello())


def test_workload_limits():
    with pytest.raises(p.WorkloadTooLarge):
        p.workload_record(b"m", ["a"] * (p.MAX_ARGS + 1))
    with pytest.raises(p.WorkloadTooLarge):
        p.workload_record(b"m", ["a" * (p.MAX_ARG_SIZE + 1)])
    head = (p.MAX_MODULE_SIZE + 1).to_bytes(4, "big") + b"\0\0"
    with pytest.raises(p.WorkloadTooLarge):
        keep_receives(p.hello(), p.encode_frame(p.FrameType.WORKLOAD, head))
    session = p.KeepSession(max_module_size=100)
    session.receive(p.hello())
    with pytest.raises(p.WorkloadTooLarge, match="this keep's 100-byte limit"):
        session.receive(next(iter(p.workload_frames(bytes(101), []))))


def test_malformed_workload_header():
    with pytest.raises(p.MalformedMessage, match="header"):
        keep_receives(p.hello(), p.encode_frame(p.FrameType.WORKLOAD, b"\0\0"))
    header = (4).to_bytes(4, "big") + (1).to_bytes(2, "big") + (9).to_bytes(2, "big") + b"ab"
    with pytest.raises(p.MalformedMessage, match="runs past"):
        keep_receives(p.hello(), p.encode_frame(p.FrameType.WORKLOAD, header))
    header = (0).to_bytes(4, "big") + (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + b"\xff"
    with pytest.raises(p.MalformedMessage, match="UTF-8"):
        keep_receives(p.hello(), p.encode_frame(p.FrameType.WORKLOAD, header))
    record = p.workload_record(b"ab", [])
    with pytest.raises(p.MalformedMessage, match="beyond"):
        keep_receives(p.hello(), p.encode_frame(p.FrameType.WORKLOAD, record + b"c"))


def test_keep_messages():
    decoder = p.FrameDecoder(p.KEEP_FRAMES)
    data = b"x" * (p.OUTPUT_CHUNK + 5)
    frames = decoder.feed(b"".join(p.output(p.STDERR, data)) + p.exit_frame(7)
                          + p.error_frame("nope"))
    assert [f.type for f in frames] == [p.FrameType.OUTPUT] * 2 + [p.FrameType.EXIT,
                                                                   p.FrameType.ERROR]
    assert b"".join(p.parse_output(f.payload)[1] for f in frames[:2]) == data
    assert p.parse_exit(frames[2].payload) == 7
    assert p.parse_error(frames[3].payload) == "nope"
    with pytest.raises(p.MalformedMessage):
        p.parse_output(b"\3x")
    with pytest.raises(p.UnknownFrameType):
        decoder.feed(p.hello())
