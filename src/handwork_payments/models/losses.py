"""What the platform wrote off: a worker's debt (a clawback no later earning paid back)
taken by an admin to platform losses."""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from handwork_payments.models.base import Base, CreatedAt, Currency, IdPk, Minor


class WorkerWriteOff(Base):
    __tablename__ = "worker_write_offs"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[IdPk]
    worker_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"), index=True)
    amount: Mapped[Minor]  # what the worker owed, now forgiven
    currency: Mapped[Currency]
    reason: Mapped[str] = mapped_column(Text)
    admin_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    created_at: Mapped[CreatedAt]
