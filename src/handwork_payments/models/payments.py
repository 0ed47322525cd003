from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, Currency, IdPk, Minor, When, enum_check


class PaymentMethod(enum.StrEnum):
    STRIPE = "stripe"
    PAYPAL = "paypal"


class Wallet(enum.StrEnum):
    """The card wallet a Stripe payment came through (the charge's `card.wallet.type`)."""

    APPLE_PAY = "apple_pay"
    GOOGLE_PAY = "google_pay"
    LINK = "link"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    HELD = "held"
    RELEASED = "released"
    REFUNDED = "refunded"
    FAILED = "failed"
    DISPUTED = "disputed"


class HoldKind(enum.StrEnum):
    """How a held payment is held: as an authorisation at the provider (which lapses at
    `capture_by`), or captured and kept on the platform's provider balance."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint(enum_check("status", PaymentStatus), name="status"),
        CheckConstraint(enum_check("payment_method", PaymentMethod), name="payment_method"),
        # NULL passes: a payment by card without a wallet, PayPal, stablecoins (0017).
        CheckConstraint(enum_check("wallet", Wallet), name="wallet"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("platform_fee >= 0 AND worker_amount >= 0", name="shares_non_negative"),
        CheckConstraint("amount = platform_fee + worker_amount", name="shares_add_up"),
        CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="refund_within_amount"),
        CheckConstraint("refunded_fee BETWEEN 0 AND platform_fee", name="refund_fee_within_fee"),
        CheckConstraint("captured_amount BETWEEN 0 AND amount", name="capture_within_amount"),
        CheckConstraint("released_amount BETWEEN 0 AND amount", name="release_within_amount"),
        CheckConstraint("released_fee BETWEEN 0 AND platform_fee", name="release_fee_within_fee"),
        CheckConstraint("risk_level IN ('normal', 'elevated', 'highest')", name="risk_level"),
        # A booking has at most one live payment; a failed attempt may be retried.
        Index(
            "uq_payments_live_booking",
            "booking_id",
            unique=True,
            postgresql_where=text("status <> 'failed'"),
        ),
        # What the background jobs look for: authorisations that will lapse (hold guard)
        # and provider calls left in flight (resolver).
        Index(
            "ix_payments_authorized_capture_by",
            "capture_by",
            postgresql_where=text("hold_kind = 'authorized' AND status IN ('held', 'disputed')"),
        ),
        Index(
            "ix_payments_provider_operation_at",
            "provider_operation_at",
            postgresql_where=text("provider_operation IS NOT NULL"),
        ),
    )

    id: Mapped[IdPk]
    booking_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("bookings.id"), index=True)
    amount: Mapped[Minor]
    platform_fee: Mapped[Minor]
    worker_amount: Mapped[Minor]
    refunded_amount: Mapped[Minor] = mapped_column(default=0)
    # The fee part of refunded_amount (pro rata on the running total, see kit.money).
    refunded_fee: Mapped[Minor] = mapped_column(default=0)
    # What left escrow to the worker and the fee revenue, and its fee part: grows with each
    # milestone released, and by the rest on the final release (migration 0012).
    released_amount: Mapped[Minor] = mapped_column(default=0, server_default="0")
    released_fee: Mapped[Minor] = mapped_column(default=0, server_default="0")
    currency: Mapped[Currency]
    payment_method: Mapped[PaymentMethod] = mapped_column(String(16))
    status: Mapped[PaymentStatus] = mapped_column(String(16), index=True)

    # Provider references: the intent / order, and PayPal's authorisation and capture.
    stripe_payment_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    paypal_payment_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    provider_authorization_id: Mapped[str | None] = mapped_column(String(255))
    provider_capture_id: Mapped[str | None] = mapped_column(String(255))
    payer_id: Mapped[str | None] = mapped_column(String(255))
    # How it was paid (0017): the card wallet, set when the payment is held; and whether
    # it is a stablecoin payment (captured at once), set when it is created.
    wallet: Mapped[Wallet | None] = mapped_column(String(16))
    stablecoin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")

    hold_kind: Mapped[HoldKind | None] = mapped_column(String(16))
    # When the provider authorisation behind the hold lapses; null once captured.
    capture_by: Mapped[When]
    # What the provider has captured of the amount (0 while only authorised).
    captured_amount: Mapped[Minor] = mapped_column(default=0)
    # The provider's processing fee on the capture, as it reported it; null until captured
    # (and booked to provider_fees in the same transaction).
    provider_fee: Mapped[int | None] = mapped_column(BigInteger)
    # When the hold guard renewed a PayPal authorisation after its 3-day honour period
    # (PayPal allows it once; the 29-day limit, capture_by, stays).
    reauthorized_at: Mapped[When]

    # A provider call in flight for this payment (e.g. "capture", "refund:12"). Set and
    # committed before the call, cleared when its outcome is applied: every other move of
    # the payment waits (409) until then, and a timed-out call is resumed with the same
    # idempotency key instead of being made twice.
    provider_operation: Mapped[str | None] = mapped_column(String(64))
    provider_operation_at: Mapped[When]

    auto_release_at: Mapped[When]
    created_at: Mapped[CreatedAt]
    held_at: Mapped[When]
    released_at: Mapped[When]
    refunded_at: Mapped[When]
    refund_reason: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Fernet-encrypted JSON (kit.crypto); shown to admins only.
    payment_metadata: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The risk rules' verdict (risk/, migration 0014): normal | elevated | highest, the
    # rules that fired, and whether RISK_MODE enforced it. Shown to admins only.
    risk_level: Mapped[str | None] = mapped_column(String(16))
    risk_reasons: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default="[]")
    risk_enforced: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundKind(enum.StrEnum):
    """What gave the money back: a refund (ours, or made in the provider's dashboard), a
    reversal the provider made (PayPal PAYMENT.CAPTURE.REVERSED), or a chargeback lost."""

    REFUND = "refund"
    REVERSAL = "reversal"
    CHARGEBACK = "chargeback"


class PaymentRefund(Base):
    """One refund of a payment; its id makes the provider idempotency key."""

    __tablename__ = "payment_refunds"
    __table_args__ = (
        CheckConstraint(enum_check("status", RefundStatus), name="status"),
        CheckConstraint(enum_check("kind", RefundKind), name="kind"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[IdPk]
    payment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payments.id"), index=True)
    amount: Mapped[Minor]
    fee_part: Mapped[Minor] = mapped_column(default=0)
    reason: Mapped[str] = mapped_column(Text)
    # Read by code instead of the reason's words (migration 0011).
    kind: Mapped[RefundKind] = mapped_column(
        String(16), default=RefundKind.REFUND, server_default=RefundKind.REFUND.value
    )
    requested_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    # Set when a dispute's resolution made this refund, so resolving again never refunds twice.
    dispute_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("payment_disputes.id"))
    # The milestone this refund was asked of; null: taken newest milestone first.
    milestone_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("booking_milestones.id")
    )
    # True when the money was still in escrow (the worker never had it).
    before_release: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[RefundStatus] = mapped_column(String(16))
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    # What the provider gave back of its capture fee with this refund, as it reported it.
    provider_fee_refunded: Mapped[Minor] = mapped_column(default=0)
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[When]


class DisputeStatus(enum.StrEnum):
    OPEN = "open"
    UNDER_REVIEW = "under_review"
    RESOLVED = "resolved"
    CLOSED = "closed"


class DisputeOutcome(enum.StrEnum):
    RELEASE = "release"
    REFUND = "refund"
    SPLIT = "split"


class PaymentDispute(Base):
    __tablename__ = "payment_disputes"
    __table_args__ = (
        CheckConstraint(enum_check("status", DisputeStatus), name="status"),
        # One active dispute per payment.
        Index(
            "uq_payment_disputes_active_payment",
            "payment_id",
            unique=True,
            postgresql_where=text("status IN ('open', 'under_review')"),
        ),
    )

    id: Mapped[IdPk]
    payment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("payments.id"), index=True)
    # Null when the provider opened it (a chargeback).
    initiated_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[DisputeStatus] = mapped_column(String(16))
    outcome: Mapped[DisputeOutcome | None] = mapped_column(String(16))
    refund_amount: Mapped[int | None] = mapped_column(BigInteger)
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    resolved_at: Mapped[When]
    provider_dispute_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # The provider's dispute fee as booked to platform losses (net of any it returned).
    provider_fee: Mapped[Minor] = mapped_column(default=0)
    created_at: Mapped[CreatedAt]
