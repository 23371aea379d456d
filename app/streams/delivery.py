"""Delivery: each process serves the sinks whose lease it holds, each in its own task.

A sink's task reads the log after the sink's recorded position, sends each event of
the chosen types and records its sequence once the other side acknowledged it: at
least once and in order. A failure is recorded and retried after 1 s, doubling up to
SINK_RETRY_MAX_S. The lease (in the sink's row) is renewed while the task runs; when a
process dies its leases run out and another process takes its sinks over, from the
recorded position. Nothing here is on a request's path: a slow sink delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import UTC, datetime

from app.models import sinks as stored
from app.models.log import StoredEvent, read_events
from app.models.sinks import Sink
from app.models.store import PostgresStore
from app.settings import Settings
from app.streams.sinks import backoff_s
from app.streams.transports import DeliveryError, Transport, transport

log = logging.getLogger("twofold.sinks")
PAGE = 100
SINKS_PER_PROCESS = 64
# How often a sink's position is recorded while it sends: a process that dies resends
# what it sent in at most this long (and the page it was on, for a fast sink).
RECORD_EVERY_S = 0.1


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
        sender = transport(sink.type, sink.url, sink.secret)
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
            with contextlib.suppress(Exception):
                await sender.close()

    async def _deliver(self, sink: Sink, sender: Transport) -> None:
        position = sink.delivered
        wanted = None if sink.types is None else set(sink.types)
        while True:
            if not await self._keep(sink):
                return
            page = await read_events(self.store, sink.tenant, position, PAGE)
            if not page:
                await asyncio.sleep(self.settings.sink_poll_s)
                continue
            # Each event is sent once the one before it was acknowledged; the position is
            # recorded every RECORD_EVERY_S, after the page, and before any wait.
            loop = asyncio.get_running_loop()
            recorded = loop.time()
            chosen = [e for e in page if wanted is None or e.type in wanted]
            for low in range(0, len(chosen), sender.chunk):
                chunk = chosen[low : low + sender.chunk]
                if not await self._send(sink, sender, chunk, position):
                    return
                position = chunk[-1].sequence
                if loop.time() - recorded >= RECORD_EVERY_S:
                    if not await stored.delivered(self.store, sink, self.owner, position):
                        return  # deleted, or the lease went to another process
                    recorded = loop.time()
            position = page[-1].sequence
            if not await stored.delivered(self.store, sink, self.owner, position):
                return

    async def _send(
        self, sink: Sink, sender: Transport, events: list[StoredEvent], sent: int
    ) -> bool:
        """Send until acknowledged (`sent`: the last event acknowledged before them);
        False when the sink is no longer ours to serve."""
        messages = [(f"{sink.tenant}:{event.sequence}", event) for event in events]
        while True:
            try:
                await sender.send_all(messages)
                return True
            except DeliveryError as exc:
                failures = await stored.failed(
                    self.store, sink, self.owner, str(exc), self.settings.sink_retry_max_s, sent
                )
                if failures is None:
                    return False
                wait = backoff_s(failures, self.settings.sink_retry_max_s)
                log.warning("sink %s of %s: %s; retrying in %.0f s", sink.id, sink.tenant, exc,
                            wait)  # fmt: skip
                if not await self._sleep(sink, wait):
                    return False

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
