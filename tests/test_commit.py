"""The group commit's steps against a fake port: what is read, locked and written, and
in which order, without a database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.ledger.commit import COMMIT_ATTEMPTS, IdsTaken, Recorded, commit_groups, group_commit
from app.ledger.commit.apply import apply_groups
from app.ledger.documents import Mode, Status
from app.ledger.errors import Unavailable
from app.ledger.keys import Authority
from app.ledger.records import (
    AccountKey,
    Change,
    Group,
    HeadKey,
    Job,
    JobKind,
    Plan,
    Transaction,
    TxnKey,
)
from app.ledger.rules import Head, Rule
from tests.builders import create, heads

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


class FakePort:
    """Accounts and heads in memory; every call noted in `calls`."""

    def __init__(
        self,
        heads: dict[HeadKey, Head],
        rows: dict[TxnKey, Transaction],
        owners: dict[AccountKey, frozenset[str]] | None = None,
    ) -> None:
        self.heads = heads
        self.rows = rows
        self.owners = owners or {}
        self.calls: list[str] = []
        self.written: tuple[Plan, Sequence[AccountKey], Sequence[Change]] | None = None
        self.ahead: list[Plan] = []  # what write_rows was given, in order

    async def record_and_read(
        self, claimed: Sequence[tuple[str, str, str, str]], ids: Sequence[TxnKey]
    ) -> Recorded:
        self.calls.append("record_and_read")
        recorded = Recorded(taken=[key for key in ids if key in self.rows])
        for tenant, account, currency, _ in claimed:
            key = (tenant, account, currency)
            if key not in self.heads:
                self.heads[key] = Head(account, currency, Rule.NON_NEGATIVE)
                recorded.created[(tenant, account)] = ("non_negative", NOW)
            else:
                recorded.heads[key] = self.heads[key]
            if (tenant, account) in self.owners:
                recorded.owned.add((tenant, account))
        return recorded

    async def lock_owners(self, keys: Sequence[AccountKey]) -> dict[AccountKey, frozenset[str]]:
        self.calls.append("lock_owners")
        assert list(keys) == sorted(keys), "locks are taken in sorted order"
        return {key: self.owners[key] for key in keys if key in self.owners}

    async def lock_transactions(self, keys: Sequence[TxnKey]) -> dict[TxnKey, Transaction]:
        self.calls.append("lock_transactions")
        return {key: self.rows[key] for key in keys if key in self.rows}

    async def lock_heads(
        self, keys: Sequence[HeadKey], read: Mapping[HeadKey, Head]
    ) -> tuple[dict[HeadKey, Head], datetime]:
        self.calls.append("lock_heads")
        assert list(keys) == sorted(keys), "locks are taken in sorted order"
        return {key: self.heads[key] for key in keys}, NOW

    async def clock(self) -> datetime:
        self.calls.append("clock")
        return NOW

    async def write_rows(self, plan: Plan) -> None:
        self.calls.append("write_rows")
        self.ahead.append(plan)

    async def write_and_commit(
        self, plan: Plan, unused: Sequence[AccountKey], changes: Sequence[Change]
    ) -> None:
        self.calls.append("write_and_commit")
        self.written = (plan, unused, changes)


def transfer(transaction_id: str, amount: str) -> Group:
    return create(transaction_id, "alice", "bob", amount)


def funded() -> dict[HeadKey, Head]:
    return heads(version=0, alice="10")


def types(changes: Sequence[Change]) -> list[str]:
    return [c.type.value for c in changes]


async def test_a_transfer_reads_locks_in_order_and_writes_with_its_log() -> None:
    port = FakePort(funded(), {})
    [[result]] = await group_commit(port, [transfer("t1", "4")])
    assert result.error is None
    assert result.transaction is not None
    assert result.transaction.status is Status.COMPLETED
    assert port.calls == ["record_and_read", "lock_heads", "write_and_commit"]
    assert port.written is not None
    plan, unused, changes = port.written
    assert [e.entry.posted for e in plan.entries] == [Decimal(6), Decimal(4)]
    assert unused == []
    # bob was created by this first use: his account enters the log first.
    assert types(changes) == ["account.created", "transaction.completed"]


async def test_a_document_that_cannot_fit_fails_without_a_balance_lock() -> None:
    port = FakePort(funded(), {})
    port.heads[("t", "bob", "USD")] = Head("bob", "USD", Rule.NON_NEGATIVE)
    [[result]] = await group_commit(port, [transfer("t2", "11")])
    assert result.error is not None
    assert result.error.code == "insufficient_funds"
    assert port.calls == ["record_and_read", "clock", "write_and_commit"]
    assert port.written is not None
    assert types(port.written[2]) == ["transaction.failed"]


async def test_a_failed_document_leaves_the_accounts_it_made_unused() -> None:
    port = FakePort({}, {})
    [[result]] = await group_commit(port, [transfer("t3", "1")])
    assert result.error is not None
    assert port.written is not None
    _, unused, changes = port.written
    assert unused == [("t", "alice"), ("t", "bob")]
    assert types(changes) == ["transaction.failed"]


async def test_a_taken_id_is_locked_and_answered_from_its_row() -> None:
    port = FakePort(funded(), {})
    [[first]] = await group_commit(port, [transfer("t4", "1")])
    assert first.transaction is not None
    port.rows[("t", "t4")] = first.transaction
    port.calls.clear()
    [[again]] = await group_commit(port, [transfer("t4", "1")])
    assert again.transaction == first.transaction
    assert again.created is False
    assert port.calls == ["record_and_read", "lock_transactions", "clock", "write_and_commit"]
    assert port.written is not None
    assert port.written[2] == []


async def test_an_owned_account_debited_without_its_signer_refuses_the_group_alone() -> None:
    port = FakePort(funded(), {}, owners={("t", "alice"): frozenset({"k1"})})
    signed = replace(transfer("t2", "3"), authority=Authority(True, frozenset({("alice", "k1")})))
    wrong = replace(transfer("t3", "1"), authority=Authority(True, frozenset({("alice", "k0")})))
    results = await group_commit(port, [transfer("t1", "4"), signed, wrong])
    assert [type(r[0].error).__name__ for r in results] == [
        "SignatureRequired", "NoneType", "SignatureInvalid"]  # fmt: skip
    assert port.calls == ["record_and_read", "lock_heads", "lock_owners", "write_and_commit"]
    assert port.written is not None
    plan, _, _ = port.written
    assert list(plan.inserts) == [("t", "t2")]
    assert plan.heads[("t", "alice", "USD")].posted == 7


async def test_a_reversal_out_of_an_owned_account_needs_its_signer() -> None:
    port = FakePort(funded(), {}, owners={("t", "bob"): frozenset({"k1"})})
    await group_commit(port, [transfer("t1", "4")])
    assert port.written is not None
    port.rows = dict(port.written[0].inserts)
    port.heads.update(port.written[0].heads)
    cancel = Group((Job(JobKind.CANCEL, "t", "t1"),))
    [[refused]] = await group_commit(port, [cancel])
    assert type(refused.error).__name__ == "SignatureRequired"
    signed = replace(cancel, authority=Authority(True, frozenset({("bob", "k1")})))
    [[done]] = await group_commit(port, [signed])
    assert done.error is None
    assert done.transaction is not None
    assert done.transaction.status is Status.REVERSED


async def test_a_large_commit_writes_its_runs_ahead_and_records_what_one_pass_would() -> None:
    """Past PIPELINE_RUN jobs, each run's rows are written while the next is applied; the
    rows written, ahead and with the commit, are those of applying everything at once:
    a hold written ahead and executed later in the commit is an update, an atomic group
    that fails leaves nothing."""
    holds = [
        Job(JobKind.CREATE, "t", f"p{i}", replace(transfer(f"p{i}", "1").jobs[0].draft,
                                                  mode=Mode.PENDING))  # type: ignore[type-var]
        for i in range(300)
    ]  # fmt: skip
    failing = Group(transfer("a1", "1").jobs + transfer("a2", "10000").jobs, atomic=True)
    groups = [
        Group(tuple(holds)),
        Group(tuple(Job(JobKind.EXECUTE, "t", f"p{i}") for i in range(10))),
        failing,
    ]
    heads = {("t", "alice", "USD"): Head("alice", "USD", Rule.NON_NEGATIVE, Decimal(250)),
             ("t", "bob", "USD"): Head("bob", "USD", Rule.NON_NEGATIVE)}  # fmt: skip
    port = FakePort(dict(heads), {})
    results = await group_commit(port, groups)
    assert port.calls == ["record_and_read", "lock_transactions", "lock_heads", "write_rows",
                          "write_and_commit"]  # fmt: skip
    whole, expected = apply_groups(groups, {}, heads, NOW)
    assert [[r.error and r.error.code for r in g] for g in results] == [
        [r.error and r.error.code for r in g] for g in expected
    ]
    assert [r.error is None for r in results[0]] == [True] * 250 + [False] * 50
    assert port.written is not None
    rest = port.written[0]
    [ahead] = port.ahead
    assert len(ahead.inserts) == 256
    assert not ahead.heads
    assert not ahead.updates
    assert [*ahead.entries, *rest.entries] == whole.entries
    assert [*ahead.postings, *rest.postings] == whole.postings
    final = {**ahead.inserts, **rest.inserts, **rest.updates}
    assert final == {**whole.inserts, **whole.updates}
    assert {key[1] for key in rest.updates} == {f"p{i}" for i in range(10)}
    assert rest.heads == whole.heads
    assert [c.transaction for c in rest.changes] == [c.transaction for c in whole.changes]


async def test_a_commit_whose_ids_were_taken_meanwhile_runs_again_and_finds_them() -> None:
    """The port raises `IdsTaken` when another process recorded a new id after step 1
    looked; the engine runs the commit again on a new port, which finds it taken."""
    recorded_elsewhere = dict[TxnKey, Transaction]()
    ports: list[FakePort] = []

    @asynccontextmanager
    async def begin() -> AsyncIterator[FakePort]:
        port = FakePort(funded(), dict(recorded_elsewhere))
        ports.append(port)
        yield port
        if len(ports) == 1:  # the first write meets the id another process recorded
            [[first]] = first_results
            assert first.transaction is not None
            recorded_elsewhere[("t", "t1")] = first.transaction
            raise IdsTaken("t1")

    first_results = await group_commit(FakePort(funded(), {}), [transfer("t1", "4")])
    [[result]] = await commit_groups(begin, [transfer("t1", "4")])
    assert len(ports) == 2
    assert ports[1].calls[:2] == ["record_and_read", "lock_transactions"]
    assert result.transaction is not None
    assert not result.created  # answered from the row the other process recorded


async def test_ids_taken_again_and_again_are_unavailable() -> None:
    attempts = 0

    @asynccontextmanager
    async def begin() -> AsyncIterator[FakePort]:
        nonlocal attempts
        attempts += 1
        yield FakePort(funded(), {})
        raise IdsTaken("t1")

    with pytest.raises(Unavailable):
        await commit_groups(begin, [transfer("t1", "4")])
    assert attempts == COMMIT_ATTEMPTS
