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


async def test_entries_at_one_instant_page_by_currency(api: httpx.AsyncClient, uid, fund):
    """A transaction's entries share its instant: the page orders them by currency, and a
    cursor in the middle of them goes on with the next currency, not the next instant."""
    alice = uid("alice")
    await fund(alice, "1", "EUR")
    currencies = ["USD", "BTC", "EUR", "CHF"]
    lines = [{"account": alice, "currency": c, "amount": str(i + 1)}
             for i, c in enumerate(currencies)]  # fmt: skip
    lines += [{"account": "@world", "currency": c, "amount": f"-{i + 1}"}
              for i, c in enumerate(currencies)]  # fmt: skip
    made = await api.post("/v1/transactions/immediate", json={"lines": lines})
    assert made.status_code == 201, made.text
    await fund(alice, "7", "BTC")
    seen, after = [], None
    while True:
        params = {"limit": "1"} | ({"after": after} if after else {})
        page = (await api.get(f"/v1/accounts/{alice}/entries", params=params)).json()
        seen += page["items"]
        after = page["next"]
        if after is None:
            break
    assert [(e["currency"], e["amount"], e["seq"]) for e in seen] == [
        ("EUR", "1", 1),
        ("BTC", "2", 1), ("CHF", "4", 1), ("EUR", "3", 2), ("USD", "1", 1),
        ("BTC", "7", 2),
    ]  # fmt: skip
    assert len({e["timestamp"] for e in seen[1:5]}) == 1


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
        "UPDATE events SET type = 'x'",
        "DELETE FROM events",
    ],
)
async def test_journal_is_append_only_in_the_database(
    backends: Backends, api: httpx.AsyncClient, uid, fund, statement: str
):
    await fund(uid("guarded"), "1")
    await refused_as_append_only(backends.database_url, statement)


async def refused_as_append_only(database_url: str, statement: str) -> None:
    """`statement`, sent straight to PostgreSQL, is refused by an append-only trigger."""
    connection = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute(statement)
    finally:
        await connection.close()


async def test_reads_answer_alike_whoever_parses_the_query(api: httpx.AsyncClient, uid, fund):
    """Plain reads are answered by `FastPath`; a query string with anything to decode or
    any other parameter goes to the route handler. Both answer the same."""
    alice, nobody, tid = uid("alice"), uid("nobody"), uid("t")
    await fund(alice, "5")
    await fund(alice, "7", "EUR")
    credit = {"id": tid, "type": "CREDIT", "account": alice, "currency": "USD", "amount": "1"}
    assert (await api.post("/v1/transactions/immediate", json=credit)).status_code == 201
    pairs = [
        (f"/v1/transactions/{tid}", f"/v1/transactions/{tid}?x=1"),
        (f"/v1/transactions/{nobody}", f"/v1/transactions/{nobody}?x=1"),
        (f"/v1/accounts/{alice}", f"/v1/accounts/{alice}?limit=5"),
        (
            f"/v1/accounts/{alice}/balances?at=2999-01-01T00:00:00Z&currency=EUR",
            f"/v1/accounts/{alice}/balances?at=2999-01-01T00%3A00%3A00Z&currency=EUR",
        ),
        (f"/v1/accounts/{alice}/balances?at=nope", f"/v1/accounts/{alice}/balances?at=nop%65"),
        (
            f"/v1/accounts/{alice}/balances?currency=u$d",
            f"/v1/accounts/{alice}/balances?currency=u%24d",
        ),
        (f"/v1/accounts/{nobody}/balances", f"/v1/accounts/{nobody}/balances?limit=1"),
        (f"/v1/accounts/{nobody}", f"/v1/accounts/{nobody}?limit=1"),
    ]
    statuses = []
    for plain, parsed in pairs:
        fast, handled = await api.get(plain), await api.get(parsed)
        assert fast.status_code == handled.status_code, (plain, fast.text, handled.text)
        assert fast.headers["content-type"] == handled.headers["content-type"], plain
        if fast.status_code == 200:
            assert fast.json() == handled.json(), plain
        else:
            assert fast.json()["code"] == handled.json()["code"], plain
        statuses.append(fast.status_code)
    assert statuses == [200, 404, 200, 200, 400, 400, 404, 404]
    balances = (await api.get(pairs[3][0])).json()
    assert balances["balances"] == {
        "EUR": {"posted": "7", "pending_in": "0", "pending_out": "0", "available": "7"}
    }
