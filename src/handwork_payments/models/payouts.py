from __future__ import annotations

import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, Currency, IdPk, Minor, When, enum_check
from handwork_payments.models.payments import PaymentMethod


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class WorkerPayout(Base):
    __tablename__ = "worker_payouts"
    __table_args__ = (
        CheckConstraint(enum_check("status", PayoutStatus), name="status"),
        CheckConstraint(enum_check("payment_method", PaymentMethod), name="payment_method"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[IdPk]
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    amount: Mapped[Minor]
    currency: Mapped[Currency]
    payment_method: Mapped[PaymentMethod] = mapped_column(String(16))
    # Where the money goes, as it was when requested (connected account or PayPal email).
    destination: Mapped[str] = mapped_column(String(320))
    status: Mapped[PayoutStatus] = mapped_column(String(16), index=True)
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255))
    paypal_payout_id: Mapped[str | None] = mapped_column(String(255))
    paypal_batch_id: Mapped[str | None] = mapped_column(String(255))
    # Our key of the provider batch this payout was sent in (`payout-batch-{first id}`, the
    # PayPal sender_batch_id): a batch whose answer was lost is sent again whole under it.
    batch_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # Provider calls made so far; an unknown outcome is re-queried before calling again.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[When]
    processed_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    requested_at: Mapped[When]
    processed_at: Mapped[When]
    completed_at: Mapped[When]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Parked for an admin (migration 0011): never sent, re-sent or settled while set.
    held_reason: Mapped[str | None] = mapped_column(Text)
