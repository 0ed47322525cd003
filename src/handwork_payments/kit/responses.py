"""What response models share: amounts shown in major units, fields read from a row."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Self

from pydantic import BaseModel

from handwork_payments.kit.money import format_amount


def major(minor_units: int, currency: str) -> Decimal:
    """Minor units as a response shows them: the Decimal of major units (15000 USD: 150.00)."""
    return Decimal(format_amount(minor_units, currency))


class RowOut(BaseModel):
    """A response model shown from one database row."""

    @classmethod
    def from_row(cls, row: object, **given: Any) -> Self:
        """Each field without a default is the row's attribute of the same name, unless
        `given`; a field with a default is shown only when given: what a row holds but not
        every reader may see (admins' details) is never copied by accident."""
        read = {
            name: getattr(row, name)
            for name, field in cls.model_fields.items()
            if field.is_required() and name not in given
        }
        return cls(**read, **given)
