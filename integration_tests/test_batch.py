"""`POST /v1/transactions/batch` and `/metrics`."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import httpx


def move(tid: str, source: str, target: str, amount: str) -> dict:
    return {"id": tid, "lines": [
        {"account": source, "currency": "USD", "amount": f"-{amount}"},
        {"account": target, "currency": "USD", "amount": amount},
    ]}  # fmt: skip


async def test_each_item_succeeds_or_fails_alone(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    ok, poor, bad = uid("ok"), uid("poor"), uid("bad")
    unbalanced = move(bad, alice, bob, "1")
    unbalanced["lines"][0]["amount"] = "-2"
    response = await api.post("/v1/transactions/batch", json={
        "mode": "immediate", "atomic": False,
        "transactions": [move(ok, alice, bob, "6"), move(poor, alice, bob, "5"), unbalanced],
    })  # fmt: skip
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": ok, "status": "COMPLETED"},
        {"id": poor, "status": "FAILED", "code": "insufficient_funds"},
        {"id": bad, "status": "FAILED", "code": "unbalanced"},
    ]
    assert (await api.get(f"/v1/transactions/{poor}")).json()["status"] == "FAILED"
    assert (await api.get(f"/v1/transactions/{bad}")).status_code == 404
    assert (await balance(alice))["posted"] == 4
    assert (await balance(bob))["posted"] == 6


async def test_atomic_failure_records_nothing(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    ids = [uid("a"), uid("b"), uid("c")]
    response = await api.post("/v1/transactions/batch", json={
        "mode": "immediate", "atomic": True,
        "transactions": [move(ids[0], alice, bob, "4"), move(ids[1], alice, bob, "7"),
                         move(ids[2], alice, bob, "1")],
    })  # fmt: skip
    assert response.json()["results"] == [
        {"id": ids[0], "status": "FAILED", "code": "batch_failed"},
        {"id": ids[1], "status": "FAILED", "code": "insufficient_funds"},
        {"id": ids[2], "status": "FAILED", "code": "batch_failed"},
    ]
    for tid in ids:
        assert (await api.get(f"/v1/transactions/{tid}")).status_code == 404
    assert await balance(alice) == {
        "posted": 10,
        "pending_in": 0,
        "pending_out": 0,
        "available": 10,
    }
    # Nothing at all is recorded: not even the account the batch would have created.
    assert (await api.get(f"/v1/accounts/{bob}")).status_code == 404
    # The ids stay unused: the same batch, fixed, goes through.
    fixed = await api.post("/v1/transactions/batch", json={
        "mode": "immediate", "atomic": True,
        "transactions": [move(ids[0], alice, bob, "4"), move(ids[1], alice, bob, "5"),
                         move(ids[2], alice, bob, "1")],
    })  # fmt: skip
    assert [r["status"] for r in fixed.json()["results"]] == ["COMPLETED"] * 3
    assert (await balance(alice))["posted"] == 0


async def test_atomic_invalid_item_fails_the_batch(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    good, bad = uid("good"), uid("bad")
    unbalanced = move(bad, alice, bob, "1")
    unbalanced["lines"][1]["amount"] = "2"
    response = await api.post("/v1/transactions/batch", json={
        "mode": "immediate", "atomic": True,
        "transactions": [move(good, alice, bob, "1"), unbalanced],
    })  # fmt: skip
    assert response.json()["results"] == [
        {"id": good, "status": "FAILED", "code": "batch_failed"},
        {"id": bad, "status": "FAILED", "code": "unbalanced"},
    ]
    assert (await api.get(f"/v1/transactions/{good}")).status_code == 404


async def test_pending_mode_holds(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    response = await api.post("/v1/transactions/batch", json={
        "mode": "pending", "transactions": [move(uid("t"), alice, bob, "3") for _ in range(3)]
    })  # fmt: skip
    assert [r["status"] for r in response.json()["results"]] == ["PENDING"] * 3
    assert await balance(alice) == {"posted": 10, "pending_in": 0, "pending_out": 9, "available": 1}


async def test_repeated_ids_in_and_across_batches(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    body = {"mode": "immediate", "transactions": [move(tid, alice, bob, "2")] * 2}
    first = await api.post("/v1/transactions/batch", json=body)
    again = await api.post("/v1/transactions/batch", json=body)
    assert first.json()["results"] == again.json()["results"] == [
        {"id": tid, "status": "COMPLETED"}, {"id": tid, "status": "COMPLETED"},
    ]  # fmt: skip
    conflict = await api.post("/v1/transactions/batch", json={
        "mode": "immediate", "transactions": [move(tid, alice, bob, "3")]})  # fmt: skip
    assert conflict.json()["results"] == [
        {"id": tid, "status": "FAILED", "code": "transaction_exists"}
    ]
    assert (await balance(alice))["posted"] == 8


async def test_8190_transfers_in_one_call(api: httpx.AsyncClient, uid, balance):
    source, targets = uid("source"), [uid(f"t{i}") for i in range(10)]
    await api.post("/v1/accounts", json={"id": source, "balance_rule": "any"})
    items = [
        {"type": "DEBIT", "account": source, "currency": "USD", "amount": "0.01",
         "counterparty": targets[i % 10]}
        for i in range(8190)
    ]  # fmt: skip
    response = await api.post(
        "/v1/transactions/batch", json={"mode": "immediate", "transactions": items}
    )
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert Counter(r["status"] for r in results) == {"COMPLETED": 8190}
    assert len({r["id"] for r in results}) == 8190
    assert (await balance(source))["posted"] == Decimal("-81.9")
    assert (await balance(targets[0]))["posted"] == Decimal("8.19")
    too_many = await api.post(
        "/v1/transactions/batch", json={"mode": "immediate", "transactions": [*items, items[0]]}
    )
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "invalid_request"


async def test_a_batch_written_in_runs_records_what_one_pass_would(
    api: httpx.AsyncClient, uid, fund, balance
):
    """Past 256 items the group commit writes each run's rows while it applies the next
    (app/ledger/commit/): an id repeated hundreds of items later is answered from the
    row written ahead, a hold created early is executed by a later batch alone, and the
    audit finds the journal, the rows and the log in agreement."""
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "550")
    items = [move(uid(f"m{i}"), alice, bob, "1") for i in range(600)]
    items[590] = dict(items[10])  # the same request again
    items[595] = move(items[20]["id"], alice, bob, "2")  # the same id, another body
    response = await api.post("/v1/transactions/batch", json={"mode": "immediate",
                                                              "transactions": items})  # fmt: skip
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert results[590] == {"id": items[10]["id"], "status": "COMPLETED"}
    assert results[595] == {"id": items[20]["id"], "status": "FAILED",
                            "code": "transaction_exists"}  # fmt: skip
    # 598 new documents, 550 of them paid for: the last 48 find alice empty.
    assert Counter(r.get("code") for r in results) == {
        None: 551, "insufficient_funds": 48, "transaction_exists": 1,
    }  # fmt: skip
    assert (await balance(alice))["posted"] == 0
    assert (await balance(bob))["posted"] == 550
    journal = (await api.get(f"/v1/accounts/{bob}/entries", params={"limit": 1000})).json()
    assert [e["posted"] for e in journal["items"]] == [str(n) for n in range(1, 551)]
    report = (await api.post("/v1/verify")).json()
    assert report["ok"] is True, report


async def test_bad_batch_bodies(api: httpx.AsyncClient):
    for body in ({"transactions": []}, {"mode": "later", "transactions": [{}]},
                 {"transactions": [{}], "extra": 1}, {"atomic": True}):  # fmt: skip
        response = await api.post("/v1/transactions/batch", json=body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "invalid_request"


async def test_concurrent_batches_against_one_balance(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "100")
    calls = [
        api.post(
            "/v1/transactions/batch",
            json={
                "mode": "immediate",
                "transactions": [move(uid("t"), alice, bob, "1") for _ in range(10)],
            },
        )
        for _ in range(20)
    ]
    responses = await asyncio.gather(*calls)
    statuses = Counter(r["status"] for resp in responses for r in resp.json()["results"])
    assert statuses == {"COMPLETED": 100, "FAILED": 100}
    assert await balance(alice) == {"posted": 0, "pending_in": 0, "pending_out": 0, "available": 0}
    assert (await balance(bob))["posted"] == 100


def _samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text, by name with its labels."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {name: float(value) for name, _, value in (line.rpartition(" ") for line in lines)}


async def test_metrics(api: httpx.AsyncClient, anonymous: httpx.AsyncClient, uid, fund):
    """Each request below moves the counters by exactly what it is: the service's metrics
    are shared by every test, so only the differences say anything."""
    before = _samples((await anonymous.get("/metrics")).text)
    account = uid("m")
    await fund(account, "1")
    overdraft = {"type": "DEBIT", "account": account, "currency": "USD", "amount": "5"}
    assert (await api.post("/v1/transactions/immediate", json=overdraft)).status_code == 422
    assert (await api.post("/v1/transactions", json=overdraft)).status_code == 422
    assert (await api.put(f"/v1/transactions/{uid('missing')}")).status_code == 404
    response = await anonymous.get("/metrics")
    assert response.status_code == 200
    after = _samples(response.text)

    def moved(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    immediate = 'method="POST",route="/v1/transactions/immediate"'
    assert moved(f'twofold_requests_total{{{immediate},status="201"}}') == 1
    # Refusals are counted with the status they were answered with, by route template.
    assert moved(f'twofold_requests_total{{{immediate},status="422"}}') == 1
    assert moved('twofold_requests_total{method="POST",route="/v1/transactions",status="422"}') == 1
    assert (
        moved('twofold_requests_total{method="PUT",route="/v1/transactions/{rest}",status="404"}')
        == 1
    )
    assert moved(f"twofold_request_duration_seconds_count{{{immediate}}}") == 2
    assert moved('twofold_transactions_total{status="COMPLETED"}') == 1
    assert moved('twofold_transactions_total{status="FAILED"}') == 2
    # Four jobs reached a group commit (the execute of a missing id is looked up there),
    # in one to four of them.
    assert moved("twofold_batch_jobs_sum") == 4
    assert 1 <= moved("twofold_batch_jobs_count") <= 4
    assert moved("twofold_batch_wait_seconds_count") == moved("twofold_batch_jobs_count")
    assert "twofold_db_connections_in_use" in after
