from __future__ import annotations

from fastapi import APIRouter, status

from handwork_payments.bookings import service
from handwork_payments.bookings.schemas import BookingCreate, BookingOut
from handwork_payments.http.deps import ClientUser, CurrentUser, RuntimeDep, SessionDep
from handwork_payments.kit.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    UnparsableBody,
    error_responses,
)
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import Booking
from handwork_payments.payments import repository

router = APIRouter(prefix="/bookings", tags=["bookings"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingOut,
    responses=error_responses(UnparsableBody, Unauthorized, Forbidden, NotFound),
)
async def create_booking(body: BookingCreate, user: ClientUser, runtime: RuntimeDep) -> BookingOut:
    booking = await service.create(
        runtime,
        user,
        worker_id=body.worker_id,
        title=body.title,
        amount=body.amount_minor,
        currency=body.currency,
    )
    return BookingOut.of(booking)


@router.get("", response_model=Page[BookingOut], responses=error_responses(Unauthorized))
async def list_bookings(user: CurrentUser, session: SessionDep, page: PageDep) -> Page[BookingOut]:
    return await page_of(session, repository.visible_bookings(user), page, BookingOut.of)


@router.get(
    "/{booking_id:int}",
    response_model=BookingOut,
    responses=error_responses(Unauthorized, NotFound),
)
async def get_booking(booking_id: PathId, user: CurrentUser, session: SessionDep) -> BookingOut:
    booking = await session.get(Booking, booking_id)
    if booking is None or not repository.may_see(user, booking):
        raise NotFound("Booking not found")
    return BookingOut.of(booking)


@router.post(
    "/{booking_id:int}/complete",
    response_model=BookingOut,
    responses=error_responses(Unauthorized, Forbidden, NotFound, Conflict),
)
async def complete_booking(
    booking_id: PathId, user: CurrentUser, runtime: RuntimeDep
) -> BookingOut:
    return BookingOut.of(await service.complete(runtime, user, booking_id))


@router.post(
    "/{booking_id:int}/cancel",
    response_model=BookingOut,
    responses=error_responses(Unauthorized, Forbidden, NotFound, Conflict),
)
async def cancel_booking(booking_id: PathId, user: CurrentUser, runtime: RuntimeDep) -> BookingOut:
    return BookingOut.of(await service.cancel(runtime, user, booking_id))
