"""Request and response bodies (msgspec Structs) and their conversions."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

import msgspec

from app.ledger.documents import (
    Draft,
    Limits,
    Line,
    Mode,
    check_timestamp,
    fingerprint,
    new_id,
    parse_instant,
    parse_lines,
    shorthand_lines,
)
from app.ledger.errors import FieldError, InvalidQuery, InvalidRequest, LedgerError
from app.ledger.keys import Proof, PublicKey
from app.ledger.money import EXACT, check_data, check_id, format_amount
from app.ledger.records import Account, Result, Transaction
from app.ledger.rules import Head

_encode_sorted = msgspec.json.Encoder(order="sorted", decimal_format="string").encode


class Body(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Every request body rejects fields the contract does not name."""


BodyT = TypeVar("BodyT", bound=Body)
_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$", re.DOTALL)


def decode_body(body: bytes, kind: type[BodyT]) -> BodyT:
    """Decode a request body strictly into `kind`; a problem names the field at fault as
    the client wrote it (`lines[1].amount`, or the unknown field itself)."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc
    except msgspec.DecodeError as exc:
        detail = "a JSON object is required" if not body.strip() else str(exc)
        raise InvalidRequest(f"body: {detail}") from exc
    except RecursionError as exc:
        raise InvalidRequest.at("body", "JSON nested too deeply") from exc


_decode_json = msgspec.json.Decoder(float_hook=Decimal).decode


def decode_query(body: bytes) -> dict[str, Any]:
    """A search body: empty, or a JSON object; numbers kept exact."""
    if not body.strip():
        return {}
    try:
        value = _decode_json(body)
    except msgspec.DecodeError as exc:
        raise InvalidQuery(f"body: {exc}") from exc
    except RecursionError as exc:
        raise InvalidQuery("body: JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise InvalidQuery("body: a JSON object is required")
    return value


def _invalid(text: str) -> InvalidRequest:
    found = _AT.match(text)
    message, path = (found["message"], found["path"]) if found else (text, "")
    unknown = _UNKNOWN.match(message)
    if unknown:
        path, message = f"{path}.{unknown['name']}", "unknown field"
    path = path.removeprefix(".") or "body"
    return InvalidRequest(f"{path}: {message}", errors=(FieldError(path, message),))


def amount_value(raw: msgspec.Raw) -> str | None:
    """An amount as sent: the text of a JSON string or number, which `parse_amount`
    reads by one grammar; None for anything else (`true`, `null`, a list), which it
    refuses."""
    text = bytes(raw)
    if text[:1] == b'"':
        return msgspec.json.decode(text, type=str)
    if text[:1].isdigit() or text[:1] == b"-":
        return text.decode("ascii")
    return None


class KeyIn(Body):
    id: str
    alg: str
    public_key: str

    def key(self) -> PublicKey:
        return PublicKey(self.id, self.alg, self.public_key)


class AccountIn(Body):
    id: str | None = None
    balance_rule: Literal["non_negative", "non_positive", "any"] = "non_negative"
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    keys: list[KeyIn] = msgspec.field(default_factory=list)


class KeysIn(Body):
    keys: list[KeyIn]


class DataIn(Body):
    data: dict[str, Any]


class LineIn(Body):
    account: str
    currency: str
    # NOTE: raw JSON, so that a number is read from its exact text and a string by the
    # strict amount grammar (msgspec's Decimal would read "1_0" and full-width digits).
    amount: msgspec.Raw


class TransactionIn(Body):
    """The full form (`lines`) or the CREDIT/DEBIT shorthand (`type`, `account`, ...)."""

    id: str | None = None
    lines: list[LineIn] | None = None
    type: Literal["CREDIT", "DEBIT"] | None = None
    account: str | None = None
    currency: str | None = None
    amount: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)  # empty: absent
    counterparty: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    timestamp: str | None = None
    expires_at: str | None = None

    def draft(self, mode: Mode, now: datetime, limits: Limits) -> Draft:
        """Validate into a `Draft` (pure: raises `InvalidRequest` and its kin)."""
        transaction_id = new_id() if self.id is None else self.id
        check_id(transaction_id, "id")
        has_amount = len(self.amount) > 0
        if self.type is not None:
            if self.lines is not None:
                raise InvalidRequest("give either lines or the type shorthand, not both")
            if self.account is None or self.currency is None or not has_amount:
                raise InvalidRequest("the type shorthand needs account, currency and amount")
            raw = shorthand_lines(
                self.type,
                self.account,
                self.currency,
                amount_value(self.amount),
                self.counterparty,
            )
        else:
            shorthand = (self.account, self.currency, self.counterparty)
            if has_amount or any(value is not None for value in shorthand):
                raise InvalidRequest("account, currency, amount and counterparty need type")
            if self.lines is None:
                raise InvalidRequest.at("lines", "required")
            raw = [(line.account, line.currency, amount_value(line.amount)) for line in self.lines]
        lines: tuple[Line, ...] = parse_lines(raw)
        check_data(self.data, limits.json_depth_max)
        timestamp = None
        if self.timestamp is not None:
            timestamp = parse_instant(self.timestamp, "timestamp")
            check_timestamp(timestamp, now, limits)
        expires_at = None
        if self.expires_at is not None:
            expires_at = parse_instant(self.expires_at, "expires_at")
            if expires_at <= now:
                raise InvalidRequest.at("expires_at", "must be in the future")
        data_json = _encode_sorted(self.data)
        return Draft(
            id=transaction_id,
            mode=mode,
            lines=lines,
            data=self.data,
            timestamp=timestamp,
            expires_at=expires_at,
            fingerprint=fingerprint(mode, lines, data_json, timestamp, expires_at),
        )


BATCH_TRANSACTIONS_MAX = 8190


class BatchIn(Body):
    transactions: list[TransactionIn]
    mode: Literal["pending", "immediate"] = "pending"
    atomic: bool = False


class BatchItemOut(msgspec.Struct, omit_defaults=True):
    id: str | None
    status: str
    code: str | None = None


class BatchOut(msgspec.Struct):
    results: list[BatchItemOut]


def batch_out(
    items: Sequence[TransactionIn], drafts: Sequence[Draft | LedgerError], results: Sequence[Result]
) -> BatchOut:
    """One result per item, in order; an item that failed carries its problem code."""
    answers = iter(results)
    out = []
    for item, draft in zip(items, drafts, strict=True):
        if isinstance(draft, LedgerError):
            out.append(BatchItemOut(item.id, "FAILED", draft.code))
            continue
        result = next(answers)
        if result.error is not None:
            out.append(BatchItemOut(draft.id, "FAILED", result.error.code))
        else:
            assert result.transaction is not None
            out.append(BatchItemOut(draft.id, result.transaction.status.value))
    return BatchOut(out)


def utc_now() -> datetime:
    return datetime.now(UTC)


class BalanceOut(msgspec.Struct):
    posted: str
    pending_in: str
    pending_out: str
    available: str


class KeyOut(msgspec.Struct):
    id: str
    alg: str
    public_key: str


class RetiredKeyOut(msgspec.Struct):
    id: str
    alg: str
    public_key: str
    retired_at: datetime


class AccountOut(msgspec.Struct):
    id: str
    balance_rule: str
    data: dict[str, Any]
    created_at: datetime
    balances: dict[str, BalanceOut]
    keys: list[KeyOut]
    key_history: list[RetiredKeyOut]


class ProofHeadersOut(msgspec.Struct, omit_defaults=True, rename="kebab"):
    signature_input: str
    signature: str
    content_digest: str | None = None


class ProofOut(msgspec.Struct):
    method: str
    path: str
    body: str  # base64 of the exact bytes
    headers: ProofHeadersOut


class BalancesAtOut(msgspec.Struct):
    account: str
    at: datetime
    balances: dict[str, BalanceOut]


class EntryOut(msgspec.Struct):
    seq: int
    transaction_id: str
    currency: str
    amount: str
    kind: str
    posted: str
    pending_in: str
    pending_out: str
    available: str
    timestamp: datetime


class EntriesOut(msgspec.Struct):
    items: list[EntryOut]
    next: str | None


class LineOut(msgspec.Struct):
    account: str
    currency: str
    amount: str


class EventOut(msgspec.Struct):
    status: str
    at: datetime


class TransactionOut(msgspec.Struct):
    id: str
    status: str
    lines: list[LineOut]
    data: dict[str, Any]
    timestamp: datetime | None
    created_at: datetime
    expires_at: datetime | None
    failure: dict[str, Any] | None
    reverses: str | None
    reversal_id: str | None
    events: list[EventOut]


class AccountsOut(msgspec.Struct):
    items: list[AccountOut]
    next: str | None


class TransactionsOut(msgspec.Struct):
    items: list[TransactionOut]
    next: str | None


def balance_out(posted: Decimal, pending_in: Decimal, pending_out: Decimal) -> BalanceOut:
    return BalanceOut(
        posted=format_amount(posted),
        pending_in=format_amount(pending_in),
        pending_out=format_amount(pending_out),
        available=format_amount(EXACT.subtract(posted, pending_out)),
    )


def _head_out(head: Head) -> BalanceOut:
    return balance_out(head.posted, head.pending_in, head.pending_out)


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        balance_rule=account.rule.value,
        data=dict(account.data),
        created_at=account.created_at,
        balances={head.currency: _head_out(head) for head in account.heads},
        keys=[KeyOut(k.id, k.alg, k.public_key) for k in account.keys],
        key_history=[
            RetiredKeyOut(k.id, k.alg, k.public_key, k.retired_at) for k in account.key_history
        ],
    )


def proof_out(proof: Proof) -> ProofOut:
    return ProofOut(
        method=proof.method,
        path=proof.path,
        body=base64.b64encode(proof.body).decode(),
        headers=ProofHeadersOut(
            signature_input=proof.headers["signature-input"],
            signature=proof.headers["signature"],
            content_digest=proof.headers.get("content-digest"),
        ),
    )


def transaction_out(transaction: Transaction) -> TransactionOut:
    return TransactionOut(
        id=transaction.id,
        status=transaction.status.value,
        lines=[
            LineOut(line.account, line.currency, format_amount(line.amount))
            for line in transaction.lines
        ],
        data=dict(transaction.data),
        timestamp=transaction.timestamp,
        created_at=transaction.created_at,
        expires_at=transaction.expires_at,
        failure=None if transaction.failure is None else dict(transaction.failure),
        reverses=transaction.reverses,
        reversal_id=transaction.reversal_id,
        events=[EventOut(status.value, at) for status, at in transaction.events],
    )
