"""The service database's schema versions, oldest first, and the runner that applies them.

Each step brings the schema from version ``n`` to ``n + 1`` and spells out its own DDL, so a
later change to the tables in ``storage.py`` never alters what an old step creates. The
runner applies each step in its own transaction, which first moves the single
``schema_version`` row from ``n`` to ``n + 1`` with ``UPDATE ... WHERE version = n``: that
row lock makes replicas that start together on one database take turns, and a replica that
loses the turn sees the new version and skips the step.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    exc,
    insert,
    select,
    update,
)

from attestcall.errors import SchemaTooNew, StorageError

SERIAL = 40  # a 159-bit serial is at most 40 hex digits
MEASUREMENT = 256
NAME = 32
VENDOR = 8
ITEM_KEY = 2048  # a pckcert query (an RSA-3072 encrypted PPID is 768 hex digits) fits
KIND = 16
KINDS = ("certificate", "token")  # what an audit record's request asked for

version_metadata = MetaData()
schema_version = Table(
    "schema_version", version_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("version", Integer, nullable=False),
)


def _create_v1(connection: Connection) -> None:
    """Challenges, certificates, revocations, the deny-list and the audit log."""
    metadata = MetaData()
    when = DateTime(timezone=True)
    Table(
        "challenges", metadata,
        Column("challenge", LargeBinary(32), primary_key=True),
        Column("created_at", when, nullable=False),
        Column("expires_at", when, nullable=False, index=True),
        Column("used_at", when, nullable=True),
    )
    Table(
        "certificates", metadata,
        Column("serial", String(SERIAL), primary_key=True),
        Column("issued_at", when, nullable=False),
        Column("not_after", when, nullable=False),
        Column("technology", String(NAME), nullable=False),
        Column("measurement", String(MEASUREMENT), nullable=False, index=True),
        Column("der", LargeBinary, nullable=False),
    )
    Table(
        "revocations", metadata,
        Column("serial", String(SERIAL), ForeignKey("certificates.serial"), primary_key=True),
        Column("revoked_at", when, nullable=False),
        Column("reason", Text, nullable=False),
    )
    Table(
        "denied_measurements", metadata,
        Column("measurement", String(MEASUREMENT), primary_key=True),
        Column("denied_at", when, nullable=False),
        Column("reason", Text, nullable=False),
    )
    audit = Table(
        "audit", metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("time", when, nullable=False),
        Column("peer", String(255), nullable=True),
        Column("technology", String(NAME), nullable=True),
        Column("measurement", String(MEASUREMENT), nullable=True),
        Column("tcb_status", String(64), nullable=True),
        Column("outcome", String(8), nullable=False),
        Column("reasons", JSON, nullable=False),
        Column("serial", String(SERIAL), nullable=True),
        CheckConstraint("outcome IN ('accepted', 'refused')", name="audit_outcome"),
    )
    Index("audit_time", audit.c.time, audit.c.id)
    metadata.create_all(connection, checkfirst=False)


def _create_v2(connection: Connection) -> None:
    """The fleet's collateral cache: one row per upstream item (``collateral``) and one
    per item being fetched, or not to be fetched for a while (``collateral_fetches``)."""
    metadata = MetaData()
    when = DateTime(timezone=True)
    Table(
        "collateral", metadata,
        Column("vendor", String(VENDOR), primary_key=True),
        Column("kind", String(NAME), primary_key=True),
        Column("key", String(ITEM_KEY), primary_key=True),
        Column("body", LargeBinary, nullable=False),
        Column("headers", JSON, nullable=False),
        Column("fetched_at", when, nullable=False),
        Column("next_update", when, nullable=False),
        Column("refresh_at", when, nullable=False),
        Column("source", Text, nullable=False),
    )
    Table(
        "collateral_fetches", metadata,
        Column("vendor", String(VENDOR), primary_key=True),
        Column("kind", String(NAME), primary_key=True),
        Column("key", String(ITEM_KEY), primary_key=True),
        Column("holder", String(NAME * 2), nullable=True),
        Column("leased_until", when, nullable=True),
        Column("blocked_until", when, nullable=True),
        Column("error", Text, nullable=True),
    )
    metadata.create_all(connection, checkfirst=False)


def _audit_kind_v3(connection: Connection) -> None:
    """The audit log tells token requests (``POST /v1/attestation``) from certificate
    requests: a ``kind`` column, ``certificate`` or ``token``. Records written before it
    become ``certificate``, except those that can only be a token's: accepted without a
    serial (an accepted certificate request always has one). A refused token request of
    before cannot be told from a refused certificate request and stays ``certificate``.
    The column keeps its default (SQLite cannot drop one; PostgreSQL keeps it alike); the
    service always writes the kind."""
    kinds = ", ".join(f"'{kind}'" for kind in KINDS)
    connection.exec_driver_sql(
        f"ALTER TABLE audit ADD COLUMN kind VARCHAR({KIND}) NOT NULL DEFAULT '{KINDS[0]}' "
        f"CONSTRAINT audit_kind CHECK (kind IN ({kinds}))")
    connection.exec_driver_sql(
        "UPDATE audit SET kind = 'token' WHERE outcome = 'accepted' AND serial IS NULL")


Step = Callable[[Connection], None]
STEPS: tuple[Step, ...] = (_create_v1, _create_v2, _audit_kind_v3)
LATEST = len(STEPS)

Transaction = Callable[[], AbstractContextManager[Connection]]


def current_version(connection: Connection) -> int:
    """The version the database is at (0 before the first step)."""
    found = connection.scalar(select(schema_version.c.version).where(schema_version.c.id == 1))
    return 0 if found is None else int(found)


def _bootstrap(transaction: Transaction) -> None:
    """Create the ``schema_version`` table and its row if missing. Two replicas racing to
    create them on an empty PostgreSQL database can collide: the loser tries again and
    finds them there."""
    for attempt in range(3):
        try:
            with transaction() as connection:
                schema_version.create(connection, checkfirst=True)
                if connection.scalar(select(schema_version.c.id)) is None:
                    connection.execute(insert(schema_version).values(id=1, version=0))
            return
        except exc.DBAPIError:
            if attempt == 2:
                raise


def upgrade(transaction: Transaction) -> int:
    """Bring the database to ``LATEST`` and return that version; each step runs in its own
    transaction from ``transaction()``. Raises ``SchemaTooNew`` on a newer database."""
    _bootstrap(transaction)
    # Each pass either applies a step or finds that another replica applied it, so
    # LATEST + 1 passes reach the end; one more reads it.
    for _ in range(LATEST + 2):
        with transaction() as connection:
            version = current_version(connection)
            if version > LATEST:
                raise SchemaTooNew(
                    f"the service database is at schema version {version}, newer than this "
                    f"attestcall knows ({LATEST}): upgrade attestcall, or use another database")
            if version == LATEST:
                return version
            moved = connection.execute(
                update(schema_version)
                .where(schema_version.c.id == 1, schema_version.c.version == version)
                .values(version=version + 1))
            if moved.rowcount == 1:  # our turn: the row is ours until commit
                STEPS[version](connection)
    raise StorageError("the service database's schema version did not settle while upgrading")
