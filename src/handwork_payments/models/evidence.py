"""Chargeback evidence submitted to the provider: one row per chargeback (migration 0016)."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, IdPk, When, enum_check


class EvidenceStatus(enum.StrEnum):
    # Marked and committed before the provider call; stays so when no answer came, until
    # the same submission is made again under the same key.
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FAILED = "failed"  # the provider refused: the admin may submit again


class DisputeEvidence(Base):
    __tablename__ = "dispute_evidence"
    __table_args__ = (
        CheckConstraint(enum_check("status", EvidenceStatus), name="status"),
        CheckConstraint("attempt > 0", name="attempt_positive"),
        Index(
            "ix_dispute_evidence_in_flight",
            "marked_at",
            postgresql_where=text("status = 'submitting'"),
        ),
    )

    id: Mapped[IdPk]
    dispute_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("payment_disputes.id"), unique=True
    )
    status: Mapped[EvidenceStatus] = mapped_column(String(16))
    # Each attempt after a refusal is a new provider request: its key is
    # `dispute-{dispute_id}-evidence-{attempt}`.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # What the admin added, and what was sent (ChargebackEvidence's fields), kept so that a
    # submission resumed after a timeout sends exactly the same.
    admin_text: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB)
    submitted_by: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    # When the current attempt was marked: the sweep resumes attempts left in flight.
    marked_at: Mapped[When]
    submitted_at: Mapped[When]
