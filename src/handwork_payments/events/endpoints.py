from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from handwork_payments.events import delivery
from handwork_payments.http.deps import ADMIN_ONLY, RuntimeDep, SessionDep
from handwork_payments.http.responses import ADMIN_ONE, ADMIN_READ
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import EventStatus, MarketplaceEvent

router = APIRouter(prefix="/admin", tags=["administration"], dependencies=[ADMIN_ONLY])


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    # The id the marketplace receives (and deduplicates on).
    public_id: str
    type: str
    status: EventStatus
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    data: dict[str, Any]


@router.get("/events", response_model=Page[EventOut], responses=ADMIN_READ)
async def list_events(
    session: SessionDep, page: PageDep, status: Annotated[EventStatus | None, Query()] = None
) -> Page[EventOut]:
    query = select(MarketplaceEvent).order_by(MarketplaceEvent.id.desc())
    if status is not None:
        query = query.where(MarketplaceEvent.status == status)
    return await page_of(session, query, page, EventOut.model_validate)


@router.post("/events/{event_id:int}/redeliver", response_model=EventOut, responses=ADMIN_ONE)
async def redeliver_event(event_id: PathId, runtime: RuntimeDep) -> EventOut:
    return EventOut.model_validate(await delivery.redeliver(runtime, event_id))
