"""The tenant's log: one event per change, in commit order, hash-chained (API.md, Events).

The engine says what changed (`Change`: the transaction as it now stands, or the
account, and the balances the change moved); the store renders each change as the RFC
8785 text around its two unknowns, the sequence and the previous hash, which only the
tenant's log head lock gives (app/models/log.py). `hash` is the hex SHA-256 of the
previous hash followed by the event's canonical text without `hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from app.ledger.money import EXACT, format_amount
from app.ledger.records import Account, Transaction
from app.ledger.rules import Head

ZERO_HASH = "0" * 64


def chain_hash(previous_hash: str, text: str) -> str:
    return hashlib.sha256(f"{previous_hash}{text}".encode()).hexdigest()


# A group commit stamps all its events with one instant: its text is made once.
@lru_cache(maxsize=16)
def format_instant(at: datetime) -> str:
    """RFC 3339 in UTC with `Z`, as the API writes every instant."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is UTC else at.astimezone(UTC)


def balance_view(head: Head) -> dict[str, str]:
    return {
        "posted": format_amount(head.posted),
        "pending_in": format_amount(head.pending_in),
        "pending_out": format_amount(head.pending_out),
        "available": format_amount(EXACT.subtract(head.posted, head.pending_out)),
    }


def balances_view(heads: tuple[Head, ...]) -> dict[str, dict[str, dict[str, str]]]:
    """`{account: {currency: balance}}` of the balances a change moved."""
    nested: dict[str, dict[str, dict[str, str]]] = {}
    for head in heads:
        nested.setdefault(head.account, {})[head.currency] = balance_view(head)
    return nested


def transaction_view(
    t: Transaction, instant: Callable[[datetime], Any] = format_instant
) -> dict[str, Any]:
    """A transaction as `GET /v1/transactions/{id}` answers it, without `events`; its
    instants as `instant` makes them (`format_instant`, or left to an encoder that
    writes them the same way)."""
    return {
        "id": t.id,
        "status": t.status.value,
        "lines": [
            {"account": ln.account, "currency": ln.currency, "amount": format_amount(ln.amount)}
            for ln in t.lines
        ],
        "data": t.data,
        "timestamp": None if t.timestamp is None else instant(t.timestamp),
        "created_at": instant(t.created_at),
        "expires_at": None if t.expires_at is None else instant(t.expires_at),
        "failure": None if t.failure is None else dict(t.failure),
        "reverses": t.reverses,
        "reversal_id": t.reversal_id,
    }


def account_view(a: Account, instant: Callable[[datetime], Any] = format_instant) -> dict[str, Any]:
    """An account as `GET /v1/accounts/{id}` answers it, without `balances`."""
    return {
        "id": a.id, "balance_rule": a.rule.value, "data": a.data,
        "created_at": instant(a.created_at),
        "keys": [{"id": k.id, "alg": k.alg, "public_key": k.public_key} for k in a.keys],
        "key_history": [
            {"id": k.id, "alg": k.alg, "public_key": k.public_key,
             "retired_at": instant(k.retired_at)}
            for k in a.key_history
        ],
    }  # fmt: skip


# For an encoder that writes a UTC datetime as `format_instant` does (msgspec).
KEEP_INSTANTS = _utc
