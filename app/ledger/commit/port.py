"""The port a group commit runs against: one database transaction, its calls in the
order the steps make them (`steps.py`); the store implements it (`app/models/writer.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.ledger.records import (
    AccountKey,
    Change,
    HeadKey,
    Plan,
    Transaction,
    TxnKey,
)
from app.ledger.rules import Head

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
