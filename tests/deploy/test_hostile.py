"""Hostile tenants get ERROR and are disconnected; the keep goes on serving others."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from attestcall.deploy import ServerSettings, deploy, protocol
from tests.deploy.conftest import (
    error_message,
    poll,
    raw_tls,
    read_frames,
    running_keep,
    settled,
)

SHORT = ServerSettings(read_timeout=0.5, receive_deadline=2.0, handshake_timeout=0.5,
                       max_tenants=4)


def still_serves(server, workload) -> None:
    assert deploy(server.address, workload, [], trust_simulated=True, stdout=io.BytesIO(),
                  stderr=io.BytesIO()) == 42


@pytest.fixture
def keep():
    with running_keep("sgx-sim", SHORT) as server:
        yield server


def test_garbage_after_the_handshake(keep, workload):
    with raw_tls(keep.address) as tls:
        tls.sendall(os.urandom(4096))
        message = error_message(read_frames(tls))
    assert "frame type" in message
    still_serves(keep, workload)


def test_oversized_frame_is_refused_on_its_header(keep, workload):
    with raw_tls(keep.address) as tls:
        tls.sendall(protocol.hello())
        tls.sendall(protocol.HEADER.pack(protocol.FrameType.WORKLOAD, 1 << 31))
        message = error_message(read_frames(tls))
    assert "over the 1048576-byte limit" in message
    assert settled(keep).workload_bytes == 0
    still_serves(keep, workload)


def test_oversized_workload(keep, workload):
    head = protocol.encode_frame(protocol.FrameType.WORKLOAD,
                                 (1 << 30).to_bytes(4, "big") + b"\0\0")
    with raw_tls(keep.address) as tls:
        tls.sendall(protocol.hello() + head)
        assert "over the" in error_message(read_frames(tls))
    still_serves(keep, workload)


def test_client_stopping_mid_frame_times_out(keep, workload):
    with raw_tls(keep.address) as tls:
        frame = b"".join(protocol.workload_frames(b"\0asm\1\0\0\0", []))
        tls.sendall(protocol.hello() + frame[:7])  # and then nothing
        started = time.monotonic()
        message = error_message(read_frames(tls))
        assert time.monotonic() - started < 5
    assert "nothing received for 0.5 s" in message
    still_serves(keep, workload)


def test_trickling_client_hits_the_deadline(keep, workload):
    """One byte every 0.3 s: each read is in time (0.5 s), the whole is not (2 s)."""
    frame = b"".join(protocol.workload_frames(b"\0asm\1\0\0\0" + bytes(64), []))
    with raw_tls(keep.address) as tls:
        tls.sendall(protocol.hello())
        early = b""
        for byte in frame:
            if early := poll(tls):
                break  # the keep has answered
            tls.sendall(bytes([byte]))
            time.sleep(0.3)
        frames = read_frames(tls, early)
    assert "did not arrive within 2 s" in error_message(frames)
    still_serves(keep, workload)


def test_wrong_version_and_frames_out_of_order(keep, workload):
    with raw_tls(keep.address) as tls:
        tls.sendall(protocol.hello(99))
        assert "version 99 is not supported" in error_message(read_frames(tls))
    with raw_tls(keep.address) as tls:
        tls.sendall(b"".join(protocol.workload_frames(b"\0asm", [])))
        assert "WORKLOAD before HELLO" in error_message(read_frames(tls))
    with raw_tls(keep.address) as tls:
        tls.sendall(protocol.encode_frame(protocol.FrameType.OUTPUT, b"\1hi"))
        assert "not accepted" in error_message(read_frames(tls))
    assert settled(keep).workloads_run == 0
    still_serves(keep, workload)


def test_not_webassembly(keep, workload):
    with raw_tls(keep.address) as tls:
        tls.sendall(protocol.hello() + b"".join(protocol.workload_frames(b"#!/bin/sh", [])))
        assert "not a WebAssembly binary" in error_message(read_frames(tls))
    still_serves(keep, workload)


def test_silent_tcp_clients_do_not_block_others(keep, workload):
    """Connections that never start TLS time out; meanwhile tenants are served."""
    idle = [socket.create_connection(keep.address) for _ in range(3)]
    try:
        still_serves(keep, workload)
    finally:
        for sock in idle:
            sock.close()
    assert settled(keep).handshake_failures == 3


def test_plain_tcp_and_old_tls_are_refused(keep, workload):
    with socket.create_connection(keep.address) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            sock.recv(100)  # an alert, the end of the connection, or a reset
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(keep.address) as sock, pytest.raises(ssl.SSLError):
        old.wrap_socket(sock)
    assert settled(keep).handshake_failures == 2
    still_serves(keep, workload)


def test_ctrl_c_stops_the_keep(tmp_path, workload):
    """serve() in its own process: prints the address, serves, stops cleanly on SIGINT."""
    code = ("from attestcall.deploy.server import serve\n"
            "serve('none', ('127.0.0.1', 0))\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = process.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1])
        assert deploy(("127.0.0.1", port), workload, [], allow_none=True,
                      stdout=io.BytesIO(), stderr=io.BytesIO()) == 40
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "keep stopped" in err
    assert "Traceback" not in err
