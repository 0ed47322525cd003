"""The minimal marketplace side: a client books a worker for a job at a price."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import ObjectAudit
from handwork_payments.db import transaction
from handwork_payments.kit import jobs
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict, Forbidden, NotFound
from handwork_payments.kit.rows import row_or_none
from handwork_payments.models import (
    Booking,
    BookingStatus,
    Milestone,
    MilestoneStatus,
    Payment,
    PaymentStatus,
    Role,
    User,
)
from handwork_payments.payments import refunds, repository
from handwork_payments.payments.escrow import apply_failure, locked, move_booking
from handwork_payments.payments.service import auto_release_deadline, void_quietly
from handwork_payments.runtime import Runtime

AUTO_RELEASE_TASK = "hp:auto_release"

audit_booking = ObjectAudit("booking")


async def create(
    runtime: Runtime,
    client: User,
    *,
    worker_id: int,
    title: str,
    amount: int,
    currency: str,
    parts: Sequence[tuple[str, int]] = (),
) -> tuple[Booking, list[Milestone]]:
    """The booking, and its milestones (`parts`: title and amount, in their order)."""
    async with transaction(runtime.sessions) as session:
        await check_worker(session, worker_id)
        booking = await add(
            session,
            client.id,
            worker_id,
            title=title,
            amount=amount,
            currency=currency,
            actor_id=client.id,
            milestone_count=len(parts),
        )
        milestones = [
            Milestone(
                booking_id=booking.id,
                position=position,
                title=part_title,
                amount=part_amount,
                status=MilestoneStatus.PENDING,
                refunded_amount=0,
                released_amount=0,
            )
            for position, (part_title, part_amount) in enumerate(parts)
        ]
        session.add_all(milestones)
        await session.flush()
    return booking, milestones


async def check_worker(session: AsyncSession, worker_id: int) -> None:
    worker = await row_or_none(session, User, worker_id)
    if worker is None or worker.role != Role.WORKER:
        raise NotFound(f"Worker #{worker_id} not found")


async def add(
    session: AsyncSession,
    client_id: int,
    worker_id: int,
    *,
    title: str,
    amount: int,
    currency: str,
    actor_id: int | None,
    milestone_count: int = 0,
) -> Booking:
    """A booking awaiting payment, in the caller's transaction (a recurring run creates
    its occurrence's booking next to the run; `actor_id` None: the system did)."""
    booking = Booking(
        client_id=client_id,
        worker_id=worker_id,
        title=title,
        amount=amount,
        currency=currency,
        status=BookingStatus.PENDING_PAYMENT,
        milestone_count=milestone_count,
    )
    session.add(booking)
    await session.flush()
    await audit_booking(
        session,
        booking.id,
        "booking.created",
        actor_id=actor_id,
        after={
            "status": booking.status,
            "amount": amount,
            "currency": currency,
            "milestones": milestone_count,
        },
    )
    return booking


async def complete(runtime: Runtime, worker: User, booking_id: int) -> Booking:
    """The worker marks the job done; the payment's auto-release clock starts."""
    async with transaction(runtime.sessions) as session:
        booking, payment = await _party_booking(
            session,
            worker,
            booking_id,
            Role.WORKER,
            "Only the booking's worker can mark it complete",
        )
        payment, booking = await _locked(session, payment, booking_id)
        if booking.status != BookingStatus.PAID:
            raise Conflict(f"A {booking.status} booking cannot be completed")
        move_booking(booking, BookingStatus.COMPLETED)
        booking.completed_at = now()
        if payment is not None and payment.status == PaymentStatus.HELD:
            deadline = auto_release_deadline(runtime, booking.completed_at)
            payment.auto_release_at = deadline
            if deadline is not None:
                await jobs.defer(
                    session,
                    AUTO_RELEASE_TASK,
                    args={"payment_id": payment.id},
                    scheduled_at=deadline,
                    # No job lock: procrastinate holds back every job sharing a lock until
                    # the earliest is done, and this one waits days. `release` re-checks
                    # the payment under its row lock, which is what serialises them.
                )
        await audit_booking(
            session,
            booking.id,
            "booking.completed",
            actor_id=worker.id,
            before={"status": BookingStatus.PAID},
            after={"status": booking.status},
        )
    return booking


async def cancel(runtime: Runtime, client: User, booking_id: int) -> Booking:
    """The client calls it off before completion; a held payment is refunded in full."""
    async with runtime.sessions() as session:
        booking, payment = await _party_booking(
            session, client, booking_id, Role.CLIENT, "Only the booking's client can cancel it"
        )
    if booking.status not in (BookingStatus.PENDING_PAYMENT, BookingStatus.PAID):
        raise Conflict(f"A {booking.status} booking cannot be cancelled")
    if payment is not None and payment.released_amount > 0:
        # The worker was paid for part of the job: cancelling would undo that silently.
        raise Conflict(
            "Milestones of this booking were released already: it cannot be cancelled; "
            "refund what is still held instead"
        )
    if payment is not None and payment.status == PaymentStatus.HELD:
        # The refund cancels the booking in the same transaction as its entry.
        await refunds.refund(
            runtime, payment.id, actor=None, amount=None, reason="Booking cancelled by the client"
        )
    elif payment is not None and payment.status not in (PaymentStatus.PENDING,):
        raise Conflict(f"A booking with a {payment.status} payment cannot be cancelled")
    async with transaction(runtime.sessions) as session:
        locked_payment, locked_booking = await _locked(session, payment, booking_id)
        if locked_payment is not None:
            await apply_failure(
                session, locked_payment, "Booking cancelled before payment", actor_id=client.id
            )
        if locked_booking.status != BookingStatus.CANCELLED:
            before = {"status": locked_booking.status}
            move_booking(locked_booking, BookingStatus.CANCELLED)
            await audit_booking(
                session,
                locked_booking.id,
                "booking.cancelled",
                actor_id=client.id,
                before=before,
                after={"status": locked_booking.status},
            )
    if payment is not None and payment.status == PaymentStatus.PENDING:
        # The payer may still hold the intent's client_secret: cancel it at the provider.
        await void_quietly(runtime, payment.id)
    return locked_booking


async def _party_booking(
    session: AsyncSession, user: User, booking_id: int, party: Role, refusal: str
) -> tuple[Booking, Payment | None]:
    """The booking `user` acts on as its client or worker (`party`), and its live payment.
    Whoever may see the booking (its parties, admins) learns why not: `refusal`, a 403."""
    booking = await session.get(Booking, booking_id)
    if booking is None or not repository.may_see(user, booking):
        raise NotFound("Booking not found")
    if user.id != (booking.worker_id if party == Role.WORKER else booking.client_id):
        raise Forbidden(refusal)
    return booking, await repository.live_payment(session, booking.id)


async def _locked(
    session: AsyncSession, payment: Payment | None, booking_id: int
) -> tuple[Payment | None, Booking]:
    """The booking under row lock, and its payment (locked first, as always) if it has one."""
    if payment is not None:
        return await locked(session, payment.id)
    booking = await repository.lock_booking(session, booking_id)
    assert booking is not None
    return None, booking
