"""One group commit in pure code: arrival order, failures alone, atomic groups, merging."""

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.ledger.commit import precheck as unlocked
from app.ledger.commit.apply import apply_groups
from app.ledger.commit.claim import claimed_heads, claimed_ids, head_keys, lock_keys, unrecorded
from app.ledger.commit.precheck import precheck
from app.ledger.documents import Mode, Status
from app.ledger.errors import BatchFailed, Expired, InvalidState, NotFound, TransactionExists
from app.ledger.records import Group, Job, JobKind
from app.ledger.rules import Head, Rule
from tests.builders import create, draft, heads

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
D = Decimal


def test_documents_apply_in_arrival_order_and_fail_alone() -> None:
    groups = [create("1", "a", "b", "6"), create("2", "a", "b", "6"), create("3", "a", "b", "4")]
    plan, results = apply_groups(groups, {}, heads(a="10", b="0"), NOW)
    assert [r[0].transaction.status for r in results] == [  # type: ignore[union-attr]
        Status.COMPLETED, Status.FAILED, Status.COMPLETED,
    ]  # fmt: skip
    assert results[1][0].error is not None
    assert results[1][0].error.code == "insufficient_funds"
    assert plan.heads[("t", "a", "USD")].posted == 0
    assert plan.heads[("t", "b", "USD")].posted == 10
    assert [e.entry.seq for e in plan.entries if e.entry.account == "a"] == [2, 3]
    assert len(plan.inserts) == 3
    assert {t.events[-1][0] for t in plan.inserts.values()} == {Status.COMPLETED, Status.FAILED}


def test_atomic_group_fails_whole_and_records_nothing() -> None:
    jobs = (create("1", "a", "b", "6").jobs[0], create("2", "a", "b", "6").jobs[0])
    plan, results = apply_groups([Group(jobs, atomic=True)], {}, heads(a="10", b="0"), NOW)
    assert isinstance(results[0][0].error, BatchFailed)
    assert results[0][1].error is not None
    assert results[0][1].error.code == "insufficient_funds"
    assert (plan.heads, plan.inserts, plan.entries, plan.changes) == ({}, {}, [], [])


def test_same_id_twice_in_one_batch_is_a_repeat() -> None:
    plan, results = apply_groups(
        [create("1", "a", "b", "1"), create("1", "a", "b", "1"), create("1", "a", "b", "2")],
        {},
        heads(a="10", b="0"),
        NOW,
    )
    assert [r[0].created for r in results] == [True, False, False]
    assert isinstance(results[2][0].error, TransactionExists)
    assert plan.heads[("t", "a", "USD")].posted == 9


def test_created_then_executed_in_one_batch_is_written_once() -> None:
    pending = create("1", "a", "b", "4", mode=Mode.PENDING)
    execute = Group((Job(JobKind.EXECUTE, "t", "1"),))
    plan, results = apply_groups([pending, execute], {}, heads(a="10", b="0"), NOW)
    assert results[1][0].error is None
    row = plan.inserts[("t", "1")]
    assert row.status is Status.COMPLETED
    assert [s for s, _ in row.events] == [Status.PENDING, Status.COMPLETED]
    assert plan.updates == {}
    assert [e.entry.kind for e in plan.entries if e.entry.account == "a"] == ["hold", "post"]
    a = plan.heads[("t", "a", "USD")]
    assert (a.posted, a.pending_out) == (6, 0)


def test_execute_decisions_under_lock() -> None:
    pending = create("1", "a", "b", "4", mode=Mode.PENDING, expires_at=NOW - timedelta(1))
    plan, results = apply_groups(
        [
            pending,
            Group((Job(JobKind.EXECUTE, "t", "1"),)),
            Group((Job(JobKind.EXECUTE, "t", "9"),)),
        ],
        {},
        heads(a="10", b="0"),
        NOW,
    )
    assert isinstance(results[1][0].error, Expired)
    assert plan.inserts[("t", "1")].status is Status.VOIDED
    assert plan.inserts[("t", "1")].failure == {
        "code": "expired", "detail": "the transaction expired before it was executed",
    }  # fmt: skip
    assert isinstance(results[2][0].error, NotFound)
    assert plan.heads[("t", "a", "USD")].pending_out == 0


def test_cancel_reverses_and_links() -> None:
    done = create("1", "a", "b", "4")
    plan, results = apply_groups(
        [done, Group((Job(JobKind.CANCEL, "t", "1"),)), Group((Job(JobKind.CANCEL, "t", "1"),))],
        {},
        heads(a="10", b="0"),
        NOW,
    )
    assert results[1][0].transaction is not None
    assert results[1][0].transaction.status is Status.REVERSED
    assert results[2][0].transaction is not None  # already REVERSED: nothing changes
    reversal = plan.inserts[("t", "1.reversal")]
    assert (reversal.status, reversal.reverses) == (Status.COMPLETED, "1")
    assert plan.inserts[("t", "1")].reversal_id == "1.reversal"
    assert plan.heads[("t", "a", "USD")].posted == 10


def test_failed_transaction_cannot_be_executed() -> None:
    _, results = apply_groups(
        [create("1", "a", "b", "40"), Group((Job(JobKind.EXECUTE, "t", "1"),))],
        {},
        heads(a="10", b="0"),
        NOW,
    )
    assert isinstance(results[1][0].error, InvalidState)


def test_lock_and_head_keys_are_sorted_and_skip_prechecked_failures() -> None:
    groups = [create("2", "z", "b", "1"), create("1", "a", "b", "50"),
              Group((Job(JobKind.CANCEL, "t", "0"),))]  # fmt: skip
    assert lock_keys(groups) == [("t", "0"), ("t", "0.reversal")]
    assert lock_keys(groups, [("t", "2")]) == [("t", "0"), ("t", "0.reversal"), ("t", "2")]
    assert claimed_ids(groups) == [("t", "1"), ("t", "2")]
    assert claimed_heads(groups) == [("t", "a", "USD", "1"), ("t", "b", "USD", "1"),
                                     ("t", "b", "USD", "2"), ("t", "z", "USD", "2")]  # fmt: skip
    checked = precheck(groups, {}, heads(a="10", b="0", z="5"))
    assert checked[1].jobs[0].failure is not None
    assert checked[0].jobs[0].failure is None
    assert head_keys(checked, {}) == [("t", "b", "USD"), ("t", "z", "USD")]


def test_accounts_created_for_documents_not_applied_are_unrecorded() -> None:
    """A failed atomic group records nothing; a FAILED document alone is recorded, but
    creates no account: only applied transactions do."""
    failed_atomic = Group(create("1", "a", "x", "50").jobs + create("2", "a", "y", "1").jobs,
                          atomic=True)  # fmt: skip
    groups = [failed_atomic, create("3", "a", "z", "90"), create("4", "a", "y", "1")]
    balances = {**heads(a="10"), **{("t", n, "USD"): Head(n, "USD", Rule.NON_NEGATIVE)
                                    for n in ("x", "y", "z")}}  # fmt: skip
    plan, results = apply_groups(groups, {}, balances, NOW)
    assert [r.error is None for group in results for r in group] == [False, False, False, True]
    created = [("t", "x"), ("t", "y"), ("t", "z")]
    assert unrecorded(created, plan) == [("t", "x"), ("t", "z")]


def test_a_document_may_spend_what_an_earlier_one_of_the_batch_credits() -> None:
    """The unlocked check sees only committed heads: a document whose heads an earlier
    job of the batch changes is left to the check under lock, which applies in order."""
    heads = {("t", "bob", "USD"): Head("bob", "USD", Rule.NON_NEGATIVE),
             ("t", "alice", "USD"): Head("alice", "USD", Rule.NON_NEGATIVE, D(5))}  # fmt: skip
    group = Group((
        Job(JobKind.CREATE, "t", "in", draft("in", "alice", "bob", "5")),
        Job(JobKind.CREATE, "t", "out", draft("out", "bob", "carol", "5")),
        Job(JobKind.CREATE, "t", "broke", draft("broke", "dave", "carol", "1")),
    ))  # fmt: skip
    heads[("t", "carol", "USD")] = Head("carol", "USD", Rule.NON_NEGATIVE)
    heads[("t", "dave", "USD")] = Head("dave", "USD", Rule.NON_NEGATIVE)
    [checked] = precheck([group], {}, heads)
    assert [job.failure is None for job in checked.jobs] == [True, True, False]


def test_precheck_skips_one_by_one_only_when_the_whole_batch_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shortcut (every debit of the batch at once fits) marks exactly what checking
    each document alone marks, in random batches over every rule."""
    rng = random.Random(7)
    names = [f"n{i}" for i in range(6)]
    shortcut_taken = 0
    for _ in range(400):
        instants = [None, NOW - timedelta(hours=1), NOW]
        balances = {}
        for n in names:
            rule, sign = rng.choice(
                [(Rule.NON_NEGATIVE, 1), (Rule.NON_POSITIVE, -1), (Rule.ANY, 1)]
            )
            posted = D(rng.choice([0, 5, 20, 100, -30])) * sign
            balances[("t", n, "USD")] = Head(n, "USD", rule, posted, last_ts=rng.choice(instants))
        groups = []
        for i in range(rng.randrange(1, 8)):
            source, target = rng.sample(names, 2)
            made = draft(str(i), source, target, str(rng.choice([1, 3, 10, 40])))
            if rng.random() < 0.2:  # back-dated
                made = replace(made, timestamp=rng.choice([NOW, NOW - timedelta(hours=1)])
                               - timedelta(minutes=1))  # fmt: skip
            groups.append(Group((Job(JobKind.CREATE, "t", made.id, made),)))
        fast = precheck(groups, {}, balances)
        with monkeypatch.context() as patched:
            patched.setattr(unlocked, "_all_fit", lambda *_: False)
            slow = precheck(groups, {}, balances)
        assert [j.failure for g in fast for j in g.jobs] == [
            j.failure for g in slow for j in g.jobs
        ]
        shortcut_taken += unlocked._all_fit(groups, {}, balances)
    assert 50 < shortcut_taken < 350


def test_documents_that_fit_alone_but_not_together_are_each_checked() -> None:
    groups = [create("1", "a", "b", "6"), create("2", "c", "b", "6"), create("3", "a", "b", "6")]
    balances = heads(a="10", b="0", c="5")
    assert not unlocked._all_fit(groups, {}, balances)
    checked = precheck(groups, {}, balances)
    # The third needs room in a head the first changes: left to the check under lock.
    assert [g.jobs[0].failure is None for g in checked] == [True, False, True]
    assert unlocked._all_fit(groups[:1], {}, balances)
