"""Keeps served on 127.0.0.1 in a thread of the test process, and raw TLS clients."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attestcall.deploy import protocol
from attestcall.deploy.identity import KeepIdentity, make_identity
from attestcall.deploy.server import KeepServer, ServerSettings, ServerStats
from attestcall.keep.platforms import open_keep
from attestcall.tls import TlsSocket, client_context

HERE = Path(__file__).resolve().parent
SIM_TEES = ("sgx-sim", "snp-sim", "tdx-sim", "cca-sim")
TECHNOLOGY = {"none": 0, "sgx-sim": 2, "snp-sim": 3, "tdx-sim": 4, "cca-sim": 5}
DEBUG_OPTIONS = {  # the simulators take the DEBUG bit differently (as the CLI passes it)
    "sgx-sim": {"identity": {"debug": True}},
    "snp-sim": {"debug": True},
    "tdx-sim": {"debug": True},
    "cca-sim": {"debug": True},  # the platform's lifecycle: recoverable CCA platform debug
}


@pytest.fixture(scope="session")
def workload() -> bytes:
    return (HERE / "workload.wat").read_bytes()


def expected_stdout(tee: str, evidence_size: int) -> bytes:
    return (f"hello from the keep\ntechnology: {TECHNOLOGY[tee]}\n"
            f"evidence: {evidence_size} bytes\n").encode()


@contextlib.contextmanager
def running_keep(
    tee: str,
    settings: ServerSettings | None = None,
    keep_identity: KeepIdentity | None = None,
    **options: Any,
) -> Iterator[KeepServer]:
    """A KeepServer for a ``tee`` keep, serving in a thread on 127.0.0.1 (port 0).
    ``keep_identity`` replaces the one the keep would make (for impostor tests)."""
    with open_keep(tee, b"", **options) as keep:
        key_type = settings.key_type if settings is not None else None
        identity = keep_identity or make_identity(keep.source, key_type)
        server = KeepServer(keep.source, identity, settings, log=io.StringIO())
        server.bind(("127.0.0.1", 0))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.close()
            thread.join(5)


@contextlib.contextmanager
def raw_tls(address: tuple[str, int], timeout: float = 10.0) -> Iterator[TlsSocket]:
    """A TLS 1.3 connection to a keep, no checks: a hostile or test client."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        tls = TlsSocket.connect(client_context(), sock, timeout)
    except BaseException:
        sock.close()
        raise
    with tls:
        yield tls


def read_frames(tls: TlsSocket, already: bytes = b"") -> list[protocol.Frame]:
    """Every frame the keep sends until it closes (``already``: bytes read before)."""
    decoder = protocol.FrameDecoder(protocol.KEEP_FRAMES)
    frames: list[protocol.Frame] = decoder.feed(already) if already else []
    while True:
        try:
            data = tls.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        frames += decoder.feed(data)
    return frames


def poll(tls: TlsSocket) -> bytes:
    """What the keep has sent so far, without waiting (b"" for nothing yet; TLS's own
    post-handshake records, such as tickets, are not data)."""
    timeout = tls.gettimeout()
    tls.settimeout(0.0)
    try:
        return tls.recv(65536)
    except TimeoutError:
        return b""
    finally:
        tls.settimeout(timeout)


def settled(server: KeepServer, timeout: float = 10.0) -> ServerStats:
    """The server's stats once every connection it accepted has been handled."""
    end = time.monotonic() + timeout
    while server.stats.finished < server.stats.connections:
        assert time.monotonic() < end, "the keep is still handling a connection"
        time.sleep(0.01)
    return server.stats


def error_message(frames: list[protocol.Frame]) -> str:
    assert frames, "the keep sent nothing"
    assert frames[-1].type == protocol.FrameType.ERROR, frames
    return protocol.parse_error(frames[-1].payload)
