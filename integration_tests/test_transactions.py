"""Transactions over HTTP: pending, execute, void, reverse, immediate, expiry, failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest


def transfer(tid: str, source: str, target: str, amount: str, currency: str = "USD") -> dict:
    return {
        "id": tid,
        "lines": [
            {"account": source, "currency": currency, "amount": f"-{amount}"},
            {"account": target, "currency": currency, "amount": amount},
        ],
    }


async def test_pending_holds_then_execute_posts(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "100")
    created = await api.post("/v1/transactions", json=transfer(tid, alice, bob, "25.00"))
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "PENDING"
    assert body["lines"] == [
        {"account": alice, "currency": "USD", "amount": "-25"},
        {"account": bob, "currency": "USD", "amount": "25"},
    ]
    assert [e["status"] for e in body["events"]] == ["PENDING"]
    assert await balance(alice) == {
        "posted": Decimal(100), "pending_in": 0, "pending_out": 25, "available": 75,
    }  # fmt: skip
    assert await balance(bob) == {"posted": 0, "pending_in": 25, "pending_out": 0, "available": 0}

    executed = await api.put(f"/v1/transactions/{tid}")
    assert executed.status_code == 200
    assert executed.json()["status"] == "COMPLETED"
    assert [e["status"] for e in executed.json()["events"]] == ["PENDING", "COMPLETED"]
    assert await balance(alice) == {
        "posted": 75,
        "pending_in": 0,
        "pending_out": 0,
        "available": 75,
    }
    assert await balance(bob) == {"posted": 25, "pending_in": 0, "pending_out": 0, "available": 25}

    again = await api.put(f"/v1/transactions/{tid}")
    assert again.status_code == 200
    assert again.json() == executed.json()


async def test_void_releases_holds(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    await api.post("/v1/transactions", json=transfer(tid, alice, bob, "10"))
    voided = await api.delete(f"/v1/transactions/{tid}")
    assert voided.status_code == 200
    assert voided.json()["status"] == "VOIDED"
    assert await balance(alice) == {
        "posted": 10,
        "pending_in": 0,
        "pending_out": 0,
        "available": 10,
    }
    assert await balance(bob) == {"posted": 0, "pending_in": 0, "pending_out": 0, "available": 0}
    again = await api.delete(f"/v1/transactions/{tid}")
    assert again.status_code == 200
    assert again.json()["status"] == "VOIDED"
    execute = await api.put(f"/v1/transactions/{tid}")
    assert execute.status_code == 409
    assert execute.json()["code"] == "invalid_state"


async def test_reverse_records_linked_reversal(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "30")
    await api.post("/v1/transactions/immediate", json=transfer(tid, alice, bob, "30"))
    reversed_ = await api.delete(f"/v1/transactions/{tid}")
    assert reversed_.status_code == 200
    assert reversed_.json()["status"] == "REVERSED"
    assert reversed_.json()["reversal_id"] == f"{tid}.reversal"
    reversal = (await api.get(f"/v1/transactions/{tid}.reversal")).json()
    assert reversal["status"] == "COMPLETED"
    assert reversal["reverses"] == tid
    assert reversal["lines"] == [
        {"account": alice, "currency": "USD", "amount": "30"},
        {"account": bob, "currency": "USD", "amount": "-30"},
    ]
    assert (await balance(alice))["posted"] == 30
    assert (await balance(bob))["posted"] == 0
    again = await api.delete(f"/v1/transactions/{tid}")
    assert again.status_code == 200
    assert again.json()["status"] == "REVERSED"
    execute = await api.put(f"/v1/transactions/{tid}")
    assert execute.status_code == 409
    assert execute.json()["code"] == "invalid_state"


async def test_reversal_that_breaks_a_rule_changes_nothing(
    api: httpx.AsyncClient, uid, fund, balance
):
    alice, bob, carol, tid = uid("alice"), uid("bob"), uid("carol"), uid("t")
    await fund(alice, "20")
    await api.post("/v1/transactions/immediate", json=transfer(tid, alice, bob, "20"))
    spent = await api.post("/v1/transactions/immediate", json=transfer(uid("s"), bob, carol, "15"))
    assert spent.status_code == 201
    refused = await api.delete(f"/v1/transactions/{tid}")
    assert refused.status_code == 422
    assert refused.json()["code"] == "insufficient_funds"
    assert refused.json()["account"] == bob
    assert refused.json()["available"] == "5"
    assert refused.json()["required"] == "20"
    assert (await api.get(f"/v1/transactions/{tid}")).json()["status"] == "COMPLETED"
    assert (await api.get(f"/v1/transactions/{tid}.reversal")).status_code == 404
    assert (await balance(bob))["posted"] == 5


async def test_insufficient_funds_keeps_failed_and_id_is_spent(
    api: httpx.AsyncClient, uid, fund, balance
):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    body = transfer(tid, alice, bob, "25")
    refused = await api.post("/v1/transactions", json=body)
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["code"] == "insufficient_funds"
    assert problem["detail"] == f"{alice} USD: available 10, needs 25"
    assert (problem["account"], problem["currency"]) == (alice, "USD")
    assert (problem["available"], problem["required"]) == ("10", "25")
    stored = (await api.get(f"/v1/transactions/{tid}")).json()
    assert stored["status"] == "FAILED"
    assert stored["failure"] == {
        "code": "insufficient_funds",
        "detail": f"{alice} USD: available 10, needs 25",
        "account": alice,
        "currency": "USD",
        "available": "10",
        "required": "25",
    }
    await fund(alice, "100")
    retry = await api.post("/v1/transactions", json=body)
    assert retry.status_code == 422
    assert retry.json()["code"] == "insufficient_funds"
    assert (await api.put(f"/v1/transactions/{tid}")).json()["code"] == "invalid_state"
    assert (await api.delete(f"/v1/transactions/{tid}")).json()["code"] == "invalid_state"
    assert await balance(alice) == {
        "posted": 110,
        "pending_in": 0,
        "pending_out": 0,
        "available": 110,
    }


async def test_non_positive_rule(api: httpx.AsyncClient, uid, balance):
    revenue, customer = uid("revenue"), uid("customer")
    await api.post("/v1/accounts", json={"id": revenue, "balance_rule": "non_positive"})
    await api.post("/v1/accounts", json={"id": customer, "balance_rule": "any"})
    ok = await api.post(
        "/v1/transactions/immediate", json=transfer(uid("t"), revenue, customer, "40")
    )
    assert ok.status_code == 201
    refused = await api.post("/v1/transactions", json=transfer(uid("t"), customer, revenue, "41"))
    assert refused.status_code == 422
    assert refused.json()["code"] == "balance_rule_violated"
    assert refused.json()["available"] == "40"
    assert refused.json()["required"] == "41"
    exact = await api.post("/v1/transactions", json=transfer(uid("t"), customer, revenue, "40"))
    assert exact.status_code == 201
    assert await balance(revenue) == {
        "posted": -40,
        "pending_in": 40,
        "pending_out": 0,
        "available": -40,
    }


async def test_available_excludes_incoming_pending(api: httpx.AsyncClient, uid, fund):
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    await fund(alice, "50")
    await api.post("/v1/transactions", json=transfer(uid("t"), alice, bob, "50"))
    refused = await api.post("/v1/transactions", json=transfer(uid("t"), bob, carol, "1"))
    assert refused.status_code == 422
    assert refused.json()["available"] == "0"


async def test_shorthand_credit_and_debit(api: httpx.AsyncClient, uid, balance):
    alice, shop = uid("alice"), uid("shop")
    credit = await api.post(
        "/v1/transactions/immediate",
        json={"type": "CREDIT", "account": alice, "currency": "EUR", "amount": "10.5"},
    )
    assert credit.status_code == 201
    assert credit.json()["lines"] == [
        {"account": "@world", "currency": "EUR", "amount": "-10.5"},
        {"account": alice, "currency": "EUR", "amount": "10.5"},
    ]
    debit = await api.post(
        "/v1/transactions/immediate",
        json={"type": "DEBIT", "account": alice, "currency": "EUR", "amount": 3,
              "counterparty": shop},
    )  # fmt: skip
    assert debit.status_code == 201
    assert debit.json()["lines"] == [
        {"account": alice, "currency": "EUR", "amount": "-3"},
        {"account": shop, "currency": "EUR", "amount": "3"},
    ]
    assert (await balance(alice, "EUR"))["posted"] == Decimal("7.5")
    assert (await balance(shop, "EUR"))["posted"] == 3
    for amount in ("0", "-1"):
        bad = await api.post(
            "/v1/transactions",
            json={"type": "CREDIT", "account": alice, "currency": "EUR", "amount": amount},
        )
        assert bad.status_code == 400, amount


async def test_multi_currency_and_repeated_accounts(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10", "USD")
    await fund(bob, "0.5", "BTC")
    swap = await api.post(
        "/v1/transactions/immediate",
        json={"lines": [
            {"account": alice, "currency": "USD", "amount": "-4"},
            {"account": alice, "currency": "USD", "amount": "-6"},
            {"account": bob, "currency": "USD", "amount": "10"},
            {"account": bob, "currency": "BTC", "amount": "-0.000000000000000001"},
            {"account": alice, "currency": "BTC", "amount": "0.000000000000000001"},
        ]},
    )  # fmt: skip
    assert swap.status_code == 201, swap.text
    assert (await balance(alice, "USD"))["posted"] == 0
    assert (await balance(alice, "BTC"))["posted"] == Decimal("1e-18")
    assert (await balance(bob, "BTC"))["posted"] == Decimal("0.499999999999999999")
    entries = (await api.get(f"/v1/accounts/{alice}/entries?currency=USD")).json()["items"]
    assert [(e["seq"], e["amount"], e["posted"]) for e in entries] == [
        (1, "10", "10"), (2, "-4", "6"), (3, "-6", "0"),
    ]  # fmt: skip


async def test_same_id_same_body_is_200_different_body_is_409(api: httpx.AsyncClient, uid, fund):
    alice, bob, tid = uid("alice"), uid("bob"), uid("t")
    await fund(alice, "10")
    body = {**transfer(tid, alice, bob, "1"), "data": {"order": 1}}
    first = await api.post("/v1/transactions", json=body)
    again = await api.post("/v1/transactions", json={**body, "lines": [
        {"account": alice, "currency": "USD", "amount": "-1.00"},
        {"account": bob, "currency": "USD", "amount": 1},
    ]})  # fmt: skip
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    for changed in (
        {**body, "data": {"order": 2}},
        transfer(tid, alice, bob, "2"),
        {**body, "expires_at": "2999-01-01T00:00:00Z"},
    ):
        conflict = await api.post("/v1/transactions", json=changed)
        assert conflict.status_code == 409
        assert conflict.json()["code"] == "transaction_exists"
    other_mode = await api.post("/v1/transactions/immediate", json=body)
    assert other_mode.status_code == 409


async def test_a_refused_reuse_of_an_id_creates_no_account(api: httpx.AsyncClient, uid, fund):
    """A taken id is found before any row is made for the accounts its document names."""
    alice, bob, ghost, tid = uid("alice"), uid("bob"), uid("ghost"), uid("t")
    await fund(alice, "10")
    assert (
        await api.post("/v1/transactions", json=transfer(tid, alice, bob, "1"))
    ).status_code == 201
    conflict = await api.post("/v1/transactions", json=transfer(tid, alice, ghost, "1"))
    assert (conflict.status_code, conflict.json()["code"]) == (409, "transaction_exists")
    assert (await api.get(f"/v1/accounts/{ghost}")).status_code == 404


async def test_expiry_on_access_and_by_sweep(api: httpx.AsyncClient, uid, fund, balance):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    on_access, by_sweep = uid("t1"), uid("t2")
    for tid in (on_access, by_sweep):
        created = await api.post(
            "/v1/transactions", json={**transfer(tid, alice, bob, "5"), "expires_at": soon}
        )
        assert created.status_code == 201
    assert (await balance(alice))["available"] == 0
    await asyncio.sleep(1.2)
    executed = await api.put(f"/v1/transactions/{on_access}")
    assert executed.status_code == 409
    assert executed.json()["code"] == "expired"
    for _ in range(50):
        if (await balance(alice))["available"] == 10:
            break
        await asyncio.sleep(0.1)
    stored = (await api.get(f"/v1/transactions/{by_sweep}")).json()
    assert stored["status"] == "VOIDED"
    assert stored["failure"]["code"] == "expired"
    assert await balance(alice) == {
        "posted": 10,
        "pending_in": 0,
        "pending_out": 0,
        "available": 10,
    }
    assert await balance(bob) == {"posted": 0, "pending_in": 0, "pending_out": 0, "available": 0}
    again = await api.put(f"/v1/transactions/{on_access}")
    assert again.status_code == 409
    assert again.json()["code"] == "expired"


async def test_expires_at_in_the_past_is_refused(api: httpx.AsyncClient, uid):
    body = {**transfer(uid("t"), uid("a"), uid("b"), "1"), "expires_at": "2000-01-01T00:00:00Z"}
    response = await api.post("/v1/transactions", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


async def test_a_future_timestamp_is_refused_and_records_nothing(
    api: httpx.AsyncClient, uid, balance
):
    """A timestamp in the future would stamp every later transaction of its accounts
    after it, and hide them from balances "now" and from searches up to now."""
    account, tid = uid("zed"), uid("future")
    body = {"id": tid, "type": "CREDIT", "account": account, "currency": "USD", "amount": "1"}
    for route in ("/v1/transactions", "/v1/transactions/immediate"):
        response = await api.post(route, json={**body, "timestamp": "2099-01-01T00:00:00Z"})
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_request"
        assert response.json()["errors"][0]["path"] == "timestamp"
    batch = await api.post(
        "/v1/transactions/batch",
        json={"mode": "immediate", "transactions": [{**body, "timestamp": "2099-01-01T00:00:00Z"}]},
    )
    assert batch.json()["results"] == [{"id": tid, "status": "FAILED", "code": "invalid_request"}]
    assert (await api.get(f"/v1/transactions/{tid}")).status_code == 404
    assert (await api.get(f"/v1/accounts/{account}")).status_code == 404
    # Within the skew (5 s by default) a client's clock may run a little ahead.
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    response = await api.post("/v1/transactions/immediate", json={**body, "timestamp": soon})
    assert response.status_code == 201, response.text
    assert (await balance(account))["posted"] == 1


async def test_a_failed_transaction_creates_no_account(api: httpx.AsyncClient, uid):
    """The migration of API.md: a refused back-dated transfer leaves `opening` free for
    the explicit create with rule `any` that the contract recommends."""
    opening, alice, tid = uid("opening"), uid("alice"), uid("migrate")
    failed = await api.post(
        "/v1/transactions/immediate",
        json={**transfer(tid, opening, alice, "100"), "timestamp": "2020-01-01T00:00:00Z"},
    )
    assert failed.status_code == 422
    assert failed.json()["code"] == "insufficient_funds"
    assert (await api.get(f"/v1/transactions/{tid}")).json()["status"] == "FAILED"
    for account in (opening, alice):
        assert (await api.get(f"/v1/accounts/{account}")).status_code == 404
    created = await api.post("/v1/accounts", json={"id": opening, "balance_rule": "any"})
    assert created.status_code == 201, created.text
    retry = await api.post(
        "/v1/transactions/immediate",
        json={
            **transfer(uid("migrate"), opening, alice, "100"),
            "timestamp": "2020-01-01T00:00:00Z",
        },
    )
    assert retry.status_code == 201, retry.text


async def test_an_overflowing_balance_names_no_available_or_required(api: httpx.AsyncClient, uid):
    big = "99999999999999999999"
    account, source = uid("big"), uid("source")
    for name in (account, source):
        await api.post("/v1/accounts", json={"id": name, "balance_rule": "any"})
    credit = {"type": "CREDIT", "account": account, "currency": "USD", "amount": big,
              "counterparty": source}  # fmt: skip
    first = await api.post("/v1/transactions/immediate", json=credit)
    assert first.status_code == 201, first.text
    response = await api.post("/v1/transactions/immediate", json=credit)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert (problem["code"], problem["account"]) == ("invalid_amount", source)
    assert "available" not in problem
    assert "required" not in problem


async def test_back_dated_timestamp_and_out_of_order(api: httpx.AsyncClient, uid, balance):
    opening, alice = uid("opening"), uid("alice")
    await api.post("/v1/accounts", json={"id": opening, "balance_rule": "any"})
    first = await api.post(
        "/v1/transactions/immediate",
        json={**transfer(uid("m1"), opening, alice, "100"), "timestamp": "2020-01-01T00:00:00Z"},
    )
    assert first.status_code == 201
    assert first.json()["timestamp"] == "2020-01-01T00:00:00Z"
    second = await api.post(
        "/v1/transactions/immediate",
        json={**transfer(uid("m2"), alice, opening, "40"), "timestamp": "2021-06-01 12:30:00.000"},
    )
    assert second.status_code == 201
    assert second.json()["timestamp"] == "2021-06-01T12:30:00Z"
    late_id = uid("m3")
    late = await api.post(
        "/v1/transactions/immediate",
        json={**transfer(late_id, opening, alice, "1"), "timestamp": "2020-06-01T00:00:00Z"},
    )
    assert late.status_code == 422
    assert late.json()["code"] == "timestamp_out_of_order"
    assert (await api.get(f"/v1/transactions/{late_id}")).json()["status"] == "FAILED"
    assert (await balance(alice))["posted"] == 60

    async def at(instant: str) -> dict:
        response = await api.get(f"/v1/accounts/{alice}/balances", params={"at": instant})
        assert response.status_code == 200
        return response.json()["balances"]

    assert await at("2019-12-31T23:59:59Z") == {}
    assert (await at("2020-01-01T00:00:00Z"))["USD"]["posted"] == "100"
    assert (await at("2021-06-01T12:29:59Z"))["USD"]["posted"] == "100"
    assert (await at("2021-06-01T12:30:00Z"))["USD"] == {
        "posted": "60", "pending_in": "0", "pending_out": "0", "available": "60",
    }  # fmt: skip


async def test_replace_transaction_data(api: httpx.AsyncClient, uid, fund):
    alice, tid = uid("alice"), uid("t")
    await fund(alice, "5")
    await api.post(
        "/v1/transactions", json={**transfer(tid, alice, uid("b"), "5"), "data": {"a": 1}}
    )
    replaced = await api.put(f"/v1/transactions/{tid}/data", json={"data": {"b": [True, None]}})
    assert replaced.status_code == 200
    assert replaced.json()["data"] == {"b": [True, None]}
    assert replaced.json()["status"] == "PENDING"
    assert (await api.get(f"/v1/transactions/{tid}")).json()["data"] == {"b": [True, None]}
    bad = await api.put(f"/v1/transactions/{tid}/data", json={"data": {}, "lines": []})
    assert bad.status_code == 400
    missing = await api.put(f"/v1/transactions/{uid('none')}/data", json={"data": {}})
    assert missing.status_code == 404


async def test_missing_transaction_is_404_everywhere(api: httpx.AsyncClient, uid):
    tid = uid("missing")
    for response in (
        await api.get(f"/v1/transactions/{tid}"),
        await api.put(f"/v1/transactions/{tid}"),
        await api.delete(f"/v1/transactions/{tid}"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


async def test_other_tenant_cannot_touch_transaction(api, other_api, uid, fund):
    alice, tid = uid("alice"), uid("t")
    await fund(alice, "5")
    await api.post("/v1/transactions", json=transfer(tid, alice, uid("b"), "5"))
    assert (await other_api.get(f"/v1/transactions/{tid}")).status_code == 404
    assert (await other_api.put(f"/v1/transactions/{tid}")).status_code == 404
    assert (await other_api.delete(f"/v1/transactions/{tid}")).status_code == 404
    assert (await api.get(f"/v1/transactions/{tid}")).json()["status"] == "PENDING"


@pytest.mark.parametrize(
    "amount",
    [
        "1",
        "12345678901234567890",
        "0.000000000000000001",
        "12345678901234567890.123456789012345678",
    ],
)
async def test_amount_edges_round_trip(api: httpx.AsyncClient, uid, amount: str):
    source, target = uid("src"), uid("dst")
    await api.post("/v1/accounts", json={"id": source, "balance_rule": "any"})
    response = await api.post(
        "/v1/transactions/immediate", json=transfer(uid("t"), source, target, amount)
    )
    assert response.status_code == 201, response.text
    assert response.json()["lines"][1]["amount"] == amount


@pytest.mark.parametrize("tid", ["immediate", "batch", "_search"])
async def test_an_id_that_names_a_fixed_route_is_a_transaction_like_any(
    api: httpx.AsyncClient, uid, fund, balance, tid: str
):
    alice, bob = uid("alice"), uid("bob")
    await fund(alice, "10")
    assert (
        await api.post("/v1/transactions", json=transfer(tid, alice, bob, "4"))
    ).status_code == 201
    read = await api.get(f"/v1/transactions/{tid}")
    assert (read.status_code, read.json()["status"]) == (200, "PENDING")
    data = await api.put(f"/v1/transactions/{tid}/data", json={"data": {"n": 1}})
    assert (data.status_code, data.json()["data"]) == (200, {"n": 1})
    executed = await api.put(f"/v1/transactions/{tid}")
    assert (executed.status_code, executed.json()["status"]) == (200, "COMPLETED")
    reversed_ = await api.delete(f"/v1/transactions/{tid}")
    assert (reversed_.status_code, reversed_.json()["status"]) == (200, "REVERSED")
    assert (await balance(alice))["posted"] == 10


async def test_an_account_named_like_the_search_route_is_an_account_like_any(
    api: httpx.AsyncClient, fund
):
    await fund("_search", "3")
    read = await api.get("/v1/accounts/_search")
    assert (read.status_code, read.json()["balances"]["USD"]["posted"]) == (200, "3")
    assert (await api.get("/v1/accounts/_search/balances")).status_code == 200
    assert len((await api.get("/v1/accounts/_search/entries")).json()["items"]) == 1
    data = await api.put("/v1/accounts/_search", json={"data": {"n": 1}})
    assert (data.status_code, data.json()["data"]) == (200, {"n": 1})
