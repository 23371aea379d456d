"""The tenant's log over HTTP: one event per change, gap-free, hash-chained, streamed."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import rfc8785

ZERO = "0" * 64


async def head(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/events/head")
    assert response.status_code == 200, response.text
    return response.json()


async def events_after(api: httpx.AsyncClient, after: int, limit: int = 1000) -> list[Any]:
    """Every event after `after`, page by page, as a client reads them."""
    found: list[Any] = []
    while True:
        response = await api.get("/v1/events", params={"after": after, "limit": limit})
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["items"]
        if page["next"] is None:
            return found
        after = int(page["next"])


def check_chain(events: list[Any], previous: str = ZERO, first: int = 1) -> str:
    """What any client can do: each hash is SHA-256 of the previous hash followed by the
    event without `hash`, canonical by RFC 8785; sequences run without a gap."""
    for expected, event in enumerate(events, start=first):
        body = dict(event)
        hashed = body.pop("hash")
        assert body["sequence"] == expected
        assert body["previous_hash"] == previous
        assert hashlib.sha256(previous.encode() + rfc8785.dumps(body)).hexdigest() == hashed
        previous = hashed
    return previous


def mine(events: list[Any], *ids: str) -> list[tuple[str, str]]:
    """(type, id) of the events about these accounts or transactions, in log order."""
    subject = [(e["type"], (e.get("transaction") or e.get("account"))["id"]) for e in events]
    return [(kind, name) for kind, name in subject if name in ids]


async def test_the_whole_log_chains_from_the_first_event(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    alice = uid("alice")
    created = await api.post("/v1/accounts", json={"id": alice, "data": {"n": 1.5}})
    assert created.status_code == 201
    moved = await api.post(
        "/v1/transactions/immediate",
        json={"type": "CREDIT", "account": alice, "currency": "USD", "amount": "7"},
    )
    assert moved.status_code == 201
    events = await events_after(api, 0, limit=37)
    last = check_chain(events)
    now = await head(api)
    assert (now["sequence"], now["hash"]) == (events[-1]["sequence"], last)
    assert now["at"] == events[-1]["at"]


async def test_each_change_is_one_event_with_the_state_after_it(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    alice, bob, order = uid("alice"), uid("bob"), uid("order")
    start = (await head(api))["sequence"]
    credit = {"type": "CREDIT", "account": alice, "currency": "USD", "amount": "100"}
    credited = await api.post("/v1/transactions/immediate", json=credit)
    assert credited.status_code == 201
    credit_id = credited.json()["id"]
    pending = {"id": order, "lines": [{"account": alice, "currency": "USD", "amount": "-30"},
                                      {"account": bob, "currency": "USD", "amount": "30"}],
               "data": {"order": 1}}  # fmt: skip
    assert (await api.post("/v1/transactions", json=pending)).status_code == 201
    assert (await api.put(f"/v1/transactions/{order}")).status_code == 200
    put = await api.put(f"/v1/transactions/{order}/data", json={"data": {"order": 2}})
    assert put.status_code == 200
    assert (await api.delete(f"/v1/transactions/{order}")).status_code == 200
    events = await events_after(api, start)
    assert mine(events, alice, bob, order, f"{order}.reversal", credit_id) == [
        ("account.created", alice),
        ("transaction.completed", credit_id),
        ("account.created", bob),
        ("transaction.pending", order),
        ("transaction.completed", order),
        ("transaction.updated", order),
        ("transaction.completed", f"{order}.reversal"),
        ("transaction.reversed", order),
    ]
    by_type = {(e["type"], (e.get("transaction") or e.get("account"))["id"]): e for e in events}
    # The transaction as GET answered it right after the change, without its history.
    final = (await api.get(f"/v1/transactions/{order}")).json()
    final.pop("events")
    assert by_type[("transaction.reversed", order)]["transaction"] == final
    assert by_type[("transaction.updated", order)]["transaction"]["data"] == {"order": 2}
    assert by_type[("transaction.updated", order)]["transaction"]["status"] == "COMPLETED"
    held = by_type[("transaction.pending", order)]
    assert held["transaction"]["status"] == "PENDING"
    assert held["balances"] == {
        alice: {"USD": {"posted": "100", "pending_in": "0", "pending_out": "30",
                        "available": "70"}},
        bob: {"USD": {"posted": "0", "pending_in": "30", "pending_out": "0", "available": "0"}},
    }  # fmt: skip
    executed = by_type[("transaction.completed", order)]["balances"]
    assert executed[alice]["USD"]["posted"] == "70"
    assert executed[bob]["USD"]["posted"] == "30"
    reversal = by_type[("transaction.completed", f"{order}.reversal")]
    assert reversal["transaction"]["reverses"] == order
    assert reversal["balances"][bob]["USD"]["posted"] == "0"
    assert by_type[("transaction.reversed", order)]["balances"] == {}
    assert by_type[("account.created", bob)]["account"] == {
        "id": bob, "balance_rule": "non_negative", "data": {},
        "created_at": by_type[("account.created", bob)]["account"]["created_at"],
        "keys": [], "key_history": [],
    }  # fmt: skip


async def test_what_did_not_apply_leaves_no_account_event(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    poor, rich, fresh = uid("poor"), uid("rich"), uid("fresh")
    start = (await head(api))["sequence"]
    # FAILED: kept and logged, but its new accounts are not created.
    failed = await api.post(
        "/v1/transactions/immediate",
        json={"lines": [{"account": poor, "currency": "USD", "amount": "-5"},
                        {"account": rich, "currency": "USD", "amount": "5"}]},
    )  # fmt: skip
    assert failed.status_code == 422
    # An atomic batch that fails records nothing at all, so it logs nothing.
    batch = await api.post(
        "/v1/transactions/batch",
        json={"mode": "immediate", "atomic": True, "transactions": [
            {"type": "CREDIT", "account": fresh, "currency": "USD", "amount": "1"},
            {"type": "DEBIT", "account": poor, "currency": "USD", "amount": "9"}]},
    )  # fmt: skip
    assert batch.status_code == 200
    events = await events_after(api, start)
    assert mine(events, poor, rich, fresh) == []
    logged = [e for e in events if e["type"] == "transaction.failed"
              and poor in json.dumps(e["transaction"]["lines"])]  # fmt: skip
    assert len(logged) == 1
    assert logged[0]["balances"] == {}


async def test_pages_filter_by_type_and_refuse_bad_parameters(api: httpx.AsyncClient) -> None:
    page = (await api.get("/v1/events", params={"type": "account.created", "limit": 5})).json()
    assert page["items"]
    assert {e["type"] for e in page["items"]} == {"account.created"}
    for params in ({"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "1001"},
                   {"type": "account.deleted"}):  # fmt: skip
        response = await api.get("/v1/events", params=params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid_request"


async def test_tenants_see_only_their_own_log(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    theirs = uid("theirs")
    assert (await other_api.post("/v1/accounts", json={"id": theirs})).status_code == 201
    mine_all = await events_after(api, 0)
    assert mine(mine_all, theirs) == []
    other_events = await events_after(other_api, 0)
    check_chain(other_events)
    assert mine(other_events, theirs) == [("account.created", theirs)]


async def read_stream(
    api: httpx.AsyncClient, count: int, connected: asyncio.Event | None = None, **headers: str
) -> list[tuple[str, str, Any]]:
    """The first `count` events of the stream, as (id, event, data); `connected` is set
    when the stream's first line, its `: connected` comment, arrives."""
    found: list[tuple[str, str, Any]] = []
    async with api.stream("GET", "/v1/events/stream", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                if connected is not None and line == ": connected":
                    connected.set()
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if fields:
                found.append((fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
                if len(found) == count:
                    return found
    return found


async def test_the_stream_sends_new_events_within_a_second_and_resumes(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    start = (await head(api))["sequence"]
    names = [uid("streamed") for _ in range(3)]
    connected = asyncio.Event()
    reader = asyncio.create_task(
        asyncio.wait_for(read_stream(api, 3, connected, **{"Last-Event-ID": str(start)}), 10)
    )
    await asyncio.wait_for(connected.wait(), 10)
    sent = asyncio.get_running_loop().time()
    for name in names:
        assert (await api.post("/v1/accounts", json={"id": name})).status_code == 201
    got = await reader
    assert asyncio.get_running_loop().time() - sent < 3
    events = await events_after(api, start)
    expected = [(str(e["sequence"]), e["type"], e) for e in events[:3]]
    assert got == expected
    # Resuming after the first: the next two, nothing twice, nothing missed.
    again = await asyncio.wait_for(read_stream(api, 2, **{"Last-Event-ID": got[0][0]}), 10)
    assert again == got[1:]


async def test_many_processes_write_one_gap_free_log_in_journal_order(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    """Two worker processes commit concurrently; the log has no gap, and each
    account's balances move through the log in the order of its journal."""
    accounts = [uid("hammer") for _ in range(4)]
    start = (await head(api))["sequence"]
    for account in accounts:
        credit = {"type": "CREDIT", "account": account, "currency": "USD", "amount": "1000"}
        assert (await api.post("/v1/transactions/immediate", json=credit)).status_code == 201

    async def move(i: int) -> None:
        a, b = accounts[i % 4], accounts[(i + 1 + i // 4) % 4]
        if a == b:
            b = accounts[(i + 2) % 4]
        body = {"lines": [{"account": a, "currency": "USD", "amount": "-1"},
                          {"account": b, "currency": "USD", "amount": "1"}]}  # fmt: skip
        response = await api.post("/v1/transactions/immediate", json=body)
        assert response.status_code == 201, response.text

    await asyncio.gather(*(move(i) for i in range(400)))
    events = await events_after(api, start)
    assert [e["sequence"] for e in events] == list(range(start + 1, start + 1 + len(events)))
    all_events = await events_after(api, 0)
    check_chain(all_events)
    for account in accounts:
        in_log = [e["balances"][account]["USD"]["posted"] for e in events
                  if account in e["balances"]]  # fmt: skip
        journal = (await api.get(f"/v1/accounts/{account}/entries", params={"limit": 1000})).json()
        assert in_log == [entry["posted"] for entry in journal["items"]]
        assert (
            in_log[-1]
            == (await api.get(f"/v1/accounts/{account}")).json()["balances"]["USD"]["posted"]
        )


async def test_a_large_commit_chained_by_the_writer_reads_like_a_small_one(api, uid):
    """From 64 events on the writer computes the chain itself (app/models/writer.py):
    the log reads the same to a client, gap-free and with every hash recomputing."""
    before = (await head(api))["sequence"]
    items = [{"id": uid("big"), "type": "CREDIT", "account": uid("to"), "currency": "EUR",
              "amount": "1"} for _ in range(100)]  # fmt: skip
    answer = await api.post("/v1/transactions/batch", json={"mode": "immediate",
                                                            "transactions": items})  # fmt: skip
    assert answer.status_code == 200
    # From the event before the batch on: its hash is where the chain continues.
    events = await events_after(api, max(before - 1, 0))
    ours = [e for e in events if e["type"] == "transaction.completed"
            and e["transaction"]["id"] in {i["id"] for i in items}]  # fmt: skip
    assert len(ours) == 100
    if before:
        check_chain(events[1:], events[0]["hash"], before + 1)
    else:
        check_chain(events)
