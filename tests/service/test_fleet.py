"""A fleet: ``attestcall service serve`` replicas as real processes sharing one real
PostgreSQL server (tests/postgres.py) and one CA home. Two replicas behave as one service;
two workers issue concurrently; the database stopped under a running replica answers 503
and recovers without a restart; a replica killed with requests in flight leaves neither a
certificate without its audit record nor an audit record without its certificate."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestcall.deploy.keys import spki_der
from attestcall.service import csr as csrs
from attestcall.service import result as results
from tests.service.helpers import (
    TEES,
    TIMEOUT,
    Served,
    assert_problem,
    cli,
    exchange,
    make_csr,
)

CERTIFICATE = "/v1/certificate"
USED = "unknown, expired or already used"
DEADLINE = 60.0  # seconds a test waits for something to happen before failing
OUTAGE_TIMEOUT = 20.0  # seconds an answer may take while the database is down (the
#                        service gives up connecting after storage.CONNECT_TIMEOUT, 5)


def post(served: Served, csr: bytes,
         timeout: float = TIMEOUT) -> tuple[int, dict[str, str], bytes]:
    return exchange(served.port, "POST", CERTIFICATE, csr, timeout=timeout)


def issued(answer: tuple[int, dict[str, str], bytes], ca: x509.Certificate) -> x509.Certificate:
    """The certificate in a 200 answer, checked to be issued by ``ca`` and chained to it."""
    status, headers, body = answer
    assert status == 200, body
    assert headers["content-type"] == "application/pem-certificate-chain"
    leaf, chained = x509.load_pem_x509_certificates(body)
    assert chained == ca
    leaf.verify_directly_issued_by(ca)
    return leaf


def serial(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def revoked_in_crl(served: Served, ca: x509.Certificate) -> set[str]:
    """The serials in a replica's CRL, once its signature is checked under ``ca``."""
    status, headers, body = exchange(served.port, "GET", "/v1/crl")
    assert status == 200 and headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(body)
    assert crl.issuer == ca.subject
    assert crl.is_signature_valid(ca.public_key())
    return {format(entry.serial_number, "x") for entry in crl}


def ca_of(served: Served) -> x509.Certificate:
    status, _, body = exchange(served.port, "GET", "/v1/ca")
    assert status == 200
    return x509.load_pem_x509_certificate(body)


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def balanced_ledger(postgres, url: str) -> dict[str, bytes]:
    """Read straight from the database: every certificate has exactly one ``accepted`` audit
    record with its serial, every ``accepted`` record exactly one certificate, and no
    refusal names a serial. Returns the certificates' DER by serial."""
    database = database_of(url)
    certificates = dict(postgres.sql("SELECT serial, der FROM certificates", database))
    accepted = [row[0] for row in postgres.sql(
        "SELECT serial FROM audit WHERE outcome = 'accepted'", database)]
    assert sorted(accepted) == sorted(certificates)  # also: no serial twice, none NULL
    assert postgres.sql("SELECT count(*) FROM audit WHERE outcome = 'refused' "
                        "AND serial IS NOT NULL", database) == [(0,)]
    return {key: bytes(der) for key, der in certificates.items()}


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------- two replicas


def test_two_replicas_on_one_database_are_one_service(postgres, pg_url, keeps, replica, env,
                                                      home, tmp_path):
    with ThreadPoolExecutor(2) as pool:  # together, on an empty database and an empty home
        a, b = pool.map(lambda _: replica(pg_url), range(2))
    ca = ca_of(a)
    assert ca_of(b) == ca
    done = cli(env, "service", "ca", "--home", str(home))
    assert done.returncode == 0 and x509.load_pem_x509_certificate(done.stdout) == ca
    by = {"a": set(), "b": set()}  # serials each replica issued

    # a challenge from A is accepted by B, once; the same CSR again is refused by both
    csr, _ = make_csr(keeps["sgx-sim"], a.challenge())
    first = issued(post(b, csr), ca)
    by["b"].add(serial(first))
    for served in (a, b):
        assert USED in assert_problem(*post(served, csr), 403)["detail"]
    # and one from B by A
    second = issued(post(a, make_csr(keeps["sgx-sim"], b.challenge())[0]), ca)
    by["a"].add(serial(second))

    # the same CSR to both replicas at once: exactly one certificate
    raced: list[x509.Certificate] = []
    for round_ in range(4):
        csr, _ = make_csr(keeps["tdx-sim"], (a, b)[round_ % 2].challenge())
        barrier = threading.Barrier(2)

        def race(served: Served, csr: bytes = csr, barrier=barrier):
            barrier.wait(TIMEOUT)
            return served, post(served, csr)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(race, (a, b)))
        assert sorted(answer[0] for _, answer in answers) == [200, 403]
        for served, answer in answers:
            if answer[0] == 200:
                raced.append(issued(answer, ca))
                by["a" if served is a else "b"].add(serial(raced[-1]))
            else:
                assert USED in assert_problem(*answer, 403)["detail"]

    # a revocation through the CLI, on the database alone: in both replicas' CRLs
    done = cli(env, "service", "revoke", "--database", pg_url, serial(first))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"revoked {serial(first)}\n"
    assert revoked_in_crl(a, ca) == revoked_in_crl(b, ca) == {serial(first)}
    # a denied measurement: its other certificate revoked everywhere, refused everywhere
    measurement = results.from_certificate(first).measurement.hex()
    assert results.from_certificate(second).measurement.hex() == measurement
    done = cli(env, "service", "revoke", "--database", pg_url, "--measurement", measurement,
               "--reason", "bad build")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == (f"measurement {measurement} denied; 1 certificate(s) "
                                    f"revoked: {serial(second)}\n")
    assert revoked_in_crl(a, ca) == revoked_in_crl(b, ca) == {serial(first), serial(second)}
    for served in (a, b):
        csr, _ = make_csr(keeps["sgx-sim"], served.challenge())
        assert "deny-list" in assert_problem(*post(served, csr), 403)["detail"]
    assert not (tmp_path / "xdg").exists()  # revoke needed no home of its own

    # the audit log on the database: every attempt of both replicas
    done = cli(env, "service", "log", "--database", pg_url, "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    accepted = [r["serial"] for r in records if r["outcome"] == "accepted"]
    assert sorted(accepted) == sorted(by["a"] | by["b"])
    assert by["a"] and by["b"]  # both replicas issued, and the log has both's
    refused = [r["reasons"][0] for r in records if r["outcome"] == "refused"]
    assert len(refused) == 2 + 4 + 2
    assert sum(USED in reason for reason in refused) == 6
    assert sum("deny-list" in reason for reason in refused) == 2
    assert all(r["peer"] == "127.0.0.1" for r in records)
    assert set(balanced_ledger(postgres, pg_url)) == set(accepted)
    assert not (tmp_path / "xdg").exists()


# ------------------------------------------------------------------- workers


def test_two_workers_on_postgresql_issue_concurrently(postgres, pg_url, keeps, replica):
    served = replica(pg_url, "--workers", "2")
    ca = ca_of(served)
    clients = 16
    barrier = threading.Barrier(clients)
    attesting = threading.Lock()  # a simulated keep answers one attestation at a time

    def keep(index: int) -> tuple[x509.Certificate, object]:
        barrier.wait(TIMEOUT)
        challenge = served.challenge()
        with attesting:
            csr, key = make_csr(keeps[sorted(TEES)[index % len(TEES)]], challenge)
        return issued(post(served, csr), ca), key

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(keep, range(clients)))
    for certificate, key in answers:
        assert certificate.public_key() == key.public_key()
    ledger = balanced_ledger(postgres, pg_url)
    assert ledger == {serial(c): c.public_bytes(serialization.Encoding.DER)
                      for c, _ in answers}
    status, body = served.request("GET", "/metrics")
    assert status == 200
    # both workers' counts
    assert f'path="/v1/certificate",status="200"}} {clients}.0'.encode() in body


# ------------------------------------------------------------------- faults


class Load:
    """Keeps asking ``served`` for certificates in a loop, in threads, until stopped: every
    answer's status is kept, with the serials of the certificates issued."""

    def __init__(self, served: Served, keeps: dict, threads: int = 4):
        self.served, self.keeps = served, keeps
        self.statuses: list[tuple[str, int | str]] = []
        self.serials: list[str] = []
        self.stopping = threading.Event()
        self.attesting = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int) -> None:
        source = self.keeps[sorted(TEES)[index % len(TEES)]]
        while not self.stopping.is_set():
            try:
                status, _, body = exchange(self.served.port, "GET", "/v1/challenge",
                                           timeout=OUTAGE_TIMEOUT)
                self.statuses.append(("challenge", status))
                if status != 200:
                    time.sleep(0.05)
                    continue
                challenge = csrs.decode_challenge(json.loads(body)["challenge"])
                with self.attesting:
                    csr, _ = make_csr(source, challenge)
                status, _, body = post(self.served, csr, OUTAGE_TIMEOUT)
                self.statuses.append(("certificate", status))
                if status == 200:
                    self.serials.append(serial(x509.load_pem_x509_certificates(body)[0]))
            except (OSError, http.client.HTTPException) as error:  # a hang times out
                self.statuses.append(("error", repr(error)))

    def seen(self, path: str, status: int) -> int:
        return sum(1 for entry in list(self.statuses) if entry == (path, status))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(OUTAGE_TIMEOUT * 2 + 5)
        assert not any(thread.is_alive() for thread in self.threads)


def test_the_database_stopped_under_a_replica_answers_503_then_recovers(
        postgres, pg_url, keeps, replica):
    served = replica(pg_url)
    ca = ca_of(served)
    issued(post(served, make_csr(keeps["sgx-sim"], served.challenge())[0]), ca)
    pending, _ = make_csr(keeps["snp-sim"], served.challenge())  # a stored, unused challenge
    load = Load(served, keeps)
    try:
        wait_for(lambda: load.seen("certificate", 200) >= 3, "certificates before the stop")
        postgres.stop()
        try:
            status, headers, body = exchange(served.port, "GET", "/healthz",
                                             timeout=OUTAGE_TIMEOUT)
            assert "does not answer" in assert_problem(status, headers, body, 503)["detail"]
            assert headers["retry-after"] == "5"
            for answer in (exchange(served.port, "GET", "/v1/challenge", timeout=OUTAGE_TIMEOUT),
                           post(served, pending, OUTAGE_TIMEOUT),
                           exchange(served.port, "GET", "/v1/crl", timeout=OUTAGE_TIMEOUT),
                           post(served, b"garbage", OUTAGE_TIMEOUT)):  # nor can a refusal be
                document = assert_problem(*answer, 503)                # audited
                assert "database is unavailable" in document["detail"]
                assert answer[1]["retry-after"] == "5"
            before = load.seen("certificate", 503)
            wait_for(lambda: load.seen("certificate", 503) > before
                     or load.seen("challenge", 503) > 5, "the load to meet the outage")
        finally:
            if not postgres.running:
                postgres.start()
        # the same process recovers by itself
        wait_for(lambda: exchange(served.port, "GET", "/healthz")[0] == 200, "recovery")
        after = load.seen("certificate", 200)
        wait_for(lambda: load.seen("certificate", 200) > after + 2, "the load to recover")
    finally:
        load.stop()
    assert served.process.poll() is None
    recovered = issued(post(served, pending), ca)  # the outage did not use its challenge
    fresh = issued(post(served, make_csr(keeps["tdx-sim"], served.challenge())[0]), ca)
    assert {kind for kind, _ in load.statuses} <= {"challenge", "certificate"}, [
        entry for entry in load.statuses if entry[0] == "error"][:3]
    assert {status for _, status in load.statuses} <= {200, 503}  # never a 500, never a 403
    ledger = balanced_ledger(postgres, pg_url)
    assert {serial(recovered), serial(fresh), *load.serials} <= set(ledger)
    log = served.errors()
    assert "database unavailable" in log and "internal error" not in log
    assert "Traceback" not in log


def test_a_replica_killed_mid_request_leaves_no_partial_issuance(postgres, pg_url, keeps,
                                                                   replica):
    a, b = replica(pg_url), replica(pg_url)
    ca = ca_of(a)
    clients = 40
    made = [make_csr(keeps[sorted(TEES)[i % len(TEES)]], b.challenge()) for i in range(clients)]
    requests = [csr for csr, _ in made]
    keys = {spki_der(key.public_key()) for _, key in made}
    barrier = threading.Barrier(clients)
    answered = threading.Event()

    def send(csr: bytes) -> tuple[int, dict[str, str], bytes] | None:
        barrier.wait(TIMEOUT)
        try:
            answer = post(a, csr)
        except (OSError, http.client.HTTPException):  # the replica died under us
            return None
        answered.set()
        return answer

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(send, csr) for csr in requests]
        assert answered.wait(TIMEOUT), "no answer before the kill"
        a.kill()
        answers = [future.result(TIMEOUT + 5) for future in futures]
    got = {csr: issued(answer, ca) for csr, answer in zip(requests, answers, strict=True)
           if answer is not None}
    assert got, "no request was answered before the kill"
    assert len(got) < clients, "every request was answered: the kill came too late"

    # B serves on; what A's clients got is in the database, whole
    assert exchange(b.port, "GET", "/healthz")[0] == 200
    ledger = balanced_ledger(postgres, pg_url)
    for certificate in got.values():
        assert ledger[serial(certificate)] == certificate.public_bytes(
            serialization.Encoding.DER)
    # a lost request's challenge is either untouched (B issues now) or was used by A
    retried = {}
    for csr in requests:
        if csr in got:
            continue
        status, headers, body = post(b, csr)
        if status == 200:
            retried[csr] = issued((status, headers, body), ca)
        else:
            assert USED in assert_problem(status, headers, body, 403)["detail"]
    ledger = balanced_ledger(postgres, pg_url)
    answered_serials = {serial(c) for c in [*got.values(), *retried.values()]}
    assert answered_serials <= set(ledger)
    # certificates A committed whose answer died with it have their audit record (balanced
    # above); no request has two
    certified = [spki_der(x509.load_der_x509_certificate(der).public_key())
                 for der in ledger.values()]
    assert len(set(certified)) == len(certified) and set(certified) <= keys
    # A's open transactions died with it
    wait_for(lambda: postgres.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
        f"'{database_of(pg_url)}' AND state LIKE 'idle in transaction%'") == [(0,)],
        "the killed replica's transactions to end")
