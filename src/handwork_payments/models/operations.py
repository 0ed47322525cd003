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
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import At, Base, CreatedAt, IdPk, When, enum_check


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
        Index(
            "ix_webhook_deliveries_retained",
            "received_at",
            postgresql_where=text("body IS NOT NULL AND status = 'processed'"),
        ),
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
    # Null once retention reduced a processed delivery to `body_digest` (sha256 hex).
    body: Mapped[str | None] = mapped_column(Text)
    body_digest: Mapped[str | None] = mapped_column(String(64))
    signature_valid: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[CreatedAt]
    processed_at: Mapped[When]


class AuditLog(Base):
    """One row per state change and money movement: who, what, on which object, before/after."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_object", "object_type", "object_id"),
        Index("ix_audit_log_subject_id", "subject_id"),
        Index("ix_audit_log_actor_id", "actor_id"),
        Index("ix_audit_log_unsealed", "id", postgresql_where=text("chain_seq IS NULL")),
    )

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
    # The user the personal data is about (erasure finds the rows by it).
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    # Personal data apart from before/after, with a random nonce; the chain covers it by
    # `personal_digest` only, so erasure (personal -> null) keeps the chain intact.
    personal: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    personal_digest: Mapped[str | None] = mapped_column(String(64))
    # Set once by the sealer (audit/chain.py): the row's place in the chain and
    # sha256(previous row_hash + canonical content). Null until sealed.
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    row_hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The last sealed link: a deleted tail of the chain is a head no row matches."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    chain_seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[At]


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
    """An authenticated POST's Idempotency-Key: an HMAC of the request and, once done, its
    response, encrypted (a response may carry decrypted payment_metadata)."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_records_scope_key"),)

    id: Mapped[IdPk]
    # "user:7": only authenticated callers' requests are kept.
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    # HMAC-SHA256 (hex) of method, path, query and body under a server-side key.
    request_hash: Mapped[str] = mapped_column(String(64))
    # Null while the first request is still running.
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    # The response body encrypted with the metadata keys (Fernet).
    response_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[CreatedAt]
    # When the request in flight started (a takeover restarts it).
    started_at: Mapped[At] = mapped_column(server_default=func.now())
    expires_at: Mapped[At] = mapped_column(index=True)


class SimulatedObject(Base):
    """State of the built-in provider simulators, shared by every process on the database
    the way a real provider's state is shared by every caller."""

    __tablename__ = "simulated_objects"
    # Every simulated call looks for an injected fault of its provider (a kind with a
    # handful of rows); without this index that read every object the simulator ever made.
    __table_args__ = (Index("ix_simulated_objects_provider_kind", "provider", "kind"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
