from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.bookings import service
from handwork_payments.bookings.schemas import BookingCreate, BookingOut
from handwork_payments.http.deps import ClientUser, CurrentUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import ACTION, READ, READ_ONE
from handwork_payments.kit.errors import (
    Forbidden,
    NotFound,
    Unauthorized,
    UnparsableBody,
    error_responses,
)
from handwork_payments.kit.pagination import Page, PageDep, paginate
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import Booking
from handwork_payments.payments import milestones, repository

router = APIRouter(prefix="/bookings", tags=["bookings"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingOut,
    responses=error_responses(UnparsableBody, Unauthorized, Forbidden, NotFound),
)
async def create_booking(body: BookingCreate, user: ClientUser, runtime: RuntimeDep) -> BookingOut:
    booking, parts = await service.create(
        runtime,
        user,
        worker_id=body.worker_id,
        title=body.title,
        amount=body.amount_minor,
        currency=body.currency,
        parts=body.milestone_parts,
    )
    return BookingOut.of(booking, parts)


async def present(session: AsyncSession, booking: Booking) -> BookingOut:
    return BookingOut.of(booking, await milestones.of_booking(session, booking))


@router.get("", response_model=Page[BookingOut], responses=READ)
async def list_bookings(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[BookingOut]:
    found = await paginate(session, repository.visible_bookings(user), page)
    parts = await milestones.of_bookings(session, [b.id for b in found.rows])
    return found.page([BookingOut.of(b, parts[b.id]) for b in found.rows])


@router.get("/{booking_id:int}", response_model=BookingOut, responses=READ_ONE)
async def get_booking(booking_id: PathId, user: CurrentUser, session: SessionDep) -> BookingOut:
    booking = await session.get(Booking, booking_id)
    if booking is None or not repository.may_see(user, booking):
        raise NotFound("Booking not found")
    return await present(session, booking)


@router.post("/{booking_id:int}/complete", response_model=BookingOut, responses=ACTION)
async def complete_booking(
    booking_id: PathId, user: CurrentUser, runtime: RuntimeDep, session: SessionDep
) -> BookingOut:
    return await present(session, await service.complete(runtime, user, booking_id))


@router.post("/{booking_id:int}/cancel", response_model=BookingOut, responses=ACTION)
async def cancel_booking(
    booking_id: PathId, user: CurrentUser, runtime: RuntimeDep, session: SessionDep
) -> BookingOut:
    return await present(session, await service.cancel(runtime, user, booking_id))
