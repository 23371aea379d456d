"""A tenant's transactions and journal, streamed from one snapshot (`twofold export`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg

from app.ledger.records import Account, Transaction
from app.models.rows import account_from_row, transaction_from_row
from app.models.statements import (
    ACCOUNT_COLUMNS,
    EVENTS,
    JOURNAL_COLUMNS,
    JOURNAL_ORDER,
    TRANSACTION_COLUMNS,
)

# Oldest first by business time: each account's entries never run back in time, so this
# order replays every account's history in its own order (`twofold import`).
_WINDOW = (
    "($2::timestamptz IS NULL OR timestamp >= $2) AND ($3::timestamptz IS NULL OR timestamp < $3)"
)
TRANSACTIONS = f"""
SELECT {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t
WHERE tenant = $1 AND {_WINDOW} ORDER BY timestamp, created_at, id
"""  # noqa: S608
ENTRIES = f"""
SELECT {JOURNAL_COLUMNS} FROM entries WHERE tenant = $1 AND {_WINDOW} ORDER BY {JOURNAL_ORDER}
"""  # noqa: S608
ACCOUNTS = f"SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE tenant = $1 ORDER BY id"  # noqa: S608
PREFETCH = 1000


async def accounts(connection: asyncpg.Connection, tenant: str) -> AsyncIterator[Account]:
    """Every account, by id, without balances (they follow from the transactions)."""
    async for row in connection.cursor(ACCOUNTS, tenant, prefetch=PREFETCH):
        yield account_from_row(row, ())


async def count(
    connection: asyncpg.Connection, tenant: str, start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    """How many transactions and entries the window holds."""
    found = []
    for table in ("transactions", "entries"):
        found.append(await connection.fetchval(
            f"SELECT count(*) FROM {table} WHERE tenant = $1 AND {_WINDOW}",  # noqa: S608
            tenant, start, end,
        ))  # fmt: skip
    return found[0], found[1]


async def transactions(
    connection: asyncpg.Connection, tenant: str, start: datetime | None, end: datetime | None
) -> AsyncIterator[Transaction]:
    """Inside a transaction of `connection` (a cursor needs one)."""
    async for row in connection.cursor(TRANSACTIONS, tenant, start, end, prefetch=PREFETCH):
        yield transaction_from_row(row, row["events"])


async def entries(
    connection: asyncpg.Connection, tenant: str, start: datetime | None, end: datetime | None
) -> AsyncIterator[Any]:
    async for row in connection.cursor(ENTRIES, tenant, start, end, prefetch=PREFETCH):
        yield row
