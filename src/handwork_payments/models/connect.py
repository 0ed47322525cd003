from __future__ import annotations

import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, Currency, IdPk, Minor, When, enum_check


class ReversalStatus(enum.StrEnum):
    PENDING = "pending"  # planned, the Stripe call not answered yet
    SUCCEEDED = "succeeded"  # the money is back on the platform's balance (and its entry)
    FAILED = "failed"  # Stripe refused (the connected account could not cover it)


class PayoutReversal(Base):
    """Money taken back from a completed Stripe Connect payout (a transfer reversal).

    Ours are planned by a refund of a released payment whose worker was already paid out
    (`refund_id` set); their id makes the idempotency key `payout-{payout_id}-reversal-{id}`.
    Reversals made at Stripe by someone else (the dashboard) arrive by `transfer.reversed`
    and are recorded with `refund_id` null. Each succeeded one has its journal entry
    (provider clearing -> worker available): the worker no longer holds that money."""

    __tablename__ = "payout_reversals"
    __table_args__ = (
        CheckConstraint(enum_check("status", ReversalStatus), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[IdPk]
    payout_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("worker_payouts.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("payment_refunds.id"), index=True
    )
    amount: Mapped[Minor]
    currency: Mapped[Currency]
    status: Mapped[ReversalStatus] = mapped_column(String(16))
    provider_reversal_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[When]
