"""An admin's decision on a risk review. Approve: the money may move again (release,
auto-release, payout processing). Reject a payment's: a full refund through the refund
path, the reason recorded; a payout's: the payout fails and its amount returns to the
worker's available balance through the payout settle path."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict, NotFound
from handwork_payments.models import (
    Payment,
    PaymentStatus,
    ReviewObject,
    ReviewStatus,
    RiskReview,
    User,
)
from handwork_payments.payments import refunds
from handwork_payments.payouts import repository as payouts
from handwork_payments.payouts.service import apply_transfer
from handwork_payments.providers.base import ProviderTransfer, TransferState
from handwork_payments.runtime import Runtime

DEFAULT_REASON = "rejected in risk review"


async def approve(runtime: Runtime, admin: User, review_id: int) -> RiskReview:
    async with transaction(runtime.sessions) as session:
        review = await _locked_open(session, review_id)
        _decide(review, admin, ReviewStatus.APPROVED, None)
        await _audit(session, admin, review, "risk.review_approved")
    return review


async def reject(runtime: Runtime, admin: User, review_id: int, reason: str | None) -> RiskReview:
    """Rejecting a rejected payment review again resumes its refund (one whose provider
    call did not answer): the review is decided and committed first, so the money stays
    still in between, and the refund's own key makes the retry safe."""
    why = reason or DEFAULT_REASON
    async with transaction(runtime.sessions) as session:
        review = await session.get(RiskReview, review_id, with_for_update=True)
        if review is None:
            raise NotFound("Review not found")
        resuming = (
            review.status == ReviewStatus.REJECTED and review.object_type == ReviewObject.PAYMENT
        )
        if not resuming:
            review = await _locked_open(session, review_id)
            _decide(review, admin, ReviewStatus.REJECTED, why)
            await _audit(session, admin, review, "risk.review_rejected")
            if review.object_type == ReviewObject.PAYOUT:
                await _fail_payout(session, review.object_id, why)
    if review.object_type == ReviewObject.PAYMENT:
        await _refund(runtime, admin, review.object_id, review.decision_reason or why)
    return review


async def _locked_open(session: AsyncSession, review_id: int) -> RiskReview:
    review = await session.get(RiskReview, review_id, with_for_update=True)
    if review is None:
        raise NotFound("Review not found")
    if review.status != ReviewStatus.OPEN:
        raise Conflict(f"Review #{review.id} is {review.status} already")
    return review


def _decide(review: RiskReview, admin: User, status: ReviewStatus, reason: str | None) -> None:
    review.status = status
    review.decided_by = admin.id
    review.decided_at = now()
    review.decision_reason = reason


async def _audit(session: AsyncSession, admin: User, review: RiskReview, action: str) -> None:
    await record(
        session,
        actor_id=admin.id,
        action=action,
        object_type=str(review.object_type),
        object_id=review.object_id,
        after={"review_id": review.id, "status": review.status, "reason": review.decision_reason},
    )


async def _fail_payout(session: AsyncSession, payout_id: int, reason: str) -> None:
    payout = await payouts.lock(session, payout_id)
    assert payout is not None
    failed = ProviderTransfer(
        "", TransferState.FAILED, payout.amount, payout.currency, None, f"risk review: {reason}"
    )
    await apply_transfer(session, payout, failed, actor_kind="user")


async def _refund(runtime: Runtime, admin: User, payment_id: int, reason: str) -> None:
    """The whole amount still held goes back to the client (a payment refunded meanwhile,
    by its worker or an admin, needs nothing more)."""
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
    if payment.status == PaymentStatus.REFUNDED:
        return
    await refunds.refund(
        runtime, payment_id, actor=admin, amount=None, reason=f"Risk review: {reason}"
    )
