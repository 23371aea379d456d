"""Bad input: each a 4xx problem with a code from the contract, and nothing written."""

from __future__ import annotations

from decimal import Decimal

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


@pytest.mark.parametrize(
    "amount", ["1_0", "\uff11\uff10", "\u0661\u0660", " 1", "1 ", "1e1", "0x1"]
)
@pytest.mark.parametrize("route", ["/v1/transactions", "/v1/transactions/immediate"])
async def test_amounts_are_plain_ascii(api: httpx.AsyncClient, uid, route: str, amount: str):
    """`Decimal()` reads all of these; an amount is ASCII digits, a sign, one point."""
    account = uid("lenient")
    for body in (
        {"type": "CREDIT", "account": account, "currency": "USD", "amount": amount},
        {"lines": [line(account, amount=amount), line("bad-b", amount="-10")]},
    ):
        response = await api.post(route, json=body)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_amount"
    assert (await api.get(f"/v1/accounts/{account}")).status_code == 404


async def test_a_json_number_is_read_from_its_exact_text(api: httpx.AsyncClient, uid, balance):
    account = uid("exact")
    raw = (
        b'{"type": "CREDIT", "account": "' + account.encode() + b'", "currency": "USD",'
        b' "amount": 12345678901234567890.123456789012345678}'
    )
    response = await api.post(
        "/v1/transactions/immediate", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert (await balance(account))["posted"] == Decimal("12345678901234567890.123456789012345678")


def nested(depth: int) -> str:
    """`depth` levels of JSON lists around a number."""
    return "[" * depth + "1" + "]" * depth


async def test_nul_characters_are_400_and_write_nothing(api: httpx.AsyncClient, uid, fund):
    account, tid = uid("nul"), uid("nul-t")
    await fund(account, "5")
    created = await api.post(
        "/v1/transactions",
        json={"id": tid, "lines": [line(account, amount="-1"), line(uid("to"), amount="1")],
              "data": {"note": "a\u0000b"}},
    )  # fmt: skip
    assert created.status_code == 400, created.text
    assert created.json()["errors"][0]["path"] == "data.note"
    assert (await api.get(f"/v1/transactions/{tid}")).status_code == 404
    for method, path, body in [
        ("POST", "/v1/accounts", {"id": uid("a"), "data": {"k\u0000": 1}}),
        ("PUT", f"/v1/accounts/{account}", {"data": {"k": "\u0000"}}),
        ("GET", "/v1/accounts/a%00b", None),
        ("GET", "/v1/accounts/a%00b/balances", None),
        ("GET", "/v1/transactions/a%00b", None),
        ("PUT", "/v1/transactions/a%00b", None),
        ("DELETE", "/v1/transactions/a%00b", None),
        ("PUT", "/v1/transactions/a%00b/data", {"data": {}}),
        ("GET", "/v1/transactions?account=a%00b", None),
        ("POST", "/v1/transactions/_search",
         {"query": {"must": {"fields": [{"id": {"like": "a\u0000%"}}]}}}),
        ("POST", "/v1/accounts/_search", {"query": {"must": {"terms": [{"k": "\u0000"}]}}}),
    ]:  # fmt: skip
        response = await api.request(method, path, json=body)
        assert response.status_code == 400, (method, path, response.text)
    assert (await api.get(f"/v1/accounts/{account}")).json()["data"] == {}


async def test_deep_json_is_400_never_a_500(api: httpx.AsyncClient, uid):
    deep = nested(10_000)
    tid = uid("deep")
    for path, text in [
        ("/v1/transactions", f'{{"id": "{tid}", "type": "CREDIT", "account": "x",'
         f' "currency": "USD", "amount": "1", "data": {{"k": {deep}}}}}'),
        ("/v1/transactions/immediate", deep),
        ("/v1/transactions/batch", f'{{"transactions": {deep}}}'),
        ("/v1/accounts", f'{{"data": {{"k": {deep}}}}}'),
        ("/v1/transactions/_search", f'{{"query": {{"must": {{"terms": [{{"k": {deep}}}]}}}}}}'),
    ]:  # fmt: skip
        response = await api.post(path, content=text, headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
    assert (await api.get(f"/v1/transactions/{tid}")).status_code == 404


async def test_data_may_nest_64_levels_from_the_body_and_no_more(api: httpx.AsyncClient, uid):
    # The body is level 1 and `data` level 2: 62 lists inside `data.k` reach level 64.
    for depth, status in ((62, 201), (63, 400)):
        text = f'{{"id": "{uid("depth")}", "data": {{"k": {nested(depth)}}}}}'
        response = await api.post(
            "/v1/accounts", content=text, headers={"content-type": "application/json"}
        )
        assert response.status_code == status, (depth, response.text)


async def test_errors_name_the_field_the_client_sent(api: httpx.AsyncClient, uid):
    response = await api.post("/v1/transactions", json={"lines": LINES_OK, "extra": 1})
    assert response.json()["errors"] == [{"path": "extra", "message": "unknown field"}]
    response = await api.post(
        "/v1/transactions", json={"lines": [{**line(), "memo": "typo"}, line("bad-b", amount="-1")]}
    )
    assert response.json()["errors"][0]["path"] == "lines[0].memo"
    shorthand = {"type": "CREDIT", "account": "ok", "currency": "USD", "amount": "1"}
    for field, value in (("account", "a b"), ("counterparty", "c d"), ("currency", "U S")):
        response = await api.post("/v1/transactions", json={**shorthand, field: value})
        assert response.status_code == 400
        assert response.json()["errors"][0]["path"] == field, response.text
    response = await api.post("/v1/transactions", json={**shorthand, "amount": "1_0"})
    assert response.json()["errors"][0]["path"] == "amount"
    response = await api.post("/v1/transactions", json={"lines": [line(), line(amount="x")]})
    assert response.json()["errors"][0]["path"] == "lines[1].amount"


async def test_data_numbers_are_those_every_json_reader_holds_exactly(api: httpx.AsyncClient, uid):
    """Events carrying `data` are hashed over RFC 8785 text, which is I-JSON: an integer
    past 2^53 or a number that is not finite is 400, everywhere `data` goes."""
    account, tid = uid("ijson"), uid("ijson-t")
    credit = {"type": "CREDIT", "account": account, "currency": "USD", "amount": "1"}
    for number in ("9007199254740993", "-9007199254740993", "1e400", "123456789012345678901234",
                   "1e20", "-1.5e300"):  # fmt: skip
        text = f'{{"id": "{tid}", "data": {{"n": [{number}]}}}}'
        for method, path, body in [
            ("POST", "/v1/transactions", text[:-1] + ', "type": "CREDIT", "account": "x",'
             ' "currency": "USD", "amount": "1"}'),
            ("POST", "/v1/accounts", text),
            ("PUT", f"/v1/accounts/{account}", f'{{"data": {{"n": {number}}}}}'),
        ]:  # fmt: skip
            if method == "PUT":
                await api.post("/v1/transactions/immediate", json=credit)
            response = await api.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, (number, path, response.text)
    assert (await api.get(f"/v1/transactions/{tid}")).status_code == 404
    for number in ("9007199254740991", "1.5e15", "-0.0", "1e-300", "0.1"):
        response = await api.post("/v1/accounts", content=f'{{"data": {{"n": {number}}}}}',
                                   headers={"content-type": "application/json"})  # fmt: skip
        assert response.status_code == 201, (number, response.text)
