"""The keep's socket chores shared by its TLS sessions and its provisioning transport:
reads under a timeout and a deadline, bounded writes, and the last word before closing."""

from __future__ import annotations

import socket
import time

from attestcall.deploy.protocol import ReadTimeout
from attestcall.tls import TlsSocket

Stream = socket.socket | TlsSocket  # what the keep reads and writes: TCP, or TLS over it

RECV_SIZE = 64 << 10
DRAIN_LIMIT = 1 << 20
DRAIN_SECONDS = 1.0


class TenantGone(Exception):
    """The connection broke; nothing more can be sent."""


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def receive(sock: Stream, read_timeout: float, deadline: float, late: str) -> bytes:
    """One read (b"" when the peer closed), waiting at most ``read_timeout`` and never past
    ``deadline`` (monotonic). ReadTimeout(``late``) past the deadline, ReadTimeout "nothing
    received" when the peer is silent for ``read_timeout``; TenantGone when the
    connection broke."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ReadTimeout(late)
    sock.settimeout(min(read_timeout, remaining))
    try:
        return sock.recv(RECV_SIZE)
    except TimeoutError:
        if remaining < read_timeout:
            raise ReadTimeout(late) from None
        raise ReadTimeout(f"nothing received for {read_timeout:g} s") from None
    except OSError as exc:
        raise TenantGone(str(exc)) from None


def send(sock: Stream, data: bytes, write_timeout: float) -> None:
    """Send all of ``data`` within ``write_timeout``; TenantGone when it cannot."""
    sock.settimeout(write_timeout)
    try:
        sock.sendall(data)
    except OSError as exc:
        raise TenantGone(str(exc)) from None


def drain(sock: Stream, limit: int = DRAIN_LIMIT, seconds: float = DRAIN_SECONDS) -> None:
    """Read and drop what the peer still sends, for a moment: closing with unread bytes
    would reset the connection before the last frame arrives."""
    drained = 0
    end = time.monotonic() + seconds
    try:
        while drained < limit and (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(RECV_SIZE)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass
