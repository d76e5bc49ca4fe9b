"""``attestcall keep serve``: a keep that proves itself over TLS 1.3 and runs what tenants
deliver.

:func:`serve` opens the keep, makes its identity once (key made here, evidence bound to
it, :mod:`attestcall.deploy.identity`), and serves tenants with :class:`KeepServer`: a
thread per connection, at most ``max_tenants`` at once (the rest wait in the listen
backlog). Each connection: TLS 1.3 handshake (under a timeout), then the protocol of
:mod:`attestcall.deploy.protocol` — every read under ``read_timeout``, HELLO and the whole
workload under ``receive_deadline`` — then the module runs in the keep (its own
get_attestation answered by the same keep source, serialised across tenants), its output
streamed back while it runs, then EXIT. A malformed, oversized or slow tenant gets ERROR
and is disconnected; the others are not affected.

A SEV keep (pre-attestation) starts unprovisioned: no key, no TLS. The server peeks the
first byte of each connection: a TLS record (0x16) goes the TLS way (an unprovisioned keep
closes it at once), the provisioning magic goes to :mod:`attestcall.deploy.provision`,
which drives the launch (:class:`attestcall.keep.sev.SevLaunch`) for one tenant at a time.
Once a tenant's secret is in, the launch is finished, the identity made from the delivered
key, and TLS served with it. Other keeps answer the magic "not a pre-attestation keep".
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from attestcall import abi
from attestcall.deploy import protocol
from attestcall.deploy import provision as pv
from attestcall.deploy.identity import KeepIdentity, make_identity
from attestcall.deploy.protocol import (
    FrameDecoder,
    FrameType,
    KeepSession,
    ProtocolError,
    ReadTimeout,
    Workload,
)
from attestcall.deploy.runner import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_RUN_TIMEOUT,
    WasmSandbox,
    WorkloadRejected,
)
from attestcall.deploy.tls import server_context
from attestcall.errors import AttestcallError, UsageError

_RECV_SIZE = 64 << 10
_DRAIN_LIMIT = 1 << 20
_DRAIN_SECONDS = 1.0
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ServerSettings:
    """How a keep server behaves; the defaults suit a real deployment."""

    key_type: str | None = None  # default per technology (identity.DEFAULT_KEY_TYPES)
    max_tenants: int = 16
    handshake_timeout: float = 10.0
    read_timeout: float = 10.0
    receive_deadline: float = 120.0
    write_timeout: float = 30.0
    run_timeout: float = DEFAULT_RUN_TIMEOUT
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    max_module_size: int = protocol.MAX_MODULE_SIZE


@dataclass
class ServerStats:
    """What the server saw (thread-safe); tests read it."""

    connections: int = 0
    handshake_failures: int = 0
    workload_bytes: int = 0  # payload bytes of WORKLOAD frames received, all tenants
    workloads_run: int = 0
    silent_tenants: int = 0  # closed after the handshake without sending a byte
    provisioned: int = 0  # SEV launches finished with a tenant's key
    provisioning_refusals: int = 0  # provisioning exchanges that ended in ERROR
    unprovisioned_tls: int = 0  # TLS attempts while the SEV keep had no key yet
    finished: int = 0  # connections fully handled
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)


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


class _TenantGone(Exception):
    """The connection broke; nothing more can be sent."""


class _OutputStream:
    """Sends OUTPUT frames from a thread while the module runs; the module's writes wait
    when the queue is full (back-pressure). A tenant that stops reading (write timeout) or
    leaves makes the rest of the output be discarded, not the module blocked."""

    def __init__(self, tls: ssl.SSLSocket):
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
            except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
                self.broken = exc

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class KeepServer:
    """Serves one keep's identity and runs tenants' workloads on its evidence source."""

    def __init__(
        self,
        source: abi.EvidenceSource | None,
        identity: KeepIdentity | None,
        settings: ServerSettings | None = None,
        *,
        log: TextIO | None = None,
        sev_firmware: Any = None,
        name: str = "attestcall keep (sev-sim)",
    ):
        """``source`` and ``identity`` of a keep that proves itself; or both None and
        ``sev_firmware`` (a ``SimulatedSevFirmware``) for a SEV keep that waits for a
        tenant to provision it over the network."""
        if (source is None) != (identity is None) or (source is None and sev_firmware is None):
            raise ValueError("give source and identity, or sev_firmware for a SEV keep")
        self.source = SerialSource(source) if source is not None else None
        self.identity = identity
        self.settings = settings or ServerSettings()
        self.log = log
        self.stats = ServerStats()
        self.context = server_context(identity) if identity is not None else None
        self.sev_firmware = sev_firmware
        self.name = name
        self.keep: Any = None  # the SEV keep once provisioned (closed with the server)
        self._provisioning = threading.Lock()
        self.sandbox = WasmSandbox(run_timeout=self.settings.run_timeout,
                                   memory_limit=self.settings.memory_limit)
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._slots = threading.BoundedSemaphore(self.settings.max_tenants)
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()

    # -------------------------------------------------------------------- lifecycle

    def bind(self, listen: tuple[str, int]) -> tuple[str, int]:
        """Listen on ``listen`` (port 0 picks one); returns the address bound."""
        host, port = listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(64)
            listener.settimeout(_POLL_SECONDS)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        bound = listener.getsockname()
        self.address = (bound[0], bound[1])
        return self.address

    def serve_forever(self, *, once: bool = False) -> None:
        """Accept tenants until :meth:`stop` (or after the first one with ``once``)."""
        if self._listener is None:
            raise RuntimeError("bind() first")
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=_POLL_SECONDS):
                continue
            try:
                raw, peer = self._listener.accept()
            except TimeoutError:
                self._slots.release()
                continue
            except OSError:
                self._slots.release()
                if self._stopping.is_set():
                    return
                raise
            self.stats.add(connections=1)
            if once:
                if self._connection(raw, peer):
                    return
                continue
            thread = threading.Thread(target=self._connection, args=(raw, peer),
                                      name=f"tenant-{peer[1]}", daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def stop(self) -> None:
        """Stop accepting; live connections are cut."""
        self._stopping.set()
        with self._lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self, timeout: float = 2.0) -> None:
        self.stop()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        end = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        self.sandbox.close()
        if self.keep is not None:
            self.keep.close()

    @property
    def provisioned(self) -> bool:
        """Whether the keep serves TLS (always, except a SEV keep not provisioned yet)."""
        return self.context is not None

    # ------------------------------------------------------------------ connections

    def _say(self, peer: Any, message: str) -> None:
        if self.log is not None:
            print(f"attestcall: tenant {_format_address(*peer[:2])}: {message}",
                  file=self.log, flush=True)

    def _connection(self, raw: socket.socket, peer: Any) -> bool:
        """Handle one connection; True when it was a TLS tenant (``once`` counts those)."""
        with self._lock:
            self._live.add(raw)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames: no Nagle
            raw.settimeout(self.settings.handshake_timeout)
            try:
                first = raw.recv(1, socket.MSG_PEEK)
            except OSError as exc:
                self.stats.add(handshake_failures=1)
                self._say(peer, f"TLS handshake failed: nothing received ({exc})")
                return True
            if not first:
                self.stats.add(handshake_failures=1)
                self._say(peer, "TLS handshake failed: closed before sending anything")
                return True
            if first == pv.MAGIC_PREFIX[:1]:
                self._provision(raw, peer)
                return False
            context = self.context
            if context is None:
                self.stats.add(unprovisioned_tls=1)
                self._say(peer, "TLS refused: this SEV keep has not been provisioned yet")
                return False
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.stats.add(handshake_failures=1)
                self._say(peer, f"TLS handshake failed: {exc}")
                return True
            with tls:
                self._tenant(tls, peer)
            return True
        except Exception as exc:  # a keep bug must not take the server down
            self.stats.error(f"internal error: {exc!r}")
            self._say(peer, f"internal error: {exc!r}")
            return True
        finally:
            raw.close()
            with self._lock:
                self._live.discard(raw)
                self._threads.discard(threading.current_thread())
            self.stats.add(finished=1)
            self._slots.release()

    # ----------------------------------------------------------------- provisioning

    def _provision(self, raw: socket.socket, peer: Any) -> None:
        """The provisioning protocol (attestcall.deploy.provision) on a plain connection."""
        deadline = time.monotonic() + self.settings.receive_deadline
        decoder = FrameDecoder(pv.TENANT_FRAMES, pv.MAX_PAYLOAD)
        buffer = b""
        try:
            while len(buffer) < len(pv.MAGIC):
                data = self._pv_recv(raw, deadline)
                if not data:
                    return
                buffer += data
            if buffer[: len(pv.MAGIC)] != pv.MAGIC:
                self._pv_refuse(raw, peer, "unknown provisioning magic or version")
                return
            if self.sev_firmware is None:
                self._pv_send(raw, pv.status_frame(pv.NOT_PREATTESTATION))
                return
            if self.provisioned or not self._provisioning.acquire(blocking=False):
                self._pv_send(raw, pv.status_frame(pv.UNAVAILABLE))
                return
            try:
                if self.provisioned:
                    self._pv_send(raw, pv.status_frame(pv.UNAVAILABLE))
                    return
                self._pv_send(raw, pv.status_frame(pv.UNPROVISIONED))
                self._pv_session(raw, peer, decoder, buffer[len(pv.MAGIC):], deadline)
            finally:
                self._provisioning.release()
        except ProtocolError as exc:
            self._pv_refuse(raw, peer, str(exc))
        except _TenantGone as exc:
            self._say(peer, f"provisioning connection lost: {exc}")

    def _pv_session(self, raw: socket.socket, peer: Any, decoder: FrameDecoder,
                    pending: bytes, deadline: float) -> None:
        from attestcall.keep.sev import SevLaunch

        launch = SevLaunch(b"", firmware=self.sev_firmware)  # a fresh launch per tenant
        frames = decoder.feed(pending)
        while True:
            while not frames:
                data = self._pv_recv(raw, deadline)
                if not data:
                    decoder.end()
                    self._say(peer, "left before provisioning the keep")
                    return
                frames = decoder.feed(data)
            item = frames.pop(0)
            try:
                if item.type == FrameType.PV_GET_CHAIN:
                    reply = pv.frame(FrameType.PV_CHAIN, launch.platform_chain())
                elif item.type == FrameType.PV_START:
                    launch.start(*pv.parse_start(item.payload))
                    reply = pv.frame(FrameType.PV_STARTED)
                elif item.type == FrameType.PV_MEASURE:
                    reply = pv.frame(FrameType.PV_REPORT, launch.measurement().pack())
                else:
                    launch.inject_secret(*pv.parse_secret(item.payload))
                    self._become_provisioned(launch.finish({"provisioned_by": str(peer)}))
                    self._pv_send(raw, pv.frame(FrameType.PV_PROVISIONED))
                    self._say(peer, "provisioned this SEV keep; serving TLS with its key")
                    return
            except ProtocolError:
                raise
            except AttestcallError as exc:  # firmware refusals, order, an unusable secret
                self._pv_refuse(raw, peer, f"{type(exc).__name__}: {exc}")
                return
            self._pv_send(raw, reply)

    def _become_provisioned(self, keep: Any) -> None:
        try:
            identity = make_identity(keep.source, name=self.name)
            context = server_context(identity)
        except BaseException:
            keep.close()
            raise
        with self._lock:
            self.source = SerialSource(keep.source)
            self.identity = identity
            self.keep = keep
            self.context = context
        self.stats.add(provisioned=1)

    def _pv_recv(self, raw: socket.socket, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("provisioning did not finish within "
                              f"{self.settings.receive_deadline:g} s")
        raw.settimeout(min(self.settings.read_timeout, remaining))
        try:
            return raw.recv(_RECV_SIZE)
        except TimeoutError:
            raise ReadTimeout(f"nothing received for {self.settings.read_timeout:g} s") \
                from None
        except OSError as exc:
            raise _TenantGone(str(exc)) from None

    def _pv_send(self, raw: socket.socket, data: bytes) -> None:
        raw.settimeout(self.settings.write_timeout)
        try:
            raw.sendall(data)
        except OSError as exc:
            raise _TenantGone(str(exc)) from None

    def _pv_refuse(self, raw: socket.socket, peer: Any, message: str) -> None:
        self.stats.add(provisioning_refusals=1)
        self.stats.error(message)
        self._say(peer, f"provisioning refused: {message}")
        with contextlib.suppress(OSError, _TenantGone):
            self._pv_send(raw, protocol.error_frame(message))
            raw.shutdown(socket.SHUT_WR)
            end = time.monotonic() + _DRAIN_SECONDS
            while (left := end - time.monotonic()) > 0:
                raw.settimeout(left)
                if not raw.recv(_RECV_SIZE):
                    break

    # ----------------------------------------------------------------- TLS tenants

    def _tenant(self, tls: ssl.SSLSocket, peer: Any) -> None:
        session = KeepSession(max_module_size=self.settings.max_module_size)
        try:
            workload = self._receive(tls, session)
        except ProtocolError as exc:
            self._refuse(tls, peer, str(exc))
            return
        except _TenantGone as exc:
            self._say(peer, f"connection lost: {exc}")
            return
        if workload is None:
            self.stats.add(silent_tenants=1)
            self._say(peer, "closed the connection without sending anything")
            return
        try:
            module = self.sandbox.compile(workload.module)
        except WorkloadRejected as exc:
            self._refuse(tls, peer, str(exc))
            return
        self._run(tls, peer, workload, module)

    def _receive(self, tls: ssl.SSLSocket, session: KeepSession) -> Workload | None:
        deadline = time.monotonic() + self.settings.receive_deadline
        late = ReadTimeout(f"the workload did not arrive within "
                           f"{self.settings.receive_deadline:g} s")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise late
            tls.settimeout(min(self.settings.read_timeout, remaining))
            try:
                data = tls.recv(_RECV_SIZE)
            except TimeoutError:
                if remaining < self.settings.read_timeout:
                    raise late from None
                raise ReadTimeout(f"nothing received for {self.settings.read_timeout:g} s") \
                    from None
            except OSError as exc:
                raise _TenantGone(str(exc)) from None
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

    def _run(self, tls: ssl.SSLSocket, peer: Any, workload: Workload, module: Any) -> None:
        tls.settimeout(self.settings.write_timeout)
        stream = _OutputStream(tls)
        try:
            status = self.sandbox.run(module, workload.args, self.source, stream.put)
        except WorkloadRejected as exc:
            stream.finish()
            self._refuse(tls, peer, str(exc))
            return
        except Exception as exc:
            stream.finish()
            self.stats.error(f"internal error running a workload: {exc!r}")
            self._refuse(tls, peer, "internal error in the keep while running the workload")
            return
        stream.finish()
        self.stats.add(workloads_run=1)
        if stream.broken is not None:
            self._say(peer, f"ran {len(workload.module)}-byte module, exit {status}; output "
                      f"lost: {stream.broken}")
            return
        with contextlib.suppress(OSError):
            tls.sendall(protocol.exit_frame(status))
        self._say(peer, f"ran {len(workload.module)}-byte module, exit {status}")

    def _refuse(self, tls: ssl.SSLSocket, peer: Any, message: str) -> None:
        """ERROR, then read (and drop) what the tenant still sends for a moment, so that
        closing does not reset the connection before the ERROR frame arrives."""
        self.stats.error(message)
        self._say(peer, f"error: {message}")
        try:
            tls.settimeout(self.settings.write_timeout)
            tls.sendall(protocol.error_frame(message))
        except OSError:
            return
        drained = 0
        end = time.monotonic() + _DRAIN_SECONDS
        with contextlib.suppress(OSError):
            while drained < _DRAIN_LIMIT and (left := end - time.monotonic()) > 0:
                tls.settimeout(left)
                data = tls.recv(_RECV_SIZE)
                if not data:
                    break
                drained += len(data)


def serve(
    tee: str,
    listen: tuple[str, int],
    *,
    once: bool = False,
    ready: Callable[[str, int], None] | None = None,
    settings: ServerSettings | None = None,
    out: TextIO | None = None,
    log: TextIO | None = None,
    **keep_options: Any,
) -> None:
    """Open a ``tee`` keep (options as ``open_keep``), make its identity and serve tenants
    on ``listen`` until Ctrl-C (or one tenant with ``once``). Prints the listening address
    on ``out`` (stdout) and one line per tenant on ``log`` (stderr); ``ready(host, port)``
    is called once listening."""
    from attestcall.keep.platforms import open_keep

    out = sys.stdout if out is None else out
    log = sys.stderr if log is None else log
    settings = settings or ServerSettings()
    if tee == "sev-sim":
        _serve_sev(listen, once=once, ready=ready, settings=settings, out=out, log=log,
                   **keep_options)
        return
    with open_keep(tee, b"", **keep_options) as keep:
        identity = make_identity(keep.source, settings.key_type, name=f"attestcall keep ({tee})")
        server = KeepServer(keep.source, identity, settings, log=log)
        _run(server, listen, f"keep {tee} (technology {identity.technology})", once=once,
             ready=ready, out=out, log=log)


def _serve_sev(
    listen: tuple[str, int],
    *,
    once: bool,
    ready: Callable[[str, int], None] | None,
    settings: ServerSettings,
    out: TextIO,
    log: TextIO,
    **keep_options: Any,
) -> None:
    """A simulated SEV keep that waits, unprovisioned, for a tenant to provision it."""
    from attestcall.amd.sev_sim import SimulatedSevFirmware, load_state
    from attestcall.keep import sev

    sev._check_unknown(keep_options)
    for option in ("key", "policy"):
        if keep_options.get(option) is not None:
            raise UsageError(f"sev-sim over the network: the tenant chooses the {option}")
    firmware = SimulatedSevFirmware(load_state())
    server = KeepServer(None, None, settings, log=log, sev_firmware=firmware,
                        name="attestcall keep (sev-sim)")
    print(f"attestcall: SEV launch digest of this keep (shim image, empty payload): "
          f"{sev.expected_digest(b'').hex()}; waiting for a tenant to provision it",
          file=log, flush=True)
    _run(server, listen, "keep sev-sim (technology 1, unprovisioned)", once=once, ready=ready,
         out=out, log=log)


def _run(
    server: KeepServer,
    listen: tuple[str, int],
    what: str,
    *,
    once: bool,
    ready: Callable[[str, int], None] | None,
    out: TextIO,
    log: TextIO,
) -> None:
    """Bind, say where, serve until Ctrl-C (or one tenant with ``once``), always close."""
    try:
        host, port = server.bind(listen)
        print(f"attestcall: {what} listening on {_format_address(host, port)}", file=out,
              flush=True)
        if ready is not None:
            ready(host, port)
        server.serve_forever(once=once)
    except KeyboardInterrupt:
        print("attestcall: keep stopped", file=log, flush=True)
    finally:
        server.close()
