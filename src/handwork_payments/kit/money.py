"""Money as integer minor units with an ISO 4217 currency beside them. Never float."""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 minor-unit exponents of the currencies we accept. Stripe's zero-decimal
# currencies (JPY, KRW, ...) have exponent 0; the three-decimal ones (KWD, BHD, ...) 3.
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        (
            "USD",
            "EUR",
            "GBP",
            "CAD",
            "AUD",
            "NZD",
            "CHF",
            "SEK",
            "NOK",
            "DKK",
            "PLN",
            "CZK",
            "HUF",
            "RON",
            "BGN",
            "MXN",
            "BRL",
            "INR",
            "SGD",
            "HKD",
            "ZAR",
            "ILS",
            "THB",
            "MYR",
            "PHP",
            "AED",
            "SAR",
            "TRY",
            "CNY",
            "TWD",
        ),
        2,
    ),
    **dict.fromkeys(("JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG", "RWF"), 0),
    **dict.fromkeys(("KWD", "BHD", "JOD", "OMR", "TND"), 3),
}

# Above this a single payment is refused: Stripe's own ceiling is 99,999,999 minor units
# for most currencies, and it keeps every sum we build well inside BIGINT.
MAX_AMOUNT_MINOR = 99_999_999


class MoneyError(ValueError):
    """A malformed amount or currency in user input."""


def normalize_currency(code: str) -> str:
    upper = code.strip().upper()
    if upper not in CURRENCY_EXPONENTS:
        raise MoneyError(f"unsupported currency {code!r}")
    return upper


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[currency]


def to_minor(value: Decimal | int | str, currency: str) -> int:
    """A decimal amount in major units to minor units; more precision than the currency has
    is an error, never a silent rounding."""
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise MoneyError(f"{value!r} is not an amount") from exc
    if not amount.is_finite():
        raise MoneyError(f"{value!r} is not an amount")
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{currency} amounts take at most {exponent(currency)} decimal places")
    return int(scaled)


def to_decimal(minor: int, currency: str) -> Decimal:
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def format_amount(minor: int, currency: str) -> str:
    """Minor units as the decimal string the API answers with ("150.00")."""
    return str(to_decimal(minor, currency))


def platform_fee(amount_minor: int, percentage: Decimal) -> int:
    """round_half_up(amount x percentage / 100), in minor units."""
    return int((Decimal(amount_minor) * percentage / 100).quantize(Decimal(1), ROUND_HALF_UP))


def fee_share_of_refunds(refunded_total: int, amount: int, fee: int) -> int:
    """The fee part of a payment's cumulative refunds, pro rata and rounded down, so the
    odd unit stays on the worker's side. Computed on the running total rather than per
    refund so that any sequence of partial refunds ending in a full one returns exactly
    the fee, and each refund's fee part is the difference of two such values."""
    assert 0 <= refunded_total <= amount and amount > 0
    share = (Decimal(refunded_total) * fee / amount).to_integral_value(ROUND_FLOOR)
    return int(share)


def milestone_fees(amounts: list[int], fee: int) -> list[int]:
    """Each milestone's share of the payment's fee, by the rule of refunds: the fee of the
    running total rounded down, each share the difference of two, so the shares add up to
    `fee` exactly and every odd unit stays on the worker's side."""
    total = sum(amounts)
    shares, running, before = [], 0, 0
    for amount in amounts:
        running += amount
        upto = fee_share_of_refunds(running, total, fee)
        shares.append(upto - before)
        before = upto
    return shares
