"""The audit's own arithmetic: sums of balances are exact at the API's 38 digits."""

from __future__ import annotations

from decimal import Decimal

from app.ledger.audit import Audit


def test_balances_of_38_digits_sum_to_zero_exactly() -> None:
    audit = Audit()
    big, tiny = Decimal("12345678901234567890.123456789012345678"), Decimal("1E-18")
    both = Decimal("-12345678901234567890.123456789012345679")
    for account, posted in (("a", big), ("b", tiny), ("c", both)):
        audit.balance(account, "USD", posted, Decimal(0), Decimal(0))
    audit.finish()
    kinds = {p["kind"] for p in audit.report()["problems"]}
    assert "sum_not_zero" not in kinds
    assert "entry_mismatch" in kinds  # balances without entries: the audit did run


def test_a_sum_off_by_the_smallest_amount_is_found() -> None:
    audit = Audit()
    big = Decimal("12345678901234567890.123456789012345678")
    audit.balance("a", "USD", big, Decimal(0), Decimal(0))
    audit.balance("b", "USD", -big + Decimal("0.000000000000000001"), Decimal(0), Decimal(0))
    audit.finish()
    assert "sum_not_zero" in {p["kind"] for p in audit.report()["problems"]}
