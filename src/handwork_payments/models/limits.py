"""Rate-limit counters, shared by every process through the database."""

from __future__ import annotations

from sqlalchemy import Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import At, Base


class RateLimitCounter(Base):
    """Attempts in one fixed window of one bucket ("login-ip:<hash>", ...). A row is
    useless once its window ended; the periodic purge deletes it then."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (
        PrimaryKeyConstraint("bucket", "window_start", name="pk_rate_limit_counters"),
        Index("ix_rate_limit_counters_window_end", "window_end"),
    )

    # The kind of limit and a SHA-256 of who it counts (an IP, an email): no personal data
    # kept, and an email of any length or content fits.
    bucket: Mapped[str] = mapped_column(String(100))
    window_start: Mapped[At]
    window_end: Mapped[At]
    hits: Mapped[int] = mapped_column(Integer)
