from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, model_validator

from handwork_payments.kit.money import format_amount
from handwork_payments.kit.schemas import AmountIn, CurrencyIn, Id, ShortText, Strict, minor
from handwork_payments.models import Booking, BookingStatus


class BookingCreate(Strict):
    worker_id: Id
    title: ShortText
    amount: AmountIn
    currency: CurrencyIn = "USD"

    @model_validator(mode="after")
    def _precision(self) -> BookingCreate:
        minor(self.amount, self.currency)
        return self

    @property
    def amount_minor(self) -> int:
        return minor(self.amount, self.currency)


class BookingOut(BaseModel):
    id: int
    client_id: int
    worker_id: int
    title: str
    amount: Decimal
    currency: str
    status: BookingStatus
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, booking: Booking) -> BookingOut:
        return cls(
            id=booking.id,
            client_id=booking.client_id,
            worker_id=booking.worker_id,
            title=booking.title,
            amount=Decimal(format_amount(booking.amount, booking.currency)),
            currency=booking.currency,
            status=booking.status,
            created_at=booking.created_at,
            completed_at=booking.completed_at,
        )
