"""PostgreSQL store for the ledger: tables are created by `migrations/`."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.ledger.documents import WORLD, Draft, Line, Mode, Status
from app.ledger.errors import InvalidRequest, TransactionExists, Unavailable
from app.ledger.rules import Head, Rule
from app.ledger.service import Account, Changes, Key, Transaction
from app.settings import Settings, sqlalchemy_url

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


def _split(keys: Sequence[Key]) -> dict[str, list[str]]:
    return {"accounts": [k[0] for k in keys], "currencies": [k[1] for k in keys]}


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

HEAD_SELECT = """
SELECT b.account, b.currency, a.balance_rule, b.posted, b.pending_in, b.pending_out,
       b.version, b.last_ts
FROM balances b
JOIN accounts a ON a.tenant = b.tenant AND a.id = b.account
WHERE b.tenant = :tenant
  AND (b.account, b.currency) IN (
      SELECT * FROM unnest(CAST(:accounts AS text[]), CAST(:currencies AS text[])))
ORDER BY b.account, b.currency
"""

RECORD = """
WITH tx AS (
    INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp,
                              timestamp_given, expires_at, fingerprint)
    VALUES (:tenant, :id, 'RECORDED', :mode, CAST(:lines AS jsonb), CAST(:data AS jsonb),
            :timestamp, :timestamp_given, :expires_at, :fingerprint)
    ON CONFLICT (tenant, id) DO NOTHING
    RETURNING created_at
), new_accounts AS (
    INSERT INTO accounts (tenant, id, balance_rule)
    SELECT :tenant, a.id, CASE WHEN a.id = :world THEN 'any' ELSE 'non_negative' END
    FROM unnest(CAST(:account_ids AS text[])) AS a(id)
    WHERE EXISTS (SELECT 1 FROM tx)
    ON CONFLICT DO NOTHING
), new_balances AS (
    INSERT INTO balances (tenant, account, currency)
    SELECT :tenant, k.account, k.currency
    FROM unnest(CAST(:accounts AS text[]), CAST(:currencies AS text[])) AS k(account, currency)
    WHERE EXISTS (SELECT 1 FROM tx)
    ON CONFLICT DO NOTHING
)
SELECT created_at FROM tx
"""

# One statement writes a whole flip: heads, journal, states, history.
WRITE = """
WITH heads AS (
    UPDATE balances b
    SET posted = v.posted, pending_in = v.pending_in, pending_out = v.pending_out,
        version = v.version, last_ts = CAST(:at AS timestamptz)
    FROM unnest(CAST(:h_account AS text[]), CAST(:h_currency AS text[]),
                CAST(:h_posted AS numeric[]), CAST(:h_in AS numeric[]),
                CAST(:h_out AS numeric[]), CAST(:h_version AS bigint[]))
         AS v(account, currency, posted, pending_in, pending_out, version)
    WHERE b.tenant = :tenant AND b.account = v.account AND b.currency = v.currency
), journal AS (
    INSERT INTO entries (tenant, account, currency, seq, transaction_id, kind, amount,
                         posted, pending_in, pending_out, timestamp)
    SELECT :tenant, v.account, v.currency, v.seq, v.txn, v.kind, v.amount,
           v.posted, v.pending_in, v.pending_out, CAST(:at AS timestamptz)
    FROM unnest(CAST(:e_account AS text[]), CAST(:e_currency AS text[]),
                CAST(:e_seq AS bigint[]), CAST(:e_txn AS text[]), CAST(:e_kind AS text[]),
                CAST(:e_amount AS numeric[]), CAST(:e_posted AS numeric[]),
                CAST(:e_in AS numeric[]), CAST(:e_out AS numeric[]))
         AS v(account, currency, seq, txn, kind, amount, posted, pending_in, pending_out)
), states AS (
    UPDATE transactions t
    SET status = v.status,
        failure = CAST(v.failure AS jsonb),
        reversal_id = coalesce(v.reversal_id, t.reversal_id),
        timestamp = coalesce(t.timestamp, CAST(:at AS timestamptz))
    FROM unnest(CAST(:s_id AS text[]), CAST(:s_status AS text[]), CAST(:s_failure AS text[]),
                CAST(:s_reversal AS text[])) AS v(id, status, failure, reversal_id)
    WHERE t.tenant = :tenant AND t.id = v.id
), listed AS (
    INSERT INTO transaction_accounts (tenant, account, timestamp, transaction_id)
    SELECT :tenant, v.account, v.timestamp, v.txn
    FROM unnest(CAST(:p_account AS text[]), CAST(:p_timestamp AS timestamptz[]),
                CAST(:p_txn AS text[])) AS v(account, timestamp, txn)
)
INSERT INTO transaction_events (tenant, transaction_id, status, at)
SELECT :tenant, v.id, v.status, CAST(:at AS timestamptz)
FROM unnest(CAST(:ev_id AS text[]), CAST(:ev_status AS text[])) AS v(id, status)
"""

INSERT_TRANSACTION = """
INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp, timestamp_given,
                          created_at, expires_at, reverses, fingerprint)
VALUES (:tenant, :id, :status, :mode, CAST(:lines AS jsonb), CAST(:data AS jsonb),
        :timestamp, false, :timestamp, NULL, :reverses, :fingerprint)
ON CONFLICT (tenant, id) DO NOTHING
RETURNING id
"""


def head_from_row(row: Any) -> Head:
    return Head(
        account=row.account,
        currency=row.currency,
        rule=Rule(row.balance_rule),
        posted=row.posted,
        pending_in=row.pending_in,
        pending_out=row.pending_out,
        version=row.version,
        last_ts=row.last_ts,
    )


def account_from_row(row: Any, heads: Sequence[Head]) -> Account:
    return Account(
        id=row.id,
        rule=Rule(row.balance_rule),
        data=json_value(row.data),
        created_at=row.created_at,
        heads=tuple(heads),
    )


def transaction_from_row(row: Any, events: Any = ()) -> Transaction:
    return Transaction(
        id=row.id,
        status=Status(row.status),
        mode=Mode(row.mode),
        lines=_lines(row.lines),
        data=json_value(row.data),
        timestamp=row.timestamp,
        timestamp_given=row.timestamp_given,
        created_at=row.created_at,
        expires_at=row.expires_at,
        failure=json_value(row.failure) if row.failure is not None else None,
        reverses=row.reverses,
        reversal_id=row.reversal_id,
        fingerprint=row.fingerprint,
        events=tuple((Status(s), datetime.fromisoformat(at)) for s, at in json_value(events)),
    )


class _Unit:
    """The locks of one flip, held until the surrounding database transaction ends."""

    def __init__(
        self,
        connection: AsyncConnection,
        tenant: str,
        transaction: Transaction | None,
        heads: Mapping[Key, Head],
        now: datetime,
    ) -> None:
        self.connection = connection
        self.tenant = tenant
        self.transaction = transaction
        self.heads = heads
        self.now = now

    async def write(self, changes: Changes) -> None:
        for row in changes.inserts:
            inserted = await self.connection.execute(
                text(INSERT_TRANSACTION),
                {
                    "tenant": self.tenant,
                    "id": row.id,
                    "status": row.status.value,
                    "mode": row.mode.value,
                    "lines": _lines_json(row.lines),
                    "data": _encode(row.data).decode(),
                    "timestamp": row.timestamp,
                    "reverses": row.reverses,
                    "fingerprint": row.fingerprint,
                },
            )
            if inserted.first() is None:
                raise TransactionExists(f"transaction {row.id} exists already")
        heads, entries, states = changes.heads, changes.entries, changes.status_changes
        events = [(s.id, s.status.value) for s in states] + [
            (row.id, row.status.value) for row in changes.inserts
        ]
        await self.connection.execute(
            text(WRITE),
            {
                "tenant": self.tenant,
                "at": changes.at,
                "h_account": [h.account for h in heads],
                "h_currency": [h.currency for h in heads],
                "h_posted": [h.posted for h in heads],
                "h_in": [h.pending_in for h in heads],
                "h_out": [h.pending_out for h in heads],
                "h_version": [h.version for h in heads],
                "e_account": [e.account for _, e in entries],
                "e_currency": [e.currency for _, e in entries],
                "e_seq": [e.seq for _, e in entries],
                "e_txn": [txn for txn, _ in entries],
                "e_kind": [e.kind for _, e in entries],
                "e_amount": [e.amount for _, e in entries],
                "e_posted": [e.posted for _, e in entries],
                "e_in": [e.pending_in for _, e in entries],
                "e_out": [e.pending_out for _, e in entries],
                "s_id": [s.id for s in states],
                "s_status": [s.status.value for s in states],
                "s_failure": [
                    None if s.failure is None else _encode(s.failure).decode() for s in states
                ],
                "s_reversal": [s.reversal_id for s in states],
                "p_account": [p.account for p in changes.postings],
                "p_timestamp": [p.timestamp for p in changes.postings],
                "p_txn": [p.transaction_id for p in changes.postings],
                "ev_id": [e[0] for e in events],
                "ev_status": [e[1] for e in events],
            },
        )


class PostgresStore:
    """Implements `app.ledger.service.Store` over SQLAlchemy Core and asyncpg."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Single statements are atomic on their own: no BEGIN/COMMIT round trips.
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def connect(cls, settings: Settings) -> PostgresStore:
        engine = create_async_engine(
            sqlalchemy_url(settings.database_url),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_overflow,
            pool_pre_ping=False,
            connect_args={
                "server_settings": {
                    "statement_timeout": str(settings.db_statement_timeout_ms),
                    # NOTE: a generic plan, chosen once per connection, can scan a whole
                    # index in keyset order for an account's page (x25 at 1M rows, seen
                    # in bench/search.py); plans made for the actual values cost ~0.1 ms.
                    "plan_cache_mode": "force_custom_plan",
                    "application_name": "twofold",
                }
            },
        )
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose statements commit one by one."""
        with _translated_errors():
            async with self.autocommit.connect() as connection:
                yield connection

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside one database transaction, committed on exit."""
        with _translated_errors():
            async with self.engine.begin() as connection:
                yield connection

    async def ping(self) -> None:
        async with self.connection() as connection:
            await connection.execute(text("SELECT 1"))

    async def ensure_accounts(self, tenants: Sequence[str]) -> None:
        """Every tenant has the built-in `@world` account with rule `any`."""
        async with self.connection() as connection:
            await connection.execute(
                text(
                    "INSERT INTO accounts (tenant, id, balance_rule) "
                    "SELECT t, :world, 'any' FROM unnest(CAST(:tenants AS text[])) AS t "
                    "ON CONFLICT DO NOTHING"
                ),
                {"tenants": list(tenants), "world": WORLD},
            )

    # Transactions

    async def record(self, tenant: str, draft: Draft) -> tuple[Transaction, bool]:
        keys = sorted({(line.account, line.currency) for line in draft.lines})
        async with self.connection() as connection:
            created_at = (
                await connection.execute(
                    text(RECORD),
                    {
                        "tenant": tenant,
                        "id": draft.id,
                        "mode": draft.mode.value,
                        "lines": _lines_json(draft.lines),
                        "data": _encode(draft.data).decode(),
                        "timestamp": draft.timestamp,
                        "timestamp_given": draft.timestamp is not None,
                        "expires_at": draft.expires_at,
                        "fingerprint": draft.fingerprint,
                        "world": WORLD,
                        "account_ids": sorted({k[0] for k in keys}),
                        **_split(keys),
                    },
                )
            ).scalar()
        if created_at is None:
            existing = await self.transaction(tenant, draft.id)
            assert existing is not None, "a recorded transaction is never deleted"
            return existing, False
        return (
            Transaction(
                id=draft.id,
                status=Status.RECORDED,
                mode=draft.mode,
                lines=draft.lines,
                data=draft.data,
                timestamp=draft.timestamp,
                timestamp_given=draft.timestamp is not None,
                created_at=created_at,
                expires_at=draft.expires_at,
                failure=None,
                reverses=None,
                reversal_id=None,
                fingerprint=draft.fingerprint,
            ),
            True,
        )

    async def heads(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Head]:
        async with self.connection() as connection:
            rows = await connection.execute(text(HEAD_SELECT), {"tenant": tenant, **_split(keys)})
            return {(r.account, r.currency): head_from_row(r) for r in rows}

    @asynccontextmanager
    async def lock(
        self, tenant: str, transaction_id: str, keys: Sequence[Key]
    ) -> AsyncIterator[_Unit]:
        async with self._begin() as connection:
            # 1. Lock the document: concurrent flips of one transaction queue here.
            row = (
                await connection.execute(
                    text(
                        f"SELECT {TRANSACTION_COLUMNS} FROM transactions "
                        "WHERE tenant = :tenant AND id = :id FOR UPDATE"
                    ),
                    {"tenant": tenant, "id": transaction_id},
                )
            ).first()
            heads: dict[Key, Head] = {}
            if row is not None and keys:
                # 2. Lock the balance heads in sorted key order, so no two flips deadlock.
                rows = await connection.execute(
                    text(HEAD_SELECT + " FOR UPDATE OF b"), {"tenant": tenant, **_split(keys)}
                )
                heads = {(r.account, r.currency): head_from_row(r) for r in rows}
            # 3. Read the clock only now that the locks are held.
            now = (await connection.execute(text("SELECT clock_timestamp()"))).scalar_one()
            transaction = transaction_from_row(row) if row is not None else None
            yield _Unit(connection, tenant, transaction, heads, now)

    async def transaction(self, tenant: str, transaction_id: str) -> Transaction | None:
        async with self.connection() as connection:
            row = (
                await connection.execute(
                    text(
                        f"SELECT {TRANSACTION_COLUMNS}, ("
                        "  SELECT coalesce(json_agg(json_build_array(e.status, e.at)"
                        "                  ORDER BY e.at, e.seq), '[]')"
                        "  FROM transaction_events e"
                        "  WHERE e.tenant = t.tenant AND e.transaction_id = t.id) AS events "
                        "FROM transactions t WHERE tenant = :tenant AND id = :id"
                    ),
                    {"tenant": tenant, "id": transaction_id},
                )
            ).first()
        return None if row is None else transaction_from_row(row, row.events)

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> bool:
        async with self.connection() as connection:
            result = await connection.execute(
                text(
                    "UPDATE transactions SET data = CAST(:data AS jsonb) "
                    "WHERE tenant = :tenant AND id = :id"
                ),
                {"tenant": tenant, "id": transaction_id, "data": _encode(data).decode()},
            )
        return bool(result.rowcount)

    async def due(self, resume_after_s: float, limit: int) -> list[tuple[str, str]]:
        """Documents a reader must not find half done: expired holds, stale records."""
        async with self.connection() as connection:
            rows = await connection.execute(
                text(
                    "(SELECT tenant, id FROM transactions"
                    " WHERE status = 'PENDING' AND expires_at <= clock_timestamp()"
                    " ORDER BY expires_at LIMIT :limit)"
                    " UNION ALL "
                    "(SELECT tenant, id FROM transactions"
                    " WHERE status = 'RECORDED'"
                    "   AND created_at <= clock_timestamp() - make_interval(secs => :after)"
                    " ORDER BY created_at LIMIT :limit)"
                ),
                {"limit": limit, "after": resume_after_s},
            )
            return [(r.tenant, r.id) for r in rows]

    # Accounts

    async def insert_account(
        self, tenant: str, account_id: str, rule: Rule, data: Mapping[str, Any]
    ) -> tuple[Account, bool]:
        async with self.connection() as connection:
            row = (
                await connection.execute(
                    text(
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
                    text(
                        "SELECT id, balance_rule, data, created_at FROM accounts "
                        "WHERE tenant = :tenant AND id = :id"
                    ),
                    {"tenant": tenant, "id": account_id},
                )
            ).first()
            if row is None:
                return None
            heads = await connection.execute(
                text(
                    "SELECT account, currency, :rule AS balance_rule, posted, pending_in,"
                    " pending_out, version, last_ts FROM balances"
                    " WHERE tenant = :tenant AND account = :id AND version > 0"
                    " ORDER BY currency"
                ),
                {"tenant": tenant, "id": account_id, "rule": row.balance_rule},
            )
            return account_from_row(row, [head_from_row(h) for h in heads])

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> bool:
        async with self.connection() as connection:
            result = await connection.execute(
                text(
                    "UPDATE accounts SET data = CAST(:data AS jsonb) "
                    "WHERE tenant = :tenant AND id = :id"
                ),
                {"tenant": tenant, "id": account_id, "data": _encode(data).decode()},
            )
        return bool(result.rowcount)

    async def balances_at(
        self, tenant: str, account_id: str, at: datetime, currency: str | None
    ) -> list[BalanceRow]:
        """The last entry at or before `at`, per currency: one index probe each."""
        async with self.connection() as connection:
            rows = await connection.execute(
                text(
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
                    text(
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


# SQLSTATE classes that say "try again": connection, rollback (deadlock, serialization),
# insufficient resources, operator intervention (statement timeout, shutdown).
_RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57")


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Storage errors become `Unavailable` (a retryable 503) at the storage edge."""
    try:
        yield
    except (PoolTimeout, OSError) as exc:
        raise Unavailable("the database is unavailable; retry") from exc
    except DBAPIError as exc:
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        if exc.connection_invalidated or sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES:
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
