"""`FastPath` answers the hottest writes and reads without Litestar's pipeline: the same
questions, asked of a service with it and of one without it (`FAST_PATH=0`), get the
same answers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from integration_tests.conftest import client_of
from integration_tests.server import Backends, Service
from integration_tests.test_keys import ed25519_pair

INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_, OWNER = ed25519_pair()  # one owner's key for both services' answers to be alike


@pytest.fixture(scope="module")
def handlers_only(backends: Backends) -> Iterator[Service]:
    started = Service.start(backends, "handlers-only", FAST_PATH="0", WORKERS="1")
    yield started
    started.stop()


@pytest.fixture(scope="module")
async def slow_api(handlers_only: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(handlers_only) as client:
        yield client


def normalized(value: Any, run: str) -> Any:
    """The answer with this run's ids and every instant made alike."""
    if isinstance(value, dict):
        return {k: normalized(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v, run) for v in value]
    if isinstance(value, str):
        return "<instant>" if INSTANT.match(value) else value.replace(run, "<run>")
    return value


async def conversation(api: httpx.AsyncClient, run: str) -> list[tuple[int, str, Any]]:
    """The same writes and reads, named after `run`; every answer in order."""

    def line(account: str, amount: str) -> dict[str, str]:
        return {"account": f"{run}-{account}", "currency": "USD", "amount": amount}

    pay = {"id": f"{run}-pay", "lines": [line("alice", "-4"), line("bob", "4")]}
    asked: list[tuple[str, str, Any]] = [
        ("POST", "/v1/transactions/immediate",
         {"id": f"{run}-fund", "type": "CREDIT", "account": f"{run}-alice", "currency": "USD",
          "amount": "10"}),
        ("POST", "/v1/transactions", pay),
        ("POST", "/v1/transactions", pay),  # the same again
        ("POST", "/v1/transactions", {**pay, "data": {"other": True}}),  # another body
        ("PUT", f"/v1/transactions/{run}-pay", None),
        ("PUT", f"/v1/transactions/{run}-pay", None),  # already done
        ("PUT", f"/v1/transactions/{run}-nobody", None),
        ("POST", "/v1/transactions/immediate",
         {"id": f"{run}-broke", "lines": [line("bob", "-100"), line("alice", "100")]}),
        ("PUT", f"/v1/transactions/{run}-broke", None),  # FAILED: invalid_state
        ("POST", "/v1/transactions/immediate", {"id": f"{run}-typo", "lnes": []}),
        ("POST", "/v1/transactions", b"{not json"),
        ("POST", "/v1/transactions/immediate",
         {"id": f"{run}-x", "lines": [line("alice", "-1"), line("bob", "2")]}),
        ("POST", "/v1/accounts",
         {"id": f"{run}-owned", "keys": [{"id": "k1", "alg": "ed25519",
                                          "public_key": OWNER}]}),
        ("POST", "/v1/transactions/immediate",
         {"id": f"{run}-unsigned", "type": "DEBIT", "account": f"{run}-owned",
          "currency": "USD", "amount": "1"}),
        ("GET", f"/v1/transactions/{run}-pay", None),
        ("GET", f"/v1/accounts/{run}-alice", None),
        ("GET", f"/v1/accounts/{run}-alice/balances?currency=USD", None),
    ]  # fmt: skip
    answers = []
    for method, path, body in asked:
        if isinstance(body, bytes):
            response = await api.request(method, path, content=body,
                                         headers={"content-type": "application/json"})  # fmt: skip
        else:
            response = await api.request(method, path, json=body)
        answers.append((response.status_code, response.headers["content-type"],
                        normalized(response.json(), run)))  # fmt: skip
    return answers


async def test_writes_and_reads_answer_alike_with_and_without_fastpath(
    api: httpx.AsyncClient, slow_api: httpx.AsyncClient
) -> None:
    fast = await conversation(api, f"f{uuid.uuid4().hex[:8]}")
    slow = await conversation(slow_api, f"s{uuid.uuid4().hex[:8]}")
    for i, (one, other) in enumerate(zip(fast, slow, strict=True)):
        assert one[:2] == other[:2], (i, one, other)
        if one[0] < 300:
            assert one[2] == other[2], (i, one, other)
        else:
            assert one[2]["code"] == other[2]["code"], (i, one, other)
            assert one[2].get("errors") == other[2].get("errors"), (i, one, other)
    assert [status for status, _, _ in fast] == [
        201,
        201,
        200,
        409,
        200,
        200,
        404,
        422,
        409,
        400,
        400,
        400,
        201,
        403,
        200,
        200,
        200,
    ]
