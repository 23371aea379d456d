"""PostgreSQL store for the ledger: tables are created by `migrations/`."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec

from app.ledger.batch import (
    Group,
    HeadKey,
    Plan,
    Result,
    Transaction,
    TxnKey,
    apply_groups,
    claimed_heads,
    created_keys,
    head_keys,
    lock_keys,
    precheck,
    unrecorded,
)
from app.ledger.documents import WORLD, Line, Mode, Status
from app.ledger.errors import InvalidRequest, Unavailable
from app.ledger.log import Change, EventType, account_text, change, transaction_text
from app.ledger.rules import Head, Rule
from app.ledger.service import Account
from app.models.log import APPEND, ENSURE_HEADS, changes_param
from app.settings import Settings

_encode = msgspec.json.Encoder(decimal_format="string").encode


def json_value(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def _lines(value: Any) -> tuple[Line, ...]:
    return tuple(Line(x["account"], x["currency"], Decimal(x["amount"])) for x in json_value(value))


def _keys(keys: Sequence[tuple[str, ...]]) -> str:
    """Row keys as one JSON array of arrays (see HEAD_KEYS, TRANSACTION_KEYS).

    NOTE: asyncpg checks every element of a text[] parameter against two abstract base
    classes; one JSON text is a single string to bind.
    """
    return _encode(keys).decode()


def _head_key(row: Any) -> HeadKey:
    return (row["tenant"], row["account"], row["currency"])


@dataclass(frozen=True, slots=True)
class BalanceRow:
    currency: str
    posted: Decimal
    pending_in: Decimal
    pending_out: Decimal


@dataclass(frozen=True, slots=True)
class EntryRow:
    seq: int
    transaction_id: str
    currency: str
    amount: Decimal
    kind: str
    posted: Decimal
    pending_in: Decimal
    pending_out: Decimal
    timestamp: datetime


TRANSACTION_FIELDS = (
    "id", "status", "mode", "lines", "data", "timestamp", "timestamp_given", "created_at",
    "expires_at", "failure", "reverses", "reversal_id", "fingerprint",
)  # fmt: skip
TRANSACTION_COLUMNS = ", ".join(TRANSACTION_FIELDS)

# `[[tenant, account, currency], ...]` and `[[tenant, id], ...]` as rows (see `_keys`).
HEAD_KEYS = """(SELECT k ->> 0 AS tenant, k ->> 1 AS account, k ->> 2 AS currency
    FROM json_array_elements(CAST(:heads AS json)) AS k)"""
TRANSACTION_KEYS = """(SELECT k ->> 0 AS tenant, k ->> 1 AS id
    FROM json_array_elements(CAST(:transactions AS json)) AS k)"""

# Record and check in one statement, the first of a batch: find which ids new documents
# claim are taken already (answered as rows with `taken` set, to be locked next); read the
# committed heads the others name, create the account and balance rows missing among them
# (sorted; rows that exist are only read: no lock, no WAL), and answer the heads. A row
# this statement created reads as zero; an account another request created after this
# statement's snapshot reads with no rule (unknown: not checked unlocked).
# `:heads` is `[[tenant, account, currency, claiming id], ...]`.
ENSURE_AND_READ_HEADS = f"""
WITH taken AS MATERIALIZED (
    SELECT t.tenant, t.id FROM {TRANSACTION_KEYS} AS k
    JOIN transactions t ON t.tenant = k.tenant AND t.id = k.id
), wanted AS (
    SELECT DISTINCT h ->> 0 AS tenant, h ->> 1 AS account, h ->> 2 AS currency
    FROM json_array_elements(CAST(:heads AS json)) AS h
    WHERE NOT EXISTS (SELECT 1 FROM taken WHERE taken.tenant = h ->> 0 AND taken.id = h ->> 3)
), found AS MATERIALIZED (
    SELECT k.tenant, k.account, k.currency, a.balance_rule, b.posted, b.pending_in,
           b.pending_out, b.version, b.last_ts, b.tenant IS NOT NULL AS has_balance
    FROM wanted AS k
    LEFT JOIN accounts a ON a.tenant = k.tenant AND a.id = k.account
    LEFT JOIN balances b
           ON b.tenant = k.tenant AND b.account = k.account AND b.currency = k.currency
), new_accounts AS (
    INSERT INTO accounts (tenant, id, balance_rule)
    SELECT DISTINCT f.tenant, f.account,
           CASE WHEN f.account = :world THEN 'any' ELSE 'non_negative' END
    FROM found f WHERE f.balance_rule IS NULL
    ORDER BY f.tenant, f.account
    ON CONFLICT DO NOTHING
    RETURNING tenant, id, balance_rule, created_at
), new_balances AS (
    INSERT INTO balances (tenant, account, currency)
    SELECT f.tenant, f.account, f.currency FROM found f WHERE NOT f.has_balance
    ORDER BY f.tenant, f.account, f.currency
    ON CONFLICT DO NOTHING
)
SELECT f.tenant, f.account, f.currency,
       coalesce(f.balance_rule, n.balance_rule) AS balance_rule,
       coalesce(f.posted, 0) AS posted, coalesce(f.pending_in, 0) AS pending_in,
       coalesce(f.pending_out, 0) AS pending_out, coalesce(f.version, 0) AS version,
       f.last_ts, n.created_at AS created, NULL AS taken
FROM found f
LEFT JOIN new_accounts n ON n.tenant = f.tenant AND n.id = f.account
UNION ALL
SELECT tenant, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL, id FROM taken
"""

EVENTS = """(
    SELECT coalesce(json_agg(json_build_array(e.status, e.at) ORDER BY e.at, e.seq), '[]')
    FROM transaction_events e WHERE e.tenant = t.tenant AND e.transaction_id = t.id
) AS events"""

LOCK_TRANSACTIONS = f"""
SELECT tenant, {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t
WHERE (tenant, id) IN (SELECT k.tenant, k.id FROM {TRANSACTION_KEYS} AS k)
ORDER BY tenant, id
FOR UPDATE
"""

# Lock the heads in sorted key order. Each row's clock is read right after its lock, so
# the latest of them is an instant after every lock is held.
LOCK_HEADS = f"""
SELECT locked.*, clock_timestamp() AS now FROM (
    SELECT b.tenant, b.account, b.currency, a.balance_rule, b.posted, b.pending_in,
           b.pending_out, b.version, b.last_ts
    FROM balances b
    JOIN accounts a ON a.tenant = b.tenant AND a.id = b.account
    WHERE (b.tenant, b.account, b.currency) IN (
        SELECT k.tenant, k.account, k.currency FROM {HEAD_KEYS} AS k)
    ORDER BY b.tenant, b.account, b.currency
    FOR UPDATE OF b
) locked
"""

# One statement writes a whole group commit: heads, journal, rows, history, postings.
# NOTE: each table's rows arrive as one JSON array of objects: encoding them is one
# msgspec call, where binding ~45 typed arrays cost asyncpg ~30 us per transfer.
WRITE_PLAN = """
WITH heads AS (
    UPDATE balances b
    SET posted = v.posted, pending_in = v.pending_in, pending_out = v.pending_out,
        version = v.version, last_ts = v.last_ts
    FROM json_to_recordset(CAST(:heads AS json))
         AS v(tenant text, account text, currency text, posted numeric, pending_in numeric,
              pending_out numeric, version bigint, last_ts timestamptz)
    WHERE b.tenant = v.tenant AND b.account = v.account AND b.currency = v.currency
), journal AS (
    INSERT INTO entries (tenant, account, currency, seq, transaction_id, kind, amount,
                         posted, pending_in, pending_out, timestamp)
    SELECT v.tenant, v.account, v.currency, v.seq, v.transaction_id, v.kind, v.amount,
           v.posted, v.pending_in, v.pending_out, v.timestamp
    FROM json_to_recordset(CAST(:entries AS json))
         AS v(tenant text, account text, currency text, seq bigint, transaction_id text,
              kind text, amount numeric, posted numeric, pending_in numeric,
              pending_out numeric, timestamp timestamptz)
), inserted AS (
    INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp,
                              timestamp_given, created_at, expires_at, failure, reverses,
                              reversal_id, fingerprint)
    SELECT v.tenant, v.id, v.status, v.mode, v.lines, v.data, v.timestamp,
           v.timestamp_given, v.created_at, v.expires_at, v.failure, v.reverses,
           v.reversal_id, v.fingerprint
    FROM json_to_recordset(CAST(:inserts AS json))
         AS v(tenant text, id text, status text, mode text, lines jsonb, data jsonb,
              timestamp timestamptz, timestamp_given boolean, created_at timestamptz,
              expires_at timestamptz, failure jsonb, reverses text, reversal_id text,
              fingerprint text)
    -- Sorted, like every lock: two batches recording the same new ids never deadlock.
    ORDER BY v.tenant, v.id
    ON CONFLICT (tenant, id) DO NOTHING
    RETURNING 1
), states AS (
    UPDATE transactions t
    SET status = v.status, failure = v.failure, reversal_id = v.reversal_id
    FROM json_to_recordset(CAST(:updates AS json))
         AS v(tenant text, id text, status text, failure jsonb, reversal_id text)
    WHERE t.tenant = v.tenant AND t.id = v.id
), history AS (
    INSERT INTO transaction_events (tenant, transaction_id, status, at)
    SELECT v.tenant, v.transaction_id, v.status, v.at
    FROM json_to_recordset(CAST(:events AS json))
         AS v(tenant text, transaction_id text, status text, at timestamptz)
), listed AS (
    INSERT INTO transaction_accounts (tenant, account, timestamp, transaction_id)
    SELECT v.tenant, v.account, v.timestamp, v.transaction_id
    FROM json_to_recordset(CAST(:postings AS json))
         AS v(tenant text, account text, timestamp timestamptz, transaction_id text)
), unused AS (
    -- Accounts this batch created that no recorded transaction names (`unrecorded`).
    DELETE FROM accounts a
    USING json_to_recordset(CAST(:unused AS json)) AS v(tenant text, account text)
    WHERE a.tenant = v.tenant AND a.id = v.account
    RETURNING a.tenant, a.id
), unused_balances AS (
    DELETE FROM balances b USING unused u
    WHERE b.tenant = u.tenant AND b.account = u.id AND b.version = 0
)
SELECT twofold_expect_recorded(count(*), :expected) FROM inserted
"""


READ_TRANSACTION = f"""
SELECT {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t
WHERE tenant = :tenant AND id = :id
"""

# An account with its used balances: one row per currency.
READ_ACCOUNT = """
SELECT a.id, a.balance_rule, a.data, a.created_at, b.account, b.currency, b.posted,
       b.pending_in, b.pending_out, b.version, b.last_ts
FROM accounts a
LEFT JOIN balances b ON b.tenant = a.tenant AND b.account = a.id AND b.version > 0
WHERE a.tenant = :tenant AND a.id = :id ORDER BY b.currency
"""

# Per currency, the last entry at or before `at`; no row when there is no such account.
READ_BALANCES_AT = """
SELECT x.currency, x.posted, x.pending_in, x.pending_out
FROM accounts a LEFT JOIN LATERAL (
    SELECT b.currency, e.posted, e.pending_in, e.pending_out
    FROM balances b CROSS JOIN LATERAL (
        SELECT posted, pending_in, pending_out FROM entries e
        WHERE e.tenant = b.tenant AND e.account = b.account
          AND e.currency = b.currency AND e.timestamp <= :at
        ORDER BY e.timestamp DESC, e.seq DESC LIMIT 1) e
    WHERE b.tenant = a.tenant AND b.account = a.id
      AND (CAST(:currency AS text) IS NULL OR b.currency = :currency)
) x ON true
WHERE a.tenant = :tenant AND a.id = :id ORDER BY x.currency
"""


# NOTE: a dict lookup; calling the Enum costs microseconds per row on the hot path.
RULES = {rule.value: rule for rule in Rule}


def head_from_row(row: Any) -> Head:
    return Head(
        account=row["account"],
        currency=row["currency"],
        rule=RULES[row["balance_rule"]],
        posted=row["posted"],
        pending_in=row["pending_in"],
        pending_out=row["pending_out"],
        version=row["version"],
        last_ts=row["last_ts"],
    )


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


def account_from_row(row: Any, heads: Sequence[Head]) -> Account:
    return Account(
        id=row["id"],
        rule=RULES[row["balance_rule"]],
        data=json_value(row["data"]),
        created_at=row["created_at"],
        heads=tuple(heads),
    )


def transaction_from_row(row: Any, events: Any = ()) -> Transaction:
    return Transaction(
        id=row["id"],
        status=Status(row["status"]),
        mode=Mode(row["mode"]),
        lines=_lines(row["lines"]),
        data=json_value(row["data"]),
        timestamp=row["timestamp"],
        timestamp_given=row["timestamp_given"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        failure=json_value(row["failure"]) if row["failure"] is not None else None,
        reverses=row["reverses"],
        reversal_id=row["reversal_id"],
        fingerprint=row["fingerprint"],
        events=tuple((Status(s), datetime.fromisoformat(at)) for s, at in json_value(events)),
    )


class Row(asyncpg.Record):  # type: ignore[misc]
    """A result row whose columns read as attributes too (`row.id`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Rows:
    """The rows of one statement."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Connection:
    """Runs statements written with `:name` parameters on an asyncpg connection."""

    __slots__ = ("raw",)

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> Rows:
        sql, names = positional(statement)
        args = [params[name] for name in names] if params else []
        return Rows(await self.raw.fetch(sql, *args))


_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=2048)
def positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """`:name` parameters to asyncpg's `$n`, each name bound once."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAMETER.sub(number, statement), tuple(names)


# The writer connections prepare WRITE_PLAN once by name, so that a batch's write and its
# COMMIT travel together in one simple query (asyncpg cannot pipeline two statements).
WRITE_STATEMENT = "twofold_write"
_WRITE_SQL, _WRITE_PARAMS = positional(WRITE_PLAN)
PREPARE_WRITE = (
    f"PREPARE {WRITE_STATEMENT} ("
    + ", ".join("bigint" if name == "expected" else "json" for name in _WRITE_PARAMS)
    + f") AS {_WRITE_SQL}"
)
APPEND_STATEMENT = "twofold_append"
PREPARE_APPEND = f"PREPARE {APPEND_STATEMENT} (json) AS {positional(APPEND)[0]}"


async def _keep_session(_: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    NOTE: asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` on every release: one more round trip per use (a GET of an
    account cost PostgreSQL 349 us of CPU with it, 276 us without). The store uses no
    advisory locks, cursors, LISTEN or SET; asyncpg still rolls back a transaction left
    open.
    """


class PostgresStore:
    """Implements the ledger's `Store` with asyncpg.

    NOTE: SQLAlchemy's async layer cost ~490 us of client CPU per statement on the
    2-core benchmark machine against ~240 us for asyncpg's pool (and every request
    pays for its statements), so the runtime talks asyncpg; Alembic keeps SQLAlchemy.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._scans: asyncpg.Pool | None = None
        self._writer: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = self.settings
        size = settings.db_pool_size + settings.db_pool_overflow
        # Reads and writes of rows found by their keys keep one generic plan, like the
        # group commit's statements below: planning a balance at an instant anew cost
        # PostgreSQL ~250 us a read, ~115 us with the generic plan.
        self._pool = await self._create_pool(size, KEYED_PLANS)
        # NOTE: a generic plan, chosen once per connection, can scan a whole index in
        # keyset order for an account's page (x25 at 1M rows, seen in bench/search.py);
        # so searches and pages plan for the actual values, which costs ~0.1 ms.
        self._scans = await self._create_pool(
            max(2, size // 2), {"plan_cache_mode": "force_custom_plan"}
        )
        # Group commits run one at a time per process (a failed one reruns its groups
        # one by one on the same path). Planning their statements anew for every batch
        # cost PostgreSQL ~100 us per transfer under `uniform`, so they keep one generic
        # plan. Every row they touch is found by its key: with sequential scans off, a
        # table is only ever probed by index, however many rows a batch names and even
        # if the plan was made while the tables were nearly empty. (Hash joins stay:
        # they join a batch's own rows, such as new accounts to their keys.)
        self._writer = await self._create_pool(WRITER_POOL_SIZE, KEYED_PLANS, _prepare_writer)

    async def _create_pool(
        self,
        size: int,
        plans: Mapping[str, str],
        init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> asyncpg.Pool:
        settings = self.settings
        return await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=size,
            record_class=Row,
            init=init,
            reset=_keep_session,
            server_settings={
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "twofold",
                **plans,
            },
        )

    def connections_in_use(self) -> int:
        return sum(
            int(pool.get_size() - pool.get_idle_size())
            for pool in (self._pool, self._scans, self._writer)
            if pool is not None
        )

    async def close(self) -> None:
        for pool in (self._pool, self._scans, self._writer):
            if pool is not None:
                await pool.close()

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for statements that find their rows by key (one generic plan
        each, never a sequential scan); they commit one by one."""
        return self._connection(self._pool)

    def scan_connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for searches and pages, planned for their actual values."""
        return self._connection(self._scans)

    @asynccontextmanager
    async def _connection(self, pool: asyncpg.Pool | None) -> AsyncIterator[Connection]:
        if pool is None:
            raise Unavailable("the database pool is not open")
        with _translated_errors():
            async with pool.acquire(timeout=self.settings.db_acquire_timeout_s) as raw:
                yield Connection(raw)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[Connection]:
        """A writer connection inside one database transaction, which the caller ends
        with `_write_and_commit`; an exception rolls it back."""
        if self._writer is None:
            raise Unavailable("the database pool is not open")
        with _translated_errors():
            async with self._writer.acquire(timeout=self.settings.db_acquire_timeout_s) as raw:
                await raw.execute("BEGIN")
                try:
                    yield Connection(raw)
                except BaseException:
                    if not raw.is_closed() and raw.is_in_transaction():
                        # NOTE: a lost connection cannot roll back; the pool drops it.
                        with suppress(asyncpg.PostgresError, *_CONNECTION_ERRORS):
                            await raw.execute("ROLLBACK")
                    raise

    async def ping(self) -> None:
        async with self.connection() as connection:
            await connection.execute("SELECT 1")

    async def ensure_accounts(self, tenants: Sequence[str]) -> None:
        """Every tenant has its log and the built-in `@world` account with rule `any`."""
        async with self.connection() as connection, connection.raw.transaction():
            await connection.execute(ENSURE_HEADS, {"tenants": list(tenants)})
            made = await connection.execute(
                (
                    "INSERT INTO accounts (tenant, id, balance_rule) "
                    "SELECT t, :world, 'any' FROM unnest(CAST(:tenants AS text[])) AS t "
                    "ORDER BY t ON CONFLICT DO NOTHING "
                    "RETURNING tenant, id, balance_rule, created_at"
                ),
                {"tenants": list(tenants), "world": WORLD},
            )
            await _append(connection, [_created(r) for r in made])

    # Transactions

    async def run_batch(self, groups: Sequence[Group]) -> list[list[Result]]:
        """One group commit: lock rows and heads in sorted order, apply, write, commit."""
        for _ in range(BATCH_ATTEMPTS):
            try:
                async with self._begin() as connection:
                    return await self._apply_batch(connection, groups)
            except asyncpg.UniqueViolationError:
                # Another process recorded one of these ids first; the retry sees it.
                continue
        raise Unavailable("concurrent requests with the same ids; retry")

    async def _apply_batch(
        self, connection: Connection, groups: Sequence[Group]
    ) -> list[list[Result]]:
        # 1. Record and check, unlocked: make the rows new documents name, read the
        #    committed heads, and find the ids they claim that are taken already.
        claimed = claimed_heads(groups)
        known: dict[HeadKey, Head] = {}
        taken: list[TxnKey] = []
        created: dict[tuple[str, str], tuple[str, datetime]] = {}
        if claimed:
            read = await connection.execute(
                ENSURE_AND_READ_HEADS,
                {"world": WORLD, "transactions": _keys(created_keys(groups)),
                 "heads": _keys(claimed)},
            )  # fmt: skip
            for r in read:
                if r["taken"] is not None:
                    taken.append((r["tenant"], r["taken"]))
                elif r["balance_rule"]:
                    known[_head_key(r)] = head_from_row(r)
                if r["created"] is not None:
                    created[(r["tenant"], r["account"])] = (r["balance_rule"], r["created"])
        # 2. Lock the transaction rows, sorted: concurrent flips of one transaction
        #    queue here, and a taken id's document is answered from its row.
        txn_keys = lock_keys(groups, taken)
        rows: dict[TxnKey, Transaction] = {}
        if txn_keys:
            found = await connection.execute(LOCK_TRANSACTIONS, {"transactions": _keys(txn_keys)})
            rows = {(r["tenant"], r["id"]): transaction_from_row(r, r["events"]) for r in found}
        # A new document that cannot fit the committed heads fails without a balance lock.
        if known:
            groups = precheck(groups, rows, known)
        # 3. Lock the balance heads in sorted key order, so no two batches deadlock, and
        #    read the clock once they are held.
        keys = head_keys(groups, rows)
        heads: dict[HeadKey, Head] = {}
        now = None
        if keys:
            locked = list(await connection.execute(LOCK_HEADS, {"heads": _keys(keys)}))
            heads = {_head_key(r): head_from_row(r) for r in locked}
            now = max(r["now"] for r in locked)
        if now is None:
            now = (await connection.execute("SELECT clock_timestamp()")).scalar()
        plan, results = apply_groups(groups, rows, heads, now)
        unused = unrecorded(created, plan)
        # Accounts created by first use enter the log before the transactions naming them.
        dropped = set(unused)
        changes = [
            change(key[0], EventType.ACCOUNT_CREATED, now,
                   account=account_text(key[1], rule, {}, created_at))
            for key, (rule, created_at) in sorted(created.items()) if key not in dropped
        ]  # fmt: skip
        await _write_and_commit(connection, plan, unused, [*changes, *plan.changes])
        return results

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
                    {"tenant": tenant, "id": transaction_id, "data": _encode(data).decode()},
                )
            ).first()
            if row is None:
                return False
            updated = replace(transaction_from_row(row), data=data)
            await _append(connection, [change(tenant, EventType.TRANSACTION_UPDATED, row["now"],
                                              transaction=transaction_text(updated))])  # fmt: skip
        return True

    async def due(self, limit: int) -> list[tuple[str, str]]:
        """Holds past their `expires_at`, for the sweep to void."""
        async with self.scan_connection() as connection:
            rows = await connection.execute(
                (
                    "SELECT tenant, id FROM transactions"
                    " WHERE status = 'PENDING' AND expires_at <= clock_timestamp()"
                    " ORDER BY expires_at LIMIT :limit"
                ),
                {"limit": limit},
            )
            return [(r.tenant, r.id) for r in rows]

    # Accounts

    async def insert_account(
        self, tenant: str, account_id: str, rule: Rule, data: Mapping[str, Any]
    ) -> tuple[Account, bool]:
        async with self.connection() as connection, connection.raw.transaction():
            made = await connection.execute(
                (
                    "INSERT INTO accounts (tenant, id, balance_rule, data) "
                    "VALUES (:tenant, :id, :rule, CAST(:data AS jsonb)) "
                    "ON CONFLICT DO NOTHING RETURNING tenant, id, balance_rule, created_at"
                ),
                {
                    "tenant": tenant,
                    "id": account_id,
                    "rule": rule.value,
                    "data": _encode(data).decode(),
                },
            )
            await _append(connection, [_created(r, data) for r in made])
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
                        "UPDATE accounts SET data = CAST(:data AS jsonb) "
                        "WHERE tenant = :tenant AND id = :id "
                        "RETURNING id, balance_rule, created_at, clock_timestamp() AS now"
                    ),
                    {"tenant": tenant, "id": account_id, "data": _encode(data).decode()},
                )
            ).first()
            if row is None:
                return False
            text = account_text(row["id"], row["balance_rule"], data, row["created_at"])
            await _append(
                connection, [change(tenant, EventType.ACCOUNT_UPDATED, row["now"], account=text)]
            )
        return True

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
            params["a_ts"], params["a_currency"], params["a_seq"] = _entry_key(after)
            keyset = " AND (timestamp, currency, seq) > (:a_ts, :a_currency, :a_seq)"
        async with self.scan_connection() as connection:
            rows = list(
                await connection.execute(
                    (
                        "SELECT seq, transaction_id, currency, amount, kind, posted,"
                        " pending_in, pending_out, timestamp FROM entries"
                        " WHERE tenant = :tenant AND account = :id"
                        "   AND (CAST(:currency AS text) IS NULL OR currency = :currency)"
                        + keyset
                        + " ORDER BY timestamp, currency, seq LIMIT :limit"
                    ),
                    params,
                )
            )
        page = [EntryRow(*row) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            last = page[-1]
            cursor = encode_cursor([last.timestamp.isoformat(), last.currency, last.seq])
        return page, cursor


BATCH_ATTEMPTS = 3
WRITER_POOL_SIZE = 2
KEYED_PLANS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}
# Statements with one generic plan and no sequential scans (KEYED_PLANS): the group
# commit's, on the writer pool, and the keyed reads.
KEYED_STATEMENTS = {
    "LOCK_TRANSACTIONS": LOCK_TRANSACTIONS,
    "ENSURE_AND_READ_HEADS": ENSURE_AND_READ_HEADS,
    "LOCK_HEADS": LOCK_HEADS,
    "WRITE_PLAN": WRITE_PLAN,
    "READ_TRANSACTION": READ_TRANSACTION,
    "READ_ACCOUNT": READ_ACCOUNT,
    "READ_BALANCES_AT": READ_BALANCES_AT,
}


def _created(row: Any, data: Mapping[str, Any] | None = None) -> Change:
    """The log's change for an account a statement just inserted (`RETURNING`)."""
    text = account_text(row["id"], row["balance_rule"], data or {}, row["created_at"])
    return change(row["tenant"], EventType.ACCOUNT_CREATED, row["created_at"], account=text)


async def _append(connection: Connection, changes: Sequence[Change]) -> None:
    """Append changes to their tenants' logs inside the caller's database transaction."""
    if changes:
        await connection.execute(APPEND, {"changes": changes_param(changes)})


def _json_rows(rows: list[Any]) -> str:
    return _encode(rows).decode()


def _plan_params(plan: Plan) -> dict[str, str]:
    """The rows of a plan, one JSON text per table (see WRITE_PLAN)."""
    heads = [
        {"tenant": key[0], "account": h.account, "currency": h.currency, "posted": h.posted,
         "pending_in": h.pending_in, "pending_out": h.pending_out, "version": h.version,
         "last_ts": h.last_ts}
        for key, h in plan.heads.items()
    ]  # fmt: skip
    entries = [
        {"tenant": r.tenant, "account": r.entry.account, "currency": r.entry.currency,
         "seq": r.entry.seq, "transaction_id": r.transaction_id, "kind": r.entry.kind,
         "amount": r.entry.amount, "posted": r.entry.posted, "pending_in": r.entry.pending_in,
         "pending_out": r.entry.pending_out, "timestamp": r.timestamp}
        for r in plan.entries
    ]  # fmt: skip
    inserts = [
        {"tenant": key[0], "id": t.id, "status": t.status, "mode": t.mode, "lines": t.lines,
         "data": t.data, "timestamp": t.timestamp, "timestamp_given": t.timestamp_given,
         "created_at": t.created_at, "expires_at": t.expires_at, "failure": t.failure,
         "reverses": t.reverses, "reversal_id": t.reversal_id, "fingerprint": t.fingerprint}
        for key, t in plan.inserts.items()
    ]  # fmt: skip
    updates = [
        {"tenant": key[0], "id": t.id, "status": t.status, "failure": t.failure,
         "reversal_id": t.reversal_id}
        for key, t in plan.updates.items()
    ]  # fmt: skip
    # Event and Posting are flat dataclasses whose field names are the columns.
    return {
        "heads": _json_rows(heads),
        "entries": _json_rows(entries),
        "inserts": _json_rows(inserts),
        "updates": _json_rows(updates),
        "events": _json_rows(plan.events),
        "postings": _json_rows(plan.postings),
    }


async def _prepare_writer(connection: asyncpg.Connection) -> None:
    await connection.execute(PREPARE_WRITE)
    await connection.execute(PREPARE_APPEND)


async def _write_and_commit(
    connection: Connection,
    plan: Plan,
    unused: Sequence[tuple[str, str]],
    changes: Sequence[Change],
) -> None:
    """Write a plan and commit, in one round trip: a simple query of three statements,
    the prepared write with its JSON texts as dollar-quoted literals, the log's append
    (the only statement that waits for the tenant's log head), then COMMIT.

    NOTE: the write and the COMMIT are the last two round trips under the balance
    locks; sending them apart, a hot row stayed locked while the event loop came back to
    the batch between them.
    """
    params: dict[str, Any] = {
        **_plan_params(plan),
        "unused": _json_rows([{"tenant": t, "account": a} for t, a in unused]),
        "expected": len(plan.inserts),
    }
    values = [params[name] for name in _WRITE_PARAMS]
    log = changes_param(changes)
    texts = [log, *(v for v in values if isinstance(v, str))]
    tag = _dollar_tag(texts)
    literals = ", ".join(f"{tag}{v}{tag}" if isinstance(v, str) else str(int(v)) for v in values)
    append = f"EXECUTE {APPEND_STATEMENT}({tag}{log}{tag}); " if changes else ""
    await connection.raw.execute(f"EXECUTE {WRITE_STATEMENT}({literals}); {append}COMMIT")


def _dollar_tag(texts: Sequence[str]) -> str:
    """A dollar-quote tag that none of `texts` contains, so each is one literal."""
    while True:
        tag = f"$w{secrets.token_hex(8)}$"
        if not any(tag in text for text in texts):
            return tag


# SQLSTATE classes that say "try again": connection, rollback (deadlock, serialization),
# insufficient resources, operator intervention (statement timeout, shutdown).
_RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57")


# What a lost or broken connection raises. NOTE: asyncpg raises InternalClientError
# ("cannot switch to state ...: another operation is in progress") when the server dies
# in the middle of a statement; it is not an InterfaceError.
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Storage errors become `Unavailable` (a retryable 503) at the storage edge."""
    try:
        yield
    except _CONNECTION_ERRORS as exc:
        raise Unavailable("the database is unavailable; retry") from exc
    except asyncpg.PostgresError as exc:
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        if sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES:
            raise Unavailable("the database is unavailable; retry") from exc
        raise


def encode_cursor(values: list[Any]) -> str:
    """An opaque page cursor: the last row's key, URL-safe."""
    return base64.urlsafe_b64encode(_encode(values)).decode().rstrip("=")


def decode_cursor(cursor: str, error: type[InvalidRequest] = InvalidRequest) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=list[Any])
    except (ValueError, msgspec.DecodeError) as exc:
        raise error("after: not a cursor of this list") from exc


def _entry_key(cursor: str) -> tuple[datetime, str, int]:
    try:
        ts, currency, seq = msgspec.convert(decode_cursor(cursor), type=tuple[str, str, int])
        return datetime.fromisoformat(ts), currency, seq
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidRequest("after: not a cursor of this list") from exc
