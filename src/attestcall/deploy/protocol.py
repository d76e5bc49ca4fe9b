"""The deployment wire protocol, sans I/O: bytes in, frames and messages out.

attestcall deployment protocol, version 1
=========================================

The tenant opens TCP to the keep and runs a TLS 1.3 handshake (nothing older is offered or
accepted). The keep's self-signed certificate carries its attestation evidence (CMW
extension 1.3.6.1.5.5.7.1.35, plus Enarx's 1.3.6.1.4.1.58270.1.x where defined), bound to
the certificate's key. The tenant checks the evidence, its binding to the key of *this* TLS
session and its policy before it sends any byte; a tenant that refuses closes the
connection without sending anything.

Inside TLS, both directions carry frames::

    type    u8
    length  u32, big-endian: the payload's size
    payload length bytes

A frame's payload is at most 1 MiB (``MAX_FRAME_PAYLOAD``). An unknown type, a type the
receiver does not accept from that side, a longer length (refused on seeing the header,
before the payload is read) or a connection that ends inside a frame is a protocol error.

Tenant to keep:

- ``0x01 HELLO``: ``version u16`` (1). First frame, exactly once. A keep that does not
  speak the version answers ERROR.
- ``0x02 WORKLOAD``: one or more consecutive frames whose payloads, concatenated, form the
  workload record::

      module_size u32 | argc u16 | argc x (length u16 | UTF-8 argument) | module bytes

  The header (everything before the module bytes) must lie within the first WORKLOAD
  frame. ``module_size`` is at most 64 MiB (``MAX_MODULE_SIZE``), ``argc`` at most 256,
  an argument at most 4096 bytes. The module is a WebAssembly binary (WASI preview 1); its
  argv is ``["workload.wasm", *arguments]``. Bytes beyond the record are an error.

Keep to tenant, once the workload is complete:

- ``0x81 OUTPUT``: ``stream u8`` (1 stdout, 2 stderr) then the bytes the module wrote, as
  it writes them (a frame per write, split at 64 KiB).
- ``0x82 EXIT``: ``status u32``, the module's exit status (``proc_exit(n)`` is n, returning
  from ``_start`` 0, a trap 134). Last frame; the keep then closes.
- ``0x83 ERROR``: a UTF-8 message. Last frame; the keep closes. Sent for a protocol error,
  a module that cannot be compiled or instantiated, a read timeout, or an internal failure.

The keep times out every read (a tenant that stalls, even mid-frame, gets ERROR and is
disconnected) and bounds the whole HELLO+WORKLOAD exchange by a deadline.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from attestcall.errors import AttestcallError

VERSION = 1
HEADER = struct.Struct(">BI")
MAX_FRAME_PAYLOAD = 1 << 20
MAX_MODULE_SIZE = 64 << 20
MAX_ARGS = 256
MAX_ARG_SIZE = 4096
OUTPUT_CHUNK = 64 << 10
STDOUT, STDERR = 1, 2
_WORKLOAD_HEAD = struct.Struct(">IH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class FrameType(IntEnum):
    HELLO = 0x01
    WORKLOAD = 0x02
    OUTPUT = 0x81
    EXIT = 0x82
    ERROR = 0x83
    # SEV provisioning (plain TCP, before TLS): see attestcall.deploy.provisioning
    PV_GET_CHAIN = 0x21
    PV_START = 0x22
    PV_MEASURE = 0x23
    PV_SECRET = 0x24
    PV_STATUS = 0xA0
    PV_CHAIN = 0xA1
    PV_STARTED = 0xA2
    PV_REPORT = 0xA3
    PV_PROVISIONED = 0xA4


TENANT_FRAMES = frozenset({FrameType.HELLO, FrameType.WORKLOAD})
KEEP_FRAMES = frozenset({FrameType.OUTPUT, FrameType.EXIT, FrameType.ERROR})


class ProtocolError(AttestcallError):
    """The peer broke the protocol; ``str()`` is the message sent back in ERROR."""


class UnknownFrameType(ProtocolError):
    """A frame type that does not exist, or that this side never receives."""


class FrameTooLarge(ProtocolError):
    """A frame header announcing more than the payload limit."""


class TruncatedFrame(ProtocolError):
    """The connection ended inside a frame."""


class MalformedMessage(ProtocolError):
    """A frame whose payload is not what its type requires."""


class UnexpectedFrame(ProtocolError):
    """A valid frame at the wrong moment (WORKLOAD before HELLO, a second HELLO, ...)."""


class UnsupportedVersion(ProtocolError):
    """A HELLO with a protocol version this side does not speak."""


class WorkloadTooLarge(ProtocolError):
    """A workload over the module size, argument count or argument size limits."""


class IncompleteWorkload(ProtocolError):
    """The connection ended before the workload record was complete."""


class ReadTimeout(ProtocolError):
    """The peer sent nothing for too long, or the exchange passed its deadline."""


@dataclass(frozen=True)
class Frame:
    type: FrameType
    payload: bytes


@dataclass(frozen=True)
class Workload:
    module: bytes
    args: tuple[str, ...]


# ----------------------------------------------------------------------------- frames


def encode_frame(frame_type: FrameType, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise FrameTooLarge(f"a {frame_type.name} frame of {len(payload)} bytes is over "
                            f"the {MAX_FRAME_PAYLOAD}-byte limit")
    return HEADER.pack(frame_type, len(payload)) + payload


class FrameDecoder:
    """Cuts a byte stream into frames of the ``accept``ed types, checking each header as
    soon as its 5 bytes are in (so an oversized frame is refused before its payload)."""

    def __init__(self, accept: frozenset[FrameType], max_payload: int = MAX_FRAME_PAYLOAD):
        self.accept = accept
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._need: tuple[FrameType, int] | None = None

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            if self._need is None:
                if len(self._buffer) < HEADER.size:
                    return frames
                raw_type, length = HEADER.unpack_from(self._buffer)
                try:
                    frame_type = FrameType(raw_type)
                except ValueError:
                    raise UnknownFrameType(f"unknown frame type {raw_type:#04x}") from None
                if frame_type not in self.accept:
                    raise UnknownFrameType(f"frame type {frame_type.name} is not accepted "
                                           "from this side")
                if length > self.max_payload:
                    raise FrameTooLarge(f"frame of {length} bytes is over the "
                                        f"{self.max_payload}-byte limit")
                del self._buffer[: HEADER.size]
                self._need = (frame_type, length)
            frame_type, length = self._need
            if len(self._buffer) < length:
                return frames
            frames.append(Frame(frame_type, bytes(self._buffer[:length])))
            del self._buffer[:length]
            self._need = None

    def end(self) -> None:
        """The stream ended: TruncatedFrame if it ended inside a frame."""
        if self._need is not None or self._buffer:
            raise TruncatedFrame("the connection ended inside a frame")


# --------------------------------------------------------------------------- messages


def hello(version: int = VERSION) -> bytes:
    return encode_frame(FrameType.HELLO, _U16.pack(version))


def parse_hello(payload: bytes) -> int:
    if len(payload) != _U16.size:
        raise MalformedMessage(f"HELLO carries {len(payload)} bytes, expected 2")
    return _U16.unpack(payload)[0]


def workload_record(module: bytes, args: Sequence[str]) -> bytes:
    """The workload record (see the module docstring); WorkloadTooLarge over the limits."""
    if len(module) > MAX_MODULE_SIZE:
        raise WorkloadTooLarge(f"the module is {len(module)} bytes, over the "
                               f"{MAX_MODULE_SIZE}-byte limit")
    if len(args) > MAX_ARGS:
        raise WorkloadTooLarge(f"{len(args)} arguments, over the limit of {MAX_ARGS}")
    parts = [_WORKLOAD_HEAD.pack(len(module), len(args))]
    for arg in args:
        raw = arg.encode("utf-8")
        if len(raw) > MAX_ARG_SIZE:
            raise WorkloadTooLarge(f"an argument of {len(raw)} bytes, over the "
                                   f"{MAX_ARG_SIZE}-byte limit")
        parts.append(_U16.pack(len(raw)) + raw)
    return b"".join(parts) + bytes(module)


def workload_frames(module: bytes, args: Sequence[str]) -> Iterable[bytes]:
    """The WORKLOAD frames carrying ``module`` and ``args``."""
    record = workload_record(module, args)
    for start in range(0, len(record), MAX_FRAME_PAYLOAD):
        yield encode_frame(FrameType.WORKLOAD, record[start : start + MAX_FRAME_PAYLOAD])


def _parse_workload_head(payload: bytes) -> tuple[int, tuple[str, ...], int]:
    """(module_size, args, header length) from the first WORKLOAD payload."""
    if len(payload) < _WORKLOAD_HEAD.size:
        raise MalformedMessage("the first WORKLOAD frame does not hold the workload header")
    module_size, argc = _WORKLOAD_HEAD.unpack_from(payload)
    if module_size > MAX_MODULE_SIZE:
        raise WorkloadTooLarge(f"a module of {module_size} bytes is over the "
                               f"{MAX_MODULE_SIZE}-byte limit")
    if argc > MAX_ARGS:
        raise WorkloadTooLarge(f"{argc} arguments, over the limit of {MAX_ARGS}")
    offset = _WORKLOAD_HEAD.size
    args = []
    for _ in range(argc):
        if offset + _U16.size > len(payload):
            raise MalformedMessage("the workload header runs past the first WORKLOAD frame")
        (length,) = _U16.unpack_from(payload, offset)
        offset += _U16.size
        if length > MAX_ARG_SIZE:
            raise WorkloadTooLarge(f"an argument of {length} bytes, over the "
                                   f"{MAX_ARG_SIZE}-byte limit")
        if offset + length > len(payload):
            raise MalformedMessage("the workload header runs past the first WORKLOAD frame")
        try:
            args.append(payload[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise MalformedMessage("a workload argument is not UTF-8") from None
        offset += length
    return module_size, tuple(args), offset


def output(stream: int, data: bytes) -> Iterable[bytes]:
    """OUTPUT frames for ``data`` written to ``stream`` (split at OUTPUT_CHUNK)."""
    for start in range(0, len(data), OUTPUT_CHUNK):
        yield encode_frame(FrameType.OUTPUT, bytes([stream]) + data[start : start + OUTPUT_CHUNK])


def parse_output(payload: bytes) -> tuple[int, bytes]:
    if not payload or payload[0] not in (STDOUT, STDERR):
        raise MalformedMessage("OUTPUT must start with stream 1 or 2")
    return payload[0], payload[1:]


def exit_frame(status: int) -> bytes:
    return encode_frame(FrameType.EXIT, _U32.pack(status & 0xFFFFFFFF))


def parse_exit(payload: bytes) -> int:
    if len(payload) != _U32.size:
        raise MalformedMessage(f"EXIT carries {len(payload)} bytes, expected 4")
    return _U32.unpack(payload)[0]


def error_frame(message: str) -> bytes:
    raw = message.encode("utf-8", "replace")[:4096]
    return encode_frame(FrameType.ERROR, raw)


def parse_error(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


# ------------------------------------------------------------- the keep's receive side


class KeepSession:
    """What the keep receives: HELLO, then the WORKLOAD frames, as a state machine.

    ``receive(data)`` returns the Workload once it is complete (then the session accepts
    nothing more); ``end()`` reports a stream that stopped early. ``workload_bytes`` counts
    the WORKLOAD payload bytes received (tests use it to prove a refusing tenant sent none).
    """

    def __init__(self, *, max_module_size: int = MAX_MODULE_SIZE):
        self.max_module_size = max_module_size
        self.decoder = FrameDecoder(TENANT_FRAMES)
        self.version: int | None = None
        self.workload_bytes = 0
        self.received_any = False
        self.workload: Workload | None = None
        self._module_size: int | None = None
        self._args: tuple[str, ...] = ()
        self._module = bytearray()

    def receive(self, data: bytes) -> Workload | None:
        if data:
            self.received_any = True
        if self.workload is not None and data:
            raise UnexpectedFrame("bytes after the complete workload")
        for frame in self.decoder.feed(data):
            self._frame(frame)
        return self.workload

    def _frame(self, frame: Frame) -> None:
        if self.workload is not None:
            raise UnexpectedFrame("a frame after the complete workload")
        if frame.type == FrameType.HELLO:
            if self.version is not None:
                raise UnexpectedFrame("a second HELLO")
            version = parse_hello(frame.payload)
            if version != VERSION:
                raise UnsupportedVersion(f"protocol version {version} is not supported; this "
                                         f"keep speaks version {VERSION}")
            self.version = version
            return
        if self.version is None:
            raise UnexpectedFrame("WORKLOAD before HELLO")
        self.workload_bytes += len(frame.payload)
        payload = frame.payload
        if self._module_size is None:
            module_size, self._args, offset = _parse_workload_head(payload)
            if module_size > self.max_module_size:
                raise WorkloadTooLarge(f"a module of {module_size} bytes is over this keep's "
                                       f"{self.max_module_size}-byte limit")
            self._module_size = module_size
            payload = payload[offset:]
        if len(self._module) + len(payload) > self._module_size:
            raise MalformedMessage("WORKLOAD bytes beyond the announced module size")
        self._module += payload
        if len(self._module) == self._module_size:
            self.workload = Workload(bytes(self._module), self._args)
            self._module = bytearray()

    def end(self) -> None:
        """The tenant closed its side: an error unless the workload is complete (or the
        tenant sent nothing at all, as a refusing tenant does)."""
        self.decoder.end()
        if self.workload is None and self.received_any:
            raise IncompleteWorkload("the connection ended before the workload was complete")
