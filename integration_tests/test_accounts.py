"""Accounts over HTTP: explicit create, auto-creation, @world, data, tenants."""

from __future__ import annotations

import httpx


async def test_create_account_with_rule_and_data(api: httpx.AsyncClient, uid) -> None:
    account = uid("acct")
    response = await api.post(
        "/v1/accounts",
        json={"id": account, "balance_rule": "non_positive", "data": {"kind": "revenue"}},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == account
    assert body["balance_rule"] == "non_positive"
    assert body["data"] == {"kind": "revenue"}
    assert body["balances"] == {}
    assert body["created_at"].endswith("Z")


async def test_create_same_body_again_is_200_and_different_is_409(
    api: httpx.AsyncClient, uid
) -> None:
    account = uid("acct")
    body = {"id": account, "balance_rule": "any", "data": {"a": 1}}
    first = await api.post("/v1/accounts", json=body)
    again = await api.post("/v1/accounts", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other_rule = await api.post("/v1/accounts", json={**body, "balance_rule": "non_negative"})
    other_data = await api.post("/v1/accounts", json={**body, "data": {"a": 2}})
    assert other_rule.status_code == other_data.status_code == 409
    assert other_rule.json()["code"] == "account_exists"
    assert other_rule.headers["content-type"].startswith("application/problem+json")


async def test_generated_id_is_uuid7(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/accounts", json={})
    assert response.status_code == 201
    account_id = response.json()["id"]
    assert len(account_id) == 36
    assert account_id[14] == "7"
    assert response.json()["balance_rule"] == "non_negative"


async def test_get_missing_account_is_404(api: httpx.AsyncClient, uid) -> None:
    nobody = uid("nobody")
    for path in ("", "/balances", "/balances?at=2026-01-01T00:00:00Z", "/entries"):
        response = await api.get(f"/v1/accounts/{nobody}{path}")
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
        assert response.json()["detail"] == f"no account {nobody}"


async def test_account_without_entries_has_no_balances(api: httpx.AsyncClient, uid) -> None:
    account = uid("empty")
    assert (await api.post("/v1/accounts", json={"id": account})).status_code == 201
    assert (await api.get(f"/v1/accounts/{account}")).json()["balances"] == {}
    balances = await api.get(f"/v1/accounts/{account}/balances")
    assert balances.status_code == 200
    assert balances.json()["balances"] == {}


async def test_auto_created_on_first_use_with_default_rule(
    api: httpx.AsyncClient, uid, fund
) -> None:
    account = uid("auto")
    await fund(account, "12.50")
    body = (await api.get(f"/v1/accounts/{account}")).json()
    assert body["balance_rule"] == "non_negative"
    assert body["balances"]["USD"] == {
        "posted": "12.5",
        "pending_in": "0",
        "pending_out": "0",
        "available": "12.5",
    }


async def test_world_is_built_in_with_rule_any(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/accounts/@world")
    assert response.status_code == 200
    assert response.json()["balance_rule"] == "any"


async def test_replace_data_keeps_rule(api: httpx.AsyncClient, uid) -> None:
    account = uid("acct")
    await api.post("/v1/accounts", json={"id": account, "balance_rule": "any", "data": {"x": 1}})
    response = await api.put(f"/v1/accounts/{account}", json={"data": {"y": [1, 2]}})
    assert response.status_code == 200
    assert response.json()["data"] == {"y": [1, 2]}
    assert response.json()["balance_rule"] == "any"
    missing = await api.put(f"/v1/accounts/{uid('none')}", json={"data": {}})
    assert missing.status_code == 404
    rule_change = await api.put(
        f"/v1/accounts/{account}", json={"data": {}, "balance_rule": "non_negative"}
    )
    assert rule_change.status_code == 400
    assert rule_change.json()["code"] == "invalid_request"


async def test_ids_with_slashes_and_colons(api: httpx.AsyncClient, uid, fund) -> None:
    account = uid("users/42:wallet")
    await fund(account, "5")
    encoded = account.replace("/", "%2F")
    for path in (f"/v1/accounts/{account}", f"/v1/accounts/{encoded}"):
        response = await api.get(path)
        assert response.status_code == 200, path
        assert response.json()["id"] == account
    balances = await api.get(f"/v1/accounts/{account}/balances")
    assert balances.json()["balances"]["USD"]["posted"] == "5"
    entries = await api.get(f"/v1/accounts/{encoded}/entries")
    assert len(entries.json()["items"]) == 1


async def test_other_tenant_sees_404(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, uid, fund
) -> None:
    account = uid("private")
    await fund(account, "1")
    assert (await other_api.get(f"/v1/accounts/{account}")).status_code == 404
    assert (await other_api.get(f"/v1/accounts/{account}/entries")).status_code == 404
    assert (await other_api.get(f"/v1/accounts/{account}/balances")).status_code == 404
    # The same id in the other tenant is a different account.
    created = await other_api.post("/v1/accounts", json={"id": account, "balance_rule": "any"})
    assert created.status_code == 201
    assert (await api.get(f"/v1/accounts/{account}")).json()["balance_rule"] == "non_negative"
