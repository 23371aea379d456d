"""What a group commit claims, reads and locks: the rows new documents name, the ids
they take, the transaction rows and balance heads to lock (always sorted, so that two
commits never deadlock), and the owned accounts to check."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from app.ledger.documents import Status, reversal_id
from app.ledger.records import AccountKey, Group, HeadKey, Job, JobKind, Plan, Transaction, TxnKey


def unrecorded(created: Iterable[tuple[str, str]], plan: Plan) -> list[tuple[str, str]]:
    """The accounts (tenant, id) a batch created for its new documents that none of the
    transactions it applies names, sorted: those of an atomic group that failed, of a
    document refused without being recorded, or named only by documents recorded FAILED.
    Only applied transactions create accounts, so nothing of these may remain."""
    if not created:
        return []
    named = {
        (key[0], line.account)
        for rows in (plan.inserts, plan.updates)
        for key, row in rows.items()
        if row.status is not Status.FAILED
        for line in row.lines
    }
    return sorted(set(created) - named)


def lock_keys(groups: Iterable[Group], taken: Iterable[TxnKey] = ()) -> list[TxnKey]:
    """The transaction rows a batch locks, sorted: the targets of its flips with their
    reversal ids, and the ids of new documents that were `taken` already."""
    keys: set[TxnKey] = set(taken)
    for group in groups:
        for job in group.jobs:
            if job.kind is not JobKind.CREATE:
                keys.add((job.tenant, job.transaction_id))
            if job.kind is JobKind.CANCEL:
                keys.add((job.tenant, reversal_id(job.transaction_id)))
    return sorted(keys)


def claimed_ids(groups: Iterable[Group]) -> list[TxnKey]:
    """The ids new documents claim, sorted."""
    return sorted(
        {(job.tenant, job.transaction_id) for group in groups for job in group.jobs
         if job.kind is JobKind.CREATE}
    )  # fmt: skip


def is_new(job: Job, rows: Mapping[TxnKey, Transaction]) -> bool:
    return job.kind is JobKind.CREATE and (job.tenant, job.transaction_id) not in rows


def draft_keys(job: Job) -> set[HeadKey]:
    assert job.draft is not None
    return {(job.tenant, line.account, line.currency) for line in job.draft.lines}


def claimed_heads(groups: Iterable[Group]) -> list[tuple[str, str, str, str]]:
    """The balance heads new documents name, each with the id that claims it, sorted:
    created if missing unless the id is taken, then checked."""
    keys: set[tuple[str, str, str, str]] = set()
    for group in groups:
        for job in group.jobs:
            if job.kind is JobKind.CREATE:
                keys.update((*key, job.transaction_id) for key in draft_keys(job))
    return sorted(keys)


def head_keys(groups: Iterable[Group], rows: Mapping[TxnKey, Transaction]) -> list[HeadKey]:
    """The balance heads a batch locks, sorted: the lines of every document it changes."""
    keys: set[HeadKey] = set()
    for group in groups:
        for job in group.jobs:
            if job.kind is JobKind.CREATE:
                if is_new(job, rows) and job.failure is None:
                    keys |= draft_keys(job)
            else:
                row = rows.get((job.tenant, job.transaction_id))
                if row is not None:
                    keys.update((job.tenant, ln.account, ln.currency) for ln in row.lines)
    return sorted(keys)


def debited(
    group: Group, rows: Mapping[TxnKey, Transaction], owned: set[AccountKey]
) -> set[AccountKey]:
    """The accounts the new documents of a group take money out of (negative lines)
    that step 1 found owned."""
    return {
        key
        for job in group.jobs
        if job.kind is JobKind.CREATE
        and job.draft is not None
        # A repeated id is answered from its row: nothing moves.
        and (job.tenant, job.transaction_id) not in rows
        for line in job.draft.lines
        if line.amount < 0 and (key := (job.tenant, line.account)) in owned
    }


def reversible(groups: Sequence[Group], rows: Mapping[TxnKey, Transaction]) -> set[AccountKey]:
    """The accounts a reversal may debit (those the transaction paid into), for every
    cancel whose transaction is, or may be by its turn in the batch, COMPLETED: checked
    when the reversal is applied (`Applier.cancel`)."""
    return {
        (job.tenant, line.account)
        for group in groups
        for job in group.jobs
        if job.kind is JobKind.CANCEL
        and (row := rows.get((job.tenant, job.transaction_id))) is not None
        and row.status in (Status.PENDING, Status.COMPLETED)
        for line in row.lines
        if line.amount > 0
    }
