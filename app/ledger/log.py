"""The tenant's log: one event per change, in commit order, hash-chained (API.md, Events).

An event's number and `previous_hash` are known only under the tenant's log head lock,
at the end of the group commit, so each change is prepared here as the canonical text
around them: `prefix` + previous_hash + `","sequence":` + sequence + `suffix` is the
event without `hash`, canonical by RFC 8785 (its keys sort `account`, `at`, `balances`,
`previous_hash`, `sequence`, `transaction`, `type`), and `hash` is the hex SHA-256 of
previous_hash followed by that text. The store puts the two around the numbers in SQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import rfc8785

from app.ledger.documents import Status
from app.ledger.money import EXACT, format_amount
from app.ledger.rules import Head

ZERO_HASH = "0" * 64


class EventType(StrEnum):
    ACCOUNT_CREATED = "account.created"
    ACCOUNT_UPDATED = "account.updated"
    TRANSACTION_PENDING = "transaction.pending"
    TRANSACTION_COMPLETED = "transaction.completed"
    TRANSACTION_FAILED = "transaction.failed"
    TRANSACTION_VOIDED = "transaction.voided"
    TRANSACTION_REVERSED = "transaction.reversed"
    TRANSACTION_UPDATED = "transaction.updated"


ENTERED = {status: EventType(f"transaction.{status.value.lower()}") for status in Status}


@dataclass(frozen=True, slots=True)
class Change:
    """One event of a tenant's log before it is numbered."""

    tenant: str
    type: EventType
    at: datetime
    prefix: str
    suffix: str

    def text(self, previous_hash: str, sequence: int) -> str:
        """The event without `hash`, canonical (RFC 8785)."""
        return f'{self.prefix}{previous_hash}","sequence":{sequence}{self.suffix}'


def chain_hash(previous_hash: str, text: str) -> str:
    return hashlib.sha256(f"{previous_hash}{text}".encode()).hexdigest()


def with_hash(text: str, hash_: str) -> str:
    """The event as served: its canonical text with `hash` added."""
    return f'{text[:-1]},"hash":"{hash_}"}}'


def format_instant(at: datetime) -> str:
    """RFC 3339 in UTC with `Z`, as the API writes every instant."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


# NOTE: for values the service builds (ASCII keys, strings, small integers) Python's JSON
# encoder writes what RFC 8785 does (the same escapes, compact, keys sorted); a client's
# `data` may hold any JSON, so it goes through the RFC 8785 implementation.
_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def canonical(value: Any) -> str:
    """RFC 8785 text of a value the service built, with any `data` inside it as given."""
    return _compact(value)


def canonical_data(data: Mapping[str, Any]) -> str:
    return rfc8785.dumps(data).decode() if data else "{}"


def balance_view(head: Head) -> dict[str, str]:
    return {
        "posted": format_amount(head.posted),
        "pending_in": format_amount(head.pending_in),
        "pending_out": format_amount(head.pending_out),
        "available": format_amount(EXACT.subtract(head.posted, head.pending_out)),
    }


def balances_text(heads: Iterable[Head]) -> str:
    """`{account: {currency: balance}}` of the balances a change touched."""
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for head in heads:
        nested.setdefault(head.account, {})[head.currency] = balance_view(head)
    return canonical(nested)


def _instant(at: datetime | None) -> str | None:
    return None if at is None else format_instant(at)


def transaction_text(transaction: Any) -> str:
    """A transaction as `GET /v1/transactions/{id}` answers it, without `events`."""
    t = transaction
    view = {
        "id": t.id,
        "status": t.status.value,
        "lines": [
            {"account": ln.account, "currency": ln.currency, "amount": format_amount(ln.amount)}
            for ln in t.lines
        ],
        "data": None,
        "timestamp": _instant(t.timestamp),
        "created_at": format_instant(t.created_at),
        "expires_at": _instant(t.expires_at),
        "failure": None if t.failure is None else dict(t.failure),
        "reverses": t.reverses,
        "reversal_id": t.reversal_id,
    }
    return canonical(view).replace('"data":null', f'"data":{canonical_data(t.data)}', 1)


def account_text(account_id: str, rule: str, data: Mapping[str, Any], created_at: datetime) -> str:
    """An account as `GET /v1/accounts/{id}` answers it, without `balances`."""
    view = {"id": account_id, "balance_rule": rule, "data": None,
            "created_at": format_instant(created_at)}  # fmt: skip
    return canonical(view).replace('"data":null', f'"data":{canonical_data(data)}', 1)


def change(
    tenant: str,
    type_: EventType,
    at: datetime,
    *,
    transaction: str | None = None,
    account: str | None = None,
    balances: str = "{}",
) -> Change:
    """A change around its subject's canonical text (`transaction_text`, `account_text`)."""
    head = f'"account":{account},' if account is not None else ""
    prefix = f'{{{head}"at":"{format_instant(at)}","balances":{balances},"previous_hash":"'
    tail = f',"transaction":{transaction}' if transaction is not None else ""
    return Change(tenant, type_, at, prefix, f'{tail},"type":"{type_.value}"}}')
