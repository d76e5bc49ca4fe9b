"""Idle and slow connections do not deny service: a handshake holds no tenant slot, a
tenant takes one only once it sends, and one source address can hold only so many
connections and slots (deploy/server.py)."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
from collections.abc import Iterator

import pytest

from attestcall.deploy import KeepTimedOut, ServerSettings, deploy
from attestcall.deploy.server import Slots, address_key
from tests.deploy.conftest import raw_tls, running_keep

TIMEOUT = 60.0  # seconds any wait here may take before the test fails
IDLE_FROM, SLOW_FROM = "127.0.0.2", "127.0.0.3"  # the tenant connects from 127.0.0.1


def served(server, workload) -> int:
    return deploy(server.address, workload, [], trust_simulated=True, stdout=io.BytesIO(),
                  stderr=io.BytesIO())


def until(condition, what: str) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"never: {what}")


@contextlib.contextmanager
def connections(address, count: int, source: str) -> Iterator[list[socket.socket]]:
    opened = []
    try:
        for _ in range(count):
            opened.append(socket.create_connection(address, timeout=TIMEOUT,
                                                   source_address=(source, 0)))
        yield opened
    finally:
        for sock in opened:
            sock.close()


@contextlib.contextmanager
def slowloris(address, count: int, source: str) -> Iterator[list[socket.socket]]:
    """``count`` connections that start a TLS ClientHello and send one more byte of it
    every 0.2 s, never finishing it."""
    stop = threading.Event()
    with connections(address, count, source) as socks:
        for sock in socks:
            sock.sendall(b"\x16\x03\x01\x02\x00")  # a handshake record of 512 bytes, to come

        def trickle() -> None:
            while not stop.wait(0.2):
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(b"\x01")

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            yield socks
        finally:
            stop.set()
            thread.join(TIMEOUT)


def test_a_deploy_is_served_while_200_idle_and_50_slowloris_connections_are_open(workload):
    # the keep keeps them all (no per-address cut here) for longer than the test: only
    # what it does with them while they are open is tested
    settings = ServerSettings(handshake_timeout=TIMEOUT * 2, max_connections_per_address=256)
    with running_keep("sgx-sim", settings) as server, \
            connections(server.address, 200, IDLE_FROM), \
            slowloris(server.address, 50, SLOW_FROM):
        until(lambda: server._connections.held() == 250, "all 250 connections taken")
        assert served(server, workload) == 42
        assert served(server, workload) == 42
        # they were all still open on the keep's side: it did not wait them out
        until(lambda: server._connections.held() == 250, "the tenants' connections done")
        assert server._connections.held(IDLE_FROM) == 200
        assert server._connections.held(SLOW_FROM) == 50
        assert server.stats.handshake_failures == 0 and server.stats.over_limit == 0
        assert server._slots.held() == 0


def test_connections_beyond_the_per_address_limit_are_closed_at_once(workload):
    settings = ServerSettings(handshake_timeout=TIMEOUT * 2, max_connections_per_address=32)
    with running_keep("sgx-sim", settings) as server, \
            connections(server.address, 40, IDLE_FROM) as socks:
        until(lambda: server.stats.over_limit == 8, "8 connections refused")
        ends = []
        for sock in socks:
            sock.settimeout(0.2)
            try:
                ends.append(sock.recv(1) == b"")
            except TimeoutError:
                ends.append(False)  # still open: one of the 32
        assert ends.count(True) == 8 and ends.count(False) == 32
        assert server._connections.held(IDLE_FROM) == 32
        assert served(server, workload) == 42  # another address is served meanwhile


def test_a_tenant_that_says_nothing_after_the_handshake_holds_no_slot(workload):
    settings = ServerSettings(max_tenants=1, read_timeout=TIMEOUT * 2)
    with running_keep("sgx-sim", settings) as server, contextlib.ExitStack() as stack:
        silent = [stack.enter_context(raw_tls(server.address)) for _ in range(3)]
        until(lambda: sum(server.stats.groups.values()) == 3, "three handshakes")
        assert served(server, workload) == 42  # the one slot was free for it
        assert len(silent) == 3 and server.stats.silent_tenants == 0  # still waiting


def test_a_handshake_that_never_comes_is_a_timeout_not_a_refusal(workload):
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts (backlog), never answers
        with pytest.raises(KeepTimedOut, match="timed out") as caught:
            deploy(mute.getsockname()[:2], workload, [], trust_simulated=True,
                   connect_timeout=0.5, stdout=io.BytesIO(), stderr=io.BytesIO())
    message = str(caught.value)
    assert "did not finish the TLS handshake within 0.5 s" in message
    assert "not trusted" not in message and "refused" not in message


def test_slots_are_bounded_in_all_and_per_address():
    slots = Slots(3, 2)
    assert slots.take("a", 0) and slots.take("a", 0)
    assert not slots.take("a", 0.01)  # a's two are taken
    assert slots.take("b", 0)
    assert not slots.take("c", 0.01)  # all three are taken
    slots.give("a")
    assert slots.take("b", 0) and slots.held("b") == 2 and slots.held() == 3
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(slots.take("c", TIMEOUT)))
    waiter.start()
    slots.give("a")
    waiter.join(TIMEOUT)
    assert taken == [True] and slots.held("c") == 1 and slots.held("a") == 0
    with pytest.raises(ValueError):
        Slots(0, 1)


@pytest.mark.parametrize(("host", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same /64: one key
    ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4 through an IPv6 socket
    ("fe80::1%eth0", "fe80::/64"),
    ("not an address", "not an address"),
])
def test_the_address_a_connection_counts_against(host, key):
    assert address_key(host) == key
