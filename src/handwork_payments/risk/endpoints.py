from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from handwork_payments.http.deps import ADMIN_ONLY, AdminUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import ACTION, ADMIN_READ, PROVIDER_ACTION
from handwork_payments.kit.pagination import Page, PageDep, page_of
from handwork_payments.kit.schemas import PathId, ShortText, Strict
from handwork_payments.models import ReviewObject, ReviewStatus, RiskLevel, RiskReview
from handwork_payments.risk import decisions

router = APIRouter(prefix="/admin/reviews", tags=["administration"], dependencies=[ADMIN_ONLY])


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    object_type: ReviewObject
    object_id: int
    status: ReviewStatus
    risk_level: RiskLevel
    reasons: list[str]
    created_at: datetime
    decided_by: int | None
    decided_at: datetime | None
    decision_reason: str | None


class RejectIn(Strict):
    reason: ShortText | None = None


@router.get("", response_model=Page[ReviewOut], responses=ADMIN_READ)
async def list_reviews(
    session: SessionDep, page: PageDep, status: Annotated[ReviewStatus | None, Query()] = None
) -> Page[ReviewOut]:
    """Risk reviews, oldest first (the queue), optionally of one status."""
    query = select(RiskReview).order_by(RiskReview.id)
    if status is not None:
        query = query.where(RiskReview.status == status)
    return await page_of(session, query, page, ReviewOut.model_validate)


@router.post("/{review_id:int}/approve", response_model=ReviewOut, responses=ACTION)
async def approve_review(review_id: PathId, admin: AdminUser, runtime: RuntimeDep) -> ReviewOut:
    """The payment or payout may move again (release, auto-release, processing)."""
    return ReviewOut.model_validate(await decisions.approve(runtime, admin, review_id))


@router.post("/{review_id:int}/reject", response_model=ReviewOut, responses=PROVIDER_ACTION)
async def reject_review(
    review_id: PathId, admin: AdminUser, runtime: RuntimeDep, body: RejectIn | None = None
) -> ReviewOut:
    """A payment is refunded in full, a payout fails and its amount returns to the
    worker's available balance; the reason is recorded. Rejecting a payment review again
    resumes a refund whose provider call did not answer."""
    reason = body.reason if body is not None else None
    return ReviewOut.model_validate(await decisions.reject(runtime, admin, review_id, reason))
