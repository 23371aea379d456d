"""The per-process log reader shared by streams: every event once and in order, also for
a subscriber so slow that its queue overflows (it catches up from the table)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.models.log import EMPTY_HEAD, StoredEvent
from app.streams import tail as tail_module
from app.streams.tail import LogTail


class FakeLog:
    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.reads = 0

    def append(self, count: int) -> None:
        start = len(self.events)
        self.events += [StoredEvent(n, "account.created", f'{{"sequence":{n}}}')
                        for n in range(start + 1, start + count + 1)]  # fmt: skip

    async def read(
        self, _: Any, __: str, after: int, limit: int, ___: Any = None
    ) -> list[StoredEvent]:
        self.reads += 1
        await asyncio.sleep(0)
        return self.events[after : after + limit]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> FakeLog:
    fake = FakeLog()
    monkeypatch.setattr(tail_module, "read_events", fake.read)

    async def head(_: Any, __: str) -> Any:
        return EMPTY_HEAD

    monkeypatch.setattr(tail_module, "read_log_head", head)
    monkeypatch.setattr(tail_module, "QUEUE_MAX", 2)
    monkeypatch.setattr(tail_module, "PAGE", 50)
    return fake


async def take(tail: LogTail, after: int, count: int, pause_s: float) -> list[int]:
    seen: list[int] = []
    pages = tail.follow("t", after)
    async for page in pages:
        seen += [e.sequence for e in page.events]
        assert page.sse.count(b"id: ") == len(page.events)
        if len(seen) >= count:
            break
        await asyncio.sleep(pause_s)
    await pages.aclose()  # type: ignore[attr-defined]
    return seen


async def test_fast_and_slow_subscribers_each_get_every_event_once_in_order(log: FakeLog) -> None:
    log.append(30)
    tail = LogTail(store=None, poll_s=0.001)  # type: ignore[arg-type]
    readers = [asyncio.create_task(take(tail, after, 2000 - after, pause))
               for after, pause in ((0, 0), (10, 0.02), (30, 0.005))]  # fmt: skip
    for _ in range(197):
        log.append(10)
        await asyncio.sleep(0.002)
    fast, slow, late = await asyncio.wait_for(asyncio.gather(*readers), 30)
    assert fast == list(range(1, 2001))
    assert slow == list(range(11, 2001))
    assert late == list(range(31, 2001))
    assert tail.feeds == {}  # the last subscriber gone, the tenant's reader stops
