"""The service's database on SQLite and on a real PostgreSQL server (tests/postgres.py): the
schema and its upgrades, single-use challenges (also across processes), atomic issuance,
revocation, the deny-list, the audit log, and a database that has gone away."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, insert, inspect, text

from attestcall.errors import AttestcallError
from attestcall.service import migrations, storage
from attestcall.service.storage import (
    Attempt,
    MeasurementDenied,
    SchemaTooNew,
    Storage,
    StorageConflict,
    StorageError,
    StorageUnavailable,
    serial_hex,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 60.0  # seconds a thread of a test may take before the test fails
GOOD = "a1" * 48
BAD = "b2" * 48


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, home) -> str | None:
    """The database URL under test: None (the SQLite default under ``home``) or a new
    database on the session's PostgreSQL server."""
    return None if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def store(database, home):
    with Storage.open(database, home) as opened:
        yield opened


def attempt(measurement: str | None = GOOD, at: datetime = NOW, **fields) -> Attempt:
    values = {"peer": "192.0.2.7", "technology": "snp", "tcb_status": "UpToDate",
              "reasons": ()} | fields
    return Attempt(time=at, measurement=measurement, **values)


def issue(store: Storage, serial: int, measurement: str = GOOD, *, at: datetime = NOW,
          lifetime: timedelta = timedelta(hours=24)):
    return store.record_issuance(attempt(measurement, at), serial=serial,
                                 not_after=at + lifetime, der=b"cert-%d" % serial)


def table_counts(store: Storage) -> dict[str, int]:
    """Rows per table, read through a connection of the test's own."""
    engine = create_engine(store._engine.url) if store._engine.dialect.name == "postgresql" \
        else store._engine
    try:
        with engine.connect() as connection:
            return {name: connection.execute(text(f"SELECT COUNT(*) FROM {name}")).scalar()
                    for name in ("certificates", "audit", "revocations", "challenges")}
    finally:
        if engine is not store._engine:
            engine.dispose()


# -- opening and the schema ------------------------------------------------------------

def test_the_default_database_is_a_private_file_in_a_private_home(home):
    with Storage.open(None, home) as opened:
        assert opened.schema_version == migrations.LATEST
        assert opened.healthy()
    assert (home / storage.DATABASE_FILE).is_file()
    assert home.stat().st_mode & 0o777 == 0o700
    assert (home / storage.DATABASE_FILE).stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(home / storage.DATABASE_FILE) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def engine_for(database: str | None, home: Path):
    """An engine of the test's own on the database under test."""
    if database is None:
        return create_engine(f"sqlite:///{home / storage.DATABASE_FILE}")
    return create_engine(database.replace("postgresql://", "postgresql+psycopg://", 1))


def sql(database: str | None, home: Path, statement: str) -> list[tuple]:
    engine = engine_for(database, home)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_the_schema_matches_the_tables_storage_queries(database, home):
    Storage.open(database, home).close()
    engine = engine_for(database, home)
    try:
        inspector = inspect(engine)
        for table in storage.metadata.tables.values():
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            assert columns == set(table.c.keys())
    finally:
        engine.dispose()


def test_reopening_keeps_the_data_and_the_upgrade_is_idempotent(database, home):
    with Storage.open(database, home) as first:
        issue(first, 0x10)
        challenge, _ = first.new_challenge(NOW)
    for _ in range(2):
        with Storage.open(database, home) as again:
            assert again.schema_version == migrations.LATEST
            assert again.certificate(0x10).der == b"cert-16"
    with Storage.open(database, home) as last:
        assert last.consume_challenge(challenge, NOW)
    assert sql(database, home, "SELECT id, version FROM schema_version") == [
        (1, migrations.LATEST)]


def test_an_explicit_sqlite_url_is_used(tmp_path, home):
    path = tmp_path / "elsewhere.db"
    with Storage.open(f"sqlite:///{path}", home) as opened:
        issue(opened, 7)
    assert path.is_file()
    assert not home.exists()


def test_a_postgresql_url_needs_no_home(pg_url, home):
    with Storage.open(pg_url, home) as opened:
        assert opened._engine.dialect.driver == "psycopg"
        assert opened.healthy()
    assert not home.exists()


def test_postgresql_connections_are_bounded_in_time(pg_url, home):
    """A dead or silent server cannot hold a request forever: libpq's connect timeout,
    keepalives and TCP user timeout are set on every connection, and the server ends a
    statement that runs too long."""
    with Storage.open(pg_url, home) as opened, opened._engine.connect() as connection:
        pgconn = connection.connection.dbapi_connection.pgconn
        options = {o.keyword.decode(): o.val for o in pgconn.info if o.val is not None}
        assert options["connect_timeout"] == str(storage.CONNECT_TIMEOUT).encode()
        assert options["keepalives"] == b"1"
        assert int(options["tcp_user_timeout"]) == storage.DEAD_PEER_TIMEOUT * 1000
        assert int(options["keepalives_idle"]) * 3 <= storage.DEAD_PEER_TIMEOUT
        timeout = connection.exec_driver_sql("SHOW statement_timeout").scalar()
        assert timeout == f"{storage.STATEMENT_TIMEOUT}s"


def test_a_newer_schema_is_refused(database, home):
    Storage.open(database, home).close()
    sql(database, home, f"UPDATE schema_version SET version = {migrations.LATEST + 1}")
    with pytest.raises(SchemaTooNew, match=f"schema version {migrations.LATEST + 1}"):
        Storage.open(database, home)


def test_a_partly_upgraded_database_is_finished(database, home, monkeypatch):
    """A later step runs once on a database an older attestcall left at its version."""
    ran: list[int] = []

    def step_two(connection) -> None:
        ran.append(migrations.current_version(connection))

    Storage.open(database, home).close()
    monkeypatch.setattr(migrations, "STEPS", migrations.STEPS + (step_two,))
    monkeypatch.setattr(migrations, "LATEST", migrations.LATEST + 1)
    with Storage.open(database, home) as upgraded:
        assert upgraded.schema_version == migrations.LATEST
    Storage.open(database, home).close()
    assert ran == [migrations.LATEST]  # the row moved first, inside the same transaction


def test_a_failed_step_leaves_the_version_where_it_was(database, home, monkeypatch):
    def broken(connection) -> None:
        connection.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        connection.exec_driver_sql("SELECT * FROM no_such_table")

    Storage.open(database, home).close()
    monkeypatch.setattr(migrations, "STEPS", migrations.STEPS + (broken,))
    monkeypatch.setattr(migrations, "LATEST", migrations.LATEST + 1)
    with pytest.raises(StorageUnavailable):
        Storage.open(database, home)
    assert sql(database, home, "SELECT version FROM schema_version") == [
        (migrations.LATEST - 1,)]
    engine = engine_for(database, home)
    try:
        assert "half_done" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _open_worker(url: str, home: str, barrier, results) -> None:
    barrier.wait(timeout=120)
    try:
        with Storage.open(url, Path(home)) as opened:
            results.put(opened.schema_version)
    except Exception as error:  # reported to the test, which fails on it
        results.put(repr(error))


def test_replicas_starting_together_on_an_empty_database_create_it_once(database, home):
    """Four processes open one new database at the same instant: each sees the latest
    schema, built exactly once."""
    url = database or f"sqlite:///{home / storage.DATABASE_FILE}"
    home.mkdir(mode=0o700)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    workers = [context.Process(target=_open_worker, args=(url, str(home), barrier, results))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        assert sorted(results.get(timeout=120) for _ in workers) == [migrations.LATEST] * 4
    finally:
        for worker in workers:
            worker.join(timeout=60)
    assert sql(database, home, "SELECT id, version FROM schema_version") == [
        (1, migrations.LATEST)]


@pytest.mark.parametrize("url", ["mysql://localhost/attest", "oracle://x", "sqlite://",
                                 "sqlite:///:memory:", "not a url"])
def test_other_databases_are_refused_clearly(home, url):
    with pytest.raises(StorageError) as raised:
        Storage.open(url, home)
    assert "sqlite:///PATH" in str(raised.value) or "not a database URL" in str(raised.value)
    assert isinstance(raised.value, AttestcallError)


# -- challenges ------------------------------------------------------------------------

def test_a_challenge_is_fresh_random_bytes_with_a_lifetime(store):
    first, expires = store.new_challenge(NOW)
    second, _ = store.new_challenge(NOW)
    assert len(first) == storage.CHALLENGE_SIZE and first != second
    assert expires == NOW + timedelta(seconds=120)
    assert expires.tzinfo is not None
    _, short = store.new_challenge(NOW, ttl=timedelta(seconds=5))
    assert short == NOW + timedelta(seconds=5)


def test_a_challenge_is_consumed_once(store):
    challenge, _ = store.new_challenge(NOW)
    assert store.consume_challenge(challenge, NOW + timedelta(seconds=1))
    assert not store.consume_challenge(challenge, NOW + timedelta(seconds=2))


def test_an_expired_challenge_is_refused(store):
    challenge, expires = store.new_challenge(NOW)
    assert not store.consume_challenge(challenge, expires)
    fresh, expires = store.new_challenge(NOW)
    assert store.consume_challenge(fresh, expires - timedelta(microseconds=1))


def test_an_unknown_challenge_is_refused(store):
    store.new_challenge(NOW)
    assert not store.consume_challenge(os.urandom(storage.CHALLENGE_SIZE), NOW)
    assert not store.consume_challenge(b"short", NOW)
    assert not store.consume_challenge(b"", NOW)


def test_expired_challenges_are_purged(store):
    old, _ = store.new_challenge(NOW - timedelta(minutes=10))
    live, _ = store.new_challenge(NOW)
    assert store.purge_challenges(NOW) == 1
    assert table_counts(store)["challenges"] == 1
    assert store.consume_challenge(live, NOW)


def test_times_must_carry_a_zone(store):
    with pytest.raises(ValueError, match="naive"):
        store.new_challenge(datetime(2025, 1, 1))


def _race_worker(url: str, home: str, barrier, requests, results) -> None:
    """One replica: each challenge it is handed, consumed the moment the other is ready."""
    with Storage.open(url, Path(home)) as replica:
        results.put(("ready", None))
        while (challenge := requests.get()) is not None:
            barrier.wait(timeout=120)
            results.put((challenge, replica.consume_challenge(challenge, NOW)))


def test_two_processes_racing_for_one_challenge_exactly_one_wins(store, database, home):
    context = multiprocessing.get_context("spawn")
    url = database or f"sqlite:///{home / storage.DATABASE_FILE}"
    barrier = context.Barrier(2)
    results = context.Queue()
    queues = [context.Queue() for _ in range(2)]
    workers = [context.Process(target=_race_worker, args=(url, str(home), barrier, q, results))
               for q in queues]
    for worker in workers:
        worker.start()
    try:
        assert [results.get(timeout=120) for _ in workers] == [("ready", None)] * 2
        rounds = 40
        wins: dict[bytes, list[bool]] = {}
        for _ in range(rounds):
            challenge, _ = store.new_challenge(NOW)
            for q in queues:
                q.put(challenge)
            answers = [results.get(timeout=120) for _ in workers]
            assert {c for c, _ in answers} == {challenge}
            wins[challenge] = sorted(won for _, won in answers)
        assert all(w == [False, True] for w in wins.values()), wins
        assert not any(store.consume_challenge(c, NOW) for c in wins)
    finally:
        for q in queues:
            q.put(None)
        for worker in workers:
            worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]


# -- issuance and the audit log --------------------------------------------------------

def test_an_issuance_records_the_certificate_and_its_audit_record(store):
    record = issue(store, 0xABCDEF)
    assert record.outcome == "accepted" and record.serial == "abcdef"
    assert record.measurement == GOOD and record.technology == "snp"
    cert = store.certificate("0xABCDEF")
    assert cert.serial == "abcdef" and cert.issued_at == NOW and cert.measurement == GOOD
    assert cert.not_after == NOW + timedelta(hours=24) and cert.der == b"cert-11259375"
    assert store.audit_log() == [record]
    assert store.certificate(0x1234) is None


def test_an_issuance_and_its_audit_record_are_one_transaction(store):
    """The second issuance of a serial fails at the certificate insert, after its audit
    record was written: neither may remain."""
    issue(store, 0x42)
    before = table_counts(store)
    with pytest.raises(StorageConflict):
        issue(store, 0x42, BAD, at=NOW + timedelta(minutes=1))
    assert table_counts(store) == before
    assert [r.measurement for r in store.audit_log()] == [GOOD]


def test_a_failure_in_the_middle_of_an_issuance_leaves_nothing(store, monkeypatch):
    """The database fails between the audit insert and the certificate insert (here: the
    certificate goes to a table that is not there): the audit row is rolled back."""
    missing = storage.certificates.to_metadata(MetaData(), name="no_such_table")
    # the certificate path's statements are prepared when the storage opens
    monkeypatch.setattr(store._hot, "new_certificate", storage._Prepared(
        insert(missing), store._engine.dialect, [c.name for c in missing.c]))
    with pytest.raises(StorageUnavailable):
        issue(store, 5)
    monkeypatch.undo()
    assert table_counts(store) == {"certificates": 0, "audit": 0, "revocations": 0,
                                  "challenges": 0}


def test_an_issuance_for_a_denied_measurement_is_refused_whole(store):
    store.deny_measurement(BAD, "known bad", NOW)
    with pytest.raises(MeasurementDenied):
        issue(store, 0x77, BAD)
    assert table_counts(store)["certificates"] == table_counts(store)["audit"] == 0


def test_an_issuance_needs_a_technology_and_a_measurement(store):
    with pytest.raises(ValueError):
        store.record_issuance(attempt(None), serial=1, not_after=NOW, der=b"x")


def test_refusals_are_audited_with_their_reasons(store):
    refused = store.record_refusal(attempt(None, technology=None, tcb_status=None,
                                           reasons=("malformed CSR", "no evidence")))
    assert refused.outcome == "refused" and refused.serial is None
    assert refused.reasons == ("malformed CSR", "no evidence")
    assert store.audit_log() == [refused]
    assert refused.as_json() == {
        "time": "2025-06-01T12:00:00+00:00", "kind": "certificate", "peer": "192.0.2.7",
        "technology": None, "measurement": None, "tcb_status": None, "outcome": "refused",
        "reasons": ["malformed CSR", "no evidence"], "serial": None}


def test_token_requests_are_audited_as_tokens_and_filtered_by_kind(store):
    certificate = issue(store, 0x51)
    token = store.record_attempt(attempt(kind="token"), "accepted")
    refused_token = store.record_refusal(attempt(None, kind="token", reasons=("bad JSON",)))
    refused_csr = store.record_refusal(attempt(None, reasons=("malformed CSR",)))
    assert [r.kind for r in (certificate, token, refused_token, refused_csr)] == [
        "certificate", "token", "token", "certificate"]
    assert token.serial is None and token.as_json()["kind"] == "token"
    assert store.audit_log() == [certificate, token, refused_token, refused_csr]
    assert store.audit_log(kind="token") == [token, refused_token]
    assert store.audit_log(kind="certificate") == [certificate, refused_csr]
    assert store.audit_log(since=NOW + timedelta(seconds=1), kind="token") == []
    with pytest.raises(ValueError, match="kind"):
        store.audit_log(kind="tokens")
    with pytest.raises(ValueError, match="kind"):
        store.record_refusal(attempt(kind="csr"))
    with pytest.raises(ValueError, match="certificate request"):
        store.record_issuance(attempt(kind="token"), serial=0x52, not_after=NOW, der=b"x")
    assert len(store.audit_log()) == 4
    # the database itself holds the kind to one of the two (the column's CHECK)
    with pytest.raises(StorageConflict):
        store.write(lambda c: c.execute(insert(storage.audit).values(
            time=NOW, outcome="refused", reasons=[], kind="csr")))


def _v2_database(database: str | None, home: Path, monkeypatch) -> None:
    """A database made by the schema before the audit log's kind (version 2), with the
    audit rows a version-2 service wrote: an issued certificate, a token it affirmed (no
    serial) and a refusal, written with that schema's columns."""
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "STEPS", migrations.STEPS[:2])
        patch.setattr(migrations, "LATEST", 2)
        with Storage.open(database, home) as old:
            assert old.schema_version == 2
    engine = engine_for(database, home)
    try:
        assert "kind" not in {c["name"] for c in inspect(engine).get_columns("audit")}
    finally:
        engine.dispose()
    columns = "time, peer, technology, measurement, tcb_status, outcome, reasons, serial"
    zone = "" if database is None else "+00"  # SQLite's times are UTC without a zone
    sql(database, home, f"INSERT INTO audit ({columns}) VALUES "
        f"('2025-06-01 11:00:00{zone}', '192.0.2.1', 'sgx', '{GOOD}', 'UpToDate', "
        "'accepted', '[]', 'abc1'), "
        f"('2025-06-01 11:01:00{zone}', '192.0.2.2', 'tdx', '{BAD}', 'UpToDate', "
        "'accepted', '[]', NULL), "
        f"('2025-06-01 11:02:00{zone}', '192.0.2.3', NULL, NULL, NULL, 'refused', "
        "'[\"malformed CSR\"]', NULL)")


def test_a_version_2_database_is_upgraded_with_its_audit_log_kept(database, home,
                                                                   monkeypatch):
    _v2_database(database, home, monkeypatch)
    with Storage.open(database, home) as upgraded:
        assert upgraded.schema_version == migrations.LATEST == 3
        log = upgraded.audit_log()
        assert [(r.peer, r.technology, r.outcome, r.serial, r.reasons, r.kind) for r in log] == [
            ("192.0.2.1", "sgx", "accepted", "abc1", (), "certificate"),
            ("192.0.2.2", "tdx", "accepted", None, (), "token"),  # only a token has no serial
            ("192.0.2.3", None, "refused", None, ("malformed CSR",), "certificate")]
        assert log[0].time == datetime(2025, 6, 1, 11, 0, tzinfo=UTC)
        assert log[0].measurement == GOOD and log[0].tcb_status == "UpToDate"
        # and it goes on: new records of both kinds after the old ones
        upgraded.record_attempt(attempt(kind="token"), "refused")
        issue(upgraded, 0x99)
        assert [r.kind for r in upgraded.audit_log(kind="token")] == ["token", "token"]
        assert len(upgraded.audit_log(kind="certificate")) == 3
    assert sql(database, home, "SELECT version FROM schema_version") == [(3,)]


def test_the_audit_log_is_in_time_order_and_filters_by_since(store):
    late = issue(store, 3, at=NOW + timedelta(minutes=5))
    early = store.record_refusal(attempt(at=NOW - timedelta(minutes=5), reasons=("policy",)))
    middle_a = issue(store, 1, at=NOW)
    middle_b = store.record_refusal(attempt(at=NOW, reasons=("tcb",)))
    assert store.audit_log() == [early, middle_a, middle_b, late]
    assert store.audit_log(since=NOW) == [middle_a, middle_b, late]
    assert store.audit_log(since=NOW + timedelta(seconds=1)) == [late]
    assert store.audit_log(since=NOW + timedelta(hours=1)) == []
    other_zone = (NOW + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-7)))
    assert store.audit_log(since=other_zone) == [late]


# -- revocation and the deny-list ------------------------------------------------------

def test_revoke_a_serial(store):
    issue(store, 0xAA)
    issue(store, 0xBB)
    assert store.revoke_serial("AA", "key compromise", NOW + timedelta(minutes=1))
    assert not store.revoke_serial(0xAA, "again", NOW + timedelta(minutes=2))
    assert not store.revoke_serial(0xCC, "never issued", NOW)
    assert store.revoked(NOW + timedelta(minutes=3)) == [
        ("aa", NOW + timedelta(minutes=1), "key compromise")]


def test_the_crl_leaves_out_expired_certificates(store):
    issue(store, 1, lifetime=timedelta(hours=1))
    issue(store, 2, lifetime=timedelta(hours=48))
    store.revoke_serial(1, "", NOW)
    store.revoke_serial(2, "", NOW)
    assert [r.serial for r in store.revoked(NOW + timedelta(minutes=30))] == ["1", "2"]
    assert [r.serial for r in store.revoked(NOW + timedelta(hours=2))] == ["2"]


def test_denying_a_measurement_revokes_its_live_certificates_only(store):
    issue(store, 0x1, BAD)
    issue(store, 0x2, BAD)
    issue(store, 0x3, BAD, lifetime=timedelta(minutes=10))  # expired when denied
    issue(store, 0x4, GOOD)
    store.revoke_serial(0x2, "earlier", NOW)  # already revoked: keeps its entry
    later = NOW + timedelta(hours=1)
    assert store.deny_measurement(BAD.upper(), "vulnerable firmware", later) == ["1"]
    assert store.is_denied(BAD) and not store.is_denied(GOOD)
    assert store.revoked(later) == [("2", NOW, "earlier"), ("1", later, "vulnerable firmware")]
    assert store.deny_measurement(BAD, "twice", later) == []
    assert store.certificate(0x4) is not None
    assert [r.serial for r in store.revoked(later)] == ["2", "1"]


def test_serials_and_measurements_are_checked(store):
    assert serial_hex("00:0A") == serial_hex(10) == serial_hex("0xa") == "a"
    for bad in ("xyz", "", 0, -1):
        with pytest.raises(ValueError):
            serial_hex(bad)
    with pytest.raises(ValueError):
        store.deny_measurement("not hex")


# -- a database that has gone away -----------------------------------------------------

def every_call(store: Storage):
    challenge = bytes(storage.CHALLENGE_SIZE)
    return [
        lambda: store.new_challenge(NOW),
        lambda: store.consume_challenge(challenge, NOW),
        lambda: store.purge_challenges(NOW),
        lambda: issue(store, 0x99),
        lambda: store.record_refusal(attempt()),
        lambda: store.audit_log(),
        lambda: store.certificate(1),
        lambda: store.revoke_serial(1, "", NOW),
        lambda: store.deny_measurement(BAD, "", NOW),
        lambda: store.is_denied(BAD),
        lambda: store.revoked(NOW),
    ]


@pytest.fixture
def sqlite_store(home):
    with Storage.open(None, home) as opened:
        yield opened


def test_one_process_s_sqlite_writers_queue_for_each_other(home, monkeypatch):
    """Threads of one process writing at once wait for each other in the process, never
    in SQLite's busy handler (which sleeps in growing steps while the lock may be free):
    even with no busy timeout at all, none of them finds the database locked."""
    monkeypatch.setattr(storage, "BUSY_TIMEOUT", 0.0)
    threads, per_thread = 12, 15
    with Storage.open(None, home) as store:
        start = threading.Barrier(threads)
        failures: list[BaseException] = []
        made: list[bytes] = []

        def write() -> None:
            start.wait(TIMEOUT)
            try:
                for _ in range(per_thread):
                    challenge, _ = store.new_challenge(NOW)
                    assert store.consume_challenge(challenge, NOW)
                    made.append(challenge)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        workers = [threading.Thread(target=write) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(TIMEOUT)
        assert not any(worker.is_alive() for worker in workers)
        assert failures == []
        assert len(set(made)) == threads * per_thread
        assert table_counts(store)["challenges"] == threads * per_thread


def test_a_deleted_database_is_unavailable_not_a_crash(sqlite_store, home):
    store = sqlite_store
    issue(store, 1)
    for name in os.listdir(home):
        os.unlink(home / name)
    for call in every_call(store):
        with pytest.raises(StorageUnavailable):
            call()
    assert not store.healthy()
    assert not (home / storage.DATABASE_FILE).exists()  # nothing recreated it silently
    with pytest.raises(StorageUnavailable):
        Storage.open(f"sqlite:///{home / 'missing-dir' / 'x.db'}", home)


def test_an_unreadable_database_is_unavailable_and_recovers(sqlite_store, home):
    store = sqlite_store
    path = home / storage.DATABASE_FILE
    issue(store, 1)
    with sqlite3.connect(path) as connection:  # the WAL into the file, which is then whole
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    saved = path.read_bytes()
    for name in os.listdir(home):
        os.unlink(home / name)
    path.write_bytes(b"this is not a database" * 300)
    for call in every_call(store):
        with pytest.raises(StorageUnavailable):
            call()
    assert not store.healthy()
    path.write_bytes(saved)  # the database is back: the same Storage works again
    assert store.healthy()
    assert store.certificate(1) is not None


def test_connections_opened_for_a_burst_stay_open_for_the_next(pg_url, home):
    """Thirty operations at once need thirty PostgreSQL connections; the next burst uses
    the very same server processes, none opened or closed in between (a new connection is
    a new server process: closing a burst's connections after it churned them)."""
    burst = 30
    with Storage.open(pg_url, home) as store:

        def backends() -> set[int]:
            start = threading.Barrier(burst)
            seen: list[int] = []

            def hold(connection) -> None:  # all thirty hold a connection at once
                seen.append(connection.execute(text("SELECT pg_backend_pid()")).scalar())
                start.wait(TIMEOUT)

            workers = [threading.Thread(target=store._read, args=(hold,))
                       for _ in range(burst)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(TIMEOUT)
            assert len(seen) == burst
            return set(seen)

        first = backends()
        assert len(first) == burst
        assert backends() == first


def test_a_stopped_postgresql_server_is_unavailable_then_recovers(postgres, pg_url, home):
    """The server goes down under an open Storage: every call fails with
    StorageUnavailable, promptly; once it is back, the same Storage works, its data
    intact."""
    with Storage.open(pg_url, home) as store:
        issue(store, 1)
        challenge, _ = store.new_challenge(NOW)
        postgres.stop()
        try:
            for call in every_call(store):
                with pytest.raises(StorageUnavailable):
                    call()
            assert not store.healthy()
        finally:
            postgres.start()
        assert store.healthy()
        assert store.certificate(1) is not None
        assert store.consume_challenge(challenge, NOW)


def test_token_verdicts_are_recorded_together_with_the_deny_list_read_in_their_transaction(
        store):
    store.deny_measurement(BAD, "known bad", NOW)
    flags = store.record_verdicts([
        (attempt(GOOD, technology="sgx", kind="token"), True),
        (attempt(BAD, technology="tdx", kind="token"), True),
        (attempt(GOOD, reasons=("the TCB is out of date",), kind="token"), False),
        (attempt(None, tcb_status=None, reasons=("unusable",), kind="token"), False),
    ])
    assert flags == [False, True, False, False]
    log = store.audit_log()
    assert [(e.technology, e.outcome) for e in log] == [
        ("sgx", "accepted"), ("tdx", "refused"), ("snp", "refused"), ("snp", "refused")]
    assert log[1].reasons == (storage.deny_reason(BAD),)
    assert log[2].reasons == ("the TCB is out of date",)
    assert all(e.serial is None and e.kind == "token" for e in log)
    assert table_counts(store)["certificates"] == 0


def test_token_verdicts_with_a_bad_measurement_record_nothing(store):
    with pytest.raises(ValueError):
        store.record_verdicts([(attempt(GOOD), True), (attempt("not hex"), True)])
    assert store.audit_log() == []
