"""Concurrency against 2 server processes: exact counts and exact end states."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal

import httpx


async def test_200_debits_of_1_against_100(api: httpx.AsyncClient, uid, fund, balance):
    alice = uid("alice")
    await fund(alice, "100")
    responses = await asyncio.gather(*(
        api.post("/v1/transactions/immediate",
                 json={"type": "DEBIT", "account": alice, "currency": "USD", "amount": "1"})
        for _ in range(200)
    ))  # fmt: skip
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 100, 422: 100}
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"insufficient_funds"}
    assert await balance(alice) == {"posted": 0, "pending_in": 0, "pending_out": 0, "available": 0}


async def test_100_holds_against_50(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "50")
    responses = await asyncio.gather(*(
        api.post("/v1/transactions", json={"lines": [
            {"account": alice, "currency": "USD", "amount": "-1"},
            {"account": bob, "currency": "USD", "amount": "1"},
        ]})
        for _ in range(100)
    ))  # fmt: skip
    assert Counter(r.status_code for r in responses) == {201: 50, 422: 50}
    assert await balance(alice) == {
        "posted": 50,
        "pending_in": 0,
        "pending_out": 50,
        "available": 0,
    }
    assert await balance(bob) == {"posted": 0, "pending_in": 50, "pending_out": 0, "available": 0}
    held = [r.json()["id"] for r in responses if r.status_code == 201]
    executed = await asyncio.gather(*(api.put(f"/v1/transactions/{tid}") for tid in held))
    assert all(r.status_code == 200 for r in executed)
    assert await balance(alice) == {"posted": 0, "pending_in": 0, "pending_out": 0, "available": 0}
    assert await balance(bob) == {"posted": 50, "pending_in": 0, "pending_out": 0, "available": 50}


async def test_25_concurrent_executes_apply_once(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    await api.post("/v1/transactions", json={"id": tid, "lines": [
        {"account": alice, "currency": "USD", "amount": "-7"},
        {"account": bob, "currency": "USD", "amount": "7"},
    ]})  # fmt: skip
    responses = await asyncio.gather(*(api.put(f"/v1/transactions/{tid}") for _ in range(25)))
    assert [r.status_code for r in responses] == [200] * 25
    assert {r.json()["status"] for r in responses} == {"COMPLETED"}
    assert await balance(alice) == {"posted": 3, "pending_in": 0, "pending_out": 0, "available": 3}
    assert await balance(bob) == {"posted": 7, "pending_in": 0, "pending_out": 0, "available": 7}
    entries = (await api.get(f"/v1/accounts/{alice}/entries")).json()["items"]
    assert [e["kind"] for e in entries] == ["post", "hold", "post"]


async def test_25_concurrent_reversals_apply_once(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    await api.post("/v1/transactions/immediate", json={"id": tid, "lines": [
        {"account": alice, "currency": "USD", "amount": "-4"},
        {"account": bob, "currency": "USD", "amount": "4"},
    ]})  # fmt: skip
    responses = await asyncio.gather(*(api.delete(f"/v1/transactions/{tid}") for _ in range(25)))
    assert [r.status_code for r in responses] == [200] * 25
    assert {r.json()["status"] for r in responses} == {"REVERSED"}
    assert (await balance(alice))["posted"] == 10
    assert (await balance(bob))["posted"] == 0
    assert len((await api.get(f"/v1/accounts/{bob}/entries")).json()["items"]) == 2


async def test_concurrent_execute_and_void_one_wins(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    await api.post("/v1/transactions", json={"id": tid, "lines": [
        {"account": alice, "currency": "USD", "amount": "-10"},
        {"account": bob, "currency": "USD", "amount": "10"},
    ]})  # fmt: skip
    calls = [api.put(f"/v1/transactions/{tid}") for _ in range(10)]
    calls += [api.delete(f"/v1/transactions/{tid}") for _ in range(10)]
    await asyncio.gather(*calls)
    final = (await api.get(f"/v1/transactions/{tid}")).json()["status"]
    total = (await balance(alice))["posted"] + (await balance(bob))["posted"]
    assert total == 10
    if final == "VOIDED":
        assert (await balance(alice))["available"] == 10
    else:
        # Executed first, then a DELETE reversed it: the money is back with alice.
        assert final == "REVERSED"
        assert (await balance(alice))["posted"] == 10
    assert (await balance(alice))["pending_out"] == 0


async def test_ring_of_random_transfers_conserves_total(api: httpx.AsyncClient, uid, fund, balance):
    accounts = [uid(f"ring{i}") for i in range(5)]
    for account in accounts:
        await fund(account, "20")
    rng = random.Random(7)

    def body() -> dict:
        source, target = rng.sample(accounts, 2)
        amount = str(rng.randint(1, 900) / 100)
        return {"lines": [
            {"account": source, "currency": "USD", "amount": f"-{amount}"},
            {"account": target, "currency": "USD", "amount": amount},
        ]}  # fmt: skip

    responses = await asyncio.gather(
        *(api.post("/v1/transactions/immediate", json=body()) for _ in range(300))
    )
    assert {r.status_code for r in responses} <= {201, 422}
    assert sum(r.status_code == 201 for r in responses) > 100
    balances = [await balance(account) for account in accounts]
    assert sum(b["posted"] for b in balances) == Decimal(100)
    assert all(b["available"] >= 0 for b in balances)
    for account, b in zip(accounts, balances, strict=True):
        entries = (await api.get(f"/v1/accounts/{account}/entries?limit=1000")).json()["items"]
        assert Decimal(entries[-1]["posted"]) == b["posted"]
        assert sum(Decimal(e["amount"]) for e in entries) == b["posted"]


async def test_opposite_directions_do_not_deadlock(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "1000")
    await fund(bob, "1000")

    def move(source: str, target: str) -> dict:
        return {"lines": [
            {"account": source, "currency": "USD", "amount": "-1"},
            {"account": target, "currency": "USD", "amount": "1"},
        ]}  # fmt: skip

    calls = [api.post("/v1/transactions/immediate", json=move(alice, bob)) for _ in range(60)]
    calls += [api.post("/v1/transactions/immediate", json=move(bob, alice)) for _ in range(40)]
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [201] * 100
    assert (await balance(alice))["posted"] == 980
    assert (await balance(bob))["posted"] == 1020


async def test_concurrent_creates_of_one_id_apply_once(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    body = {"id": tid, "lines": [
        {"account": alice, "currency": "USD", "amount": "-3"},
        {"account": bob, "currency": "USD", "amount": "3"},
    ]}  # fmt: skip
    responses = await asyncio.gather(
        *(api.post("/v1/transactions/immediate", json=body) for _ in range(20))
    )
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert (await balance(alice))["posted"] == 7
    assert (await balance(bob))["posted"] == 3


async def test_failed_atomic_batches_beside_credits_to_the_same_new_account(
    api: httpx.AsyncClient, uid, balance
):
    """Failed atomic batches take away the account they created, while other requests
    in flight create and credit it: it ends existing, with exactly their credits."""
    poor, target = uid("poor"), uid("target")
    doomed = {"mode": "immediate", "atomic": True, "transactions": [
        {"type": "CREDIT", "account": target, "currency": "USD", "amount": "1"},
        {"type": "DEBIT", "account": poor, "currency": "USD", "amount": "1"},
    ]}  # fmt: skip
    credit = {"type": "CREDIT", "account": target, "currency": "USD", "amount": "1"}
    requests = [("batch", doomed)] * 30 + [("immediate", credit)] * 30
    random.shuffle(requests)
    responses = await asyncio.gather(
        *(api.post(f"/v1/transactions/{route}", json=body) for route, body in requests)
    )
    assert Counter(r.status_code for r in responses) == {200: 30, 201: 30}
    for (route, _), response in zip(requests, responses, strict=True):
        if route == "batch":
            codes = [item.get("code") for item in response.json()["results"]]
            assert codes == ["batch_failed", "insufficient_funds"]
    assert (await balance(target))["posted"] == 30
    assert (await api.get(f"/v1/accounts/{poor}")).status_code == 404
