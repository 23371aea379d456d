"""The fault campaign's parts: servers we may kill, clients that retry, and a model.

Clients send seeded random work (immediate and pending transfers, executes, voids,
reversals, a hot account) and retry every unknown outcome (a 5xx, a lost connection)
with the same request until it answers. Each keeps, per transaction id, the last state
the service told it. The model is built from those answers alone; the checks compare it
with what the service then serves.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from app.embedded import Stop, free_port, migrate, start_postgres, start_valkey
from integration_tests.server import Backends, Service

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS_PER_CAMPAIGN = 8
FUNDING = Decimal(1000)
RETRY_FOR_S = 120.0


class Servers:
    """An embedded PostgreSQL and Valkey of the campaign's own, on fixed ports, so that
    either can be killed and brought back where the service expects it."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.pg_port, self.valkey_port = free_port(), free_port()
        self.stop_pg: Stop | None = None
        self.stop_valkey: Stop | None = None

    def start_postgres(self) -> str:
        url, self.stop_pg = start_postgres(self.data / "pg", self.pg_port)
        return url

    def start_valkey(self) -> str:
        url, self.stop_valkey = start_valkey(self.data / "valkey", self.valkey_port)
        return url

    def kill_postgres(self) -> None:
        """SIGKILL the postmaster: its sessions die with it; the next start recovers."""
        pid = int((self.data / "pg" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        # Our child: reaped by its stopper, or PostgreSQL would see it still running.
        assert self.stop_pg is not None
        self.stop_pg()

    def backends(self) -> Backends:
        url = self.start_postgres()
        redis = self.start_valkey()
        migrate(url)
        return Backends(url, redis)

    def stop(self) -> None:
        for stop in (self.stop_valkey, self.stop_pg):
            if stop is not None:
                stop()


@dataclass
class Target:
    """The service as clients reach it now; it moves to a new port when restarted."""

    service: Service

    @property
    def url(self) -> str:
        return self.service.base_url


@dataclass
class Ledger:
    """What the clients were told: per transaction id, its lines and last status. Its
    accounts are its own: `bank` (rule `any`) funds the others, one of them `hot`."""

    prefix: str
    lines: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    answers: int = 0
    retries: int = 0
    server_errors: int = 0

    @property
    def bank(self) -> str:
        return f"{self.prefix}-bank"

    @property
    def hot(self) -> str:
        return f"{self.prefix}-hot"

    @property
    def accounts(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(ACCOUNTS_PER_CAMPAIGN)]

    @property
    def everyone(self) -> list[str]:
        return [self.bank, self.hot, *self.accounts]

    def expected_balances(self) -> dict[str, dict[str, Decimal]]:
        """posted, pending_in and pending_out per account (USD) from the statuses."""
        balances: dict[str, dict[str, Decimal]] = defaultdict(
            lambda: {"posted": Decimal(0), "pending_in": Decimal(0), "pending_out": Decimal(0)}
        )
        for tid, status in self.status.items():
            for line in self.lines[tid]:
                amount = Decimal(line["amount"])
                row = balances[line["account"]]
                if status in ("COMPLETED", "REVERSED"):
                    row["posted"] += amount
                elif status == "PENDING":
                    row["pending_in" if amount > 0 else "pending_out"] += abs(amount)
            if status == "REVERSED":
                for line in self.lines[tid]:
                    balances[line["account"]]["posted"] -= Decimal(line["amount"])
        return balances


async def until_answered(
    target: Target, ledger: Ledger, method: str, path: str, body: Any = None
) -> httpx.Response:
    """Send, and resend the same request while the outcome is unknown."""
    deadline = time.monotonic() + RETRY_FOR_S
    delay = 0.05
    first = True
    while True:
        if not first:
            ledger.retries += 1
        first = False
        try:
            async with httpx.AsyncClient(base_url=target.url, auth=("abc", "123"),
                                         timeout=30) as client:  # fmt: skip
                response = await client.request(method, path, json=body)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code < 500:
            ledger.answers += 1
            return response
        if response is not None:
            ledger.server_errors += 1
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "unavailable", response.text
            assert "Retry-After" in response.headers
        assert time.monotonic() < deadline, f"{method} {path} never answered"
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def transfer_lines(source: str, target: str, amount: int) -> list[dict[str, str]]:
    return [
        {"account": source, "currency": "USD", "amount": str(-amount)},
        {"account": target, "currency": "USD", "amount": str(amount)},
    ]


async def client(target: Target, ledger: Ledger, name: str, seed: int, until: float) -> None:
    """One client's seeded work until `until`."""
    rng = random.Random(seed)
    n = 0
    completed: list[str] = []
    while time.monotonic() < until:
        n += 1
        tid = f"{ledger.prefix}-{name}-{n}"
        source, dest = rng.sample([*ledger.accounts, ledger.hot], 2)
        if rng.random() < 0.3 and ledger.hot not in (source, dest):
            source, dest = (ledger.hot, dest) if rng.random() < 0.5 else (source, ledger.hot)
        amount = rng.randint(1, 60)
        lines = transfer_lines(source, dest, amount)
        ledger.lines[tid] = lines
        kind = rng.random()
        route = "/v1/transactions/immediate" if kind < 0.5 else "/v1/transactions"
        answer = await until_answered(target, ledger, "POST", route, {"id": tid, "lines": lines})
        assert answer.status_code in (200, 201, 422), answer.text
        ledger.status[tid] = answer.json()["status"] if answer.status_code < 300 else "FAILED"
        if answer.status_code == 422:
            assert answer.json()["code"] == "insufficient_funds", answer.text
        if ledger.status[tid] == "PENDING":
            if rng.random() < 0.6:
                done = await until_answered(target, ledger, "PUT", f"/v1/transactions/{tid}")
            else:
                done = await until_answered(target, ledger, "DELETE", f"/v1/transactions/{tid}")
            assert done.status_code == 200, done.text
            ledger.status[tid] = done.json()["status"]
        if ledger.status[tid] == "COMPLETED":
            completed.append(tid)
        if completed and rng.random() < 0.1:
            victim = completed.pop(rng.randrange(len(completed)))
            undo = await until_answered(target, ledger, "DELETE", f"/v1/transactions/{victim}")
            assert undo.status_code in (200, 422), undo.text
            if undo.status_code == 200:
                assert undo.json()["status"] == "REVERSED"
                ledger.status[victim] = "REVERSED"


async def fund(target: Target, ledger: Ledger) -> None:
    bank = await until_answered(
        target, ledger, "POST", "/v1/accounts", {"id": ledger.bank, "balance_rule": "any"}
    )
    assert bank.status_code in (200, 201), bank.text
    for account in [*ledger.accounts, ledger.hot]:
        tid = f"fund-{account}"
        lines = transfer_lines(ledger.bank, account, int(FUNDING))
        ledger.lines[tid] = lines
        answer = await until_answered(
            target, ledger, "POST", "/v1/transactions/immediate", {"id": tid, "lines": lines}
        )
        assert answer.status_code in (200, 201), answer.text
        ledger.status[tid] = "COMPLETED"


async def verify(target: Target, ledger: Ledger) -> None:
    """Every state, balance and journal the service serves equals the model's."""
    async with httpx.AsyncClient(base_url=target.url, auth=("abc", "123"), timeout=60) as api:
        for tid, status in ledger.status.items():
            found = await api.get(f"/v1/transactions/{tid}")
            assert found.status_code == 200, (tid, found.text)
            assert found.json()["status"] == status, (tid, found.json(), status)
            if status == "REVERSED":
                reversal = await api.get(f"/v1/transactions/{tid}.reversal")
                assert reversal.json()["status"] == "COMPLETED"
        expected = ledger.expected_balances()
        instants: list[str] = []
        for account in ledger.everyone:
            got = (await api.get(f"/v1/accounts/{account}")).json()["balances"]["USD"]
            want = expected[account]
            assert {k: Decimal(got[k]) for k in want} == want, (account, got, want)
            assert Decimal(got["available"]) == want["posted"] - want["pending_out"]
            if account != ledger.bank:
                assert Decimal(got["available"]) >= 0, (account, got)
            entries = await journal(api, account)
            previous = {"posted": Decimal(0), "pending_in": Decimal(0), "pending_out": Decimal(0)}
            held: set[str] = set()
            for entry in entries:
                after = {k: Decimal(entry[k]) for k in previous}
                assert after == effect(previous, entry, held), (account, entry)
                previous = after
            assert previous == want, (account, previous, want)
            instants += [e["timestamp"] for e in entries[:: max(1, len(entries) // 4)]]
        for instant in sorted(set(instants))[:: max(1, len(set(instants)) // 6)]:
            total = Decimal(0)
            for account in ledger.everyone:
                at = await api.get(f"/v1/accounts/{account}/balances", params={"at": instant})
                total += Decimal(at.json()["balances"].get("USD", {"posted": "0"})["posted"])
            assert total == 0, instant


def effect(before: dict[str, Decimal], entry: dict[str, Any], held: set[str]) -> dict[str, Decimal]:
    """The balances after one journal entry, from the ones before it; `held` are the
    transactions holding on this account (the post of an execute settles its hold)."""
    amount = Decimal(entry["amount"])
    after = dict(before)
    side = "pending_in" if amount > 0 else "pending_out"
    tid = entry["transaction_id"]
    if entry["kind"] == "hold":
        after[side] += abs(amount)
        held.add(tid)
    elif entry["kind"] == "release":
        after[side] -= abs(amount)
        held.remove(tid)
    elif entry["kind"] == "post":
        after["posted"] += amount
        if tid in held:
            after[side] -= abs(amount)
            held.remove(tid)
    else:
        raise AssertionError(entry)
    return after


async def journal(api: httpx.AsyncClient, account: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = None
    while True:
        params = {"limit": "1000", **({"after": after} if after else {})}
        page = (await api.get(f"/v1/accounts/{account}/entries", params=params)).json()
        entries += page["items"]
        after = page["next"]
        if after is None:
            return entries
