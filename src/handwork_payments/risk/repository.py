"""The facts the risk rules read: a client's recent payments, a worker's payouts."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import Booking, Payment, PaymentStatus, PayoutStatus, WorkerPayout


async def client_payments(
    session: AsyncSession, client_id: int, currency: str, now: datetime
) -> tuple[int, int, int, int | None]:
    """The client's payments created within an hour, within a day, those failed within a
    day, and its largest payment in `currency` that did not fail (one round trip)."""
    hour, day = now - timedelta(hours=1), now - timedelta(days=1)
    failed = Payment.status == PaymentStatus.FAILED
    row = (
        await session.execute(
            select(
                func.count().filter(Payment.created_at >= hour),
                func.count().filter(Payment.created_at >= day),
                func.count().filter(Payment.created_at >= day, failed),
                func.max(Payment.amount).filter(~failed, Payment.currency == currency),
            )
            .select_from(Payment)
            .join(Booking, Booking.id == Payment.booking_id)
            .where(Booking.client_id == client_id)
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2]), row[3]


async def worker_payouts(session: AsyncSession, worker_id: int, now: datetime) -> tuple[int, int]:
    """The worker's payouts that did not fail: all, and those requested within a day."""
    row = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(WorkerPayout.requested_at >= now - timedelta(days=1)),
            ).where(WorkerPayout.worker_id == worker_id, WorkerPayout.status != PayoutStatus.FAILED)
        )
    ).one()
    return int(row[0]), int(row[1])


async def clients_of(session: AsyncSession, worker_id: int, *, limit: int = 100) -> list[int]:
    """The most recent clients who paid the worker (at most `limit`)."""
    rows = await session.execute(
        select(Booking.client_id, func.max(Payment.id).label("last"))
        .join(Payment, Payment.booking_id == Booking.id)
        .where(Booking.worker_id == worker_id, Payment.status != PaymentStatus.FAILED)
        .group_by(Booking.client_id)
        .order_by(func.max(Payment.id).desc())
        .limit(limit)
    )
    return [int(r[0]) for r in rows]
