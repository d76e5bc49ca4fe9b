"""SEV pre-attestation provisioning over the network, sans I/O: both sides' state machines.

A SEV keep served by ``attestcall keep serve`` starts unprovisioned: no key, no TLS. On its
port it speaks this protocol (plain TCP, untrusted channel: everything in it is public or
protected by the SEV launch protocol itself) until a tenant has provisioned it; then it
finishes the launch and serves TLS 1.3 with the delivered key.

This module holds the messages, their framing and the order of the steps, and nothing else:
:class:`KeepProvisioning` (the keep's side) and :class:`TenantProvisioning` (the tenant's)
are fed bytes and give requests or replies; they are asked for replies or requests and give
bytes. The sockets are in :mod:`attestcall.deploy.provision_keep` and
:mod:`attestcall.deploy.provision_tenant`; the SEV cryptography in
:mod:`attestcall.amd.formats.sev_launch`; the keep's launch behind a :class:`Provisioner`.

attestcall provisioning protocol, version 1
===========================================

The keep peeks the first byte of each connection: 0x16 (a TLS record) is the deployment
protocol (:mod:`attestcall.deploy.protocol`); ``A`` starts provisioning. The tenant sends
``MAGIC`` (``b"ACPV" | version u8``, 5 bytes), then frames in protocol.py's framing (type
u8, length u32 big-endian, payload; at most ``MAX_PAYLOAD`` bytes here). The keep first
answers STATUS (one byte):

- 0: not a pre-attestation keep (it proves itself over TLS); the keep closes.
- 1: an unprovisioned SEV keep, ready; the exchange below follows.
- 2: already provisioned, or another tenant is provisioning it; the keep closes.

Then, tenant to keep → keep to tenant, one request at a time, in this order:

- ``GET_CHAIN`` (empty; optional, only before START) → ``CHAIN``: PDH, PEK, OCA, CEK, ASK,
  ARK (AMD format).
- ``START``: ``policy u32 | godh_len u32 | godh_cert | session`` → ``STARTED`` (empty).
- ``MEASURE`` (empty) → ``REPORT``: the 56-byte ``MeasurementReport``.
- ``SECRET``: ``header_len u32 | header | packet`` → ``PROVISIONED`` (empty), sent once the
  keep has finished the launch, read its key and serves TLS with it. The last request.

Each of START, MEASURE and SECRET comes once. Any refusal (firmware, order, a secret that
holds no usable key, a malformed frame, a timeout) is ``ERROR`` (a UTF-8 reason) and the
keep closes; it stays unprovisioned (its launch is discarded) and a later tenant can
provision it. Every read is under a timeout and the whole exchange under a deadline (the
keep's transport).

The keep's side of a launch
===========================

A keep whose TEE is provisioned by its owner offers a :class:`Provisioner` (the
``provisioner`` of :class:`attestcall.keep.keep.Keep`); the server asks it for a fresh
:class:`Launch` per tenant and drives that launch with the requests of this protocol.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Protocol

from attestcall.deploy.protocol import (
    Frame,
    FrameDecoder,
    FrameTooLarge,
    FrameType,
    MalformedMessage,
    ProtocolError,
    UnexpectedFrame,
    encode_frame,
    error_frame,
    parse_error,
)

MAGIC = b"ACPV\x01"
MAGIC_PREFIX = MAGIC[:4]
MAX_PAYLOAD = 64 << 10
_U32 = struct.Struct(">I")
_START_HEAD = struct.Struct(">II")

NOT_PREATTESTATION, UNPROVISIONED, UNAVAILABLE = 0, 1, 2

TENANT_FRAMES = frozenset({FrameType.PV_GET_CHAIN, FrameType.PV_START, FrameType.PV_MEASURE,
                           FrameType.PV_SECRET})
KEEP_FRAMES = frozenset({FrameType.PV_STATUS, FrameType.PV_CHAIN, FrameType.PV_STARTED,
                         FrameType.PV_REPORT, FrameType.PV_PROVISIONED, FrameType.ERROR})


class BadMagic(ProtocolError):
    """The connection does not start with this protocol's magic and version."""


class OutOfOrder(UnexpectedFrame):
    """A valid request or reply at the wrong step of the exchange."""


# ------------------------------------------------------------- the keep's launch protocol


class Packable(Protocol):
    def pack(self) -> bytes: ...


class Launch(Protocol):
    """One guest's launch, driven by one tenant; every argument and result is bytes (or
    packs to bytes) so the requests of this protocol carry the calls. Refusals raise
    ``attestcall.errors.AttestcallError`` subclasses (sent to the tenant as ERROR)."""

    def platform_chain(self) -> bytes: ...

    def start(self, godh_cert: bytes, session: bytes, policy: int) -> None: ...

    def measurement(self) -> Packable: ...  # pack(): the 56-byte report

    def inject_secret(self, header: bytes, packet: bytes) -> None: ...

    def finish(self, details: Mapping[str, Any] | None = None) -> Any: ...  # a running Keep


class Provisioner(Protocol):
    """What a keep waiting for its owner offers the server.

    ``technology``: the technology the provisioned keep will have; ``owner_choices``: the
    keep options the caller fixed that a remote owner chooses instead (the server refuses
    to serve with those); ``describe()``: one line for the keep's log (what the tenant must
    expect, e.g. the launch digest); ``launch()``: a fresh launch for one tenant."""

    technology: int
    owner_choices: tuple[str, ...]

    def describe(self) -> str: ...

    def launch(self) -> Launch: ...


# ----------------------------------------------------------------------------- messages


def frame(frame_type: FrameType, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLarge(f"a {frame_type.name} frame of {len(payload)} bytes is over the "
                            f"{MAX_PAYLOAD}-byte limit")
    return encode_frame(frame_type, payload)


def status_frame(status: int) -> bytes:
    return frame(FrameType.PV_STATUS, bytes([status]))


def start_payload(godh_cert: bytes, session: bytes, policy: int) -> bytes:
    return _START_HEAD.pack(policy, len(godh_cert)) + bytes(godh_cert) + bytes(session)


def parse_start(payload: bytes) -> tuple[bytes, bytes, int]:
    if len(payload) < _START_HEAD.size:
        raise MalformedMessage("START is shorter than its header")
    policy, length = _START_HEAD.unpack_from(payload)
    rest = payload[_START_HEAD.size:]
    if length > len(rest):
        raise MalformedMessage("START's GODH certificate runs past the frame")
    return bytes(rest[:length]), bytes(rest[length:]), policy


def secret_payload(header: bytes, packet: bytes) -> bytes:
    return _U32.pack(len(header)) + bytes(header) + bytes(packet)


def parse_secret(payload: bytes) -> tuple[bytes, bytes]:
    if len(payload) < _U32.size:
        raise MalformedMessage("SECRET is shorter than its header")
    (length,) = _U32.unpack_from(payload)
    rest = payload[_U32.size:]
    if length > len(rest):
        raise MalformedMessage("SECRET's packet header runs past the frame")
    return bytes(rest[:length]), bytes(rest[length:])


def _empty(frame: Frame) -> None:
    if frame.payload:
        raise MalformedMessage(f"{frame.type.name[3:]} carries {len(frame.payload)} bytes, "
                               "expected none")


# -------------------------------------------------------------- requests and replies


@dataclass(frozen=True)
class GetChain:
    pass


@dataclass(frozen=True)
class Start:
    godh_cert: bytes
    session: bytes
    policy: int


@dataclass(frozen=True)
class Measure:
    pass


@dataclass(frozen=True)
class Secret:
    header: bytes
    packet: bytes


Request = GetChain | Start | Measure | Secret


@dataclass(frozen=True)
class Status:
    status: int


@dataclass(frozen=True)
class Chain:
    chain: bytes


@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class Report:
    report: bytes


@dataclass(frozen=True)
class Provisioned:
    pass


@dataclass(frozen=True)
class Refused:
    """ERROR: the reason the keep gave; it closes after."""

    reason: str


Reply = Status | Chain | Started | Report | Provisioned | Refused

# The reply each request gets (ERROR aside), and the frame types on the wire.
_ANSWERS: dict[type, type] = {GetChain: Chain, Start: Started, Measure: Report,
                              Secret: Provisioned}
_REQUEST_TYPES: dict[type, FrameType] = {
    GetChain: FrameType.PV_GET_CHAIN, Start: FrameType.PV_START,
    Measure: FrameType.PV_MEASURE, Secret: FrameType.PV_SECRET,
}
_REPLY_TYPES: dict[type, FrameType] = {
    Status: FrameType.PV_STATUS, Chain: FrameType.PV_CHAIN, Started: FrameType.PV_STARTED,
    Report: FrameType.PV_REPORT, Provisioned: FrameType.PV_PROVISIONED,
    Refused: FrameType.ERROR,
}
# The steps in order: a request may follow only the ones listed before it.
_STEPS: tuple[type, ...] = (GetChain, Start, Measure, Secret)
_REQUIRED_BEFORE: dict[type, type | None] = {GetChain: None, Start: None, Measure: Start,
                                             Secret: Measure}
_NAMES = {GetChain: "GET_CHAIN", Start: "START", Measure: "MEASURE", Secret: "SECRET",
          Status: "STATUS", Chain: "CHAIN", Started: "STARTED", Report: "REPORT",
          Provisioned: "PROVISIONED", Refused: "ERROR"}


def encode_request(request: Request) -> bytes:
    if isinstance(request, Start):
        return frame(FrameType.PV_START,
                     start_payload(request.godh_cert, request.session, request.policy))
    if isinstance(request, Secret):
        return frame(FrameType.PV_SECRET, secret_payload(request.header, request.packet))
    return frame(_REQUEST_TYPES[type(request)])


def decode_request(item: Frame) -> Request:
    if item.type == FrameType.PV_START:
        return Start(*parse_start(item.payload))
    if item.type == FrameType.PV_SECRET:
        return Secret(*parse_secret(item.payload))
    _empty(item)
    return GetChain() if item.type == FrameType.PV_GET_CHAIN else Measure()


def encode_reply(reply: Reply) -> bytes:
    if isinstance(reply, Status):
        return status_frame(reply.status)
    if isinstance(reply, Chain):
        return frame(FrameType.PV_CHAIN, reply.chain)
    if isinstance(reply, Report):
        return frame(FrameType.PV_REPORT, reply.report)
    if isinstance(reply, Refused):
        return error_frame(reply.reason)
    return frame(_REPLY_TYPES[type(reply)])


def decode_reply(item: Frame) -> Reply:
    if item.type == FrameType.PV_STATUS:
        if len(item.payload) != 1:
            raise MalformedMessage(f"STATUS carries {len(item.payload)} bytes, expected 1")
        return Status(item.payload[0])
    if item.type == FrameType.PV_CHAIN:
        return Chain(item.payload)
    if item.type == FrameType.PV_REPORT:
        return Report(item.payload)
    if item.type == FrameType.ERROR:
        return Refused(parse_error(item.payload))
    _empty(item)
    return Started() if item.type == FrameType.PV_STARTED else Provisioned()


# ------------------------------------------------------------------- the keep's side


class KeepState(Enum):
    MAGIC = auto()  # waiting for the tenant's magic
    STATUS = auto()  # the keep must send STATUS
    READY = auto()  # waiting for the next request
    REPLYING = auto()  # the keep owes a reply to the last request
    DONE = auto()  # PROVISIONED, a STATUS other than UNPROVISIONED, or ERROR sent


class KeepProvisioning:
    """The keep's side: ``receive_data(bytes)``, then ``next_request()`` gives the tenant's
    requests one at a time (None: more bytes needed), each answered by ``reply(...)``, which
    gives the bytes to send. ProtocolError for anything the protocol does not allow; the
    keep then sends ``refuse(reason)``."""

    def __init__(self) -> None:
        self.state = KeepState.MAGIC
        self._magic = bytearray()
        self._decoder = FrameDecoder(TENANT_FRAMES, MAX_PAYLOAD)
        self._frames: deque[Frame] = deque()
        self._done: set[type] = set()
        self._pending: Request | None = None

    def receive_data(self, data: bytes) -> None:
        """Bytes from the tenant. Raises BadMagic, or the framing's ProtocolErrors (an
        unknown or misdirected type, an oversized frame) as soon as a header is in."""
        if self.state == KeepState.DONE:
            return  # the keep is closing: whatever else arrives is dropped
        if self.state == KeepState.MAGIC:
            need = len(MAGIC) - len(self._magic)
            self._magic += data[:need]
            data = data[need:]
            if self._magic != MAGIC[: len(self._magic)]:
                raise BadMagic("unknown provisioning magic or version")
            if len(self._magic) < len(MAGIC):
                return
            self.state = KeepState.STATUS
        self._frames.extend(self._decoder.feed(data))

    @property
    def magic_received(self) -> bool:
        return self.state != KeepState.MAGIC

    def status(self, status: int) -> bytes:
        """STATUS, once the magic is in. Anything but UNPROVISIONED ends the exchange."""
        if self.state != KeepState.STATUS:
            raise OutOfOrder(f"STATUS cannot be sent now ({self.state.name})")
        self.state = KeepState.READY if status == UNPROVISIONED else KeepState.DONE
        return status_frame(status)

    def next_request(self) -> Request | None:
        """The next complete request, checked against the order of the steps; None until
        one is complete (or while the last one is unanswered)."""
        if self.state != KeepState.READY or not self._frames:
            return None
        request = decode_request(self._frames.popleft())
        kind = type(request)
        name = _NAMES[kind]
        if kind in self._done:
            raise OutOfOrder(f"a second {name}")
        later = [step for step in _STEPS[_STEPS.index(kind) + 1:] if step in self._done]
        if later:
            raise OutOfOrder(f"{name} after {_NAMES[later[0]]}")
        required = _REQUIRED_BEFORE[kind]
        if required is not None and required not in self._done:
            detail = "LAUNCH_START has not been done" if required is Start else \
                f"{_NAMES[required]} has not been done"
            raise OutOfOrder(f"{name} before {_NAMES[required]}: {detail}")
        self._done.add(kind)
        self._pending = request
        self.state = KeepState.REPLYING
        return request

    def reply(self, reply: Chain | Started | Report | Provisioned) -> bytes:
        """The answer to the pending request."""
        if self.state != KeepState.REPLYING or self._pending is None:
            raise OutOfOrder(f"no request to answer with {_NAMES[type(reply)]}")
        expected = _ANSWERS[type(self._pending)]
        if not isinstance(reply, expected):
            raise OutOfOrder(f"{_NAMES[type(self._pending)]} is answered by "
                             f"{_NAMES[expected]}, not {_NAMES[type(reply)]}")
        data = encode_reply(reply)
        self._pending = None
        self.state = KeepState.DONE if isinstance(reply, Provisioned) else KeepState.READY
        return data

    def refuse(self, reason: str) -> bytes:
        """ERROR with ``reason``; the exchange is over."""
        self.state = KeepState.DONE
        return error_frame(reason)

    def end(self) -> None:
        """The tenant closed its side: TruncatedFrame if it stopped inside a frame."""
        if self.state != KeepState.MAGIC:
            self._decoder.end()


# ------------------------------------------------------------------ the tenant's side


class TenantState(Enum):
    HELLO = auto()  # the magic is to be sent
    STATUS = auto()  # waiting for STATUS
    READY = auto()  # the next request may be sent
    WAITING = auto()  # waiting for the reply to the last request
    DONE = auto()  # provisioned, refused, or not an unprovisioned keep


class TenantProvisioning:
    """The tenant's side: ``hello()`` and the requests give bytes to send;
    ``receive_data(bytes)`` then ``next_reply()`` gives the keep's replies (None: more
    bytes needed). A reply that is not the answer to the last request (ERROR aside), or
    any reply nobody asked for, is OutOfOrder."""

    def __init__(self) -> None:
        self.state = TenantState.HELLO
        self._decoder = FrameDecoder(KEEP_FRAMES, MAX_PAYLOAD)
        self._frames: deque[Frame] = deque()
        self._sent: set[type] = set()
        self._expected: type | None = None

    def hello(self) -> bytes:
        if self.state != TenantState.HELLO:
            raise OutOfOrder("the magic was already sent")
        self.state = TenantState.STATUS
        self._expected = Status
        return MAGIC

    def request(self, request: Request) -> bytes:
        """The bytes of ``request``, once the previous reply is in and in step order."""
        kind = type(request)
        name = _NAMES[kind]
        if self.state != TenantState.READY:
            raise OutOfOrder(f"{name} cannot be sent now ({self.state.name})")
        if kind in self._sent or any(s in self._sent for s in _STEPS[_STEPS.index(kind) + 1:]):
            raise OutOfOrder(f"{name} out of order")
        required = _REQUIRED_BEFORE[kind]
        if required is not None and required not in self._sent:
            raise OutOfOrder(f"{name} before {_NAMES[required]}")
        data = encode_request(request)
        self._sent.add(kind)
        self._expected = _ANSWERS[kind]
        self.state = TenantState.WAITING
        return data

    def receive_data(self, data: bytes) -> None:
        """Bytes from the keep. Raises the framing's ProtocolErrors."""
        self._frames.extend(self._decoder.feed(data))

    def next_reply(self) -> Reply | None:
        """The reply to the last message sent, or None until it is complete."""
        if not self._frames:
            return None
        if self.state not in (TenantState.STATUS, TenantState.WAITING):
            raise OutOfOrder(f"the keep sent {self._frames[0].type.name} unasked")
        reply = decode_reply(self._frames.popleft())
        expected = self._expected
        assert expected is not None
        if isinstance(reply, Refused):
            self.state = TenantState.DONE
            return reply
        if not isinstance(reply, expected):
            raise OutOfOrder(f"the keep answered {_NAMES[type(reply)]}, expected "
                             f"{_NAMES[expected]}")
        self._expected = None
        if isinstance(reply, Status):
            self.state = TenantState.READY if reply.status == UNPROVISIONED else \
                TenantState.DONE
        elif isinstance(reply, Provisioned):
            self.state = TenantState.DONE
        else:
            self.state = TenantState.READY
        return reply

    def end(self) -> None:
        """The keep closed: TruncatedFrame if it stopped inside a frame."""
        self._decoder.end()
