"""Risk reviews (a payment or payout an admin must decide on) and identity signals
(keyed digests tying accounts to one person), migration 0014."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, IdPk, When, enum_check


class RiskLevel(enum.StrEnum):
    """What the rules said: allow (normal), review (elevated), block (highest)."""

    NORMAL = "normal"
    ELEVATED = "elevated"
    HIGHEST = "highest"


class ReviewStatus(enum.StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"


class ReviewObject(enum.StrEnum):
    PAYMENT = "payment"
    PAYOUT = "payout"


class SignalKind(enum.StrEnum):
    IP = "ip"  # a client IP at registration or login
    CARD = "card"  # a card's fingerprint at the provider
    DESTINATION = "destination"  # a payout destination, or an email one could be


class RiskReview(Base):
    __tablename__ = "risk_reviews"
    __table_args__ = (
        CheckConstraint(enum_check("object_type", ReviewObject), name="object_type"),
        CheckConstraint(enum_check("status", ReviewStatus), name="status"),
        CheckConstraint(enum_check("risk_level", RiskLevel), name="risk_level"),
        Index("ix_risk_reviews_object", "object_type", "object_id"),
        # One open review per object: a second evaluation adds nothing to decide.
        Index(
            "uq_risk_reviews_open_object",
            "object_type",
            "object_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_risk_reviews_status", "status", "id"),
    )

    id: Mapped[IdPk]
    object_type: Mapped[ReviewObject] = mapped_column(String(16))
    object_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[ReviewStatus] = mapped_column(String(16))
    risk_level: Mapped[RiskLevel] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
    decided_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    decided_at: Mapped[When]
    decision_reason: Mapped[str | None] = mapped_column(Text)


class RiskSignal(Base):
    __tablename__ = "risk_signals"
    __table_args__ = (
        CheckConstraint(enum_check("kind", SignalKind), name="kind"),
        UniqueConstraint("user_id", "kind", "digest"),
        Index("ix_risk_signals_kind_digest", "kind", "digest"),
    )

    id: Mapped[IdPk]
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    kind: Mapped[SignalKind] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
