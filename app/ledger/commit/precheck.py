"""The unlocked check: a new document that cannot fit the committed heads fails before
any balance is locked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from app.ledger.commit.claim import draft_keys, is_new
from app.ledger.documents import Draft, Mode
from app.ledger.money import AMOUNT_LIMIT, EXACT
from app.ledger.records import (
    Group,
    HeadKey,
    Job,
    JobKind,
    Transaction,
    TxnKey,
)
from app.ledger.rules import ZERO, Effect, Head, Rule, apply_lines, timestamp_failure


def unlocked_failure(draft: Draft, heads: Mapping[tuple[str, str], Head]) -> dict[str, Any] | None:
    """Step 2: the rules against the committed heads, which hold every open hold."""
    if draft.timestamp is not None:
        problem = timestamp_failure(heads.values(), draft.timestamp)
        if problem is not None:
            return problem
    effect = Effect.HOLD if draft.mode is Mode.PENDING else Effect.POST
    return apply_lines(heads, draft.lines, effect).failure


def precheck(
    groups: Sequence[Group],
    rows: Mapping[TxnKey, Transaction],
    heads: Mapping[HeadKey, Head],
) -> list[Group]:
    """Mark each new document that cannot fit the committed heads with its failure. A
    document touching a head missing from `heads`, or needing room in a head that a job
    before it in the batch changes (an earlier credit may be what it spends), is left
    to the check under lock, which applies the jobs in order."""
    if _all_fit(groups, rows, heads):
        return list(groups)
    checked = []
    changed: set[HeadKey] = set()
    for group in groups:
        jobs = []
        for job in group.jobs:
            keys = draft_keys(job) if is_new(job, rows) and job.failure is None else set()
            if keys and keys <= heads.keys() and not _room(job, heads) & changed:
                assert job.draft is not None
                view = {(k[1], k[2]): heads[k] for k in keys}
                problem = unlocked_failure(job.draft, view)
                if problem is not None:
                    job = replace(job, failure=problem)
            changed |= keys if job.failure is None else set()
            if job.kind is not JobKind.CREATE and (
                row := rows.get((job.tenant, job.transaction_id))
            ):
                changed.update((job.tenant, line.account, line.currency) for line in row.lines)
            jobs.append(job)
        checked.append(replace(group, jobs=tuple(jobs)))
    return checked


def _all_fit(
    groups: Sequence[Group], rows: Mapping[TxnKey, Transaction], heads: Mapping[HeadKey, Head]
) -> bool:
    """Whether every new document fits the committed heads even if all of the batch's
    amounts were applied to them at once, every debit before any credit: then none can
    fail alone, and checking them one by one (a second apply of every line; a fifth of a
    large group commit's Python time) is skipped."""
    moved: dict[HeadKey, list[Decimal]] = {}  # [out, in] of each head
    for group in groups:
        for job in group.jobs:
            if not is_new(job, rows) or job.failure is not None:
                continue
            assert job.draft is not None
            at = job.draft.timestamp
            for line in job.draft.lines:
                key = (job.tenant, line.account, line.currency)
                if at is not None:
                    head = heads.get(key)
                    if head is not None and head.last_ts is not None and at < head.last_ts:
                        return False
                if (sums := moved.get(key)) is None:
                    sums = moved[key] = [ZERO, ZERO]
                if line.amount < 0:
                    sums[0] = EXACT.subtract(sums[0], line.amount)
                else:
                    sums[1] = EXACT.add(sums[1], line.amount)
    for key, (debit, credit) in moved.items():
        head = heads.get(key)
        if head is None:
            continue  # left to the check under lock, as one by one
        largest = max(abs(head.posted), abs(head.pending_in), abs(head.pending_out))
        if EXACT.add(largest, EXACT.add(debit, credit)) >= AMOUNT_LIMIT:
            return False
        if head.rule is Rule.NON_NEGATIVE:
            if debit and head.available < debit:
                return False
        elif head.rule is Rule.NON_POSITIVE and credit and \
                EXACT.add(head.posted, EXACT.add(head.pending_in, credit)) > 0:  # fmt: skip
            return False
    return True


def _room(job: Job, heads: Mapping[HeadKey, Head]) -> set[HeadKey]:
    """The heads a new document needs room in: those it takes money out of, and those of
    `non_positive` accounts it pays into."""
    assert job.draft is not None
    room = set()
    for line in job.draft.lines:
        key = (job.tenant, line.account, line.currency)
        if line.amount < 0 or heads[key].rule is Rule.NON_POSITIVE:
            room.add(key)
    return room
