"""Recurring schedules: creating one and saving the payer's method at the provider (Stripe
SetupIntent, PayPal Vault v3 setup and payment tokens), activating it once the method is
saved, and the client's (or an admin's) pause, resume and cancel. Each occurrence is
booked and charged by `runs`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record
from handwork_payments.bookings.service import check_worker
from handwork_payments.db import transaction
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import BadRequest, Forbidden, ProviderUnavailable
from handwork_payments.models import (
    Interval,
    PaymentMethod,
    RecurringSchedule,
    Role,
    RunStatus,
    ScheduleStatus,
    User,
)
from handwork_payments.providers.base import (
    ProviderError,
    ProviderSetup,
    ProviderUnavailableError,
    SetupProvider,
    SetupState,
)
from handwork_payments.recurring import dates, repository
from handwork_payments.recurring.states import SCHEDULE
from handwork_payments.runtime import Runtime


@dataclass(frozen=True)
class NewSchedule:
    worker_id: int
    title: str
    amount: int
    currency: str
    interval: Interval
    starts_at: datetime
    occurrences: int | None
    payment_method: PaymentMethod


async def create(
    runtime: Runtime, client: User, new: NewSchedule
) -> tuple[RecurringSchedule, ProviderSetup]:
    """A schedule waiting for its setup, and the setup the payer confirms (Stripe.js
    `confirmSetup` with its client_secret; PayPal: the payer approves at approval_url)."""
    # Refused (400) before anything is written when the provider is disabled.
    runtime.providers.ensure_offered(new.payment_method)
    # Every occurrence would be refused: refused once, here, before anything is written.
    runtime.providers.rules(new.payment_method).check_payment(new.amount, new.currency)
    async with transaction(runtime.sessions) as session:
        await check_worker(session, new.worker_id)
        schedule = RecurringSchedule(
            client_id=client.id,
            worker_id=new.worker_id,
            title=new.title,
            amount=new.amount,
            currency=new.currency,
            interval=new.interval,
            starts_at=new.starts_at,
            occurrences=new.occurrences,
            payment_method=new.payment_method,
            status=ScheduleStatus.PENDING_SETUP,
            next_number=1,
        )
        session.add(schedule)
        await session.flush()
        await _audit(session, schedule, "recurring.created", client.id)
    return await _saved_setup(runtime, client, schedule)


def _setup_provider(runtime: Runtime, schedule: RecurringSchedule) -> SetupProvider:
    provider = runtime.providers.for_method(schedule.payment_method)
    assert isinstance(provider, SetupProvider), f"{provider.name} cannot save payment methods"
    return provider


def _reference(schedule: RecurringSchedule) -> str:
    return f"recurring-{schedule.id}"


async def _saved_setup(
    runtime: Runtime, client: User, schedule: RecurringSchedule
) -> tuple[RecurringSchedule, ProviderSetup]:
    """The schedule's setup at the provider: created under the keys `recurring-{id}-...`,
    so asking again (a lost answer) finds the same customer and SetupIntent (PayPal:
    the same setup token)."""
    name = schedule.payment_method
    try:
        setup = await _setup_provider(runtime, schedule).create_setup(
            reference=_reference(schedule), email=client.email
        )
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(
            f"{name} did not answer; GET recurring schedule #{schedule.id} to resume its setup"
        ) from exc
    except ProviderError as exc:
        raise BadRequest(f"{name} refused the setup: {exc.message}") from exc
    async with transaction(runtime.sessions) as session:
        schedule = await repository.lock(session, schedule.id)
        schedule.setup_id = setup.setup_id
        schedule.customer_id = setup.customer
    return schedule, setup


async def refresh(
    runtime: Runtime, schedule: RecurringSchedule
) -> tuple[RecurringSchedule, ProviderSetup | None]:
    """A schedule waiting for its setup asks the provider how the setup stands, and is
    activated once the payer's method is saved (the same as `setup_intent.succeeded`;
    PayPal: an approved setup token is exchanged for its payment token there)."""
    if schedule.status != ScheduleStatus.PENDING_SETUP:
        return schedule, None
    if schedule.setup_id is None:
        async with runtime.sessions() as session:
            client = await session.get(User, schedule.client_id)
        assert client is not None
        return await _saved_setup(runtime, client, schedule)
    try:
        setup = await _setup_provider(runtime, schedule).get_setup(
            schedule.setup_id, reference=_reference(schedule)
        )
    except (ProviderError, ProviderUnavailableError):
        return schedule, None  # shown as it is; asked again on the next read
    if setup.state is SetupState.SUCCEEDED:
        schedule = await activate(runtime, setup)
    return schedule, setup


async def activate(runtime: Runtime, setup: ProviderSetup) -> RecurringSchedule:
    """The payer's method is saved: the schedule becomes active, its first occurrence due
    at its start (at once when the start has passed). A second call changes nothing."""
    assert setup.state is SetupState.SUCCEEDED and setup.payment_method
    async with transaction(runtime.sessions) as session:
        schedule = await repository.by_setup(session, setup.setup_id)
        if schedule.status != ScheduleStatus.PENDING_SETUP:
            return schedule
        SCHEDULE.check(schedule.status, ScheduleStatus.ACTIVE)
        schedule.status = ScheduleStatus.ACTIVE
        schedule.saved_method = setup.payment_method
        schedule.customer_id = setup.customer
        schedule.next_run_at = dates.due_at(schedule.starts_at, schedule.interval, 1)
        await _audit(session, schedule, "recurring.activated", None)
    return schedule


async def pause(runtime: Runtime, user: User, schedule_id: int) -> RecurringSchedule:
    return await _stop(runtime, user, schedule_id, ScheduleStatus.PAUSED, "recurring.paused")


async def resume(runtime: Runtime, user: User, schedule_id: int) -> RecurringSchedule:
    """Paused → active. An occurrence left unpaid (its retries used up) is tried once more
    at once; occurrences that fell due while paused are skipped, not charged in a burst."""
    async with transaction(runtime.sessions) as session:
        schedule = await _for_action(session, user, schedule_id)
        SCHEDULE.check(schedule.status, ScheduleStatus.ACTIVE)
        schedule.status = ScheduleStatus.ACTIVE
        moment = now()
        run = await repository.run_of(session, schedule.id, schedule.next_number)
        if run is not None and run.status != RunStatus.HELD:
            if run.status == RunStatus.FAILED:
                run.status = RunStatus.RETRYING
            schedule.next_run_at = moment
        else:
            _skip_missed(schedule, moment)
        await _audit(session, schedule, "recurring.resumed", user.id)
    return schedule


def _skip_missed(schedule: RecurringSchedule, moment: datetime) -> None:
    number = schedule.next_number
    while dates.due_at(schedule.starts_at, schedule.interval, number) < moment:
        number += 1
    schedule.next_number = number
    if schedule.occurrences is not None and number > schedule.occurrences:
        SCHEDULE.check(schedule.status, ScheduleStatus.FINISHED)
        schedule.status = ScheduleStatus.FINISHED
        schedule.next_run_at = None
    else:
        schedule.next_run_at = dates.due_at(schedule.starts_at, schedule.interval, number)


async def cancel(runtime: Runtime, user: User, schedule_id: int) -> RecurringSchedule:
    """No further occurrence is booked; bookings already made stand on their own (each
    can be cancelled and refunded as any booking)."""
    return await _stop(runtime, user, schedule_id, ScheduleStatus.CANCELLED, "recurring.cancelled")


async def _stop(
    runtime: Runtime, user: User, schedule_id: int, target: ScheduleStatus, action: str
) -> RecurringSchedule:
    """Paused or cancelled: no occurrence is due any more."""
    async with transaction(runtime.sessions) as session:
        schedule = await _for_action(session, user, schedule_id)
        SCHEDULE.check(schedule.status, target)
        schedule.status = target
        schedule.next_run_at = None
        await _audit(session, schedule, action, user.id)
    return schedule


async def _for_action(session: AsyncSession, user: User, schedule_id: int) -> RecurringSchedule:
    """The schedule under lock, for its client or an admin; its worker may see it (403)."""
    seen = await repository.seen(session, user, schedule_id)
    if user.id != seen.client_id and user.role != Role.ADMIN:
        raise Forbidden("Only the schedule's client or an admin can change it")
    return await repository.lock(session, schedule_id)


async def _audit(
    session: AsyncSession, schedule: RecurringSchedule, action: str, actor_id: int | None
) -> None:
    await record(
        session,
        actor_id=actor_id,
        action=action,
        object_type="recurring_schedule",
        object_id=schedule.id,
        after={"status": schedule.status, "next_number": schedule.next_number},
    )
