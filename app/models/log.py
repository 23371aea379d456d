"""The tenant's log in PostgreSQL: appending events under the log head lock, reading them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import rfc8785

from app.ledger.log import (
    KEEP_INSTANTS,
    ZERO_HASH,
    account_view,
    balances_view,
    format_instant,
    transaction_view,
)
from app.ledger.records import Change
from app.models.connections import Database

# Number and chain a commit's changes, per tenant in the order given, after the newest
# event; then write them and move the heads (`twofold_append`, migration 0005). The head
# rows are locked in tenant order in the commit's last statement, so a tenant's numbers
# follow its commit order and a rollback gives them back (no gap). Each event is stored
# as `prefix || previous_hash || '","sequence":' || sequence || suffix` (see `render`)
# and hashed after the previous hash.
APPEND = (
    "SELECT twofold_append(CAST(:tenants AS text[]), CAST(:kinds AS text[]),"
    " CAST(:instants AS timestamptz[]), CAST(:prefixes AS text[]), CAST(:suffixes AS text[]))"
)

# The heads of a commit's tenants, locked in tenant order, for a chain computed by the
# writer (`app/models/writer.py`, large commits).
LOCK_LOG_HEADS = (
    "SELECT tenant, sequence, hash FROM log_heads WHERE tenant = ANY($1::text[])"
    " ORDER BY tenant FOR UPDATE"
)

ENSURE_LOG_HEADS = """
INSERT INTO log_heads (tenant) SELECT unnest(CAST(:tenants AS text[])) ON CONFLICT DO NOTHING
"""

READ_EVENTS = """
SELECT sequence, type, at, body, hash FROM events
WHERE tenant = :tenant AND sequence > :after
  AND (CAST(:type AS text) IS NULL OR type = :type)
ORDER BY sequence LIMIT :limit
"""

READ_LOG_HEAD = "SELECT sequence, hash, at FROM log_heads WHERE tenant = :tenant"


# NOTE: msgspec writes the service's own values as RFC 8785 does (the same escapes, keys
# sorted, compact: a unit test compares them), and instants as `format_instant` does
# (RFC 3339, `Z`); a client's `data` may hold any JSON, so it goes through the RFC 8785
# implementation.
_sorted = msgspec.json.Encoder(order="sorted").encode


def _data(data: Mapping[str, Any]) -> str:
    return rfc8785.dumps(data).decode() if data else "{}"


def _with_data(view: dict[str, Any]) -> str:
    """A view's canonical text, its `data` as given (the first `"data"` key: the keys
    sort before it are a date and the rule, which hold no such text)."""
    data = view["data"]
    if not data:  # `{}` in both encoders; most transactions carry no data
        view["data"] = {}
        return _sorted(view).decode()
    view["data"] = None
    return _sorted(view).decode().replace('"data":null', f'"data":{_data(data)}', 1)


def render(change: Change) -> tuple[str, str]:
    """The event's canonical text (RFC 8785; keys `account`, `at`, `balances`,
    `previous_hash`, `sequence`, `transaction`, `type`) before and after the previous
    hash and the sequence: `prefix`, then `suffix`."""
    head = ""
    if change.account is not None:
        head = f'"account":{_with_data(account_view(change.account, KEEP_INSTANTS))},'
    balances = _sorted(balances_view(change.moved)).decode() if change.moved else "{}"
    prefix = f'{{{head}"at":"{format_instant(change.at)}","balances":{balances},"previous_hash":"'
    tail = ""
    if change.transaction is not None:
        tail = f',"transaction":{_with_data(transaction_view(change.transaction, KEEP_INSTANTS))}'
    return prefix, f'{tail},"type":"{change.type.value}"}}'


def text(prefix: str, suffix: str, previous_hash: str, sequence: int) -> str:
    """The event without `hash`, canonical: what is stored and hashed."""
    return f'{prefix}{previous_hash}","sequence":{sequence}{suffix}'


def append_params(changes: Sequence[Change]) -> dict[str, list[Any]]:
    """`APPEND`'s arrays, one element per change, in order."""
    rendered = [render(c) for c in changes]
    return {
        "tenants": [c.tenant for c in changes],
        "kinds": [c.type.value for c in changes],
        "instants": [c.at for c in changes],
        "prefixes": [prefix for prefix, _ in rendered],
        "suffixes": [suffix for _, suffix in rendered],
    }


def with_hash(text: str, hash_: str) -> str:
    """The event as served: its canonical text with `hash` added."""
    return f'{text[:-1]},"hash":"{hash_}"}}'


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
    at: datetime | None = None  # when its commit applied it

    @property
    def sse(self) -> bytes:
        """The event as one Server-Sent Event."""
        return f"id: {self.sequence}\nevent: {self.type}\ndata: {self.text}\n\n".encode()


async def read_events(
    store: Database, tenant: str, after: int, limit: int, type_: str | None = None
) -> list[StoredEvent]:
    """Up to `limit` events after sequence `after`, oldest first."""
    async with store.connection() as connection:
        rows = await connection.execute(
            READ_EVENTS, {"tenant": tenant, "after": after, "limit": limit, "type": type_}
        )
        return [StoredEvent(r["sequence"], r["type"], served(r), r["at"]) for r in rows]


async def read_log_head(store: Database, tenant: str) -> LogHead:
    async with store.connection() as connection:
        row = (await connection.execute(READ_LOG_HEAD, {"tenant": tenant})).first()
    return EMPTY_HEAD if row is None else LogHead(row["sequence"], row["hash"], row["at"])
