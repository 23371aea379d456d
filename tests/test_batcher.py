"""The in-process batcher: gathering, whole groups, and failures that stay contained."""

import asyncio
from collections.abc import Sequence

import pytest

from app.ledger.batcher import Batcher
from app.ledger.errors import Unavailable
from app.ledger.records import Group, Job, JobKind, Result


def group(tid: str, size: int = 1) -> Group:
    return Group(tuple(Job(JobKind.EXECUTE, "t", f"{tid}-{i}") for i in range(size)))


class Recorder:
    """A flush that records each batch and answers one empty result per job."""

    def __init__(self, fail_on: str | None = None, error: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.error = error

    async def __call__(self, groups: Sequence[Group]) -> list[list[Result]]:
        ids = [g.jobs[0].transaction_id for g in groups]
        self.batches.append(ids)
        await asyncio.sleep(0)
        if self.error is not None and (self.fail_on is None or self.fail_on in ids):
            raise self.error
        return [[Result() for _ in g.jobs] for g in groups]


async def test_concurrent_requests_share_one_flush() -> None:
    flush = Recorder()
    batcher = Batcher(flush, batch_size_max=100, batch_wait_ms=5)
    results = await asyncio.gather(*(batcher.submit(group(str(i))) for i in range(10)))
    assert [len(r) for r in results] == [1] * 10
    assert flush.batches == [[f"{i}-0" for i in range(10)]]


async def test_size_limit_takes_whole_groups() -> None:
    flush = Recorder()
    batcher = Batcher(flush, batch_size_max=4, batch_wait_ms=50)
    await asyncio.gather(
        batcher.submit(group("a", 3)), batcher.submit(group("b", 3)), batcher.submit(group("c", 9))
    )
    assert flush.batches == [["a-0"], ["b-0"], ["c-0"]]


async def test_unavailable_fails_every_request_of_the_batch() -> None:
    batcher = Batcher(Recorder(error=Unavailable("down")), batch_size_max=100, batch_wait_ms=5)
    outcomes = await asyncio.gather(
        *(batcher.submit(group(str(i))) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, Unavailable) for o in outcomes)


async def test_an_unexpected_error_fails_only_its_own_request() -> None:
    flush = Recorder(fail_on="bad-0", error=RuntimeError("boom"))
    batcher = Batcher(flush, batch_size_max=100, batch_wait_ms=5)
    good, bad, other = await asyncio.gather(
        batcher.submit(group("good")), batcher.submit(group("bad")), batcher.submit(group("x")),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(bad, RuntimeError)
    assert good == [Result()]
    assert other == [Result()]
    assert flush.batches == [["good-0", "bad-0", "x-0"], ["good-0"], ["bad-0"], ["x-0"]]


async def test_close_fails_what_still_waits() -> None:
    batcher = Batcher(Recorder(), batch_size_max=100, batch_wait_ms=10_000)
    waiting = asyncio.ensure_future(batcher.submit(group("late")))
    await asyncio.sleep(0)
    await batcher.close()
    with pytest.raises(Unavailable):
        await waiting


async def test_past_queue_max_a_group_is_refused_at_once() -> None:
    flush = Recorder()
    batcher = Batcher(flush, batch_size_max=100, batch_wait_ms=50, queue_max=3)
    first = asyncio.ensure_future(batcher.submit(group("a", 2)))
    second = asyncio.ensure_future(batcher.submit(group("b", 1)))
    await asyncio.sleep(0)
    assert batcher.jobs_waiting == 3
    with pytest.raises(Unavailable, match="overloaded"):
        await batcher.submit(group("c", 1))
    assert [len(r) for r in await asyncio.gather(first, second)] == [2, 1]
    assert flush.batches == [["a-0", "b-0"]]
    # Nothing waits: a group larger than the bound runs alone.
    assert len(await batcher.submit(group("d", 5))) == 5
