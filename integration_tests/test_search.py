"""Search over HTTP: every operator and clause, the contract's examples, paging, tenants."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest


async def search(api: httpx.AsyncClient, target: str, body: dict, how: str = "post") -> dict:
    if how == "post":
        response = await api.post(f"/v1/{target}/_search", json=body)
    else:
        response = await api.request("GET", f"/v1/{target}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def ids(api: httpx.AsyncClient, target: str, body: dict, how: str = "post") -> list[str]:
    return [item["id"] for item in (await search(api, target, body, how))["items"]]


def scoped(suite: str, must: dict | None = None, should: dict | None = None) -> dict:
    """A query limited to one test's rows by a `suite` term in data."""
    must = dict(must or {})
    must["terms"] = [*must.get("terms", []), {"suite": suite}]
    query: dict[str, Any] = {"must": must}
    if should:
        query["should"] = should
    return {"query": query}


@pytest.fixture
def suite() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def ledger_rows(api: httpx.AsyncClient, suite: str) -> dict[str, str]:
    """Three accounts and four transactions tagged with this suite."""
    names = {n: f"s{suite}-{n}" for n in ("alice", "bob", "carol")}
    datas = {
        "alice": {"suite": suite, "tier": "gold", "age": 9, "months": ["jan", "feb", "mar"],
                  "address": {"city": "Oslo", "zip": "0150"}},
        "bob": {"suite": suite, "tier": "silver", "age": 10, "months": ["jan"], "note": None},
        "carol": {"suite": suite, "tier": "bronze", "age": "ten"},
    }  # fmt: skip
    for key, account in names.items():
        response = await api.post(
            "/v1/accounts", json={"id": account, "balance_rule": "any", "data": datas[key]}
        )
        assert response.status_code == 201
    a, b, c = names["alice"], names["bob"], names["carol"]
    transfers = [
        (f"t{suite}-1", a, b, "USD", "10", {"charge": 1500, "kind": "fee"}),
        (f"t{suite}-2", b, c, "USD", "3", {"charge": 2500, "kind": "refund"}),
        (f"t{suite}-3", c, a, "EUR", "7", {"charge": 4000, "kind": "fee"}),
        (f"t{suite}-4", a, c, "EUR", "1", {"charge": "3000", "kind": "other"}),
    ]
    for tid, source, target, currency, amount, data in transfers:
        route = "/v1/transactions" if tid.endswith("-4") else "/v1/transactions/immediate"
        response = await api.post(route, json={
            "id": tid, "data": {**data, "suite": suite},
            "lines": [{"account": source, "currency": currency, "amount": f"-{amount}"},
                      {"account": target, "currency": currency, "amount": amount}],
        })  # fmt: skip
        assert response.status_code == 201, response.text
    return names


def t(suite: str, *numbers: int) -> list[str]:
    return [f"t{suite}-{n}" for n in numbers]


@pytest.mark.parametrize("how", ["post", "get"])
async def test_transaction_fields(api, ledger_rows, suite, how):
    alice = ledger_rows["alice"]
    cases = [
        ({"fields": [{"account": {"eq": alice}}]}, [1, 3, 4]),
        ({"fields": [{"account": {"ne": alice}}]}, [2]),
        ({"fields": [{"account": {"like": f"s{suite}-b%"}}]}, [1, 2]),
        ({"fields": [{"account": {"notlike": f"s{suite}-b%"}}]}, [3, 4]),
        ({"fields": [{"currency": {"eq": "EUR"}}]}, [3, 4]),
        ({"fields": [{"currency": {"lt": "EUR"}}]}, []),
        ({"fields": [{"currency": {"gt": "EUR"}}]}, [1, 2]),
        ({"fields": [{"status": {"eq": "pending"}}]}, [4]),
        ({"fields": [{"status": {"ne": "PENDING"}}]}, [1, 2, 3]),
        ({"fields": [{"id": {"like": f"t{suite}-_"}}]}, [1, 2, 3, 4]),
        ({"fields": [{"id": {"gte": f"t{suite}-2", "lt": f"t{suite}-4"}}]}, [2, 3]),
        ({"fields": [{"id": {"lte": f"t{suite}-1"}}]}, [1]),
        ({"fields": [{"timestamp": {"gt": "2000-01-01T00:00:00Z"}}]}, [1, 2, 3, 4]),
        ({"fields": [{"created_at": {"lt": "2000-01-01T00:00:00Z"}}]}, []),
    ]
    for must, expected in cases:
        assert await ids(api, "transactions", scoped(suite, must), how) == t(suite, *expected), must


async def test_transaction_terms_and_ranges(api, ledger_rows, suite):
    cases = [
        ({"terms": [{"kind": "fee"}]}, [1, 3]),
        ({"terms": [{"kind": "fee", "charge": 4000}]}, [3]),
        ({"ranges": [{"charge": {"gte": 2000, "lte": 4000}}]}, [2, 3]),
        ({"ranges": [{"charge": {"gt": 1500}}]}, [2, 3]),
        ({"ranges": [{"charge": {"eq": 1500}}]}, [1]),
        ({"ranges": [{"charge": {"eq": "3000"}}]}, [4]),
        ({"ranges": [{"charge": {"ne": 1500}}]}, [2, 3, 4]),
        ({"ranges": [{"kind": {"lt": "other"}}]}, [1, 3]),
        ({"ranges": [{"kind": {"like": "re%"}}]}, [2]),
        ({"ranges": [{"kind": {"notlike": "%e%"}}]}, []),
        ({"ranges": [{"kind": {"in": ["refund", "other"]}}]}, [2, 4]),
        ({"ranges": [{"kind": {"nin": ["refund", "other"]}}]}, [1, 3]),
        ({"ranges": [{"charge": {"in": [1500, 4000]}}]}, [1, 3]),
        ({"ranges": [{"missing": {"is": None}}]}, [1, 2, 3, 4]),
        ({"ranges": [{"charge": {"isnot": None}}]}, [1, 2, 3, 4]),
    ]
    for must, expected in cases:
        assert await ids(api, "transactions", scoped(suite, must)) == t(suite, *expected), must


async def test_numbers_compare_as_numbers_and_strings_as_strings(api, ledger_rows, suite):
    # 9 < 10 as numbers, although "9" > "10" as strings; the string "ten" is not a number.
    by_number = scoped(suite, {"ranges": [{"age": {"lt": 10}}]})
    assert await ids(api, "accounts", by_number) == [ledger_rows["alice"]]
    by_string = scoped(suite, {"ranges": [{"age": {"gt": "t"}}]})
    assert await ids(api, "accounts", by_string) == [ledger_rows["carol"]]
    decimal = scoped(suite, {"ranges": [{"age": {"gt": 9.5}}]})
    assert await ids(api, "accounts", decimal) == [ledger_rows["bob"]]


async def test_terms_contain_arrays_and_nested_subsets(api, ledger_rows, suite):
    alice, bob = ledger_rows["alice"], ledger_rows["bob"]
    both = scoped(suite, {"terms": [{"months": ["jan", "feb"]}]})
    assert await ids(api, "accounts", both) == [alice]
    one = scoped(suite, {"terms": [{"months": ["jan"]}]})
    assert await ids(api, "accounts", one) == [alice, bob]
    nested = scoped(suite, {"terms": [{"address": {"city": "Oslo"}}]})
    assert await ids(api, "accounts", nested) == [alice]
    null = scoped(suite, {"ranges": [{"note": {"is": None}}]})
    assert len(await ids(api, "accounts", null)) == 3
    present = scoped(suite, {"terms": [{"note": None}]})
    assert await ids(api, "accounts", present) == [bob]


async def test_account_fields(api, ledger_rows, suite):
    alice, bob, carol = ledger_rows["alice"], ledger_rows["bob"], ledger_rows["carol"]
    cases = [
        ({"fields": [{"balance.USD": {"gt": 0}}]}, [bob, carol]),
        ({"fields": [{"balance.USD": {"lt": 0}}]}, [alice]),
        ({"fields": [{"balance.USD": {"eq": "3"}}]}, [carol]),
        ({"fields": [{"balance.EUR": {"eq": 0}}]}, [bob]),
        ({"fields": [{"balance.EUR": {"gte": "7"}}]}, [alice]),
        ({"fields": [{"balance.JPY": {"ne": 0}}]}, []),
        ({"fields": [{"balance_rule": {"eq": "any"}}]}, [alice, bob, carol]),
        ({"fields": [{"id": {"like": "%-bob"}}]}, [bob]),
        ({"fields": [{"id": {"notlike": "%-bob"}}]}, [alice, carol]),
        ({"fields": [{"created_at": {"gt": "2000-01-01T00:00:00Z"}}]}, [alice, bob, carol]),
    ]
    for must, expected in cases:
        assert await ids(api, "accounts", scoped(suite, must)) == expected, must


async def test_must_and_should_together(api, ledger_rows, suite):
    query = scoped(
        suite,
        {"terms": [{"kind": "fee"}]},
        {"fields": [{"currency": {"eq": "EUR"}}], "ranges": [{"charge": {"lt": 1000}}]},
    )
    assert await ids(api, "transactions", query) == t(suite, 3)
    only_should = {"query": {"should": {"terms": [{"suite": suite, "kind": "refund"},
                                                  {"suite": suite, "kind": "other"}]}}}  # fmt: skip
    assert await ids(api, "transactions", only_should) == t(suite, 2, 4)


async def test_contract_example(api, suite):
    """API.md's example query, through both the GET and the POST form."""
    matching = f"x{suite}.DEBIT"
    for account, data, usd in [
        (matching, {"status": "completed", "active": True, "charge": 3000}, "5"),
        (f"x{suite}.CREDIT", {"status": "completed", "active": True, "charge": 3000}, "5"),
        (f"y{suite}.DEBIT", {"status": "completed", "active": False, "charge": 3000}, "5"),
        (f"z{suite}.DEBIT", {"status": "completed", "active": True, "charge": 5000}, "5"),
        (f"w{suite}.DEBIT", {"status": "completed", "active": True, "charge": 2000}, "0"),
    ]:
        await api.post("/v1/accounts", json={"id": account, "data": {**data, "suite": suite}})
        if usd != "0":
            credit = {"type": "CREDIT", "account": account, "currency": "USD", "amount": usd}
            await api.post("/v1/transactions/immediate", json=credit)
    body = {"query": {"must":   {"fields": [{"balance.USD": {"gt": 0}}],
                                 "terms":  [{"status": "completed", "active": True},
                                            {"suite": suite}],
                                 "ranges": [{"charge": {"gte": 2000, "lte": 4000}}]},
                      "should": {"fields": [{"id": {"like": "%.DEBIT"}}]}},
            "limit": 100}  # fmt: skip
    for how in ("get", "post"):
        found = await search(api, "accounts", body, how)
        assert [a["id"] for a in found["items"]] == [matching]
        assert found["next"] is None
        account = found["items"][0]
        assert account == (await api.get(f"/v1/accounts/{matching}")).json()


async def test_query_string_shortcuts(api, ledger_rows, suite):
    alice = ledger_rows["alice"]
    response = await api.get(
        "/v1/transactions", params={"account": alice, "currency": "EUR", "status": "completed"}
    )
    assert [x["id"] for x in response.json()["items"]] == t(suite, 3)
    everything = await api.get("/v1/transactions", params={"account": alice})
    first = everything.json()["items"][0]["timestamp"]
    last = everything.json()["items"][-1]["timestamp"]
    window = await api.get("/v1/transactions", params={"account": alice, "from": first, "to": last})
    assert [x["id"] for x in window.json()["items"]] == t(suite, 1, 3)
    # Shortcuts and a body together: both hold.
    combined = await api.request(
        "GET", "/v1/transactions", params={"account": alice},
        json={"query": {"must": {"terms": [{"kind": "fee"}]}}},
    )  # fmt: skip
    assert [x["id"] for x in combined.json()["items"]] == t(suite, 1, 3)
    post = await api.post("/v1/transactions/_search", params={"account": alice, "limit": "1"})
    assert [x["id"] for x in post.json()["items"]] == t(suite, 1)


async def test_items_are_full_transactions(api, ledger_rows, suite):
    found = await search(
        api, "transactions", scoped(suite, {"fields": [{"id": {"eq": t(suite, 4)[0]}}]})
    )
    assert found["items"] == [(await api.get(f"/v1/transactions/{t(suite, 4)[0]}")).json()]


async def test_pages_are_stable_while_rows_are_inserted(api: httpx.AsyncClient, suite):
    account = f"p{suite}"
    await api.post("/v1/accounts", json={"id": account, "balance_rule": "any"})

    async def add(n: int) -> str:
        tid = f"p{suite}-{n:03d}"
        response = await api.post("/v1/transactions/immediate", json={
            "id": tid, "type": "DEBIT", "account": account, "currency": "USD", "amount": "1",
            "data": {"suite": suite}})  # fmt: skip
        assert response.status_code == 201
        return tid

    expected = [await add(n) for n in range(25)]
    seen: list[str] = []
    body: dict[str, Any] = {"query": {"must": {"terms": [{"suite": suite}]}}, "limit": 10}
    n = 25
    while True:
        page = await search(api, "transactions", body)
        seen += [x["id"] for x in page["items"]]
        if page["next"] is None:
            break
        body["after"] = page["next"]
        expected += await asyncio.gather(add(n), add(n + 1))
        n += 2
    assert sorted(seen) == sorted(set(seen))
    assert seen[:25] == expected[:25]
    assert set(seen) == set(expected)
    # The same through the account's postings, and in the same order.
    by_account: list[str] = []
    body = {"query": {"must": {"fields": [{"account": {"eq": account}}]}}, "limit": 7}
    while True:
        page = await search(api, "transactions", body)
        by_account += [x["id"] for x in page["items"]]
        if page["next"] is None:
            break
        body["after"] = page["next"]
    assert by_account == seen
    # The largest page: distinct ids in id order, and a cursor exactly when it is full.
    accounts = await search(api, "accounts", {"limit": 1000})
    ids = [a["id"] for a in accounts["items"]]
    assert ids == sorted(set(ids))
    assert account in ids or ids[-1] < account
    assert (accounts["next"] is None) == (len(ids) < 1000)


async def test_account_pages_follow_id_order(api: httpx.AsyncClient, suite):
    names = [f"q{suite}-{n:02d}" for n in range(7)]
    for name in reversed(names):
        await api.post("/v1/accounts", json={"id": name, "data": {"suite": suite}})
    seen, body = [], {"query": {"must": {"terms": [{"suite": suite}]}}, "limit": 3}
    while True:
        page = await search(api, "accounts", body)
        seen += [x["id"] for x in page["items"]]
        if not page["next"]:
            break
        body["after"] = page["next"]
    assert seen == names


async def test_tenant_isolation(api, other_api, ledger_rows, suite):
    assert await ids(other_api, "transactions", scoped(suite)) == []
    assert await ids(other_api, "accounts", scoped(suite)) == []
    response = await other_api.get("/v1/transactions", params={"account": ledger_rows["alice"]})
    assert response.json()["items"] == []


async def test_cursor_of_another_query_or_tenant_is_invalid(api, other_api, ledger_rows, suite):
    page = await search(api, "transactions", {**scoped(suite), "limit": 1})
    cursor = page["next"]
    assert cursor
    other_query = {**scoped(suite, {"terms": [{"kind": "fee"}]}), "limit": 1, "after": cursor}
    for client, body in ((api, other_query), (other_api, {**scoped(suite), "after": cursor})):
        response = await client.post("/v1/transactions/_search", json=body)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_query"
    accounts = await api.post("/v1/accounts/_search", json={**scoped(suite), "after": cursor})
    assert accounts.status_code == 400


BAD_QUERIES: list[tuple[str, Any]] = [
    ("transactions", {"query": {"must": {"fields": [{"colour": {"eq": "red"}}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"id": {"between": 1}}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"id": {"in": ["a"]}}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"timestamp": {"gt": "yesterday"}}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"timestamp": {"like": "2026%"}}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"id": {"eq": 5}}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"balance.USD": {"gt": 0}}]}}}),
    ("transactions", {"query": {"must": {"fields": {"id": {"eq": "x"}}}}}),
    ("transactions", {"query": {"must": {"fields": [{}]}}}),
    ("transactions", {"query": {"must": {"fields": [{"id": "x"}]}}}),
    ("transactions", {"query": {"must": {"terms": [[1, 2]]}}}),
    ("transactions", {"query": {"must": {"terms": [{}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"between": [1, 2]}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"gt": [1]}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"gt": True}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"is": 5}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"in": []}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"in": [{"a": 1}]}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"charge": {"like": 5}}]}}}),
    ("transactions", {"query": {"must": {"ranges": [{"": {"eq": 5}}]}}}),
    ("transactions", {"query": {"must": {"filters": []}}}),
    ("transactions", {"query": {"must_not": {}}}),
    ("transactions", {"query": []}),
    ("transactions", {"query": {"must": {"fields": [{"status": {"eq": "done"}}]}}, "sort": "id"}),
    ("transactions", {"limit": 0}),
    ("transactions", {"limit": 1001}),
    ("transactions", {"limit": "ten"}),
    ("transactions", {"after": "not-a-cursor!"}),
    ("transactions", {"after": 12}),
    ("transactions", [1, 2]),
    ("accounts", {"query": {"must": {"fields": [{"balance.U S D": {"gt": 0}}]}}}),
    ("accounts", {"query": {"must": {"fields": [{"balance.USD": {"gt": "lots"}}]}}}),
    ("accounts", {"query": {"must": {"fields": [{"balance.USD": {"like": "1%"}}]}}}),
    ("accounts", {"query": {"must": {"fields": [{"account": {"eq": "alice"}}]}}}),
    ("accounts", {"query": {"must": {"fields": [{"status": {"eq": "x"}}]}}}),
]


@pytest.mark.parametrize(("target", "body"), BAD_QUERIES)
@pytest.mark.parametrize("how", ["post", "get"])
async def test_bad_queries_are_400(api: httpx.AsyncClient, target: str, body: Any, how: str):
    if how == "post":
        response = await api.post(f"/v1/{target}/_search", json=body)
    else:
        response = await api.request("GET", f"/v1/{target}", json=body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["code"] == "invalid_query"
    assert problem["detail"]


@pytest.mark.parametrize(
    ("target", "params"),
    [
        ("transactions", {"acount": "x"}),
        ("transactions", {"from": "yesterday"}),
        ("transactions", {"limit": "0"}),
        ("transactions", {"status": "DONE"}),
        ("transactions", {"after": "%%%"}),
        ("accounts", {"account": "x"}),
        ("accounts", {"limit": "5000"}),
    ],
)
async def test_bad_query_strings_are_400(api: httpx.AsyncClient, target: str, params: dict):
    response = await api.get(f"/v1/{target}", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_query"


async def test_malformed_search_bodies_are_400(api: httpx.AsyncClient):
    for raw in (b"{", b"[", b"nul", b'{"query": {"must": {"fields": [1e400]}}}'):
        response = await api.post(
            "/v1/transactions/_search", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, raw
        assert response.json()["code"] == "invalid_query"
