"""Reading schedules and runs, and who may see them."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.errors import NotFound
from handwork_payments.kit.rows import lock_first, lock_row_or_none
from handwork_payments.models import RecurringRun, RecurringSchedule, Role, User


def may_see(user: User, schedule: RecurringSchedule) -> bool:
    return user.role == Role.ADMIN or user.id in (schedule.client_id, schedule.worker_id)


def visible(user: User) -> Select[RecurringSchedule]:
    """A client's and a worker's own schedules; an admin's: all. Newest first."""
    query = select(RecurringSchedule).order_by(RecurringSchedule.id.desc())
    if user.role == Role.CLIENT:
        query = query.where(RecurringSchedule.client_id == user.id)
    elif user.role == Role.WORKER:
        query = query.where(RecurringSchedule.worker_id == user.id)
    return query


async def seen(session: AsyncSession, user: User, schedule_id: int) -> RecurringSchedule:
    schedule = await session.get(RecurringSchedule, schedule_id)
    if schedule is None or not may_see(user, schedule):
        raise NotFound("Recurring schedule not found")
    return schedule


async def lock(session: AsyncSession, schedule_id: int) -> RecurringSchedule:
    schedule = await lock_row_or_none(session, RecurringSchedule, schedule_id)
    if schedule is None:
        raise NotFound("Recurring schedule not found")
    return schedule


async def runs_of(session: AsyncSession, schedule_ids: list[int]) -> dict[int, list[RecurringRun]]:
    found: dict[int, list[RecurringRun]] = {i: [] for i in schedule_ids}
    rows = await session.scalars(
        select(RecurringRun)
        .where(RecurringRun.schedule_id.in_(schedule_ids))
        .order_by(RecurringRun.schedule_id, RecurringRun.number)
    )
    for run in rows:
        found[run.schedule_id].append(run)
    return found


async def run_of(session: AsyncSession, schedule_id: int, number: int) -> RecurringRun | None:
    return await session.scalar(
        select(RecurringRun)
        .where(RecurringRun.schedule_id == schedule_id, RecurringRun.number == number)
        .execution_options(populate_existing=True)
    )


async def by_setup(session: AsyncSession, setup_id: str) -> RecurringSchedule:
    """The schedule whose setup this is, under lock."""
    schedule = await lock_first(
        session, select(RecurringSchedule).where(RecurringSchedule.setup_id == setup_id)
    )
    if schedule is None:
        raise NotFound("Recurring schedule not found")
    return schedule


async def find_by_setup(session: AsyncSession, setup_id: str) -> RecurringSchedule | None:
    return await session.scalar(
        select(RecurringSchedule).where(RecurringSchedule.setup_id == setup_id)
    )
