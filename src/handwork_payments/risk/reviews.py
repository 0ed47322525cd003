"""Risk reviews: a payment or payout whose money waits for an admin (risk_reviews). The
guard `ensure_no_open_review` is what release, auto-release and payout processing and
sending ask before moving money; the sweeps leave reviewed objects out (`reviewed`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.kit.errors import UnderReview
from handwork_payments.models import ReviewObject, ReviewStatus, RiskLevel, RiskReview

# A rejected payment review keeps the payment's money still until its refund is done (a
# refund whose provider call did not answer is resumed by rejecting again).
UNDECIDED = (ReviewStatus.OPEN, ReviewStatus.REJECTED)


async def open_review(
    session: AsyncSession,
    object_type: ReviewObject,
    object_id: int,
    level: RiskLevel,
    reasons: list[str],
) -> RiskReview:
    """Open a review of the object, or widen the open one (a later evaluation of the same
    payment, at its hold, adds the provider's verdict)."""
    review = await session.scalar(
        select(RiskReview)
        .where(
            RiskReview.object_type == object_type,
            RiskReview.object_id == object_id,
            RiskReview.status == ReviewStatus.OPEN,
        )
        .with_for_update()
    )
    if review is None:
        review = RiskReview(
            object_type=object_type,
            object_id=object_id,
            status=ReviewStatus.OPEN,
            risk_level=level,
            reasons=reasons,
        )
        session.add(review)
        await session.flush()
    else:
        review.risk_level = level
        review.reasons = reasons
    await record(
        session,
        actor_id=None,
        actor_kind="system",
        action="risk.review_opened",
        object_type=str(object_type),
        object_id=object_id,
        after={"review_id": review.id, "risk_level": level, "reasons": reasons},
    )
    await alert(
        session,
        "risk_review",
        f"{object_type.capitalize()} #{object_id} waits for a risk review (#{review.id}): "
        + "; ".join(reasons),
        str(object_type),
        object_id,
    )
    return review


async def ensure_no_open_review(
    session: AsyncSession, object_type: ReviewObject, object_id: int
) -> None:
    """Raise UnderReview (409) while a review of the object is open or rejected."""
    params = {"object_type": object_type, "object_id": object_id}
    status = await session.scalar(_undecided_review(), params)
    if status is not None:
        what = (
            "waits for a risk review" if status == ReviewStatus.OPEN else "was rejected in review"
        )
        raise UnderReview(
            f"This {object_type} {what}; its money cannot move until an admin decides"
        )


def reviewed(object_type: ReviewObject, id_column: Any) -> ColumnElement[bool]:
    """SQL: the object (its id in `id_column`) has an undecided review; for the sweeps to
    leave it out rather than fail on it."""
    return exists().where(
        RiskReview.object_type == object_type,
        RiskReview.object_id == id_column,
        RiskReview.status.in_(UNDECIDED),
    )


@cache
def _undecided_review() -> Select[ReviewStatus]:
    """ensure_no_open_review's statement, on every payout and capture: built once."""
    return (
        select(RiskReview.status)
        .where(
            RiskReview.object_type == bindparam("object_type"),
            RiskReview.object_id == bindparam("object_id"),
            RiskReview.status.in_(UNDECIDED),
        )
        .limit(1)
    )
