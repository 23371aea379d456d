"""Sinks under load for `make bench` (`log_lag`): a webhook (`batch_max` 100), a Redis
stream and a NATS JetStream sink follow the tenant's log while `uniform` writes at its
full rate; then new sinks of each type start far behind and catch up. BENCH_LAG_SINKS
picks some of the types (`redis,nats`).

Each consumer keeps what arrives with the wall clock of its arrival (`time.time()`, the
clock of the service on this same machine) and nothing more while the load runs: the
events are decoded afterwards, so that the consumers take as little of the two cores
from the service as they can. An event's lag is from its `at` (when the group commit
applied it, just before its commit) to its arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis

from bench.consumers import percentiles
from integration_tests.receiver import Receiver

# A catching-up sink starts this many events behind the head (the log holds more).
BEHIND = 60_000
WAIT_S = 120.0


class _Event(msgspec.Struct):
    sequence: int
    at: str


class _Batch(msgspec.Struct):
    events: list[_Event]


def _lags(arrivals: list[tuple[float, list[_Event]]], low: int, high: int) -> list[float]:
    """Seconds from `at` to arrival of each event in (low, high], the first arrival of
    each sequence only."""
    first: dict[int, float] = {}
    for wall, events in arrivals:
        for event in events:
            if low < event.sequence <= high and event.sequence not in first:
                first[event.sequence] = wall - datetime.fromisoformat(event.at).timestamp()
    return list(first.values())


class WebhookConsumer:
    kind = "webhook"

    def __init__(self) -> None:
        self.receiver = Receiver()

    async def start(self) -> dict[str, Any]:
        await self.receiver.start()
        return {"type": "webhook", "url": self.receiver.url, "batch_max": 100}

    def newest(self) -> int:
        """The newest sequence received, from `webhook-id` (`tenant:first-last`)."""
        got = self.receiver.got
        return int(got[-1].headers["webhook-id"].rpartition("-")[2]) if got else 0

    def arrivals(self) -> list[tuple[float, list[_Event]]]:
        decode = msgspec.json.Decoder(_Batch).decode
        return [(r.wall, decode(r.body).events) for r in self.receiver.delivered()]

    async def stop(self) -> None:
        await self.receiver.stop()


class RedisConsumer:
    kind = "redis"

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.stream = f"bench-{uuid.uuid4().hex[:8]}"
        self.got: list[tuple[float, list[bytes]]] = []
        self.last = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        self.redis = Redis.from_url(self.redis_url)
        self.task = asyncio.create_task(self._read())
        return {"type": "redis", "url": f"{self.redis_url}?stream={self.stream}"}

    async def _read(self) -> None:
        cursor = "0-0"
        while True:
            answer = await self.redis.xread({self.stream: cursor}, count=5000, block=1000)
            wall = time.time()
            for _, entries in answer:
                cursor = entries[-1][0]
                self.last = int(entries[-1][1][b"sequence"])
                self.got.append((wall, [fields[b"event"] for _, fields in entries]))

    def newest(self) -> int:
        return self.last

    def arrivals(self) -> list[tuple[float, list[_Event]]]:
        decode = msgspec.json.Decoder(_Event).decode
        return [(wall, [decode(e) for e in events]) for wall, events in self.got]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.redis.delete(self.stream)
        await self.redis.aclose()


class NatsConsumer:
    kind = "nats"

    def __init__(self, nats_url: str) -> None:
        self.nats_url = nats_url
        self.subject = f"bench_{uuid.uuid4().hex[:8]}"
        self.got: list[tuple[float, bytes]] = []
        self.last = 0

    async def start(self) -> dict[str, Any]:
        import nats

        self.connection = await nats.connect(self.nats_url)
        self.jetstream = self.connection.jetstream()
        await self.jetstream.add_stream(name=self.subject.upper(), subjects=[f"{self.subject}.>"])

        async def received(message: Any) -> None:
            self.got.append((time.time(), message.data))
            self.last = int(message.headers["Nats-Msg-Id"].rpartition(":")[2])

        # A plain subscription to the stream's subjects: each publish arrives as the
        # stream takes it.
        await self.connection.subscribe(f"{self.subject}.>", cb=received,
                                        pending_msgs_limit=-1, pending_bytes_limit=-1)  # fmt: skip
        return {"type": "nats", "url": f"{self.nats_url}?subject={self.subject}"}

    def newest(self) -> int:
        return self.last

    def arrivals(self) -> list[tuple[float, list[_Event]]]:
        decode = msgspec.json.Decoder(_Event).decode
        return [(wall, [decode(data)]) for wall, data in self.got]

    async def stop(self) -> None:
        await self.jetstream.delete_stream(self.subject.upper())
        await self.connection.close()


Consumer = WebhookConsumer | RedisConsumer | NatsConsumer


async def _head(client: httpx.AsyncClient) -> int:
    return int((await client.get("/v1/events/head")).json()["sequence"])


async def _follow(client: httpx.AsyncClient, consumers: list[Consumer], after: int) -> list[str]:
    made = []
    for consumer in consumers:
        body = await consumer.start()
        answer = await client.post("/v1/sinks", json={**body, "after": after})
        answer.raise_for_status()
        made.append(answer.json()["id"])
    return made


async def _until_head(consumers: list[Consumer], head: int, since: float) -> dict[str, float]:
    """Seconds from `since` (time.monotonic()) until each consumer had event `head`."""
    reached: dict[str, float] = {}
    deadline = time.monotonic() + WAIT_S
    while len(reached) < len(consumers) and time.monotonic() < deadline:
        for consumer in consumers:
            if consumer.kind not in reached and consumer.newest() >= head:
                reached[consumer.kind] = round(time.monotonic() - since, 2)
        await asyncio.sleep(0.01)
    return reached


async def _sample(
    client: httpx.AsyncClient, consumers: list[Consumer], sinks: list[str]
) -> list[dict[str, int]]:
    """Each second: how many events behind the head each sink's recorded position is
    (`<type>`) and what its consumer has (`<type>_received`): which side falls behind."""
    samples: list[dict[str, int]] = []
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(1)
            head = await _head(client)
            sample = {"head": head}
            for consumer, sink_id in zip(consumers, sinks, strict=True):
                sink = (await client.get(f"/v1/sinks/{sink_id}")).json()
                sample[consumer.kind] = head - sink["delivered"]
                sample[f"{consumer.kind}_received"] = head - consumer.newest()
            samples.append(sample)
    return samples


async def sink_lag(
    client: httpx.AsyncClient, redis_url: str, nats_url: str | None,
    load: Callable[[], dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    """`load()` (uniform, at full rate) while one sink of each type follows the log; then
    a new sink of each type, one after the other, catches up from BEHIND events back."""

    kinds = os.environ.get("BENCH_LAG_SINKS", "webhook,redis,nats").split(",")

    def consumers() -> list[Consumer]:
        made: list[Consumer] = [WebhookConsumer(), RedisConsumer(redis_url)]
        if nats_url:
            made.append(NatsConsumer(nats_url))
        return [c for c in made if c.kind in kinds]

    following = consumers()
    start = await _head(client)
    sinks = await _follow(client, following, start)
    report: dict[str, Any] = {}
    sampling = asyncio.create_task(_sample(client, following, sinks))
    try:
        written = await asyncio.to_thread(load)
        ended = time.monotonic()
        sampling.cancel()
        report["behind_each_second"] = await sampling
        end = await _head(client)
        caught = await _until_head(following, end, ended)
        report["load"] = {"per_s": written["per_s"], "events": end - start}
        for consumer in following:
            lags = _lags(consumer.arrivals(), start, end)
            report[consumer.kind] = {
                "lag": percentiles(lags),
                "events": len(lags),
                "head_after_load_s": caught.get(consumer.kind),
            }
    finally:
        for sink_id in sinks:
            await client.delete(f"/v1/sinks/{sink_id}")
        for consumer in following:
            await consumer.stop()
    # One type at a time: each sink's own rate, not three sharing the cores.
    after = max(0, end - BEHIND)
    for consumer in consumers():
        began = time.monotonic()
        [sink_id] = await _follow(client, [consumer], after)
        try:
            took = (await _until_head([consumer], end, began)).get(consumer.kind)
            report[consumer.kind]["catch_up"] = {
                "events": end - after,
                "seconds": took,
                "per_s": round((end - after) / took) if took else None,
            }
        finally:
            await client.delete(f"/v1/sinks/{sink_id}")
            await consumer.stop()
    return report
