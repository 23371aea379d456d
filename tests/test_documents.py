"""Transactions as values: shorthand, zero sum per currency, limits, the state machine."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.ledger.documents import (
    LINES_MAX,
    TRANSITIONS,
    Cancel,
    Line,
    Mode,
    Status,
    can_transition,
    cancel_action,
    check_balanced,
    execute_is_needed,
    fingerprint,
    new_id,
    parse_instant,
    parse_lines,
    shorthand_lines,
)
from app.ledger.errors import InvalidAmount, InvalidRequest, InvalidState, Unbalanced

D = Decimal


def test_credit_moves_from_world_into_account() -> None:
    assert shorthand_lines("CREDIT", "alice", "USD", "10", None) == [
        ("@world", "USD", D(-10)),
        ("alice", "USD", D(10)),
    ]


def test_debit_moves_from_account_to_counterparty() -> None:
    assert shorthand_lines("DEBIT", "alice", "USD", 3, "shop") == [
        ("alice", "USD", D(-3)),
        ("shop", "USD", D(3)),
    ]


@pytest.mark.parametrize(
    ("kind", "amount", "counterparty", "error"),
    [
        ("CREDIT", "0", None, InvalidRequest),
        ("CREDIT", "-1", None, InvalidRequest),
        ("CREDIT", "x", None, InvalidAmount),
        ("REFUND", "1", None, InvalidRequest),
        ("DEBIT", "1", "alice", InvalidRequest),
    ],
)
def test_shorthand_rejects(kind: str, amount: str, counterparty: str | None, error: type) -> None:
    with pytest.raises(error):
        shorthand_lines(kind, "alice", "USD", amount, counterparty)


def test_zero_sum_per_currency() -> None:
    check_balanced([Line("a", "USD", D(-1)), Line("b", "USD", D(1)),
                    Line("a", "EUR", D("0.5")), Line("c", "EUR", D("-0.5"))])  # fmt: skip
    with pytest.raises(Unbalanced, match="EUR sums to 1"):
        check_balanced([Line("a", "USD", D(-1)), Line("b", "EUR", D(1))])


def test_zero_sum_is_exact_beyond_28_digits() -> None:
    big = D("99999999999999999999.999999999999999999")
    check_balanced([Line("a", "X", big), Line("b", "X", big.copy_negate())])
    with pytest.raises(Unbalanced):
        check_balanced(
            [Line("a", "X", big), Line("b", "X", D("-99999999999999999999.999999999999999998"))]
        )


def test_line_count_limits() -> None:
    half = LINES_MAX // 2
    lines = [("a", "USD", "1")] * half + [("b", "USD", "-1")] * half
    assert len(parse_lines(lines)) == LINES_MAX
    with pytest.raises(InvalidRequest):
        parse_lines([*lines, ("c", "USD", "1"), ("d", "USD", "-1")])
    with pytest.raises(InvalidRequest):
        parse_lines([])


def test_zero_amount_line_rejected() -> None:
    with pytest.raises(InvalidRequest, match=r"lines\[1\]"):
        parse_lines([("a", "USD", "1"), ("b", "USD", "0"), ("c", "USD", "-1")])


ALLOWED = {
    (Status.PENDING, Status.COMPLETED),
    (Status.PENDING, Status.FAILED),
    (Status.PENDING, Status.VOIDED),
    (Status.COMPLETED, Status.REVERSED),
}


@pytest.mark.parametrize("current", list(Status))
@pytest.mark.parametrize("target", list(Status))
def test_every_transition(current: Status, target: Status) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)


def test_final_states_have_no_way_out() -> None:
    for final in (Status.FAILED, Status.VOIDED, Status.REVERSED):
        assert TRANSITIONS[final] == frozenset()


def test_execute_decisions() -> None:
    assert execute_is_needed(Status.PENDING) is True
    assert execute_is_needed(Status.COMPLETED) is False
    for status in (Status.FAILED, Status.VOIDED, Status.REVERSED):
        with pytest.raises(InvalidState):
            execute_is_needed(status)


def test_cancel_decisions() -> None:
    assert cancel_action(Status.PENDING) is Cancel.VOID
    assert cancel_action(Status.COMPLETED) is Cancel.REVERSE
    assert cancel_action(Status.VOIDED) is Cancel.NOTHING
    assert cancel_action(Status.REVERSED) is Cancel.NOTHING
    with pytest.raises(InvalidState):
        cancel_action(Status.FAILED)


def test_parse_instant_forms() -> None:
    utc = datetime(2006, 1, 2, 15, 4, 5, tzinfo=UTC)
    assert parse_instant("2006-01-02T15:04:05Z", "t") == utc
    assert parse_instant("2006-01-02 15:04:05.000", "t") == utc
    assert parse_instant("2006-01-02T17:04:05+02:00", "t") == utc
    with pytest.raises(InvalidRequest):
        parse_instant("02/01/2006", "t")


def test_fingerprint_reads_amounts_as_decimals() -> None:
    one = fingerprint(Mode.PENDING, [Line("a", "USD", D("1.50"))], b"{}", None, None)
    same = fingerprint(Mode.PENDING, [Line("a", "USD", D("1.5"))], b"{}", None, None)
    other = fingerprint(Mode.IMMEDIATE, [Line("a", "USD", D("1.5"))], b"{}", None, None)
    assert one == same != other


def test_fingerprint_is_the_digest_stored_before() -> None:
    """Fingerprints are stored with every transaction and compared when its id comes
    again: the digest of the same request must never change."""
    lines = (Line("a1", "USD", D("-1.50")), Line("@world", "USD", D("1.5")),
             Line("b", "EUR", D("2E+3")), Line("c", "EUR", D("-2000")))  # fmt: skip
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert fingerprint(Mode.PENDING, lines, '{"k":"vé"}'.encode(), at, None) == (
        "5abfd69fc135a0199d27b7f703dc9cc3e39a63d291425c461db24547c07bf10d")  # fmt: skip
    expires = datetime(2026, 1, 2, tzinfo=UTC)
    assert fingerprint(Mode.IMMEDIATE, lines[:2], b"{}", None, expires) == (
        "ce8ab7ec837e0e247d7070df5c40e4084897c10270af82a6524b7e326558282e")  # fmt: skip


def test_new_id_is_uuid7_and_ordered() -> None:
    first, second = new_id(), new_id()
    assert str(uuid.UUID(first)) == first
    assert first[14] == "7"
    assert first[19] in "89ab"
    assert first[:13] <= second[:13]
