"""Group commit inside one process: concurrent requests share one database transaction.

Requests wait at most `batch_wait_ms` (or until `batch_size_max` jobs are queued), then
one flush applies them all with one round of locks and one commit. While a flush is in
flight the next batch gathers, so under load batches grow by themselves; past
`queue_max` waiting jobs a new group is refused at once (`Unavailable`), so that an
overload costs clients a retry, never an unbounded wait or unbounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.ledger.errors import Unavailable
from app.ledger.records import Group, Result

log = logging.getLogger("twofold")

Flush = Callable[[Sequence[Group]], Awaitable[list[list[Result]]]]
Observe = Callable[[int, float], None]


@dataclass(slots=True)
class _Waiting:
    group: Group
    future: asyncio.Future[list[Result]]
    since: float


class Batcher:
    def __init__(
        self,
        flush: Flush,
        batch_size_max: int,
        batch_wait_ms: float,
        observe: Observe | None = None,
        queue_max: int = 65_536,
    ) -> None:
        self.flush = flush
        self.queue_max = queue_max
        self.batch_size_max = batch_size_max
        self.batch_wait_s = batch_wait_ms / 1000
        self.observe = observe
        self.waiting: list[_Waiting] = []
        self.jobs_waiting = 0
        self.flushing = False
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def submit(self, group: Group) -> list[Result]:
        """Queue a group of jobs; their results once the batch holding them commits."""
        # A group larger than the bound still runs when nothing waits before it.
        if self.jobs_waiting and self.jobs_waiting + len(group.jobs) > self.queue_max:
            raise Unavailable(
                f"the server is overloaded ({self.jobs_waiting} documents waiting); retry"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Result]] = loop.create_future()
        self.waiting.append(_Waiting(group, future, time.perf_counter()))
        self.jobs_waiting += len(group.jobs)
        if self.jobs_waiting >= self.batch_size_max:
            self._start()
        elif self.timer is None and not self.flushing:
            self.timer = loop.call_later(self.batch_wait_s, self._start)
        return await future

    def _start(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.flushing or not self.waiting:
            return
        taken: list[_Waiting] = []
        count = 0
        # A group is never split; a batch takes whole groups up to the size limit.
        while self.waiting and (not taken or count + len(self.waiting[0].group.jobs)
                                <= self.batch_size_max):  # fmt: skip
            item = self.waiting.pop(0)
            taken.append(item)
            count += len(item.group.jobs)
        self.jobs_waiting -= count
        self.flushing = True
        task = asyncio.get_running_loop().create_task(self._flush(taken))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _flush(self, taken: list[_Waiting]) -> None:
        started = time.perf_counter()
        try:
            await self._deliver(taken)
        finally:
            if self.observe is not None:
                waited = max(started - item.since for item in taken)
                self.observe(sum(len(item.group.jobs) for item in taken), waited)
            self.flushing = False
            if self.waiting:
                self._start()

    async def _deliver(self, taken: list[_Waiting]) -> None:
        try:
            results = await self.flush([item.group for item in taken])
        except Unavailable as exc:
            # The database failed or was lost: nothing of this batch is known to have
            # committed, so every request in it gets a retryable 503.
            for item in taken:
                _fail(item.future, exc)
            return
        except Exception as exc:
            if len(taken) == 1:
                _fail(taken[0].future, exc)
                return
            # NOTE: the batch rolled back whole; alone, only a faulty request fails.
            log.exception("a batch failed; its %d groups run one by one", len(taken))
            for item in taken:
                await self._deliver([item])
            return
        for item, result in zip(taken, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for item in self.waiting:
            _fail(item.future, Unavailable("the server is stopping"))
        self.waiting.clear()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _fail(future: asyncio.Future[list[Result]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
