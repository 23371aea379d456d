"""The search query language (QLedger's subset of Elasticsearch) as plain values.

A query has `must` (every condition holds) and `should` (at least one holds) groups of
`fields` (columns), `terms` (containment in `data`) and `ranges` (comparisons of a key of
`data`). Each element of those lists is one condition: all the tests inside it hold.
Parsing validates everything against a whitelist; compiling to SQL is the store's job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from app.ledger.documents import Status, parse_instant
from app.ledger.errors import InvalidQuery, InvalidRequest
from app.ledger.money import JSON_DEPTH_MAX, check_currency, check_json, parse_amount
from app.ledger.rules import Rule

PAGE_LIMIT_MAX = 1000
PAGE_LIMIT_DEFAULT = 100
CONDITIONS_MAX = 64
DATA_KEY_LENGTH_MAX = 256

COMPARISONS = frozenset({"lt", "lte", "gt", "gte", "eq", "ne"})
PATTERNS = frozenset({"like", "notlike"})
NULL_TESTS = frozenset({"is", "isnot"})
LIST_TESTS = frozenset({"in", "nin"})

# Text columns that hold one of a few values: a comparison with any other value could
# only ever match nothing, so it is a mistake to say so of (`status=DONE`), not an
# empty page.
CHOICES: Mapping[str, tuple[str, ...]] = {
    "status": tuple(Status),
    "balance_rule": tuple(Rule),
}


class Target(StrEnum):
    ACCOUNTS = "accounts"
    TRANSACTIONS = "transactions"


class ValueKind(StrEnum):
    TEXT = "text"
    INSTANT = "instant"
    AMOUNT = "amount"


# The columns each target may test, and how their values are read.
FIELDS: Mapping[Target, Mapping[str, ValueKind]] = {
    Target.ACCOUNTS: {
        "id": ValueKind.TEXT,
        "balance_rule": ValueKind.TEXT,
        "created_at": ValueKind.INSTANT,
    },
    Target.TRANSACTIONS: {
        "id": ValueKind.TEXT,
        "status": ValueKind.TEXT,
        "timestamp": ValueKind.INSTANT,
        "created_at": ValueKind.INSTANT,
        "account": ValueKind.TEXT,
        "currency": ValueKind.TEXT,
    },
}
BALANCE_PREFIX = "balance."


@dataclass(frozen=True, slots=True)
class FieldTest:
    """`column op value`; for `balance.<CUR>`, `currency` names the balance."""

    field: str
    op: str
    value: str | datetime | Decimal
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class TermTest:
    """`data` contains `subset` (JSON containment)."""

    subset: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RangeTest:
    """`data[key] op value`: numbers as numbers, strings as strings."""

    key: str
    op: str
    value: Any


Test = FieldTest | TermTest | RangeTest
# One condition: every test in it holds.
Condition = tuple[Test, ...]


@dataclass(frozen=True, slots=True)
class Query:
    target: Target
    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()

    def fingerprint(self, tenant: str) -> str:
        """Ties a cursor to one tenant and one query."""
        text = repr((tenant, self.target.value, self.must, self.should))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Page:
    query: Query
    limit: int
    after: str | None


def parse_page(
    target: Target,
    body: Mapping[str, Any],
    shortcuts: Mapping[str, str],
    depth_max: int = JSON_DEPTH_MAX,
) -> Page:
    """The body's query, plus the query-string shortcuts added to `must`."""
    try:
        check_json(dict(body), "body", depth_max)
        check_json(dict(shortcuts), "query string", depth_max)
    except InvalidRequest as exc:
        raise InvalidQuery(exc.detail) from exc
    unknown = set(body) - {"query", "limit", "after"}
    if unknown:
        raise InvalidQuery(f"unknown key {sorted(unknown)[0]!r}: use query, limit, after")
    raw = body.get("query")
    must: list[Condition] = []
    should: list[Condition] = []
    if raw is not None:
        if not isinstance(raw, dict):
            raise InvalidQuery("query: an object with must and/or should")
        unknown = set(raw) - {"must", "should"}
        if unknown:
            raise InvalidQuery(f"query: unknown key {sorted(unknown)[0]!r}: use must, should")
        must = _group(target, raw.get("must"), "query.must")
        should = _group(target, raw.get("should"), "query.should")
    must += _shortcuts(target, shortcuts)
    if len(must) + len(should) > CONDITIONS_MAX:
        raise InvalidQuery(f"query: at most {CONDITIONS_MAX} conditions")
    limit = _limit(shortcuts.get("limit", body.get("limit")))
    after = shortcuts.get("after", body.get("after"))
    if after is not None and not isinstance(after, str):
        raise InvalidQuery("after: a cursor string from a previous page")
    return Page(Query(target, tuple(must), tuple(should)), limit, after)


def _limit(value: object) -> int:
    if value is None:
        return PAGE_LIMIT_DEFAULT
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= PAGE_LIMIT_MAX:
        raise InvalidQuery(f"limit: a whole number from 1 to {PAGE_LIMIT_MAX}")
    return value


SHORTCUTS: Mapping[Target, Mapping[str, tuple[str, str]]] = {
    Target.ACCOUNTS: {},
    Target.TRANSACTIONS: {
        "account": ("account", "eq"),
        "status": ("status", "eq"),
        "currency": ("currency", "eq"),
        "from": ("timestamp", "gte"),
        "to": ("timestamp", "lt"),
    },
}


def _shortcuts(target: Target, params: Mapping[str, str]) -> list[Condition]:
    allowed = SHORTCUTS[target]
    conditions: list[Condition] = []
    for name, value in params.items():
        if name in ("limit", "after"):
            continue
        if name not in allowed:
            known = ", ".join([*allowed, "limit", "after"])
            raise InvalidQuery(f"unknown query parameter {name!r}: use {known}")
        field, op = allowed[name]
        conditions.append((_field_test(target, field, op, value, name),))
    return conditions


def _group(target: Target, raw: object, path: str) -> list[Condition]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise InvalidQuery(f"{path}: an object with fields, terms and/or ranges")
    unknown = set(raw) - {"fields", "terms", "ranges"}
    if unknown:
        raise InvalidQuery(f"{path}: unknown key {sorted(unknown)[0]!r}: use fields, terms, ranges")
    conditions: list[Condition] = []
    for kind, parse in (("fields", _field), ("terms", _term), ("ranges", _range)):
        items = raw.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            raise InvalidQuery(f"{path}.{kind}: a list of objects")
        for i, item in enumerate(items):
            where = f"{path}.{kind}[{i}]"
            if not isinstance(item, dict) or not item:
                raise InvalidQuery(f"{where}: a non-empty object")
            conditions.append(parse(target, item, where))
    return conditions


def _operations(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise InvalidQuery(f'{where}: an object of operators, like {{"gt": 0}}')
    return value


def _field(target: Target, item: dict[str, Any], where: str) -> Condition:
    tests: list[Test] = []
    for name, operations in item.items():
        for op, value in _operations(operations, f"{where}.{name}").items():
            tests.append(_field_test(target, name, op, value, f"{where}.{name}.{op}"))
    return tuple(tests)


def _field_test(target: Target, name: str, op: str, value: object, where: str) -> FieldTest:
    if op not in COMPARISONS | PATTERNS:
        raise InvalidQuery(f"{where}: unknown operator {op!r} for a field")
    currency = None
    if name.startswith(BALANCE_PREFIX) and target is Target.ACCOUNTS:
        currency = name[len(BALANCE_PREFIX) :]
        try:
            check_currency(currency, where)
        except InvalidRequest as exc:
            raise InvalidQuery(exc.detail) from exc
        kind = ValueKind.AMOUNT
    elif name in FIELDS[target]:
        kind = FIELDS[target][name]
    else:
        known = ", ".join(
            [*FIELDS[target], *(["balance.<CURRENCY>"] * (target is Target.ACCOUNTS))]
        )
        raise InvalidQuery(f"{where}: unknown field {name!r}: use {known}")
    if op in PATTERNS and kind is not ValueKind.TEXT:
        raise InvalidQuery(f"{where}: {op} compares text, and {name} is not text")
    return FieldTest(name, op, _field_value(kind, value, where, name, op), currency)


def _field_value(
    kind: ValueKind, value: object, where: str, name: str, op: str
) -> str | datetime | Decimal:
    try:
        if kind is ValueKind.AMOUNT:
            if isinstance(value, float):
                raise InvalidQuery(f"{where}: a number")
            return parse_amount(value, where)
        if not isinstance(value, str):
            raise InvalidQuery(f"{where}: {name} takes a string")
        if kind is ValueKind.INSTANT:
            return parse_instant(value, where)
        value = value.upper() if name == "status" else value
        choices = CHOICES.get(name)
        if choices is not None and op in COMPARISONS and value not in choices:
            raise InvalidQuery(f"{where}: {name} is one of {', '.join(choices)}")
        return value
    except InvalidQuery:
        raise
    except InvalidRequest as exc:
        raise InvalidQuery(exc.detail) from exc


def _term(_: Target, item: dict[str, Any], where: str) -> Condition:
    return (TermTest(item),)


def _range(_: Target, item: dict[str, Any], where: str) -> Condition:
    tests: list[Test] = []
    for key, operations in item.items():
        if not 1 <= len(key) <= DATA_KEY_LENGTH_MAX:
            raise InvalidQuery(f"{where}: a data key of 1 to {DATA_KEY_LENGTH_MAX} characters")
        for op, value in _operations(operations, f"{where}.{key}").items():
            tests.append(RangeTest(key, op, _range_value(op, value, f"{where}.{key}.{op}")))
    return tuple(tests)


def _range_value(op: str, value: object, where: str) -> Any:
    if op in NULL_TESTS:
        if value is not None:
            raise InvalidQuery(f"{where}: {op} takes null")
        return None
    if op in LIST_TESTS:
        if not isinstance(value, list) or not value:
            raise InvalidQuery(f"{where}: {op} takes a non-empty list")
        if any(isinstance(v, dict | list) for v in value):
            raise InvalidQuery(f"{where}: {op} takes a list of strings, numbers, booleans or null")
        return value
    if op in PATTERNS:
        if not isinstance(value, str):
            raise InvalidQuery(f"{where}: {op} takes a string pattern")
        return value
    if op not in COMPARISONS:
        raise InvalidQuery(f"{where}: unknown operator {op!r} for a range")
    if isinstance(value, bool) or value is None:
        if op not in ("eq", "ne"):
            raise InvalidQuery(f"{where}: {op} compares numbers or strings")
        return value
    if isinstance(value, int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise InvalidQuery(f"{where}: a finite number")
        return Decimal(value)
    if isinstance(value, str):
        return value
    raise InvalidQuery(f"{where}: a number, a string, a boolean or null")
