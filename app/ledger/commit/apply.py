"""The apply step of a group commit, in pure code: jobs applied in arrival order to the
locked state.

The store locks the transaction rows and the union of balance heads of a batch (sorted),
reads the clock, and hands them here; `apply_jobs` returns every row to write and one
result per job. A job that cannot fit fails alone; an atomic group fails as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from app.ledger.documents import (
    Cancel,
    Line,
    Mode,
    Status,
    can_transition,
    cancel_action,
    execute_is_needed,
    reversal_id,
)
from app.ledger.errors import (
    BatchFailed,
    Expired,
    LedgerError,
    NotFound,
    TransactionExists,
    TransactionFailed,
    Unavailable,
)
from app.ledger.keys import UNSIGNED, refusal
from app.ledger.records import (
    ENTERED,
    Change,
    Group,
    HeadKey,
    Job,
    JobKind,
    JournalRow,
    Plan,
    Posting,
    Result,
    Transaction,
    TxnKey,
)
from app.ledger.rules import Effect, Head, apply_lines, timestamp_failure

EXPIRED_FAILURE: Mapping[str, Any] = {
    "code": "expired",
    "detail": "the transaction expired before it was executed",
}


class Applier:
    """The state of one group commit while its jobs are applied in order."""

    def __init__(
        self,
        rows: Mapping[TxnKey, Transaction],
        heads: Mapping[HeadKey, Head],
        now: datetime,
        owners: Mapping[tuple[str, str], frozenset[str]],
    ) -> None:
        self.owners = owners
        self.rows = dict(rows)
        self.heads = dict(heads)
        self.now = now
        self.plan = Plan()
        # The heads the last effect moved, for the log's change that records it.
        self.moved: list[Head] = []
        self.authority = UNSIGNED  # of the group being applied
        # New rows already written ahead of the rest of the plan (`runs.py`): a later
        # change of one is an update.
        self.written: set[TxnKey] = set()

    def group(self, group: Group) -> list[Result]:
        self.authority = group.authority
        if not group.atomic:
            return [self.job(job) for job in group.jobs]
        saved = (dict(self.rows), dict(self.heads), self.plan.copy())
        results = [self.job(job) for job in group.jobs]
        failed = next((i for i, r in enumerate(results) if r.error is not None), None)
        if failed is None:
            return results
        self.rows, self.heads, self.plan = saved
        error = results[failed].error
        assert error is not None
        return [Result(error=error if i == failed else BatchFailed()) for i in range(len(results))]

    def job(self, job: Job) -> Result:
        try:
            if job.kind is JobKind.CREATE:
                return self.create(job)
            key = (job.tenant, job.transaction_id)
            row = self.rows.get(key)
            if row is None:
                raise NotFound(f"no transaction {job.transaction_id}")
            if job.kind is JobKind.EXECUTE:
                return self.execute(job.tenant, row)
            if job.kind is JobKind.CANCEL:
                return self.cancel(job.tenant, row)
            return self.expire(job.tenant, row)
        except LedgerError as error:
            return Result(error=error)
        except KeyError as exc:  # a balance row the store did not lock: never expected
            return Result(error=Unavailable(f"balance {exc} was not locked; retry"))

    # The jobs

    def create(self, job: Job) -> Result:
        draft = job.draft
        assert draft is not None
        key = (job.tenant, draft.id)
        existing = self.rows.get(key)
        if existing is not None:
            if existing.fingerprint != draft.fingerprint:
                raise TransactionExists(f"transaction {draft.id} exists with another body")
            return _stored(existing)
        effect = Effect.HOLD if draft.mode is Mode.PENDING else Effect.POST
        problem = dict(job.failure) if job.failure is not None else None
        if problem is None and draft.timestamp is not None:
            problem = timestamp_failure(self._touched(job.tenant, draft.lines), draft.timestamp)
        at = self.now
        if problem is None:
            problem, at = self._apply(job.tenant, draft.id, draft.lines, effect, draft.timestamp)
        status = Status.FAILED if problem else (
            Status.PENDING if effect is Effect.HOLD else Status.COMPLETED
        )  # fmt: skip
        timestamp = draft.timestamp or at
        row = Transaction(
            id=draft.id,
            status=status,
            mode=draft.mode,
            lines=draft.lines,
            data=draft.data,
            timestamp=timestamp,
            timestamp_given=draft.timestamp is not None,
            created_at=self.now,
            expires_at=draft.expires_at,
            failure=problem,
            reverses=None,
            reversal_id=None,
            fingerprint=draft.fingerprint,
            events=((status, at),),
        )
        self._insert(job.tenant, row)
        if problem is not None:
            return Result(row, created=True, error=TransactionFailed(problem))
        return Result(row, created=True)

    def execute(self, tenant: str, row: Transaction) -> Result:
        if row.status is Status.VOIDED and row.failure == EXPIRED_FAILURE:
            raise Expired(f"transaction {row.id} expired")
        if not execute_is_needed(row.status):
            return Result(row)
        if row.expired(self.now):
            self._release(tenant, row, EXPIRED_FAILURE)
            raise Expired(f"transaction {row.id} expired")
        problem, at = self._apply(tenant, row.id, row.lines, Effect.SETTLE, None)
        assert problem is None, "settling held amounts never breaks a rule"
        return Result(self._update(tenant, replace(row, status=Status.COMPLETED), at))

    def cancel(self, tenant: str, row: Transaction) -> Result:
        action = cancel_action(row.status)
        if action is Cancel.NOTHING:
            return Result(row)
        if action is Cancel.VOID:
            failure = EXPIRED_FAILURE if row.expired(self.now) else None
            return Result(self._release(tenant, row, failure))
        debited = {(tenant, line.account) for line in row.lines if line.amount > 0}
        refused = refusal(self.authority, debited, self.owners)
        if refused is not None:
            raise refused
        reversal_key = (tenant, reversal_id(row.id))
        if reversal_key in self.rows:
            raise TransactionExists(f"transaction {reversal_key[1]} exists already")
        lines = tuple(line.negated() for line in row.lines)
        problem, at = self._apply(tenant, reversal_key[1], lines, Effect.POST, None)
        if problem is not None:
            raise TransactionFailed(problem)
        reversal = Transaction(
            id=reversal_key[1],
            status=Status.COMPLETED,
            mode=Mode.IMMEDIATE,
            lines=lines,
            data={},
            timestamp=at,
            timestamp_given=False,
            created_at=at,
            expires_at=None,
            failure=None,
            reverses=row.id,
            reversal_id=None,
            fingerprint="",
            events=((Status.COMPLETED, at),),
        )
        self._insert(tenant, reversal)
        reversed_row = replace(row, status=Status.REVERSED, reversal_id=reversal.id)
        return Result(self._update(tenant, reversed_row, at))

    def expire(self, tenant: str, row: Transaction) -> Result:
        if row.expired(self.now):
            return Result(self._release(tenant, row, EXPIRED_FAILURE))
        return Result(row)

    # The effects

    def _touched(self, tenant: str, lines: Sequence[Line]) -> list[Head]:
        return [self.heads[(tenant, line.account, line.currency)] for line in lines]

    def _apply(
        self,
        tenant: str,
        transaction_id: str,
        lines: Sequence[Line],
        effect: Effect,
        timestamp: datetime | None,
    ) -> tuple[dict[str, Any] | None, datetime]:
        """Apply lines to the heads; the instant is `timestamp` or the clock, raised to
        the touched heads' last entry so that each account's journal never runs back."""
        view = {(ln.account, ln.currency): self.heads[(tenant, ln.account, ln.currency)]
                for ln in lines}  # fmt: skip
        stamps = [h.last_ts for h in view.values() if h.last_ts is not None]
        at = timestamp or max([self.now, *stamps])
        outcome = apply_lines(view, lines, effect, at)
        if outcome.failure is not None:
            return outcome.failure, at
        for (account, currency), head in outcome.heads.items():
            key = (tenant, account, currency)
            self.heads[key] = self.plan.heads[key] = head
        self.moved = list(outcome.heads.values())
        self.plan.entries += [JournalRow(tenant, transaction_id, e, at) for e in outcome.entries]
        return None, at

    def _release(
        self, tenant: str, row: Transaction, failure: Mapping[str, Any] | None
    ) -> Transaction:
        _, at = self._apply(tenant, row.id, row.lines, Effect.RELEASE, None)
        return self._update(tenant, replace(row, status=Status.VOIDED, failure=failure), at)

    def _insert(self, tenant: str, row: Transaction) -> None:
        key = (tenant, row.id)
        self.rows[key] = self.plan.inserts[key] = row
        if self.authority.proof is not None:
            self.plan.proofs.append((key, self.authority.proof))
        self._log(tenant, row)
        assert row.timestamp is not None
        accounts = dict.fromkeys(line.account for line in row.lines)
        self.plan.postings += [Posting(tenant, row.id, a, row.timestamp) for a in accounts]

    def _update(self, tenant: str, row: Transaction, at: datetime) -> Transaction:
        key = (tenant, row.id)
        assert can_transition(self.rows[key].status, row.status), (self.rows[key].status, row)
        row = replace(row, events=(*row.events, (row.status, at)))
        self.rows[key] = row
        # NOTE: a row inserted by this same batch is written once, in its final state,
        # unless it was written already (ahead, `runs.py`).
        if key in self.plan.inserts and key not in self.written:
            self.plan.inserts[key] = row
        else:
            self.plan.updates[key] = row
        self._log(tenant, row)
        return row

    def _log(self, tenant: str, row: Transaction) -> None:
        # An event is stamped when the batch applied it, whatever the business time.
        moved, self.moved = self.moved, []
        self.plan.changes.append(
            Change(tenant, ENTERED[row.status], self.now, transaction=row, moved=tuple(moved))
        )


def _stored(row: Transaction) -> Result:
    if row.status is Status.FAILED and row.failure is not None:
        return Result(row, error=TransactionFailed(dict(row.failure)))
    return Result(row)


def apply_groups(
    groups: Sequence[Group],
    rows: Mapping[TxnKey, Transaction],
    heads: Mapping[HeadKey, Head],
    now: datetime,
    owners: Mapping[tuple[str, str], frozenset[str]] | None = None,
) -> tuple[Plan, list[list[Result]]]:
    """Apply every group in arrival order; one list of results per group. `owners`:
    the current key ids of the owned accounts reversals here may debit."""
    batch = Applier(rows, heads, now, owners or {})
    results = [batch.group(group) for group in groups]
    return batch.plan, results
