"""Slow and hostile clients against the real service (uvicorn on 127.0.0.1, configured as
``serve`` configures it): request heads and bodies that never end or trickle, connections
that say nothing, and a flood of 200 garbage connections while real keeps get their
certificates. The service's timeouts are short here; every wait of the tests themselves is
bounded by ``BOUND``, generous, and no test asserts how long anything took."""

from __future__ import annotations

import itertools
import json
import os
import re
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from attestcall.deploy.keys import spki_der
from attestcall.service import result as results
from tests.service.helpers import TEES, TIMEOUT
from tests.service.test_app import Running, obtain

HEAD = 1.0  # the service's header_timeout in these tests, seconds
BODY = 1.5  # its body_timeout
BOUND = 30.0  # how long a test waits for the service to end a connection before failing
FLOOD = 200  # garbage connections held open at once


@pytest.fixture
def service(tmp_path, keeps) -> Iterator[Running]:
    """The service with short head and body timeouts."""
    running = Running(tmp_path / "service", trust_simulated=True, header_timeout=HEAD,
                      body_timeout=BODY)
    try:
        yield running
    finally:
        running.stop()


def connect(service: Running, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=TIMEOUT)
    if data:
        sock.sendall(data)
    return sock


def until_closed(sock: socket.socket, *, trickle: bytes = b"", every: float = 0.1,
                 bound: float = BOUND) -> tuple[bytes, int]:
    """Everything the service sends on ``sock`` until it ends the connection, while this
    client sends one more byte of ``trickle`` (cycled) every ``every`` seconds it hears
    nothing. (answer, bytes trickled); the test fails if the connection is still open after
    ``bound`` seconds."""
    deadline = time.monotonic() + bound
    answer = b""
    sent = 0
    source = itertools.cycle(trickle) if trickle else None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the service kept the connection open for {bound:g} s "
                        f"(answer so far {answer[:80]!r}, {sent} bytes trickled)")
        ready, _, _ = select.select([sock], [], [], min(every, remaining))
        try:
            if ready:
                chunk = sock.recv(65536)
                if not chunk:
                    return answer, sent
                answer += chunk
            elif source is not None:
                sock.sendall(bytes([next(source)]))
                sent += 1
        except (ConnectionResetError, BrokenPipeError):
            return answer, sent


def status_of(answer: bytes) -> int | None:
    """The status of an HTTP/1.1 answer, None for no answer."""
    if not answer:
        return None
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


def problem_of(answer: bytes) -> tuple[dict[str, str], dict]:
    """The headers (lower-case names) and the problem document of one HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "application/problem+json"
    document = json.loads(body[: int(headers["content-length"])])
    assert set(document) == {"type", "title", "status", "detail", "reasons"}
    return headers, document


# ------------------------------------------------------------------- the head


def test_a_connection_that_sends_nothing_is_closed(service):
    with connect(service) as sock:
        answer, _ = until_closed(sock)
    assert answer == b""  # nothing was asked: nothing to answer


def test_a_head_that_never_ends_gets_408_then_the_connection_closes(service):
    with connect(service, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") as sock:
        answer, _ = until_closed(sock)
    assert status_of(answer) == 408
    headers, document = problem_of(answer)
    assert headers["connection"] == "close"
    assert document["type"].endswith("/timeout") and document["status"] == 408
    assert "request head did not arrive" in document["detail"]


def test_a_trickled_head_is_cut_off_although_bytes_keep_coming(service):
    """Slowloris: a byte of header every 0.1 s. Bytes arriving do not push the deadline
    back (an idle timer would never fire)."""
    with connect(service, b"GET /healthz HTTP/1.1\r\n") as sock:
        answer, sent = until_closed(sock, trickle=b"X-Slow: yes\r\n")
    assert status_of(answer) == 408
    assert sent > 0


def test_a_slow_head_on_a_kept_alive_connection_is_cut_off_too(service):
    """After a complete exchange the next head has its own deadline: uvicorn's keep-alive
    timer alone would be cancelled by the first trickled byte."""
    with connect(service, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        first = b""
        while b"\r\n\r\n" not in first or not first.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        assert status_of(first) == 200
        answer, sent = until_closed(sock, trickle=b"GET /healthz HTTP/1.1\r\nX: y\r\n")
    assert status_of(answer) == 408 and sent > 0


def test_pipelined_requests_are_answered_and_a_slow_head_behind_them_is_cut_off(service):
    """Two whole requests and the start of a third in one write: both are answered in
    order (the second's head had come, so no deadline cuts it), then the third head, which
    never ends, gets its 408."""
    whole = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(service, whole + whole.replace(b"healthz", b"v1/ca") + whole[:20]) as sock:
        answer, _ = until_closed(sock)
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200, 200, 408], answer[:600]
    assert b'"status":"ok"' in answer.replace(b" ", b"")
    assert b"-----BEGIN CERTIFICATE-----" in answer  # the second answer is /v1/ca's
    assert answer.index(b"-----BEGIN CERTIFICATE-----") > answer.index(b"ok")


def test_a_pipelined_request_is_not_cut_off_by_the_head_deadline(service):
    """A whole request, then a pipelined one whose head is whole but whose body stalls:
    the second is being answered (waiting for its body) when the head deadline would
    come, and it ends as a slow body does, with its own 408, not with the connection
    dropped by the head's deadline."""
    head = (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkcs10\r\n"
            b"Content-Length: 4096\r\n\r\n0123")
    with connect(service, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + head) as sock:
        answer, _ = until_closed(sock)
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200, 408], answer[:600]
    assert b"request body did not arrive" in answer


# ------------------------------------------------------------------- the body


@pytest.mark.parametrize("trickle", [b"x", b""], ids=["trickled", "stalled"])
def test_a_slow_body_gets_408_and_is_audited(service, trickle):
    head = (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkcs10\r\n"
            b"Content-Length: 4096\r\n\r\n0123")
    with connect(service, head) as sock:
        answer, sent = until_closed(sock, trickle=trickle)
    assert status_of(answer) == 408
    headers, document = problem_of(answer)
    assert headers["connection"] == "close"  # and the service did close it
    assert document["type"].endswith("/timeout")
    assert "request body did not arrive" in document["detail"]
    if trickle:
        assert sent > 0
    (entry,) = service.storage.audit_log()
    assert entry.outcome == "refused" and entry.serial is None
    assert list(entry.reasons) == document["reasons"]


def test_a_keep_gets_its_certificate_while_slow_clients_hang_on(service, keeps):
    """Slow clients of every kind, each in its own thread, while a keep obtains a
    certificate; then every slow client was ended by the service."""
    kinds = [
        (b"", b""),  # connects and says nothing
        (b"GET /healthz HTTP/1.1\r\n", b"X-Slow: yes\r\n"),  # slowloris
        (b"GET /v1/ca HTTP/1.1\r\nHost: x\r\n", b""),  # a head that stops
        (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\nab", b"z"),
        (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n", b""),
    ]
    endings: list[bytes] = []
    failures: list[BaseException] = []

    def slow(first: bytes, trickle: bytes) -> None:
        try:
            with connect(service, first) as sock:
                endings.append(until_closed(sock, trickle=trickle)[0])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=slow, args=kind) for kind in kinds * 4]
    for thread in threads:
        thread.start()
    try:
        issued, key = obtain(service, keeps["tdx-sim"])
    finally:
        for thread in threads:
            thread.join(BOUND + TIMEOUT)
    assert not failures, failures
    assert len(endings) == len(threads)
    assert all(status_of(answer) in (None, 408) for answer in endings)
    issued.verify_directly_issued_by(service.ca.certificate)
    assert spki_der(issued.public_key()) == spki_der(key.public_key())  # type: ignore[attr-defined]
    outcomes = [e.outcome for e in service.storage.audit_log()]
    assert outcomes.count("accepted") == 1 and outcomes.count("refused") == 8


# ------------------------------------------------------------------- the flood


@pytest.fixture
def descriptors() -> Iterator[None]:
    """Room for the flood: the soft limit on open files raised (within the hard limit) if
    it is below what FLOOD connections need at both ends, then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * FLOOD + 512
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_garbage_connections_do_not_stop_real_keeps(service, keeps, descriptors):
    """FLOOD connections held open at once, sending junk, heads or bodies that never end,
    or nothing, plus junk CSRs, while the SGX, SNP and TDX keeps get three certificates
    each, concurrently: every keep gets valid certificates, and every junk connection is
    answered or closed within the bound."""
    junk_kinds = [  # what is sent, and the statuses it may get before the connection ends
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64), {400, 408}),  # TLS
        (b"GET /v1/challenge HTTP/1.1\r\nHost: x\r\n", {408}),  # a head never finished
        (b"POST /v1/certificate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc",
         {408}),  # a body never finished
        (os.urandom(512), {400, 408}),
        (b"", {None}),  # connects and says nothing
        # a body /healthz never reads: answered, then the connection is ended all the same
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab", {200}),
    ]
    sockets = [connect(service, junk_kinds[i % len(junk_kinds)][0]) for i in range(FLOOD)]
    issued: dict[str, list[tuple[x509.Certificate, object]]] = {tee: [] for tee in TEES}
    garbage_posts: list[int] = []
    failures: list[BaseException] = []

    def keep(tee: str) -> None:
        try:
            for _ in range(3):
                issued[tee].append(obtain(service, keeps[tee]))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    def post_garbage() -> None:
        try:
            garbage_posts.append(service.post_csr(os.urandom(2048))[0])
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=keep, args=(tee,)) for tee in TEES]
    threads += [threading.Thread(target=post_garbage) for _ in range(10)]
    endings: list[bytes] = []
    try:
        for thread in threads:
            thread.start()
        for sock in sockets:
            endings.append(until_closed(sock)[0])
    finally:
        for sock in sockets:
            sock.close()
        for thread in threads:
            thread.join(BOUND + TIMEOUT)
    assert not failures, failures
    assert garbage_posts == [400] * 10

    for tee, certificates in issued.items():
        assert len(certificates) == 3, tee
        for certificate, key in certificates:
            certificate.verify_directly_issued_by(service.ca.certificate)
            assert spki_der(certificate.public_key()) == spki_der(key.public_key())  # type: ignore[attr-defined]
            result = results.from_certificate(certificate)
            assert result is not None and result.technology_name == TEES[tee]
            assert service.storage.certificate(certificate.serial_number) is not None
    assert len(endings) == FLOOD
    for index, answer in enumerate(endings):
        assert status_of(answer) in junk_kinds[index % len(junk_kinds)][1], (index, answer)
    log = service.storage.audit_log()
    assert sorted(e.serial for e in log if e.outcome == "accepted") == sorted(
        format(c.serial_number, "x") for certificates in issued.values() for c, _ in certificates)
    # and the service let go of every connection
    deadline = time.monotonic() + BOUND
    while service.server.server_state.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not service.server.server_state.connections
    assert service.request("GET", "/healthz")[0] == 200

