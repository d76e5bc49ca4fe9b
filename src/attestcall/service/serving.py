"""How uvicorn serves the application: HTTPS, and a bound on slow request heads.

uvicorn parses HTTP with httptools (llhttp, in C) and runs on uvloop's event loop (libuv,
in C): uvicorn's pure-Python h11 parser cost about a tenth of the server's CPU per
certificate under load, asyncio's own loop about another 7% (``bench/bench_service.py``).

What uvicorn (0.54) bounds by itself, and what it does not: ``timeout_keep_alive`` closes a
connection idle *between* requests, but its timer starts only once a response is complete
and the first byte of the next request cancels it. Nothing bounds a connection that sends
nothing at all, a request head that arrives a byte at a time (slowloris) or never ends, or a
request body. Each such client would hold a socket and its buffers for as long as it liked.

The two bounds added here (both in :class:`~attestcall.service.app.Settings`):

- **The request head**, ``header_timeout``: :class:`HeaderDeadlineProtocol`, uvicorn's
  httptools protocol with one more timer. It is armed when the connection is made and
  again when a response is complete (the next request may begin), it is *not* pushed back
  by arriving bytes (so trickling cannot stretch it), and it is disarmed when the parser
  has a whole request head. When it fires, a client that had sent part of a head gets a
  408 problem document, and the connection is closed. The protocol is the simplest robust
  place for this: it is the one object that sees, per connection and on the event loop,
  both the connection beginning and the parser completing a head; an ASGI middleware only
  ever sees finished heads, and a watchdog outside would have to reach into it anyway.
- **The request body**, ``body_timeout``: timed where it is read, by the application
  (:func:`attestcall.service.app.read_body`): a body not complete in time is answered 408
  (a problem document, ``Connection: close``) and audited like any refusal.

Over HTTPS (:class:`HttpsProtocol`: :mod:`attestcall.service.tls_protocol` in front of
that protocol, TLS 1.3 on pyOpenSSL with X25519MLKEM768) the TLS handshake comes first,
bounded by its own deadline (60 s); the head's deadline starts when the handshake is done.

:class:`ServiceConfig` is uvicorn's ``Config`` with that protocol, the head's deadline and
the service's own TLS context (:mod:`attestcall.service.tls`): a plain picklable object, so
``--workers N`` hands it to every worker process, and each builds its TLS context itself.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from attestcall.service.app import HEADER_TIMEOUT
from attestcall.service.problems import PROBLEM, problem_document
from attestcall.service.tls import TlsFiles, server_context
from attestcall.service.tls_protocol import TlsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on every request head (module
    docstring)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout: float = getattr(config, "header_timeout", HEADER_TIMEOUT)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False  # the parser has bytes of a head it has not finished

    # -- when a head is awaited -----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:  # the parser saw a request's first byte
        super().on_message_begin()
        self._head_begun = True

    def on_headers_complete(self) -> None:  # a whole request head
        self._head_begun = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if self.transport.is_closing():
            super().on_response_complete()
            return
        self._arm()  # the next request may begin
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if pipelined:  # the base class started a request whose head had come already
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- the timer --------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        if self._head_begun and not answering:
            self._send_408()
        self.transport.close()

    def _send_408(self) -> None:
        body = json.dumps(problem_document(
            408, "timeout", "Request Timeout",
            [f"the request head did not arrive within {self.header_timeout:g} s"]),
            separators=(",", ":")).encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: " + PROBLEM.encode()
            + b"\r\ncontent-length: " + str(len(body)).encode()
            + b"\r\nconnection: close\r\n\r\n" + body)


class HttpsProtocol(TlsProtocol):
    """:class:`HeaderDeadlineProtocol` behind TLS (the config's ``tls_context``), made as
    uvicorn makes its HTTP protocols."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(HeaderDeadlineProtocol(config, *args, **kwargs),
                         config.tls_context)  # type: ignore[attr-defined]


class ServiceConfig(uvicorn.Config):
    """uvicorn's Config for the service: :class:`HeaderDeadlineProtocol` with
    ``header_timeout`` on uvloop, and with ``tls`` HTTPS (:class:`HttpsProtocol`; its
    context from :func:`attestcall.service.tls.server_context`, built by :meth:`load` in
    the process that serves; uvicorn's own ``ssl`` stays off)."""

    def __init__(self, app: Any, *, header_timeout: float = HEADER_TIMEOUT,
                 tls: TlsFiles | None = None, **options: Any) -> None:
        options.setdefault("http", HttpsProtocol if tls is not None else HeaderDeadlineProtocol)
        options.setdefault("loop", "uvloop")
        super().__init__(app, **options)
        self.header_timeout = header_timeout
        self.tls = tls
        self.tls_context: Any = None

    def __getstate__(self) -> dict[str, Any]:  # the context is built where it serves
        return {**self.__dict__, "tls_context": None}

    def load(self) -> None:
        super().load()
        if self.tls is not None:
            self.tls_context = server_context(self.tls)
