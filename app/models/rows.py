"""Rows to the ledger's values and back: what the store reads and the JSON it writes."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from app.ledger.documents import Line, Mode, Status
from app.ledger.errors import InvalidRequest
from app.ledger.keys import PublicKey, RetiredKey
from app.ledger.records import Account, HeadKey, Plan, Transaction
from app.ledger.rules import Head, Rule

_encode = msgspec.json.Encoder(decimal_format="string").encode


def json_value(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def _lines(value: Any) -> tuple[Line, ...]:
    return tuple(Line(x["account"], x["currency"], Decimal(x["amount"])) for x in json_value(value))


def keys_param(keys: Sequence[tuple[str | int | None, ...]]) -> str:
    """Row keys as one JSON array of arrays (see TRANSACTION_KEYS, LOCK_HEADS).

    NOTE: asyncpg checks every element of a text[] parameter against two abstract base
    classes; one JSON text is a single string to bind.
    """
    return _encode(keys).decode()


def head_key(row: Any) -> HeadKey:
    return (row["tenant"], row["account"], row["currency"])


@dataclass(frozen=True, slots=True)
class BalanceRow:
    currency: str
    posted: Decimal
    pending_in: Decimal
    pending_out: Decimal


@dataclass(frozen=True, slots=True)
class EntryRow:
    seq: int
    transaction_id: str
    currency: str
    amount: Decimal
    kind: str
    posted: Decimal
    pending_in: Decimal
    pending_out: Decimal
    timestamp: datetime


# NOTE: a dict lookup; calling the Enum costs microseconds per row on the hot path.
RULES = {rule.value: rule for rule in Rule}


def head_from_row(row: Any) -> Head:
    # Positional: keywords cost a third more, on thousands of rows a large group commit.
    return Head(row["account"], row["currency"], RULES[row["balance_rule"]], row["posted"],
                row["pending_in"], row["pending_out"], row["version"], row["last_ts"])  # fmt: skip


def account_from_row(row: Any, heads: Sequence[Head]) -> Account:
    """An account from its `ACCOUNT_COLUMNS`."""
    return Account(
        id=row["id"],
        rule=RULES[row["balance_rule"]],
        data=json_value(row["data"]),
        created_at=row["created_at"],
        heads=tuple(heads),
        keys=keys_from_json(row["keys"]),
        key_history=tuple(
            RetiredKey(k["id"], k["alg"], k["public_key"], datetime.fromisoformat(k["retired_at"]))
            for k in json_value(row["key_history"])
        ),
    )


def keys_from_json(value: Any) -> tuple[PublicKey, ...]:
    return tuple(PublicKey(k["id"], k["alg"], k["public_key"]) for k in json_value(value))


def keys_json(keys: Sequence[PublicKey]) -> str:
    return json_text([{"id": k.id, "alg": k.alg, "public_key": k.public_key} for k in keys])


def key_history_json(history: Sequence[RetiredKey]) -> str:
    return json_text([
        {"id": k.id, "alg": k.alg, "public_key": k.public_key,
         "retired_at": k.retired_at.isoformat()}
        for k in history
    ])  # fmt: skip


def transaction_from_row(row: Any, events: Any = ()) -> Transaction:
    return Transaction(
        id=row["id"],
        status=Status(row["status"]),
        mode=Mode(row["mode"]),
        lines=_lines(row["lines"]),
        data=json_value(row["data"]),
        timestamp=row["timestamp"],
        timestamp_given=row["timestamp_given"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        failure=json_value(row["failure"]) if row["failure"] is not None else None,
        reverses=row["reverses"],
        reversal_id=row["reversal_id"],
        fingerprint=row["fingerprint"],
        events=tuple((Status(s), datetime.fromisoformat(at)) for s, at in json_value(events)),
    )


def json_text(value: Any) -> str:
    """JSON of a value for a `jsonb` parameter; Decimals as exact strings."""
    return _encode(value).decode()


def json_rows(rows: list[Any]) -> str:
    return _encode(rows).decode()


def plan_params(plan: Plan) -> dict[str, str]:
    """The rows of a plan, one JSON text per table, each row an array of its values in
    the order of WRITE_PLAN's columns for the table."""
    heads = [(key[0], h.account, h.currency, h.posted, h.pending_in, h.pending_out, h.version,
              h.last_ts) for key, h in plan.heads.items()]  # fmt: skip
    entries = [
        (r.tenant, r.entry.account, r.entry.currency, r.entry.seq, r.transaction_id,
         r.entry.kind, r.entry.amount, r.entry.posted, r.entry.pending_in, r.entry.pending_out,
         r.timestamp)
        for r in plan.entries
    ]  # fmt: skip
    inserts = [
        (key[0], t.id, t.status, t.mode, t.lines, t.data, t.timestamp, t.timestamp_given,
         t.created_at, t.expires_at, t.failure, t.reverses, t.reversal_id, t.fingerprint,
         t.events)
        for key, t in plan.inserts.items()
    ]  # fmt: skip
    updates = [(key[0], t.id, t.status, t.failure, t.reversal_id, t.events)
               for key, t in plan.updates.items()]  # fmt: skip
    postings = [(p.tenant, p.account, p.timestamp, p.transaction_id) for p in plan.postings]
    return {
        "heads": json_rows(heads),
        "entries": json_rows(entries),
        "inserts": json_rows(inserts),
        "updates": json_rows(updates),
        "postings": json_rows(postings),
    }


def encode_cursor(values: list[Any]) -> str:
    """An opaque page cursor: the last row's key, URL-safe."""
    return base64.urlsafe_b64encode(_encode(values)).decode().rstrip("=")


def decode_cursor(cursor: str, error: type[InvalidRequest] = InvalidRequest) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return msgspec.json.decode(raw, type=list[Any])
    except (ValueError, msgspec.DecodeError) as exc:
        raise error("after: not a cursor of this list") from exc


def entry_key(cursor: str) -> tuple[datetime, str, int]:
    try:
        ts, currency, seq = msgspec.convert(decode_cursor(cursor), type=tuple[str, str, int])
        return datetime.fromisoformat(ts), currency, seq
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidRequest("after: not a cursor of this list") from exc
