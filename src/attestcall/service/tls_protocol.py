"""The service's HTTPS on :mod:`attestcall.tls` under uvicorn: TLS 1.3 on pyOpenSSL over
memory BIOs, in front of uvicorn's own HTTP protocol.

asyncio (and uvloop) do TLS only with Python's ``ssl``, which has no ML-KEM here. So the
listening socket serves plain bytes to :class:`TlsProtocol`, which runs the handshake and
the records itself (a pyOpenSSL ``Connection`` without a socket: ciphertext in through
``bio_write``, out through ``bio_read``) and hands the plaintext to the HTTP protocol it
wraps (:class:`~attestcall.service.serving.HeaderDeadlineProtocol`) through
:class:`_TlsTransport`, a transport over the connection. The HTTP protocol is told of the
connection only once the handshake is done, so its request-head deadline starts then, as
it did under asyncio's TLS. The handshake has its own deadline (:data:`HANDSHAKE_TIMEOUT`,
asyncio's default); a client that fails it is closed without an HTTP answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

HANDSHAKE_TIMEOUT = 60.0  # seconds, as asyncio's ssl_handshake_timeout
_CHUNK = 1 << 16


class _TlsTransport(asyncio.Transport):
    """What the HTTP protocol writes to and closes: the TLS connection over the real
    transport."""

    def __init__(self, outer: TlsProtocol):
        super().__init__()
        self._outer = outer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._outer.send(bytes(data))

    def writelines(self, chunks) -> None:  # type: ignore[override]
        self._outer.send(b"".join(chunks))

    def close(self) -> None:
        self._outer.close()

    def abort(self) -> None:
        self._outer.abort()

    def is_closing(self) -> bool:
        return self._outer.closing

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self._outer.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        self._outer.transport.resume_reading()  # type: ignore[union-attr]

    def is_reading(self) -> bool:
        return self._outer.transport.is_reading()  # type: ignore[union-attr]

    def get_write_buffer_size(self) -> int:
        return self._outer.transport.get_write_buffer_size()  # type: ignore[union-attr]

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._outer.transport.set_write_buffer_limits(high, low)  # type: ignore[union-attr]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sslcontext":
            return self._outer.context
        if name == "ssl_object":
            return self._outer.connection
        if name == "cipher":
            return self._outer.connection.get_cipher_name()
        return self._outer.transport.get_extra_info(name, default)  # type: ignore[union-attr]


class TlsProtocol(asyncio.Protocol):
    """TLS in front of the HTTP protocol ``inner`` (an asyncio Protocol), with
    ``context`` (:func:`attestcall.tls.server_context`)."""

    def __init__(self, inner: asyncio.Protocol, context: SSL.Context, *,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 on_handshake: Callable[[SSL.Connection], None] | None = None):
        self.inner = inner
        self.context = context
        self.connection = SSL.Connection(context, None)
        self.connection.set_accept_state()
        self.handshake_timeout = handshake_timeout
        self.on_handshake = on_handshake
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._established = False
        self._timer: asyncio.TimerHandle | None = None

    # -- the real transport's events -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.handshake_timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.connection.bio_write(data)
        if not self._established and not self._handshake():
            return
        plaintext = bytearray()
        ended = False
        while True:
            try:
                plaintext += self.connection.recv(_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                ended = True
                break
            except SSL.Error:
                self._flush()
                self.abort()
                return
        self._flush()  # post-handshake messages, alerts
        if plaintext:
            self.inner.data_received(bytes(plaintext))
        if ended and not self.closing:
            self.inner.eof_received()
            self.close()

    def eof_received(self) -> bool | None:
        if self._established:
            return self.inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.closing = True
        if self._established:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._established:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._established:
            self.inner.resume_writing()

    # -- the handshake ---------------------------------------------------------------

    def _handshake(self) -> bool:
        """Advance the handshake; True once it is done (the HTTP protocol then begins)."""
        try:
            self.connection.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error:
            self._flush()  # the alert, if OpenSSL made one
            self.abort()
            return False
        self._flush()
        self._cancel_timer()
        self._established = True
        if self.on_handshake is not None:
            self.on_handshake(self.connection)
        self.inner.connection_made(_TlsTransport(self))
        return True

    def _handshake_expired(self) -> None:
        self._timer = None
        if not self._established:
            self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- what the HTTP protocol asks -------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.closing or not data:
            return
        try:
            self.connection.sendall(data)  # into the memory BIO: never blocks
        except SSL.Error:
            self.abort()
            return
        self._flush()

    def _flush(self) -> None:
        chunks = []
        while True:
            try:
                chunks.append(self.connection.bio_read(_CHUNK))
            except SSL.WantReadError:
                break
        if chunks and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(chunks))

    def close(self) -> None:
        """close_notify, then the real transport's close (which flushes what is queued)."""
        if self.closing:
            return
        self.closing = True
        try:
            self.connection.shutdown()
        except SSL.Error:
            pass
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()
