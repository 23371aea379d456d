"""The group commit, step by step (the two-step commit of DESIGN.md), against a port
that the store implements over one database transaction (`app/models/writer.py`).

Steps 1 and 2 of the two-step commit (record, check unlocked) and step 3 (flip under
locks) meet here for a whole batch of documents: what is read, what is locked and in
which order, and what is written, in one place and in the order it happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.ledger.batch import Applier, slices
from app.ledger.errors import LedgerError, Unavailable
from app.ledger.keys import refusal
from app.ledger.locking import (
    claimed_heads,
    claimed_ids,
    debited,
    head_keys,
    lock_keys,
    precheck,
    reversible,
    unrecorded,
)
from app.ledger.records import (
    Account,
    AccountKey,
    Change,
    EventType,
    Group,
    HeadKey,
    Plan,
    Result,
    Transaction,
    TxnKey,
)
from app.ledger.rules import Head, Rule

__all__ = ["COMMIT_ATTEMPTS", "CommitPort", "IdsTaken", "Recorded", "commit_groups", "group_commit"]

# A commit whose new ids another process recorded first runs again this often at most.
COMMIT_ATTEMPTS = 3


class IdsTaken(Exception):
    """Raised by a port when another process recorded one of the commit's new ids after
    step 1 looked: the commit is rolled back, and run again it finds the id taken."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What step 1 found: the committed heads with a known rule, the ids new documents
    claim that are taken already, the accounts (rule, created_at) it created, and the
    accounts named that had keys (owned) when it read them."""

    heads: dict[HeadKey, Head] = field(default_factory=dict)
    taken: list[TxnKey] = field(default_factory=list)
    created: dict[AccountKey, tuple[str, datetime]] = field(default_factory=dict)
    owned: set[AccountKey] = field(default_factory=set)


class CommitPort(Protocol):
    """One database transaction of a group commit, in the order `group_commit` calls it."""

    async def record_and_read(
        self, claimed: Sequence[tuple[str, str, str, str]], ids: Sequence[TxnKey]
    ) -> Recorded:
        """Create the account and balance rows new documents name (sorted), read their
        committed heads without a lock, and find which of `ids` are taken."""
        ...

    async def lock_transactions(self, keys: Sequence[TxnKey]) -> dict[TxnKey, Transaction]:
        """Lock the transaction rows, in the (sorted) order given."""
        ...

    async def lock_heads(
        self, keys: Sequence[HeadKey], read: Mapping[HeadKey, Head]
    ) -> tuple[dict[HeadKey, Head], datetime]:
        """Lock the balance heads in the (sorted) order given, then read the clock. An
        account's rule is taken from the heads `read` unlocked where it was read."""
        ...

    async def clock(self) -> datetime: ...

    async def lock_owners(self, keys: Sequence[AccountKey]) -> dict[AccountKey, frozenset[str]]:
        """Of these accounts, lock the owned ones against a change of keys (shared, in
        the sorted order given) and answer their current key ids."""
        ...

    async def write_rows(self, plan: Plan) -> None:
        """Write a plan's journal rows, new transactions and postings: a large commit's
        runs but the last, ahead of the rest."""
        ...

    async def write_and_commit(
        self, plan: Plan, unused: Sequence[AccountKey], changes: Sequence[Change]
    ) -> None:
        """Write the plan, drop the `unused` accounts, append `changes` to the log, commit."""
        ...


async def commit_groups(
    begin: Callable[[], AbstractAsyncContextManager[CommitPort]], groups: Sequence[Group]
) -> list[list[Result]]:
    """One group commit on a port `begin()` opens (a database transaction), run again on a
    new one when the first found its new ids taken meanwhile."""
    for _ in range(COMMIT_ATTEMPTS):
        try:
            async with begin() as port:
                return await group_commit(port, groups)
        except IdsTaken:
            continue
    raise Unavailable("concurrent requests with the same ids; retry")


async def group_commit(port: CommitPort, groups: Sequence[Group]) -> list[list[Result]]:
    """Apply groups of jobs in arrival order in one database transaction; one list of
    results per group."""
    # 1. Record and check, unlocked: make the rows new documents name, read the
    #    committed heads, and find the ids they claim that are taken already.
    claimed = claimed_heads(groups)
    recorded = await port.record_and_read(claimed, claimed_ids(groups)) if claimed else Recorded()
    # 2. Lock the transaction rows, sorted: concurrent flips of one transaction queue
    #    here, and a taken id's document is answered from its row.
    txn_keys = lock_keys(groups, recorded.taken)
    rows = await port.lock_transactions(txn_keys) if txn_keys else {}
    #    A new document that cannot fit the committed heads fails without a balance lock.
    if recorded.heads:
        groups = precheck(groups, rows, recorded.heads)
    # 3. Lock the balance heads in sorted key order, so no two batches deadlock, and read
    #    the clock once they are held; apply every job to them in order.
    keys = head_keys(groups, rows)
    heads, now = await port.lock_heads(keys, recorded.heads) if keys else ({}, await port.clock())
    # 4. A request that debits an owned account needs a signer among its current keys,
    #    read under a shared lock taken after the balance locks (a change of keys waits
    #    for this commit, or this commit sees the new keys); a refused request records
    #    nothing.
    debits = [debited(group, rows, recorded.owned) for group in groups]
    wanted = sorted(set().union(*debits, reversible(groups, rows)))
    owners = await port.lock_owners(wanted) if wanted else {}
    refused: dict[int, LedgerError] = {}
    for i, (group, accounts) in enumerate(zip(groups, debits, strict=True)):
        error = refusal(group.authority, accounts, owners)
        if error is not None:
            refused[i] = error
    live = [group for i, group in enumerate(groups) if i not in refused]
    plan, rest, applied = await _apply(port, live, rows, heads, now, owners)
    results = _merge(groups, refused, applied)
    # Only applied transactions create accounts; those that stay enter the log first.
    unused = unrecorded(recorded.created, plan)
    dropped = set(unused)
    made = [
        Change(key[0], EventType.ACCOUNT_CREATED, now,
               account=Account(key[1], Rule(rule), {}, created_at))
        for key, (rule, created_at) in sorted(recorded.created.items()) if key not in dropped
    ]  # fmt: skip
    await port.write_and_commit(rest, unused, [*made, *plan.changes])
    return results


# A group commit of more jobs than this is applied in runs of about this many, and each
# run's rows are written while the next run is applied.
PIPELINE_RUN = 256


async def _apply(
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
    runs = slices(groups, PIPELINE_RUN)
    applied: list[list[Result]] = [[] for _ in groups]
    writing: asyncio.Future[None] | None = None
    try:
        for n, run in enumerate(runs):
            for i, group in run:
                applied[i] += applier.group(group)
            if n == len(runs) - 1:
                break  # the last run is written with the rest
            part = applier.take()
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(port.write_rows(part))
            await asyncio.sleep(0)  # the write goes out before the next run is applied
    finally:
        if writing is not None:
            await writing
    return applier.plan, applier.rest(), applied


def _merge(
    groups: Sequence[Group], refused: dict[int, LedgerError], applied: list[list[Result]]
) -> list[list[Result]]:
    """One list of results per group, in order: a refused group's error for each job."""
    results = iter(applied)
    return [
        [Result(error=refused[i])] * len(group.jobs) if i in refused else next(results)
        for i, group in enumerate(groups)
    ]
