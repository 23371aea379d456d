"""Sinks in PostgreSQL: their definitions, positions and leases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from app.models.connections import Connection, Database

if TYPE_CHECKING:
    from app.streams.sink_spec import SinkSpec

# How long a DELETE waits for a send under way (a transport bounds a send to 10 s, or 20 s
# when it first connects to a broker).
DELETE_WAIT_MS = 30_000

SINK_COLUMNS = (
    "tenant, id, type, url, types, secret, fingerprint, delivered, failures, last_error, "
    "last_attempt_at, next_attempt_at, batch_max"
)


@dataclass(frozen=True, slots=True)
class Sink:
    tenant: str
    id: str
    type: str
    url: str
    types: tuple[str, ...] | None
    secret: str | None
    fingerprint: str
    delivered: int
    failures: int
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    batch_max: int


def _sink(row: Any) -> Sink:
    types = row["types"]
    if isinstance(types, str):
        types = msgspec.json.decode(types)
    return Sink(
        row["tenant"], row["id"], row["type"], row["url"],
        None if types is None else tuple(types), row["secret"], row["fingerprint"],
        row["delivered"], row["failures"], row["last_error"], row["last_attempt_at"],
        row["next_attempt_at"], row["batch_max"],
    )  # fmt: skip


# `after` omitted: the log's head when the sink is made, so only new events go out.
INSERT = f"""
INSERT INTO sinks (tenant, id, type, url, types, secret, fingerprint, delivered, batch_max)
SELECT :tenant, :id, :type, :url, CAST(:types AS jsonb), :secret, :fingerprint,
       coalesce(CAST(:after AS bigint),
                (SELECT sequence FROM log_heads WHERE tenant = :tenant), 0),
       :batch_max
ON CONFLICT (tenant, id) DO NOTHING
RETURNING {SINK_COLUMNS}
"""  # noqa: S608 - column names only


async def create(
    store: Database, tenant: str, spec: SinkSpec, secret: str | None
) -> tuple[Sink, bool]:
    """The sink, and whether this call made it (False: that id exists already)."""
    types = None if spec.types is None else msgspec.json.encode(list(spec.types)).decode()
    async with store.connection() as connection:
        row = (
            await connection.execute(
                INSERT,
                {
                    "tenant": tenant,
                    "id": spec.id,
                    "type": spec.type,
                    "url": spec.url,
                    "types": types,
                    "secret": secret,
                    "fingerprint": spec.fingerprint,
                    "after": spec.after,
                    "batch_max": spec.batch_max or 1,
                },
            )
        ).first()
        if row is not None:
            return _sink(row), True
        found = await _read(connection, tenant, spec.id)
    assert found is not None, "a sink is only deleted by its tenant"
    return found, False


async def _read(connection: Connection, tenant: str, sink_id: str) -> Sink | None:
    row = (
        await connection.execute(
            f"SELECT {SINK_COLUMNS} FROM sinks WHERE tenant = :tenant AND id = :id",  # noqa: S608
            {"tenant": tenant, "id": sink_id},
        )
    ).first()
    return None if row is None else _sink(row)


async def read(store: Database, tenant: str, sink_id: str) -> Sink | None:
    async with store.connection() as connection:
        return await _read(connection, tenant, sink_id)


async def listed(store: Database, tenant: str) -> list[Sink]:
    async with store.connection() as connection:
        rows = await connection.execute(
            f"SELECT {SINK_COLUMNS} FROM sinks WHERE tenant = :tenant ORDER BY id",  # noqa: S608
            {"tenant": tenant},
        )
        return [_sink(r) for r in rows]


async def delete(store: Database, tenant: str, sink_id: str) -> Sink | None:
    """Delete the sink once no send to it is under way (it holds the row: see `fence`);
    after this returns no event is sent to it, from any process."""
    async with store.connection() as connection, connection.raw.transaction():
        # A send under way may take up to its own timeout: the DELETE waits that long.
        await connection.execute(f"SET LOCAL statement_timeout = {DELETE_WAIT_MS}")
        row = (
            await connection.execute(
                f"DELETE FROM sinks WHERE tenant = :tenant AND id = :id RETURNING {SINK_COLUMNS}",  # noqa: S608
                {"tenant": tenant, "id": sink_id},
            )
        ).first()
    return None if row is None else _sink(row)


# Take up to `:limit` sinks whose lease has run out (or was never taken): each is then
# served by this process alone until its lease ends or is given back.
CLAIM = f"""
UPDATE sinks s SET lease_owner = :owner,
                   lease_until = clock_timestamp() + make_interval(secs => :lease_s)
FROM (SELECT tenant, id FROM sinks
      WHERE lease_until IS NULL OR lease_until < clock_timestamp()
      ORDER BY tenant, id LIMIT :limit FOR UPDATE SKIP LOCKED) free
WHERE s.tenant = free.tenant AND s.id = free.id
RETURNING {", ".join(f"s.{c.strip()}" for c in SINK_COLUMNS.split(","))}
"""  # noqa: S608 - column names only


async def claim(store: Database, owner: str, lease_s: float, limit: int) -> list[Sink]:
    async with store.connection() as connection:
        rows = await connection.execute(CLAIM, {"owner": owner, "lease_s": lease_s, "limit": limit})
        return [_sink(r) for r in rows]


async def renew(store: Database, sink: Sink, owner: str, lease_s: float) -> bool:
    """Keep the lease; False when it was lost (expired and taken) or the sink deleted."""
    async with store.connection() as connection:
        row = (
            await connection.execute(
                "UPDATE sinks SET lease_until = clock_timestamp() + make_interval(secs => :lease_s)"
                " WHERE tenant = :tenant AND id = :id AND lease_owner = :owner RETURNING 1",
                {"tenant": sink.tenant, "id": sink.id, "owner": owner, "lease_s": lease_s},
            )
        ).first()
    return row is not None


class Fence:
    """A sink's row, locked by the transaction that sends a run of its events and records
    how far it got. A DELETE of the sink waits for that transaction, and every run begins
    by finding the row still there and still leased to this process: so no event is sent
    after a DELETE has answered, and no two processes ever send to one sink at once (a
    claim skips a locked row)."""

    __slots__ = ("connection", "lease_s", "sink")

    def __init__(self, connection: Connection, sink: Sink, lease_s: float) -> None:
        self.connection, self.sink, self.lease_s = connection, sink, lease_s

    def _params(self, **more: object) -> dict[str, object]:
        return {"tenant": self.sink.tenant, "id": self.sink.id, **more}

    async def delivered(self, sequence: int) -> None:
        """Record the last event the sink took, and keep the lease (a long page of a slow
        sink is sent through many fences)."""
        await self.connection.execute(
            "UPDATE sinks SET delivered = greatest(delivered, :sequence), failures = 0,"
            " last_error = NULL, last_attempt_at = clock_timestamp(), next_attempt_at = NULL,"
            " lease_until = clock_timestamp() + make_interval(secs => :lease_s)"
            " WHERE tenant = :tenant AND id = :id",
            self._params(sequence=sequence, lease_s=self.lease_s),
        )

    async def failed(self, error: str, retry_max_s: float, sent: int) -> int:
        """Record a failed attempt, the events acknowledged before it (`sent`), and when
        the next attempt is due (1 s, doubling, at most `retry_max_s`); the failures in a
        row."""
        row = (
            await self.connection.execute(
                "UPDATE sinks SET failures = failures + 1, last_error = :error,"
                " delivered = greatest(delivered, :sent),"
                " last_attempt_at = clock_timestamp(),"
                " next_attempt_at = clock_timestamp()"
                " + make_interval(secs => least(power(2, least(failures, 30)), :retry_max_s))"
                " WHERE tenant = :tenant AND id = :id RETURNING failures",
                self._params(error=error[:500], retry_max_s=retry_max_s, sent=sent),
            )
        ).first()
        assert row is not None, "the row is locked by this transaction"
        return int(row["failures"])


LOCK_LEASED = (
    "SELECT 1 FROM sinks WHERE tenant = :tenant AND id = :id AND lease_owner = :owner"
    " FOR NO KEY UPDATE"
)


@asynccontextmanager
async def fence(
    store: Database, sink: Sink, owner: str, lease_s: float
) -> AsyncIterator[Fence | None]:
    """The sink's row locked until the block ends (and commits what it recorded); None
    when the sink was deleted or its lease is no longer this process's."""
    async with store.sink_connection() as connection, connection.raw.transaction():
        params = {"tenant": sink.tenant, "id": sink.id, "owner": owner}
        found = (await connection.execute(LOCK_LEASED, params)).first()
        yield None if found is None else Fence(connection, sink, lease_s)


async def release(store: Database, owner: str) -> None:
    """Give back every lease of this process (it is stopping)."""
    async with store.connection() as connection:
        await connection.execute(
            "UPDATE sinks SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = :owner",
            {"owner": owner},
        )
