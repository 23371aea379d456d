"""The PostgreSQL store of the ledger (tables are made by `migrations/`): the group
commit through `Writer`, and the reads and writes of rows found by their keys.

The rest of the store, by job: `statements.py` (the SQL), `connections.py` (pools and
errors), `rows.py` (rows to values and back), `writer.py` (the group commit's
transaction), `log.py` (the tenant's log), `search.py`, `sinks.py`, `audit.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from app.ledger.commit import IdsTaken
from app.ledger.documents import WORLD
from app.ledger.keys import PublicKey
from app.ledger.records import Account, Change, EventType, Transaction
from app.ledger.rules import Head, Rule
from app.ledger.service import KeysDecision
from app.models.connections import Connection, Database
from app.models.log import APPEND, ENSURE_LOG_HEADS, append_params
from app.models.rows import (
    BalanceRow,
    EntryRow,
    account_from_row,
    encode_cursor,
    entry_key,
    head_from_row,
    json_text,
    key_history_json,
    keys_json,
    transaction_from_row,
)
from app.models.statements import (
    ACCOUNT_COLUMNS,
    DUE_HOLDS,
    JOURNAL_AFTER,
    JOURNAL_PAGE,
    READ_ACCOUNT,
    READ_BALANCES_AT,
    READ_TRANSACTION,
    TRANSACTION_COLUMNS,
)
from app.models.writer import Writer, prepare_writer

__all__ = ["BalanceRow", "Connection", "EntryRow", "PostgresStore", "account_heads"]


class PostgresStore(Database):
    """Implements the ledger's `Store` with asyncpg."""

    async def open(self) -> None:  # type: ignore[override]
        await super().open(prepare_writer)

    async def ensure_accounts(self, tenants: Sequence[str]) -> None:
        """Every tenant has its log and the built-in `@world` account with rule `any`."""
        async with self.connection() as connection, connection.raw.transaction():
            await connection.execute(ENSURE_LOG_HEADS, {"tenants": list(tenants)})
            made = await connection.execute(
                (
                    "INSERT INTO accounts AS a (tenant, id, balance_rule) "
                    "SELECT t, :world, 'any' FROM unnest(CAST(:tenants AS text[])) AS t "
                    "ORDER BY t ON CONFLICT DO NOTHING "
                    f"RETURNING a.tenant, {ACCOUNT_COLUMNS}"
                ),
                {"tenants": list(tenants), "world": WORLD},
            )
            await _append(connection, [_created(r) for r in made])

    # Transactions

    @asynccontextmanager
    async def begin_commit(self) -> AsyncIterator[Writer]:
        """A group commit's port (`app/ledger/commit/port.py`) over one database transaction;
        a new id another process recorded first is `IdsTaken`, translated here."""
        async with self.begin() as connection:
            try:
                yield Writer(connection)
            except asyncpg.UniqueViolationError as exc:
                raise IdsTaken("another process recorded one of these ids first") from exc

    async def transaction(self, tenant: str, transaction_id: str) -> Transaction | None:
        async with self.connection() as connection:
            row = (
                await connection.execute(READ_TRANSACTION, {"tenant": tenant, "id": transaction_id})
            ).first()
        return None if row is None else transaction_from_row(row, row["events"])

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> bool:
        async with self.connection() as connection, connection.raw.transaction():
            row = (
                await connection.execute(
                    (
                        "UPDATE transactions SET data = CAST(:data AS jsonb) "
                        f"WHERE tenant = :tenant AND id = :id RETURNING {TRANSACTION_COLUMNS}, "
                        "clock_timestamp() AS now"
                    ),
                    {"tenant": tenant, "id": transaction_id, "data": json_text(data)},
                )
            ).first()
            if row is None:
                return False
            updated = replace(transaction_from_row(row), data=data)
            await _append(connection, [Change(tenant, EventType.TRANSACTION_UPDATED, row["now"],
                                              transaction=updated)])  # fmt: skip
        return True

    async def due(self, limit: int) -> list[tuple[str, str]]:
        """Holds past their `expires_at`, for the sweep to void."""
        async with self.scan_connection() as connection:
            rows = await connection.execute(DUE_HOLDS, {"limit": limit})
            return [(r.tenant, r.id) for r in rows]

    # Accounts

    async def insert_account(
        self,
        tenant: str,
        account_id: str,
        rule: Rule,
        data: Mapping[str, Any],
        keys: Sequence[PublicKey] = (),
    ) -> tuple[Account, bool]:
        async with self.connection() as connection, connection.raw.transaction():
            made = await connection.execute(
                (
                    "INSERT INTO accounts AS a (tenant, id, balance_rule, data, keys) "
                    "VALUES (:tenant, :id, :rule, CAST(:data AS jsonb), CAST(:keys AS jsonb)) "
                    f"ON CONFLICT DO NOTHING RETURNING a.tenant, {ACCOUNT_COLUMNS}"
                ),
                {
                    "tenant": tenant,
                    "id": account_id,
                    "rule": rule.value,
                    "data": json_text(data),
                    "keys": keys_json(keys),
                },
            )
            await _append(connection, [_created(r) for r in made])
        account = await self.account(tenant, account_id)
        assert account is not None, "an account is never deleted"
        return account, made.first() is not None

    async def account(self, tenant: str, account_id: str) -> Account | None:
        """The account with its used balances: one statement, one row per currency."""
        async with self.connection() as connection:
            rows = list(
                await connection.execute(
                    READ_ACCOUNT,
                    {"tenant": tenant, "id": account_id},
                )
            )
        if not rows:
            return None
        heads = [head_from_row(r) for r in rows if r["currency"] is not None]
        return account_from_row(rows[0], heads)

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> bool:
        async with self.connection() as connection, connection.raw.transaction():
            row = (
                await connection.execute(
                    (
                        "UPDATE accounts AS a SET data = CAST(:data AS jsonb) "
                        "WHERE tenant = :tenant AND id = :id "
                        f"RETURNING {ACCOUNT_COLUMNS}, clock_timestamp() AS now"
                    ),
                    {"tenant": tenant, "id": account_id, "data": json_text(data)},
                )
            ).first()
            if row is None:
                return False
            state = account_from_row(row, ())
            await _append(
                connection, [Change(tenant, EventType.ACCOUNT_UPDATED, row["now"], account=state)]
            )
        return True

    async def replace_keys(
        self, tenant: str, account_id: str, decide: KeysDecision
    ) -> Account | None:
        """Lock the account, let `decide` give its keys and history at the clock's
        instant read after the lock (so a retirement follows every commit that used the
        key), write them and log the change."""
        async with self.connection() as connection, connection.raw.transaction():
            row = (
                await connection.execute(
                    f"SELECT {ACCOUNT_COLUMNS} FROM accounts a"
                    " WHERE tenant = :tenant AND id = :id FOR UPDATE",
                    {"tenant": tenant, "id": account_id},
                )
            ).first()
            if row is None:
                return None
            now = (await connection.execute("SELECT clock_timestamp()")).scalar()
            keys, history = decide(account_from_row(row, ()), now)
            row = (
                await connection.execute(
                    "UPDATE accounts AS a SET keys = CAST(:keys AS jsonb),"
                    " key_history = CAST(:history AS jsonb)"
                    f" WHERE tenant = :tenant AND id = :id RETURNING {ACCOUNT_COLUMNS}",
                    {
                        "tenant": tenant,
                        "id": account_id,
                        "keys": keys_json(keys),
                        "history": key_history_json(history),
                    },
                )
            ).first()
            state = account_from_row(row, ())
            change = Change(tenant, EventType.ACCOUNT_UPDATED, now, account=state)
            await _append(connection, [change])
        return await self.account(tenant, account_id)

    async def balances_at(
        self, tenant: str, account_id: str, at: datetime, currency: str | None
    ) -> list[BalanceRow] | None:
        """The last entry at or before `at`, per currency: one index probe each; None
        when there is no such account."""
        async with self.connection() as connection:
            rows = await connection.execute(
                READ_BALANCES_AT,
                {"tenant": tenant, "id": account_id, "at": at, "currency": currency},
            )
            found = list(rows)
        if not found:
            return None
        return [
            BalanceRow(r.currency, r.posted, r.pending_in, r.pending_out)
            for r in found
            if r.currency is not None
        ]

    async def entries(
        self,
        tenant: str,
        account_id: str,
        currency: str | None,
        limit: int,
        after: str | None,
    ) -> tuple[list[EntryRow], str | None]:
        """One page of the journal, oldest first; the cursor is the last row's key."""
        params: dict[str, Any] = {
            "tenant": tenant,
            "id": account_id,
            "currency": currency,
            "limit": limit + 1,
        }
        keyset = ""
        if after is not None:
            params["a_ts"], params["a_currency"], params["a_seq"] = entry_key(after)
            keyset = JOURNAL_AFTER
        async with self.scan_connection() as connection:
            rows = list(await connection.execute(JOURNAL_PAGE.format(after=keyset), params))
        page = [EntryRow(*row) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            last = page[-1]
            cursor = encode_cursor([last.timestamp.isoformat(), last.currency, last.seq])
        return page, cursor


async def account_heads(
    connection: Connection, tenant: str, account_ids: Sequence[str]
) -> dict[str, list[Head]]:
    """The balances of accounts, by account, each in currency order (used ones only)."""
    rows = await connection.execute(
        "SELECT b.account, b.currency, a.balance_rule, b.posted, b.pending_in,"
        " b.pending_out, b.version, b.last_ts FROM balances b"
        " JOIN accounts a ON a.tenant = b.tenant AND a.id = b.account"
        " WHERE b.tenant = :tenant AND b.account = ANY(CAST(:ids AS text[]))"
        " AND b.version > 0 ORDER BY b.account, b.currency",
        {"tenant": tenant, "ids": list(account_ids)},
    )
    by_account: dict[str, list[Head]] = {}
    for row in rows:
        by_account.setdefault(row["account"], []).append(head_from_row(row))
    return by_account


def _created(row: Any) -> Change:
    """The log's change for an account a statement just inserted (`RETURNING` the
    tenant and `ACCOUNT_COLUMNS`)."""
    state = account_from_row(row, ())
    return Change(row["tenant"], EventType.ACCOUNT_CREATED, row["created_at"], account=state)


async def _append(connection: Connection, changes: Sequence[Change]) -> None:
    """Append changes to their tenants' logs inside the caller's database transaction."""
    if changes:
        await connection.execute(APPEND, append_params(changes))
