from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, IdPk, Minor, When, enum_check


class MilestoneStatus(enum.StrEnum):
    PENDING = "pending"
    RELEASED = "released"
    REFUNDED = "refunded"


class Milestone(Base):
    """A part of a booking's price, released to the worker on its own. The booking's one
    payment holds the whole amount; a milestone's fee share is derived from the payment's
    fee (kit.money.milestone_fees), never stored, so it cannot drift from it."""

    __tablename__ = "booking_milestones"
    __table_args__ = (
        CheckConstraint(enum_check("status", MilestoneStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refund_within_amount"),
        CheckConstraint("released_amount BETWEEN 0 AND amount", name="release_within_amount"),
        UniqueConstraint("booking_id", "position"),
    )

    id: Mapped[IdPk]
    booking_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("bookings.id"), index=True)
    # Order within the booking (0-based): fee shares accumulate in it, refunds take the
    # newest (highest) first.
    position: Mapped[int] = mapped_column(SmallInteger)
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Minor]
    status: Mapped[MilestoneStatus] = mapped_column(String(16))
    # What of the amount went back to the payer, before or after its release.
    refunded_amount: Mapped[Minor] = mapped_column(default=0)
    # What left escrow to the worker (and the fee) when it was released.
    released_amount: Mapped[Minor] = mapped_column(default=0)
    released_at: Mapped[When]
