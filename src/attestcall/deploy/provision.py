"""SEV pre-attestation provisioning over the network: the keep's side and the tenant's.

A SEV keep served by ``attestcall keep serve --tee sev-sim`` starts unprovisioned: no key,
no TLS. On its port it speaks this protocol (plain TCP, untrusted channel: everything in it
is public or protected by the SEV launch protocol itself) until a tenant has provisioned
it; then it finishes the launch and serves TLS 1.3 with the delivered key.

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

Then, tenant to keep → keep to tenant:

- ``GET_CHAIN`` (empty) → ``CHAIN``: PDH, PEK, OCA, CEK, ASK, ARK (AMD format).
- ``START``: ``policy u32 | godh_len u32 | godh_cert | session`` → ``STARTED`` (empty).
- ``MEASURE`` (empty) → ``REPORT``: the 56-byte ``MeasurementReport``.
- ``SECRET``: ``header_len u32 | header | packet`` → ``PROVISIONED`` (empty), sent once the
  keep has finished the launch, read its key and serves TLS with it.

Any refusal (firmware, order, a secret that holds no usable key, a malformed frame, a
timeout) is ``ERROR`` (a UTF-8 reason) and the keep closes; it stays unprovisioned (its
launch is discarded) and a later tenant can provision it. Every read is under a timeout and
the whole exchange under a deadline.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from attestcall.deploy import protocol
from attestcall.deploy.protocol import Frame, FrameDecoder, FrameType, ProtocolError
from attestcall.errors import AttestcallError

MAGIC = b"ACPV\x01"
MAGIC_PREFIX = MAGIC[:4]
MAX_PAYLOAD = 64 << 10
_U32 = struct.Struct(">I")
_START_HEAD = struct.Struct(">II")
_RECV_SIZE = 64 << 10

NOT_PREATTESTATION, UNPROVISIONED, UNAVAILABLE = 0, 1, 2
DEFAULT_SEV_KEY_TYPE = "p384"

TENANT_FRAMES = frozenset({FrameType.PV_GET_CHAIN, FrameType.PV_START, FrameType.PV_MEASURE,
                           FrameType.PV_SECRET})
KEEP_FRAMES = frozenset({FrameType.PV_STATUS, FrameType.PV_CHAIN, FrameType.PV_STARTED,
                         FrameType.PV_REPORT, FrameType.PV_PROVISIONED, FrameType.ERROR})


class ProvisioningRefused(AttestcallError):
    """The keep answered ERROR (firmware or keep refusal) or broke the protocol."""


# ----------------------------------------------------------------------------- messages


def frame(frame_type: FrameType, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise protocol.FrameTooLarge(f"a {frame_type.name} frame of {len(payload)} bytes is "
                                     f"over the {MAX_PAYLOAD}-byte limit")
    return protocol.encode_frame(frame_type, payload)


def status_frame(status: int) -> bytes:
    return frame(FrameType.PV_STATUS, bytes([status]))


def start_payload(godh_cert: bytes, session: bytes, policy: int) -> bytes:
    return _START_HEAD.pack(policy, len(godh_cert)) + bytes(godh_cert) + bytes(session)


def parse_start(payload: bytes) -> tuple[bytes, bytes, int]:
    if len(payload) < _START_HEAD.size:
        raise protocol.MalformedMessage("START is shorter than its header")
    policy, length = _START_HEAD.unpack_from(payload)
    rest = payload[_START_HEAD.size:]
    if length > len(rest):
        raise protocol.MalformedMessage("START's GODH certificate runs past the frame")
    return bytes(rest[:length]), bytes(rest[length:]), policy


def secret_payload(header: bytes, packet: bytes) -> bytes:
    return _U32.pack(len(header)) + bytes(header) + bytes(packet)


def parse_secret(payload: bytes) -> tuple[bytes, bytes]:
    if len(payload) < _U32.size:
        raise protocol.MalformedMessage("SECRET is shorter than its header")
    (length,) = _U32.unpack_from(payload)
    rest = payload[_U32.size:]
    if length > len(rest):
        raise protocol.MalformedMessage("SECRET's packet header runs past the frame")
    return bytes(rest[:length]), bytes(rest[length:])


# ------------------------------------------------------------------------ the tenant


class _Connection:
    """A blocking frame exchange with a keep (one reply per request)."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.decoder = FrameDecoder(KEEP_FRAMES, MAX_PAYLOAD)
        self.frames: list[Frame] = []

    def receive(self) -> Frame | None:
        """The next frame; None when the keep closed (or reset) before sending one."""
        while not self.frames:
            self.sock.settimeout(self.timeout)
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (ConnectionError, TimeoutError):
                return None
            if not data:
                return None
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def call(self, request: bytes, answer: FrameType) -> bytes:
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(request)
            reply = self.receive()
        except (OSError, ProtocolError) as exc:
            raise ProvisioningRefused(f"the provisioning exchange failed: {exc}") from None
        if reply is None:
            raise ProvisioningRefused("the keep closed the provisioning connection")
        if reply.type == FrameType.ERROR:
            raise ProvisioningRefused(protocol.parse_error(reply.payload))
        if reply.type != answer:
            raise ProvisioningRefused(f"the keep answered {reply.type.name}, expected "
                                      f"{answer.name}")
        return reply.payload


class RemoteLaunch:
    """``sev_launch.LaunchPort`` over a provisioning connection."""

    def __init__(self, connection: _Connection):
        self.connection = connection

    def platform_chain(self) -> bytes:
        return self.connection.call(frame(FrameType.PV_GET_CHAIN), FrameType.PV_CHAIN)

    def start(self, godh_cert: bytes, session: bytes, policy: int) -> None:
        self.connection.call(frame(FrameType.PV_START, start_payload(godh_cert, session, policy)),
                             FrameType.PV_STARTED)

    def measurement(self):  # -> sev_launch.MeasurementReport
        from attestcall.amd import sev_launch as sl

        raw = self.connection.call(frame(FrameType.PV_MEASURE), FrameType.PV_REPORT)
        try:
            return sl.MeasurementReport.parse(raw)
        except sl.LaunchError as exc:
            raise ProvisioningRefused(str(exc)) from None

    def inject_secret(self, header: bytes, packet: bytes) -> None:
        self.connection.call(frame(FrameType.PV_SECRET, secret_payload(header, packet)),
                             FrameType.PV_PROVISIONED)


def trusted_sev_arks(trust_simulated: bool) -> list[bytes]:
    """The SEV (legacy) ARKs a tenant accepts: AMD's pinned ones (the package pins none in
    AMD's SEV format today: ``attestcall.amd.roots`` holds the SNP X.509 roots) and the
    simulator's only with ``trust_simulated``."""
    arks: list[bytes] = []
    if trust_simulated:
        from attestcall.amd.sev_sim import simulated_ark

        arks.append(simulated_ark())
    return arks


def probe(keep: tuple[str, int], timeout: float) -> tuple[int, _Connection | None]:
    """Ask the keep whether it waits for SEV provisioning: (status, open connection when
    status is UNPROVISIONED). A keep that does not answer the magic (an older keep) counts
    as NOT_PREATTESTATION. Raises OSError when the keep cannot be reached."""
    sock = socket.create_connection(keep, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(sock, timeout)
        try:
            sock.sendall(MAGIC)
            reply = connection.receive()
        except (OSError, ProtocolError):
            reply = None
        if reply is None or reply.type != FrameType.PV_STATUS or len(reply.payload) != 1:
            sock.close()
            return NOT_PREATTESTATION, None
        status = reply.payload[0]
        if status != UNPROVISIONED:
            sock.close()
            return status, None
        return status, connection
    except BaseException:
        sock.close()
        raise


def provision(
    connection: _Connection,
    private_key: PrivateKeyTypes,
    launch_digests: Sequence[bytes],
    trusted_arks: Sequence[bytes],
    guest_policy: int | None = None,
) -> list[str]:
    """Provision the keep on ``connection`` (status UNPROVISIONED) with ``private_key``:
    chain, LAUNCH_START, a measurement matching one of ``launch_digests``, then the
    secret. Returns the reasons it refused (empty: provisioned); closes the connection."""
    from attestcall.amd import sev_cert
    from attestcall.amd import sev_launch as sl

    with connection.sock:
        tenant = sl.Tenant(trusted_arks, sl.DEFAULT_POLICY if guest_policy is None
                           else guest_policy)
        port = RemoteLaunch(connection)
        try:
            try:
                start = tenant.start(port.platform_chain())
            except (sev_cert.SevCertError, sl.LaunchError) as exc:
                return [f"the SEV platform chain is not trusted: {exc}"]
            port.start(start.godh_cert, start.session, start.policy)
            report = port.measurement()
            reasons = []
            for digest in launch_digests:
                try:
                    tenant.verify_measurement(report, digest)
                except sl.MeasurementMismatch as exc:
                    reasons.append(str(exc))
                    continue
                break
            else:
                first = reasons[0] if reasons else "no digest to compare with"
                return [f"the SEV launch measurement matches no [sev] launch_digest of the "
                        f"policy ({first})"]
            header, packet = tenant.key_secret(private_key)
            port.inject_secret(header, packet)
        except ProvisioningRefused as exc:
            return [f"the SEV keep refused provisioning: {exc}"]
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)
    return []
