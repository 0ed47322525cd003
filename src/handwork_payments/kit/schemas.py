"""Input types shared by request models: bounded ids, clean text, amounts, currencies."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Self

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from handwork_payments.kit import money

MAX_ID = 2**63 - 1  # BIGINT: a larger id is unknown, not a database error


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# A decimal string as a JSON number is written. Python's Decimal also reads "1_000", " 5 "
# and digits of any script (Arabic-Indic, fullwidth), none of which an amount may be.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _plain_decimal(value: object) -> object:
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError("must be a decimal number such as 150.00")
    return value


def _currency(value: str) -> str:
    try:
        return money.normalize_currency(value)
    except money.MoneyError as exc:
        raise ValueError(str(exc)) from exc


Id = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_nul),
]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=5000),
    AfterValidator(_no_nul),
]
CurrencyIn = Annotated[
    str, StringConstraints(min_length=3, max_length=3), AfterValidator(_currency)
]
# A JSON number or a decimal string in major units; converted to minor units (and its
# precision checked) together with the currency it belongs to.
AmountIn = Annotated[
    Decimal,
    BeforeValidator(_plain_decimal),
    Field(gt=0, allow_inf_nan=False, max_digits=20, description='e.g. 150.00 or "150.00"'),
]


class Strict(BaseModel):
    """Request bodies refuse unknown fields: a misspelt `amount` must not turn a partial
    refund into a full one."""

    model_config = ConfigDict(extra="forbid")


def minor(amount: Decimal, currency: str) -> int:
    """Major units to minor units for a validated body (raises ValueError, a 422)."""
    value = money.to_minor(amount, currency)
    if value > money.MAX_AMOUNT_MINOR:
        raise ValueError(
            f"amount exceeds the maximum of {money.format_amount(money.MAX_AMOUNT_MINOR, currency)}"
        )
    return value


class AmountBody(Strict):
    """A body with an `amount` in major units of its `currency`: an amount finer than the
    currency's minor unit is refused (422); `amount_minor` is the amount in minor units."""

    # Each body declares the two fields itself, where its schema lists them.
    if TYPE_CHECKING:
        amount: Decimal
        currency: str

    @model_validator(mode="after")
    def _precision(self) -> Self:
        minor(self.amount, self.currency)
        return self

    @property
    def amount_minor(self) -> int:
        return minor(self.amount, self.currency)
