"""The collateral cache's rows in the service database (schema version 2).

``collateral`` holds one row per upstream item — vendor (``intel``, ``amd``), kind
(``tcb``, ``vcek``, ...) and key (``sgx/00A067110000``, ...) — with its body, the response
headers that matter as the upstream gave them, when it was fetched, its own next update
(a CRL's nextUpdate, a TCB info's nextUpdate, a certificate's notAfter), when the cache
means to refresh it, and where it came from (the upstream URL, or ``import``).

``collateral_fetches`` makes a fleet fetch each item once. A replica that wants to fetch
an item first *claims* it: one transaction that finds the item still due and the item's
row free (no live lease, no back-off) and takes a lease until a deadline. Everyone else
sees the lease and waits for the item to appear. The holder stores the item and frees the
row in one transaction, or frees it with a back-off (the upstream's Retry-After, or a short
pause after a failure) so that the fleet does not hammer an upstream that is down. A holder
that dies loses its lease at the deadline.

The transactions are the storage's (:meth:`Storage.write`): ``BEGIN IMMEDIATE`` on SQLite,
``SERIALIZABLE`` on PostgreSQL, where two replicas racing for one row get a serialisation
failure or a duplicate key and one of them tries again and sees the other's lease.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    select,
    update,
)

from attestcall.errors import StorageConflict, StorageError
from attestcall.service import migrations
from attestcall.service.storage import Storage, UtcDateTime

metadata = MetaData()
collateral = Table(
    "collateral", metadata,
    Column("vendor", String(migrations.VENDOR), primary_key=True),
    Column("kind", String(migrations.NAME), primary_key=True),
    Column("key", String(migrations.ITEM_KEY), primary_key=True),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("fetched_at", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Column("refresh_at", UtcDateTime, nullable=False),
    Column("source", Text, nullable=False),
)
fetches = Table(
    "collateral_fetches", metadata,
    Column("vendor", String(migrations.VENDOR), primary_key=True),
    Column("kind", String(migrations.NAME), primary_key=True),
    Column("key", String(migrations.ITEM_KEY), primary_key=True),
    Column("holder", String(migrations.NAME * 2), nullable=True),
    Column("leased_until", UtcDateTime, nullable=True),
    Column("blocked_until", UtcDateTime, nullable=True),
    Column("error", Text, nullable=True),
)
IMPORT = "import"  # the source of an imported item
_ATTEMPTS = 3  # a claim or a store that lost a race for a new row reads again


@dataclass(frozen=True)
class Item:
    """What the cache keeps one of: ``intel``/``amd``, the kind, the kind's key."""

    vendor: str
    kind: str
    key: str = ""

    def __str__(self) -> str:
        return f"{self.vendor} {self.kind}" + (f" {self.key}" if self.key else "")


@dataclass(frozen=True)
class Record:
    """An item as stored."""

    item: Item
    body: bytes
    headers: Mapping[str, str]
    fetched_at: datetime
    next_update: datetime
    refresh_at: datetime
    source: str

    def as_json(self) -> dict[str, Any]:
        """What ``service collateral list --json`` prints for it."""
        return {"vendor": self.item.vendor, "kind": self.item.kind, "key": self.item.key,
                "source": self.source, "fetched_at": self.fetched_at.isoformat(),
                "next_update": self.next_update.isoformat(),
                "refresh_at": self.refresh_at.isoformat(), "size": len(self.body)}


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`CollateralStore.claim`: ``fresh`` (the item is stored and not
    due: read it), ``claimed`` (fetch it, then :meth:`~CollateralStore.put` or
    :meth:`~CollateralStore.release`), ``held`` (another fetches it until ``until``) or
    ``blocked`` (nobody fetches it before ``until``; ``error`` says why)."""

    state: str
    until: datetime | None = None
    error: str | None = None


def _where(table: Table, item: Item) -> Any:
    return and_(table.c.vendor == item.vendor, table.c.kind == item.kind,
                table.c.key == item.key)


def _record(row: Any) -> Record:
    return Record(Item(row.vendor, row.kind, row.key), bytes(row.body), dict(row.headers),
                  row.fetched_at, row.next_update, row.refresh_at, row.source)


class CollateralStore:
    """The collateral rows of one :class:`Storage`."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def get(self, item: Item) -> Record | None:
        statement = select(collateral).where(_where(collateral, item))
        row = self.storage.read(lambda c: c.execute(statement).first())
        return None if row is None else _record(row)

    def records(self) -> list[Record]:
        """Every stored item, by vendor, kind and key."""
        statement = select(collateral).order_by(collateral.c.vendor, collateral.c.kind,
                                                collateral.c.key)
        return [_record(row) for row in self.storage.read(lambda c: c.execute(statement).all())]

    def claim(self, item: Item, holder: str, now: datetime, lease: timedelta) -> Claim:
        """Take the right to fetch ``item`` until ``now + lease``, unless it is stored and
        not due at ``now``, another holds a live lease on it, or it is backed off."""

        def work(connection: Connection) -> Claim:
            due = connection.scalar(select(collateral.c.refresh_at)
                                    .where(_where(collateral, item)))
            if due is not None and due > now:
                return Claim("fresh")
            row = connection.execute(select(fetches).where(_where(fetches, item))).first()
            if row is None:
                connection.execute(insert(fetches).values(
                    vendor=item.vendor, kind=item.kind, key=item.key, holder=holder,
                    leased_until=now + lease, blocked_until=None, error=None))
                return Claim("claimed")
            if row.holder is not None and row.leased_until is not None \
                    and row.leased_until > now:
                return Claim("held", row.leased_until)
            if row.blocked_until is not None and row.blocked_until > now:
                return Claim("blocked", row.blocked_until, row.error)
            connection.execute(update(fetches).where(_where(fetches, item)).values(
                holder=holder, leased_until=now + lease))
            return Claim("claimed")

        return self._retrying(work)

    def release(self, item: Item, holder: str, blocked_until: datetime | None,
                error: str | None) -> None:
        """Give up the lease without an item: nobody fetches it before ``blocked_until``."""
        statement = (update(fetches)
                     .where(_where(fetches, item), fetches.c.holder == holder)
                     .values(holder=None, leased_until=None, blocked_until=blocked_until,
                             error=error))
        self.storage.write(lambda c: c.execute(statement))

    def put(self, record: Record, holder: str | None = None) -> None:
        """Store ``record`` (replacing the item's row) and, with ``holder``, free its
        lease and clear any back-off, in one transaction."""
        item = record.item
        values = {"body": record.body, "headers": dict(record.headers),
                  "fetched_at": record.fetched_at, "next_update": record.next_update,
                  "refresh_at": record.refresh_at, "source": record.source}

        def work(connection: Connection) -> None:
            changed = connection.execute(
                update(collateral).where(_where(collateral, item)).values(**values)).rowcount
            if changed == 0:
                connection.execute(insert(collateral).values(
                    vendor=item.vendor, kind=item.kind, key=item.key, **values))
            if holder is not None:
                connection.execute(
                    update(fetches).where(_where(fetches, item), fetches.c.holder == holder)
                    .values(holder=None, leased_until=None, blocked_until=None, error=None))

        self._retrying(work)

    def _retrying(self, work: Any) -> Any:
        for attempt in range(_ATTEMPTS):
            try:
                return self.storage.write(work)
            except StorageConflict:  # another replica inserted the same new row first
                if attempt == _ATTEMPTS - 1:
                    raise
        raise StorageError("unreachable")
