"""Balance heads, the effects a document has on them, and the balance rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.ledger.documents import Line
from app.ledger.immutable import immutable
from app.ledger.money import AMOUNT_LIMIT, EXACT, INTEGER_DIGITS_MAX, format_amount

ZERO = Decimal(0)


class Rule(StrEnum):
    NON_NEGATIVE = "non_negative"
    NON_POSITIVE = "non_positive"
    ANY = "any"


class Effect(StrEnum):
    """What applying a document does to the balances of its lines."""

    HOLD = "hold"  # create PENDING: out-lines held, in-lines counted as pending_in
    RELEASE = "release"  # void or expiry: the holds go away
    SETTLE = "settle"  # execute: the holds become posted
    POST = "post"  # immediate or reversal: posted directly

    @property
    def entry_kind(self) -> str:
        return "post" if self in (Effect.SETTLE, Effect.POST) else self.value


@immutable
class Head:
    """The current balances of one account in one currency."""

    account: str
    currency: str
    rule: Rule
    posted: Decimal = ZERO
    pending_in: Decimal = ZERO
    pending_out: Decimal = ZERO
    version: int = 0
    last_ts: datetime | None = None

    @property
    def available(self) -> Decimal:
        return EXACT.subtract(self.posted, self.pending_out)

    @property
    def key(self) -> tuple[str, str]:
        return (self.account, self.currency)


@immutable
class Entry:
    """One journal row: a line's effect and the balances right after it."""

    account: str
    currency: str
    seq: int
    kind: str
    amount: Decimal
    posted: Decimal
    pending_in: Decimal
    pending_out: Decimal


def apply_line(
    head: Head, amount: Decimal, effect: Effect, last_ts: datetime | None = None
) -> Head:
    """The head after one line's effect (pure arithmetic, no rule check), stamped with
    `last_ts` when given. A positive amount comes in, a negative one goes out."""
    posted, pending_in, pending_out = head.posted, head.pending_in, head.pending_out
    if effect is Effect.POST:
        posted = EXACT.add(posted, amount)
    elif effect is Effect.HOLD:
        if amount > 0:
            pending_in = EXACT.add(pending_in, amount)
        else:
            pending_out = EXACT.subtract(pending_out, amount)
    else:  # RELEASE, or SETTLE: the hold goes away, and SETTLE posts it
        if amount > 0:
            pending_in = EXACT.subtract(pending_in, amount)
        else:
            pending_out = EXACT.add(pending_out, amount)
        if effect is Effect.SETTLE:
            posted = EXACT.add(posted, amount)
    # NOTE: a direct constructor; dataclasses.replace costs several times more per line.
    return Head(
        head.account,
        head.currency,
        head.rule,
        posted,
        pending_in,
        pending_out,
        head.version + 1,
        head.last_ts if last_ts is None else last_ts,
    )


def breach(before: Head, after: Head) -> dict[str, Any] | None:
    """The failure when `after` breaks the account's rule and is worse than `before`.

    A change that makes a balance no worse is always allowed, so releases and
    settlements can never fail.
    """
    for value in (after.posted, after.pending_in, after.pending_out):
        if abs(value) >= AMOUNT_LIMIT:
            # NOTE: no `available` and `required` here: the rule is not what refused it.
            return {
                "code": "invalid_amount",
                "detail": f"{after.account} {after.currency}: a balance would exceed "
                f"{INTEGER_DIGITS_MAX} integer digits",
                "account": after.account,
                "currency": after.currency,
            }
    if before.rule is Rule.NON_NEGATIVE:
        if after.available < 0 and after.available < before.available:
            room = before.available
            needed = EXACT.subtract(before.available, after.available)
            return failure(
                "insufficient_funds",
                f"{after.account} {after.currency}: available {format_amount(room)}, "
                f"needs {format_amount(needed)}",
                after,
                room,
                needed,
            )
    elif before.rule is Rule.NON_POSITIVE:
        level_before = EXACT.add(before.posted, before.pending_in)
        level_after = EXACT.add(after.posted, after.pending_in)
        if level_after > 0 and level_after > level_before:
            room = EXACT.minus(level_before)
            needed = EXACT.subtract(level_after, level_before)
            return failure(
                "balance_rule_violated",
                f"{after.account} {after.currency}: non_positive account can take "
                f"{format_amount(room)}, needs {format_amount(needed)}",
                after,
                room,
                needed,
            )
    return None


def failure(
    code: str, detail: str, head: Head, available: Decimal, required: Decimal
) -> dict[str, Any]:
    return {
        "code": code,
        "detail": detail,
        "account": head.account,
        "currency": head.currency,
        "available": format_amount(available),
        "required": format_amount(required),
    }


@immutable
class Outcome:
    """The result of applying a document's lines to the heads it touches."""

    heads: Mapping[tuple[str, str], Head]
    entries: tuple[Entry, ...]
    failure: dict[str, Any] | None


def apply_lines(
    heads: Mapping[tuple[str, str], Head],
    lines: Iterable[Line],
    effect: Effect,
    last_ts: datetime | None = None,
) -> Outcome:
    """Apply lines in order, checking the rule after each; stop at the first breach.
    The heads changed are stamped with `last_ts` when given."""
    current = dict(heads)
    entries: list[Entry] = []
    checked = effect is Effect.HOLD or effect is Effect.POST
    kind = effect.entry_kind
    for line in lines:
        key = (line.account, line.currency)
        before = current[key]
        after = apply_line(before, line.amount, effect, last_ts)
        if checked:
            problem = breach(before, after)
            if problem is not None:
                return Outcome(heads, (), problem)
        current[key] = after
        entries.append(
            Entry(
                after.account,
                after.currency,
                after.version,
                kind,
                line.amount,
                after.posted,
                after.pending_in,
                after.pending_out,
            )
        )
    changed = {key: head for key, head in current.items() if head is not heads[key]}
    return Outcome(changed, tuple(entries), None)


def timestamp_failure(heads: Iterable[Head], timestamp: datetime) -> dict[str, Any] | None:
    """A back-dated timestamp must not be earlier than any touched account's last entry."""
    for head in heads:
        if head.last_ts is not None and timestamp < head.last_ts:
            return {
                "code": "timestamp_out_of_order",
                "detail": f"{head.account} {head.currency}: last entry at "
                f"{head.last_ts.isoformat()}, after {timestamp.isoformat()}",
                "account": head.account,
                "currency": head.currency,
            }
    return None
