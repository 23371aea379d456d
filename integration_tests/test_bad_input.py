"""Bad input: each a 4xx problem with a code from the contract, and nothing written."""

from __future__ import annotations

import httpx
import pytest

LINES_OK = [
    {"account": "bad-a", "currency": "USD", "amount": "-1"},
    {"account": "bad-b", "currency": "USD", "amount": "1"},
]


def line(account: str = "bad-a", currency: str = "USD", amount: object = "1") -> dict:
    return {"account": account, "currency": currency, "amount": amount}


RAW_BODIES = [
    (b"", "invalid_request"),
    (b"{", "invalid_request"),
    (b"[]", "invalid_request"),
    (b"null", "invalid_request"),
    (b'{"id": "x", "lines": [}', "invalid_request"),
    (b'{"lines": [{"account": "a", "currency": "USD", "amount": NaN}]}', "invalid_request"),
    (b'{"lines": [{"account": "a", "currency": "USD", "amount": 1e400},'
     b' {"account": "b", "currency": "USD", "amount": -1e400}]}', "invalid_amount"),
]  # fmt: skip

BODIES = [
    ({"lines": [line(amount=1.5), line("bad-b", amount="-1.5")], "extra": 1}, "invalid_request"),
    ({"lines": [{**line(), "memo": "typo"}, line("bad-b", amount="-1")]}, "invalid_request"),
    ({"lines": "nope"}, "invalid_request"),
    ({"lines": []}, "invalid_request"),
    ({}, "invalid_request"),
    ({"lines": [line(amount="1")] * 64 + [line("bad-b", amount="-1")] * 65}, "invalid_request"),
    ({"lines": [line(amount="1"), line("bad-b", amount="-2")]}, "unbalanced"),
    ({"lines": [line(amount="1"), line("bad-b", currency="EUR", amount="-1")]}, "unbalanced"),
    ({"lines": [line(amount="0"), line("bad-b", amount="0")]}, "invalid_request"),
    ({"lines": [line(amount="NaN"), line("bad-b", amount="1")]}, "invalid_amount"),
    ({"lines": [line(amount="Infinity"), line("bad-b", amount="-Infinity")]}, "invalid_amount"),
    ({"lines": [line(amount="abc"), line("bad-b", amount="-1")]}, "invalid_amount"),
    ({"lines": [line(amount=True), line("bad-b", amount="-1")]}, "invalid_amount"),
    ({"lines": [line(amount=None), line("bad-b", amount="-1")]}, "invalid_amount"),
    ({"lines": [line(amount="0.0000000000000000001"),
                line("bad-b", amount="-0.0000000000000000001")]}, "invalid_amount"),
    ({"lines": [line(amount="123456789012345678901"),
                line("bad-b", amount="-123456789012345678901")]}, "invalid_amount"),
    ({"lines": [line(amount="1e400"), line("bad-b", amount="-1e400")]}, "invalid_amount"),
    ({"lines": [line(currency="US D", amount="1"), line("bad-b", currency="US D", amount="-1")]},
     "invalid_request"),
    ({"lines": [line(currency="X" * 33, amount="1"), line("bad-b", currency="X" * 33,
                amount="-1")]}, "invalid_request"),
    ({"lines": [line(account="a b"), line("bad-b", amount="-1")]}, "invalid_request"),
    ({"lines": [line(account="x" * 129), line("bad-b", amount="-1")]}, "invalid_request"),
    ({"id": "bad id", "lines": LINES_OK}, "invalid_request"),
    ({"id": 12, "lines": LINES_OK}, "invalid_request"),
    ({"lines": LINES_OK, "data": [1, 2]}, "invalid_request"),
    ({"lines": LINES_OK, "timestamp": "yesterday"}, "invalid_request"),
    ({"lines": LINES_OK, "expires_at": 5}, "invalid_request"),
    ({"type": "REFUND", "account": "bad-a", "currency": "USD", "amount": "1"}, "invalid_request"),
    ({"type": "CREDIT", "account": "bad-a", "currency": "USD"}, "invalid_request"),
    ({"type": "CREDIT", "account": "bad-a", "currency": "USD", "amount": "1",
      "lines": LINES_OK}, "invalid_request"),
    ({"type": "CREDIT", "account": "bad-a", "currency": "USD", "amount": "1",
      "counterparty": "bad-a"}, "invalid_request"),
    ({"account": "bad-a", "currency": "USD", "amount": "1"}, "invalid_request"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "code"), RAW_BODIES)
@pytest.mark.parametrize("route", ["/v1/transactions", "/v1/transactions/immediate"])
async def test_malformed_json(api: httpx.AsyncClient, route: str, raw: bytes, code: str):
    response = await api.post(route, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("body", "code"), BODIES)
async def test_bad_transaction_bodies(api: httpx.AsyncClient, body: dict, code: str):
    response = await api.post("/v1/transactions/immediate", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code, response.text


async def test_nothing_written_by_bad_input(api: httpx.AsyncClient, uid):
    account, tid = uid("ghost"), uid("t")
    response = await api.post("/v1/transactions", json={
        "id": tid, "lines": [line(account, amount="1"), line("bad-b", amount="-2")]
    })  # fmt: skip
    assert response.json()["code"] == "unbalanced"
    assert (await api.get(f"/v1/accounts/{account}")).status_code == 404
    assert (await api.get(f"/v1/transactions/{tid}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"id": "has space"}, "invalid_request"),
        ({"id": "x" * 129}, "invalid_request"),
        ({"balance_rule": "positive"}, "invalid_request"),
        ({"data": "text"}, "invalid_request"),
        ({"id": "ok", "color": "red"}, "invalid_request"),
    ],
)
async def test_bad_account_bodies(api: httpx.AsyncClient, body: dict, code: str):
    response = await api.post("/v1/accounts", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


async def test_oversized_body_is_413(api: httpx.AsyncClient):
    big = b'{"data": {"x": "' + b"a" * (1024 * 1024 + 10) + b'"}}'
    response = await api.post(
        "/v1/accounts", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    keyed = await api.post(
        "/v1/accounts",
        content=big,
        headers={"content-type": "application/json", "Idempotency-Key": "big-body"},
    )
    assert keyed.status_code == 413
    assert keyed.json()["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "query",
    ["at=yesterday", "currency=US%20D", "limit=0", "limit=1001", "limit=x", "after=%%%"],
)
async def test_bad_query_parameters(api: httpx.AsyncClient, uid, fund, query: str):
    account = uid("q")
    await fund(account, "1")
    path = "balances" if query.startswith("at") else "entries"
    response = await api.get(f"/v1/accounts/{account}/{path}?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"
