"""Balance rules at their edges and the effects of hold, release, settle and post."""

from decimal import Decimal

import pytest

from app.ledger.documents import Line
from app.ledger.rules import Effect, Head, Rule, apply_line, apply_lines, breach, timestamp_failure

D = Decimal


def head(rule: Rule, posted: str = "0", pending_in: str = "0", pending_out: str = "0") -> Head:
    return Head("acct", "USD", rule, D(posted), D(pending_in), D(pending_out), version=3)


def test_hold_counts_out_and_in_separately() -> None:
    after = apply_line(head(Rule.ANY, "10"), D(-4), Effect.HOLD)
    assert (after.posted, after.pending_in, after.pending_out, after.available) == (10, 0, 4, 6)
    after = apply_line(after, D(7), Effect.HOLD)
    assert (after.posted, after.pending_in, after.pending_out, after.version) == (10, 7, 4, 5)


def test_settle_moves_holds_into_posted() -> None:
    held = head(Rule.ANY, "10", pending_in="7", pending_out="4")
    after = apply_line(apply_line(held, D(-4), Effect.SETTLE), D(7), Effect.SETTLE)
    assert (after.posted, after.pending_in, after.pending_out) == (13, 0, 0)


def test_release_removes_holds_only() -> None:
    held = head(Rule.ANY, "10", pending_in="7", pending_out="4")
    after = apply_line(apply_line(held, D(-4), Effect.RELEASE), D(7), Effect.RELEASE)
    assert (after.posted, after.pending_in, after.pending_out) == (10, 0, 0)


def test_post_changes_posted_only() -> None:
    after = apply_line(head(Rule.ANY, "1", pending_out="1"), D(-3), Effect.POST)
    assert (after.posted, after.pending_out) == (-2, 1)


@pytest.mark.parametrize(("amount", "fails"), [("-10", False), ("-10.000000000000000001", True)])
def test_non_negative_edge(amount: str, fails: bool) -> None:
    before = head(Rule.NON_NEGATIVE, "15", pending_out="5")
    problem = breach(before, apply_line(before, D(amount), Effect.HOLD))
    assert (problem is not None) is fails
    if problem:
        assert problem["code"] == "insufficient_funds"
        assert problem["available"] == "10"
        assert problem["required"] == "10.000000000000000001"
        assert problem["detail"] == "acct USD: available 10, needs 10.000000000000000001"


def test_non_negative_ignores_incoming_pending() -> None:
    before = head(Rule.NON_NEGATIVE, "0", pending_in="100")
    assert breach(before, apply_line(before, D(-1), Effect.HOLD)) is not None


@pytest.mark.parametrize(("amount", "fails"), [("5", False), ("5.000000000000000001", True)])
def test_non_positive_edge(amount: str, fails: bool) -> None:
    before = head(Rule.NON_POSITIVE, "-8", pending_in="3")
    problem = breach(before, apply_line(before, D(amount), Effect.HOLD))
    assert (problem is not None) is fails
    if problem:
        assert problem["code"] == "balance_rule_violated"
        assert (problem["available"], problem["required"]) == ("5", "5.000000000000000001")


def test_non_positive_counts_pending_out_as_room_not_taken() -> None:
    before = head(Rule.NON_POSITIVE, "0", pending_out="50")
    assert breach(before, apply_line(before, D(1), Effect.POST)) is not None


def test_any_never_breaches() -> None:
    before = head(Rule.ANY)
    assert breach(before, apply_line(before, D("-1e19"), Effect.POST)) is None


def test_change_that_is_no_worse_is_allowed_even_from_a_bad_state() -> None:
    before = head(Rule.NON_NEGATIVE, "-5")
    assert breach(before, apply_line(before, D(1), Effect.POST)) is None


def test_balance_overflow_is_a_failure() -> None:
    before = head(Rule.ANY, "99999999999999999999")
    problem = breach(before, apply_line(before, D(1), Effect.POST))
    assert problem is not None
    assert problem["code"] == "invalid_amount"


def test_apply_lines_stops_at_first_breach_and_changes_nothing() -> None:
    heads = {
        ("a", "USD"): Head("a", "USD", Rule.NON_NEGATIVE, D(5)),
        ("b", "USD"): Head("b", "USD", Rule.NON_NEGATIVE, D(0)),
    }
    lines = [Line("a", "USD", D(-5)), Line("b", "USD", D(5)), Line("b", "USD", D(-6)),
             Line("a", "USD", D(6))]  # fmt: skip
    outcome = apply_lines(heads, lines, Effect.POST)
    assert outcome.failure is not None
    assert outcome.failure["account"] == "b"
    assert outcome.failure["available"] == "5"
    assert outcome.entries == ()


def test_apply_lines_entries_carry_balances_after_each_line() -> None:
    heads = {("a", "USD"): Head("a", "USD", Rule.ANY, D(0), version=7)}
    lines = [Line("a", "USD", D(-2)), Line("a", "USD", D(5))]
    outcome = apply_lines(heads, lines, Effect.HOLD)
    assert outcome.failure is None
    assert [(e.seq, e.kind, e.pending_in, e.pending_out) for e in outcome.entries] == [
        (8, "hold", 0, 2),
        (9, "hold", 5, 2),
    ]
    assert outcome.heads[("a", "USD")].version == 9


def test_settle_and_release_never_fail() -> None:
    heads = {("a", "USD"): Head("a", "USD", Rule.NON_NEGATIVE, D(0), D(0), D(3))}
    for effect in (Effect.SETTLE, Effect.RELEASE):
        assert apply_lines(heads, [Line("a", "USD", D(-3))], effect).failure is None


def test_timestamp_failure() -> None:
    from datetime import UTC, datetime

    last = datetime(2026, 1, 2, tzinfo=UTC)
    heads = [Head("a", "USD", Rule.ANY, last_ts=last), Head("b", "USD", Rule.ANY)]
    assert timestamp_failure(heads, last) is None
    problem = timestamp_failure(heads, datetime(2026, 1, 1, tzinfo=UTC))
    assert problem is not None
    assert (problem["code"], problem["account"]) == ("timestamp_out_of_order", "a")


def test_arithmetic_is_exact_at_38_digits() -> None:
    big = D("99999999999999999999.999999999999999999")
    before = Head("a", "X", Rule.ANY, posted=big)
    after = apply_line(before, D("-0.000000000000000001"), Effect.HOLD)
    assert after.available == D("99999999999999999999.999999999999999998")
    reversed_line = Line("a", "X", big).negated()
    assert reversed_line.amount == big.copy_negate()
