from __future__ import annotations

import enum

from sqlalchemy import Boolean, CheckConstraint, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, IdPk, enum_check


class Role(enum.StrEnum):
    CLIENT = "client"
    WORKER = "worker"
    ADMIN = "admin"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # tokens refused, login refused, money left where it is
    ERASED = "erased"  # pseudonymised (privacy/erasure.py); never active again


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(enum_check("role", Role), name="role"),
        # A Stripe account pays out to one worker only: account.updated enables the payouts
        # of the one worker naming it, never of another who typed its id.
        Index(
            "uq_users_stripe_account_id",
            "stripe_account_id",
            unique=True,
            postgresql_where=text("stripe_account_id IS NOT NULL"),
        ),
        CheckConstraint(enum_check("status", UserStatus), name="status"),
    )

    id: Mapped[IdPk]
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(String(16))
    # Where payouts go (PUT /payments/payout-methods, Stripe Connect onboarding).
    stripe_account_id: Mapped[str | None] = mapped_column(String(64))
    stripe_payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    paypal_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[CreatedAt]
    status: Mapped[UserStatus] = mapped_column(
        String(16), default=UserStatus.ACTIVE, server_default=UserStatus.ACTIVE.value
    )
