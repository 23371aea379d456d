"""The search query language: what parses into what, and what is refused, by name."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.controllers.schemas import decode_query
from app.ledger.errors import InvalidQuery
from app.ledger.search import (
    PAGE_LIMIT_DEFAULT,
    FieldTest,
    RangeTest,
    Target,
    TermTest,
    parse_page,
)


def test_empty_body_matches_everything_with_default_limit() -> None:
    page = parse_page(Target.TRANSACTIONS, decode_query(b""), {})
    assert (page.query.must, page.query.should, page.limit, page.after) == ((), (), 100, None)
    assert PAGE_LIMIT_DEFAULT == 100


def test_each_list_element_is_one_condition_of_and_ed_tests() -> None:
    body = decode_query(
        b'{"query": {"must": {"fields": [{"balance.USD": {"gt": 0}}],'
        b' "terms": [{"status": "completed", "active": true}],'
        b' "ranges": [{"charge": {"gte": 2000, "lte": 40.5}}]},'
        b' "should": {"fields": [{"id": {"like": "%.DEBIT"}}]}}, "limit": 7}'
    )
    page = parse_page(Target.ACCOUNTS, body, {})
    assert page.limit == 7
    assert page.query.must == (
        (FieldTest("balance.USD", "gt", Decimal(0), "USD"),),
        (TermTest({"status": "completed", "active": True}),),
        (RangeTest("charge", "gte", Decimal(2000)), RangeTest("charge", "lte", Decimal("40.5"))),
    )
    assert page.query.should == ((FieldTest("id", "like", "%.DEBIT"),),)


def test_numbers_are_read_exactly() -> None:
    body = decode_query(b'{"query": {"must": {"ranges": [{"x": {"eq": 0.1}}]}}}')
    page = parse_page(Target.TRANSACTIONS, body, {})
    assert page.query.must[0][0] == RangeTest("x", "eq", Decimal("0.1"))


def test_shortcuts_join_must() -> None:
    page = parse_page(
        Target.TRANSACTIONS,
        {},
        {"account": "alice", "status": "completed", "from": "2026-01-01T00:00:00Z", "limit": "5"},
    )
    assert page.limit == 5
    assert page.query.must == (
        (FieldTest("account", "eq", "alice"),),
        (FieldTest("status", "eq", "COMPLETED"),),
        (FieldTest("timestamp", "gte", datetime(2026, 1, 1, tzinfo=UTC)),),
    )


@pytest.mark.parametrize(
    ("target", "body", "names"),
    [
        (Target.TRANSACTIONS, {"query": {"must": {"fields": [{"colour": {"eq": 1}}]}}}, "colour"),
        (Target.TRANSACTIONS, {"query": {"should": {"fields": [{"id": {"near": "x"}}]}}}, "near"),
        (Target.ACCOUNTS, {"query": {"must": {"fields": [{"balance.€": {"gt": 0}}]}}}, "balance"),
        (Target.ACCOUNTS, {"query": {"must": {"ranges": [{"k": {"is": 1}}]}}}, "ranges[0].k.is"),
        (Target.ACCOUNTS, {"query": {"must": {"terms": ["x"]}}}, "terms[0]"),
        (Target.ACCOUNTS, {"query": {"mus": {}}}, "mus"),
        (Target.ACCOUNTS, {"limit": 0}, "limit"),
        (Target.ACCOUNTS, {"sort": "id"}, "sort"),
    ],
)
def test_errors_name_the_offending_part(target: Target, body: dict, names: str) -> None:
    with pytest.raises(InvalidQuery, match=names.replace("[", r"\[").replace("]", r"\]")):
        parse_page(target, body, {})


def test_unknown_shortcut_is_refused() -> None:
    with pytest.raises(InvalidQuery, match="acount"):
        parse_page(Target.TRANSACTIONS, {}, {"acount": "x"})
    with pytest.raises(InvalidQuery, match="status"):
        parse_page(Target.ACCOUNTS, {}, {"status": "x"})


@pytest.mark.parametrize(
    ("target", "params", "body"),
    [
        (Target.TRANSACTIONS, {"status": "DONE"}, {}),
        (Target.TRANSACTIONS, {}, {"query": {"must": {"fields": [{"status": {"ne": "x"}}]}}}),
        (Target.ACCOUNTS, {}, {"query": {"must": {"fields": [{"balance_rule": {"eq": "y"}}]}}}),
    ],
)
def test_a_status_or_rule_that_no_item_can_have_is_refused(
    target: Target, params: dict, body: dict
) -> None:
    with pytest.raises(InvalidQuery, match="is one of"):
        parse_page(target, body, params)


def test_a_pattern_on_status_may_name_any_text() -> None:
    page = parse_page(
        Target.TRANSACTIONS, {"query": {"must": {"fields": [{"status": {"like": "%ED"}}]}}}, {}
    )
    assert page.query.must == ((FieldTest("status", "like", "%ED"),),)


def test_cursor_fingerprint_depends_on_tenant_and_query() -> None:
    one = parse_page(Target.TRANSACTIONS, {}, {"account": "a"}).query
    two = parse_page(Target.TRANSACTIONS, {}, {"account": "b"}).query
    assert one.fingerprint("t") == one.fingerprint("t")
    assert one.fingerprint("t") != one.fingerprint("u")
    assert one.fingerprint("t") != two.fingerprint("t")


@pytest.mark.parametrize("raw", [b"{", b"[]", b"1", b'"x"'])
def test_body_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidQuery):
        decode_query(raw)
