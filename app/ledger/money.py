"""Exact amounts, currency codes, ids, and the free-form JSON a client may store."""

from __future__ import annotations

import math
import re
from decimal import Context, Decimal, InvalidOperation, Overflow

from app.ledger.errors import InvalidAmount, InvalidRequest

DIGITS_MAX = 38
FRACTION_DIGITS_MAX = 18
INTEGER_DIGITS_MAX = DIGITS_MAX - FRACTION_DIGITS_MAX
AMOUNT_LIMIT = Decimal(10) ** INTEGER_DIGITS_MAX
ID_LENGTH_MAX = 128

# NOTE: the default context rounds to 28 digits; money needs 38 and sums a few more.
EXACT = Context(prec=80, traps=[InvalidOperation, Overflow])

# An amount's text: ASCII only, an optional sign, digits and at most one point. No
# exponent, no `_` separators, no spaces and no other scripts' digits, all of which
# `Decimal()` would read.
_AMOUNT_TEXT = re.compile(
    r"^[+-]?(?:(?P<integer>[0-9]+)(?:\.(?P<fraction>[0-9]*))?|\.(?P<only>[0-9]+))\Z"
)
_CURRENCY = re.compile(r"^[A-Za-z0-9_.:-]{1,32}\Z")
_ID = re.compile(r"^[A-Za-z0-9_.:@/-]{1,128}\Z")


def parse_amount(value: object, path: str) -> Decimal:
    """Read an amount exactly from a decimal string, an int or a Decimal; never a float."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidAmount.at(path, "an amount is a decimal string")
    if isinstance(value, str):
        text = _AMOUNT_TEXT.match(value)
        if not text:
            raise InvalidAmount.at(path, f"{value[:64]!r} is not a decimal number")
        try:
            amount = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern rules it out
            raise InvalidAmount.at(path, "not a decimal number") from exc
        # `check_amount`, read off the digits as written (a third of the cost): zeros
        # before the integer digits or after the fraction's are not significant.
        integer = (text["integer"] or "").lstrip("0")
        fraction = (text["fraction"] or text["only"] or "").rstrip("0")
        _check_digits(len(integer), len(fraction), path)
        return amount
    amount = Decimal(value)
    check_amount(amount, path)
    return amount


def check_amount(amount: Decimal, path: str) -> None:
    """Raise unless `amount` fits NUMERIC(38,18): 20 integer and 18 fractional digits."""
    if not amount.is_finite():
        raise InvalidAmount.at(path, "the amount must be finite")
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return
    # Trailing zeros after the point are not significant: "1.50" has one fractional digit.
    while digits[-1] == 0 and exponent < 0:
        digits = digits[:-1]
        exponent += 1
    _check_digits(len(digits) + exponent, -exponent, path)


def _check_digits(integer: int, fraction: int, path: str) -> None:
    """Raise unless this many significant integer and fractional digits fit NUMERIC(38,18)."""
    if fraction > FRACTION_DIGITS_MAX:
        raise InvalidAmount.at(path, f"at most {FRACTION_DIGITS_MAX} fractional digits")
    if integer > INTEGER_DIGITS_MAX:
        raise InvalidAmount.at(path, f"at most {INTEGER_DIGITS_MAX} integer digits")


def format_amount(amount: Decimal) -> str:
    """A plain decimal string without exponent and without trailing zeros."""
    if amount == 0:
        return "0"
    # NOTE: most amounts and balances print plainly already; normalizing costs about
    # three times as much (format_amount runs a dozen times for each transfer's event).
    text = str(amount)
    if "E" in text:
        return format(amount.normalize(EXACT), "f")
    if "." in text:
        return text.rstrip("0").rstrip(".")
    return text


def check_currency(currency: str, path: str) -> None:
    if not _CURRENCY.match(currency):
        raise InvalidRequest.at(path, "a currency matches ^[A-Za-z0-9_.:-]{1,32}$")


def is_valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def check_id(value: str, path: str) -> None:
    if not is_valid_id(value):
        raise InvalidRequest.at(path, "an id matches ^[A-Za-z0-9_.:@/-]{1,128}$")


JSON_DEPTH_MAX = 64


def check_json(value: object, path: str, depth_max: int = JSON_DEPTH_MAX, depth: int = 1) -> None:
    """Raise unless PostgreSQL can store `value` as jsonb and read it back: no NUL
    character in a key or a string, and no deeper than `depth_max` levels, counted from
    the request body (`depth` is the level `value` stands at)."""
    _check_json(value, path, depth_max, depth, i_json=False)


# RFC 7493 (I-JSON): the numbers every JSON reader holds exactly.
SAFE_INTEGER_MAX = 2**53 - 1


def check_data(value: object, depth_max: int = JSON_DEPTH_MAX) -> None:
    """`data` (depth 2 in the body) as `check_json`, and I-JSON: events carrying it are
    hashed over RFC 8785 text, which has no form for an integer past 2^53, and every
    number of `data` must read back from PostgreSQL as one it has."""
    _check_json(value, "data", depth_max, 2, i_json=True)


def _check_json(value: object, path: str, depth_max: int, depth: int, *, i_json: bool) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest.at(path, "a NUL character (\\u0000) cannot be stored")
        return
    # NOTE: a float too: PostgreSQL keeps 1e20 as the integer 100000000000000000000,
    # which reads back past 2^53 and could no longer be written to an event.
    if (
        i_json
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and not (math.isfinite(value) and abs(value) <= SAFE_INTEGER_MAX)
    ):
        raise InvalidRequest.at(path, "a number beyond ±(2^53 - 1) (I-JSON); send a string")
    if not isinstance(value, dict | list):
        return
    if depth > depth_max:
        raise InvalidRequest.at(path, f"JSON nested deeper than {depth_max} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise InvalidRequest.at(path, "a NUL character (\\u0000) cannot be stored")
            _check_json(item, f"{path}.{key}", depth_max, depth + 1, i_json=i_json)
    else:
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", depth_max, depth + 1, i_json=i_json)
