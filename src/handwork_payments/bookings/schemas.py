from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field, model_validator

from handwork_payments.kit.money import format_amount
from handwork_payments.kit.schemas import AmountIn, CurrencyIn, Id, ShortText, Strict, minor
from handwork_payments.models import Booking, BookingStatus, Milestone, MilestoneStatus
from handwork_payments.payments.milestones import MAX_MILESTONES, MIN_MILESTONES


class MilestoneIn(Strict):
    title: ShortText
    amount: AmountIn


class BookingCreate(Strict):
    worker_id: Id
    title: ShortText
    amount: AmountIn
    currency: CurrencyIn = "USD"
    milestones: list[MilestoneIn] | None = Field(
        default=None,
        min_length=MIN_MILESTONES,
        max_length=MAX_MILESTONES,
        description="Parts of the price released one by one; their amounts sum to `amount`",
    )

    @model_validator(mode="after")
    def _precision(self) -> BookingCreate:
        total = minor(self.amount, self.currency)
        if self.milestones is not None:
            parts = [minor(m.amount, self.currency) for m in self.milestones]
            if sum(parts) != total:
                raise ValueError(
                    "the milestones' amounts must add up to the booking's amount exactly"
                )
        return self

    @property
    def amount_minor(self) -> int:
        return minor(self.amount, self.currency)

    @property
    def milestone_parts(self) -> list[tuple[str, int]]:
        return [(m.title, minor(m.amount, self.currency)) for m in self.milestones or ()]


class MilestoneOut(BaseModel):
    id: int
    title: str
    amount: Decimal
    status: MilestoneStatus
    released_at: datetime | None

    @classmethod
    def of(cls, milestone: Milestone, currency: str) -> MilestoneOut:
        return cls(
            id=milestone.id,
            title=milestone.title,
            amount=Decimal(format_amount(milestone.amount, currency)),
            status=milestone.status,
            released_at=milestone.released_at,
        )


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
    milestones: list[MilestoneOut]

    @classmethod
    def of(cls, booking: Booking, milestones: Sequence[Milestone] = ()) -> BookingOut:
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
            milestones=[MilestoneOut.of(m, booking.currency) for m in milestones],
        )
