"""Migrations that move data: the rows as they were, upgraded, read as before."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg

from app.embedded import migrate
from integration_tests.server import Backends, admin, with_database


def test_the_history_moves_into_the_transaction_row_in_the_order_entered(
    backends: Backends,
) -> None:
    name = f"twofold_history_{os.getpid()}"
    asyncio.run(admin(backends.database_url, f"CREATE DATABASE {name}"))
    url = with_database(backends.database_url, name)
    try:
        migrate(url, "0007")

        async def before() -> None:
            connection = await asyncpg.connect(url)
            try:
                await connection.execute("""
                    INSERT INTO transactions (tenant, id, status, mode, lines, data,
                        timestamp, timestamp_given, created_at, fingerprint)
                    VALUES ('t', 'held', 'REVERSED', 'pending', '[]', '{}', now(), false,
                            now(), 'f'),
                           ('t', 'quiet', 'COMPLETED', 'immediate', '[]', '{}', now(),
                            false, now(), 'g')
                """)
                # Three states of one instant: the state machine's order decides.
                await connection.execute("""
                    INSERT INTO transaction_events (tenant, transaction_id, status, at) VALUES
                        ('t', 'held', 'REVERSED', '2026-01-01T00:00:00Z'),
                        ('t', 'held', 'COMPLETED', '2026-01-01T00:00:00Z'),
                        ('t', 'held', 'PENDING', '2026-01-01T00:00:00Z'),
                        ('t', 'quiet', 'COMPLETED', '2026-02-01T00:00:00Z')
                """)
            finally:
                await connection.close()

        async def after() -> dict[str, list[list[str]]]:
            connection = await asyncpg.connect(url)
            try:
                rows = await connection.fetch("SELECT id, history::text FROM transactions")
                gone = await connection.fetchval("SELECT to_regclass('transaction_events')")
            finally:
                await connection.close()
            assert gone is None
            return {r["id"]: [[s, at[:10]] for s, at in json.loads(r["history"])] for r in rows}

        asyncio.run(before())
        migrate(url)
        assert asyncio.run(after()) == {
            "held": [["PENDING", "2026-01-01"], ["COMPLETED", "2026-01-01"],
                     ["REVERSED", "2026-01-01"]],
            "quiet": [["COMPLETED", "2026-02-01"]],
        }  # fmt: skip
    finally:
        asyncio.run(admin(backends.database_url, f"DROP DATABASE {name} WITH (FORCE)"))
