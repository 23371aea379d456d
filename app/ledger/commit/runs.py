"""A large group commit applied in runs: each run's rows are written while the next run
is applied (the apply step itself, `apply.py`, knows nothing of it)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from app.ledger.commit.apply import Applier
from app.ledger.commit.port import CommitPort
from app.ledger.records import (
    AccountKey,
    Group,
    HeadKey,
    Plan,
    Result,
    Transaction,
    TxnKey,
)
from app.ledger.rules import Head

# A group commit of more jobs than this is applied in runs of about this many, and each
# run's rows are written while the next run is applied.
PIPELINE_RUN = 256


async def apply_in_runs(
    port: CommitPort,
    groups: Sequence[Group],
    rows: Mapping[TxnKey, Transaction],
    heads: Mapping[HeadKey, Head],
    now: datetime,
    owners: Mapping[AccountKey, frozenset[str]],
) -> tuple[Plan, Plan, list[list[Result]]]:
    """Apply every group in arrival order: the whole plan, what is left of it to write
    with the commit, and one list of results per group.

    Applying (Python) and writing (PostgreSQL) both happen under the balance locks, and
    how long those are held bounds how many large commits sharing accounts follow each
    other a second; a large commit overlaps the two, run by run.
    """
    applier = Applier(rows, heads, now, owners)
    taken = Taken(applier)
    runs = slices(groups, PIPELINE_RUN)
    applied: list[list[Result]] = [[] for _ in groups]
    writing: asyncio.Future[None] | None = None
    try:
        for n, run in enumerate(runs):
            for i, group in run:
                applied[i] += applier.group(group)
            if n == len(runs) - 1:
                break  # the last run is written with the rest
            part = taken.take()
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(port.write_rows(part))
            await asyncio.sleep(0)  # the write goes out before the next run is applied
    finally:
        if writing is not None:
            await writing
    return applier.plan, taken.rest(), applied


class Taken:
    """What of an applier's plan has been handed out to be written ahead of the rest."""

    def __init__(self, applier: Applier) -> None:
        self.applier = applier
        self.entries = 0
        self.postings = 0

    def take(self) -> Plan:
        """The journal rows, new transactions and postings recorded since the last take,
        to be written while later groups are applied (never in the middle of a group: an
        atomic group that fails is undone from the plan). Heads, flips and the log stay
        for the rest of the plan, which `rest` gives."""
        plan = self.applier.plan
        part = Plan(
            entries=plan.entries[self.entries :],
            inserts={k: row for k, row in plan.inserts.items() if k not in self.applier.written},
            postings=plan.postings[self.postings :],
        )
        self.applier.written.update(part.inserts)
        self.entries, self.postings = len(plan.entries), len(plan.postings)
        return part

    def rest(self) -> Plan:
        """The plan without what `take` handed out, once every group is applied."""
        plan = self.applier.plan
        return replace(self.take(), heads=plan.heads, updates=plan.updates,
                       changes=plan.changes, proofs=plan.proofs)  # fmt: skip


def slices(groups: Sequence[Group], size: int) -> list[list[tuple[int, Group]]]:
    """The groups in runs of about `size` jobs, each with its index: an atomic group
    whole, another cut into groups of its jobs in order (they apply alone anyway)."""
    runs: list[list[tuple[int, Group]]] = [[]]
    count = 0
    for i, group in enumerate(groups):
        parts = [group] if group.atomic else [
            replace(group, jobs=group.jobs[low : low + size])
            for low in range(0, len(group.jobs), size)
        ]  # fmt: skip
        for part in parts:
            if count and count + len(part.jobs) > size:
                runs.append([])
                count = 0
            runs[-1].append((i, part))
            count += len(part.jobs)
    return runs
