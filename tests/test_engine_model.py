"""The pure engine against a plain model, by hypothesis' stateful testing: any sequence
of creates (pending and immediate), executes, voids and reversals leaves the engine's
balances equal to the model's, every rule kept, every currency summing to zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from app.ledger.commit.apply import apply_groups
from app.ledger.documents import Draft, Line, Mode, Status
from app.ledger.records import Group, Job, JobKind, Transaction
from app.ledger.rules import Head, Rule

TENANT = "t"
ACCOUNTS = ("a", "b", "c", "bank")
RULES = {"a": Rule.NON_NEGATIVE, "b": Rule.NON_NEGATIVE, "c": Rule.NON_POSITIVE,
         "bank": Rule.ANY}  # fmt: skip
START = datetime(2026, 11, 30, tzinfo=UTC)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.heads = {(TENANT, name, "USD"): Head(name, "USD", RULES[name]) for name in ACCOUNTS}
        self.rows: dict[tuple[str, str], Transaction] = {}
        self.now = START
        self.count = 0
        # The model: per account, posted and held in/out, from what the engine answered.
        self.posted = dict.fromkeys(ACCOUNTS, Decimal(0))
        self.pending_in = dict.fromkeys(ACCOUNTS, Decimal(0))
        self.pending_out = dict.fromkeys(ACCOUNTS, Decimal(0))

    def _run(self, job: Job) -> Transaction | None:
        self.now += timedelta(seconds=1)
        plan, [[result]] = apply_groups([Group((job,))], self.rows, self.heads, self.now)
        self.heads.update(plan.heads)
        for key, row in {**plan.inserts, **plan.updates}.items():
            self.rows[key] = row
        return result.transaction if result.error is None else None

    def _allowed(self, name: str) -> bool:
        """The account's rule holds in the model."""
        rule = RULES[name]
        if rule is Rule.NON_NEGATIVE:
            return self.posted[name] - self.pending_out[name] >= 0
        if rule is Rule.NON_POSITIVE:
            return self.posted[name] + self.pending_in[name] <= 0
        return True

    @rule(
        source=st.sampled_from(ACCOUNTS),
        dest=st.sampled_from(ACCOUNTS),
        amount=st.integers(1, 50),
        pending=st.booleans(),
    )
    def create(self, source: str, dest: str, amount: int, pending: bool) -> None:
        if source == dest:
            return
        self.count += 1
        tid = f"t{self.count}"
        lines = (Line(source, "USD", Decimal(-amount)), Line(dest, "USD", Decimal(amount)))
        mode = Mode.PENDING if pending else Mode.IMMEDIATE
        draft = Draft(tid, mode, lines, {}, None, None, tid)
        # What the model says: apply, then check both rules; refuse if either breaks.
        before = (dict(self.posted), dict(self.pending_in), dict(self.pending_out))
        if pending:
            self.pending_out[source] += amount
            self.pending_in[dest] += amount
        else:
            self.posted[source] -= amount
            self.posted[dest] += amount
        fits = self._allowed(source) and self._allowed(dest)
        if not fits:
            self.posted, self.pending_in, self.pending_out = before
        row = self._run(Job(JobKind.CREATE, TENANT, tid, draft))
        assert (row is not None) == fits, (tid, source, dest, amount, pending)
        stored = self.rows[(TENANT, tid)]
        assert stored.status is (
            Status.FAILED if not fits else Status.PENDING if pending else Status.COMPLETED
        )

    def _with(self, status: Status) -> list[Transaction]:
        return sorted(
            (r for r in self.rows.values() if r.status is status and r.reverses is None),
            key=lambda r: r.id,
        )

    @precondition(lambda self: bool(self._with(Status.PENDING)))
    @rule(pick=st.integers(0, 1000), execute=st.booleans())
    def settle(self, pick: int, execute: bool) -> None:
        pending = self._with(Status.PENDING)
        row = pending[pick % len(pending)]
        kind = JobKind.EXECUTE if execute else JobKind.CANCEL
        done = self._run(Job(kind, TENANT, row.id))
        assert done is not None
        assert done.status is (Status.COMPLETED if execute else Status.VOIDED)
        for line in row.lines:
            side = self.pending_in if line.amount > 0 else self.pending_out
            side[line.account] -= abs(line.amount)
            if execute:
                self.posted[line.account] += line.amount

    @precondition(lambda self: bool(self._with(Status.COMPLETED)))
    @rule(pick=st.integers(0, 1000))
    def reverse(self, pick: int) -> None:
        completed = self._with(Status.COMPLETED)
        row = completed[pick % len(completed)]
        before = dict(self.posted)
        for line in row.lines:
            self.posted[line.account] -= line.amount
        fits = all(self._allowed(line.account) for line in row.lines)
        if not fits:
            self.posted = before
        done = self._run(Job(JobKind.CANCEL, TENANT, row.id))
        assert (done is not None) == fits
        if fits:
            assert done is not None
            assert done.status is Status.REVERSED

    @invariant()
    def balances_equal_the_model_and_sum_to_zero(self) -> None:
        heads = [self.heads[(TENANT, name, "USD")] for name in ACCOUNTS]
        for name, head in zip(ACCOUNTS, heads, strict=True):
            assert (head.posted, head.pending_in, head.pending_out) == (
                self.posted[name],
                self.pending_in[name],
                self.pending_out[name],
            ), name
            # The engine's heads themselves keep each rule, and sum to zero: checked on
            # what the engine wrote, not on the model it is compared with.
            if head.rule is Rule.NON_NEGATIVE:
                assert head.posted - head.pending_out >= 0, name
            elif head.rule is Rule.NON_POSITIVE:
                assert head.posted + head.pending_in <= 0, name
        assert sum(h.posted for h in heads) == 0
        assert sum(h.pending_in for h in heads) == sum(h.pending_out for h in heads)


EngineMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, derandomize=True, deadline=None
)
test_engine_against_the_model = EngineMachine.TestCase
