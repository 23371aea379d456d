"""The log's canonical texts: what the service assembles is what RFC 8785 gives."""

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

import rfc8785

from app.ledger.batch import Transaction
from app.ledger.documents import Line, Mode, Status
from app.ledger.log import (
    ZERO_HASH,
    EventType,
    account_text,
    balances_text,
    chain_hash,
    change,
    transaction_text,
    with_hash,
)
from app.ledger.rules import Head, Rule

AT = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def _transaction(data: dict[str, object], failure: dict[str, object] | None = None) -> Transaction:
    return Transaction(
        id="order-1", status=Status.COMPLETED, mode=Mode.IMMEDIATE,
        lines=(Line("alice", "USD", Decimal("-25.50")), Line("bob", "USD", Decimal("25.5"))),
        data=data, timestamp=AT, timestamp_given=False, created_at=AT, expires_at=None,
        failure=failure, reverses=None, reversal_id=None, fingerprint="f",
    )  # fmt: skip


def _is_canonical(text: str) -> None:
    assert rfc8785.dumps(json.loads(text)).decode() == text


def test_transaction_text_is_canonical_with_any_data() -> None:
    data = {"é": "ü\u2028\x7f", "ctl": "\x01\n\t\"\\", "n": [1, 2.5, -0.0, 1e21, True, None],
            "z": {"b": 1, "a": {"𝄞": 1, "\ue000": 2}}}  # fmt: skip
    failure = {"code": "insufficient_funds", "detail": 'needs "25"', "available": "0"}
    text = transaction_text(_transaction(data, failure))
    _is_canonical(text)
    assert json.loads(text)["lines"][0] == {"account": "alice", "currency": "USD",
                                            "amount": "-25.5"}  # fmt: skip


def test_event_text_is_canonical_and_chains() -> None:
    heads = [Head("bob", "USD", Rule.NON_NEGATIVE, Decimal(25), Decimal(0), Decimal(5))]
    made = change(
        "t", EventType.TRANSACTION_COMPLETED, AT,
        transaction=transaction_text(_transaction({})), balances=balances_text(heads),
    )  # fmt: skip
    text = made.text(ZERO_HASH, 1)
    _is_canonical(text)
    event = json.loads(text)
    assert event["sequence"] == 1
    assert event["type"] == "transaction.completed"
    assert event["at"] == "2026-11-30T12:00:00.123456Z"
    balance = {"posted": "25", "pending_in": "0", "pending_out": "5", "available": "20"}
    assert event["balances"] == {"bob": {"USD": balance}}
    hashed = chain_hash(ZERO_HASH, text)
    served = json.loads(with_hash(text, hashed))
    assert served.pop("hash") == hashed
    # What a client does: the previous hash, then the event without `hash`, by RFC 8785.
    again = hashlib.sha256(ZERO_HASH.encode() + rfc8785.dumps(served)).hexdigest()
    assert again == hashed


def test_account_text_sorts_before_at() -> None:
    made = change("t", EventType.ACCOUNT_CREATED, AT,
                  account=account_text("alice", "any", {"k": "v"}, AT))  # fmt: skip
    text = made.text(ZERO_HASH, 7)
    _is_canonical(text)
    assert json.loads(text)["account"] == {"id": "alice", "balance_rule": "any",
                                           "data": {"k": "v"},
                                           "created_at": "2026-11-30T12:00:00.123456Z"}  # fmt: skip
