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


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(enum_check("status", BookingStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("client_id <> worker_id", name="distinct_parties"),
    )

    id: Mapped[IdPk]
    client_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Minor]
    currency: Mapped[Currency]
    status: Mapped[BookingStatus] = mapped_column(String(24))
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[When]
    # How many milestones the booking is priced in (0: none). Kept here so that the paths
    # of a booking without any (most) never look for them.
    milestone_count: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
