"""The attestation service's state in a database, through SQLAlchemy Core: one-time
challenges, issued certificates, revocations, the measurement deny-list and the audit log.
(The certificate path's few statements are compiled by SQLAlchemy once and run on the
driver's own cursor: :class:`_Prepared`.)

One code path serves SQLite (one machine, several processes sharing the file) and
PostgreSQL (a fleet of replicas). Correctness under concurrent replicas rests on the
database, never on a process's memory:

- a challenge is consumed by one ``UPDATE ... WHERE used_at IS NULL AND expires_at > now``
  whose row count says whether this caller won;
- an issuance and its audit record commit together or not at all, and the same transaction
  refuses a measurement that is on the deny-list, so a concurrent ``deny_measurement``
  either revokes the new certificate or makes the issuance fail;
- write transactions are serialised: ``BEGIN IMMEDIATE`` on SQLite, ``SERIALIZABLE`` on
  PostgreSQL, where a serialisation failure is retried a bounded number of times.

Every time is timezone-aware UTC and every operation takes ``now`` for tests. A failure of
the database reaches the caller as ``StorageUnavailable``, a duplicate row as
``StorageConflict``: never a raw SQLAlchemy exception.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time as _time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    create_engine,
    delete,
    event,
    exc,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool

from attestcall.errors import (
    MeasurementDenied,
    SchemaTooNew,
    StorageConflict,
    StorageError,
    StorageUnavailable,
)
from attestcall.service import migrations

__all__ = [
    "AuditRecord", "Attempt", "CertificateRecord", "KINDS", "MeasurementDenied", "Revocation",
    "SchemaTooNew", "Storage", "StorageConflict", "StorageError", "StorageUnavailable",
    "CHALLENGE_SIZE", "CHALLENGE_TTL", "DATABASE_FILE", "serial_hex",
]

CHALLENGE_SIZE = 32
CHALLENGE_TTL = timedelta(seconds=120)
DATABASE_FILE = "service.db"
BUSY_TIMEOUT = 10.0  # seconds a SQLite writer waits for another process's lock
RETRIES = 5  # attempts of a transaction that PostgreSQL aborted as a serialisation failure
OUTCOMES = ("accepted", "refused")
KINDS = migrations.KINDS  # an audit record's request: "certificate" or "token"
CONNECT_TIMEOUT = 5  # seconds to reach the PostgreSQL server, or to wait for a pooled connection
STATEMENT_TIMEOUT = 30  # seconds one PostgreSQL statement may run
DEAD_PEER_TIMEOUT = 30  # seconds before a silent PostgreSQL peer's connection is dropped
# Database connections a worker process keeps: up to 40, shared by its threads (Starlette's
# 40 and the 8 request threads, service/workers.py; a transaction holds one only while it
# runs), opened as needed and kept. Connections opened for a burst and closed after it
# were a new PostgreSQL server process every two certificates under load (3 of every 4 ms
# of the database's CPU).
POOL_SIZE = 40
POOL_OVERFLOW = 0


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC ``datetime`` on every backend. SQLite stores it without a zone
    (always UTC, in a fixed-width text form that compares in time order); PostgreSQL as
    ``timestamp with time zone``. Naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The current schema (migrations.LATEST); migrations.py creates it step by step.
metadata = MetaData()
challenges = Table(
    "challenges", metadata,
    Column("challenge", LargeBinary(CHALLENGE_SIZE), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)
certificates = Table(
    "certificates", metadata,
    Column("serial", String(migrations.SERIAL), primary_key=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("not_after", UtcDateTime, nullable=False),
    Column("technology", String(migrations.NAME), nullable=False),
    Column("measurement", String(migrations.MEASUREMENT), nullable=False),
    Column("der", LargeBinary, nullable=False),
)
revocations = Table(
    "revocations", metadata,
    Column("serial", String(migrations.SERIAL), ForeignKey("certificates.serial"),
           primary_key=True),
    Column("revoked_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)
denied_measurements = Table(
    "denied_measurements", metadata,
    Column("measurement", String(migrations.MEASUREMENT), primary_key=True),
    Column("denied_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)
audit = Table(
    "audit", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("time", UtcDateTime, nullable=False),
    Column("peer", String(255), nullable=True),
    Column("technology", String(migrations.NAME), nullable=True),
    Column("measurement", String(migrations.MEASUREMENT), nullable=True),
    Column("tcb_status", String(64), nullable=True),
    Column("outcome", String(8), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("serial", String(migrations.SERIAL), nullable=True),
    Column("kind", String(migrations.KIND), nullable=False),
)


# The statements of every certificate request, built once: values come as parameters at
# execution (building a statement with its values costs SQLAlchemy more than running it),
# and they run on the driver's cursor (_Prepared).
_NEW_CHALLENGE = insert(challenges)
_CONSUME_CHALLENGE = (update(challenges)
                      .where(challenges.c.challenge == bindparam("b_challenge"),
                             challenges.c.used_at.is_(None),
                             challenges.c.expires_at > bindparam("b_now"))
                      .values(used_at=bindparam("b_now")))
_NEW_AUDIT = insert(audit)
_NEW_CERTIFICATE = insert(certificates)
_DENIED = select(denied_measurements.c.measurement).where(
    denied_measurements.c.measurement == bindparam("b_measurement"))
_AUDIT_COLUMNS = [c.name for c in audit.c if c.name != "id"]


class _Prepared:
    """A statement of the certificate path compiled once for a dialect, to run on the
    driver's own cursor (:meth:`Storage._write_prepared`): its SQL in the driver's
    parameter style (SQLite's ``?``, psycopg's ``%(name)s``) and the column types' bind
    processors, which turn values into the driver's parameters as SQLAlchemy would.
    SQLAlchemy's execution of a compiled statement (its cache key, execution context,
    events and result object) cost the service more CPU than the database's own work: a
    challenge consumed took 0.24 ms of CPU through it, 0.1 ms on the cursor."""

    def __init__(self, statement: Any, dialect: Any, columns: Sequence[str] | None = None):
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        self.sql = compiled.string
        self._order = compiled.positiontup  # None for a named parameter style
        self._processors = [
            (name, processor) for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))]

    def parameters(self, values: dict[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        values = dict(values)
        for name, processor in self._processors:
            values[name] = processor(values[name])
        return values if self._order is None else tuple(values[n] for n in self._order)


class _HotStatements:
    """The certificate path's statements, prepared for one dialect."""

    def __init__(self, dialect: Any):
        self.new_challenge = _Prepared(_NEW_CHALLENGE, dialect,
                                       ["challenge", "created_at", "expires_at"])
        self.consume_challenge = _Prepared(_CONSUME_CHALLENGE, dialect)
        self.denied = _Prepared(_DENIED, dialect)
        self.new_audit = _Prepared(_NEW_AUDIT.returning(audit.c.id), dialect, _AUDIT_COLUMNS)
        self.audit_rows = _Prepared(_NEW_AUDIT, dialect, _AUDIT_COLUMNS)  # many, no ids
        self.new_certificate = _Prepared(_NEW_CERTIFICATE, dialect,
                                         [c.name for c in certificates.c])


def _run_prepared(cursor: Any, statement: _Prepared, values: dict[str, Any]) -> Any:
    cursor.execute(statement.sql, statement.parameters(values))
    return cursor


@dataclass(frozen=True)
class Attempt:
    """One certificate or token request as the audit log records it (``kind``, one of
    ``KINDS``). ``technology``, ``measurement`` and ``tcb_status`` are None when the
    request failed before they were known."""

    time: datetime
    peer: str | None
    technology: str | None = None
    measurement: str | None = None
    tcb_status: str | None = None
    reasons: Sequence[str] = ()
    kind: str = "certificate"


@dataclass(frozen=True)
class AuditRecord:
    """One row of the audit log."""

    id: int
    time: datetime
    peer: str | None
    technology: str | None
    measurement: str | None
    tcb_status: str | None
    outcome: str  # "accepted" or "refused"
    reasons: tuple[str, ...]
    serial: str | None
    kind: str  # "certificate" or "token"

    def as_json(self) -> dict[str, Any]:
        """The object ``service log --json`` prints (the time in ISO 8601, UTC)."""
        return {
            "time": self.time.isoformat(), "kind": self.kind, "peer": self.peer,
            "technology": self.technology, "measurement": self.measurement,
            "tcb_status": self.tcb_status, "outcome": self.outcome,
            "reasons": list(self.reasons), "serial": self.serial,
        }


@dataclass(frozen=True)
class CertificateRecord:
    """An issued certificate as stored."""

    serial: str
    issued_at: datetime
    not_after: datetime
    technology: str
    measurement: str
    der: bytes


class Revocation(NamedTuple):
    """A CRL entry."""

    serial: str
    revoked_at: datetime
    reason: str


def serial_hex(serial: int | str) -> str:
    """A certificate serial as the database keys it: lower-case hex without leading zeros.
    Takes an int or hex text (``0x`` prefix and ``:`` separators allowed)."""
    if isinstance(serial, int):
        value = serial
    else:
        text = serial.strip().replace(":", "")
        try:
            value = int(text, 16)
        except ValueError:
            raise ValueError(f"not a hexadecimal serial number: {serial!r}") from None
    if value <= 0:
        raise ValueError(f"a certificate serial is positive: {serial!r}")
    return format(value, "x")


def _measurement(measurement: str) -> str:
    text = measurement.strip().lower()
    try:
        bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"not a hexadecimal measurement: {measurement!r}") from None
    return text


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"a naive datetime, where a timezone-aware one is needed: {value!r}")
    return value.astimezone(UTC)


T = TypeVar("T")


class Storage:
    """The service's database. Open it with ``Storage.open``; it is safe to share between
    threads, and any number of processes may open the same database."""

    def __init__(self, engine: Engine, url: URL, version: int):
        self._engine = engine
        # SQLite has one writer at a time. This process's writers queue here, each woken
        # as the last one commits, rather than in SQLite's busy handler, which sleeps in
        # growing steps (up to 100 ms) while the lock may already be free.
        self._writers = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._hot = _HotStatements(engine.dialect)
        self.url = url.render_as_string(hide_password=True)
        self.schema_version = version

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None, home: Path) -> Storage:
        """Open (creating or upgrading) the database at ``url``; None means the SQLite file
        ``home/service.db``, creating ``home`` with mode 0700. Only ``sqlite`` and
        ``postgresql`` URLs are accepted. Raises ``SchemaTooNew`` on a database a newer
        attestcall upgraded, ``StorageUnavailable`` when it cannot be reached."""
        if url is None:
            home = Path(home)
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            parsed = URL.create("sqlite", database=str(home / DATABASE_FILE))
        else:
            try:
                parsed = make_url(url)
            except exc.ArgumentError:
                raise StorageError(f"not a database URL: {url!r}") from None
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            engine = _sqlite_engine(parsed)
        elif backend == "postgresql":
            engine = _postgresql_engine(parsed)
        else:
            raise StorageError(
                f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...")
        storage = cls(engine, parsed, 0)
        try:
            storage.schema_version = storage._guard(
                lambda: migrations.upgrade(storage._migration_transaction))
        except BaseException:
            engine.dispose()
            raise
        return storage

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- challenges --------------------------------------------------------------------

    def new_challenge(self, now: datetime | None = None,
                      ttl: timedelta = CHALLENGE_TTL) -> tuple[bytes, datetime]:
        """A fresh random challenge of ``CHALLENGE_SIZE`` bytes and the instant it expires."""
        now = _utc(now)
        if ttl <= timedelta(0):
            raise ValueError(f"a challenge's lifetime must be positive: {ttl}")
        expires_at = now + ttl
        for attempt in range(3):
            challenge = secrets.token_bytes(CHALLENGE_SIZE)
            values = {"challenge": challenge, "created_at": now, "expires_at": expires_at}
            try:
                self._write_prepared(
                    lambda c, v=values: _run_prepared(c, self._hot.new_challenge, v))
                return challenge, expires_at
            except StorageConflict:  # 2^-256: a broken random source, not bad luck
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def consume_challenge(self, challenge: bytes, now: datetime | None = None) -> bool:
        """True exactly once for a challenge this service made and that has not expired at
        ``now``; False for an unknown, expired or already used one. One atomic UPDATE, so
        of any number of replicas racing for one challenge exactly one wins."""
        now = _utc(now)
        if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_SIZE:
            return False
        values = {"b_challenge": challenge, "b_now": now}
        return self._write_prepared(
            lambda c: _run_prepared(c, self._hot.consume_challenge, values).rowcount) == 1

    def purge_challenges(self, now: datetime | None = None) -> int:
        """Delete the challenges expired at ``now`` (used or not); returns how many."""
        now = _utc(now)
        statement = delete(challenges).where(challenges.c.expires_at <= now)
        return self._write(lambda c: c.execute(statement).rowcount)

    # -- issuance and the audit log ----------------------------------------------------

    def record_issuance(self, attempt: Attempt, *, serial: int | str, not_after: datetime,
                        der: bytes) -> AuditRecord:
        """Record an issued certificate and its ``accepted`` audit record in one
        transaction: both or neither. The certificate's issue time, technology and
        measurement are the attempt's. Raises ``MeasurementDenied`` if the measurement is on
        the deny-list, ``StorageConflict`` if the serial was already issued."""
        if not attempt.technology or attempt.measurement is None:
            raise ValueError("an issuance records the technology and the measurement")
        if attempt.kind != "certificate":
            raise ValueError(f"an issuance answers a certificate request, not a {attempt.kind}")
        serial = serial_hex(serial)
        measurement = _measurement(attempt.measurement)
        issued_at = _utc(attempt.time)
        not_after = _utc(not_after)

        hot = self._hot
        row = _audit_row(attempt, "accepted", serial)
        certificate = {"serial": serial, "issued_at": issued_at, "not_after": not_after,
                       "technology": attempt.technology, "measurement": measurement,
                       "der": bytes(der)}

        def work(cursor: Any) -> int:
            if _run_prepared(cursor, hot.denied, {"b_measurement": measurement}).fetchone():
                raise MeasurementDenied(f"measurement {measurement} is on the deny-list")
            audit_id = _run_prepared(cursor, hot.new_audit, row).fetchone()[0]
            _run_prepared(cursor, hot.new_certificate, certificate)
            return int(audit_id)

        return _record(self._write_prepared(work), attempt, "accepted", serial)

    def record_refusal(self, attempt: Attempt) -> AuditRecord:
        """Record a refused attempt in the audit log."""
        return self.record_attempt(attempt, "refused")

    def record_attempt(self, attempt: Attempt, outcome: str) -> AuditRecord:
        """Record an attempt that issued no certificate (a refusal, or an EAR token whose
        verdict had ``outcome``: ``attempt.kind`` is then ``token``) in the audit log."""
        row = _audit_row(attempt, outcome, None)
        audit_id = self._write_prepared(
            lambda c: int(_run_prepared(c, self._hot.new_audit, row).fetchone()[0]))
        return _record(audit_id, attempt, outcome, None)

    def record_verdicts(self, verdicts: Sequence[tuple[Attempt, bool]]) -> list[bool]:
        """Record the audit records of EAR token decisions, each an attempt and whether its
        verdict accepted the evidence, in one transaction that also reads the deny-list:
        an accepted attempt whose measurement is denied is recorded ``refused``, with
        :func:`deny_reason` among its reasons. One flag per attempt, in order: whether its
        measurement was denied (the token must then say so). Many at once, for
        :class:`attestcall.service.group_commit.GroupCommit`."""
        hot = self._hot
        checked = []
        for attempt, accepted in verdicts:
            measurement = (None if attempt.measurement is None
                           else _measurement(attempt.measurement))
            checked.append((attempt, accepted, measurement))

        def work(cursor: Any) -> list[bool]:
            # each measurement once (a batch is mostly one workload's), then the rows in
            # one executemany: a few round trips to PostgreSQL per batch, not two per token
            denied = {m for m in {m for _, _, m in checked if m is not None}
                      if _run_prepared(cursor, hot.denied,
                                       {"b_measurement": m}).fetchone() is not None}
            flags, rows = [], []
            for attempt, accepted, measurement in checked:
                refused = measurement in denied
                if refused:
                    attempt = replace(attempt, reasons=[*attempt.reasons,
                                                        deny_reason(measurement)])
                outcome = "accepted" if accepted and not refused else "refused"
                rows.append(hot.audit_rows.parameters(_audit_row(attempt, outcome, None)))
                flags.append(refused)
            cursor.executemany(hot.audit_rows.sql, rows)
            return flags

        return self._write_prepared(work)

    def audit_log(self, since: datetime | None = None,
                  kind: str | None = None) -> list[AuditRecord]:
        """The audit log in time order (ties in insertion order), from ``since`` (inclusive)
        when given, of one ``kind`` of request (``KINDS``) when given."""
        statement = select(audit).order_by(audit.c.time, audit.c.id)
        if since is not None:
            statement = statement.where(audit.c.time >= _utc(since))
        if kind is not None:
            statement = statement.where(audit.c.kind == _kind(kind))
        rows = self._read(lambda c: c.execute(statement).all())
        return [AuditRecord(
            id=int(r.id), time=r.time, peer=r.peer, technology=r.technology,
            measurement=r.measurement, tcb_status=r.tcb_status, outcome=r.outcome,
            reasons=tuple(r.reasons), serial=r.serial, kind=r.kind) for r in rows]

    def certificate(self, serial: int | str) -> CertificateRecord | None:
        """The issued certificate with this serial, or None."""
        statement = select(certificates).where(certificates.c.serial == serial_hex(serial))
        row = self._read(lambda c: c.execute(statement).first())
        if row is None:
            return None
        return CertificateRecord(serial=row.serial, issued_at=row.issued_at,
                                 not_after=row.not_after, technology=row.technology,
                                 measurement=row.measurement, der=bytes(row.der))

    # -- revocation --------------------------------------------------------------------

    def revoke_serial(self, serial: int | str, reason: str = "",
                      now: datetime | None = None) -> bool:
        """Revoke the certificate with this serial: True if it is revoked now, False if no
        such certificate was issued or it was already revoked."""
        serial = serial_hex(serial)
        now = _utc(now)

        def work(connection: Connection) -> bool:
            known = connection.scalar(select(literal(1)).where(certificates.c.serial == serial))
            if known is None or _is_revoked(connection, serial):
                return False
            connection.execute(insert(revocations).values(
                serial=serial, revoked_at=now, reason=reason))
            return True

        try:
            return self._write(work)
        except StorageConflict:  # another replica revoked it between our read and insert
            return False

    def deny_measurement(self, measurement: str, reason: str = "",
                         now: datetime | None = None) -> list[str]:
        """Put ``measurement`` on the deny-list and revoke every certificate issued to it
        that is live at ``now`` (not expired, not revoked), in one transaction. Returns the
        serials revoked now, sorted. Denying a measurement again keeps its first entry and
        revokes whatever is live."""
        measurement = _measurement(measurement)
        now = _utc(now)

        def work(connection: Connection) -> list[str]:
            if not _denied(connection, measurement):
                connection.execute(insert(denied_measurements).values(
                    measurement=measurement, denied_at=now, reason=reason))
            live = connection.scalars(
                select(certificates.c.serial)
                .where(certificates.c.measurement == measurement,
                       certificates.c.not_after > now,
                       ~exists().where(revocations.c.serial == certificates.c.serial))
                .order_by(certificates.c.serial)).all()
            if live:
                connection.execute(insert(revocations), [
                    {"serial": s, "revoked_at": now, "reason": reason} for s in live])
            return list(live)

        for attempt in range(3):
            try:
                return self._write(work)
            except StorageConflict:  # a concurrent revocation or deny: read again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def is_denied(self, measurement: str) -> bool:
        """Whether ``measurement`` is on the deny-list."""
        measurement = _measurement(measurement)
        return self._read(lambda c: _denied(c, measurement))

    def revoked(self, now: datetime | None = None) -> list[Revocation]:
        """The CRL's entries: revoked certificates not yet expired at ``now``, in order of
        revocation."""
        now = _utc(now)
        statement = (select(revocations.c.serial, revocations.c.revoked_at,
                            revocations.c.reason)
                     .join(certificates, certificates.c.serial == revocations.c.serial)
                     .where(certificates.c.not_after > now)
                     .order_by(revocations.c.revoked_at, revocations.c.serial))
        rows = self._read(lambda c: c.execute(statement).all())
        return [Revocation(r.serial, r.revoked_at, r.reason) for r in rows]

    # -- health ------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Whether the database answers (``/healthz``): one read of the one-row
        ``schema_version`` table, which, unlike ``SELECT 1``, needs the database's file or
        server to be there and readable. Never raises."""
        try:
            return self._read(migrations.current_version) > 0
        except StorageError:
            return False

    # -- transactions ------------------------------------------------------------------

    def read(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one read transaction (for the service's other tables,
        such as the collateral cache's); errors become ``StorageError`` types."""
        return self._run(work, write=False)

    def write(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` in one serialised write transaction, retried on PostgreSQL's
        serialisation failures (so ``work`` must be safe to run again)."""
        return self._run(work, write=True)

    def _read(self, work: Callable[[Connection], T]) -> T:
        return self._run(work, write=False)

    def _write(self, work: Callable[[Connection], T]) -> T:
        return self._run(work, write=True)

    def _write_prepared(self, work: Callable[[Any], T]) -> T:
        """``work(cursor)`` in one write transaction on the driver's own connection and
        cursor (the certificate path's :class:`_Prepared` statements), serialised and
        retried as :meth:`_write`'s."""
        return self._run(work, write=True, transaction=self._cursor_transaction)

    def _run(self, work: Callable[[Any], T], *, write: bool,
             transaction: Callable[[Callable[[Any], T], bool], T] | None = None) -> T:
        """``work`` in one transaction, retried when PostgreSQL aborts it as a serialisation
        failure or a deadlock; database errors become ``StorageError`` types."""
        transaction = transaction or self._transaction
        for attempt in range(RETRIES):
            try:
                return self._guard(lambda: self._once(work, write, transaction), retry=True)
            except _Retry:
                if attempt == RETRIES - 1:
                    raise StorageUnavailable(
                        "the database kept aborting a transaction under contention") from None
                _time.sleep(0.005 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _once(self, work: Callable[[Any], T], write: bool,
              transaction: Callable[[Callable[[Any], T], bool], T]) -> T:
        if write and self._writers is not None:
            with self._writers:
                return transaction(work, write)
        return transaction(work, write)

    def _transaction(self, work: Callable[[Connection], T], write: bool) -> T:
        with self._engine.connect() as connection:
            connection.execution_options(attestcall_write=write)
            with connection.begin():
                return work(connection)

    def _cursor_transaction(self, work: Callable[[Any], T], write: bool) -> T:
        """``work(cursor)`` in one transaction on a pooled connection of the driver's own
        (checked out as any other: the SQLite file's identity, PostgreSQL's ping): SQLite's
        begins as :func:`_sqlite_engine`'s do, PostgreSQL's implicitly, SERIALIZABLE as
        the engine set the connection. The driver's errors become SQLAlchemy's, as a
        Connection would raise them, and a connection the error broke leaves the pool."""
        dialect = self._engine.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        try:
            connection = self._engine.raw_connection()
        except dbapi_error as error:
            raise exc.DBAPIError.instance(None, None, error, dbapi_error,
                                          dialect=dialect) from error
        try:
            cursor = connection.cursor()
            try:
                if dialect.name == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                result = work(cursor)
                connection.commit()
                return result
            except dbapi_error as error:
                if dialect.is_disconnect(error, connection.dbapi_connection, cursor):
                    connection.invalidate(error)
                else:
                    _rollback(connection)
                raise exc.DBAPIError.instance(None, None, error, dbapi_error,
                                              dialect=dialect) from error
            except BaseException:
                _rollback(connection)
                raise
            finally:
                cursor.close()
        finally:
            connection.close()

    @contextmanager
    def _migration_transaction(self) -> Iterator[Connection]:
        with self._engine.connect() as connection:
            connection.execution_options(attestcall_write=True)
            if connection.dialect.name == "postgresql":
                # The schema_version row lock orders replicas; SERIALIZABLE would abort
                # the waiting one instead of letting it see the new version.
                connection.execution_options(isolation_level="READ COMMITTED")
            with connection.begin():
                yield connection

    @staticmethod
    def _guard(call: Callable[[], T], retry: bool = False) -> T:
        """``call()`` with database errors made ``StorageError`` types; with ``retry``, a
        transaction PostgreSQL aborted raises ``_Retry`` instead."""
        try:
            return call()
        except exc.IntegrityError as error:
            raise StorageConflict(_describe(error)) from None
        except exc.DBAPIError as error:
            if retry and _retryable(error):
                raise _Retry() from None
            raise StorageUnavailable(f"the service database failed: {_describe(error)}") from None
        except exc.SQLAlchemyError as error:
            raise StorageUnavailable(f"the service database failed: {error}") from None


class _Retry(Exception):
    """A transaction to run again."""


def _rollback(connection: Any) -> None:
    """Roll back, if the connection still can (closing it returns it to the pool, which
    discards a connection it cannot reset)."""
    try:
        connection.rollback()
    except Exception:  # noqa: BLE001 - the error being raised says what went wrong
        pass


def _retryable(error: exc.DBAPIError) -> bool:
    """PostgreSQL's serialization_failure and deadlock_detected."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in ("40001", "40P01")


def _describe(error: exc.DBAPIError) -> str:
    text = str(error.orig).strip().splitlines()
    return text[0] if text else type(error.orig).__name__


def deny_reason(measurement: str) -> str:
    """Why evidence of a denied ``measurement`` is refused."""
    return f"measurement {measurement} is on the service's deny-list"


def _denied(connection: Connection, measurement: str) -> bool:
    return connection.scalar(_DENIED, {"b_measurement": measurement}) is not None


def _is_revoked(connection: Connection, serial: str) -> bool:
    return connection.scalar(select(func.count()).select_from(revocations)
                             .where(revocations.c.serial == serial)) > 0


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"an audit record's kind is one of {', '.join(KINDS)}: {kind!r}")
    return kind


def _audit_row(attempt: Attempt, outcome: str, serial: str | None) -> dict[str, Any]:
    assert outcome in OUTCOMES
    reasons = [str(r) for r in attempt.reasons]
    return {
        "time": _utc(attempt.time), "peer": attempt.peer, "technology": attempt.technology,
        "measurement": None if attempt.measurement is None else _measurement(attempt.measurement),
        "tcb_status": attempt.tcb_status, "outcome": outcome, "reasons": reasons,
        "serial": serial, "kind": _kind(attempt.kind),
    }


def _record(audit_id: int, attempt: Attempt, outcome: str, serial: str | None) -> AuditRecord:
    row = _audit_row(attempt, outcome, serial)
    return AuditRecord(id=audit_id, time=row["time"], peer=row["peer"],
                       technology=row["technology"], measurement=row["measurement"],
                       tcb_status=row["tcb_status"], outcome=outcome,
                       reasons=tuple(row["reasons"]), serial=serial, kind=row["kind"])


# -- engines ---------------------------------------------------------------------------

def _sqlite_engine(url: URL) -> Engine:
    """A SQLite engine several processes can share: WAL journal, a busy timeout, foreign
    keys on, write transactions opened with BEGIN IMMEDIATE (a reader that later writes
    cannot deadlock another). Connections open the file read-write without creating it and
    are pooled (a new one parses the schema again, which would cost more than the query);
    one is used again only while the path still names the file it opened (same device and
    inode), so a deleted or replaced file is an error, never writes into an unlinked one."""
    if url.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise StorageError(f"unsupported SQLite driver {url.drivername!r}: use sqlite:///PATH")
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise StorageError("a SQLite service database is a file: use sqlite:///PATH")
    path = Path(url.database).expanduser().absolute()
    _create_file(path)

    def connect() -> sqlite3.Connection:
        opened_file = _file_identity(path)  # before opening: a file replaced in between
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True,
                                     timeout=BUSY_TIMEOUT, isolation_level=None,
                                     check_same_thread=False, factory=_SqliteConnection)
        connection.opened_file = opened_file  # is seen as replaced at the next checkout
        return connection

    engine = create_engine("sqlite+pysqlite://", creator=connect, poolclass=QueuePool,
                           pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                           pool_timeout=BUSY_TIMEOUT)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, _record, _proxy) -> None:
        opened = getattr(dbapi_connection, "opened_file", None)
        if opened is None or opened != _file_identity(path):
            raise exc.DisconnectionError("the database file was deleted or replaced")

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("attestcall_write", True)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class _SqliteConnection(sqlite3.Connection):
    """A SQLite connection that remembers which file it opened."""

    opened_file: tuple[int, int] | None = None


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path``, or None when there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


_SQLITE_BUSY = 5


def _create_file(path: Path) -> None:
    """Create the database file 0600 if missing (SQLite gives its -wal and -shm files the
    same mode) and switch it to WAL, which the file remembers. SQLite answers the switch
    "locked" at once, without waiting, while another process is reading the new file (a
    replica starting at the same moment): that is tried again until BUSY_TIMEOUT."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as error:
        raise StorageUnavailable(f"cannot create the service database {path}: "
                                 f"{error.strerror}") from None
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True,
                                     timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            deadline = _time.monotonic() + BUSY_TIMEOUT
            while True:
                try:
                    connection.execute("PRAGMA journal_mode = WAL").fetchone()
                    break
                except sqlite3.OperationalError as error:
                    if (getattr(error, "sqlite_errorcode", 0) & 0xFF != _SQLITE_BUSY
                            or _time.monotonic() > deadline):
                        raise
                    _time.sleep(0.01)
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise StorageUnavailable(f"cannot open the service database {path}: {error}") from None


def _postgresql_engine(url: URL) -> Engine:
    """A pooled PostgreSQL engine whose transactions are SERIALIZABLE (``_run`` retries the
    ones PostgreSQL aborts); ``pool_pre_ping`` replaces connections a restart broke. A bare
    ``postgresql://`` URL uses psycopg (version 3); ``postgresql+DRIVER://`` another. A server
    that does not answer fails a connection after ``CONNECT_TIMEOUT`` seconds and a statement
    after ``STATEMENT_TIMEOUT``; TCP keepalives and ``TCP_USER_TIMEOUT`` end a connection to a
    server that vanished from the network (a partition, a host gone) after about
    ``DEAD_PEER_TIMEOUT`` seconds, so a request does not hang on it. (A server process that
    is frozen while its kernel still acknowledges packets is the one case these cannot see.)"""
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if url.drivername in ("postgresql+psycopg", "postgresql+psycopg2"):
        connect_args = {"connect_timeout": CONNECT_TIMEOUT,
                        "options": f"-c statement_timeout={STATEMENT_TIMEOUT * 1000}",
                        "keepalives": 1, "keepalives_idle": DEAD_PEER_TIMEOUT // 3,
                        "keepalives_interval": DEAD_PEER_TIMEOUT // 6, "keepalives_count": 2,
                        "tcp_user_timeout": DEAD_PEER_TIMEOUT * 1000,
                        "application_name": "attestcall-service"}
    try:
        return create_engine(url, isolation_level="SERIALIZABLE", pool_pre_ping=True,
                             pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                             pool_timeout=CONNECT_TIMEOUT, connect_args=connect_args)
    except ModuleNotFoundError as error:
        raise StorageError(f"PostgreSQL needs its Python driver ({error.name}); install "
                           "it, or name another with postgresql+DRIVER://") from None
