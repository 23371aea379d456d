"""Delivery: each process serves the sinks whose lease it holds, each in its own task.

A sink's task reads the log after the sink's recorded position, sends the events of
the chosen types in chunks (a webhook's `batch_max` in one request, a window of
pipelined publishes to a broker) and records how far the other side acknowledged: at
least once and in order. Every run of sends happens inside a transaction that holds the
sink's row (`app/models/sinks.py`, `fence`), so a DELETE of the sink waits for the run
under way and no run starts after it. A failure is recorded and retried after 1 s,
doubling up to SINK_RETRY_MAX_S. The lease (in the sink's row) is renewed while the
task runs; when a process dies its leases run out and another process takes its sinks
over, from the recorded position. Nothing here is on a request's path: a slow sink
delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import UTC, datetime

from app.metrics import forget_sink_lag, observe_sink_lag
from app.models import sinks as stored
from app.models.connections import SINK_POOL_SIZE
from app.models.log import StoredEvent, read_events, read_log_head
from app.models.sinks import Sink
from app.models.store import PostgresStore
from app.settings import Settings
from app.streams.sink_spec import backoff_s
from app.streams.transports import DeliveryError, Transport, transport

log = logging.getLogger("twofold.sinks")
# Events read from the log at a time: a sink far behind catches up a page a round.
PAGE = 1000
# A connection each (the sink pool's): one sink's sends never wait for another's.
SINKS_PER_PROCESS = SINK_POOL_SIZE
# How often a sink's position is recorded while it sends: a process that dies resends
# what it sent in at most this long (and the chunk it was on).
RECORD_EVERY_S = 0.1


async def _send_chunk(
    sender: Transport, tenant: str, chunk: list[StoredEvent]
) -> tuple[int, DeliveryError | None]:
    """How many of the chunk's first events the other side acknowledged, and why it
    stopped there (None: it took them all). The transport bounds the send itself."""
    try:
        await sender.send_all(tenant, chunk)
    except DeliveryError as exc:
        return exc.sent, exc
    return len(chunk), None


class SinkRunner:
    def __init__(self, store: PostgresStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        # When each sink's lease was last renewed (the event loop's clock).
        self.renewed: dict[tuple[str, str], float] = {}
        self.renew_every_s = settings.sink_lease_s / 3

    async def run(self) -> None:
        """Take free sinks as long as the process runs."""
        while True:
            try:
                room = SINKS_PER_PROCESS - len(self.tasks)
                if room > 0:
                    for sink in await stored.claim(
                        self.store, self.owner, self.settings.sink_lease_s, room
                    ):
                        key = (sink.tenant, sink.id)
                        if key not in self.tasks:
                            self.tasks[key] = asyncio.create_task(self._serve(sink))
            except Exception:
                log.exception("claiming sinks failed; trying again")
            await asyncio.sleep(min(1.0, self.renew_every_s))

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await stored.release(self.store, self.owner)

    async def _serve(self, sink: Sink) -> None:
        sender = transport(sink.type, sink.url, sink.secret, sink.batch_max)
        key = (sink.tenant, sink.id)
        self.renewed[key] = asyncio.get_running_loop().time()
        try:
            await self._wait_until_due(sink)
            await self._deliver(sink, sender)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery to sink %s of %s stopped; it will be taken again",
                          sink.id, sink.tenant)  # fmt: skip
        finally:
            self.tasks.pop(key, None)
            self.renewed.pop(key, None)
            forget_sink_lag(sink.tenant, sink.id)
            with contextlib.suppress(Exception):
                await sender.close()

    async def _deliver(self, sink: Sink, sender: Transport) -> None:
        position = sink.delivered
        wanted = None if sink.types is None else set(sink.types)
        ahead: asyncio.Task[list[StoredEvent]] | None = None
        try:
            while True:
                if not await self._keep(sink):
                    return
                if ahead is None:
                    page = await read_events(self.store, sink.tenant, position, PAGE)
                else:
                    page, ahead = await ahead, None
                if not page:
                    observe_sink_lag(sink.tenant, sink.id, 0, None)
                    await asyncio.sleep(self.settings.sink_poll_s)
                    continue
                if len(page) == PAGE:
                    # Behind: the next page is read while this one is sent.
                    ahead = asyncio.create_task(
                        read_events(self.store, sink.tenant, page[-1].sequence, PAGE)
                    )
                    head = await self._head(sink.tenant)
                else:
                    head = page[-1].sequence
                observe_sink_lag(sink.tenant, sink.id, head - position, page[0].at)
                chosen = [e for e in page if wanted is None or e.type in wanted]
                last = await self._send_page(sink, sender, chosen, position, page[-1].sequence)
                if last is None:
                    return  # deleted, or the lease went to another process
                position = last
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)

    async def _send_page(
        self, sink: Sink, sender: Transport, chosen: list[StoredEvent], position: int, end: int
    ) -> int | None:
        """Send `chosen` (the events of the sink's types up to sequence `end`) in chunks
        as the transport takes them, each run of sends inside a fence that records how
        far it got every RECORD_EVERY_S; the position after the page, None once the sink
        is no longer this process's to serve. A failure is recorded, waited out (1 s,
        doubling) and the send retried from the first event not acknowledged."""
        loop = asyncio.get_running_loop()
        while True:
            failure: DeliveryError | None = None
            lease_s = self.settings.sink_lease_s
            async with stored.fence(self.store, sink, self.owner, lease_s) as fence:
                if fence is None:
                    return None
                started = loop.time()
                while chosen and loop.time() - started < RECORD_EVERY_S:
                    chunk = chosen[: sender.chunk]
                    sent, failure = await _send_chunk(sender, sink.tenant, chunk)
                    if sent:
                        position = chunk[sent - 1].sequence
                        chosen = chosen[sent:]
                    if failure is not None:
                        break
                if failure is None:
                    if not chosen:
                        position = end
                    await fence.delivered(position)
                else:
                    failures = await fence.failed(
                        str(failure), self.settings.sink_retry_max_s, position
                    )
            if failure is None:
                if not chosen:
                    return position
                continue
            wait = backoff_s(failures, self.settings.sink_retry_max_s)
            log.warning("sink %s of %s: %s; retrying in %.0f s", sink.id, sink.tenant, failure,
                        wait)  # fmt: skip
            if not await self._sleep(sink, wait):
                return None

    async def _head(self, tenant: str) -> int:
        return (await read_log_head(self.store, tenant)).sequence

    async def _wait_until_due(self, sink: Sink) -> None:
        """A sink taken over in the middle of its backoff waits out the rest of it."""
        if sink.next_attempt_at is None:
            return
        wait = (sink.next_attempt_at - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await self._sleep(sink, min(wait, self.settings.sink_retry_max_s))

    async def _sleep(self, sink: Sink, seconds: float) -> bool:
        """Sleep, renewing the lease meanwhile; False once it is lost."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(left, self.renew_every_s))
            if not await self._keep(sink):
                return False
        return True

    async def _keep(self, sink: Sink) -> bool:
        """Renew the lease when a third of it has passed."""
        key, now = (sink.tenant, sink.id), asyncio.get_running_loop().time()
        if now - self.renewed.get(key, now) < self.renew_every_s:
            return True
        self.renewed[key] = now
        return await stored.renew(self.store, sink, self.owner, self.settings.sink_lease_s)
