"""The two-step commit: record, check unlocked, flip under row locks.

The service decides; the store (a `Store`) reads and writes. Nothing here knows
SQL or HTTP, so any number of processes may run it: correctness comes from the
store's row locks, taken in sorted key order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from app.ledger.documents import (
    WORLD,
    Cancel,
    Draft,
    Line,
    Mode,
    Status,
    cancel_action,
    execute_is_needed,
    reversal_id,
)
from app.ledger.errors import (
    AccountExists,
    Expired,
    NotFound,
    TransactionExists,
    TransactionFailed,
)
from app.ledger.money import check_id
from app.ledger.rules import Effect, Entry, Head, Rule, apply_lines, timestamp_failure

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    rule: Rule
    data: Mapping[str, Any]
    created_at: datetime
    heads: tuple[Head, ...] = ()


@dataclass(frozen=True, slots=True)
class Transaction:
    """A transaction as stored, with its state history."""

    id: str
    status: Status
    mode: Mode
    lines: tuple[Line, ...]
    data: Mapping[str, Any]
    timestamp: datetime | None
    timestamp_given: bool
    created_at: datetime
    expires_at: datetime | None
    failure: Mapping[str, Any] | None
    reverses: str | None
    reversal_id: str | None
    fingerprint: str
    events: tuple[tuple[Status, datetime], ...] = ()

    @property
    def keys(self) -> list[Key]:
        return sorted({(line.account, line.currency) for line in self.lines})


@dataclass(frozen=True, slots=True)
class StatusChange:
    id: str
    status: Status
    failure: Mapping[str, Any] | None = None
    reversal_id: str | None = None


@dataclass(frozen=True, slots=True)
class Posting:
    """One account a transaction touches, listed once it leaves RECORDED (for search)."""

    transaction_id: str
    account: str
    timestamp: datetime


def postings(transaction_id: str, lines: Sequence[Line], timestamp: datetime) -> list[Posting]:
    accounts = dict.fromkeys(line.account for line in lines)
    return [Posting(transaction_id, account, timestamp) for account in accounts]


@dataclass(slots=True)
class Changes:
    """Everything one flip writes, in one database transaction."""

    at: datetime
    heads: list[Head] = field(default_factory=list)
    entries: list[tuple[str, Entry]] = field(default_factory=list)
    status_changes: list[StatusChange] = field(default_factory=list)
    inserts: list[Transaction] = field(default_factory=list)
    postings: list[Posting] = field(default_factory=list)


class Unit(Protocol):
    """A database transaction holding the locks of one flip."""

    transaction: Transaction | None
    heads: Mapping[Key, Head]
    now: datetime

    async def write(self, changes: Changes) -> None: ...


class Store(Protocol):
    async def record(self, tenant: str, draft: Draft) -> tuple[Transaction, bool]: ...

    async def heads(self, tenant: str, keys: Sequence[Key]) -> dict[Key, Head]: ...

    def lock(
        self, tenant: str, transaction_id: str, keys: Sequence[Key]
    ) -> AbstractAsyncContextManager[Unit]: ...

    async def transaction(self, tenant: str, transaction_id: str) -> Transaction | None: ...

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> bool: ...

    async def insert_account(
        self, tenant: str, account_id: str, rule: Rule, data: Mapping[str, Any]
    ) -> tuple[Account, bool]: ...

    async def account(self, tenant: str, account_id: str) -> Account | None: ...

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> bool: ...


def _clock_instant(unit: Unit) -> datetime:
    """The database clock, raised to the latest entry of the touched heads."""
    stamps = [h.last_ts for h in unit.heads.values() if h.last_ts is not None]
    return max([unit.now, *stamps])


def _is_expired(transaction: Transaction, now: datetime) -> bool:
    return (
        transaction.status is Status.PENDING
        and transaction.expires_at is not None
        and transaction.expires_at <= now
    )


EXPIRED_FAILURE = {"code": "expired", "detail": "the transaction expired before it was executed"}


class Ledger:
    """The operations of the API, each a short sequence of store calls."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        # NOTE: the process clock only decides whether to look; the database clock,
        # read under the locks, decides whether a hold has expired.
        self.clock = clock

    # Accounts

    async def create_account(
        self, tenant: str, account_id: str, rule: Rule, data: Mapping[str, Any]
    ) -> tuple[Account, bool]:
        check_id(account_id, "id")
        account, created = await self.store.insert_account(tenant, account_id, rule, data)
        if not created and (account.rule is not rule or dict(account.data) != dict(data)):
            raise AccountExists(f"account {account_id} exists with another rule or data")
        return account, created

    async def account(self, tenant: str, account_id: str) -> Account:
        account = await self.store.account(tenant, account_id)
        if account is None:
            raise NotFound(f"no account {account_id}")
        return account

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> Account:
        if not await self.store.replace_account_data(tenant, account_id, data):
            raise NotFound(f"no account {account_id}")
        return await self.account(tenant, account_id)

    # Transactions

    async def create(self, tenant: str, draft: Draft) -> tuple[Transaction, bool]:
        """Steps 1-3 for a new document; a repeat of the same id answers the stored one."""
        stored, created = await self.store.record(tenant, draft)
        if not created and stored.fingerprint != draft.fingerprint:
            raise TransactionExists(f"transaction {draft.id} exists with another body")
        stored = await self._settle(tenant, stored)
        if stored.status is Status.FAILED and stored.failure is not None:
            raise TransactionFailed(dict(stored.failure))
        return stored, created

    async def transaction(self, tenant: str, transaction_id: str) -> Transaction:
        stored = await self.store.transaction(tenant, transaction_id)
        if stored is None:
            raise NotFound(f"no transaction {transaction_id}")
        return await self._settle(tenant, stored)

    async def execute(self, tenant: str, transaction_id: str) -> Transaction:
        stored = await self.transaction(tenant, transaction_id)
        if stored.status is Status.VOIDED and stored.failure == EXPIRED_FAILURE:
            raise Expired(f"transaction {transaction_id} expired")
        if not execute_is_needed(stored.status):
            return stored
        expired = False
        async with self.store.lock(tenant, transaction_id, stored.keys) as unit:
            locked = _must(unit.transaction, transaction_id)
            if execute_is_needed(locked.status):
                if _is_expired(locked, unit.now):
                    await self._release(unit, locked, EXPIRED_FAILURE)
                    expired = True
                else:
                    outcome = apply_lines(unit.heads, locked.lines, Effect.SETTLE)
                    await self._write(
                        unit, locked, outcome.heads, outcome.entries, Status.COMPLETED
                    )
        if expired:
            raise Expired(f"transaction {transaction_id} expired")
        return await self.transaction(tenant, transaction_id)

    async def cancel(self, tenant: str, transaction_id: str) -> Transaction:
        """Void a PENDING transaction or reverse a COMPLETED one."""
        stored = await self.transaction(tenant, transaction_id)
        if cancel_action(stored.status) is Cancel.NOTHING:
            return stored
        async with self.store.lock(tenant, transaction_id, stored.keys) as unit:
            locked = _must(unit.transaction, transaction_id)
            action = cancel_action(locked.status)
            if action is Cancel.VOID:
                failure = EXPIRED_FAILURE if _is_expired(locked, unit.now) else None
                await self._release(unit, locked, failure)
            elif action is Cancel.REVERSE:
                await self._reverse(unit, locked)
        return await self.transaction(tenant, transaction_id)

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> Transaction:
        await self.transaction(tenant, transaction_id)
        if not await self.store.replace_transaction_data(tenant, transaction_id, data):
            raise NotFound(f"no transaction {transaction_id}")
        return await self.transaction(tenant, transaction_id)

    async def settle(self, tenant: str, transaction_id: str) -> None:
        """Carry a left-behind or expired document to its state (the periodic sweep)."""
        stored = await self.store.transaction(tenant, transaction_id)
        if stored is not None:
            await self._settle(tenant, stored)

    # The steps

    async def _settle(self, tenant: str, stored: Transaction) -> Transaction:
        """Finish what a reader must not see half done: step 2-3 of a RECORDED
        document, the expiry of a PENDING one past its `expires_at`."""
        if stored.status is Status.RECORDED:
            await self._check_and_flip(tenant, stored)
        elif _is_expired(stored, self.clock()):
            async with self.store.lock(tenant, stored.id, stored.keys) as unit:
                locked = _must(unit.transaction, stored.id)
                if _is_expired(locked, unit.now):
                    await self._release(unit, locked, EXPIRED_FAILURE)
                else:
                    return stored
        else:
            return stored
        fresh = await self.store.transaction(tenant, stored.id)
        return _must(fresh, stored.id)

    async def _check_and_flip(self, tenant: str, stored: Transaction) -> None:
        effect = Effect.HOLD if stored.mode is Mode.PENDING else Effect.POST
        keys = stored.keys
        # Step 2: the unlocked check against the committed heads. A document that
        # cannot fit fails here without ever locking a balance.
        heads = await self.store.heads(tenant, keys)
        problem = apply_lines(heads, stored.lines, effect).failure
        if problem is None and stored.timestamp_given and stored.timestamp is not None:
            problem = timestamp_failure(heads.values(), stored.timestamp)
        # Step 3: the authoritative check and the flip, under locks in sorted order.
        async with self.store.lock(tenant, stored.id, [] if problem else keys) as unit:
            locked = _must(unit.transaction, stored.id)
            if locked.status is not Status.RECORDED:
                return
            if problem is None and locked.timestamp_given and locked.timestamp is not None:
                problem = timestamp_failure(unit.heads.values(), locked.timestamp)
            outcome = None
            if problem is None:
                outcome = apply_lines(unit.heads, locked.lines, effect)
                problem = outcome.failure
            if problem is not None or outcome is None:
                at = unit.now
                change = StatusChange(locked.id, Status.FAILED, failure=problem)
                timestamp = locked.timestamp if locked.timestamp_given and locked.timestamp else at
                await unit.write(
                    Changes(
                        at=at,
                        status_changes=[change],
                        postings=postings(locked.id, locked.lines, timestamp),
                    )
                )
                return
            target = Status.PENDING if effect is Effect.HOLD else Status.COMPLETED
            await self._write(unit, locked, outcome.heads, outcome.entries, target)

    async def _write(
        self,
        unit: Unit,
        transaction: Transaction,
        heads: Mapping[Key, Head],
        entries: Sequence[Entry],
        status: Status,
        failure: Mapping[str, Any] | None = None,
    ) -> None:
        if transaction.timestamp_given and transaction.status is Status.RECORDED:
            assert transaction.timestamp is not None
            at = transaction.timestamp
        else:
            at = _clock_instant(unit)
        first = transaction.status is Status.RECORDED
        await unit.write(
            Changes(
                at=at,
                heads=[*heads.values()],
                entries=[(transaction.id, entry) for entry in entries],
                status_changes=[StatusChange(transaction.id, status, failure=failure)],
                postings=postings(transaction.id, transaction.lines, at) if first else [],
            )
        )

    async def _release(
        self, unit: Unit, transaction: Transaction, failure: Mapping[str, Any] | None
    ) -> None:
        outcome = apply_lines(unit.heads, transaction.lines, Effect.RELEASE)
        await self._write(unit, transaction, outcome.heads, outcome.entries, Status.VOIDED, failure)

    async def _reverse(self, unit: Unit, original: Transaction) -> None:
        lines = tuple(line.negated() for line in original.lines)
        outcome = apply_lines(unit.heads, lines, Effect.POST)
        if outcome.failure is not None:
            raise TransactionFailed(outcome.failure)
        at = _clock_instant(unit)
        reversal = Transaction(
            id=reversal_id(original.id),
            status=Status.COMPLETED,
            mode=Mode.IMMEDIATE,
            lines=lines,
            data={},
            timestamp=at,
            timestamp_given=False,
            created_at=at,
            expires_at=None,
            failure=None,
            reverses=original.id,
            reversal_id=None,
            fingerprint="",
        )
        await unit.write(
            Changes(
                at=at,
                heads=[*outcome.heads.values()],
                entries=[(reversal.id, entry) for entry in outcome.entries],
                status_changes=[
                    StatusChange(original.id, Status.REVERSED, reversal_id=reversal.id)
                ],
                inserts=[reversal],
                postings=postings(reversal.id, lines, at),
            )
        )


def _must(transaction: Transaction | None, transaction_id: str) -> Transaction:
    if transaction is None:
        raise NotFound(f"no transaction {transaction_id}")
    return transaction


__all__ = ["WORLD", "Account", "Ledger", "Transaction"]
