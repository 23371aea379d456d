"""The engine's records: the plain values the group commit, the log and the store pass
between them. Nothing here does work; the modules that do import from here, never the
other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from app.ledger.documents import Draft, Line, Mode, Status
from app.ledger.errors import LedgerError
from app.ledger.immutable import immutable
from app.ledger.keys import UNSIGNED, Authority, Proof, PublicKey, RetiredKey
from app.ledger.rules import Entry, Head, Rule

TxnKey = tuple[str, str]  # (tenant, transaction id)
HeadKey = tuple[str, str, str]  # (tenant, account, currency)
AccountKey = tuple[str, str]  # (tenant, account id)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    rule: Rule
    data: Mapping[str, Any]
    created_at: datetime
    heads: tuple[Head, ...] = ()
    keys: tuple[PublicKey, ...] = ()
    key_history: tuple[RetiredKey, ...] = ()


class EventType(StrEnum):
    ACCOUNT_CREATED = "account.created"
    ACCOUNT_UPDATED = "account.updated"
    TRANSACTION_PENDING = "transaction.pending"
    TRANSACTION_COMPLETED = "transaction.completed"
    TRANSACTION_FAILED = "transaction.failed"
    TRANSACTION_VOIDED = "transaction.voided"
    TRANSACTION_REVERSED = "transaction.reversed"
    TRANSACTION_UPDATED = "transaction.updated"


EVENT_TYPES = tuple(t.value for t in EventType)
ENTERED = {status: EventType(f"transaction.{status.value.lower()}") for status in Status}


@immutable
class Change:
    """One event of a tenant's log before it is numbered: its subject as it stands right
    after the change, and the balances the change moved."""

    tenant: str
    type: EventType
    at: datetime
    transaction: Transaction | None = None
    account: Account | None = None
    moved: tuple[Head, ...] = ()


class JobKind(StrEnum):
    CREATE = "create"
    EXECUTE = "execute"
    CANCEL = "cancel"  # void a PENDING transaction, reverse a COMPLETED one
    EXPIRE = "expire"  # void a PENDING transaction past its expires_at


@immutable
class Job:
    kind: JobKind
    tenant: str
    transaction_id: str
    draft: Draft | None = None
    # A failure already known from the unlocked check: recorded FAILED, no balance locked.
    failure: Mapping[str, Any] | None = None


@immutable
class Group:
    """Jobs submitted together; `atomic`: all apply or none is recorded. `authority`:
    what the request's signatures proved (checked for owned accounts it debits)."""

    jobs: tuple[Job, ...]
    atomic: bool = False
    authority: Authority = UNSIGNED


@immutable
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

    def expired(self, now: datetime) -> bool:
        """Still PENDING at `now`, its `expires_at` come."""
        return (
            self.status is Status.PENDING
            and self.expires_at is not None
            and (self.expires_at <= now)
        )


@immutable
class Result:
    transaction: Transaction | None = None
    created: bool = False
    error: LedgerError | None = None


@immutable
class Posting:
    """One account a transaction touches, listed for search in page order."""

    tenant: str
    transaction_id: str
    account: str
    timestamp: datetime


@immutable
class JournalRow:
    tenant: str
    transaction_id: str
    entry: Entry
    timestamp: datetime


@dataclass(slots=True)
class Plan:
    """Every row one group commit writes."""

    heads: dict[HeadKey, Head] = field(default_factory=dict)
    entries: list[JournalRow] = field(default_factory=list)
    inserts: dict[TxnKey, Transaction] = field(default_factory=dict)
    updates: dict[TxnKey, Transaction] = field(default_factory=dict)
    postings: list[Posting] = field(default_factory=list)
    # The tenant's log: one change per state a transaction enters, in order.
    changes: list[Change] = field(default_factory=list)
    # The signed request each new transaction of a signed request was recorded from.
    proofs: list[tuple[TxnKey, Proof]] = field(default_factory=list)

    def copy(self) -> Plan:
        return Plan(
            dict(self.heads),
            list(self.entries),
            dict(self.inserts),
            dict(self.updates),
            list(self.postings),
            list(self.changes),
            list(self.proofs),
        )
