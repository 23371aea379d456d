"""A request that died between record and flip leaves a RECORDED row; readers finish it."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx

from integration_tests.server import Backends


async def record_only(backends: Backends, tid: str, lines: list[tuple[str, str, str]],
                      mode: str = "immediate") -> None:  # fmt: skip
    """What step 1 writes, as if the process had crashed right after it."""
    connection = await asyncpg.connect(backends.database_url)
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO transactions (tenant, id, status, mode, lines, data, fingerprint)"
                " VALUES ('test', $1, 'RECORDED', $2, $3::jsonb, '{}', 'crashed')",
                tid, mode, json.dumps([
                    {"account": a, "currency": c, "amount": x} for a, c, x in lines
                ]),
            )  # fmt: skip
            for account, currency, _ in lines:
                await connection.execute(
                    "INSERT INTO accounts (tenant, id, balance_rule) VALUES ('test', $1,"
                    " 'non_negative') ON CONFLICT DO NOTHING", account,
                )  # fmt: skip
                await connection.execute(
                    "INSERT INTO balances (tenant, account, currency) VALUES ('test', $1, $2)"
                    " ON CONFLICT DO NOTHING", account, currency,
                )  # fmt: skip
    finally:
        await connection.close()


async def test_read_carries_a_recorded_transaction_through(
    backends: Backends, api: httpx.AsyncClient, uid, fund, balance
):
    alice, bob, tid = uid("alice"), uid("bob"), uid("crashed")
    await fund(alice, "10")
    await record_only(backends, tid, [(alice, "USD", "-4"), (bob, "USD", "4")])
    responses = await asyncio.gather(*(api.get(f"/v1/transactions/{tid}") for _ in range(10)))
    assert {r.json()["status"] for r in responses} == {"COMPLETED"}
    assert (await balance(alice))["posted"] == 6
    assert (await balance(bob))["posted"] == 4


async def test_recorded_that_cannot_fit_becomes_failed(
    backends: Backends, api: httpx.AsyncClient, uid, balance
):
    alice, bob, tid = uid("alice"), uid("bob"), uid("crashed")
    await record_only(backends, tid, [(alice, "USD", "-4"), (bob, "USD", "4")], mode="pending")
    stored = (await api.get(f"/v1/transactions/{tid}")).json()
    assert stored["status"] == "FAILED"
    assert stored["failure"]["code"] == "insufficient_funds"
    assert (await balance(alice))["pending_out"] == 0
