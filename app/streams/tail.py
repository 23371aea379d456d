"""One reader of each tenant's log per process, shared by every live stream on it.

A stream does not poll the database: while a tenant has subscribers, one task per
process reads its new events every `poll_s` and hands them to each subscriber's queue.
A subscriber first catches up from the table by itself, then takes from its queue what
is newer than what it sent; one that falls too far behind catches up again the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from app.models.log import StoredEvent, read_events, read_head
from app.models.store import PostgresStore

log = logging.getLogger("twofold.streams")
PAGE = 1000
QUEUE_MAX = 10_000


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[StoredEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    lagging: bool = False


@dataclass(eq=False)
class _Feed:
    last: int
    subscribers: set[_Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class LogTail:
    def __init__(self, store: PostgresStore, poll_s: float = 0.25) -> None:
        self.store = store
        self.poll_s = poll_s
        self.feeds: dict[str, _Feed] = {}

    async def follow(self, tenant: str, after: int) -> AsyncIterator[StoredEvent]:
        """Every event after `after`, in order, then each new one as it commits."""
        subscriber = _Subscriber()
        await self._join(tenant, subscriber)
        try:
            sent = after
            while True:
                # Catch up from the table; the queue holds what the feed read meanwhile.
                subscriber.lagging = False
                while True:
                    page = await read_events(self.store, tenant, sent, PAGE)
                    for event in page:
                        yield event
                        sent = event.sequence
                    if len(page) < PAGE:
                        break
                while True:
                    event = await subscriber.queue.get()
                    if subscriber.lagging:
                        break  # the queue lost events: back to the table
                    if event.sequence > sent:
                        yield event
                        sent = event.sequence
                while not subscriber.queue.empty():
                    subscriber.queue.get_nowait()
        finally:
            self._leave(tenant, subscriber)

    async def _join(self, tenant: str, subscriber: _Subscriber) -> None:
        feed = self.feeds.get(tenant)
        if feed is None:
            head = await read_head(self.store, tenant)
            feed = self.feeds.get(tenant)  # another stream may have started it meanwhile
            if feed is None:
                feed = self.feeds[tenant] = _Feed(head.sequence)
                feed.task = asyncio.create_task(self._poll(tenant, feed))
        feed.subscribers.add(subscriber)

    def _leave(self, tenant: str, subscriber: _Subscriber) -> None:
        feed = self.feeds.get(tenant)
        if feed is None:
            return
        feed.subscribers.discard(subscriber)
        if not feed.subscribers:
            del self.feeds[tenant]
            if feed.task is not None:
                feed.task.cancel()

    async def _poll(self, tenant: str, feed: _Feed) -> None:
        while True:
            try:
                page = await read_events(self.store, tenant, feed.last, PAGE)
            except Exception:
                log.exception("reading the log of %s failed; retrying", tenant)
                page = []
            for event in page:
                feed.last = event.sequence
                for subscriber in feed.subscribers:
                    if subscriber.lagging:
                        continue
                    try:
                        subscriber.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        subscriber.lagging = True
                        # Wake it so that it catches up from the table.
                        with contextlib.suppress(asyncio.QueueEmpty):
                            subscriber.queue.get_nowait()
                        subscriber.queue.put_nowait(event)
            if len(page) < PAGE:
                await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        for feed in self.feeds.values():
            if feed.task is not None:
                feed.task.cancel()
        self.feeds.clear()
