"""PostgreSQL store for the ledger: tables are created by `migrations/`."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
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
    apply_groups,
    head_keys,
    lock_keys,
    new_keys,
    precheck,
)
from app.ledger.documents import WORLD, Line, Mode, Status
from app.ledger.errors import InvalidRequest, Unavailable
from app.ledger.rules import Head, Rule
from app.ledger.service import Account
from app.settings import Settings

_encode = msgspec.json.Encoder(decimal_format="string").encode


def json_value(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def _lines_json(lines: Sequence[Line]) -> str:
    """Lines as objects, so that `lines @> '[{"account": ...}]'` finds them by index."""
    return _encode(
        [{"account": ln.account, "currency": ln.currency, "amount": str(ln.amount)} for ln in lines]
    ).decode()


def _lines(value: Any) -> tuple[Line, ...]:
    return tuple(Line(x["account"], x["currency"], Decimal(x["amount"])) for x in json_value(value))


def _split_heads(keys: Sequence[HeadKey]) -> dict[str, list[str]]:
    return {
        "tenants": [k[0] for k in keys],
        "accounts": [k[1] for k in keys],
        "currencies": [k[2] for k in keys],
    }


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

# Record and check in one statement: create the account and balance rows new documents
# name (sorted; rows that exist are left alone, no lock, no WAL), and read the committed
# heads. A row this statement created reads as zero; an account another request created
# after this statement's snapshot reads with no rule (unknown: not checked unlocked).
ENSURE_AND_READ_HEADS = """
WITH new_accounts AS (
    INSERT INTO accounts (tenant, id, balance_rule)
    SELECT a.tenant, a.id, CASE WHEN a.id = :world THEN 'any' ELSE 'non_negative' END
    FROM unnest(CAST(:a_tenants AS text[]), CAST(:a_ids AS text[])) AS a(tenant, id)
    ORDER BY a.tenant, a.id
    ON CONFLICT DO NOTHING
    RETURNING tenant, id, balance_rule
), new_balances AS (
    INSERT INTO balances (tenant, account, currency)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:accounts AS text[]),
                         CAST(:currencies AS text[])) AS k(tenant, account, currency)
    ORDER BY k.tenant, k.account, k.currency
    ON CONFLICT DO NOTHING
)
SELECT k.tenant, k.account, k.currency,
       coalesce(a.balance_rule, n.balance_rule) AS balance_rule,
       coalesce(b.posted, 0) AS posted, coalesce(b.pending_in, 0) AS pending_in,
       coalesce(b.pending_out, 0) AS pending_out, coalesce(b.version, 0) AS version,
       b.last_ts
FROM unnest(CAST(:tenants AS text[]), CAST(:accounts AS text[]), CAST(:currencies AS text[]))
     AS k(tenant, account, currency)
LEFT JOIN accounts a ON a.tenant = k.tenant AND a.id = k.account
LEFT JOIN new_accounts n ON n.tenant = k.tenant AND n.id = k.account
LEFT JOIN balances b
       ON b.tenant = k.tenant AND b.account = k.account AND b.currency = k.currency
"""

EVENTS = """(
    SELECT coalesce(json_agg(json_build_array(e.status, e.at) ORDER BY e.at, e.seq), '[]')
    FROM transaction_events e WHERE e.tenant = t.tenant AND e.transaction_id = t.id
) AS events"""

LOCK_TRANSACTIONS = f"""
SELECT tenant, {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t
WHERE (tenant, id) IN (SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:ids AS text[])))
ORDER BY tenant, id
FOR UPDATE
"""

# Lock the heads in sorted key order. Each row's clock is read right after its lock, so
# the latest of them is an instant after every lock is held.
LOCK_HEADS = """
SELECT locked.*, clock_timestamp() AS now FROM (
    SELECT b.tenant, b.account, b.currency, a.balance_rule, b.posted, b.pending_in,
           b.pending_out, b.version, b.last_ts
    FROM balances b
    JOIN accounts a ON a.tenant = b.tenant AND a.id = b.account
    WHERE (b.tenant, b.account, b.currency) IN (
        SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:accounts AS text[]),
                             CAST(:currencies AS text[])))
    ORDER BY b.tenant, b.account, b.currency
    FOR UPDATE OF b
) locked
"""

# One statement writes a whole group commit: heads, journal, rows, history, postings.
WRITE_PLAN = """
WITH heads AS (
    UPDATE balances b
    SET posted = v.posted, pending_in = v.pending_in, pending_out = v.pending_out,
        version = v.version, last_ts = v.last_ts
    FROM unnest(CAST(:h_tenant AS text[]), CAST(:h_account AS text[]),
                CAST(:h_currency AS text[]), CAST(:h_posted AS numeric[]),
                CAST(:h_in AS numeric[]), CAST(:h_out AS numeric[]),
                CAST(:h_version AS bigint[]), CAST(:h_last_ts AS timestamptz[]))
         AS v(tenant, account, currency, posted, pending_in, pending_out, version, last_ts)
    WHERE b.tenant = v.tenant AND b.account = v.account AND b.currency = v.currency
), journal AS (
    INSERT INTO entries (tenant, account, currency, seq, transaction_id, kind, amount,
                         posted, pending_in, pending_out, timestamp)
    SELECT * FROM unnest(CAST(:e_tenant AS text[]), CAST(:e_account AS text[]),
                         CAST(:e_currency AS text[]), CAST(:e_seq AS bigint[]),
                         CAST(:e_txn AS text[]), CAST(:e_kind AS text[]),
                         CAST(:e_amount AS numeric[]), CAST(:e_posted AS numeric[]),
                         CAST(:e_in AS numeric[]), CAST(:e_out AS numeric[]),
                         CAST(:e_ts AS timestamptz[]))
), inserted AS (
    INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp,
                              timestamp_given, created_at, expires_at, failure, reverses,
                              reversal_id, fingerprint)
    SELECT v.tenant, v.id, v.status, v.mode, CAST(v.lines AS jsonb), CAST(v.data AS jsonb),
           v.timestamp, v.given, v.created_at, v.expires_at, CAST(v.failure AS jsonb),
           v.reverses, v.reversal_id, v.fingerprint
    FROM unnest(CAST(:i_tenant AS text[]), CAST(:i_id AS text[]), CAST(:i_status AS text[]),
                CAST(:i_mode AS text[]), CAST(:i_lines AS text[]), CAST(:i_data AS text[]),
                CAST(:i_timestamp AS timestamptz[]), CAST(:i_given AS boolean[]),
                CAST(:i_created AS timestamptz[]), CAST(:i_expires AS timestamptz[]),
                CAST(:i_failure AS text[]), CAST(:i_reverses AS text[]),
                CAST(:i_reversal AS text[]), CAST(:i_fingerprint AS text[]))
         AS v(tenant, id, status, mode, lines, data, timestamp, given, created_at,
              expires_at, failure, reverses, reversal_id, fingerprint)
    -- Sorted, like every lock: two batches recording the same new ids never deadlock.
    ORDER BY v.tenant, v.id
    ON CONFLICT (tenant, id) DO NOTHING
    RETURNING 1
), states AS (
    UPDATE transactions t
    SET status = v.status, failure = CAST(v.failure AS jsonb), reversal_id = v.reversal_id
    FROM unnest(CAST(:u_tenant AS text[]), CAST(:u_id AS text[]), CAST(:u_status AS text[]),
                CAST(:u_failure AS text[]), CAST(:u_reversal AS text[]))
         AS v(tenant, id, status, failure, reversal_id)
    WHERE t.tenant = v.tenant AND t.id = v.id
), history AS (
    INSERT INTO transaction_events (tenant, transaction_id, status, at)
    SELECT * FROM unnest(CAST(:ev_tenant AS text[]), CAST(:ev_id AS text[]),
                         CAST(:ev_status AS text[]), CAST(:ev_at AS timestamptz[]))
), listed AS (
    INSERT INTO transaction_accounts (tenant, account, timestamp, transaction_id)
    SELECT * FROM unnest(CAST(:p_tenant AS text[]), CAST(:p_account AS text[]),
                         CAST(:p_ts AS timestamptz[]), CAST(:p_txn AS text[]))
)
SELECT count(*) FROM inserted
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


class PostgresStore:
    """Implements the ledger's `Store` with asyncpg.

    NOTE: SQLAlchemy's async layer cost ~490 us of client CPU per statement on the
    2-core benchmark machine against ~240 us for asyncpg's pool (and every request
    pays for its statements), so the runtime talks asyncpg; Alembic keeps SQLAlchemy.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = self.settings
        self._pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            max_size=settings.db_pool_size + settings.db_pool_overflow,
            record_class=Row,
            server_settings={
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "twofold",
                # NOTE: a generic plan, chosen once per connection, can scan a whole
                # index in keyset order for an account's page (x25 at 1M rows, seen
                # in bench/search.py); plans made for the actual values cost ~0.1 ms.
                "plan_cache_mode": "force_custom_plan",
            },
        )

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable("the database pool is not open")
        return self._pool

    def connections_in_use(self) -> int:
        if self._pool is None:
            return 0
        return int(self._pool.get_size() - self._pool.get_idle_size())

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection whose statements commit one by one."""
        with _translated_errors():
            async with self.pool.acquire(timeout=self.settings.db_acquire_timeout_s) as raw:
                yield Connection(raw)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[Connection]:
        """A connection inside one database transaction, committed on exit."""
        with _translated_errors():
            async with (
                self.pool.acquire(timeout=self.settings.db_acquire_timeout_s) as raw,
                raw.transaction(),
            ):
                yield Connection(raw)

    async def ping(self) -> None:
        async with self.connection() as connection:
            await connection.execute("SELECT 1")

    async def ensure_accounts(self, tenants: Sequence[str]) -> None:
        """Every tenant has the built-in `@world` account with rule `any`."""
        async with self.connection() as connection:
            await connection.execute(
                (
                    "INSERT INTO accounts (tenant, id, balance_rule) "
                    "SELECT t, :world, 'any' FROM unnest(CAST(:tenants AS text[])) AS t "
                    "ON CONFLICT DO NOTHING"
                ),
                {"tenants": list(tenants), "world": WORLD},
            )

    # Transactions

    async def run_batch(self, groups: Sequence[Group]) -> list[list[Result]]:
        """One group commit: lock rows and heads in sorted order, apply, write, commit."""
        for _ in range(BATCH_ATTEMPTS):
            try:
                async with self._begin() as connection:
                    return await self._apply_batch(connection, groups)
            except _ConcurrentInsert:
                # Another process recorded one of these ids first; the retry sees it.
                continue
            except asyncpg.UniqueViolationError:
                continue
        raise Unavailable("concurrent requests with the same ids; retry")

    async def _apply_batch(
        self, connection: Connection, groups: Sequence[Group]
    ) -> list[list[Result]]:
        # 1. Lock the transaction rows: concurrent flips of one transaction queue here,
        #    and a new document's id is found taken if a row exists.
        txn_keys = lock_keys(groups)
        found = await connection.execute(
            (LOCK_TRANSACTIONS),
            {"tenants": [k[0] for k in txn_keys], "ids": [k[1] for k in txn_keys]},
        )
        rows = {(r["tenant"], r["id"]): transaction_from_row(r, r["events"]) for r in found}
        # 2. Record and check, unlocked: make the rows new documents name, read the
        #    committed heads; a new document that cannot fit them fails without a
        #    balance lock.
        fresh = new_keys(groups, rows)
        if fresh:
            accounts = sorted({(k[0], k[1]) for k in fresh})
            read = await connection.execute(
                ENSURE_AND_READ_HEADS,
                {
                    "world": WORLD,
                    "a_tenants": [a[0] for a in accounts],
                    "a_ids": [a[1] for a in accounts],
                    **_split_heads(fresh),
                },
            )
            known = {_head_key(r): head_from_row(r) for r in read if r["balance_rule"]}
            groups = precheck(groups, rows, known)
        # 3. Lock the balance heads in sorted key order, so no two batches deadlock, and
        #    read the clock once they are held.
        keys = head_keys(groups, rows)
        heads: dict[HeadKey, Head] = {}
        now = None
        if keys:
            locked = list(await connection.execute(LOCK_HEADS, _split_heads(keys)))
            heads = {_head_key(r): head_from_row(r) for r in locked}
            now = max(r["now"] for r in locked)
        if now is None:
            now = (await connection.execute("SELECT clock_timestamp()")).scalar()
        plan, results = apply_groups(groups, rows, heads, now)
        inserted = (await connection.execute(WRITE_PLAN, _plan_params(plan))).scalar()
        if inserted != len(plan.inserts):
            raise _ConcurrentInsert
        return results

    async def transaction(self, tenant: str, transaction_id: str) -> Transaction | None:
        async with self.connection() as connection:
            row = (
                await connection.execute(
                    f"SELECT {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t"
                    " WHERE tenant = :tenant AND id = :id",
                    {"tenant": tenant, "id": transaction_id},
                )
            ).first()
        return None if row is None else transaction_from_row(row, row["events"])

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> bool:
        async with self.connection() as connection:
            result = await connection.execute(
                (
                    "UPDATE transactions SET data = CAST(:data AS jsonb) "
                    "WHERE tenant = :tenant AND id = :id RETURNING 1"
                ),
                {"tenant": tenant, "id": transaction_id, "data": _encode(data).decode()},
            )
        return result.first() is not None

    async def due(self, limit: int) -> list[tuple[str, str]]:
        """Holds past their `expires_at`, for the sweep to void."""
        async with self.connection() as connection:
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
        async with self.connection() as connection:
            row = (
                await connection.execute(
                    (
                        "INSERT INTO accounts (tenant, id, balance_rule, data) "
                        "VALUES (:tenant, :id, :rule, CAST(:data AS jsonb)) "
                        "ON CONFLICT DO NOTHING RETURNING id"
                    ),
                    {
                        "tenant": tenant,
                        "id": account_id,
                        "rule": rule.value,
                        "data": _encode(data).decode(),
                    },
                )
            ).first()
        account = await self.account(tenant, account_id)
        assert account is not None, "an account is never deleted"
        return account, row is not None

    async def account(self, tenant: str, account_id: str) -> Account | None:
        async with self.connection() as connection:
            row = (
                await connection.execute(
                    (
                        "SELECT id, balance_rule, data, created_at FROM accounts "
                        "WHERE tenant = :tenant AND id = :id"
                    ),
                    {"tenant": tenant, "id": account_id},
                )
            ).first()
            if row is None:
                return None
            heads = await account_heads(connection, tenant, [account_id])
            return account_from_row(row, heads.get(account_id, []))

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> bool:
        async with self.connection() as connection:
            result = await connection.execute(
                (
                    "UPDATE accounts SET data = CAST(:data AS jsonb) "
                    "WHERE tenant = :tenant AND id = :id RETURNING 1"
                ),
                {"tenant": tenant, "id": account_id, "data": _encode(data).decode()},
            )
        return result.first() is not None

    async def balances_at(
        self, tenant: str, account_id: str, at: datetime, currency: str | None
    ) -> list[BalanceRow]:
        """The last entry at or before `at`, per currency: one index probe each."""
        async with self.connection() as connection:
            rows = await connection.execute(
                (
                    "SELECT b.currency, e.posted, e.pending_in, e.pending_out"
                    " FROM balances b CROSS JOIN LATERAL ("
                    "   SELECT posted, pending_in, pending_out FROM entries e"
                    "   WHERE e.tenant = b.tenant AND e.account = b.account"
                    "     AND e.currency = b.currency AND e.timestamp <= :at"
                    "   ORDER BY e.timestamp DESC, e.seq DESC LIMIT 1) e"
                    " WHERE b.tenant = :tenant AND b.account = :id"
                    "   AND (CAST(:currency AS text) IS NULL OR b.currency = :currency)"
                    " ORDER BY b.currency"
                ),
                {"tenant": tenant, "id": account_id, "at": at, "currency": currency},
            )
            return [BalanceRow(r.currency, r.posted, r.pending_in, r.pending_out) for r in rows]

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
        async with self.connection() as connection:
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


class _ConcurrentInsert(Exception):
    """A new document's id was recorded by another process during the batch."""


def _json_text(value: Any) -> str | None:
    return None if value is None else _encode(value).decode()


def _plan_params(plan: Plan) -> dict[str, Any]:
    heads = list(plan.heads.items())
    inserts = list(plan.inserts.items())
    updates = list(plan.updates.items())
    return {
        "h_tenant": [k[0] for k, _ in heads],
        "h_account": [h.account for _, h in heads],
        "h_currency": [h.currency for _, h in heads],
        "h_posted": [h.posted for _, h in heads],
        "h_in": [h.pending_in for _, h in heads],
        "h_out": [h.pending_out for _, h in heads],
        "h_version": [h.version for _, h in heads],
        "h_last_ts": [h.last_ts for _, h in heads],
        "e_tenant": [r.tenant for r in plan.entries],
        "e_account": [r.entry.account for r in plan.entries],
        "e_currency": [r.entry.currency for r in plan.entries],
        "e_seq": [r.entry.seq for r in plan.entries],
        "e_txn": [r.transaction_id for r in plan.entries],
        "e_kind": [r.entry.kind for r in plan.entries],
        "e_amount": [r.entry.amount for r in plan.entries],
        "e_posted": [r.entry.posted for r in plan.entries],
        "e_in": [r.entry.pending_in for r in plan.entries],
        "e_out": [r.entry.pending_out for r in plan.entries],
        "e_ts": [r.timestamp for r in plan.entries],
        "i_tenant": [k[0] for k, _ in inserts],
        "i_id": [t.id for _, t in inserts],
        "i_status": [t.status.value for _, t in inserts],
        "i_mode": [t.mode.value for _, t in inserts],
        "i_lines": [_lines_json(t.lines) for _, t in inserts],
        "i_data": [_encode(t.data).decode() for _, t in inserts],
        "i_timestamp": [t.timestamp for _, t in inserts],
        "i_given": [t.timestamp_given for _, t in inserts],
        "i_created": [t.created_at for _, t in inserts],
        "i_expires": [t.expires_at for _, t in inserts],
        "i_failure": [_json_text(t.failure) for _, t in inserts],
        "i_reverses": [t.reverses for _, t in inserts],
        "i_reversal": [t.reversal_id for _, t in inserts],
        "i_fingerprint": [t.fingerprint for _, t in inserts],
        "u_tenant": [k[0] for k, _ in updates],
        "u_id": [t.id for _, t in updates],
        "u_status": [t.status.value for _, t in updates],
        "u_failure": [_json_text(t.failure) for _, t in updates],
        "u_reversal": [t.reversal_id for _, t in updates],
        "ev_tenant": [e.tenant for e in plan.events],
        "ev_id": [e.transaction_id for e in plan.events],
        "ev_status": [e.status.value for e in plan.events],
        "ev_at": [e.at for e in plan.events],
        "p_tenant": [p.tenant for p in plan.postings],
        "p_account": [p.account for p in plan.postings],
        "p_ts": [p.timestamp for p in plan.postings],
        "p_txn": [p.transaction_id for p in plan.postings],
    }


# SQLSTATE classes that say "try again": connection, rollback (deadlock, serialization),
# insufficient resources, operator intervention (statement timeout, shutdown).
_RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57")


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Storage errors become `Unavailable` (a retryable 503) at the storage edge."""
    try:
        yield
    except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
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
