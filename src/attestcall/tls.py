"""TLS 1.3 for attestcall's endpoints: pyOpenSSL over ``cryptography``'s bundled OpenSSL.

Python's ``ssl`` links the system's OpenSSL, which may have neither ML-KEM nor ML-DSA;
``cryptography`` bundles an OpenSSL that has both (4.0 with cryptography 49), and pyOpenSSL
drives TLS on that same library. Every context made here:

- speaks TLS 1.3 only;
- offers the key-exchange groups :data:`GROUPS`, the hybrid X25519MLKEM768 first, X25519
  second (a server prefers the hybrid; a classical-only peer, such as Python's ``ssl``,
  still connects on X25519 (``x25519``); a peer with neither is refused in the handshake);
- serves any certificate ``cryptography`` can make: P-256, P-384, Ed25519, RSA, ML-DSA-44,
  -65 and -87;
- keeps no sessions (no resumption: every peer sees a full handshake and the certificate).

A private key never touches a file system: pyOpenSSL refuses ML-DSA keys as ``cryptography``
objects, so the key's DER PKCS#8 goes from memory to OpenSSL (``d2i_PrivateKey_bio`` on a
memory BIO, ``SSL_CTX_use_PrivateKey``) through ``cryptography``'s own binding of the
library pyOpenSSL uses. The group list is set the same way (``SSL_CTX_set1_groups_list``,
bound as its older name ``SSL_CTX_set1_curves_list``), as pyOpenSSL has no call for it.

:class:`TlsSocket` is a connection with a socket's blocking calls under timeouts
(``recv``, ``sendall``, ``settimeout``), so the code above it reads and writes as it would
a socket; it says which group was negotiated and what certificate the peer showed.
Failures are :class:`TlsError`, an ``OSError`` as ``ssl.SSLError`` is.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import os
import select
import socket
import time
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from OpenSSL import SSL, crypto

from attestcall.errors import AttestcallError, UsageError

GROUPS = ("X25519MLKEM768", "x25519")  # as OpenSSL names them (IANA's names)
VERSION = "TLSv1.3"
# What OpenSSL accepts of a peer's Certificate message (SSL_MAX_CERT_LIST_DEFAULT; the
# binding cannot change it): a keep's certificate, evidence and ML-DSA key and signature
# included, must stay under it. The message spans as many 16 KiB records as it needs.
MAX_CERTIFICATE_LIST = 100 * 1024
_lib, _ffi = Binding.lib, Binding.ffi


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _expect_name(connection: SSL.Connection, name: str) -> None:
    """Make the handshake fail unless the peer's certificate is for ``name`` (a DNS name
    or an IP address, as RFC 6125 and OpenSSL's X509_check_host/_ip match them)."""
    param = _lib.SSL_get0_param(connection._ssl)
    if _is_address(name):
        packed = ipaddress.ip_address(name).packed
        done = _lib.X509_VERIFY_PARAM_set1_ip(param, packed, len(packed))
    else:
        _lib.X509_VERIFY_PARAM_set_hostflags(param, _lib.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
        encoded = name.encode("idna")
        done = _lib.X509_VERIFY_PARAM_set1_host(param, encoded, len(encoded))
    if not done:
        _lib.ERR_clear_error()
        raise TlsError(f"cannot check a certificate for {name!r}")


class TlsError(AttestcallError, OSError):
    """A TLS context could not be made, or a handshake or a record failed. ``reason``: the
    failure alone (OpenSSL's words), for callers that say themselves what failed."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class CertificateUntrusted(TlsError):
    """The peer's certificate chain, or the name it is for, is not trusted."""


def _reasons(exc: BaseException) -> str:
    """One line from a pyOpenSSL error (its queue of (library, function, reason))."""
    if isinstance(exc, SSL.SysCallError):
        code, message = (exc.args + (None, None))[:2]
        if code == -1 or not message:
            return "the peer closed the connection"
        return str(message)
    args = exc.args[0] if exc.args else None
    if isinstance(args, list) and args:
        return "; ".join(str(entry[-1]) for entry in args if entry)
    return str(exc) or type(exc).__name__


def _context(groups: Sequence[str], *, key_shares: bool = False) -> SSL.Context:
    """``key_shares``: a client's, sending a key share for every group (``*`` in OpenSSL's
    list), so that a classical-only server answers at once instead of asking again (a
    HelloRetryRequest, one more round trip) for the price of 36 bytes."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_options(SSL.OP_NO_TICKET | _lib.SSL_OP_IGNORE_UNEXPECTED_EOF)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    listed = ":".join(f"*{g}" if key_shares else g for g in groups)
    if not _lib.SSL_CTX_set1_curves_list(context._context, listed.encode()):
        _lib.ERR_clear_error()
        raise TlsError(f"this OpenSSL ({openssl_version()}) does not offer the groups "
                       f"{':'.join(groups)}")
    return context


def openssl_version() -> str:
    """The OpenSSL TLS runs on here (``cryptography``'s bundled one)."""
    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()


def _use_private_key(context: SSL.Context, key: CertificateIssuerPrivateKeyTypes) -> None:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    bio = _lib.BIO_new_mem_buf(der, len(der))
    if bio == _ffi.NULL:
        raise MemoryError("BIO_new_mem_buf")
    try:
        pkey = _lib.d2i_PrivateKey_bio(bio, _ffi.NULL)
    finally:
        _lib.BIO_free(bio)
    if pkey == _ffi.NULL:
        _lib.ERR_clear_error()
        raise TlsError(f"OpenSSL cannot load a {type(key).__name__}")
    try:
        if not _lib.SSL_CTX_use_PrivateKey(context._context, pkey):
            _lib.ERR_clear_error()
            raise TlsError(f"OpenSSL cannot serve TLS with a {type(key).__name__}")
    finally:
        _lib.EVP_PKEY_free(pkey)


def server_context(
    certificate: x509.Certificate,
    private_key: CertificateIssuerPrivateKeyTypes,
    chain: Sequence[x509.Certificate] = (),
    *,
    groups: Sequence[str] = GROUPS,
) -> SSL.Context:
    """A TLS 1.3 server serving ``certificate`` (then ``chain``) with ``private_key``; no
    client certificates. TlsError when the key is not the certificate's."""
    if _spki(certificate.public_key()) != _spki(private_key.public_key()):
        raise TlsError("the private key does not match the certificate")
    context = _context(groups)
    try:
        context.use_certificate(certificate)
        for issuer in chain:
            context.add_extra_chain_cert(issuer)
    except SSL.Error as exc:
        raise TlsError(f"OpenSSL cannot serve this certificate: {_reasons(exc)}") from None
    _use_private_key(context, private_key)
    return context


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def client_context(*, groups: Sequence[str] = GROUPS) -> SSL.Context:
    """A TLS 1.3 client that checks no chain and no name: for peers trusted by what their
    certificate carries, judged after the handshake (TLS 1.3 has still proved the peer
    holds the certificate's key, by its CertificateVerify over the transcript)."""
    context = _context(groups, key_shares=True)
    context.set_verify(SSL.VERIFY_NONE)
    return context


def verifying_client_context(cafile: str | os.PathLike[str] | None = None, *,
                             groups: Sequence[str] = GROUPS) -> SSL.Context:
    """A TLS 1.3 client that verifies the server's chain: against the CAs in ``cafile``
    (PEM) only, or the system's trust store without one; the name is checked per connection
    (:meth:`TlsSocket.connect`'s ``verify_name``). UsageError, one line, when the file
    cannot be read or holds no CA."""
    context = _context(groups, key_shares=True)
    context.set_verify(SSL.VERIFY_PEER)
    if cafile is None:
        context.set_default_verify_paths()
        return context
    path = os.fspath(cafile)
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError as exc:
        raise UsageError(f"cannot read the CA file {path}: {exc.strerror or exc}") from None
    try:
        authorities = x509.load_pem_x509_certificates(pem)
    except ValueError:
        authorities = []
    if not authorities:
        raise UsageError(f"{path} holds no PEM CA certificate")
    store = context.get_cert_store()
    assert store is not None
    for authority in authorities:
        store.add_cert(crypto.X509.from_cryptography(authority))
    return context


def _verify_failure(connection: SSL.Connection) -> str | None:
    """Why the peer's chain was not trusted, when that was the failure."""
    code = _lib.SSL_get_verify_result(connection._ssl)
    if code == 0:  # X509_V_OK
        return None
    return _ffi.string(_lib.X509_verify_cert_error_string(code)).decode()


class TlsSocket:
    """A TLS connection over a connected socket, with a socket's blocking calls under
    timeouts: ``recv`` (b"" at the end), ``sendall``, ``settimeout``, ``close``. A timeout
    raises TimeoutError; any other failure OSError (TlsError for TLS's own)."""

    def __init__(self, connection: SSL.Connection, sock: socket.socket,
                 timeout: float | None):
        self.connection = connection
        self.sock = sock
        self.timeout = timeout
        self._closed = False
        self._close_asked = False
        self._readers = 0

    # ------------------------------------------------------------------ opening

    @classmethod
    def accept(cls, context: SSL.Context, sock: socket.socket,
               timeout: float | None) -> TlsSocket:
        """The server's handshake on ``sock``, within ``timeout`` seconds."""
        connection = SSL.Connection(context, sock)
        connection.set_accept_state()
        return cls._handshake(connection, sock, timeout)

    @classmethod
    def connect(cls, context: SSL.Context, sock: socket.socket, timeout: float | None,
                server_name: str | None = None, *, verify_name: str | None = None,
                session: SSL.Session | None = None) -> TlsSocket:
        """The client's handshake on ``sock``, within ``timeout`` seconds; ``server_name``
        is sent as SNI (not for an address); ``verify_name``: the host name or address the
        certificate must be for (with a verifying context); ``session``: one to offer for
        resumption (our servers refuse it). A chain or name not trusted is a TlsError
        whose reason says why."""
        connection = SSL.Connection(context, sock)
        if session is not None:
            connection.set_session(session)
        if verify_name is not None:
            _expect_name(connection, verify_name)
        if server_name and not _is_address(server_name):
            connection.set_tlsext_host_name(server_name.encode("idna"))
        connection.set_connect_state()
        return cls._handshake(connection, sock, timeout)

    @classmethod
    def _handshake(cls, connection: SSL.Connection, sock: socket.socket,
                   timeout: float | None) -> TlsSocket:
        tls = cls(connection, sock, timeout)
        sock.setblocking(False)
        try:
            tls._io(connection.do_handshake, "the TLS handshake", eof=False)
        except ConnectionError as exc:  # the peer reset or closed mid-handshake
            reason = exc.strerror or str(exc)
            raise TlsError(f"the TLS handshake failed: {reason}", reason) from None
        except TlsError as exc:
            untrusted = _verify_failure(connection)
            if untrusted is None:
                raise
            raise CertificateUntrusted(f"the server's certificate is not trusted "
                                       f"({untrusted})", untrusted) from exc
        return tls

    # --------------------------------------------------------------- properties

    @property
    def group(self) -> str | None:
        """The key-exchange group negotiated (``X25519MLKEM768``, ``x25519``)."""
        return self.connection.get_group_name()

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed a session (never, with our servers)."""
        return bool(_lib.SSL_session_reused(self.connection._ssl))

    @property
    def version(self) -> str:
        return self.connection.get_protocol_version_name()

    @property
    def cipher(self) -> str | None:
        return self.connection.get_cipher_name()

    def peer_certificate(self) -> x509.Certificate | None:
        """The certificate the peer showed in this handshake, if any."""
        return self.connection.get_peer_certificate(as_cryptography=True)

    def peer_chain(self) -> list[x509.Certificate]:
        """The certificates the peer sent, its own first (unverified)."""
        return list(self.connection.get_peer_cert_chain(as_cryptography=True) or [])

    def peer_certificate_der(self) -> bytes | None:
        certificate = self.peer_certificate()
        if certificate is None:
            return None
        return certificate.public_bytes(serialization.Encoding.DER)

    # --------------------------------------------------------------------- I/O

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def gettimeout(self) -> float | None:
        return self.timeout

    def fileno(self) -> int:
        return self.sock.fileno()

    def readable(self, timeout: float) -> bool:
        """Whether the peer sends something (data, or the end of the stream) within
        ``timeout`` seconds, without reading it."""
        return bool(self.connection.pending()) or self._poll(write=False, timeout=timeout)

    def _wait(self, *, write: bool, deadline: float | None, what: str) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(f"{what} timed out")
        if not self._poll(write=write, timeout=None if remaining is None
                          else max(0.001, remaining)):
            raise TimeoutError(f"{what} timed out")

    def _poll(self, *, write: bool, timeout: float | None) -> bool:
        """Whether the socket becomes writable (or readable) within ``timeout`` seconds
        (None: without limit)."""
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT if write else select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))

    def _io(self, operation, what: str, *args, eof: bool = True):
        """``operation(*args)`` until it completes within the timeout; None at the peer's
        end of stream when ``eof`` allows it (reads), TlsError otherwise."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                return operation(*args)
            except SSL.WantReadError:
                self._wait(write=False, deadline=deadline, what=what)
            except SSL.WantWriteError:
                self._wait(write=True, deadline=deadline, what=what)
            except SSL.ZeroReturnError:
                if eof:
                    return None
                raise TlsError(f"{what} failed: the peer closed the connection",
                               "the peer closed the connection") from None
            except SSL.SysCallError as exc:
                code = exc.args[0] if exc.args else -1
                if isinstance(code, int) and code > 0:
                    raise OSError(code, _reasons(exc)) from None
                raise TlsError(f"{what} failed: {_reasons(exc)}", _reasons(exc)) from None
            except SSL.Error as exc:
                raise TlsError(f"{what} failed: {_reasons(exc)}", _reasons(exc)) from None

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; b"" once the peer has closed (cleanly or not)."""
        data = self._io(self.connection.recv, "reading from the peer", size)
        return data or b""

    def sendall(self, data: bytes) -> None:
        """All of ``data``, the whole within the timeout."""
        view = memoryview(data)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while view:
            saved = self.timeout
            if deadline is not None:
                self.timeout = max(0.0, deadline - time.monotonic())
            try:
                sent = self._io(self.connection.send, "writing to the peer", view, eof=False)
            finally:
                self.timeout = saved
            view = view[sent:]

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        """A buffered binary reader over the connection (what ``http.client`` reads a
        response from)."""
        if mode not in ("r", "rb"):
            raise ValueError(f"a TLS connection is read through makefile, not {mode!r}")
        self._readers += 1
        return io.BufferedReader(_Reader(self), io.DEFAULT_BUFFER_SIZE
                                 if buffering < 0 else max(buffering, 1))

    def close(self) -> None:
        """Send close_notify if the socket takes it at once, then close the socket; as a
        socket does, not before the readers :meth:`makefile` gave are closed too
        (``urllib`` closes the connection and reads the response after)."""
        self._close_asked = True
        if self._readers == 0:
            self._close_now()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._close_asked and self._readers == 0:
            self._close_now()

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.connection.shutdown()
        except (SSL.Error, OSError):
            pass
        self.sock.close()

    def __enter__(self) -> TlsSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Reader(io.RawIOBase):
    """The raw reads of :meth:`TlsSocket.makefile`."""

    def __init__(self, tls: TlsSocket):
        self.tls = tls

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.tls.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.tls._reader_closed()
        super().close()


class HttpsConnection(http.client.HTTPConnection):
    """``http.client`` over :class:`TlsSocket`: TLS 1.3, X25519MLKEM768 first, the server's
    chain verified by ``context`` (:func:`verifying_client_context`) and its name against
    the host connected to."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int | None = None, *, context: SSL.Context,
                 timeout: float | None = None, **options) -> None:
        super().__init__(host, port, timeout=timeout, **options)
        self.context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout,
                                       self.source_address)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = TlsSocket.connect(self.context, raw, self.timeout,
                                          server_name=self.host, verify_name=self.host)
        except BaseException:
            raw.close()
            raise
