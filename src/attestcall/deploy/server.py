"""``attestcall keep serve``: a keep that proves itself over TLS 1.3 and runs what tenants
deliver.

:func:`serve` opens the keep, makes its identity once (key made here, evidence bound to
it, :mod:`attestcall.deploy.identity`), and serves tenants with :class:`KeepServer`: the
accept loop and a thread per connection. Each connection: TLS 1.3 handshake under a
timeout (contexts in :mod:`attestcall.tls`), then the tenant's session
(:mod:`attestcall.deploy.session`).

Idle and slow connections cannot deny service. The accept loop never waits for a tenant
slot: it takes every connection, and closes at once the ones beyond ``max_connections``
or beyond ``max_connections_per_address`` from one source address (an IPv6 address counts
by its /64). The handshake, and the wait for the tenant's first bytes after it, hold
nothing but their thread and are bounded (``handshake_timeout``, then ``read_timeout``);
only a tenant that has sent its first bytes takes one of the ``max_tenants`` session slots,
at most ``max_tenants_per_address`` of them per source address, waiting for one up to
``receive_deadline`` (then it is told the keep is busy).

A keep whose owner provisions it (SEV pre-attestation: the opened keep has a
``provisioner``) starts unprovisioned: no key, no TLS. The server peeks the first byte of
each connection: a TLS record (0x16) goes the TLS way (an unprovisioned keep closes it at
once), the provisioning magic goes to the provisioning transport
(:mod:`attestcall.deploy.provision_keep`), which drives a launch for one tenant at a time.
Once a tenant's secret is in, the identity is made from the delivered key and TLS served
with it. Other keeps answer the magic "not a pre-attestation keep".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO, cast

from OpenSSL import SSL

from attestcall import abi
from attestcall.deploy import provisioning as pv
from attestcall.deploy.connection import format_address
from attestcall.deploy.identity import KeepIdentity, make_identity
from attestcall.deploy.provision_keep import ProvisioningTransport
from attestcall.deploy.runner import WasmSandbox
from attestcall.deploy.session import SerialSource, TenantSessions
from attestcall.deploy.settings import ServerSettings, ServerStats
from attestcall.errors import AttestcallError, UsageError
from attestcall.tls import TlsError, TlsSocket

__all__ = ["KeepServer", "Renewal", "ServerSettings", "ServerStats", "serve"]

_POLL_SECONDS = 0.2
RENEW_FRACTION = 2 / 3  # of the certificate's remaining lifetime when it was received
RETRY_SECONDS = 5.0  # after a failed renewal, at most this long before the next attempt


class KeepServer:
    """Serves one keep's identity and runs tenants' workloads on its evidence source."""

    def __init__(
        self,
        source: abi.EvidenceSource | None,
        identity: KeepIdentity | None,
        settings: ServerSettings | None = None,
        *,
        log: TextIO | None = None,
        provisioner: pv.Provisioner | None = None,
        name: str = "attestcall keep",
    ):
        """``source`` and ``identity`` of a keep that proves itself; or both None and the
        ``provisioner`` of a keep that waits for a tenant to provision it over the
        network (its identity is then made with ``name``)."""
        if (source is None) != (identity is None) or (source is None and provisioner is None):
            raise ValueError("give source and identity, or the provisioner of a keep that "
                             "waits for its owner")
        self.source = SerialSource(source) if source is not None else None
        self.identity = identity
        self.settings = settings or ServerSettings()
        self.log = log
        self.stats = ServerStats()
        self.context = identity.server_context() if identity is not None else None
        self.name = name
        self.keep: Any = None  # the keep once provisioned over the network (closed with us)
        self.sandbox = WasmSandbox(run_timeout=self.settings.run_timeout,
                                   memory_limit=self.settings.memory_limit)
        self.sessions = TenantSessions(self.settings, self.stats, self.sandbox, self._say)
        self.provisioning = ProvisioningTransport(
            provisioner, self.settings, self.stats, self._say,
            provisioned=lambda: self.provisioned, on_provisioned=self._become_provisioned)
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._slots = Slots(self.settings.max_tenants, self.settings.max_tenants_per_address)
        self._connections = Slots(self.settings.max_connections,
                                  self.settings.max_connections_per_address)
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
            try:
                raw, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            self.stats.add(connections=1)
            if not self._connections.take(address_key(peer[0]), timeout=0):
                self.stats.add(over_limit=1)
                raw.close()  # before reading a byte: the cheapest refusal there is
                continue
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
        """Whether the keep serves TLS (always, except a keep waiting for its owner)."""
        return self.context is not None

    def _become_provisioned(self, keep: Any) -> None:
        """The launch a tenant provisioned is running: serve TLS with its identity."""
        try:
            identity = make_identity(keep.source, name=self.name)
            context = identity.server_context()
        except BaseException:
            keep.close()
            raise
        with self._lock:
            self.source = SerialSource(keep.source)
            self.identity = identity
            self.keep = keep
            self.context = context
        self.stats.add(provisioned=1)

    def replace_identity(self, identity: KeepIdentity) -> None:
        """Serve ``identity`` to new connections; connections already open keep theirs."""
        context = identity.server_context()
        with self._lock:
            self.identity = identity
            self.context = context

    # ------------------------------------------------------------------ connections

    def _say(self, peer: Any, message: str) -> None:
        if self.log is not None:
            print(f"attestcall: tenant {format_address(*peer[:2])}: {message}",
                  file=self.log, flush=True)

    def _connection(self, raw: socket.socket, peer: Any) -> bool:
        """Handle one connection (its place among the connections taken by the accept
        loop); True when it was a TLS tenant (``once`` counts those)."""
        with self._lock:
            self._live.add(raw)
        key = address_key(peer[0])
        deadline = time.monotonic() + self.settings.handshake_timeout
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
                self.provisioning.handle(raw, peer)
                return False
            with self._lock:
                context, source = self.context, self.source
            if context is None or source is None:
                self.stats.add(unprovisioned_tls=1)
                self._say(peer, "TLS refused: this keep has not been provisioned yet")
                return False
            try:
                tls = TlsSocket.accept(context, raw, max(0.001, deadline - time.monotonic()))
            except OSError as exc:  # TlsError, TimeoutError, a reset
                self.stats.add(handshake_failures=1)
                reason = exc.reason if isinstance(exc, TlsError) else (exc.strerror or exc)
                self._say(peer, f"TLS handshake failed: {reason}")
                return True
            self.stats.handshake(tls.group)
            with tls:
                if not tls.readable(self.settings.read_timeout):
                    self.stats.add(silent_tenants=1)
                    self._say(peer, "sent nothing after the TLS handshake "
                              f"({self.settings.read_timeout:g} s)")
                    return True
                if not self._slots.take(key, timeout=self.settings.receive_deadline):
                    self.stats.add(busy=1)
                    self.sessions.refuse(tls, peer, "the keep is busy: every tenant slot "
                                         "stayed taken (try again later)")
                    return True
                try:
                    self.sessions.handle(tls, peer, source)
                finally:
                    self._slots.give(key)
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
            self._connections.give(key)


def address_key(host: str) -> str:
    """What a source address counts as for the per-address limits: itself, or for IPv6
    its /64 (one host commonly holds a whole /64)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Slots:
    """At most ``total`` held at once, at most ``per_key`` of them by one key."""

    def __init__(self, total: int, per_key: int):
        if total < 1 or per_key < 1:
            raise ValueError("the limits must be at least 1")
        self.total, self.per_key = total, per_key
        self._held: dict[str, int] = {}
        self._count = 0
        self._changed = threading.Condition()

    def take(self, key: str, timeout: float) -> bool:
        """Take one for ``key``, waiting up to ``timeout`` seconds; whether it was taken."""
        end = time.monotonic() + timeout
        with self._changed:
            while self._count >= self.total or self._held.get(key, 0) >= self.per_key:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            self._count += 1
            self._held[key] = self._held.get(key, 0) + 1
            return True

    def give(self, key: str) -> None:
        with self._changed:
            self._count -= 1
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
            self._changed.notify_all()

    def held(self, key: str | None = None) -> int:
        with self._changed:
            return self._count if key is None else self._held.get(key, 0)


class Renewal:
    """Renews the server's service-issued certificate in a background thread: at two
    thirds of its lifetime (counted from when it was received), a new key, new evidence
    and a new certificate, served to new connections. A failed attempt is logged and
    retried until it succeeds or the renewal is stopped."""

    def __init__(self, server: KeepServer, service: str, key_type: str | None, *,
                 name: str, log: TextIO | None = None, tls: SSL.Context | None = None):
        self.server = server
        self.service = service
        self.tls = tls
        self.key_type = key_type
        self.name = name
        self.log = log
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="renewal", daemon=True)

    @staticmethod
    def delay(identity: KeepIdentity, now: dt.datetime | None = None) -> float:
        """Seconds from ``now`` until ``identity``'s certificate is due for renewal."""
        now = now or dt.datetime.now(dt.UTC)
        remaining = (identity.certificate.not_valid_after_utc - now).total_seconds()
        return max(0.0, remaining * RENEW_FRACTION)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _say(self, message: str) -> None:
        if self.log is not None:
            print(f"attestcall: {message}", file=self.log, flush=True)

    def _run(self) -> None:
        from attestcall.deploy.service_client import obtain_identity

        with self.server._lock:
            identity = self.server.identity
        if identity is None:
            return
        wait = self.delay(identity)
        while not self._stop.wait(wait):
            source = self.server.source
            if source is None:
                return
            try:
                identity = obtain_identity(source, self.service, self.key_type,
                                           name=self.name, tls=self.tls)
            except AttestcallError as exc:
                wait = min(RETRY_SECONDS, max(self.delay(identity) / 2, 0.5))
                self._say(f"certificate renewal failed (retrying in {wait:.1f} s): {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a bug must not end renewal silently
                wait = RETRY_SECONDS
                self._say(f"certificate renewal failed (internal error): {exc!r}")
                continue
            self.server.replace_identity(identity)
            self.renewals += 1
            self._say(f"certificate renewed: serial {identity.certificate.serial_number:x}, "
                      f"valid until {identity.certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
            wait = self.delay(identity)


def serve(
    tee: str,
    listen: tuple[str, int],
    *,
    once: bool = False,
    ready: Callable[[str, int], None] | None = None,
    settings: ServerSettings | None = None,
    out: TextIO | None = None,
    log: TextIO | None = None,
    service: str | None = None,
    service_ca: str | None = None,
    **keep_options: Any,
) -> None:
    """Open a ``tee`` keep (options as ``open_keep``), make its identity and serve tenants
    on ``listen`` until Ctrl-C (or one tenant with ``once``). Prints the listening address
    on ``out`` (stdout) and one line per tenant on ``log`` (stderr); ``ready(host, port)``
    is called once listening. A keep whose owner provisions it (it has a ``provisioner``)
    waits, unprovisioned, for a tenant to provision it over the network.

    With ``service`` (the attestation service's URL) the keep's certificate is issued by
    that service (:mod:`attestcall.deploy.service_client`) and renewed at two thirds of its
    lifetime; if the service refuses or cannot be reached at start, the error is raised and
    nothing is served. Pre-attestation keeps are refused with ``service``. An https
    service's certificate is verified against ``service_ca`` (a PEM file) if given, else
    the system's trust store; plain http to another machine is warned about on ``log``."""
    from attestcall.keep.platforms import open_keep
    from attestcall.tees import registry

    out = sys.stdout if out is None else out
    log = sys.stderr if log is None else log
    service_tls: SSL.Context | None = None
    if service is not None:
        from attestcall.deploy import service_client

        found = registry().backend(tee)
        record = found[0] if found is not None else None
        if record is not None and record.pre_attestation:
            raise service_client.PreAttestationKeep(
                service_client.pre_attestation_message(record.label))
        service_tls = service_client.service_tls(service, service_ca)
        warning = service_client.plain_http_warning(service)
        if warning is not None:
            print(f"attestcall: {warning}", file=log, flush=True)
    elif service_ca is not None:
        raise UsageError("--service-ca goes with --service URL")
    settings = settings or ServerSettings()
    with open_keep(tee, b"", **keep_options) as keep:
        provisioner = cast("pv.Provisioner | None", keep.provisioner)
        renewal: Renewal | None = None
        if service is not None and provisioner is not None:
            from attestcall.deploy.service_client import PreAttestationKeep, pre_attestation_message

            raise PreAttestationKeep(pre_attestation_message(tee))
        if service is not None:
            from attestcall.deploy.service_client import obtain_identity

            name = f"attestcall keep ({tee})"
            identity = obtain_identity(keep.source, service, settings.key_type, name=name,
                                       tls=service_tls)
            server = KeepServer(keep.source, identity, settings, log=log)
            renewal = Renewal(server, service, settings.key_type, name=name, log=log,
                              tls=service_tls)
            print(f"attestcall: certificate from {service}: serial "
                  f"{identity.certificate.serial_number:x}", file=log, flush=True)
            what = (f"keep {tee} (technology {identity.technology}, certified by the "
                    "attestation service)")
        elif provisioner is not None:
            if provisioner.owner_choices:
                raise UsageError(f"{tee} over the network: the tenant chooses the "
                                 f"{provisioner.owner_choices[0]}")
            server = KeepServer(None, None, settings, log=log, provisioner=provisioner,
                                name=f"attestcall keep ({tee})")
            print(f"attestcall: {provisioner.describe()}; waiting for a tenant to provision "
                  "it", file=log, flush=True)
            what = f"keep {tee} (technology {provisioner.technology}, unprovisioned)"
        else:
            identity = make_identity(keep.source, settings.key_type,
                                     name=f"attestcall keep ({tee})")
            server = KeepServer(keep.source, identity, settings, log=log)
            what = f"keep {tee} (technology {identity.technology})"
        if renewal is not None:
            renewal.start()
        try:
            _run(server, listen, what, once=once, ready=ready, out=out, log=log)
        finally:
            if renewal is not None:
                renewal.stop()


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
        print(f"attestcall: {what} listening on {format_address(host, port)}", file=out,
              flush=True)
        if ready is not None:
            ready(host, port)
        server.serve_forever(once=once)
    except KeyboardInterrupt:
        print("attestcall: keep stopped", file=log, flush=True)
    finally:
        server.close()
