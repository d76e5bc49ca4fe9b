"""attestcall.tls: TLS 1.3 on pyOpenSSL over cryptography's OpenSSL, on real sockets on
127.0.0.1: the hybrid group between two of ours, X25519 with Python's ``ssl`` (a
classical-only peer) on either side, no group in common refused, no resumption, keys
loaded from memory only, every certificate key type served."""

from __future__ import annotations

import builtins
import contextlib
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from OpenSSL import SSL

from attestcall import tls
from attestcall.deploy.identity import build_certificate
from attestcall.deploy.keys import generate_key, key_type_of
from attestcall.tls import TlsError, TlsSocket

TIMEOUT = 10.0
CLASSICAL_KEY_TYPES = ("p256", "p384", "ed25519", "rsa3072")


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket], Any]) -> Iterator[tuple[tuple[str, int], list]]:
    """A one-connection server on 127.0.0.1 running ``handle(raw)`` in a thread; yields its
    address and a list that receives what ``handle`` returned (or raised)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    results: list = []

    def run() -> None:
        try:
            raw, _ = listener.accept()
        except OSError as exc:
            results.append(exc)
            return
        with raw:
            try:
                results.append(handle(raw))
            except Exception as exc:  # noqa: BLE001 - handed to the test
                results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2], results
    finally:
        thread.join(TIMEOUT)
        listener.close()
        assert not thread.is_alive()


def our_server(context: SSL.Context) -> Callable[[socket.socket], Any]:
    def handle(raw: socket.socket) -> tuple[str | None, bytes]:
        with TlsSocket.accept(context, raw, TIMEOUT) as conn:
            data = conn.recv(100)
            conn.sendall(data.upper())
            return conn.group, data

    return handle


def identity(key_type: str = "p256"):
    key = generate_key(key_type)
    return build_certificate(key, None, b""), key


def test_two_of_ours_agree_on_the_hybrid_group():
    certificate, key = identity()
    with serving(our_server(tls.server_context(certificate, key))) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(tls.client_context(), raw, TIMEOUT) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"PING"
            assert conn.group == "X25519MLKEM768"
            assert conn.version == "TLSv1.3"
            assert conn.peer_certificate() == certificate
    assert results == [("X25519MLKEM768", b"ping")]


def test_a_classical_python_ssl_client_gets_x25519():
    """Python's ssl (the system OpenSSL, no ML-KEM) connects to our server on X25519."""
    certificate, key = identity()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with serving(our_server(tls.server_context(certificate, key))) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                client.wrap_socket(raw) as conn:
            conn.sendall(b"classical")
            assert conn.recv(100) == b"CLASSICAL"
            assert conn.version() == "TLSv1.3"
    assert results == [("x25519", b"classical")]


def test_our_client_gets_x25519_from_a_classical_python_ssl_server():
    certificate, key = identity()
    pem = tls_pem(certificate, key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with memfd_path(pem) as path:
        server.load_cert_chain(path)

    def handle(raw: socket.socket) -> bytes:
        with server.wrap_socket(raw, server_side=True) as conn:
            data = conn.recv(100)
            conn.sendall(data[::-1])
            return data

    with serving(handle) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(tls.client_context(), raw, TIMEOUT) as conn:
            conn.sendall(b"abc")
            assert conn.recv(100) == b"cba"
            assert conn.group == "x25519"
    assert results == [b"abc"]


def test_no_group_in_common_fails_the_handshake_and_sends_nothing():
    certificate, key = identity()

    def handle(raw: socket.socket) -> None:
        TlsSocket.accept(tls.server_context(certificate, key), raw, TIMEOUT)

    with serving(handle) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                pytest.raises(TlsError, match="TLS handshake failed"):
            TlsSocket.connect(tls.client_context(groups=("secp384r1",)), raw, TIMEOUT)
    assert len(results) == 1 and isinstance(results[0], TlsError)
    assert "TLS handshake failed" in str(results[0])


def test_an_unknown_group_is_refused_when_the_context_is_made():
    with pytest.raises(TlsError, match="does not offer the groups"):
        tls.client_context(groups=("NOT-A-GROUP",))


def test_sessions_are_never_resumed():
    certificate, key = identity()
    context = tls.server_context(certificate, key)
    client = tls.client_context()
    with serving(our_server(context)) as (address, _):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(client, raw, TIMEOUT) as conn:
            conn.sendall(b"one")
            conn.recv(100)
            conn.recv(100)  # reads whatever tickets follow, up to the close
            session = conn.connection.get_session()
    assert session is not None
    with serving(our_server(context)) as (address, _):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(client, raw, TIMEOUT, session=session) as conn:
            conn.sendall(b"two")
            assert conn.recv(100) == b"TWO"
            assert not conn.resumed
            assert conn.peer_certificate() == certificate  # a full handshake: shown again


@pytest.mark.parametrize("key_type", CLASSICAL_KEY_TYPES)
def test_every_key_type_is_served_and_read_back(key_type):
    certificate, key = identity(key_type)
    with serving(our_server(tls.server_context(certificate, key))) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(tls.client_context(), raw, TIMEOUT) as conn:
            conn.sendall(b"k")
            assert conn.recv(10) == b"K"
            peer = conn.peer_certificate()
            assert peer is not None and key_type_of(peer.public_key()) == key_type
    assert results == [("X25519MLKEM768", b"k")]


def test_the_private_key_never_goes_through_a_file(monkeypatch):
    """Making a server context opens no file and no memfd."""
    certificate, key = identity("p384")
    opened: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        opened.append(args)
        raise AssertionError(f"a file was opened: {args!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(os, "memfd_create", refuse, raising=False)
    context = tls.server_context(certificate, key)
    monkeypatch.undo()
    assert opened == []
    with serving(our_server(context)) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(tls.client_context(), raw, TIMEOUT) as conn:
            conn.sendall(b"x")
            assert conn.recv(10) == b"X"


def test_a_key_for_another_certificate_is_refused():
    certificate, _ = identity()
    with pytest.raises(TlsError, match="does not match the certificate"):
        tls.server_context(certificate, generate_key("p256"))


def test_a_silent_peer_times_out_the_handshake():
    certificate, key = identity()
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()[:2], TIMEOUT):
        accepted, _ = listener.accept()
        with accepted, pytest.raises(TimeoutError):
            TlsSocket.accept(tls.server_context(certificate, key), accepted, 0.3)
        assert isinstance(TlsError("x"), OSError)


# ---------------------------------------------------------------- helpers for ssl


def tls_pem(certificate, key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return (certificate.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))


@contextlib.contextmanager
def memfd_path(data: bytes) -> Iterator[str]:
    """A path to ``data`` in an anonymous memory file (Python's ssl loads only paths)."""
    fd = os.memfd_create("attestcall-test", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def key_shares(client_hello: bytes) -> list[int]:
    """The groups of the key_share extension (51) of a ClientHello record."""
    body = client_hello[5:]
    at = 4 + 2 + 32
    at += 1 + body[at]  # session id
    at += 2 + struct.unpack(">H", body[at:at + 2])[0]  # cipher suites
    at += 1 + body[at]  # compression methods
    end = at + 2 + struct.unpack(">H", body[at:at + 2])[0]
    at += 2
    while at < end:
        kind, length = struct.unpack(">HH", body[at:at + 4])
        if kind == 51:
            shares, entry = [], at + 6
            while entry < at + 4 + length:
                group, size = struct.unpack(">HH", body[entry:entry + 4])
                shares.append(group)
                entry += 4 + size
            return shares
        at += 4 + length
    return []


def test_our_client_sends_both_key_shares():
    """A key share for X25519MLKEM768 (0x11ec) and one for X25519 (0x001d): a classical-only
    server chooses X25519 at once instead of asking again (a HelloRetryRequest, one more
    round trip)."""
    def handle(raw: socket.socket) -> bytes:
        raw.settimeout(TIMEOUT)
        record = raw.recv(5)
        while len(record) < 5 + struct.unpack(">H", record[3:5])[0]:
            record += raw.recv(65536)
        return record

    with serving(handle) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, pytest.raises(OSError):
            TlsSocket.connect(tls.client_context(), raw, TIMEOUT)
    assert key_shares(results[0]) == [0x11EC, 0x001D]
    certificate, key = identity()
    classical = tls.server_context(certificate, key, groups=("x25519",))
    with serving(our_server(classical)) as (address, results):
        with socket.create_connection(address, TIMEOUT) as raw, \
                TlsSocket.connect(tls.client_context(), raw, TIMEOUT) as conn:
            conn.sendall(b"s")
            assert conn.recv(10) == b"S" and conn.group == "x25519"
