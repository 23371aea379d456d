"""The ledger's operations: check unlocked, then apply under row locks by group commit.

Nothing here knows SQL or HTTP, so any number of processes may run it: correctness comes
from the store's row locks, always taken in sorted key order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from app.ledger.batcher import Batcher
from app.ledger.documents import Draft, Limits
from app.ledger.errors import AccountExists, NotFound
from app.ledger.keys import (
    UNSIGNED,
    Authority,
    PublicKey,
    RetiredKey,
    check_keys,
    refusal,
    replace_keys,
)
from app.ledger.money import check_data, check_id
from app.ledger.records import Account, Group, Job, JobKind, Result, Transaction
from app.ledger.rules import Rule

# Decides an account's keys and history from the account as locked, at the clock's
# instant: raises when the change is not allowed.
KeysDecision = Callable[[Account, datetime], tuple[tuple[PublicKey, ...], tuple[RetiredKey, ...]]]


class Store(Protocol):
    async def transaction(self, tenant: str, transaction_id: str) -> Transaction | None: ...

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> bool: ...

    async def insert_account(
        self,
        tenant: str,
        account_id: str,
        rule: Rule,
        data: Mapping[str, Any],
        keys: Sequence[PublicKey],
    ) -> tuple[Account, bool]: ...

    async def replace_keys(
        self, tenant: str, account_id: str, decide: KeysDecision
    ) -> Account | None: ...

    async def account(self, tenant: str, account_id: str) -> Account | None: ...

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> bool: ...


class Ledger:
    """The operations of the API, each a short sequence of store calls."""

    def __init__(
        self,
        store: Store,
        batcher: Batcher,
        clock: Callable[[], datetime],
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.batcher = batcher
        self.limits = limits or Limits()
        # NOTE: the process clock only decides whether to look; the database clock,
        # read under the locks, decides whether a hold has expired.
        self.clock = clock

    # Accounts

    async def create_account(
        self,
        tenant: str,
        account_id: str,
        rule: Rule,
        data: Mapping[str, Any],
        keys: Sequence[PublicKey] = (),
    ) -> tuple[Account, bool]:
        check_id(account_id, "id")
        check_data(data, self.limits.json_depth_max)
        check_keys(keys)
        account, created = await self.store.insert_account(tenant, account_id, rule, data, keys)
        if not created and (
            account.rule is not rule or dict(account.data) != dict(data)
            or account.keys != tuple(keys)
        ):  # fmt: skip
            raise AccountExists(f"account {account_id} exists with another rule, data or keys")
        return account, created

    async def replace_keys(
        self, tenant: str, account_id: str, keys: Sequence[PublicKey], authority: Authority
    ) -> Account:
        """Replace an account's keys; an owned account's change must be signed by one of
        its current keys, checked against them as locked."""
        check_keys(keys)

        def decide(
            account: Account, now: datetime
        ) -> tuple[tuple[PublicKey, ...], tuple[RetiredKey, ...]]:
            owners = {(tenant, account.id): frozenset(k.id for k in account.keys)}
            refused = refusal(authority, [(tenant, account.id)], owners)
            if refused is not None:
                raise refused
            return replace_keys(account.keys, account.key_history, keys, now)

        account = await self.store.replace_keys(tenant, account_id, decide)
        if account is None:
            raise NotFound(f"no account {account_id}")
        return account

    async def account(self, tenant: str, account_id: str) -> Account:
        account = await self.store.account(tenant, account_id)
        if account is None:
            raise NotFound(f"no account {account_id}")
        return account

    async def replace_account_data(
        self, tenant: str, account_id: str, data: Mapping[str, Any]
    ) -> Account:
        check_data(data, self.limits.json_depth_max)
        if not await self.store.replace_account_data(tenant, account_id, data):
            raise NotFound(f"no account {account_id}")
        return await self.account(tenant, account_id)

    # Transactions

    async def create(
        self, tenant: str, draft: Draft, authority: Authority = UNSIGNED
    ) -> tuple[Transaction, bool]:
        """Record a new document, or answer a repeat of its id from the stored one."""
        result = await self._run(Job(JobKind.CREATE, tenant, draft.id, draft), authority)
        assert result.transaction is not None
        if not result.created and result.transaction.expired(self.clock()):
            return await self.transaction(tenant, draft.id), False
        return result.transaction, result.created

    async def create_many(
        self,
        tenant: str,
        drafts: Sequence[Draft],
        atomic: bool,
        authority: Authority = UNSIGNED,
    ) -> list[Result]:
        """Many documents in one group commit: one result per draft, in order."""
        jobs = tuple(Job(JobKind.CREATE, tenant, d.id, d) for d in drafts)
        return await self.batcher.submit(Group(jobs, atomic, authority))

    async def transaction(self, tenant: str, transaction_id: str) -> Transaction:
        """A transaction as it stands; a hold past its `expires_at` is voided first."""
        stored = await self.store.transaction(tenant, transaction_id)
        if stored is None:
            raise NotFound(f"no transaction {transaction_id}")
        if stored.expired(self.clock()):
            return _changed(await self._run(Job(JobKind.EXPIRE, tenant, transaction_id)))
        return stored

    async def execute(self, tenant: str, transaction_id: str) -> Transaction:
        return _changed(await self._run(Job(JobKind.EXECUTE, tenant, transaction_id)))

    async def cancel(
        self, tenant: str, transaction_id: str, authority: Authority = UNSIGNED
    ) -> Transaction:
        """Void a PENDING transaction or reverse a COMPLETED one (a reversal that debits
        an owned account needs its signature)."""
        return _changed(await self._run(Job(JobKind.CANCEL, tenant, transaction_id), authority))

    async def expire(self, tenant: str, transaction_id: str) -> None:
        """Void a hold past its `expires_at` (the periodic sweep)."""
        await self._run(Job(JobKind.EXPIRE, tenant, transaction_id))

    async def replace_transaction_data(
        self, tenant: str, transaction_id: str, data: Mapping[str, Any]
    ) -> Transaction:
        check_data(data, self.limits.json_depth_max)
        if not await self.store.replace_transaction_data(tenant, transaction_id, data):
            raise NotFound(f"no transaction {transaction_id}")
        return await self.transaction(tenant, transaction_id)

    async def _run(self, job: Job, authority: Authority = UNSIGNED) -> Result:
        [result] = await self.batcher.submit(Group((job,), authority=authority))
        if result.error is not None:
            raise result.error
        return result


def _changed(result: Result) -> Transaction:
    """The transaction as the group commit left it, with its whole history."""
    assert result.transaction is not None
    return result.transaction
