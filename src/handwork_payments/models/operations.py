"""Operational tables: webhook inbox, audit log, alerts, idempotency records, simulator state."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, IdPk, When, enum_check


class DeliveryStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"  # failed at least once, will be retried
    DEAD = "dead"  # retries exhausted; an admin may replay it


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_deliveries_provider_event"),
        UniqueConstraint(
            "provider", "transmission_id", name="uq_webhook_deliveries_provider_transmission"
        ),
        CheckConstraint(enum_check("status", DeliveryStatus), name="status"),
    )

    id: Mapped[IdPk]
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(120))
    # PayPal's PAYPAL-TRANSMISSION-ID: one body per transmission (see migration 0006).
    transmission_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[DeliveryStatus] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # When a failed delivery is tried again (exponential backoff); null when none is due.
    next_attempt_at: Mapped[When]
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    body: Mapped[str] = mapped_column(Text)
    signature_valid: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[CreatedAt]
    processed_at: Mapped[When]


class AuditLog(Base):
    """One row per state change and money movement: who, what, on which object, before/after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)

    id: Mapped[IdPk]
    actor_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    # "user", "system" (jobs) or the provider whose event caused it.
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int] = mapped_column(BigInteger)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]


class AlertStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class Alert(Base):
    """One thing an operator must look at. The same kind on the same object while open is
    one row whose count and last_seen_at grow (a guard retrying, a daily reconciliation),
    not a row per occurrence; once acknowledged, the next occurrence opens a new one."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(enum_check("status", AlertStatus), name="status"),
        Index(
            "uq_alerts_open_object",
            "kind",
            "object_type",
            "object_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[IdPk]
    kind: Mapped[str] = mapped_column(String(40), index=True)
    message: Mapped[str] = mapped_column(Text)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[AlertStatus] = mapped_column(String(16), default=AlertStatus.OPEN)
    count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[CreatedAt]  # first seen
    last_seen_at: Mapped[CreatedAt]
    acknowledged_at: Mapped[When]
    acknowledged_by: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id"))
    # Delivery to a person (alerts/tasks.py): per channel, so a retry after one channel
    # failed never sends twice through the other.
    webhook_sent_at: Mapped[When]
    email_sent_at: Mapped[When]
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivery_error: Mapped[str | None] = mapped_column(Text)


class IdempotencyRecord(Base):
    """A POST's Idempotency-Key: the request's hash and, once done, its response."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_records_scope_key"),)

    id: Mapped[IdPk]
    # "user:7" for an authenticated caller, "anonymous" otherwise.
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # Null while the first request is still running.
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class SimulatedObject(Base):
    """State of the built-in provider simulators, shared by every process on the database
    the way a real provider's state is shared by every caller."""

    __tablename__ = "simulated_objects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
