"""Recurring bookings (issue 13): a client's schedule of bookings with one worker, paid
off-session from a payment method saved once, and its runs (one per occurrence)."""

from __future__ import annotations

import enum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import (
    At,
    Base,
    CreatedAt,
    IdPk,
    When,
    enum_check,
)
from handwork_payments.models.bookings import Terms
from handwork_payments.models.payments import PaymentMethod


class Interval(enum.StrEnum):
    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"


class ScheduleStatus(enum.StrEnum):
    PENDING_SETUP = "pending_setup"  # the payer has not saved a payment method yet
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class RunStatus(enum.StrEnum):
    DUE = "due"  # created; its charge not attempted yet, or in flight
    RETRYING = "retrying"  # declined; tried again at the schedule's next_run_at
    HELD = "held"  # its payment is held in escrow
    FAILED = "failed"  # declined after the last retry: the schedule was paused


class RecurringSchedule(Terms, Base):
    __tablename__ = "recurring_schedules"
    __table_args__ = (
        CheckConstraint(enum_check("status", ScheduleStatus), name="status"),
        CheckConstraint(enum_check("interval", Interval), name="interval"),
        CheckConstraint(enum_check("payment_method", PaymentMethod), name="payment_method"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("occurrences IS NULL OR occurrences > 0", name="occurrences_positive"),
        CheckConstraint("client_id <> worker_id", name="distinct_parties"),
    )

    interval: Mapped[Interval] = mapped_column(String(16))
    starts_at: Mapped[At]
    occurrences: Mapped[int | None] = mapped_column(Integer)
    payment_method: Mapped[PaymentMethod] = mapped_column(String(16))
    status: Mapped[ScheduleStatus] = mapped_column(String(16), index=True)
    # The provider's setup (Stripe SetupIntent), the customer it saves the method on, and
    # the saved method charged off-session.
    setup_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    saved_method: Mapped[str | None] = mapped_column(String(255))
    # The occurrence the schedule works on (1-based) and when it is next due: its due
    # date, or its next dunning attempt.
    next_number: Mapped[int] = mapped_column(Integer, default=1)
    next_run_at: Mapped[When] = mapped_column(index=True)
    created_at: Mapped[CreatedAt]


class RecurringRun(Base):
    __tablename__ = "recurring_runs"
    __table_args__ = (
        # One run per occurrence: two workers racing the same one meet here.
        UniqueConstraint("schedule_id", "number", name="uq_recurring_runs_schedule_number"),
        CheckConstraint(enum_check("status", RunStatus), name="status"),
        CheckConstraint("number > 0", name="number_positive"),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
    )

    id: Mapped[IdPk]
    schedule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("recurring_schedules.id"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[At]
    status: Mapped[RunStatus] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    booking_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("bookings.id"))
    payment_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payments.id"))
    # A charge in flight since then (claimed by one worker); None when none is.
    charging_since: Mapped[When]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
