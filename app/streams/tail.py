"""One reader of each tenant's log per process, shared by every live stream on it.

A stream does not poll the database: while a tenant has subscribers, one task per
process reads its new events every `poll_s` and hands each page of them, encoded once, to
every subscriber's queue. A subscriber first catches up from the table by itself, then
takes from its queue what is newer than what it sent; one that falls too far behind
catches up again the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from app.models.log import StoredEvent, read_events, read_log_head
from app.models.store import PostgresStore

log = logging.getLogger("twofold.streams")
PAGE = 1000
QUEUE_MAX = 64  # pages: up to 64,000 events a subscriber has not taken yet


@dataclass(frozen=True, slots=True)
class Page:
    """Events in sequence order and their Server-Sent Events, encoded once for all."""

    events: tuple[StoredEvent, ...]
    sse: bytes

    @classmethod
    def of(cls, events: list[StoredEvent]) -> Page:
        return cls(tuple(events), b"".join(event.sse for event in events))

    @property
    def last(self) -> int:
        return self.events[-1].sequence

    def after(self, sequence: int) -> Page:
        """The part of the page after `sequence`."""
        if self.events[0].sequence > sequence:
            return self
        return Page.of([e for e in self.events if e.sequence > sequence])


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[Page] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
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

    async def follow(self, tenant: str, after: int) -> AsyncIterator[Page]:
        """Every event after `after`, in order, then the new ones as they commit, a page
        at a time."""
        subscriber = _Subscriber()
        await self._join(tenant, subscriber)
        try:
            sent = after
            while True:
                # Catch up from the table; the queue holds what the feed read meanwhile.
                subscriber.lagging = False
                while True:
                    events = await read_events(self.store, tenant, sent, PAGE)
                    if events:
                        page = Page.of(events)
                        yield page
                        sent = page.last
                    if len(events) < PAGE:
                        break
                while True:
                    page = await subscriber.queue.get()
                    if subscriber.lagging:
                        break  # the queue lost pages: back to the table
                    if page.last > sent:
                        page = page.after(sent)
                        yield page
                        sent = page.last
                while not subscriber.queue.empty():
                    subscriber.queue.get_nowait()
        finally:
            self._leave(tenant, subscriber)

    async def _join(self, tenant: str, subscriber: _Subscriber) -> None:
        feed = self.feeds.get(tenant)
        if feed is None:
            head = await read_log_head(self.store, tenant)
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
            if page:
                shared = Page.of(page)
                feed.last = shared.last
                for subscriber in feed.subscribers:
                    if subscriber.lagging:
                        continue
                    try:
                        subscriber.queue.put_nowait(shared)
                    except asyncio.QueueFull:
                        subscriber.lagging = True
                        # Wake it so that it catches up from the table.
                        with contextlib.suppress(asyncio.QueueEmpty):
                            subscriber.queue.get_nowait()
                        subscriber.queue.put_nowait(shared)
            if len(page) < PAGE:
                await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        for feed in self.feeds.values():
            if feed.task is not None:
                feed.task.cancel()
        self.feeds.clear()
