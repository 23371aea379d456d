"""The group commit's statements, run directly. They and the keyed reads keep one generic
plan per connection: it must find every row by index, even when it was planned on the
nearly empty tables of a fresh database. And what they do at their edges: an id recorded
meanwhile, a value absent, a head that did or did not move since it was read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from app.models.connections import KEYED_PLANS, positional
from app.models.statements import DUE_HOLDS, KEYED_STATEMENTS, LOCK_HEADS, WRITE_PLAN
from integration_tests.server import Backends


@asynccontextmanager
async def keyed_connection(backends: Backends) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own with the keyed pool's plan settings."""
    connection = await asyncpg.connect(backends.database_url, server_settings=KEYED_PLANS)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("name", sorted(KEYED_STATEMENTS))
async def test_keyed_statements_never_scan_a_table(
    backends: Backends, api: httpx.AsyncClient, uid, fund, name: str
) -> None:
    await fund(uid("planned"), "1")  # some rows, as few as a new deployment has
    sql, params = positional(KEYED_STATEMENTS[name])
    async with keyed_connection(backends) as connection:
        await connection.execute(f"PREPARE planned AS {sql}")
        nulls = ", ".join("NULL" for _ in params)
        rows = await connection.fetch(f"EXPLAIN EXECUTE planned({nulls})")
    plan = "\n".join(row[0] for row in rows)
    assert "Index Scan" in plan or "Index Only Scan" in plan or name == "WRITE_PLAN", plan
    assert "Seq Scan" not in plan, plan


async def test_a_write_of_an_id_recorded_meanwhile_raises_and_writes_nothing(
    backends: Backends, api: httpx.AsyncClient, uid, fund
) -> None:
    """Another process may record one of a batch's new ids between the batch's read and
    its write: the insert raises unique_violation (then the batch runs again and finds the
    id taken, `commit_groups`), and nothing of the write is left."""
    taken, new, account = uid("taken"), uid("new"), uid("raced")
    credit = {"id": taken, "type": "CREDIT", "account": account, "currency": "USD", "amount": "1"}
    made = await api.post("/v1/transactions/immediate", json=credit)
    assert made.status_code == 201, made.text
    now = "2026-01-01T00:00:00Z"

    def row(id_: str) -> list[object]:  # in the columns' order of WRITE_PLAN's inserts
        return ["test", id_, "COMPLETED", "immediate", [], {}, now, False, now, None, None,
                None, None, "", []]  # fmt: skip

    posting = ["test", account, now, new]
    rows = {"inserts": [row(new), row(taken)], "postings": [posting]}
    sql, params = positional(WRITE_PLAN)
    async with keyed_connection(backends) as connection:
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute(sql, *(json.dumps(rows.get(name, [])) for name in params))
        recorded = await connection.fetch(
            "SELECT transaction_id FROM transaction_accounts WHERE tenant = 'test' AND account = $1"
            " UNION ALL SELECT id FROM transactions WHERE tenant = 'test' AND id = $2",
            account,
            new,
        )
        assert [r[0] for r in recorded] == [taken]


async def test_the_write_stores_an_absent_value_as_null(
    backends: Backends, api: httpx.AsyncClient, uid
) -> None:
    """The write's rows are JSON arrays: a value absent from a transaction (no failure,
    no expiry, nothing reversed) must be SQL NULL in its row, whatever the column's type,
    not a JSON `null` in a jsonb column."""
    made = await api.post("/v1/transactions/immediate", json={
        "type": "CREDIT", "account": uid("nulls"), "currency": "USD", "amount": "1"})  # fmt: skip
    assert made.status_code == 201, made.text
    async with keyed_connection(backends) as connection:
        row = await connection.fetchrow(
            "SELECT failure IS NULL AS failure, expires_at IS NULL AS expires_at,"
            " reverses IS NULL AS reverses, reversal_id IS NULL AS reversal_id"
            " FROM transactions WHERE tenant = 'test' AND id = $1",
            made.json()["id"],
        )
    assert dict(row) == dict.fromkeys(("failure", "expires_at", "reverses", "reversal_id"), True)


async def test_locking_heads_answers_only_what_changed_since_it_was_read(
    backends: Backends, api: httpx.AsyncClient, uid, fund
) -> None:
    """A head at the version read unlocked comes back as its ordinal, one that moved
    since (or was not read) as a row; a rule is read only for a head whose rule was not
    read (its account committed after that read). The clock comes last, after the locks."""
    account = uid("locked")
    response = await api.post("/v1/accounts", json={"id": account, "balance_rule": "any"})
    assert response.status_code == 201, response.text
    await fund(account, "5")
    sql, _ = positional(LOCK_HEADS)
    async with keyed_connection(backends) as connection, connection.transaction():
        before = await connection.fetchval("SELECT clock_timestamp()")
        unread = json.dumps([["test", account, "USD", None, None]])
        [row, last] = await connection.fetch(sql, unread)
        assert (row["account"], row["balance_rule"], row["posted"], row["version"]) == (
            account, "any", 5, 1)  # fmt: skip
        assert (last["unchanged"], last["now"] > before) == ([], True)
        # A rule given is not read again: here one the account does not have, to tell.
        given = json.dumps([["test", "@world", "USD", None, None],
                            ["test", account, "USD", "non_negative", 0]])  # fmt: skip
        *rows, last = await connection.fetch(sql, given)
        assert [(r["account"], r["balance_rule"]) for r in rows] == [
            ("@world", "any"), (account, "non_negative")]  # fmt: skip
        assert last["unchanged"] == []
        # At the version read, it is only its ordinal among the keys given.
        read = json.dumps([["test", "@world", "USD", None, None],
                           ["test", account, "USD", "any", 1]])  # fmt: skip
        *rows, last = await connection.fetch(sql, read)
        assert [r["account"] for r in rows] == ["@world"]
        assert last["unchanged"] == [2]


async def test_the_expiry_sweep_reads_the_index_of_holds_with_an_expiry(
    backends: Backends, api: httpx.AsyncClient, uid, fund
) -> None:
    """Only transactions with an `expires_at` are in `transactions_expiring`; the sweep's
    statement must still be one the index answers."""
    await fund(uid("sweep"), "1")
    sql, _ = positional(DUE_HOLDS)
    async with keyed_connection(backends) as connection:
        plan = "\n".join(r[0] for r in await connection.fetch(f"EXPLAIN {sql}", 100))
        predicate = await connection.fetchval(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index"
            " WHERE indexrelid = 'transactions_expiring'::regclass"
        )
    assert "transactions_expiring" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert predicate == "(expires_at IS NOT NULL)"
