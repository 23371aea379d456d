"""`make test-faults`: what a fault campaign does to the real service, kept as tests.

The whole service is killed with SIGKILL and restarted under load, then PostgreSQL is;
Redis is stopped and comes back empty. Every unknown outcome is retried with the same
request until it answers, and then every transaction's state, every balance, every
journal and balances at past instants must equal the model built from the answers.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fault_tests.campaign import Ledger, Servers, Target, client, fund, until_answered, verify
from integration_tests.server import Backends, Service

CLIENTS = 24
LOAD_S = 24.0
KILLS = 4


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Servers, Backends]]:
    started = Servers(tmp_path_factory.mktemp("faults"))
    try:
        yield started, started.backends()
    finally:
        started.stop()


@pytest.fixture
async def target(servers: tuple[Servers, Backends]) -> AsyncIterator[Target]:
    _, backends = servers
    # Holds of the campaign never expire; a small write queue is not what is tested here.
    started = await asyncio.to_thread(Service.start, backends, "faults-service")
    target = Target(started)
    yield target
    target.service.stop()


async def load(target: Target, ledger: Ledger, fault: object) -> None:
    """CLIENTS clients for LOAD_S seconds while `fault` (a coroutine) runs."""
    await fund(target, ledger)
    until = time.monotonic() + LOAD_S
    clients = [client(target, ledger, f"c{i}", seed=i, until=until) for i in range(CLIENTS)]
    await asyncio.gather(*clients, fault)  # type: ignore[arg-type]


async def test_service_killed_under_load(target: Target, servers):
    _, backends = servers
    ledger = Ledger("svc")

    async def kill_and_restart() -> None:
        for _ in range(KILLS):
            await asyncio.sleep(LOAD_S / (KILLS + 1))
            await asyncio.to_thread(target.service.kill)
            target.service = await asyncio.to_thread(Service.start, backends, "faults-service")

    await load(target, ledger, kill_and_restart())
    await verify(target, ledger)
    assert ledger.answers > 200
    print(f"\nservice killed {KILLS}x: {ledger.answers} answers, {ledger.retries} retries")


async def test_postgres_killed_under_load(target: Target, servers):
    campaign, _ = servers
    ledger = Ledger("pg")

    async def kill_and_restart() -> None:
        for _ in range(3):
            await asyncio.sleep(LOAD_S / 4)
            await asyncio.to_thread(campaign.kill_postgres)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(campaign.start_postgres)

    await load(target, ledger, kill_and_restart())
    await verify(target, ledger)
    # The database went away under load: some answers were 503s, each resolved by a retry
    # with the same id (whether or not its commit had happened).
    assert ledger.server_errors > 0
    print(f"\nPostgreSQL killed 3x: {ledger.answers} answers, {ledger.server_errors} 503s")


async def test_redis_stopped_then_back_empty(target: Target, servers):
    campaign, _ = servers
    ledger = Ledger("redis")
    await fund(target, ledger)
    account = ledger.accounts[0]
    body = {"id": "redis-keyed", "type": "DEBIT", "account": account, "currency": "USD",
            "amount": "5"}  # fmt: skip
    async with httpx.AsyncClient(base_url=target.url, auth=("abc", "123"), timeout=30) as api:
        first = await api.post(
            "/v1/transactions/immediate", json=body, headers={"Idempotency-Key": "k-1"}
        )
        assert first.status_code == 201, first.text
        assert campaign.stop_valkey is not None
        campaign.stop_valkey()
        refused = await api.post(
            "/v1/transactions/immediate",
            json={**body, "id": "redis-refused"},
            headers={"Idempotency-Key": "k-2"},
        )
        assert refused.status_code == 503
        assert refused.json()["code"] == "idempotency_unavailable"
        assert (await api.get("/v1/transactions/redis-refused")).status_code == 404
        plain = await api.post("/v1/transactions/immediate", json={**body, "id": "redis-plain"})
        assert plain.status_code == 201, plain.text
        # Back, but empty: the key is forgotten, and the transaction id still guards.
        shutil.rmtree(Path(campaign.data / "valkey"))
        campaign.start_valkey()
        again = await api.post(
            "/v1/transactions/immediate", json=body, headers={"Idempotency-Key": "k-1"}
        )
        assert again.status_code == 200, again.text
        assert "Idempotent-Replayed" not in again.headers
        assert again.json()["id"] == "redis-keyed"
        balance = (await api.get(f"/v1/accounts/{account}")).json()["balances"]["USD"]
        assert balance["posted"] == "990"


async def test_a_write_refused_while_the_database_is_down_is_applied_once_by_its_retry(
    target: Target, servers
):
    """With PostgreSQL down a write is `503 unavailable` with `Retry-After`, and its retry
    with the same id once the database is back is applied exactly once. (A 503 that comes
    after the commit was sent, an unknown outcome, is the campaign's case: it kills
    PostgreSQL under load and retries every such answer with the same request.)"""
    campaign, _ = servers
    ledger = Ledger("unknown")
    await fund(target, ledger)
    account, other = ledger.accounts[:2]
    await asyncio.to_thread(campaign.kill_postgres)
    body = {"id": "unknown-1", "lines": [
        {"account": account, "currency": "USD", "amount": "-3"},
        {"account": other, "currency": "USD", "amount": "3"}]}  # fmt: skip
    async with httpx.AsyncClient(base_url=target.url, auth=("abc", "123"), timeout=30) as api:
        down = await api.post("/v1/transactions/immediate", json=body)
        assert down.status_code == 503
        assert down.json()["code"] == "unavailable"
        assert down.headers["Retry-After"] == "1"
    await asyncio.to_thread(campaign.start_postgres)
    answer = await until_answered(target, ledger, "POST", "/v1/transactions/immediate", body)
    assert answer.status_code in (200, 201)
    ledger.lines["unknown-1"] = body["lines"]
    ledger.status["unknown-1"] = answer.json()["status"]
    await verify(target, ledger)
