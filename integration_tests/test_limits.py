"""Limits: a bounded write queue (503 at once) and a per-tenant rate limit (429)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from integration_tests.server import Backends, Service


@pytest.fixture(scope="module")
def small_queue(backends: Backends) -> Iterator[Service]:
    # One process whose batches wait 300 ms for company, with room for one document.
    started = Service.start(
        backends, "test-service-small-queue", WORKERS="1", WRITE_QUEUE_MAX="1",
        BATCH_WAIT_MS="300",
    )  # fmt: skip
    yield started
    started.stop()


@pytest.fixture(scope="module")
def rate_limited(backends: Backends) -> Iterator[Service]:
    started = Service.start(
        backends, "test-service-rate-limited", RATE_LIMIT_PER_S="2", RATE_LIMIT_BURST="4"
    )
    yield started
    started.stop()


async def test_past_the_write_queue_writes_are_refused_at_once(
    small_queue: Service, api: httpx.AsyncClient, uid
):
    ids = [uid("queued") for _ in range(8)]
    account = uid("queue")
    async with httpx.AsyncClient(base_url=small_queue.base_url, auth=("abc", "123")) as client:
        answers = await asyncio.gather(*(
            client.post("/v1/transactions/immediate", json={
                "id": tid, "type": "CREDIT", "account": account, "currency": "USD", "amount": "1",
            })
            for tid in ids
        ))  # fmt: skip
    accepted = [tid for tid, a in zip(ids, answers, strict=True) if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(accepted) >= 1
    assert len(refused) >= 1
    for answer in refused:
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "unavailable"
        assert answer.headers["Retry-After"] == "1"
    # What was refused was never recorded; what was accepted is, exactly once.
    for tid in ids:
        found = await api.get(f"/v1/transactions/{tid}")
        assert found.status_code == (200 if tid in accepted else 404)
    posted = (await api.get(f"/v1/accounts/{account}")).json()["balances"]["USD"]["posted"]
    assert posted == str(len(accepted))


async def test_rate_limit_per_tenant_across_processes(rate_limited: Service):
    async with (
        httpx.AsyncClient(base_url=rate_limited.base_url, auth=("abc", "123")) as test,
        httpx.AsyncClient(base_url=rate_limited.base_url, auth=("xyz", "123")) as other,
    ):
        answers = await asyncio.gather(*(test.get("/v1/accounts/@world") for _ in range(12)))
        codes = [a.status_code for a in answers]
        # A burst of 4, plus what refills at 2 a second while the 12 are answered.
        assert 4 <= codes.count(200) <= 6, codes
        assert set(codes) == {200, 429}
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # Another tenant has its own bucket.
        assert (await other.get("/v1/accounts/@world")).status_code == 200
        await asyncio.sleep(1.2)
        assert (await test.get("/v1/accounts/@world")).status_code == 200
