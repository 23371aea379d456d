"""Transactions as plain values: lines, the shorthand, validation, the state machine."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.ledger.errors import InvalidRequest, InvalidState, Unbalanced
from app.ledger.immutable import immutable
from app.ledger.money import (
    EXACT,
    JSON_DEPTH_MAX,
    check_currency,
    check_id,
    format_amount,
    parse_amount,
)

LINES_MAX = 128
WORLD = "@world"


class Status(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    VOIDED = "VOIDED"
    REVERSED = "REVERSED"


class Mode(StrEnum):
    PENDING = "pending"
    IMMEDIATE = "immediate"


TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.COMPLETED, Status.FAILED, Status.VOIDED}),
    Status.COMPLETED: frozenset({Status.REVERSED}),
    Status.FAILED: frozenset(),
    Status.VOIDED: frozenset(),
    Status.REVERSED: frozenset(),
}


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


class Cancel(StrEnum):
    """What `DELETE /v1/transactions/{id}` does to a transaction in a given state."""

    VOID = "void"
    REVERSE = "reverse"
    NOTHING = "nothing"


def execute_is_needed(status: Status) -> bool:
    """True when an execute must flip the document; False when it is already done."""
    if status is Status.PENDING:
        return True
    if status is Status.COMPLETED:
        return False
    raise InvalidState(f"a {status.value} transaction cannot be executed")


def cancel_action(status: Status) -> Cancel:
    if status is Status.PENDING:
        return Cancel.VOID
    if status is Status.COMPLETED:
        return Cancel.REVERSE
    if status in (Status.VOIDED, Status.REVERSED):
        return Cancel.NOTHING
    raise InvalidState(f"a {status.value} transaction cannot be voided or reversed")


@immutable
class Line:
    account: str
    currency: str
    amount: Decimal

    def negated(self) -> Line:
        return Line(self.account, self.currency, EXACT.minus(self.amount))


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a client may send, beyond the fixed ones of the contract."""

    # How far past the server's clock a client's `timestamp` may be: the future is never
    # written, or every later transaction of its accounts would be stamped after it.
    timestamp_skew: timedelta = timedelta(seconds=5)
    # How deep free-form JSON (`data`, a search query) may nest, counted from the body.
    json_depth_max: int = JSON_DEPTH_MAX


@immutable
class Draft:
    """A validated transaction as a client asked for it, before it is recorded."""

    id: str
    mode: Mode
    lines: tuple[Line, ...]
    data: Mapping[str, Any]
    timestamp: datetime | None
    expires_at: datetime | None
    fingerprint: str


def new_id() -> str:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits (RFC 9562)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    # The text `uuid.UUID` gives, without the object: it cost more than the rest.
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def check_timestamp(timestamp: datetime, now: datetime, limits: Limits) -> None:
    """A business time may be back-dated, never later than the clock plus the skew."""
    if timestamp > now + limits.timestamp_skew:
        seconds = limits.timestamp_skew.total_seconds()
        raise InvalidRequest.at(
            "timestamp",
            f"{timestamp.isoformat()} is in the future (more than {seconds:g} s past the"
            " server's clock)",
        )


def parse_instant(text: str, path: str) -> datetime:
    """RFC 3339, or `2006-01-02 15:04:05.000` read as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest.at(path, f"{text[:64]!r} is not an RFC 3339 instant") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def shorthand_lines(
    kind: str, account: str, currency: str, amount: object, counterparty: str | None
) -> list[tuple[str, str, object]]:
    """Expand CREDIT/DEBIT into the two lines it stands for, as raw values."""
    other = WORLD if counterparty is None else counterparty
    if kind not in ("CREDIT", "DEBIT"):
        raise InvalidRequest.at("type", "must be CREDIT or DEBIT")
    # Checked here under the names the client sent, not as the lines they stand for.
    check_id(account, "account")
    check_id(other, "counterparty")
    check_currency(currency, "currency")
    value = parse_amount(amount, "amount")
    if value <= 0:
        raise InvalidRequest.at("amount", "must be positive")
    if other == account:
        raise InvalidRequest.at("counterparty", "must differ from account")
    if kind == "CREDIT":
        return [(other, currency, EXACT.minus(value)), (account, currency, value)]
    return [(account, currency, EXACT.minus(value)), (other, currency, value)]


def parse_lines(raw: Sequence[tuple[str, str, object]]) -> tuple[Line, ...]:
    if not 1 <= len(raw) <= LINES_MAX:
        raise InvalidRequest(f"lines: 1 to {LINES_MAX} lines")
    lines = []
    for i, (account, currency, amount) in enumerate(raw):
        check_id(account, f"lines[{i}].account")
        check_currency(currency, f"lines[{i}].currency")
        value = parse_amount(amount, f"lines[{i}].amount")
        if value == 0:
            raise InvalidRequest.at(f"lines[{i}].amount", "must not be zero")
        lines.append(Line(account, currency, value))
    check_balanced(lines)
    return tuple(lines)


def check_balanced(lines: Iterable[Line]) -> None:
    """In each currency the amounts sum to zero (double entry)."""
    sums: dict[str, Decimal] = {}
    for line in lines:
        sums[line.currency] = EXACT.add(sums.get(line.currency, Decimal(0)), line.amount)
    off = {currency: total for currency, total in sums.items() if total != 0}
    if off:
        detail = ", ".join(f"{c} sums to {format_amount(t)}" for c, t in sorted(off.items()))
        raise Unbalanced(f"lines do not sum to zero: {detail}")


def fingerprint(
    mode: Mode,
    lines: Iterable[Line],
    data_json: bytes,
    timestamp: datetime | None,
    expires_at: datetime | None,
) -> str:
    """What makes two requests with one id the same request."""
    # One text hashed once: the same bytes, and so the same digest, as stored before.
    head = "".join(f"|{ln.account}|{ln.currency}|{format_amount(ln.amount)}" for ln in lines)
    tail = f"|{timestamp.isoformat() if timestamp else ''}"
    tail += f"|{expires_at.isoformat() if expires_at else ''}"
    text = f"{mode.value}{head}|".encode() + data_json + tail.encode()
    return hashlib.sha256(text).hexdigest()


def reversal_id(transaction_id: str) -> str:
    return f"{transaction_id}.reversal"
