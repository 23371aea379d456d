"""Integrity: a tenant's stored rows re-checked against each other (API.md, Integrity).

The store feeds the rows of one consistent snapshot, table by table, in the orders
named on each method; each check says what kind of problem it found and where. Nothing
here trusts a stored figure that it can recompute.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import rfc8785

from app.ledger.documents import Mode, Status
from app.ledger.log import (
    ZERO_HASH,
    account_view,
    chain_hash,
    transaction_view,
)
from app.ledger.money import EXACT, format_amount
from app.ledger.records import Account, Transaction
from app.ledger.rules import Effect, Head, Rule, apply_line, breach

PROBLEMS_MAX = 100
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    where: str
    detail: str


@dataclass(frozen=True, slots=True)
class EntryRow:
    account: str
    currency: str
    seq: int
    transaction_id: str
    kind: str
    amount: Decimal
    posted: Decimal
    pending_in: Decimal
    pending_out: Decimal
    timestamp: datetime


def _digest(view: Mapping[str, Any]) -> bytes:
    """The same digest for an account's or a transaction's view, whether it was read
    from an event or from the tables: `data` by RFC 8785, so that `1.0` read back from
    jsonb and `1` read from the event's canonical text are one number."""
    data = view.get("data") or {}
    value = {**view, "data": rfc8785.dumps(data).decode() if data else "{}"}
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


_MASK = (1 << 128) - 1


def _entry_hash(kind: str, account: str, currency: str, amount: Decimal) -> int:
    text = f"{kind}\0{account}\0{currency}\0{format_amount(amount)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "big")


def expected_entries(t: Transaction) -> int:
    """The journal rows a transaction's history implies, as the sum of their hashes (a
    multiset digest: entries may arrive in any order, and each one subtracts its own)."""
    kinds: list[str] = []
    if t.status is not Status.FAILED:
        if t.mode is Mode.PENDING:
            kinds.append("hold")
        if t.status is Status.VOIDED:
            kinds.append("release")
        if t.status in (Status.COMPLETED, Status.REVERSED):
            kinds.append("post")
    total = 0
    for kind in kinds:
        for line in t.lines:
            total += _entry_hash(kind, line.account, line.currency, line.amount)
    return total & _MASK


@dataclass
class Audit:
    problems: list[Problem] = field(default_factory=list)
    found: int = 0  # every problem, also those past PROBLEMS_MAX
    checked: Counter[str] = field(default_factory=Counter)
    sequence: int = 0
    hash: str = ZERO_HASH
    # The last event of each transaction and account, as a digest of its subject.
    last_state: dict[tuple[str, str], bytes] = field(default_factory=dict)
    # Per transaction: the digest of the entries it implies, less those found so far.
    entries_of: dict[str, int] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    sums: dict[str, list[Decimal]] = field(default_factory=dict)
    # The last entry of each balance: the one the next entry follows, and the one the
    # balance row must equal.
    last_entry: dict[tuple[str, str], EntryRow] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.found == 0

    def problem(self, kind: str, where: str, detail: str) -> None:
        self.found += 1
        if len(self.problems) < PROBLEMS_MAX:
            self.problems.append(Problem(kind, where, detail))

    # 1. The log, by sequence.

    def event(self, sequence: int, stored_hash: str, body: str) -> None:
        self.checked["events"] += 1
        where = f"event {sequence}"
        if sequence != self.sequence + 1:
            self.problem("sequence_gap", where, f"follows event {self.sequence}")
        try:
            event = json.loads(body)
        except ValueError:
            self.problem("hash_mismatch", where, "the stored event is not JSON")
            event = {}
        if event.get("sequence") != sequence or event.get("previous_hash") != self.hash:
            self.problem("hash_mismatch", where, "does not follow the previous event")
        if chain_hash(self.hash, body) != stored_hash:
            self.problem("hash_mismatch", where, "its hash does not recompute")
        self.sequence, self.hash = sequence, stored_hash
        for name in ("transaction", "account"):
            subject = event.get(name)
            if name == "account" and isinstance(subject, dict):
                # Events written before accounts had keys leave them out.
                subject.setdefault("keys", [])
                subject.setdefault("key_history", [])
            if isinstance(subject, dict) and isinstance(subject.get("id"), str):
                self.last_state[(name, subject["id"])] = _digest(subject)

    def head(self, sequence: int, stored_hash: str) -> None:
        """The head row names the last event."""
        if (sequence, stored_hash) != (self.sequence, self.hash):
            self.problem(
                "sequence_gap" if sequence != self.sequence else "hash_mismatch",
                "head",
                f"the head names event {sequence}, the log ends at {self.sequence}",
            )

    # 2. Accounts and transactions, each against its last event.

    def account(self, account: Account) -> None:
        self.checked["accounts"] += 1
        self.rules[account.id] = account.rule
        self._state("account", account.id, _digest(account_view(account)))

    def transaction(self, t: Transaction) -> None:
        self.checked["transactions"] += 1
        self._state("transaction", t.id, _digest(transaction_view(t)))
        self.entries_of[t.id] = expected_entries(t)

    def _state(self, name: str, subject_id: str, state: bytes) -> None:
        logged = self.last_state.pop((name, subject_id), None)
        if logged is None:
            self.problem("event_mismatch", f"{name} {subject_id}", "no event records it")
        elif logged != state:
            self.problem("event_mismatch", f"{name} {subject_id}", "differs from its last event")

    def unlogged(self) -> None:
        """Events whose account or transaction is not stored."""
        for name, subject_id in sorted(self.last_state):
            self.problem("event_mismatch", f"{name} {subject_id}", "logged but not stored")
        self.last_state.clear()

    # 3. The journal, by account, currency and (timestamp, seq), its key: for an honest
    #    journal the order of seq, as timestamps never run back within a head; an
    #    entry whose instant was moved comes out of turn. Each balance row after its
    #    entries.

    def entry(self, row: EntryRow) -> None:
        self.checked["entries"] += 1
        where = f"entry {row.account} {row.currency} {row.seq}"
        previous = self.last_entry.get((row.account, row.currency))
        rule = self.rules.get(row.account)
        before = Head(row.account, row.currency, rule or Rule.ANY)
        if previous is not None:
            before = Head(row.account, row.currency, rule or Rule.ANY, previous.posted,
                          previous.pending_in, previous.pending_out, previous.seq)  # fmt: skip
        if row.seq != before.version + 1:
            self.problem("entry_mismatch", where, f"follows seq {before.version}")
        if previous is not None and row.timestamp < previous.timestamp:
            self.problem("entry_mismatch", where, "its timestamp runs back")
        after = (row.posted, row.pending_in, row.pending_out)
        effects = {"hold": (Effect.HOLD,), "release": (Effect.RELEASE,),
                   "post": (Effect.POST, Effect.SETTLE)}.get(row.kind, ())  # fmt: skip
        results = [apply_line(before, row.amount, effect) for effect in effects]
        if not any((h.posted, h.pending_in, h.pending_out) == after for h in results):
            self.problem(
                "entry_mismatch", where, "its balances are not the previous plus its amount"
            )
        elif rule is not None:
            moved = Head(row.account, row.currency, rule, *after)
            if breach(before, moved) is not None:
                self.problem("rule_broken", where, f"takes the account past {rule.value}")
        expected = self.entries_of.get(row.transaction_id)
        if expected is None:
            self.problem("transaction_mismatch", where,
                         f"names no stored transaction {row.transaction_id}")  # fmt: skip
        else:
            own = _entry_hash(row.kind, row.account, row.currency, row.amount)
            self.entries_of[row.transaction_id] = (expected - own) & _MASK
        self.last_entry[(row.account, row.currency)] = row

    def balance(
        self, account: str, currency: str, posted: Decimal, pending_in: Decimal,
        pending_out: Decimal,
    ) -> None:  # fmt: skip
        """A balance row against the last entry of its account and currency (after
        every entry was fed)."""
        stored = (posted, pending_in, pending_out)
        last = self.last_entry.pop((account, currency), None)
        journal = (ZERO, ZERO, ZERO) if last is None else (last.posted, last.pending_in,
                                                           last.pending_out)  # fmt: skip
        if stored != journal:
            self.problem("entry_mismatch", f"balance {account} {currency}",
                         "differs from its last entry")  # fmt: skip
        sums = self.sums.setdefault(currency, [ZERO, ZERO, ZERO])
        for i, value in enumerate(stored):
            # Exact: the default context's 28 digits round 38-digit amounts.
            sums[i] = EXACT.add(sums[i], value)

    def finish(self) -> None:
        self.unlogged()
        for account, currency in sorted(self.last_entry):
            self.problem("entry_mismatch", f"balance {account} {currency}",
                         "entries without a balance row")  # fmt: skip
        self.last_entry.clear()
        for transaction_id, rest in sorted(self.entries_of.items()):
            if rest:
                self.problem("transaction_mismatch", f"transaction {transaction_id}",
                             "its entries are not those its history implies")  # fmt: skip
        self.entries_of.clear()
        for currency, (posted, pending_in, pending_out) in sorted(self.sums.items()):
            if posted != 0 or pending_in != pending_out:
                self.problem("sum_not_zero", f"currency {currency}",
                             f"posted sums to {posted}, pending in {pending_in} and out "
                             f"{pending_out}")  # fmt: skip

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": {name: self.checked[name]
                        for name in ("events", "transactions", "entries", "accounts")},
            "head": {"sequence": self.sequence, "hash": self.hash},
            "problems": [{"kind": p.kind, "where": p.where, "detail": p.detail}
                         for p in self.problems],
        }  # fmt: skip
