from __future__ import annotations

from fastapi import APIRouter, status

from handwork_payments.http.deps import ClientUser, CurrentUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import ACTION, READ
from handwork_payments.kit.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    ProviderUnavailable,
    Unauthorized,
    error_responses,
)
from handwork_payments.kit.pagination import Page, PageDep, paginate
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import RecurringSchedule
from handwork_payments.providers.base import ProviderSetup
from handwork_payments.recurring import repository, service
from handwork_payments.recurring.schemas import ScheduleCreate, ScheduleOut
from handwork_payments.runtime import Runtime

router = APIRouter(prefix="/recurring-schedules", tags=["recurring"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses=error_responses(BadRequest, Unauthorized, Forbidden, NotFound, ProviderUnavailable),
)
async def create_schedule(
    body: ScheduleCreate, user: ClientUser, runtime: RuntimeDep
) -> ScheduleOut:
    """A schedule `pending_setup`: the payer confirms `setup.client_secret` with Stripe.js
    (`confirmSetup`), or approves saving PayPal at `setup.approval_url`; once the method is
    saved it is `active` and each occurrence is booked and paid off-session at its due time."""
    schedule, setup = await service.create(
        runtime,
        user,
        service.NewSchedule(
            worker_id=body.worker_id,
            title=body.title,
            amount=body.amount_minor,
            currency=body.currency,
            interval=body.interval,
            starts_at=body.starts_at,
            occurrences=body.occurrences,
            payment_method=body.payment_method,
        ),
    )
    return ScheduleOut.of(schedule, [], setup)


@router.get("", response_model=Page[ScheduleOut], responses=READ)
async def list_schedules(
    user: CurrentUser, session: SessionDep, page: PageDep
) -> Page[ScheduleOut]:
    found = await paginate(session, repository.visible(user), page)
    runs = await repository.runs_of(session, [row.id for row in found.rows])
    return found.page([ScheduleOut.of(row, runs[row.id]) for row in found.rows])


@router.get(
    "/{schedule_id:int}",
    response_model=ScheduleOut,
    responses=error_responses(Unauthorized, NotFound, ProviderUnavailable),
)
async def get_schedule(schedule_id: PathId, user: CurrentUser, runtime: RuntimeDep) -> ScheduleOut:
    """With its occurrences. A schedule waiting for its setup asks the provider first and
    is activated here once the payer's method is saved (PayPal: after the payer approved,
    this is where the approval is turned into the saved payment token)."""
    async with runtime.sessions() as session:
        schedule = await repository.seen(session, user, schedule_id)
    schedule, setup = await service.refresh(runtime, schedule)
    return await _shown(runtime, schedule, setup)


async def _shown(
    runtime: Runtime, schedule: RecurringSchedule, setup: ProviderSetup | None = None
) -> ScheduleOut:
    async with runtime.sessions() as session:
        runs = await repository.runs_of(session, [schedule.id])
    return ScheduleOut.of(schedule, runs[schedule.id], setup)


@router.post("/{schedule_id:int}/pause", response_model=ScheduleOut, responses=ACTION)
async def pause_schedule(
    schedule_id: PathId, user: CurrentUser, runtime: RuntimeDep
) -> ScheduleOut:
    return await _shown(runtime, await service.pause(runtime, user, schedule_id))


@router.post("/{schedule_id:int}/resume", response_model=ScheduleOut, responses=ACTION)
async def resume_schedule(
    schedule_id: PathId, user: CurrentUser, runtime: RuntimeDep
) -> ScheduleOut:
    return await _shown(runtime, await service.resume(runtime, user, schedule_id))


@router.post("/{schedule_id:int}/cancel", response_model=ScheduleOut, responses=ACTION)
async def cancel_schedule(
    schedule_id: PathId, user: CurrentUser, runtime: RuntimeDep
) -> ScheduleOut:
    return await _shown(runtime, await service.cancel(runtime, user, schedule_id))
