"""The unit tests' builders: transfers, groups and balance heads of tenant `t` in USD."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from app.ledger.documents import Draft, Line, Mode
from app.ledger.records import Group, HeadKey, Job, JobKind
from app.ledger.rules import Head, Rule

TENANT = "t"


def draft(
    tid: str, source: str, target: str, amount: str, mode: Mode = Mode.IMMEDIATE,
    expires_at: datetime | None = None,
) -> Draft:  # fmt: skip
    """`amount` USD from `source` to `target`."""
    lines = (Line(source, "USD", -Decimal(amount)), Line(target, "USD", Decimal(amount)))
    return Draft(tid, mode, lines, {}, None, expires_at, f"{tid}:{amount}:{mode}")


def create(
    tid: str, source: str, target: str, amount: str, mode: Mode = Mode.IMMEDIATE,
    expires_at: datetime | None = None,
) -> Group:  # fmt: skip
    """A group of one new transfer."""
    return Group(
        (Job(JobKind.CREATE, TENANT, tid, draft(tid, source, target, amount, mode, expires_at)),)
    )


def heads(version: int = 1, **balances: str) -> dict[HeadKey, Head]:
    """`non_negative` USD heads posted at the balances given, by account."""
    return {(TENANT, name, "USD"): Head(name, "USD", Rule.NON_NEGATIVE, Decimal(v),
                                        version=version)
            for name, v in balances.items()}  # fmt: skip
