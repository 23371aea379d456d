"""The group commit's statements and the keyed reads keep one generic plan per connection:
it must find every row by index, even when it was planned on the nearly empty tables of a
fresh database."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from app.models.connections import KEYED_PLANS, positional
from app.models.statements import KEYED_STATEMENTS
from integration_tests.server import Backends


@pytest.mark.parametrize("name", sorted(KEYED_STATEMENTS))
async def test_keyed_statements_never_scan_a_table(
    backends: Backends, api: httpx.AsyncClient, uid, fund, name: str
) -> None:
    await fund(uid("planned"), "1")  # some rows, as few as a new deployment has
    sql, params = positional(KEYED_STATEMENTS[name])
    connection = await asyncpg.connect(backends.database_url, server_settings=KEYED_PLANS)
    try:
        await connection.execute(f"PREPARE planned AS {sql}")
        nulls = ", ".join("NULL" for _ in params)
        rows = await connection.fetch(f"EXPLAIN EXECUTE planned({nulls})")
    finally:
        await connection.close()
    plan = "\n".join(row[0] for row in rows)
    assert "Index Scan" in plan or "Index Only Scan" in plan or name == "WRITE_PLAN", plan
    assert "Seq Scan" not in plan, plan


async def test_a_batch_that_recorded_fewer_rows_than_it_meant_rolls_back(
    backends: Backends, api: httpx.AsyncClient
) -> None:
    """Its write and COMMIT travel together, so the database itself refuses to commit
    when another process recorded one of its ids first; the batch then runs again."""
    connection = await asyncpg.connect(backends.database_url)
    try:
        assert await connection.fetchval("SELECT twofold_expect_recorded(2, 2)") == 2
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.fetchval("SELECT twofold_expect_recorded(1, 2)")
    finally:
        await connection.close()
