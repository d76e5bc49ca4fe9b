"""SEV provisioning, sans I/O: both sides' state machines without a socket. Every message
out of order, truncated, oversized, tampered with or hostile is a ProtocolError; the good
path provisions a simulated launch in memory."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestcall.amd.formats import sev_launch as sl
from attestcall.amd.sim.sev import SimulatedSevFirmware, load_state
from attestcall.amd.sim.sev.keep import SevProvisioner, expected_digest
from attestcall.deploy import protocol
from attestcall.deploy import provisioning as pv
from attestcall.deploy.protocol import FrameType

REPORT = bytes(range(56))


def ready_keep() -> pv.KeepProvisioning:
    """A keep side past the magic and STATUS UNPROVISIONED."""
    keep = pv.KeepProvisioning()
    keep.receive_data(pv.MAGIC)
    assert keep.status(pv.UNPROVISIONED) == pv.status_frame(pv.UNPROVISIONED)
    return keep


def ready_tenant() -> pv.TenantProvisioning:
    """A tenant side that sent the magic and got STATUS UNPROVISIONED."""
    tenant = pv.TenantProvisioning()
    assert tenant.hello() == pv.MAGIC
    tenant.receive_data(pv.status_frame(pv.UNPROVISIONED))
    assert tenant.next_reply() == pv.Status(pv.UNPROVISIONED)
    return tenant


def answer(keep: pv.KeepProvisioning, request: pv.Request) -> bytes:
    replies = {pv.GetChain: pv.Chain(b"chain"), pv.Start: pv.Started(),
               pv.Measure: pv.Report(REPORT), pv.Secret: pv.Provisioned()}
    return keep.reply(replies[type(request)])  # type: ignore[arg-type]


def keep_after(*requests: pv.Request) -> pv.KeepProvisioning:
    """A keep side that received and answered ``requests``."""
    keep = ready_keep()
    for request in requests:
        keep.receive_data(pv.encode_request(request))
        assert keep.next_request() == request
        answer(keep, request)
    return keep


ANSWERS = {pv.GetChain: pv.Chain, pv.Start: pv.Started, pv.Measure: pv.Report,
           pv.Secret: pv.Provisioned}
START = pv.Start(b"godh-certificate", b"session" * 10, 0x3)
SECRET = pv.Secret(b"h" * 0x34, b"packet" * 20)
STEPS = [pv.GetChain(), START, pv.Measure(), SECRET]
KINDS = [type(step) for step in STEPS]


# ------------------------------------------------------------------------ the good path


@pytest.mark.parametrize("chunk", [1, 3, 5, 64, 1 << 20])
def test_both_sides_agree_in_any_chunking(chunk):
    tenant, keep = pv.TenantProvisioning(), pv.KeepProvisioning()

    def deliver(data: bytes, to) -> None:
        for start in range(0, len(data), chunk):
            to.receive_data(data[start:start + chunk])

    deliver(tenant.hello(), keep)
    assert keep.magic_received
    deliver(keep.status(pv.UNPROVISIONED), tenant)
    assert tenant.next_reply() == pv.Status(pv.UNPROVISIONED)
    for request in STEPS:
        deliver(tenant.request(request), keep)
        assert keep.next_request() == request
        assert tenant.next_reply() is None
        deliver(answer(keep, request), tenant)
        reply = tenant.next_reply()
        assert type(reply) is ANSWERS[type(request)]
    assert reply == pv.Provisioned()
    assert keep.state == pv.KeepState.DONE and tenant.state == pv.TenantState.DONE
    keep.end()
    tenant.end()


def test_get_chain_is_optional():
    keep = keep_after(START, pv.Measure(), SECRET)
    assert keep.state == pv.KeepState.DONE


def test_a_whole_launch_in_memory():
    """The keep side drives a simulated launch, the tenant side sev_launch.Tenant: no
    socket anywhere, the delivered key reaches the launched keep."""
    firmware = SimulatedSevFirmware(load_state())
    launch = SevProvisioner(firmware, b"").launch()
    owner = sl.Tenant([firmware.state.chain.ark.pack()])
    key = ec.generate_private_key(ec.SECP384R1())
    tenant, keep = pv.TenantProvisioning(), pv.KeepProvisioning()

    def exchange(request: pv.Request) -> pv.Reply:
        keep.receive_data(tenant.request(request))
        got = keep.next_request()
        if isinstance(got, pv.GetChain):
            data = keep.reply(pv.Chain(launch.platform_chain()))
        elif isinstance(got, pv.Start):
            launch.start(got.godh_cert, got.session, got.policy)
            data = keep.reply(pv.Started())
        elif isinstance(got, pv.Measure):
            data = keep.reply(pv.Report(launch.measurement().pack()))
        else:
            assert isinstance(got, pv.Secret)
            launch.inject_secret(got.header, got.packet)
            data = keep.reply(pv.Provisioned())
        tenant.receive_data(data)
        reply = tenant.next_reply()
        assert reply is not None
        return reply

    keep.receive_data(tenant.hello())
    tenant.receive_data(keep.status(pv.UNPROVISIONED))
    assert tenant.next_reply() == pv.Status(pv.UNPROVISIONED)
    chain = exchange(pv.GetChain())
    assert isinstance(chain, pv.Chain)
    start = owner.start(chain.chain)
    exchange(pv.Start(start.godh_cert, start.session, start.policy))
    report = exchange(pv.Measure())
    assert isinstance(report, pv.Report)
    owner.verify_measurement(sl.MeasurementReport.parse(report.report), expected_digest(b""))
    assert exchange(pv.Secret(*owner.key_secret(key))) == pv.Provisioned()
    with launch.finish() as running:
        assert running.source.evidence(b"") == sl.pkcs8(key)


@pytest.mark.parametrize("status", [pv.NOT_PREATTESTATION, pv.UNAVAILABLE, 7])
def test_any_other_status_ends_the_exchange(status):
    keep = pv.KeepProvisioning()
    keep.receive_data(pv.MAGIC)
    keep.status(status)
    keep.receive_data(pv.encode_request(pv.GetChain()))  # dropped: the keep closes
    assert keep.next_request() is None and keep.state == pv.KeepState.DONE
    tenant = pv.TenantProvisioning()
    tenant.hello()
    tenant.receive_data(pv.status_frame(status))
    assert tenant.next_reply() == pv.Status(status)
    with pytest.raises(pv.OutOfOrder):
        tenant.request(pv.GetChain())


def test_messages_round_trip_at_their_limits():
    for request in (pv.Start(b"", b"", 0xFFFFFFFF), pv.Start(b"c" * 100, b"", 0),
                    pv.Secret(b"", b""), pv.Secret(b"h", b"p" * (pv.MAX_PAYLOAD - 5))):
        (frame,) = protocol.FrameDecoder(pv.TENANT_FRAMES, pv.MAX_PAYLOAD).feed(
            pv.encode_request(request))
        assert pv.decode_request(frame) == request
    assert pv.decode_reply(protocol.Frame(FrameType.ERROR, "é".encode())) == pv.Refused("é")


# ------------------------------------------------------------------------ out of order

KEEP_ORDER_REFUSALS = [
    ((), pv.Measure(), "MEASURE before START: LAUNCH_START has not been done"),
    ((), SECRET, "SECRET before MEASURE"),
    ((START,), SECRET, "SECRET before MEASURE"),
    ((START,), START, "a second START"),
    ((pv.GetChain(),), pv.GetChain(), "a second GET_CHAIN"),
    ((START,), pv.GetChain(), "GET_CHAIN after START"),
    ((START, pv.Measure()), pv.Measure(), "a second MEASURE"),
    ((START, pv.Measure()), START, "a second START"),
    ((pv.GetChain(), START, pv.Measure()), pv.GetChain(), "a second GET_CHAIN"),
]


@pytest.mark.parametrize("before, request_, message", KEEP_ORDER_REFUSALS)
def test_keep_refuses_requests_out_of_order(before, request_, message):
    keep = keep_after(*before)
    keep.receive_data(pv.encode_request(request_))
    with pytest.raises(pv.OutOfOrder, match=message):
        keep.next_request()


def test_keep_holds_pipelined_requests_until_the_previous_one_is_answered():
    keep = ready_keep()
    keep.receive_data(pv.encode_request(pv.GetChain()) + pv.encode_request(START))
    assert keep.next_request() == pv.GetChain()
    assert keep.next_request() is None  # CHAIN is owed first
    keep.reply(pv.Chain(b"c"))
    assert keep.next_request() == START


def test_keep_replies_only_to_a_request_and_with_its_answer():
    keep = pv.KeepProvisioning()
    with pytest.raises(pv.OutOfOrder, match="STATUS cannot be sent"):
        keep.status(pv.UNPROVISIONED)  # before the magic
    keep = ready_keep()
    with pytest.raises(pv.OutOfOrder, match="STATUS cannot be sent"):
        keep.status(pv.UNPROVISIONED)  # twice
    with pytest.raises(pv.OutOfOrder, match="no request"):
        keep.reply(pv.Chain(b"c"))
    keep.receive_data(pv.encode_request(pv.Measure()))
    with pytest.raises(pv.OutOfOrder):
        keep.next_request()
    keep = ready_keep()
    keep.receive_data(pv.encode_request(START))
    keep.next_request()
    with pytest.raises(pv.OutOfOrder, match="START is answered by STARTED, not PROVISIONED"):
        keep.reply(pv.Provisioned())


def test_bytes_after_provisioned_or_refusal_are_dropped():
    keep = keep_after(START, pv.Measure(), SECRET)
    keep.receive_data(pv.encode_request(START) + b"\xff" * 10)
    assert keep.next_request() is None
    keep = ready_keep()
    assert keep.refuse("no") == protocol.error_frame("no")
    keep.receive_data(b"\xff" * 10)
    assert keep.next_request() is None


def test_tenant_sends_only_in_order():
    tenant = pv.TenantProvisioning()
    with pytest.raises(pv.OutOfOrder, match="cannot be sent now"):
        tenant.request(pv.GetChain())  # before the magic
    tenant.hello()
    with pytest.raises(pv.OutOfOrder, match="already sent"):
        tenant.hello()
    with pytest.raises(pv.OutOfOrder, match="cannot be sent now"):
        tenant.request(pv.GetChain())  # before STATUS
    tenant = ready_tenant()
    tenant.request(pv.GetChain())
    with pytest.raises(pv.OutOfOrder, match="cannot be sent now"):
        tenant.request(START)  # before CHAIN came
    for request in (pv.Measure(), SECRET):
        with pytest.raises(pv.OutOfOrder, match="before"):
            ready_tenant().request(request)
    tenant = ready_tenant()
    tenant.request(START)
    tenant.receive_data(pv.encode_reply(pv.Started()))
    tenant.next_reply()
    for request in (START, pv.GetChain()):
        with pytest.raises(pv.OutOfOrder, match="out of order"):
            tenant.request(request)


def test_tenant_refuses_replies_nobody_asked_for_or_the_wrong_answer():
    tenant = pv.TenantProvisioning()
    tenant.receive_data(pv.status_frame(pv.UNPROVISIONED))  # before the magic was sent
    with pytest.raises(pv.OutOfOrder, match="unasked"):
        tenant.next_reply()
    tenant = pv.TenantProvisioning()
    tenant.hello()
    tenant.receive_data(pv.encode_reply(pv.Chain(b"c")))
    with pytest.raises(pv.OutOfOrder, match="answered CHAIN, expected STATUS"):
        tenant.next_reply()
    tenant = ready_tenant()
    tenant.receive_data(pv.encode_reply(pv.Chain(b"c")))  # not asked yet
    with pytest.raises(pv.OutOfOrder, match="unasked"):
        tenant.next_reply()
    tenant = ready_tenant()
    tenant.request(pv.GetChain())
    tenant.receive_data(pv.encode_reply(pv.Provisioned()))
    with pytest.raises(pv.OutOfOrder, match="answered PROVISIONED, expected CHAIN"):
        tenant.next_reply()


def test_error_is_an_answer_at_any_step_and_the_last():
    tenant = pv.TenantProvisioning()
    tenant.hello()
    tenant.receive_data(protocol.error_frame("unknown provisioning magic"))
    assert tenant.next_reply() == pv.Refused("unknown provisioning magic")
    assert tenant.state == pv.TenantState.DONE
    tenant = ready_tenant()
    tenant.request(START)
    tenant.receive_data(protocol.error_frame("InvalidCertificate: junk"))
    assert tenant.next_reply() == pv.Refused("InvalidCertificate: junk")
    with pytest.raises(pv.OutOfOrder):
        tenant.request(pv.Measure())


# ------------------------------------------------------------------ truncated, oversized


@pytest.mark.parametrize("request_", STEPS[1:])
def test_a_frame_cut_short_is_truncated(request_):
    keep = keep_after(*STEPS[: STEPS.index(request_)])
    keep.receive_data(pv.encode_request(request_)[:-1])
    assert keep.next_request() is None
    with pytest.raises(protocol.TruncatedFrame):
        keep.end()
    tenant = ready_tenant()
    tenant.request(pv.GetChain())
    tenant.receive_data(pv.encode_reply(pv.Chain(b"chain"))[:3])
    assert tenant.next_reply() is None
    with pytest.raises(protocol.TruncatedFrame):
        tenant.end()


def test_a_partial_magic_then_close_is_not_an_error():
    keep = pv.KeepProvisioning()
    keep.receive_data(pv.MAGIC[:3])
    assert not keep.magic_received
    keep.end()


@pytest.mark.parametrize("payload, message", [
    (b"", "shorter than its header"),
    (b"\0" * 7, "shorter than its header"),
    (b"\0\0\0\1\0\0\0\x09godh", "runs past the frame"),
    (b"\0\0\0\1\xff\xff\xff\xff", "runs past the frame"),
])
def test_truncated_start_is_malformed(payload, message):
    keep = ready_keep()
    keep.receive_data(pv.frame(FrameType.PV_START, payload))
    with pytest.raises(protocol.MalformedMessage, match=message):
        keep.next_request()


@pytest.mark.parametrize("payload, message", [
    (b"\0\0\0", "shorter than its header"),
    (b"\0\0\0\x35" + b"h" * 0x34, "runs past the frame"),
    (b"\xff\xff\xff\xff", "runs past the frame"),
])
def test_truncated_secret_is_malformed(payload, message):
    keep = keep_after(START, pv.Measure())
    keep.receive_data(pv.frame(FrameType.PV_SECRET, payload))
    with pytest.raises(protocol.MalformedMessage, match=message):
        keep.next_request()


def test_oversized_frames_are_refused_on_their_header():
    header = protocol.HEADER.pack(FrameType.PV_SECRET, pv.MAX_PAYLOAD + 1)
    keep = ready_keep()
    with pytest.raises(protocol.FrameTooLarge):
        keep.receive_data(header)  # refused before any payload byte
    tenant = ready_tenant()
    tenant.request(pv.GetChain())
    with pytest.raises(protocol.FrameTooLarge):
        tenant.receive_data(protocol.HEADER.pack(FrameType.PV_CHAIN, 0xFFFFFFFF))
    with pytest.raises(protocol.FrameTooLarge):
        pv.encode_request(pv.Secret(b"", b"x" * pv.MAX_PAYLOAD))
    with pytest.raises(protocol.FrameTooLarge):
        pv.encode_reply(pv.Chain(b"x" * (pv.MAX_PAYLOAD + 1)))


# ------------------------------------------------------------------ tampered, hostile


@pytest.mark.parametrize("start", [b"ACPV\x02", b"ACPX\x01", b"\x16\x03\x01\x02\x00",
                                   b"GET / HTTP/1.1\r\n"])
def test_a_wrong_magic_or_version_is_refused(start):
    keep = pv.KeepProvisioning()
    with pytest.raises(pv.BadMagic, match="unknown provisioning magic or version"):
        for byte in start:
            keep.receive_data(bytes([byte]))


@pytest.mark.parametrize("frame_type", [FrameType.PV_GET_CHAIN, FrameType.PV_MEASURE])
def test_requests_that_must_be_empty_are(frame_type):
    keep = keep_after(START) if frame_type == FrameType.PV_MEASURE else ready_keep()
    keep.receive_data(pv.frame(frame_type, b"x"))
    with pytest.raises(protocol.MalformedMessage, match="expected none"):
        keep.next_request()


@pytest.mark.parametrize("reply, message", [
    (pv.frame(FrameType.PV_STATUS, b"\1\1"), "STATUS carries 2 bytes"),
    (pv.frame(FrameType.PV_STATUS, b""), "STATUS carries 0 bytes"),
])
def test_a_tampered_status_is_malformed(reply, message):
    tenant = pv.TenantProvisioning()
    tenant.hello()
    tenant.receive_data(reply)
    with pytest.raises(protocol.MalformedMessage, match=message):
        tenant.next_reply()


@pytest.mark.parametrize("request_, frame_type", [
    (START, FrameType.PV_STARTED), (pv.Measure(), FrameType.PV_PROVISIONED)])
def test_a_tampered_empty_reply_is_malformed(request_, frame_type):
    tenant = ready_tenant()
    if isinstance(request_, pv.Measure):
        tenant.request(START)
        tenant.receive_data(pv.encode_reply(pv.Started()))
        tenant.next_reply()
        tenant.request(pv.Measure())
        tenant.receive_data(pv.encode_reply(pv.Report(REPORT)))
        tenant.next_reply()
        tenant.request(SECRET)
    else:
        tenant.request(request_)
    tenant.receive_data(pv.frame(frame_type, b"\0"))
    with pytest.raises(protocol.MalformedMessage, match="expected none"):
        tenant.next_reply()


def test_misdirected_and_unknown_frame_types():
    keep = ready_keep()
    with pytest.raises(protocol.UnknownFrameType, match="PV_CHAIN"):
        keep.receive_data(pv.encode_reply(pv.Chain(b"c")))  # a keep's frame, to the keep
    keep = ready_keep()
    with pytest.raises(protocol.UnknownFrameType, match="HELLO"):
        keep.receive_data(protocol.hello())  # the TLS protocol's frame
    tenant = ready_tenant()
    with pytest.raises(protocol.UnknownFrameType, match="PV_START"):
        tenant.receive_data(pv.encode_request(START))
    with pytest.raises(protocol.UnknownFrameType, match="0x7f"):
        ready_tenant().receive_data(b"\x7f\0\0\0\0")


def _feed_until_error(machine, data: bytes, pull) -> None:
    for start in range(0, len(data), 7):
        machine.receive_data(data[start:start + 7])
        while pull(machine) is not None:
            pass
    machine.end()


@pytest.mark.parametrize("seed", range(40))
def test_hostile_bytes_give_protocol_errors_only(seed):
    """Random streams, pure noise or valid frames with flipped bytes, to both sides: a
    ProtocolError or nothing, never another exception, never a request out of order."""
    rng = random.Random(seed)
    valid = pv.MAGIC + b"".join(pv.encode_request(r) for r in STEPS)
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    flipped = bytearray(valid)
    for _ in range(rng.randrange(1, 4)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    for data in (noise, pv.MAGIC + noise, bytes(flipped)):
        keep = pv.KeepProvisioning()
        seen: list[type] = []

        def pull(machine: pv.KeepProvisioning, seen: list[type] = seen) -> pv.Request | None:
            if machine.state == pv.KeepState.STATUS:
                machine.status(pv.UNPROVISIONED)
            request = machine.next_request()
            if request is not None:
                seen.append(type(request))
                answer(machine, request)
            return request

        try:
            _feed_until_error(keep, data, pull)
        except protocol.ProtocolError:
            pass
        order = [KINDS.index(kind) for kind in seen]
        assert order == sorted(set(order))
        tenant = ready_tenant()
        tenant.request(pv.GetChain())
        try:
            _feed_until_error(tenant, data, lambda m: m.next_reply())
        except protocol.ProtocolError:
            pass
