"""One tenant's session over TLS, in the keep: the deployment protocol
(:mod:`attestcall.deploy.protocol`) on a socket.

Every read is under ``read_timeout``, HELLO and the whole workload under
``receive_deadline``; then the module runs in the keep (its own get_attestation answered by
the keep's source, serialised across tenants: :class:`SerialSource`), its output streamed
back while it runs, then EXIT. A malformed, oversized or slow tenant gets ERROR and is
disconnected; the others are not affected.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import wasmtime

from attestcall import abi
from attestcall.deploy import connection, protocol
from attestcall.deploy.connection import TenantGone
from attestcall.deploy.protocol import KeepSession, ProtocolError, Workload
from attestcall.deploy.runner import WasmSandbox, WorkloadRejected
from attestcall.deploy.settings import ServerSettings, ServerStats
from attestcall.tls import TlsSocket

Say = Callable[[Any, str], None]


class SerialSource:
    """An EvidenceSource shared by concurrent tenants: one request at a time."""

    def __init__(self, source: abi.EvidenceSource):
        self._source = source
        self._lock = threading.Lock()

    @property
    def technology(self) -> int:
        return int(self._source.technology)

    def evidence_size(self) -> int:
        with self._lock:
            return self._source.evidence_size()

    def evidence(self, nonce: bytes) -> bytes:
        with self._lock:
            return self._source.evidence(nonce)


class OutputStream:
    """Sends OUTPUT frames from a thread while the module runs; the module's writes wait
    when the queue is full (back-pressure). A tenant that stops reading (write timeout) or
    leaves makes the rest of the output be discarded, not the module blocked."""

    def __init__(self, tls: TlsSocket):
        self.tls = tls
        self.queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=64)
        self.broken: OSError | None = None
        self.thread = threading.Thread(target=self._send, name="keep-output", daemon=True)
        self.thread.start()

    def put(self, stream: int, data: bytes) -> None:
        if data:
            self.queue.put((stream, data))

    def _send(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.broken is not None:
                continue
            try:
                for frame in protocol.output(*item):
                    self.tls.sendall(frame)
            except OSError as exc:  # TlsError and timeouts are OSErrors
                self.broken = exc

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()


class TenantSessions:
    """Runs the deployment protocol for each TLS tenant of one keep."""

    def __init__(self, settings: ServerSettings, stats: ServerStats, sandbox: WasmSandbox,
                 say: Say):
        self.settings = settings
        self.stats = stats
        self.sandbox = sandbox
        self.say = say

    def handle(self, tls: TlsSocket, peer: Any, source: abi.EvidenceSource) -> None:
        """The whole session on an established TLS connection."""
        session = KeepSession(max_module_size=self.settings.max_module_size)
        try:
            workload = self._receive(tls, session)
        except ProtocolError as exc:
            self.refuse(tls, peer, str(exc))
            return
        except TenantGone as exc:
            self.say(peer, f"connection lost: {exc}")
            return
        if workload is None:
            self.stats.add(silent_tenants=1)
            self.say(peer, "closed the connection without sending anything")
            return
        try:
            module = self.sandbox.compile(workload.module)
        except WorkloadRejected as exc:
            self.refuse(tls, peer, str(exc))
            return
        self._run(tls, peer, workload, module, source)

    def _receive(self, tls: TlsSocket, session: KeepSession) -> Workload | None:
        deadline = time.monotonic() + self.settings.receive_deadline
        late = f"the workload did not arrive within {self.settings.receive_deadline:g} s"
        while True:
            data = connection.receive(tls, self.settings.read_timeout, deadline, late)
            if not data:
                session.end()
                return None
            before = session.workload_bytes
            try:
                workload = session.receive(data)
            finally:
                self.stats.add(workload_bytes=session.workload_bytes - before)
            if workload is not None:
                return workload

    def _run(self, tls: TlsSocket, peer: Any, workload: Workload, module: wasmtime.Module,
             source: abi.EvidenceSource) -> None:
        tls.settimeout(self.settings.write_timeout)
        stream = OutputStream(tls)
        try:
            status = self.sandbox.run(module, workload.args, source, stream.put)
        except WorkloadRejected as exc:
            stream.finish()
            self.refuse(tls, peer, str(exc))
            return
        except Exception as exc:
            stream.finish()
            self.stats.error(f"internal error running a workload: {exc!r}")
            self.refuse(tls, peer, "internal error in the keep while running the workload")
            return
        stream.finish()
        self.stats.add(workloads_run=1)
        if stream.broken is not None:
            self.say(peer, f"ran {len(workload.module)}-byte module, exit {status}; output "
                     f"lost: {stream.broken}")
            return
        try:
            tls.sendall(protocol.exit_frame(status))
        except OSError:
            pass
        self.say(peer, f"ran {len(workload.module)}-byte module, exit {status}")

    def refuse(self, tls: TlsSocket, peer: Any, message: str) -> None:
        """ERROR, then read (and drop) what the tenant still sends for a moment, so that
        closing does not reset the connection before the ERROR frame arrives."""
        self.stats.error(message)
        self.say(peer, f"error: {message}")
        try:
            connection.send(tls, protocol.error_frame(message), self.settings.write_timeout)
        except TenantGone:
            return
        connection.drain(tls)
