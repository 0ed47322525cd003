from __future__ import annotations

import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, Currency, IdPk, Minor, When, enum_check


class BookingStatus(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    COMPLETED = "completed"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Terms:
    """Who works for whom, on what, at what price: a booking's terms, and a recurring
    schedule's (it makes each of its bookings on them). sort_order -1: first in the table,
    after the id, as the migrations made them (a mixin's columns would come last)."""

    id: Mapped[IdPk] = mapped_column(sort_order=-1)
    client_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id"), index=True, sort_order=-1
    )
    worker_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id"), index=True, sort_order=-1
    )
    title: Mapped[str] = mapped_column(String(200), sort_order=-1)
    amount: Mapped[Minor] = mapped_column(sort_order=-1)
    currency: Mapped[Currency] = mapped_column(sort_order=-1)


class Booking(Terms, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(enum_check("status", BookingStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("client_id <> worker_id", name="distinct_parties"),
    )

    status: Mapped[BookingStatus] = mapped_column(String(24))
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[When]
    # How many milestones the booking is priced in (0: none). Kept here so that the paths
    # of a booking without any (most) never look for them.
    milestone_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
