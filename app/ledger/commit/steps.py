"""The group commit, step by step (docs/design.md, "How a transaction is applied"),
against a port that the store implements over one database transaction
(`app/models/writer.py`).

Steps 1 and 2 of the two-step commit (record, check unlocked) and step 3 (flip under
locks) meet here for a whole batch of documents: what is read, what is locked and in
which order, and what is written, in one place and in the order it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from app.ledger.commit.claim import (
    claimed_heads,
    claimed_ids,
    debited,
    head_keys,
    lock_keys,
    reversible,
    unrecorded,
)
from app.ledger.commit.port import COMMIT_ATTEMPTS, CommitPort, IdsTaken, Recorded
from app.ledger.commit.precheck import precheck
from app.ledger.commit.runs import apply_in_runs
from app.ledger.errors import LedgerError, Unavailable
from app.ledger.keys import refusal
from app.ledger.records import (
    Account,
    Change,
    EventType,
    Group,
    Result,
)
from app.ledger.rules import Rule


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
    plan, rest, applied = await apply_in_runs(port, live, rows, heads, now, owners)
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


def _merge(
    groups: Sequence[Group], refused: dict[int, LedgerError], applied: list[list[Result]]
) -> list[list[Result]]:
    """One list of results per group, in order: a refused group's error for each job."""
    results = iter(applied)
    return [
        [Result(error=refused[i])] * len(group.jobs) if i in refused else next(results)
        for i, group in enumerate(groups)
    ]
