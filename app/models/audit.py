"""Integrity from the stored rows: one read-only snapshot of a tenant fed to the audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from app.ledger.audit import Audit, EntryRow
from app.models.rows import account_from_row, transaction_from_row
from app.models.statements import (
    ACCOUNT_COLUMNS,
    JOURNAL_COLUMNS,
    JOURNAL_ORDER,
    TRANSACTION_COLUMNS,
)

Progress = Callable[[str, int], None]

EVENTS = "SELECT sequence, hash, body FROM events WHERE tenant = $1 ORDER BY sequence"
HEAD = "SELECT sequence, hash FROM log_heads WHERE tenant = $1"
ACCOUNTS = f"SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE tenant = $1"  # noqa: S608
TRANSACTIONS = f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE tenant = $1"  # noqa: S608
ENTRIES = f"""
SELECT {JOURNAL_COLUMNS} FROM entries WHERE tenant = $1 ORDER BY {JOURNAL_ORDER}
"""  # noqa: S608
BALANCES = """
SELECT account, currency, posted, pending_in, pending_out FROM balances WHERE tenant = $1
"""
PREFETCH = 5000


async def tenants(connection: asyncpg.Connection) -> list[str]:
    return [r["tenant"] for r in await connection.fetch("SELECT tenant FROM log_heads ORDER BY 1")]


async def verify(
    connection: asyncpg.Connection, tenant: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Check one tenant from one consistent snapshot (API.md, Integrity)."""
    audit = Audit()

    def step(table: str) -> None:
        if progress is not None:
            progress(table, 1)

    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for r in connection.cursor(EVENTS, tenant, prefetch=PREFETCH):
            audit.event(r["sequence"], r["hash"], r["body"])
            step("events")
        head = await connection.fetchrow(HEAD, tenant)
        if head is not None:
            audit.head(head["sequence"], head["hash"])
        async for r in connection.cursor(ACCOUNTS, tenant, prefetch=PREFETCH):
            audit.account(account_from_row(r, ()))
            step("accounts")
        async for r in connection.cursor(TRANSACTIONS, tenant, prefetch=PREFETCH):
            audit.transaction(transaction_from_row(r))
            step("transactions")
        async for r in connection.cursor(ENTRIES, tenant, prefetch=PREFETCH):
            audit.entry(EntryRow(*r.values()))
            step("entries")
        async for r in connection.cursor(BALANCES, tenant, prefetch=PREFETCH):
            audit.balance(*r.values())
    audit.finish()
    return audit.report()
