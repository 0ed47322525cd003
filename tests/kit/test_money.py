"""kit/money.py: minor units and back, exact fees, and the fee's share of refunds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handwork_payments.kit import money
from handwork_payments.kit.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT_MINOR,
    MoneyError,
    fee_share_of_refunds,
    format_amount,
    platform_fee,
    to_minor,
)

# --- minor units ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "currency", "minor", "formatted"),
    [
        ("150.00", "USD", 15000, "150.00"),
        ("150", "USD", 15000, "150.00"),
        (150, "USD", 15000, "150.00"),
        (Decimal("0.01"), "USD", 1, "0.01"),
        ("10.10", "EUR", 1010, "10.10"),
        ("10.000", "USD", 1000, "10.00"),  # trailing zeros are no extra precision
        ("999999.99", "USD", MAX_AMOUNT_MINOR, "999999.99"),
        ("1500", "JPY", 1500, "1500"),
        ("1", "JPY", 1, "1"),
        ("1.0", "JPY", 1, "1"),
        ("99999999", "JPY", MAX_AMOUNT_MINOR, "99999999"),
        ("1.234", "KWD", 1234, "1.234"),
        ("1.2", "KWD", 1200, "1.200"),
        ("0.001", "BHD", 1, "0.001"),
        ("0", "USD", 0, "0.00"),
    ],
)
def test_to_minor_and_format_amount(
    value: object, currency: str, minor: int, formatted: str
) -> None:
    assert to_minor(value, currency) == minor  # type: ignore[arg-type]
    assert format_amount(minor, currency) == formatted
    assert to_minor(formatted, currency) == minor


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD"])
@given(minor=st.integers(min_value=-MAX_AMOUNT_MINOR, max_value=MAX_AMOUNT_MINOR))
def test_format_amount_round_trips(currency: str, minor: int) -> None:
    text = format_amount(minor, currency)
    places = CURRENCY_EXPONENTS[currency]
    assert ("." in text) == (places > 0)
    assert len(text.partition(".")[2]) == places
    assert to_minor(text, currency) == minor
    assert money.to_decimal(minor, currency) == Decimal(text)


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("10.001", "USD"),
        ("0.005", "EUR"),
        (Decimal("1E-10"), "USD"),
        ("1.5", "JPY"),
        ("0.1", "KRW"),
        ("1.0001", "KWD"),
        ("abc", "USD"),
        ("", "USD"),
        ("NaN", "USD"),
        ("Infinity", "USD"),
        ("-Infinity", "JPY"),
        (Decimal("NaN"), "USD"),
        (Decimal("sNaN"), "USD"),
    ],
)
def test_more_precision_than_the_currency_has_or_no_number_is_an_error(
    value: object, currency: str
) -> None:
    with pytest.raises(MoneyError):
        to_minor(value, currency)  # type: ignore[arg-type]


def test_currencies_are_normalised_or_refused() -> None:
    assert money.normalize_currency("usd") == "USD"
    assert money.normalize_currency(" Eur ") == "EUR"
    assert money.exponent("JPY") == 0 and money.exponent("KWD") == 3
    for code in ("XXX", "BTC", "US", "", "dollars"):
        with pytest.raises(MoneyError):
            money.normalize_currency(code)


# --- the platform fee -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "percentage", "fee"),
    [
        (1, "5", 0),  # 0.05 cent
        (10, "5", 1),  # 0.5 cent: half up (banker's rounding would give 0)
        (30, "5", 2),  # 1.5
        (50, "5", 3),  # 2.5: half up (banker's: 2)
        (9, "5", 0),  # 0.45
        (11, "5", 1),  # 0.55
        (10001, "5", 500),  # 100.01 -> 5.0005 -> 5.00
        (10010, "5", 501),  # 100.10 -> 5.005 -> 5.01
        (15000, "5.0", 750),
        (15000, "0", 0),
        (15000, "100", 15000),
        (1000, "2.9", 29),
        (1050, "2.9", 30),  # 30.45
        (1, "50", 1),  # 0.5
        (3, "33.3333", 1),  # 0.999999
        (MAX_AMOUNT_MINOR, "5", 5_000_000),  # 4,999,999.95
    ],
)
def test_platform_fee_rounds_half_up(amount: int, percentage: str, fee: int) -> None:
    assert platform_fee(amount, Decimal(percentage)) == fee


@given(
    amount=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
    percentage=st.decimals(min_value=0, max_value=100, places=4),
)
def test_platform_fee_is_between_zero_and_the_amount(amount: int, percentage: Decimal) -> None:
    fee = platform_fee(amount, percentage)
    assert 0 <= fee <= amount
    assert abs(Decimal(fee) - Decimal(amount) * percentage / 100) <= Decimal("0.5")


# --- the fee's share of refunds -----------------------------------------------------------

PERCENTAGES = st.sampled_from(["0", "2.9", "5", "12.5", "33.3333", "99.99", "100"])


@st.composite
def refunds(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """A payment's amount and fee, and partial refunds that may or may not add up to all."""
    amount = draw(st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR))
    fee = platform_fee(amount, Decimal(draw(PERCENTAGES)))
    parts: list[int] = []
    left = amount
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        if left == 0:
            break
        part = draw(st.one_of(st.integers(1, left), st.integers(1, min(left, 3)), st.just(left)))
        parts.append(part)
        left -= part
    return amount, fee, parts


@given(case=refunds(), finish=st.booleans())
def test_the_fee_parts_of_partial_refunds_add_up_to_the_fee(
    case: tuple[int, int, list[int]], finish: bool
) -> None:
    amount, fee, parts = case
    if finish and sum(parts) < amount:
        parts = [*parts, amount - sum(parts)]  # a last refund of all that is left
    total, returned = 0, 0
    for part in parts:
        total += part
        share = fee_share_of_refunds(total, amount, fee)
        fee_part = share - returned  # this refund's part of the fee
        assert 0 <= fee_part <= part
        assert share <= fee
        returned = share
    if total == amount:
        assert returned == fee
    else:
        assert returned == fee * total // amount  # pro rata, rounded down


@pytest.mark.parametrize(
    ("refunded", "amount", "fee", "share"),
    [
        (0, 10000, 500, 0),
        (10000, 10000, 500, 500),
        (5000, 10000, 500, 250),
        (1, 10000, 500, 0),  # rounded down: the odd unit stays with the worker
        (19, 10000, 500, 0),
        (20, 10000, 500, 1),
        (3333, 10000, 500, 166),
        (1, 3, 1, 0),
        (2, 3, 1, 0),
        (3, 3, 1, 1),
    ],
)
def test_fee_share_of_refunds_examples(refunded: int, amount: int, fee: int, share: int) -> None:
    assert fee_share_of_refunds(refunded, amount, fee) == share


@pytest.mark.parametrize(("refunded", "amount"), [(-1, 100), (101, 100), (0, 0)])
def test_fee_share_of_refunds_refuses_impossible_totals(refunded: int, amount: int) -> None:
    with pytest.raises(AssertionError):
        fee_share_of_refunds(refunded, amount, 0)
