"""Integrity: POST /v1/verify and `twofold verify` find every change made behind the
service's back (rows edited, deleted, inserted or reordered directly in PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import rfc8785

from integration_tests.conftest import client_of
from integration_tests.server import ROOT, Backends, Service, new_database
from integration_tests.test_events import check_chain, events_after, head


@pytest.fixture(scope="module")
def ledger_url(backends: Backends) -> Iterator[str]:
    """A database of its own: these tests tamper with it."""
    url, drop = new_database(backends.database_url, f"twofold_tamper_{os.getpid()}")
    yield url
    drop()


@pytest.fixture(scope="module")
def tamper_service(backends: Backends, ledger_url: str) -> Iterator[Service]:
    started = Service.start(Backends(ledger_url, backends.redis_url), "tamper-service",
                            WORKERS="1")  # fmt: skip
    yield started
    started.stop()


@pytest.fixture(scope="module")
async def ledger(tamper_service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A ledger with every kind of change, verified clean before each test tampers."""
    async with client_of(tamper_service) as api:
        opening = {"id": "opening", "balance_rule": "any", "data": {"n": 1}}
        assert (await api.post("/v1/accounts", json=opening)).status_code == 201
        for name in ("alice", "bob"):
            credit = {"type": "CREDIT", "account": name, "currency": "USD", "amount": "100",
                      "counterparty": "opening"}  # fmt: skip
            assert (await api.post("/v1/transactions/immediate", json=credit)).status_code == 201
        lines = [{"account": "alice", "currency": "USD", "amount": "-10"},
                 {"account": "bob", "currency": "USD", "amount": "10"}]  # fmt: skip
        move: dict[str, Any] = {"id": "p1", "lines": lines}
        assert (await api.post("/v1/transactions", json=move)).status_code == 201
        assert (await api.put("/v1/transactions/p1")).status_code == 200
        assert (await api.delete("/v1/transactions/p1")).status_code == 200
        move["id"] = "p2"
        assert (await api.post("/v1/transactions", json=move)).status_code == 201
        assert (await api.delete("/v1/transactions/p2")).status_code == 200
        too_much = {"type": "DEBIT", "account": "alice", "currency": "USD", "amount": "1000"}
        assert (await api.post("/v1/transactions/immediate", json=too_much)).status_code == 422
        assert (await api.put("/v1/accounts/bob", json={"data": {"k": "v"}})).status_code == 200
        yield api


async def verify(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.post("/v1/verify")
    assert response.status_code == 200, response.text
    return response.json()


async def tamper(url: str, *statements: str) -> list[Any]:
    """Statements run with triggers off (as a superuser can), returning the last rows."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SET session_replication_role = replica")
        rows: list[Any] = []
        for statement in statements:
            rows = await connection.fetch(statement)
        return rows
    finally:
        await connection.close()


def kinds(report: dict[str, Any]) -> set[str]:
    return {p["kind"] for p in report["problems"]}


async def test_an_untouched_ledger_verifies(ledger: httpx.AsyncClient) -> None:
    report = await verify(ledger)
    assert report["ok"] is True, report["problems"]
    assert report["problems"] == []
    now = await head(ledger)
    assert report["head"] == {"sequence": now["sequence"], "hash": now["hash"]}
    # 3 accounts made (opening, alice and bob by first use) and @world's own.
    assert report["checked"]["accounts"] == 4
    assert report["checked"]["transactions"] == 6  # 2 credits, p1, its reversal, p2, failed
    assert report["checked"]["events"] == now["sequence"]
    # Credits: a post each side; p1: hold, post, the reversal's post; p2: hold, release.
    assert report["checked"]["entries"] == 2 * 2 + (2 + 2 + 2) + (2 + 2)


async def test_an_edited_entry_amount_is_found(ledger: httpx.AsyncClient, ledger_url: str) -> None:
    await tamper(
        ledger_url, "UPDATE entries SET amount = amount + 1 WHERE account = 'bob' AND seq = 1"
    )
    try:
        report = await verify(ledger)
        assert report["ok"] is False
        assert "entry_mismatch" in kinds(report)
        assert any(p["where"] == "entry bob USD 1" for p in report["problems"])
    finally:
        await tamper(
            ledger_url, "UPDATE entries SET amount = amount - 1 WHERE account = 'bob' AND seq = 1"
        )
    assert (await verify(ledger))["ok"] is True


async def test_a_deleted_entry_is_found(ledger: httpx.AsyncClient, ledger_url: str) -> None:
    gone = await tamper(
        ledger_url, "DELETE FROM entries WHERE account = 'alice' AND seq = 2 RETURNING *"
    )
    try:
        report = await verify(ledger)
        assert report["ok"] is False
        assert {"entry_mismatch", "transaction_mismatch"} <= kinds(report)
    finally:
        row = gone[0]
        columns = ", ".join(row.keys())
        connection = await asyncpg.connect(ledger_url)
        try:
            await connection.execute(
                f"INSERT INTO entries ({columns}) VALUES "
                f"({', '.join(f'${i + 1}' for i in range(len(row)))})",
                *row.values(),
            )
        finally:
            await connection.close()
    assert (await verify(ledger))["ok"] is True


async def test_a_forged_transaction_that_sums_to_zero_is_found(
    ledger: httpx.AsyncClient, ledger_url: str
) -> None:
    """Money from alice to bob with its entries and balances all consistent: only the
    log says it never happened."""
    forge = [
        "INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp,"
        " fingerprint) VALUES ('test', 'forged', 'COMPLETED', 'immediate',"
        ' \'[{"account": "alice", "currency": "USD", "amount": "-5"},'
        ' {"account": "bob", "currency": "USD", "amount": "5"}]\', \'{}\', now(), \'\')',
        "INSERT INTO entries (tenant, account, currency, seq, transaction_id, kind, amount,"
        " posted, pending_in, pending_out, timestamp)"
        " SELECT b.tenant, b.account, b.currency, b.version + 1, 'forged', 'post',"
        " CASE b.account WHEN 'alice' THEN -5 ELSE 5 END,"
        " b.posted + CASE b.account WHEN 'alice' THEN -5 ELSE 5 END, b.pending_in,"
        " b.pending_out, clock_timestamp() FROM balances b"
        " WHERE b.tenant = 'test' AND b.account IN ('alice', 'bob')",
        "UPDATE balances SET posted = posted + CASE account WHEN 'alice' THEN -5 ELSE 5 END,"
        " version = version + 1 WHERE tenant = 'test' AND account IN ('alice', 'bob')",
    ]
    await tamper(ledger_url, *forge)
    try:
        report = await verify(ledger)
        assert report["ok"] is False
        assert kinds(report) == {"event_mismatch"}
        assert report["problems"][0]["where"] == "transaction forged"
    finally:
        await tamper(
            ledger_url,
            "DELETE FROM entries WHERE transaction_id = 'forged'",
            "DELETE FROM transactions WHERE id = 'forged'",
            "UPDATE balances SET posted = posted - CASE account WHEN 'alice' THEN -5 ELSE 5 END,"
            " version = version - 1 WHERE tenant = 'test' AND account IN ('alice', 'bob')",
        )
    assert (await verify(ledger))["ok"] is True


async def test_two_swapped_events_are_found(ledger: httpx.AsyncClient, ledger_url: str) -> None:
    swap = (
        "UPDATE events e SET body = o.body, hash = o.hash FROM events o"
        " WHERE e.tenant = 'test' AND o.tenant = 'test'"
        " AND ((e.sequence = 3 AND o.sequence = 4) OR (e.sequence = 4 AND o.sequence = 3))"
    )
    await tamper(ledger_url, swap)
    try:
        report = await verify(ledger)
        assert report["ok"] is False
        assert kinds(report) == {"hash_mismatch"}
        assert {p["where"] for p in report["problems"]} >= {"event 3", "event 4"}
    finally:
        await tamper(ledger_url, swap)
    assert (await verify(ledger))["ok"] is True


def stored_as(events: list[Any], head_hash: str) -> list[str]:
    """The statements that store these events as the tenant's log, and its head's hash."""
    statements = []
    for event in events:
        body = rfc8785.dumps({k: v for k, v in event.items() if k != "hash"}).decode()
        quoted = body.replace("'", "''")
        statements.append(
            f"UPDATE events SET body = '{quoted}', hash = '{event['hash']}'"
            f" WHERE tenant = 'test' AND sequence = {event['sequence']}"
        )
    statements.append(f"UPDATE log_heads SET hash = '{head_hash}' WHERE tenant = 'test'")
    return statements


async def test_a_rewritten_history_is_caught_by_a_head_kept_from_before(
    ledger: httpx.AsyncClient, ledger_url: str
) -> None:
    """An old event's body changed and every later hash recomputed (the head row too):
    the log is consistent again, so only a head kept elsewhere shows the rewrite."""
    kept = await head(ledger)
    before = await events_after(ledger, 0)
    rewritten = [dict(e) for e in before]
    rewritten[1]["at"] = "2020-01-01T00:00:00Z"
    previous = "0" * 64
    for event in rewritten:
        event.pop("hash")
        event["previous_hash"] = previous
        event["hash"] = previous = hashlib.sha256(
            previous.encode() + rfc8785.dumps(event)
        ).hexdigest()
    await tamper(ledger_url, *stored_as(rewritten, previous))
    try:
        assert (await verify(ledger))["ok"] is True  # nothing inside contradicts itself
        after = await events_after(ledger, 0)
        check_chain(after)
        at_kept = after[kept["sequence"] - 1]
        assert at_kept["hash"] != kept["hash"]  # what the kept head reveals
    finally:
        await tamper(ledger_url, *stored_as(before, kept["hash"]))
    assert (await head(ledger))["hash"] == kept["hash"]
    assert (await verify(ledger))["ok"] is True


def twofold_verify(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "verify", *args],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": url, "ENV_FILE": "/dev/null"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_the_command_verifies_every_tenant_and_exits_non_zero_on_a_problem(
    ledger: httpx.AsyncClient, ledger_url: str
) -> None:
    clean = await asyncio.to_thread(twofold_verify, ledger_url)
    assert clean.returncode == 0, clean.stderr
    assert "test" in clean.stdout
    assert "other" in clean.stdout
    await tamper(ledger_url, "UPDATE balances SET posted = posted + 1 WHERE account = 'bob'")
    try:
        broken = await asyncio.to_thread(twofold_verify, ledger_url, "--tenant", "test")
        assert broken.returncode == 1
        assert "entry_mismatch at balance bob USD" in broken.stderr
        assert "sum_not_zero" in broken.stderr
    finally:
        await tamper(ledger_url, "UPDATE balances SET posted = posted - 1 WHERE account = 'bob'")
