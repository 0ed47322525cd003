from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import select

from handwork_payments.analytics import report
from handwork_payments.analytics.schemas import Analytics
from handwork_payments.audit import alerts
from handwork_payments.db import transaction
from handwork_payments.http.deps import ADMIN_ONLY, AdminUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import ACTION, ADMIN_ONE, ADMIN_READ
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
    error_responses,
)
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import CurrencyIn, PathId
from handwork_payments.models import Alert, AlertStatus, DeliveryStatus, WebhookDelivery
from handwork_payments.webhooks import service as webhooks

router = APIRouter(prefix="/admin", tags=["administration"], dependencies=[ADMIN_ONLY])


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    provider: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    # When a failed delivery is tried next (exponential backoff); null when none is due.
    next_attempt_at: datetime | None = None
    received_at: datetime
    processed_at: datetime | None


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    message: str
    object_type: str
    object_id: int
    status: AlertStatus
    # Occurrences while open (the same kind on the same object), first and last.
    count: int
    created_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: int | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def first_seen_at(self) -> datetime:
        return self.created_at


@router.get("/webhooks", response_model=Page[DeliveryOut], responses=ADMIN_READ)
async def list_webhooks(
    session: SessionDep, page: PageDep, status: Annotated[DeliveryStatus | None, Query()] = None
) -> Page[DeliveryOut]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc())
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return await page_of(session, query, page, DeliveryOut.model_validate)


@router.post("/webhooks/{delivery_id:int}/replay", response_model=DeliveryOut, responses=ACTION)
async def replay_webhook(delivery_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> DeliveryOut:
    return DeliveryOut.model_validate(await webhooks.replay(runtime, delivery_id, admin.id))


# Newest activity first, so not by id: paged with skip only (starting_after is a 400).
@router.get(
    "/alerts",
    response_model=Page[AlertOut],
    responses=error_responses(Unauthorized, Forbidden, BadRequest),
)
async def list_alerts(
    session: SessionDep, page: PageDep, status: Annotated[AlertStatus | None, Query()] = None
) -> Page[AlertOut]:
    query = select(Alert).order_by(Alert.last_seen_at.desc(), Alert.id.desc())
    if status is not None:
        query = query.where(Alert.status == status)
    return await page_of(session, query, page, AlertOut.model_validate)


@router.post(
    "/alerts/{alert_id:int}/acknowledge",
    response_model=AlertOut,
    responses=ADMIN_ONE,
)
async def acknowledge_alert(alert_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> AlertOut:
    async with transaction(runtime.sessions) as session:
        found = await alerts.acknowledge(session, alert_id, admin.id)
        if found is None:
            raise NotFound("Alert not found")
        return AlertOut.model_validate(found)


@router.get(
    "/analytics",
    response_model=Analytics,
    responses=error_responses(Unauthorized, Forbidden, Unprocessable),
)
async def analytics(
    session: SessionDep,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
    currency: Annotated[CurrencyIn, Query()] = "USD",
) -> Analytics:
    """The platform's figures over whole UTC days, `from` and `to` included (default:
    the last 30 days)."""
    end = to or now().date()
    start = from_ or end - timedelta(days=29)
    if start > end:
        raise Unprocessable("from must not be after to")
    if (end - start).days >= report.MAX_DAYS:
        raise Unprocessable(f"at most {report.MAX_DAYS} days at once")
    return report.as_schema(await report.report(session, currency, start, end))
