"""An amount a body gives in major units, read once the currency of the object it is about
is known (the body's own validation cannot know it)."""

from __future__ import annotations

from decimal import Decimal

from handwork_payments.kit import money
from handwork_payments.kit.errors import BadRequest, Unprocessable
from handwork_payments.kit.schemas import minor


def minor_units(field: str, amount: Decimal, currency: str) -> int:
    """`amount` in `currency`'s minor units. More precision than the currency has is a 422,
    an amount beyond the maximum a 400; both name the body's `field`."""
    try:
        return minor(amount, currency)
    except money.MoneyError as exc:
        raise Unprocessable(f"{field}: {exc}") from exc
    except ValueError as exc:
        raise BadRequest(f"{field}: {exc}") from exc
