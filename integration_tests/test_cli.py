"""The `twofold` command's jobs around the service: tenants new, export, import (and
resuming it), events tail; `verify` is tested with the tampering in test_integrity.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.embedded import free_port
from app.settings import hash_secret, parse_keys, read_env_file
from integration_tests.server import ROOT, Backends, Service, admin, with_database
from integration_tests.test_keys import ed25519_pair

TX = "/v1/transactions"


def twofold(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, **(env or {})},
                          check=False)  # fmt: skip


def new_tenant(name: str) -> tuple[dict[str, Any], str]:
    made = twofold("tenants", "new", name, "--email", f"{name}@example.com")
    assert made.returncode == 0, made.stderr
    entry = json.loads(made.stdout)
    secret = made.stderr.split("secret (shown once): ")[1].split()[0]
    return entry, secret


@pytest.fixture(scope="module")
def tenants() -> dict[str, tuple[dict[str, Any], str]]:
    run = uuid.uuid4().hex[:8]
    return {role: new_tenant(f"{role}-{run}") for role in ("source", "copy", "resumed")}


@pytest.fixture(scope="module")
def cli_service(backends: Backends, tenants: dict[str, Any]) -> Iterator[Service]:
    """A service whose KEYS has the tenants `twofold tenants new` made, beside .env's."""
    keys = json.loads(read_env_file(ROOT / ".env")["KEYS"])
    keys += [entry for entry, _ in tenants.values()]
    started = Service.start(backends, "cli-service", KEYS=json.dumps(keys), WORKERS="1")
    yield started
    started.stop()


@pytest.fixture(scope="module")
async def clients(
    cli_service: Service, tenants: dict[str, Any]
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    made = {
        role: httpx.AsyncClient(
            base_url=cli_service.base_url, timeout=60, auth=(entry["public-key"], secret)
        )
        for role, (entry, secret) in tenants.items()
    }
    yield made
    for client in made.values():
        await client.aclose()


def api_key(tenants: dict[str, Any], role: str) -> str:
    entry, secret = tenants[role]
    return f"{entry['public-key']}:{secret}"


def test_a_new_tenant_entry_holds_the_hash_of_its_secret(tenants: dict[str, Any]) -> None:
    entry, secret = tenants["source"]
    [parsed] = parse_keys(json.dumps([entry]))
    assert parsed.name == entry["name"]
    assert parsed.secret_key_hash == hash_secret(secret)
    assert secret not in json.dumps(entry)
    assert list(entry) == ["name", "email", "public-key", "secret-key-hash"]
    assert entry["email"] == f"{entry['name']}@example.com"
    bare = twofold("tenants", "new", "no-contact")
    assert json.loads(bare.stdout)["email"] is None


async def test_a_new_tenant_signs_in_with_its_key(clients: dict[str, httpx.AsyncClient]) -> None:
    answer = await clients["source"].get("/v1/accounts/@world")
    assert answer.status_code == 200
    wrong = httpx.AsyncClient(base_url=str(clients["source"].base_url), auth=("nobody", "x"))
    async with wrong:
        assert (await wrong.get("/v1/accounts/@world")).status_code == 401


async def _history(api: httpx.AsyncClient) -> None:
    """Every kind of history: a migration's back-dated opening balances, immediate
    transfers, a hold executed, a hold still open, a void, a failure, a reversal, and an
    owned account paid into."""

    async def send(path: str, body: Any, expect: int = 201, method: str = "POST") -> None:
        answer = await api.request(method, path, json=body)
        assert answer.status_code == expect, answer.text

    opening = {"id": "opening", "balance_rule": "any"}
    await send("/v1/accounts", opening)
    for i, (who, amount) in enumerate((("alice", "100"), ("bob", "50"), ("carol", "7.5"))):
        await send(f"{TX}/immediate", {
            "id": f"open-{who}", "timestamp": f"2026-01-0{i + 1}T00:00:00Z",
            "lines": [{"account": "opening", "currency": "EUR", "amount": f"-{amount}"},
                      {"account": who, "currency": "EUR", "amount": amount}]})  # fmt: skip

    def move(tx: str, source: str, target: str, amount: str) -> dict[str, Any]:
        return {"id": tx, "lines": [
            {"account": source, "currency": "EUR", "amount": f"-{amount}"},
            {"account": target, "currency": "EUR", "amount": amount}]}  # fmt: skip

    await send(f"{TX}/immediate", move("pay-1", "alice", "bob", "10"))
    await send(f"{TX}/immediate", move("pay-2", "bob", "carol", "0.25"))
    await send(TX, move("hold-kept", "alice", "dave", "5"))
    await send(TX, move("hold-done", "carol", "alice", "2"))
    await send(f"{TX}/hold-done", None, 200, "PUT")
    await send(TX, move("hold-void", "bob", "dave", "3"))
    await send(f"{TX}/hold-void", None, 200, "DELETE")
    await send(f"{TX}/immediate", move("too-much", "dave", "alice", "1000"), 422)
    await send(f"{TX}/immediate", move("refund-me", "alice", "erin", "4"))
    await send(f"{TX}/refund-me", None, 200, "DELETE")
    await send(f"{TX}/immediate", {"type": "CREDIT", "account": "erin", "currency": "USD",
                                   "amount": "1", "data": {"note": "ü", "n": [1, 2]}})  # fmt: skip
    _, public_key = ed25519_pair()
    await send("/v1/accounts", {"id": "owned", "keys": [
        {"id": "k1", "alg": "ed25519", "public_key": public_key}]})  # fmt: skip
    await send(f"{TX}/immediate", move("pay-owned", "bob", "owned", "1"))


async def _accounts(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    body: dict[str, Any] = {"limit": 1000}
    while True:
        page = (await api.post("/v1/accounts/_search", json=body)).json()
        found.update({a["id"]: a["balances"] for a in page["items"]})
        if page["next"] is None:
            return found
        body["after"] = page["next"]


async def _journal(api: httpx.AsyncClient, account: str) -> list[dict[str, Any]]:
    answer = await api.get(f"/v1/accounts/{account}/entries", params={"limit": 1000})
    return [{k: v for k, v in e.items() if k != "seq"} for e in answer.json()["items"]]


async def test_export_then_import_gives_the_same_balances_and_journal(
    clients: dict[str, httpx.AsyncClient], tenants: dict[str, Any], backends: Backends,
    cli_service: Service, tmp_path: Path,
) -> None:  # fmt: skip
    source, copy = clients["source"], clients["copy"]
    await _history(source)
    env = {"DATABASE_URL": backends.database_url}
    name = tenants["source"][0]["name"]
    out = tmp_path / "export.jsonl"
    exported = twofold("export", "--tenant", name, "--out", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    transactions = [x["transaction"] for x in lines if "transaction" in x]
    assert len(transactions) == 13
    assert [t["timestamp"] for t in transactions] == sorted(t["timestamp"] for t in transactions)
    entries = sum("entry" in x for x in lines)
    assert sum("account" in x for x in lines) == len(lines) - 13 - entries
    as_csv = twofold("export", "--tenant", name, "--format", "csv", env=env)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = as_csv.stdout.splitlines()
    assert rows[0].startswith("account,currency,seq,transaction_id,kind,amount")
    assert len(rows) - 1 == entries

    imported = twofold("import", str(out), "--url", cli_service.base_url,
                       "--api-key", api_key(tenants, "copy"))  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    accounts = len(lines) - 13 - entries - 1  # all but @world
    assert imported.stdout.splitlines() == [
        f"accounts: {accounts}",
        "recorded: 11",
        "already there: 0",
        "skipped (FAILED or VOIDED, they moved nothing): 2",
    ]
    before, after = await _accounts(source), await _accounts(copy)
    assert after == before
    # The journal is the same, entry for entry with its instant, for every account whose
    # history holds no hold executed or voided (imported as their final effect).
    for account in ("opening", "erin", "@world"):
        assert await _journal(copy, account) == await _journal(source, account), account
    owned = (await copy.get("/v1/accounts/owned")).json()
    assert [k["id"] for k in owned["keys"]] == ["k1"]
    # Run again once finished: everything is found there, the owned account included
    # (made without keys, then keyed), and the command succeeds.
    again = twofold("import", str(out), "--url", cli_service.base_url,
                    "--api-key", api_key(tenants, "copy"))  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == [
        f"accounts: {accounts}",
        "recorded: 0",
        "already there: 11",
        "skipped (FAILED or VOIDED, they moved nothing): 2",
    ]
    assert await _accounts(copy) == before


async def test_an_import_killed_halfway_and_run_again_records_the_file_exactly_once(
    clients: dict[str, httpx.AsyncClient], tenants: dict[str, Any], backends: Backends,
    cli_service: Service, tmp_path: Path,
) -> None:  # fmt: skip
    lines = []
    for i in range(3000):
        transfer = {"id": f"t{i:05}", "status": "COMPLETED", "data": {}, "expires_at": None,
                    "timestamp": f"2026-02-01T00:{i // 60:02}:{i % 60:02}Z", "lines": [
                        {"account": "mint", "currency": "XTS", "amount": "-1"},
                        {"account": f"to-{i % 7}", "currency": "XTS", "amount": "1"}]}  # fmt: skip
        lines.append(json.dumps({"transaction": transfer}))
    file = tmp_path / "big.jsonl"
    file.write_text("\n".join(lines) + "\n")
    resumed = clients["resumed"]
    await resumed.post("/v1/accounts", json={"id": "mint", "balance_rule": "any"})
    command = [sys.executable, "-m", "app", "import", str(file), "--batch", "50",
               "--url", cli_service.base_url, "--api-key", api_key(tenants, "resumed")]  # fmt: skip
    running = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while (await resumed.get(f"{TX}/t00500")).status_code == 404:
        assert time.monotonic() < deadline, "the import never got going"
        await asyncio.sleep(0.05)
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)
    await asyncio.sleep(1)  # the batch the import had sent, if any, is answered
    first = (await resumed.get("/v1/accounts/mint")).json()["balances"]["XTS"]["posted"]
    assert 0 < -Decimal(first) < 3000, "killed halfway, not before or after"
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              check=False)  # fmt: skip
    assert finished.returncode == 0, finished.stdout + finished.stderr
    counts = dict(line.split(": ") for line in finished.stdout.splitlines())
    assert int(counts["already there"]) == -Decimal(first)
    assert int(counts["recorded"]) + int(counts["already there"]) == 3000
    balances = await _accounts(resumed)
    assert balances["mint"]["XTS"]["posted"] == "-3000"
    assert sum(Decimal(balances[f"to-{k}"]["XTS"]["posted"]) for k in range(7)) == 3000
    assert (await resumed.get(f"{TX}/t02999")).status_code == 200


async def test_events_tail_prints_a_line_per_new_event(
    clients: dict[str, httpx.AsyncClient], tenants: dict[str, Any], cli_service: Service
) -> None:
    command = [sys.executable, "-m", "app", "events", "tail", "--url", cli_service.base_url,
               "--api-key", api_key(tenants, "source")]  # fmt: skip
    tail = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert tail.stdout is not None
        # The command starts after the head it reads first: credits go in until one shows
        # (those made before it had connected never do), then that one's line is checked.
        reading = asyncio.ensure_future(asyncio.to_thread(tail.stdout.readline))
        sent: list[str] = []
        deadline = time.monotonic() + 30
        while not reading.done():
            assert time.monotonic() < deadline, "events tail printed nothing"
            tx = f"tailed-{uuid.uuid4().hex[:6]}"
            credit = {"id": tx, "type": "CREDIT", "account": "tailed", "currency": "EUR",
                      "amount": "1"}  # fmt: skip
            assert (await clients["source"].post(f"{TX}/immediate", json=credit)).is_success
            sent.append(tx)
            await asyncio.wait([reading], timeout=0.5)
        line = reading.result()
        while not any(tx in line for tx in sent):  # an account.created comes first
            line = await asyncio.to_thread(tail.stdout.readline)
        tx = next(tx for tx in sent if tx in line)
        sequence, kind, subject, _ = line.split("\t")
        assert kind == "transaction.completed"
        assert subject == tx
        assert int(sequence) > 0
    finally:
        tail.kill()
        tail.wait(timeout=10)
        if tail.stdout is not None:
            tail.stdout.close()


PROBE = {"account": {"id": "cli-port-probe", "balance_rule": "any", "data": {}, "keys": []}}


@pytest.mark.parametrize(
    "command",
    [("keys", "check-proof", "nothing"), ("events", "tail"), ("import", "{probe}")],
)
def test_commands_that_call_the_api_find_it_on_the_service_s_port(
    cli_service: Service, command: tuple[str, ...], tmp_path: Path
) -> None:
    """PORT (and HOST) say where the API is, for the service and its commands alike; with
    nothing there, one line names the URL and how to change it."""
    probe = tmp_path / "probe.jsonl"
    probe.write_text(json.dumps(PROBE) + "\n")
    command = tuple(part.format(probe=probe) for part in command)
    port = cli_service.base_url.rsplit(":", 1)[1]
    if command[0] != "events":  # a stream would not end by itself
        reached = twofold(*command, env={"PORT": port, "TWOFOLD_URL": ""})
        assert "no answer from the service" not in reached.stderr, reached.stderr
        assert reached.returncode in (0, 1), reached.stdout + reached.stderr
    nobody = str(free_port())
    missed = twofold(*command, env={"PORT": nobody, "TWOFOLD_URL": ""})
    assert missed.returncode == 2
    assert missed.stderr.strip().splitlines() == [missed.stderr.strip()], missed.stderr
    assert f"http://127.0.0.1:{nobody}" in missed.stderr
    assert "--url" in missed.stderr


def test_help_lists_every_command() -> None:
    shown = twofold("--help")
    assert shown.returncode == 0
    for command in ("serve", "migrate", "verify", "export", "import", "keys", "tenants",
                    "events"):  # fmt: skip
        assert f" {command} " in shown.stdout, command


def test_migrate_brings_an_empty_database_to_the_newest_schema(backends: Backends) -> None:
    name = f"twofold_migrate_{os.getpid()}"
    asyncio.run(admin(backends.database_url, f"CREATE DATABASE {name}"))
    try:
        url = with_database(backends.database_url, name)
        migrated = twofold("migrate", env={"DATABASE_URL": url})
        assert migrated.returncode == 0, migrated.stderr
        heads = [p.name.split("_")[0] for p in (ROOT / "migrations" / "versions").glob("0*.py")]

        async def version() -> str:
            connection = await asyncpg.connect(url)
            try:
                found: str = await connection.fetchval("SELECT version_num FROM alembic_version")
                return found
            finally:
                await connection.close()

        assert asyncio.run(version()) == max(heads)
    finally:
        asyncio.run(admin(backends.database_url, f"DROP DATABASE {name} WITH (FORCE)"))
