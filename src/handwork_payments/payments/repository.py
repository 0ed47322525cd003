"""SQL of payments and bookings. `lock_*` take the row lock every state change needs."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Select, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.rows import lock_row_or_none, locking
from handwork_payments.models import (
    Booking,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
    Role,
    User,
)


async def lock_payment(session: AsyncSession, payment_id: int) -> Payment | None:
    return await lock_row_or_none(session, Payment, payment_id)


async def lock_booking(session: AsyncSession, booking_id: int) -> Booking | None:
    return await lock_row_or_none(session, Booking, booking_id)


async def with_booking(
    session: AsyncSession, payment_id: int, *, lock: bool = False
) -> tuple[Payment, Booking] | None:
    """The payment and its booking in one statement; with `lock`, both under row lock.
    PostgreSQL locks a joined row's tables in the order of the FROM list: the payment,
    then its booking, the order every other path takes them in."""
    found = (await session.execute(_with_booking(lock), {"payment_id": payment_id})).first()
    return None if found is None else (found[0], found[1])


# The statements of every money command and payment read, built once per process: built
# per call, construction and cache key cost about as much Python as the round trip.


@cache
def _with_booking(lock: bool) -> Select[Payment, Booking]:
    query = (
        select(Payment, Booking)
        .join(Booking, Booking.id == Payment.booking_id)
        .where(Payment.id == bindparam("payment_id"))
    )
    return locking(query) if lock else query


@cache
def _booking_and_live_payment() -> Select[Booking, Payment]:
    live = and_(Payment.booking_id == Booking.id, Payment.status != PaymentStatus.FAILED)
    query = select(Booking, Payment).outerjoin(Payment, live)
    return locking(query.where(Booking.id == bindparam("booking_id")), of=Booking)


async def by_provider_id(session: AsyncSession, provider: str, provider_id: str) -> Payment | None:
    column = Payment.stripe_payment_id if provider == "stripe" else Payment.paypal_payment_id
    return (
        await session.execute(select(Payment).where(column == provider_id))
    ).scalar_one_or_none()


async def lock_booking_and_live_payment(
    session: AsyncSession, booking_id: int
) -> tuple[Booking | None, Payment | None]:
    """The booking under row lock and its live payment (not locked: the booking's lock
    serialises every change to it), in one statement."""
    rows = (await session.execute(_booking_and_live_payment(), {"booking_id": booking_id})).all()
    if not rows:
        return None, None
    assert len(rows) == 1, f"booking #{booking_id} has {len(rows)} live payments"
    return rows[0][0], rows[0][1]


async def live_payment(session: AsyncSession, booking_id: int) -> Payment | None:
    return (
        await session.execute(
            select(Payment).where(
                Payment.booking_id == booking_id, Payment.status != PaymentStatus.FAILED
            )
        )
    ).scalar_one_or_none()


async def refund(session: AsyncSession, refund_id: int) -> PaymentRefund | None:
    return await session.get(PaymentRefund, refund_id, populate_existing=True)


async def dispute_refund(session: AsyncSession, dispute_id: int) -> PaymentRefund | None:
    return (
        await session.execute(
            select(PaymentRefund).where(
                PaymentRefund.dispute_id == dispute_id,
                PaymentRefund.status == RefundStatus.SUCCEEDED,
            )
        )
    ).scalar_one_or_none()


def visible_payments(user: User) -> Select[Payment]:
    """Payments a user may see: a client's and a worker's own bookings', all for admins."""
    query = select(Payment).join(Booking, Booking.id == Payment.booking_id)
    if user.role != Role.ADMIN:
        query = query.where(or_(Booking.client_id == user.id, Booking.worker_id == user.id))
    return query.order_by(Payment.id.desc())


def visible_bookings(user: User) -> Select[Booking]:
    query = select(Booking)
    if user.role != Role.ADMIN:
        query = query.where(or_(Booking.client_id == user.id, Booking.worker_id == user.id))
    return query.order_by(Booking.id.desc())


def may_see(user: User, booking: Booking) -> bool:
    return user.role == Role.ADMIN or user.id in (booking.client_id, booking.worker_id)
