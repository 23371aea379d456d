"""The tenant's log in PostgreSQL: appending events under the log head lock, reading them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from app.ledger.log import ZERO_HASH, Change, with_hash

if TYPE_CHECKING:
    from app.models.store import PostgresStore

_encode = msgspec.json.Encoder().encode

# Number and chain a commit's changes, per tenant in the order given, after the newest
# event; then write them and move the head. The head rows are locked in tenant order in
# the commit's last statement, so a tenant's numbers follow its commit order and a
# rollback gives them back (no gap). Each hash is SHA-256 of the previous hash followed
# by the event's canonical text (`Change.text`), made here around the numbers.
# `:changes` is `[{tenant, type, at, prefix, suffix}, ...]` (see app/ledger/log.py).
APPEND = """
WITH RECURSIVE given AS (
    SELECT v.tenant, v.type, v.at, v.prefix, v.suffix,
           row_number() OVER (PARTITION BY v.tenant ORDER BY v.n) AS k
    FROM json_to_recordset(CAST(:changes AS json))
         AS v(n int, tenant text, type text, at timestamptz, prefix text, suffix text)
), head AS MATERIALIZED (
    SELECT h.tenant, h.sequence, h.hash FROM log_heads h
    WHERE h.tenant IN (SELECT tenant FROM given)
    ORDER BY h.tenant
    FOR UPDATE
), chain (tenant, k, sequence, hash, type, at, body) AS (
    SELECT tenant, CAST(0 AS bigint), sequence, hash, NULL, CAST(NULL AS timestamptz), NULL
    FROM head
    UNION ALL
    SELECT c.tenant, c.k + 1, c.sequence + 1,
           encode(sha256(convert_to(c.hash || t.body, 'UTF8')), 'hex'), g.type, g.at, t.body
    FROM chain c
    JOIN given g ON g.tenant = c.tenant AND g.k = c.k + 1
    CROSS JOIN LATERAL (
        SELECT g.prefix || c.hash || '","sequence":' || (c.sequence + 1) || g.suffix AS body
    ) t
), written AS (
    INSERT INTO events (tenant, sequence, type, at, body, hash)
    SELECT tenant, sequence, type, at, body, hash FROM chain WHERE k > 0
)
UPDATE log_heads h SET sequence = n.sequence, hash = n.hash, at = n.at
FROM (SELECT DISTINCT ON (tenant) tenant, sequence, hash, at FROM chain
      WHERE k > 0 ORDER BY tenant, k DESC) AS n
WHERE h.tenant = n.tenant
"""

ENSURE_HEADS = """
INSERT INTO log_heads (tenant) SELECT unnest(CAST(:tenants AS text[])) ON CONFLICT DO NOTHING
"""

READ_EVENTS = """
SELECT sequence, type, body, hash FROM events
WHERE tenant = :tenant AND sequence > :after
  AND (CAST(:type AS text) IS NULL OR type = :type)
ORDER BY sequence LIMIT :limit
"""

READ_HEAD = "SELECT sequence, hash, at FROM log_heads WHERE tenant = :tenant"


def changes_param(changes: Sequence[Change]) -> str:
    rows = [
        {"n": n, "tenant": c.tenant, "type": c.type.value, "at": c.at, "prefix": c.prefix,
         "suffix": c.suffix}
        for n, c in enumerate(changes)
    ]  # fmt: skip
    return _encode(rows).decode()


@dataclass(frozen=True, slots=True)
class LogHead:
    sequence: int
    hash: str
    at: datetime | None


EMPTY_HEAD = LogHead(0, ZERO_HASH, None)


def served(row: Any) -> str:
    """An event row as the API answers it: the stored canonical text with its hash."""
    return with_hash(row["body"], row["hash"])


@dataclass(frozen=True, slots=True)
class StoredEvent:
    sequence: int
    type: str
    text: str  # as served, with its hash

    @property
    def sse(self) -> bytes:
        """The event as one Server-Sent Event."""
        return f"id: {self.sequence}\nevent: {self.type}\ndata: {self.text}\n\n".encode()


async def read_events(
    store: PostgresStore, tenant: str, after: int, limit: int, type_: str | None = None
) -> list[StoredEvent]:
    """Up to `limit` events after sequence `after`, oldest first."""
    async with store.connection() as connection:
        rows = await connection.execute(
            READ_EVENTS, {"tenant": tenant, "after": after, "limit": limit, "type": type_}
        )
        return [StoredEvent(r["sequence"], r["type"], served(r)) for r in rows]


async def read_head(store: PostgresStore, tenant: str) -> LogHead:
    async with store.connection() as connection:
        row = (await connection.execute(READ_HEAD, {"tenant": tenant})).first()
    return EMPTY_HEAD if row is None else LogHead(row["sequence"], row["hash"], row["at"])
