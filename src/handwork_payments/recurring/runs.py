"""The runs of recurring schedules: at each occurrence's due time, its booking is created
and paid off-session through the one payment path (`payments.service.create_hold`: the
same pending payment, provider call, hold entry, state machine as a one-off payment).

A run in three steps, the payment path's own shape:
  1. under the schedule's row lock (SKIP LOCKED: a second worker on the same schedule
     moves on), the occurrence's run row (unique per schedule and number) is found or
     made, its booking created with it, and the run claimed (`charging_since`); commit;
  2. the payment, outside any transaction: a pending payment of the booking is found
     again on a rerun, and the provider is called under that payment's key, so a job
     killed after the charge and run again charges once;
  3. under the schedule's lock again, the outcome is recorded, once: only while the run
     is still claimed with the attempt count step 1 saw.
Declined (or authentication required, which off-session nobody can give): the occurrence
is tried again after RECURRING_RETRY_DAYS; after the last, the schedule is paused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.bookings.service import add as add_booking
from handwork_payments.db import transaction
from handwork_payments.events.outbox import emit
from handwork_payments.kit import money
from handwork_payments.kit.errors import DomainError, ProviderUnavailable
from handwork_payments.models import (
    Booking,
    BookingStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    RecurringRun,
    RecurringSchedule,
    RunStatus,
    ScheduleStatus,
    User,
)
from handwork_payments.payments import repository as payments
from handwork_payments.payments import service as payment_service
from handwork_payments.recurring import dates, repository
from handwork_payments.recurring.states import SCHEDULE
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# A claim older than this belongs to a job that died (killed, lost its host): a later run
# takes the occurrence over, resuming its payment under the same key. Longer than any
# charge takes (a few provider calls of PROVIDER_TIMEOUT_SECONDS).
CLAIM_TIMEOUT = timedelta(minutes=10)
# Schedules handled per job run; the rest wait for the next minute.
BATCH = 100


@dataclass(frozen=True)
class Claim:
    schedule_id: int
    run_id: int
    number: int
    attempts: int  # before this one
    booking_id: int
    client_id: int
    amount: int
    currency: str
    method: PaymentMethod
    customer: str
    payment_method: str


async def run_due(runtime: Runtime, *, now: datetime) -> int:
    """Every active schedule whose next run is due: one step each. Returns how many
    occurrences were attempted."""
    async with runtime.sessions() as session:
        due = await session.scalars(
            select(RecurringSchedule.id)
            .where(
                RecurringSchedule.status == ScheduleStatus.ACTIVE,
                RecurringSchedule.next_run_at <= now,
            )
            .order_by(RecurringSchedule.next_run_at)
            .limit(BATCH)
        )
        ids = list(due.all())
    attempted = 0
    for schedule_id in ids:
        try:
            attempted += await run_schedule(runtime, schedule_id, now=now)
        except Exception:
            # One schedule's failure must not hold up the others: its claim stays, and a
            # later run takes it over once the claim is old (CLAIM_TIMEOUT).
            log.exception("recurring schedule %s: the run failed", schedule_id)
    return attempted


async def run_schedule(runtime: Runtime, schedule_id: int, *, now: datetime) -> int:
    """One step of one schedule: its due occurrence booked, charged and recorded. 1 when
    an attempt was made, 0 when nothing was due (or another worker has it)."""
    async with transaction(runtime.sessions) as session:
        claim = await _claim(session, schedule_id, now)
    if claim is None:
        return 0
    payment, error = await _charge(runtime, claim)
    if error is None and payment is None:
        return 0  # no answer from the provider: claim released, tried again next time
    async with transaction(runtime.sessions) as session:
        await _record(runtime, session, claim, payment, error, now)
    return 1


async def _claim(session: AsyncSession, schedule_id: int, now: datetime) -> Claim | None:
    schedule = await session.scalar(
        select(RecurringSchedule)
        .where(RecurringSchedule.id == schedule_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if (
        schedule is None
        or schedule.status != ScheduleStatus.ACTIVE
        or schedule.next_run_at is None
        or schedule.next_run_at > now
    ):
        return None
    assert schedule.customer_id and schedule.saved_method
    run = await repository.run_of(session, schedule.id, schedule.next_number)
    if run is None:
        run = RecurringRun(
            schedule_id=schedule.id,
            number=schedule.next_number,
            due_at=dates.due_at(schedule.starts_at, schedule.interval, schedule.next_number),
            status=RunStatus.DUE,
            attempts=0,
        )
        session.add(run)
    if run.charging_since is not None and run.charging_since > now - CLAIM_TIMEOUT:
        return None  # another worker is charging it
    if run.booking_id is None or await _cancelled(session, run.booking_id):
        booking = await add_booking(
            session,
            schedule.client_id,
            schedule.worker_id,
            title=f"{schedule.title} (#{run.number})",
            amount=schedule.amount,
            currency=schedule.currency,
            actor_id=None,
        )
        run.booking_id = booking.id
    run.charging_since = now
    await session.flush()
    return Claim(
        schedule_id=schedule.id,
        run_id=run.id,
        number=run.number,
        attempts=run.attempts,
        booking_id=run.booking_id,
        client_id=schedule.client_id,
        amount=schedule.amount,
        currency=schedule.currency,
        method=PaymentMethod(schedule.payment_method),
        customer=schedule.customer_id,
        payment_method=schedule.saved_method,
    )


async def _cancelled(session: AsyncSession, booking_id: int) -> bool:
    """The client cancelled the occurrence's booking while it was unpaid: a retry books
    the occurrence anew rather than paying a cancelled booking."""
    booking = await session.get(Booking, booking_id)
    return booking is not None and booking.status == BookingStatus.CANCELLED


async def _charge(runtime: Runtime, claim: Claim) -> tuple[Payment | None, str | None]:
    """(the held payment, None), (None, why it was declined), or (None, None): no answer,
    the claim released for the next run (which resumes the same payment and key)."""
    async with runtime.sessions() as session:
        live = await payments.live_payment(session, claim.booking_id)
        client = await session.get(User, claim.client_id)
    assert client is not None
    if live is not None and live.status != PaymentStatus.PENDING:
        return live, None  # held by an earlier run that died before recording it
    try:
        payment, _ = await payment_service.create_hold(
            runtime,
            client,
            method=claim.method,
            booking_id=claim.booking_id,
            amount=claim.amount,
            currency=claim.currency,
            payment_method=claim.payment_method,
            customer=claim.customer,
            metadata={"recurring_schedule_id": claim.schedule_id, "occurrence": claim.number},
        )
    except ProviderUnavailable as exc:
        log.warning("recurring run %s: %s", claim.run_id, exc.detail)
        async with transaction(runtime.sessions) as session:
            run = await session.get(RecurringRun, claim.run_id, with_for_update=True)
            if run is not None and run.attempts == claim.attempts:
                run.charging_since = None
        return None, None
    except DomainError as exc:
        return None, exc.detail
    if payment.status != PaymentStatus.HELD:
        # Off-session there is nobody to finish 3-D Secure: a decline for the dunning.
        return None, payment.failure_reason or f"the payment is {payment.status}"
    return payment, None


async def _record(
    runtime: Runtime,
    session: AsyncSession,
    claim: Claim,
    payment: Payment | None,
    error: str | None,
    now: datetime,
) -> None:
    schedule = await repository.lock(session, claim.schedule_id)
    run = await session.get(RecurringRun, claim.run_id, populate_existing=True)
    assert run is not None
    if run.charging_since is None or run.attempts != claim.attempts:
        return  # recorded already (a worker that took over a claim it thought dead)
    run.attempts += 1
    run.charging_since = None
    if payment is not None:
        run.status = RunStatus.HELD
        run.payment_id = payment.id
        run.last_error = None
        _advance(schedule)
    else:
        assert error is not None
        run.last_error = error[:1000]
        await _dun(runtime, session, schedule, run, now)
    await record(
        session,
        actor_id=None,
        action="recurring.attempt",
        object_type="recurring_schedule",
        object_id=schedule.id,
        after={
            "occurrence": run.number,
            "attempt": run.attempts,
            "status": run.status,
            "payment_id": run.payment_id,
            "error": run.last_error,
        },
    )


def _advance(schedule: RecurringSchedule) -> None:
    """On to the next occurrence, or finished after the last."""
    schedule.next_number += 1
    if schedule.occurrences is not None and schedule.next_number > schedule.occurrences:
        if schedule.status == ScheduleStatus.ACTIVE:
            SCHEDULE.check(schedule.status, ScheduleStatus.FINISHED)
            schedule.status = ScheduleStatus.FINISHED
        schedule.next_run_at = None
    elif schedule.status == ScheduleStatus.ACTIVE:
        schedule.next_run_at = dates.due_at(
            schedule.starts_at, schedule.interval, schedule.next_number
        )


async def _dun(
    runtime: Runtime,
    session: AsyncSession,
    schedule: RecurringSchedule,
    run: RecurringRun,
    now: datetime,
) -> None:
    """Retry after RECURRING_RETRY_DAYS (days after the first failure); after the last,
    pause the schedule, tell an admin and the marketplace."""
    days = runtime.settings.recurring_retry_schedule
    if run.attempts <= len(days):
        gap = days[run.attempts - 1] - (days[run.attempts - 2] if run.attempts > 1 else 0)
        run.status = RunStatus.RETRYING
        if schedule.status == ScheduleStatus.ACTIVE:
            schedule.next_run_at = now + timedelta(days=gap)
        return
    run.status = RunStatus.FAILED
    if schedule.status == ScheduleStatus.ACTIVE:
        SCHEDULE.check(schedule.status, ScheduleStatus.PAUSED)
        schedule.status = ScheduleStatus.PAUSED
        schedule.next_run_at = None
    amount = money.format_amount(schedule.amount, schedule.currency)
    await alert(
        session,
        "recurring_payment_failed",
        f"Recurring schedule #{schedule.id} paused: occurrence {run.number} "
        f"({amount} {schedule.currency}) declined {run.attempts} times: {run.last_error}",
        "recurring_schedule",
        schedule.id,
    )
    await emit(
        session,
        "recurring.payment_failed",
        {
            "schedule_id": schedule.id,
            "client_id": schedule.client_id,
            "worker_id": schedule.worker_id,
            "occurrence": run.number,
            "attempts": run.attempts,
            "amount": amount,
            "currency": schedule.currency,
            "booking_id": run.booking_id,
            "reason": run.last_error,
        },
    )
