"""The append-only journal: paging, balances after each entry, the database guard."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from integration_tests.server import Backends


async def test_entries_page_oldest_first_across_currencies(api: httpx.AsyncClient, uid, fund):
    alice = uid("alice")
    for i, currency in enumerate(["USD", "EUR", "USD", "BTC", "EUR"]):
        await fund(alice, str(i + 1), currency)
    seen, after = [], None
    while True:
        params = {"limit": "2"} | ({"after": after} if after else {})
        page = (await api.get(f"/v1/accounts/{alice}/entries", params=params)).json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        after = page["next"]
        if after is None:
            break
    assert [(e["currency"], e["amount"], e["seq"]) for e in seen] == [
        ("USD", "1", 1), ("EUR", "2", 1), ("USD", "3", 2), ("BTC", "4", 1), ("EUR", "5", 2),
    ]  # fmt: skip
    assert [e["posted"] for e in seen] == ["1", "2", "4", "4", "7"]
    assert all(e["kind"] == "post" for e in seen)
    stamps = [e["timestamp"] for e in seen]
    assert stamps == sorted(stamps)
    usd = (await api.get(f"/v1/accounts/{alice}/entries?currency=USD")).json()
    assert [e["amount"] for e in usd["items"]] == ["1", "3"]
    assert usd["next"] is None


async def test_entries_of_last_page_has_null_next(api: httpx.AsyncClient, uid, fund):
    alice = uid("alice")
    await fund(alice, "1")
    await fund(alice, "1")
    page = (await api.get(f"/v1/accounts/{alice}/entries?limit=2")).json()
    assert len(page["items"]) == 2
    assert page["next"] is None


async def test_balances_at_now_equal_current(api: httpx.AsyncClient, uid, fund):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    await api.post("/v1/transactions", json={"lines": [
        {"account": alice, "currency": "USD", "amount": "-4"},
        {"account": bob, "currency": "USD", "amount": "4"},
    ]})  # fmt: skip
    now = (await api.get(f"/v1/accounts/{alice}/balances")).json()
    current = (await api.get(f"/v1/accounts/{alice}")).json()
    assert now["balances"] == current["balances"]
    assert now["balances"]["USD"] == {
        "posted": "10", "pending_in": "0", "pending_out": "4", "available": "6",
    }  # fmt: skip
    only = (await api.get(f"/v1/accounts/{alice}/balances?currency=EUR")).json()
    assert only["balances"] == {}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET amount = 0",
        "DELETE FROM entries",
        "TRUNCATE entries",
        "UPDATE transaction_events SET status = 'X'",
        "DELETE FROM transaction_events",
    ],
)
async def test_journal_is_append_only_in_the_database(
    backends: Backends, api: httpx.AsyncClient, uid, fund, statement: str
):
    await fund(uid("guarded"), "1")
    connection = await asyncpg.connect(backends.database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute(statement)
    finally:
        await connection.close()
