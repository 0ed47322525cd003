"""The outbox of events to the marketplace: written in the transaction of the change they
report, delivered at least once by a job (events/delivery.py)."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import At, Base, IdPk, When, enum_check


class EventStatus(enum.StrEnum):
    PENDING = "pending"  # not delivered yet (or no MARKETPLACE_WEBHOOK_URL to deliver to)
    DELIVERED = "delivered"
    FAILED = "failed"  # failed at least once, will be retried
    DEAD = "dead"  # retries exhausted; an admin may redeliver it


class MarketplaceEvent(Base):
    __tablename__ = "marketplace_events"
    __table_args__ = (CheckConstraint(enum_check("status", EventStatus), name="status"),)

    id: Mapped[IdPk]
    # What the receiver deduplicates on: the same in every redelivery.
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[EventStatus] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[When]
    # Set by the application (not the server's clock) so that `created` in the payload is
    # the time of the change, whatever the clock tests freeze.
    created_at: Mapped[At]
    delivered_at: Mapped[When]
