"""Connections to PostgreSQL: the pools, statements with `:name` parameters, and what
a lost or broken connection becomes (`Unavailable`, a retryable 503)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from functools import lru_cache
from typing import Any

import asyncpg

from app.ledger.errors import Unavailable
from app.settings import Settings


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


async def _keep_session(_: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    NOTE: asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL` on every release: one more round trip per use (a fifth of
    PostgreSQL's CPU for a GET of an account). The store uses no
    advisory locks, cursors, LISTEN or SET; asyncpg still rolls back a transaction left
    open.
    """


WRITER_POOL_SIZE = 2
# One connection for each sink a process serves at once (app/streams/delivery.py): a
# sink's sends run inside a transaction that holds its row, so that one slow sink never
# waits for another's connection. Opened as sinks need them.
SINK_POOL_SIZE = 64
KEYED_PLANS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}


# SQLSTATE classes that say "try again": connection, rollback (deadlock, serialization),
# insufficient resources, operator intervention (statement timeout, shutdown).
_RETRYABLE_SQLSTATE_CLASSES = ("08", "40", "53", "57")


# What a lost or broken connection raises. NOTE: asyncpg raises InternalClientError
# ("cannot switch to state ...: another operation is in progress") when the server dies
# in the middle of a statement; it is not an InterfaceError.
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)


@contextmanager
def translated_errors() -> Iterator[None]:
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


class Database:
    """The pools a process keeps: keyed statements, scans, and the group commit's writer.

    NOTE: SQLAlchemy's async layer cost about twice asyncpg's pool in client CPU per
    statement on the 2-core benchmark machine (and every request pays for its
    statements), so the runtime talks asyncpg; Alembic keeps SQLAlchemy.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._scans: asyncpg.Pool | None = None
        self._writer: asyncpg.Pool | None = None
        self._sinks: asyncpg.Pool | None = None

    async def open(self, writer_init: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        settings = self.settings
        size = settings.db_pool_size + settings.db_pool_overflow
        # Reads and writes of rows found by their keys keep one generic plan, like the
        # group commit's statements below: planning a balance at an instant anew cost
        # PostgreSQL about twice what the read costs with the generic plan.
        self._pool = await self._create_pool(size, KEYED_PLANS)
        # NOTE: a generic plan, chosen once per connection, can scan a whole index in
        # keyset order for an account's page (many times slower at 1M rows, seen in
        # bench/search.py); so searches and pages plan for the actual values, a small
        # cost next to the page.
        self._scans = await self._create_pool(
            max(2, size // 2), {"plan_cache_mode": "force_custom_plan"}
        )
        # Group commits run one at a time per process (a failed one reruns its groups
        # one by one on the same path). Planning their statements anew for every batch
        # cost PostgreSQL as much as a transfer's writes under `uniform`, so they keep one
        # generic plan. Every row they touch is found by its key: with sequential scans off, a
        # table is only ever probed by index, however many rows a batch names and even
        # if the plan was made while the tables were nearly empty. (Hash joins stay:
        # they join a batch's own rows, such as new accounts to their keys.)
        self._writer = await self._create_pool(WRITER_POOL_SIZE, KEYED_PLANS, writer_init)
        self._sinks = await self._create_pool(SINK_POOL_SIZE, KEYED_PLANS, min_size=0)

    async def _create_pool(
        self,
        size: int,
        plans: Mapping[str, str],
        init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
        min_size: int = 1,
    ) -> asyncpg.Pool:
        settings = self.settings
        return await asyncpg.create_pool(
            settings.database_url,
            min_size=min_size,
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
            for pool in (self._pool, self._scans, self._writer, self._sinks)
            if pool is not None
        )

    async def close(self) -> None:
        for pool in (self._pool, self._scans, self._writer, self._sinks):
            if pool is not None:
                await pool.close()

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for statements that find their rows by key (one generic plan
        each, never a sequential scan); they commit one by one."""
        return self._connection(self._pool)

    def scan_connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for searches and pages, planned for their actual values."""
        return self._connection(self._scans)

    def sink_connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection for one sink's delivery transaction (`app/models/sinks.py`)."""
        return self._connection(self._sinks)

    @asynccontextmanager
    async def _connection(self, pool: asyncpg.Pool | None) -> AsyncIterator[Connection]:
        if pool is None:
            raise Unavailable("the database pool is not open")
        with translated_errors():
            async with pool.acquire(timeout=self.settings.db_acquire_timeout_s) as raw:
                yield Connection(raw)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Connection]:
        """A writer connection inside one database transaction, which the caller ends
        with `_write_and_commit`; an exception rolls it back."""
        if self._writer is None:
            raise Unavailable("the database pool is not open")
        with translated_errors():
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
