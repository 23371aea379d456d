"""The `Idempotency-Key` middleware: every row of the contract's table."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from integration_tests.server import Backends, Service


def debit(account: str, amount: str = "1") -> dict:
    return {"type": "DEBIT", "account": account, "currency": "USD", "amount": amount}


async def test_replay_returns_stored_answer(api: httpx.AsyncClient, uid, fund, balance):
    alice = uid("alice")
    await fund(alice, "10")
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = await api.post("/v1/transactions/immediate", json=debit(alice), headers=headers)
    second = await api.post("/v1/transactions/immediate", json=debit(alice), headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert (await balance(alice))["posted"] == 9


async def test_replay_of_a_4xx(api: httpx.AsyncClient, uid):
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    body = debit(uid("empty"), "5")
    first = await api.post("/v1/transactions/immediate", json=body, headers=headers)
    second = await api.post("/v1/transactions/immediate", json=body, headers=headers)
    assert first.status_code == second.status_code == 422
    assert second.json() == first.json()
    assert second.headers["content-type"].startswith("application/problem+json")
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_same_key_other_body_is_422(api: httpx.AsyncClient, uid, fund):
    alice = uid("alice")
    await fund(alice, "10")
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    await api.post("/v1/transactions/immediate", json=debit(alice, "1"), headers=headers)
    other = await api.post("/v1/transactions/immediate", json=debit(alice, "2"), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    other_path = await api.post("/v1/transactions", json=debit(alice, "1"), headers=headers)
    assert other_path.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_per_tenant(api, other_api, uid, fund, balance):
    alice = uid("alice")
    await fund(alice, "10")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    mine = await api.post("/v1/accounts", json={"id": alice + "x"}, headers=key)
    theirs = await other_api.post("/v1/accounts", json={"id": alice + "x"}, headers=key)
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "é"])
async def test_malformed_key_is_400(api: httpx.AsyncClient, uid, key: str):
    account = uid("never")
    response = await api.post(
        "/v1/accounts", json={"id": account}, headers={"Idempotency-Key": key.encode()}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert (await api.get(f"/v1/accounts/{account}")).status_code == 404


async def test_concurrent_retries_apply_once(api: httpx.AsyncClient, uid, fund, balance):
    alice = uid("alice")
    await fund(alice, "100")
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    responses = await asyncio.gather(*(
        api.post("/v1/transactions/immediate", json=debit(alice, "10"), headers=headers)
        for _ in range(30)
    ))  # fmt: skip
    codes = Counter(r.status_code for r in responses)
    assert codes[201] >= 1
    assert set(codes) <= {201, 409}
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {
        "idempotency_in_flight"
    }
    assert (await balance(alice))["posted"] == 90
    replay = await api.post("/v1/transactions/immediate", json=debit(alice, "10"), headers=headers)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await balance(alice))["posted"] == 90


@pytest.fixture(scope="module")
def service_without_redis(backends: Backends) -> Iterator[Service]:
    from app.embedded import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    # With the rate limit on: when Redis does not answer, it lets requests pass.
    started = Service.start(
        backends, "test-service-no-redis", REDIS_URL=dead, WORKERS="1",
        RATE_LIMIT_PER_S="1", RATE_LIMIT_BURST="1",
    )  # fmt: skip
    yield started
    started.stop()


async def test_redis_unreachable_is_503_and_nothing_processed(
    service_without_redis: Service, api: httpx.AsyncClient, uid
):
    account = uid("never")
    async with httpx.AsyncClient(base_url=service_without_redis.base_url, auth=("abc", "123")) as c:
        response = await c.post(
            "/v1/accounts", json={"id": account}, headers={"Idempotency-Key": "k1"}
        )
        assert response.status_code == 503
        assert response.json()["code"] == "idempotency_unavailable"
        assert response.headers["Retry-After"] == "1"
        ready = await c.get("/ready")
        assert ready.status_code == 503
        assert "redis" in ready.json()["detail"]
        assert "database" not in ready.json()["detail"]
        # Without a key, writes do not need Redis, and the rate limit does not apply.
        for i in range(3):
            plain = await c.post("/v1/accounts", json={"id": f"{account}-plain-{i}"})
            assert plain.status_code == 201
    assert (await api.get(f"/v1/accounts/{account}")).status_code == 404
