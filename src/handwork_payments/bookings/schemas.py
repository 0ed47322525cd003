from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import Field, model_validator

from handwork_payments.kit.responses import RowOut, major
from handwork_payments.kit.schemas import (
    AmountBody,
    AmountIn,
    CurrencyIn,
    Id,
    ShortText,
    Strict,
    minor,
)
from handwork_payments.models import Booking, BookingStatus, Milestone, MilestoneStatus
from handwork_payments.payments.milestones import MAX_MILESTONES, MIN_MILESTONES


class MilestoneIn(Strict):
    title: ShortText
    amount: AmountIn


class BookingCreate(AmountBody):
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
    def _milestones_add_up(self) -> BookingCreate:
        if self.milestones is not None:
            parts = [minor(m.amount, self.currency) for m in self.milestones]
            if sum(parts) != self.amount_minor:
                raise ValueError(
                    "the milestones' amounts must add up to the booking's amount exactly"
                )
        return self

    @property
    def milestone_parts(self) -> list[tuple[str, int]]:
        return [(m.title, minor(m.amount, self.currency)) for m in self.milestones or ()]


class MilestoneOut(RowOut):
    id: int
    title: str
    amount: Decimal
    status: MilestoneStatus
    released_at: datetime | None

    @classmethod
    def of(cls, milestone: Milestone, currency: str) -> MilestoneOut:
        return cls.from_row(milestone, amount=major(milestone.amount, currency))


class TermsOut(RowOut):
    """Who works for whom, on what, at what price: a booking's terms, and a recurring
    schedule's (it makes each of its bookings on them)."""

    id: int
    client_id: int
    worker_id: int
    title: str
    amount: Decimal
    currency: str


class BookingOut(TermsOut):
    status: BookingStatus
    created_at: datetime
    completed_at: datetime | None
    milestones: list[MilestoneOut]

    @classmethod
    def of(cls, booking: Booking, milestones: Sequence[Milestone] = ()) -> BookingOut:
        return cls.from_row(
            booking,
            amount=major(booking.amount, booking.currency),
            milestones=[MilestoneOut.of(m, booking.currency) for m in milestones],
        )
