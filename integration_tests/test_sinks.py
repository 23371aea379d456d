"""Sinks over HTTP against real receivers: a webhook in the test, Redis Streams on the
tests' Redis, NATS JetStream and RabbitMQ where they answer on this machine."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from integration_tests.receiver import Receiver
from integration_tests.server import Backends, Service, new_database
from integration_tests.test_events import events_after, head


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


async def make_sink(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/sinks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def recorded(api: httpx.AsyncClient, sink_id: str, sequence: int) -> dict[str, Any]:
    """The sink once its recorded position reached `sequence`: a run of sends commits
    its position within 0.1 s of the events' delivery."""
    deadline = time.monotonic() + 10
    while (state := (await api.get(f"/v1/sinks/{sink_id}")).json())["delivered"] < sequence:
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)
    return state


async def credits(api: httpx.AsyncClient, account: str, count: int) -> None:
    items = [{"type": "CREDIT", "account": account, "currency": "USD", "amount": "1"}
             for _ in range(count)]  # fmt: skip
    for low in range(0, count, 1000):
        batch = {"mode": "immediate", "transactions": items[low : low + 1000]}
        response = await api.post("/v1/transactions/batch", json=batch)
        assert response.status_code == 200


async def test_sinks_are_made_once_read_masked_and_deleted(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    sink_id = uid("hook")
    body = {
        "id": sink_id,
        "type": "webhook",
        "url": "http://127.0.0.1:9/x",
        "types": ["transaction.completed"],
    }
    made = await api.post("/v1/sinks", json=body)
    assert made.status_code == 201
    assert made.json()["secret"].startswith("whsec_")
    now = (await head(api))["sequence"]
    assert made.json()["delivered"] == now  # `after` left out: only new events
    again = await api.post("/v1/sinks", json=body)
    assert again.status_code == 200
    assert "secret" not in again.json()
    other = await api.post("/v1/sinks", json={**body, "types": None})
    assert other.status_code == 409
    assert other.json()["code"] == "sink_exists"
    amqp = await make_sink(
        api, type="amqp", url="amqp://guest:hunter2@127.0.0.1:9/?exchange=x", after=0
    )
    assert amqp["url"] == "amqp://guest:***@127.0.0.1:9/?exchange=x"
    read = (await api.get(f"/v1/sinks/{amqp['id']}")).json()
    assert "hunter2" not in json.dumps(read)
    assert set(read) == {"id", "type", "url", "types", "delivered", "head", "failures",
                         "last_error", "last_attempt_at", "next_attempt_at"}  # fmt: skip
    assert "batch_max" not in read  # a webhook's only
    listed = (await api.get("/v1/sinks")).json()["items"]
    assert {sink_id, amqp["id"]} <= {s["id"] for s in listed}
    for name in (sink_id, amqp["id"]):
        assert (await api.delete(f"/v1/sinks/{name}")).status_code == 200
        assert (await api.get(f"/v1/sinks/{name}")).status_code == 404
    assert (await api.delete(f"/v1/sinks/{sink_id}")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"type": "kafka", "url": "kafka://h"},
        {"type": "webhook", "url": "ftp://h/x"},
        {"type": "redis", "url": "http://h"},
        {"type": "webhook", "url": "not a url"},
        {"type": "webhook", "url": "http://h:port/x"},
        {"type": "webhook", "url": "http://h/x", "types": ["account.deleted"]},
        {"type": "webhook", "url": "http://h/x", "types": []},
        {"type": "webhook", "url": "http://h/x", "after": -1},
        {"type": "webhook", "url": "http://h/x", "batch_max": 0},
        {"type": "webhook", "url": "http://h/x", "batch_max": 1001},
        {"type": "webhook", "url": "http://h/x", "batch_max": "10"},
        {"type": "redis", "url": "redis://h/0", "batch_max": 10},
        {"type": "webhook", "url": "http://h/x", "secret": "mine"},
        {"type": "webhook"},
        {"id": "a b", "type": "webhook", "url": "http://h/x"},
    ],
)
async def test_bad_sinks_are_400(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await api.post("/v1/sinks", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"


async def test_a_webhook_gets_every_new_event_signed_and_in_order(
    api: httpx.AsyncClient, uid: Callable[[str], str], receiver: Receiver, service: Service
) -> None:
    start = (await head(api))["sequence"]
    sink = await make_sink(api, type="webhook", url=receiver.url, after=start)
    account = uid("hooked")
    await credits(api, account, 5)
    expected = [e["sequence"] for e in await events_after(api, start)]
    await receiver.wait_for(lambda r: len(r.delivered()) >= len(expected))
    assert receiver.sequences() == expected
    events = receiver.verified(sink["secret"])
    assert [r.headers["webhook-id"] for r in receiver.delivered()] == [
        f"test:{s}" for s in expected
    ]
    assert events == await events_after(api, start)
    state = await recorded(api, sink["id"], expected[-1])
    assert state["delivered"] == expected[-1]
    assert state["failures"] == 0
    # Caught up, the sink reads an empty page, waits, and goes on with the next events
    # (well within its lease: a task that ended would be taken again only after it).
    await credits(api, account, 3)
    expected = [e["sequence"] for e in await events_after(api, start)]
    await receiver.wait_for(lambda r: len(r.delivered()) >= len(expected), timeout_s=10)
    assert receiver.sequences() == expected
    await api.delete(f"/v1/sinks/{sink['id']}")
    assert "it will be taken again" not in service.log_path.read_text()


async def test_a_batching_webhook_gets_consecutive_events_in_signed_batches(
    api: httpx.AsyncClient, uid: Callable[[str], str], receiver: Receiver
) -> None:
    start = (await head(api))["sequence"]
    sink = await make_sink(api, type="webhook", url=receiver.url, after=start, batch_max=10,
                           types=["transaction.completed"])  # fmt: skip
    assert sink["batch_max"] == 10
    assert (await api.get(f"/v1/sinks/{sink['id']}")).json()["batch_max"] == 10
    again = await api.post("/v1/sinks", json={"id": sink["id"], "type": "webhook",
                                              "url": receiver.url, "after": start,
                                              "batch_max": 10,
                                              "types": ["transaction.completed"]})  # fmt: skip
    assert again.status_code == 200
    await credits(api, uid("batched"), 35)
    wanted = [e for e in await events_after(api, start) if e["type"] == "transaction.completed"]
    expected = [e["sequence"] for e in wanted]
    assert len(expected) == 35
    await receiver.wait_for(lambda r: len(r.sequences()) >= 35)
    assert receiver.sequences() == expected
    batches = receiver.verified(sink["secret"])  # each batch signed as one message
    assert all(1 <= len(b["events"]) <= 10 for b in batches)
    assert [e for b in batches for e in b["events"]] == wanted
    for got, batch in zip(receiver.delivered(), batches, strict=True):
        first, last = batch["events"][0]["sequence"], batch["events"][-1]["sequence"]
        assert got.headers["webhook-id"] == f"test:{first}-{last}"
    # Caught up, the process serving it says so on /metrics, in events and in seconds.
    series = {f'twofold_sink_lag_{unit}{{sink="{sink["id"]}",tenant="test"}}'
              for unit in ("events", "seconds")}  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        lines = (await api.get("/metrics")).text.splitlines()
        values = {n: float(v) for n, _, v in (line.rpartition(" ") for line in lines)
                  if n in series}  # fmt: skip
        if set(values) == series and not any(values.values()):
            break
        assert time.monotonic() < deadline, values
        await asyncio.sleep(0.1)
    await api.delete(f"/v1/sinks/{sink['id']}")


async def test_no_event_reaches_a_sink_after_its_delete_answered(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    """Events keep coming while a slow webhook is deleted: none arrives after the DELETE's
    answer (whichever of the service's processes serves the sink), while a second sink,
    kept, gets every event, the later ones included."""
    deleted, kept = await Receiver(delay_s=0.02).start(), await Receiver().start()
    try:
        start = (await head(api))["sequence"]
        doomed = await make_sink(api, type="webhook", url=deleted.url, after=start)
        await make_sink(api, id=uid("kept"), type="webhook", url=kept.url, after=start,
                        batch_max=100)  # fmt: skip
        account = uid("deleting")
        writes = asyncio.create_task(credits(api, account, 400))
        await deleted.wait_for(lambda r: len(r.got) >= 10)
        assert (await api.delete(f"/v1/sinks/{doomed['id']}")).status_code == 200
        answered = time.monotonic()
        await writes
        await credits(api, account, 20)
        last = (await head(api))["sequence"]
        await kept.wait_for(lambda r: bool(r.sequences()) and r.sequences()[-1] >= last)
        late = [r for r in deleted.got if r.at > answered]
        assert late == [], f"{len(late)} requests after the DELETE answered"
        assert deleted.sequences()[-1] < last
    finally:
        await deleted.stop()
        await kept.stop()


async def test_a_failing_receiver_is_retried_with_backoff_then_gets_everything(
    api: httpx.AsyncClient, uid: Callable[[str], str], receiver: Receiver
) -> None:
    receiver.answer = lambda n: 500 if n < 3 else 200
    start = (await head(api))["sequence"]
    sink = await make_sink(api, type="webhook", url=receiver.url, after=start,
                           types=["transaction.completed"])  # fmt: skip
    await credits(api, uid("retried"), 3)
    expected = [
        e["sequence"]
        for e in await events_after(api, start)
        if e["type"] == "transaction.completed"
    ]
    await receiver.wait_for(lambda r: len(r.delivered()) >= 3, timeout_s=30)
    assert receiver.sequences() == expected
    first = [r for r in receiver.got if r.event["sequence"] == expected[0]]
    assert [r.status for r in first] == [500, 500, 500, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(first)]
    # 1 s, then 2 s, then 4 s (the receiver's clock; a little late, never early).
    for gap, promised in zip(gaps, (1, 2, 4), strict=True):
        assert promised - 0.1 <= gap <= promised + 1.5, gaps
    state = await recorded(api, sink["id"], expected[-1])
    assert (state["failures"], state["last_error"]) == (0, None)
    await api.delete(f"/v1/sinks/{sink['id']}")


async def test_a_receiver_down_during_1000_transfers_catches_up(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    down = Receiver()
    await down.start()
    port = down.port
    await down.stop()  # nothing listens there now
    start = (await head(api))["sequence"]
    sink = await make_sink(api, type="webhook", url=f"http://127.0.0.1:{port}/hook", after=start,
                           types=["transaction.completed"])  # fmt: skip
    await credits(api, uid("caught-up"), 1000)
    failing = time.monotonic()
    while (await api.get(f"/v1/sinks/{sink['id']}")).json()["failures"] == 0:
        assert time.monotonic() - failing < 10
        await asyncio.sleep(0.1)
    state = (await api.get(f"/v1/sinks/{sink['id']}")).json()
    assert state["last_error"]
    assert state["next_attempt_at"] is not None
    back = await Receiver().start(port)
    try:
        await back.wait_for(lambda r: len(r.delivered()) >= 1000, timeout_s=60)
        expected = [e["sequence"] for e in await events_after(api, start)
                    if e["type"] == "transaction.completed"]  # fmt: skip
        assert back.sequences() == expected
    finally:
        await back.stop()
        await api.delete(f"/v1/sinks/{sink['id']}")


async def test_a_slow_sink_does_not_hold_back_a_fast_one(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    slow, fast = Receiver(delay_s=1.0), Receiver()
    await slow.start()
    await fast.start()
    start = (await head(api))["sequence"]
    made = [await make_sink(api, type="webhook", url=r.url, after=start,
                            types=["transaction.completed"]) for r in (slow, fast)]  # fmt: skip
    try:
        await credits(api, uid("fast"), 20)
        await fast.wait_for(lambda r: len(r.delivered()) >= 20)
        assert len(slow.delivered()) < 10
    finally:
        for sink in made:
            await api.delete(f"/v1/sinks/{sink['id']}")
        await slow.stop()
        await fast.stop()


async def test_a_redis_sink_adds_each_event_to_its_stream(
    api: httpx.AsyncClient, backends: Backends, uid: Callable[[str], str]
) -> None:
    stream = uid("twofold")
    start = (await head(api))["sequence"]
    sink = await make_sink(
        api, type="redis", url=f"{backends.redis_url}?stream={stream}", after=start
    )
    await credits(api, uid("streamed"), 4)
    expected = await events_after(api, start)
    redis = Redis.from_url(backends.redis_url)
    try:
        deadline = time.monotonic() + 20
        while await redis.xlen(stream) < len(expected):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        entries = await redis.xrange(stream)
        assert [int(f[b"sequence"]) for _, f in entries] == [e["sequence"] for e in expected]
        assert [f[b"type"].decode() for _, f in entries] == [e["type"] for e in expected]
        assert [json.loads(f[b"event"]) for _, f in entries] == expected
    finally:
        await redis.delete(stream)
        await redis.aclose()
        await api.delete(f"/v1/sinks/{sink['id']}")


async def test_a_nats_sink_publishes_to_jetstream_with_message_ids(
    api: httpx.AsyncClient, uid: Callable[[str], str], nats_url: str
) -> None:
    import nats

    subject = uid("tf").replace("-", "_")
    connection = await nats.connect(nats_url)
    jetstream = connection.jetstream()
    await jetstream.add_stream(name=subject.upper(), subjects=[f"{subject}.>"])
    start = (await head(api))["sequence"]
    sink = await make_sink(api, type="nats", url=f"{nats_url}?subject={subject}", after=start)
    try:
        await credits(api, uid("published"), 3)
        expected = await events_after(api, start)
        deadline = time.monotonic() + 20
        while (await jetstream.stream_info(subject.upper())).state.messages < len(expected):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        pull = await jetstream.pull_subscribe(f"{subject}.>", durable=None)
        messages = await pull.fetch(len(expected), timeout=5)
        assert [json.loads(m.data) for m in messages] == expected
        assert [m.subject for m in messages] == [f"{subject}.{e['type']}" for e in expected]
        assert [m.headers["Nats-Msg-Id"] for m in messages] == [
            f"test:{e['sequence']}" for e in expected
        ]
        # A second send of one event (a process dying before it recorded) is dropped.
        again = await jetstream.publish(
            f"{subject}.x", b"{}", headers={"Nats-Msg-Id": f"test:{expected[0]['sequence']}"}
        )
        assert again.duplicate is True
    finally:
        await api.delete(f"/v1/sinks/{sink['id']}")
        await jetstream.delete_stream(subject.upper())
        await connection.close()


@pytest.mark.skipif(not answers(5672), reason="no RabbitMQ on 127.0.0.1:5672 (no wheel ships one)")
async def test_an_amqp_sink_publishes_persistent_confirmed_messages(
    api: httpx.AsyncClient, uid: Callable[[str], str]
) -> None:
    import aio_pika

    exchange = uid("twofold")
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(declared, routing_key="#")
    start = (await head(api))["sequence"]
    url = f"amqp://guest:guest@127.0.0.1:5672/?exchange={exchange}"
    sink = await make_sink(api, type="amqp", after=start, url=url)
    try:
        await credits(api, uid("queued"), 3)
        expected = await events_after(api, start)
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < len(expected):
            assert time.monotonic() < deadline
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            got.append(message)
        assert [json.loads(m.body) for m in got] == expected
        assert [m.routing_key for m in got] == [e["type"] for e in expected]
        assert [m.message_id for m in got] == [f"test:{e['sequence']}" for e in expected]
        assert {m.delivery_mode for m in got} == {aio_pika.DeliveryMode.PERSISTENT}
    finally:
        await api.delete(f"/v1/sinks/{sink['id']}")
        await declared.delete()
        await connection.close()


@pytest.fixture
def fresh_database(backends: Backends) -> Iterator[str]:
    """A database of its own: no other service serves its sinks."""
    url, drop = new_database(backends.database_url, f"twofold_takeover_{os.getpid()}")
    yield url
    drop()


async def test_a_killed_worker_s_sinks_are_taken_over_from_where_they_stopped(
    backends: Backends, fresh_database: str
) -> None:
    """Two services share one database; the one delivering is killed (SIGKILL) in the
    middle: the other takes the sink once the lease runs out, and the receiver sees every
    event at least once and in order."""
    env = {"WORKERS": "1", "SINK_LEASE_S": "1.5"}
    shared = Backends(fresh_database, backends.redis_url)
    services = [await asyncio.to_thread(Service.start, shared, f"takeover-{i}", **env)
                for i in range(2)]  # fmt: skip
    receiver = await Receiver(delay_s=0.02).start()
    try:
        async with httpx.AsyncClient(base_url=services[0].base_url, auth=("abc", "123"),
                                     timeout=60) as api:  # fmt: skip
            await make_sink(api, id="relay", type="webhook", url=receiver.url, after=0,
                            types=["transaction.completed"])  # fmt: skip
            await credits(api, "relayed", 300)
            expected = [e["sequence"] for e in await events_after(api, 0)
                        if e["type"] == "transaction.completed"]  # fmt: skip
            await receiver.wait_for(lambda r: len(r.delivered()) >= 50)
            connection = await asyncpg.connect(fresh_database)
            try:
                owner = await connection.fetchval("SELECT lease_owner FROM sinks")
            finally:
                await connection.close()
            pid = int(owner.split(":")[1])
            holder = next(s for s in services if os.getpgid(pid) == s.process.pid)
            await asyncio.to_thread(holder.kill)
            await receiver.wait_for(lambda r: set(r.sequences()) >= set(expected), timeout_s=60)
        survivor = next(s for s in services if s is not holder)
        async with httpx.AsyncClient(base_url=survivor.base_url, auth=("abc", "123")) as api:
            deadline = time.monotonic() + 10
            while (await api.get("/v1/sinks/relay")).json()["delivered"] != expected[-1]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        seen = receiver.sequences()
        assert sorted(set(seen)) == expected
        # In order, twice over at most: the survivor resends what the dead process sent
        # after it last recorded its position (every 0.1 s, 5 events at most here).
        runs = [0, *(i for i in range(1, len(seen)) if seen[i] <= seen[i - 1])]
        assert len(runs) <= 2
        for start, end in itertools.pairwise([*runs, len(seen)]):
            run = seen[start:end]
            assert run == [s for s in expected if run[0] <= s <= run[-1]]
        assert len(seen) - len(expected) <= 6
        # LOG_LEVEL=warning: no line for each delivery (httpx logs every request at INFO).
        for service in services:
            assert "HTTP Request" not in service.log_path.read_text()
    finally:
        await receiver.stop()
        for service in services:
            await asyncio.to_thread(service.stop)
