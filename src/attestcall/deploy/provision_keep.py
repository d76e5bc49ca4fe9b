"""The keep's SEV provisioning transport: :class:`~attestcall.deploy.provisioning.
KeepProvisioning` on a plain TCP connection, driving the keep's launch.

A keep waiting for its owner (its :class:`~attestcall.deploy.provisioning.Provisioner`)
runs one tenant's exchange at a time, each on a fresh launch; the others get STATUS
UNAVAILABLE. A keep without a provisioner answers NOT_PREATTESTATION. Once a tenant's
secret is in, the launch is finished and the running keep handed to ``on_provisioned``
(which makes the identity and starts serving TLS); only then does the tenant get
PROVISIONED.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from attestcall.deploy import connection
from attestcall.deploy import provisioning as pv
from attestcall.deploy.connection import TenantGone
from attestcall.deploy.protocol import ProtocolError
from attestcall.deploy.settings import ServerSettings, ServerStats
from attestcall.errors import AttestcallError

Say = Callable[[Any, str], None]


class ProvisioningTransport:
    """The provisioning protocol on the connections whose first byte is the magic's."""

    def __init__(
        self,
        provisioner: pv.Provisioner | None,
        settings: ServerSettings,
        stats: ServerStats,
        say: Say,
        *,
        provisioned: Callable[[], bool],
        on_provisioned: Callable[[Any], None],
    ):
        self.provisioner = provisioner
        self.settings = settings
        self.stats = stats
        self.say = say
        self.provisioned = provisioned
        self.on_provisioned = on_provisioned
        self._busy = threading.Lock()

    def handle(self, raw: socket.socket, peer: Any) -> None:
        """One provisioning connection, from the magic to the last reply."""
        deadline = time.monotonic() + self.settings.receive_deadline
        machine = pv.KeepProvisioning()
        try:
            while not machine.magic_received:
                data = self._receive(raw, deadline)
                if not data:
                    return
                machine.receive_data(data)
            if self.provisioner is None:
                self._send(raw, machine.status(pv.NOT_PREATTESTATION))
                return
            if self.provisioned() or not self._busy.acquire(blocking=False):
                self._send(raw, machine.status(pv.UNAVAILABLE))
                return
            try:
                if self.provisioned():
                    self._send(raw, machine.status(pv.UNAVAILABLE))
                    return
                self._send(raw, machine.status(pv.UNPROVISIONED))
                refusal = self._exchange(raw, peer, machine, self.provisioner, deadline)
            finally:
                self._busy.release()  # before the last word: the next tenant may start
            if refusal is not None:
                self._refuse(raw, peer, machine, refusal)
        except ProtocolError as exc:
            self._refuse(raw, peer, machine, str(exc))
        except TenantGone as exc:
            self.say(peer, f"provisioning connection lost: {exc}")

    def _exchange(self, raw: socket.socket, peer: Any, machine: pv.KeepProvisioning,
                  provisioner: pv.Provisioner, deadline: float) -> str | None:
        """Drive a fresh launch with the tenant's requests; the launch's refusal, if any
        (ProtocolError for the tenant's own mistakes)."""
        launch = provisioner.launch()  # a fresh launch per tenant
        while True:
            request = machine.next_request()
            if request is None:
                data = self._receive(raw, deadline)
                if not data:
                    machine.end()
                    self.say(peer, "left before provisioning the keep")
                    return None
                machine.receive_data(data)
                continue
            try:
                if isinstance(request, pv.GetChain):
                    reply = machine.reply(pv.Chain(launch.platform_chain()))
                elif isinstance(request, pv.Start):
                    launch.start(request.godh_cert, request.session, request.policy)
                    reply = machine.reply(pv.Started())
                elif isinstance(request, pv.Measure):
                    reply = machine.reply(pv.Report(launch.measurement().pack()))
                else:
                    launch.inject_secret(request.header, request.packet)
                    self.on_provisioned(launch.finish({"provisioned_by": str(peer)}))
                    self._send(raw, machine.reply(pv.Provisioned()))
                    self.say(peer, "provisioned this keep; serving TLS with its key")
                    return None
            except ProtocolError:
                raise
            except AttestcallError as exc:  # firmware refusals, an unusable secret
                return f"{type(exc).__name__}: {exc}"
            self._send(raw, reply)

    def _receive(self, raw: socket.socket, deadline: float) -> bytes:
        late = f"provisioning did not finish within {self.settings.receive_deadline:g} s"
        return connection.receive(raw, self.settings.read_timeout, deadline, late)

    def _send(self, raw: socket.socket, data: bytes) -> None:
        connection.send(raw, data, self.settings.write_timeout)

    def _refuse(self, raw: socket.socket, peer: Any, machine: pv.KeepProvisioning,
                message: str) -> None:
        self.stats.add(provisioning_refusals=1)
        self.stats.error(message)
        self.say(peer, f"provisioning refused: {message}")
        try:
            self._send(raw, machine.refuse(message))
            raw.shutdown(socket.SHUT_WR)
        except (OSError, TenantGone):
            return
        connection.drain(raw)
