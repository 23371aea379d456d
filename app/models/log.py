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
# event; then write them and move the head (`twofold_append`, migration 0005). The head
# rows are locked in tenant order in the commit's last statement, so a tenant's numbers
# follow its commit order and a rollback gives them back (no gap). Each hash is SHA-256
# of the previous hash followed by the event's canonical text (`Change.text`), made
# there around the numbers.
# `:changes` is `[{n, tenant, type, at, prefix, suffix}, ...]` (see app/ledger/log.py).
APPEND = "SELECT twofold_append(CAST(:changes AS json))"

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
