"""The log's canonical texts: what the service renders is what RFC 8785 gives."""

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import rfc8785

from app.ledger.documents import Line, Mode, Status
from app.ledger.log import ZERO_HASH, chain_hash, format_instant
from app.ledger.records import Account, Change, EventType, Transaction
from app.ledger.rules import Head, Rule
from app.models.log import render, text, with_hash

AT = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def _transaction(data: dict[str, object], failure: dict[str, object] | None = None) -> Transaction:
    return Transaction(
        id="order-1", status=Status.COMPLETED, mode=Mode.IMMEDIATE,
        lines=(Line("alice", "USD", Decimal("-25.50")), Line("bob", "USD", Decimal("25.5"))),
        data=data, timestamp=AT, timestamp_given=False, created_at=AT, expires_at=None,
        failure=failure, reverses=None, reversal_id=None, fingerprint="f",
    )  # fmt: skip


def _canonical(change: Change, sequence: int = 1) -> str:
    rendered = text(*render(change), ZERO_HASH, sequence)
    assert rfc8785.dumps(json.loads(rendered)).decode() == rendered
    return rendered


def test_msgspec_escapes_strings_as_rfc_8785_does() -> None:
    encode = msgspec.json.Encoder(order="sorted").encode
    for point in [*range(0x800), 0x2028, 0x2029, 0xFEFF, 0xFFFF, 0x10000, 0x1F600]:
        if not 0xD800 <= point <= 0xDFFF:
            assert encode(chr(point)) == rfc8785.dumps(chr(point)), hex(point)


def test_a_transaction_event_is_canonical_with_any_data() -> None:
    data = {"é": "ü\u2028\x7f", "ctl": "\x01\n\t\"\\", "n": [1, 2.5, -0.0, 1e21, True, None],
            "z": {"b": 1, "a": {"𝄞": 1, "\ue000": 2}}, "data": "x"}  # fmt: skip
    failure = {"code": "insufficient_funds", "detail": 'needs "25"', "available": "0"}
    change = Change("t", EventType.TRANSACTION_FAILED, AT, transaction=_transaction(data, failure))
    event = json.loads(_canonical(change))
    assert event["transaction"]["lines"][0] == {"account": "alice", "currency": "USD",
                                                "amount": "-25.5"}  # fmt: skip
    assert event["transaction"]["data"]["data"] == "x"
    assert event["balances"] == {}


def test_instants_are_written_in_utc_with_z_whatever_their_zone() -> None:
    paris = timezone(timedelta(hours=1))
    for at in (AT, AT.replace(microsecond=0), AT.astimezone(paris)):
        transaction = replace(_transaction({}), timestamp=at, created_at=at, expires_at=at)
        event = json.loads(_canonical(Change("t", EventType.TRANSACTION_PENDING, at,
                                             transaction=transaction)))  # fmt: skip
        expected = format_instant(at)
        assert expected.endswith("Z")
        assert event["at"] == expected
        seen = event["transaction"]
        assert (seen["timestamp"], seen["created_at"], seen["expires_at"]) == (expected,) * 3


def test_an_event_chains_as_a_client_checks_it() -> None:
    heads = (Head("bob", "USD", Rule.NON_NEGATIVE, Decimal(25), Decimal(0), Decimal(5)),)
    change = Change("t", EventType.TRANSACTION_COMPLETED, AT, transaction=_transaction({}),
                    moved=heads)  # fmt: skip
    rendered = _canonical(change)
    event = json.loads(rendered)
    assert event["sequence"] == 1
    assert event["type"] == "transaction.completed"
    assert event["at"] == "2026-11-30T12:00:00.123456Z"
    balance = {"posted": "25", "pending_in": "0", "pending_out": "5", "available": "20"}
    assert event["balances"] == {"bob": {"USD": balance}}
    hashed = chain_hash(ZERO_HASH, rendered)
    served = json.loads(with_hash(rendered, hashed))
    assert served.pop("hash") == hashed
    # What a client does: the previous hash, then the event without `hash`, by RFC 8785.
    again = hashlib.sha256(ZERO_HASH.encode() + rfc8785.dumps(served)).hexdigest()
    assert again == hashed


def test_an_account_event_sorts_account_before_at() -> None:
    account = Account("alice", Rule.ANY, {"k": "v"}, AT)
    event = json.loads(_canonical(Change("t", EventType.ACCOUNT_CREATED, AT, account=account), 7))
    assert event["account"] == {"id": "alice", "balance_rule": "any", "data": {"k": "v"},
                                "created_at": "2026-11-30T12:00:00.123456Z",
                                "keys": [], "key_history": []}  # fmt: skip
    assert event["sequence"] == 7
