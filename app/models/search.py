"""Search queries compiled to parameterised SQL: column names come from a whitelist,
every value the client gave is a bound parameter, never text pasted into SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from app.ledger.errors import InvalidQuery
from app.ledger.records import Account, Transaction
from app.ledger.search import (
    Condition,
    FieldTest,
    Page,
    RangeTest,
    Target,
    TermTest,
)
from app.models.rows import account_from_row, decode_cursor, encode_cursor, transaction_from_row
from app.models.statements import ACCOUNT_COLUMNS, TRANSACTION_FIELDS
from app.models.store import PostgresStore, account_heads

_encode_json = msgspec.json.Encoder(decimal_format="number").encode

SQL_COMPARISONS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "eq": "=", "ne": "<>"}
# Whitelisted columns per target; the alias is `a` (accounts) or `t` (transactions).
COLUMNS = {
    Target.ACCOUNTS: {"id": "a.id", "balance_rule": "a.balance_rule", "created_at": "a.created_at"},
    Target.TRANSACTIONS: {
        "id": "t.id",
        "status": "t.status",
        "timestamp": "t.timestamp",
        "created_at": "t.created_at",
    },
}
LINE_KEYS = {"account": "account", "currency": "currency"}


class _Compiler:
    """Builds one WHERE clause and its bound parameters."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.alias = "a" if target is Target.ACCOUNTS else "t"
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"q{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def where(self, must: Sequence[Condition], should: Sequence[Condition]) -> str:
        parts = [self.condition(c) for c in must]
        if should:
            parts.append("(" + " OR ".join(self.condition(c) for c in should) + ")")
        return " AND ".join(parts) if parts else "TRUE"

    def condition(self, condition: Condition) -> str:
        return "(" + " AND ".join(self.test(t) for t in condition) + ")"

    def test(self, test: FieldTest | TermTest | RangeTest) -> str:
        if isinstance(test, TermTest):
            subset = self.bind(_encode_json(test.subset).decode())
            return f"{self.alias}.data @> CAST({subset} AS jsonb)"
        if isinstance(test, RangeTest):
            return self.range(test)
        return self.field(test)

    def field(self, test: FieldTest) -> str:
        if test.currency is not None:
            currency = self.bind(test.currency)
            column = (
                "coalesce((SELECT b.posted FROM balances b WHERE b.tenant = a.tenant"
                f" AND b.account = a.id AND b.currency = {currency}), 0)"
            )
            return self.compare(column, test.op, f"CAST({self.bind(test.value)} AS numeric)")
        if test.field in LINE_KEYS:
            return self.line(LINE_KEYS[test.field], test.op, test.value)
        column = COLUMNS[self.target][test.field]
        return self.compare(column, test.op, self.bind(test.value))

    @staticmethod
    def compare(column: str, op: str, value: str) -> str:
        if op == "like":
            return f"{column} LIKE {value}"
        if op == "notlike":
            return f"{column} NOT LIKE {value}"
        return f"{column} {SQL_COMPARISONS[op]} {value}"

    def line(self, key: str, op: str, value: Any) -> str:
        """Any line's account (or currency) passes; `ne` and `notlike`: no line matches."""
        if op in ("eq", "ne"):
            contained = self.bind(_encode_json([{key: value}]).decode())
            test = f"t.lines @> CAST({contained} AS jsonb)"
            return test if op == "eq" else f"NOT {test}"
        positive = {"notlike": "like"}.get(op, op)
        element = self.compare(f"l.value ->> '{key}'", positive, self.bind(value))
        exists = f"EXISTS (SELECT 1 FROM jsonb_array_elements(t.lines) l WHERE {element})"
        return exists if op == positive else f"NOT {exists}"

    def range(self, test: RangeTest) -> str:
        value = f"{self.alias}.data -> CAST({self.bind(test.key)} AS text)"
        op = test.op
        if op in ("is", "isnot"):
            return f"coalesce(jsonb_typeof({value}), 'null') {'=' if op == 'is' else '<>'} 'null'"
        if op in ("in", "nin"):
            listed = self.bind(_encode_json(test.value).decode())
            test_sql = f"{value} IN (SELECT jsonb_array_elements(CAST({listed} AS jsonb)))"
            return test_sql if op == "in" else f"NOT coalesce({test_sql}, false)"
        if op in ("eq", "ne") and not isinstance(test.value, str):
            equal = f"{value} = CAST({self.bind(_encode_json(test.value).decode())} AS jsonb)"
            return equal if op == "eq" else f"NOT coalesce({equal}, false)"
        if isinstance(test.value, str):
            typed = f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN {value} #>> '{{}}' END)"
            bound = self.bind(test.value)
        else:
            typed = (
                f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN CAST({value} AS numeric) END)"
            )
            bound = f"CAST({self.bind(test.value)} AS numeric)"
        positive = {"ne": "eq", "notlike": "like"}.get(op, op)
        compared = self.compare(typed, positive, bound)
        return compared if op == positive else f"NOT coalesce({compared}, false)"


def _after(page: Page, tenant: str, size: int) -> list[Any]:
    """The last key of the previous page, from a cursor made for this tenant and query."""
    assert page.after is not None
    values = decode_cursor(page.after, InvalidQuery)
    if len(values) != size + 1 or values[0] != page.query.fingerprint(tenant):
        raise InvalidQuery("after: this cursor belongs to another query")
    return values[1:]


async def search_accounts(
    store: PostgresStore, tenant: str, page: Page
) -> tuple[list[Account], str | None]:
    compiler = _Compiler(Target.ACCOUNTS)
    where = compiler.where(page.query.must, page.query.should)
    params = {**compiler.params, "tenant": tenant, "limit": page.limit + 1}
    keyset = ""
    if page.after is not None:
        (params["after_id"],) = _after(page, tenant, 1)
        keyset = " AND a.id > :after_id"
    sql = (
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts a"
        f" WHERE a.tenant = :tenant AND {where}{keyset} ORDER BY a.id LIMIT :limit"
    )
    async with store.scan_connection() as connection:
        rows = list(await connection.execute(sql, params))
        by_account = await account_heads(connection, tenant, [r.id for r in rows[: page.limit]])
    accounts = [account_from_row(r, by_account.get(r.id, [])) for r in rows[: page.limit]]
    cursor = None
    if len(rows) > page.limit:
        cursor = encode_cursor([page.query.fingerprint(tenant), accounts[-1].id])
    return accounts, cursor


async def search_transactions(
    store: PostgresStore, tenant: str, page: Page
) -> tuple[list[Transaction], str | None]:
    compiler = _Compiler(Target.TRANSACTIONS)
    where = compiler.where(page.query.must, page.query.should)
    params = {**compiler.params, "tenant": tenant, "limit": page.limit + 1}
    account = _required_account(page.query.must)
    if account is None:
        source, order = "transactions t WHERE t.tenant = :tenant", "t.timestamp, t.id"
    else:
        # An account's transactions come from its postings, already in page order.
        params["account"] = account
        source = (
            "transaction_accounts p JOIN transactions t"
            " ON t.tenant = p.tenant AND t.id = p.transaction_id"
            " WHERE p.tenant = :tenant AND p.account = :account"
        )
        order = "p.timestamp, p.transaction_id"
    keyset = ""
    if page.after is not None:
        after_ts, params["after_id"] = _after(page, tenant, 2)
        params["after_ts"] = _instant(after_ts)
        keyset = f" AND ({order}) > (:after_ts, :after_id)"
    sql = (
        f"SELECT {', '.join('t.' + column for column in TRANSACTION_FIELDS)}, t.history"
        f" FROM {source} AND {where}{keyset}"
        f" ORDER BY {order} LIMIT :limit"
    )
    async with store.scan_connection() as connection:
        rows = list(await connection.execute(sql, params))
    transactions = [transaction_from_row(r, r.history) for r in rows[: page.limit]]
    cursor = None
    if len(rows) > page.limit:
        last = transactions[-1]
        assert last.timestamp is not None
        cursor = encode_cursor(
            [page.query.fingerprint(tenant), last.timestamp.isoformat(), last.id]
        )
    return transactions, cursor


def _required_account(must: Sequence[Condition]) -> str | None:
    """The account of a `must` condition `account eq X`, if the query has one."""
    for condition in must:
        for test in condition:
            if isinstance(test, FieldTest) and test.field == "account" and test.op == "eq":
                return str(test.value)
    return None


def _instant(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidQuery("after: not a cursor of this list") from exc
