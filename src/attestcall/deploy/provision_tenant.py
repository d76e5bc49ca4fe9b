"""The tenant's SEV provisioning transport: :class:`~attestcall.deploy.provisioning.
TenantProvisioning` on a plain TCP connection, driving ``attestcall.amd.formats.sev_launch.Tenant``
(the SEV launch's cryptography) against a remote keep.

:func:`probe` asks a keep whether it waits for its owner; :func:`provision` runs the whole
exchange on the connection it opened: the chain checked against the trusted ARKs,
LAUNCH_START, the measurement checked against the expected launch digests, and only then
the secret holding the tenant's key.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from attestcall.amd.formats import sev_cert
from attestcall.amd.formats import sev_launch as sl
from attestcall.deploy import provisioning as pv
from attestcall.deploy.protocol import ProtocolError
from attestcall.errors import AttestcallError

_RECV_SIZE = 64 << 10
DEFAULT_SEV_KEY_TYPE = "p384"


class ProvisioningRefused(AttestcallError):
    """The keep answered ERROR (firmware or keep refusal) or broke the protocol."""


class KeepLink:
    """A blocking exchange with a keep over the provisioning protocol (one reply per
    request)."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.machine = pv.TenantProvisioning()

    def hello(self) -> pv.Reply | None:
        """Send the magic; the keep's STATUS (or whatever it answered), None when it closed
        (or reset) before answering."""
        self.sock.settimeout(self.timeout)
        self.sock.sendall(self.machine.hello())
        return self._reply()

    def _reply(self) -> pv.Reply | None:
        while (reply := self.machine.next_reply()) is None:
            self.sock.settimeout(self.timeout)
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (ConnectionError, TimeoutError):
                return None
            if not data:
                return None
            self.machine.receive_data(data)
        return reply

    def call(self, request: pv.Request) -> pv.Reply:
        """Send ``request``; its answer. ProvisioningRefused for ERROR, a wrong answer, a
        broken or closed connection."""
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(self.machine.request(request))
            reply = self._reply()
        except pv.OutOfOrder as exc:
            raise ProvisioningRefused(str(exc)) from None
        except (OSError, ProtocolError) as exc:
            raise ProvisioningRefused(f"the provisioning exchange failed: {exc}") from None
        if reply is None:
            raise ProvisioningRefused("the keep closed the provisioning connection")
        if isinstance(reply, pv.Refused):
            raise ProvisioningRefused(reply.reason)
        return reply


class RemoteLaunch:
    """``sev_launch.LaunchPort`` over a provisioning connection."""

    def __init__(self, link: KeepLink):
        self.link = link

    def platform_chain(self) -> bytes:
        reply = self.link.call(pv.GetChain())
        assert isinstance(reply, pv.Chain)
        return reply.chain

    def start(self, godh_cert: bytes, session: bytes, policy: int) -> None:
        self.link.call(pv.Start(godh_cert, session, policy))

    def measurement(self) -> sl.MeasurementReport:
        reply = self.link.call(pv.Measure())
        assert isinstance(reply, pv.Report)
        try:
            return sl.MeasurementReport.parse(reply.report)
        except sl.LaunchError as exc:
            raise ProvisioningRefused(str(exc)) from None

    def inject_secret(self, header: bytes, packet: bytes) -> None:
        self.link.call(pv.Secret(header, packet))


def probe(keep: tuple[str, int], timeout: float) -> tuple[int, KeepLink | None]:
    """Ask the keep whether it waits for SEV provisioning: (status, open link when status
    is UNPROVISIONED). A keep that does not answer the magic (an older keep) counts as
    NOT_PREATTESTATION. Raises OSError when the keep cannot be reached."""
    sock = socket.create_connection(keep, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = KeepLink(sock, timeout)
        try:
            reply = link.hello()
        except (OSError, ProtocolError):
            reply = None
        if not isinstance(reply, pv.Status):
            sock.close()
            return pv.NOT_PREATTESTATION, None
        if reply.status != pv.UNPROVISIONED:
            sock.close()
            return reply.status, None
        return reply.status, link
    except BaseException:
        sock.close()
        raise


def provision(
    link: KeepLink,
    private_key: PrivateKeyTypes,
    launch_digests: Sequence[bytes],
    trusted_arks: Sequence[bytes],
    guest_policy: int | None = None,
) -> list[str]:
    """Provision the keep on ``link`` (status UNPROVISIONED) with ``private_key``: chain,
    LAUNCH_START, a measurement matching one of ``launch_digests``, then the secret.
    Returns the reasons it refused (empty: provisioned); closes the connection."""
    with link.sock:
        tenant = sl.Tenant(trusted_arks, sl.DEFAULT_POLICY if guest_policy is None
                           else guest_policy)
        port = RemoteLaunch(link)
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
            link.sock.shutdown(socket.SHUT_RDWR)
    return []
