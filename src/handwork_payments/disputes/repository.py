from __future__ import annotations

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.rows import lock_row_or_none
from handwork_payments.models import Booking, Payment, PaymentDispute, Role, User


async def lock(session: AsyncSession, dispute_id: int) -> PaymentDispute | None:
    return await lock_row_or_none(session, PaymentDispute, dispute_id)


async def by_provider_id(session: AsyncSession, provider_dispute_id: str) -> PaymentDispute | None:
    return (
        await session.execute(
            select(PaymentDispute).where(PaymentDispute.provider_dispute_id == provider_dispute_id)
        )
    ).scalar_one_or_none()


def visible(user: User) -> Select[PaymentDispute]:
    """One's own disputes (opened by them or on their bookings), all for admins."""
    query = select(PaymentDispute)
    if user.role != Role.ADMIN:
        query = (
            query.join(Payment, Payment.id == PaymentDispute.payment_id)
            .join(Booking, Booking.id == Payment.booking_id)
            .where(or_(Booking.client_id == user.id, Booking.worker_id == user.id))
        )
    return query.order_by(PaymentDispute.id.desc())
