"""Amounts: exact parsing, limits at their edges, formatting; ids and currencies."""

import random
from decimal import Decimal

import pytest

from app.ledger.errors import InvalidAmount, InvalidRequest
from app.ledger.money import (
    check_amount,
    check_currency,
    check_id,
    check_json,
    format_amount,
    parse_amount,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.50", Decimal("12.50")),
        ("-3", Decimal(-3)),
        ("+7", Decimal(7)),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        (42, Decimal(42)),
        (Decimal("0.1"), Decimal("0.1")),
        (
            "99999999999999999999.999999999999999999",
            Decimal("99999999999999999999.999999999999999999"),
        ),
        ("0.000000000000000001", Decimal("1e-18")),
        ("1.500000000000000000000", Decimal("1.5")),  # trailing zeros are not significant
        ("0.0000000000000000000000", Decimal(0)),
    ],
)
def test_parse_amount_exact(value: object, expected: Decimal) -> None:
    assert parse_amount(value, "amount") == expected


@pytest.mark.parametrize(
    "value",
    [
        "100000000000000000000",  # 21 integer digits
        "0.0000000000000000001",  # 19 fractional digits
        "1e20",
        "1e400",
        "NaN",
        "Infinity",
        "-inf",
        "1_000",
        "1_0",
        "1e3",
        "\uff11\uff10",  # full-width 10
        "\u0661\u0660",  # Arabic-Indic 10
        "1.2.3",
        "--1",
        "1\n",
        " 1",
        "1 ",
        "",
        "0x10",
        "1,5",
        1.5,
        True,
        None,
        [1],
    ],
)
def test_parse_amount_rejects(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(value, "amount")


def test_an_amount_as_text_is_held_to_the_limits_of_its_decimal() -> None:
    """A text amount's limits are read off its digits as written; the verdict and the
    message must be `check_amount`'s on the Decimal, zeros before and after included."""
    rng = random.Random(13)
    verdicts: dict[str | None, int] = {}
    for _ in range(20_000):
        zeros = "0" * rng.choice((0, 0, 1, 3, 25))
        integer = zeros + "".join(rng.choice("0123456789") for _ in range(rng.randrange(23)))
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randrange(22)))
        fraction += "0" * rng.choice((0, 0, 2, 30))
        text = rng.choice(("", "-", "+")) + integer + rng.choice((".", "")) + fraction
        if not integer + fraction:
            continue
        expected: str | None = None
        try:
            check_amount(Decimal(text), "amount")
        except InvalidAmount as error:
            expected = error.detail
        try:
            parse_amount(text, "amount")
            found = None
        except InvalidAmount as error:
            found = error.detail
        assert found == expected, text
        verdicts[expected] = verdicts.get(expected, 0) + 1
    assert len(verdicts) == 3, verdicts  # accepted, too many of either kind of digit


def test_largest_amount_with_38_digits_is_exact() -> None:
    text = "12345678901234567890.123456789012345678"
    assert format_amount(parse_amount(text, "amount")) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("100.000000000000000000"), "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("0E-18"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("-2.50"), "-2.5"),
        (Decimal("1e-18"), "0.000000000000000001"),
        (Decimal("-1e-7"), "-0.0000001"),
        (Decimal("2.5E+3"), "2500"),
        (Decimal("10.10"), "10.1"),
        (Decimal("-5.000"), "-5"),
        (Decimal("1000"), "1000"),
    ],
)
def test_format_amount_plain_without_exponent(amount: Decimal, text: str) -> None:
    assert format_amount(amount) == text


@pytest.mark.parametrize("code", ["USD", "BTC", "shelf-items", "a.b:c_d", "X" * 32])
def test_currency_ok(code: str) -> None:
    check_currency(code, "currency")


@pytest.mark.parametrize("code", ["", "US D", "X" * 33, "€", "a/b"])
def test_currency_rejected(code: str) -> None:
    with pytest.raises(InvalidRequest):
        check_currency(code, "currency")


@pytest.mark.parametrize("value", ["a", "@world", "users/42:wallet", "x" * 128, "A-Z_0.9"])
def test_id_ok(value: str) -> None:
    check_id(value, "id")


@pytest.mark.parametrize("value", ["", "x" * 129, "has space", "é", "a?b", "a#b", "a\n", "a\x00b"])
def test_id_rejected(value: str) -> None:
    with pytest.raises(InvalidRequest):
        check_id(value, "id")


def test_check_json_refuses_nul_and_depth_past_the_limit() -> None:
    nested: object = "x"
    for _ in range(64):
        nested = [nested]
    check_json(nested, "data", 64)  # 64 levels of lists: the limit
    with pytest.raises(InvalidRequest, match="deeper than 64"):
        check_json([nested], "data", 64)
    with pytest.raises(InvalidRequest, match=r"data\.k\[1\]: a NUL"):
        check_json({"k": ["ok", "a\x00"]}, "data")
    with pytest.raises(InvalidRequest, match="NUL"):
        check_json({"a\x00": 1}, "data")
