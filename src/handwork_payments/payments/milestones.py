"""A booking's milestones as its payment sees them: each one's fee share, what of it is
still held, which ones a refund takes, and their marks when released.

Milestones change only under their payment's row lock (they follow its money), so they
need no lock of their own. A milestone's fee share is derived from the payment's fee
(kit.money.milestone_fees); what of it a refund gives back, from its own running total of
refunds (kit.money.fee_share_of_refunds), so the shares released and refunded always add
up to the payment's fee exactly."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit import money
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict, NotFound
from handwork_payments.models import Booking, Milestone, MilestoneStatus, Payment, PaymentRefund

MIN_MILESTONES = 2
MAX_MILESTONES = 20


async def of_booking(session: AsyncSession, booking: Booking) -> list[Milestone]:
    """The booking's milestones in their order (empty, and no query, for one without)."""
    if not booking.milestone_count:
        return []
    rows = await session.execute(
        select(Milestone)
        .where(Milestone.booking_id == booking.id)
        .order_by(Milestone.position)
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())


async def of_bookings(
    session: AsyncSession, booking_ids: Sequence[int]
) -> dict[int, list[Milestone]]:
    """Milestones of several bookings in one query (a page of bookings)."""
    found: dict[int, list[Milestone]] = {booking_id: [] for booking_id in booking_ids}
    rows = await session.execute(
        select(Milestone)
        .where(Milestone.booking_id.in_(booking_ids))
        .order_by(Milestone.booking_id, Milestone.position)
    )
    for milestone in rows.scalars():
        found[milestone.booking_id].append(milestone)
    return found


def fees(payment: Payment, milestones: Sequence[Milestone]) -> dict[int, int]:
    """Each milestone's share of the payment's fee, by milestone id."""
    shares = money.milestone_fees([m.amount for m in milestones], payment.platform_fee)
    return {m.id: share for m, share in zip(milestones, shares, strict=True)}


def refunded_fee(milestone: Milestone, fee: int) -> int:
    """The fee part of what was refunded of the milestone (its own running total)."""
    return money.fee_share_of_refunds(milestone.refunded_amount, milestone.amount, fee)


def held(milestone: Milestone) -> int:
    """What of a pending milestone is still in escrow."""
    return milestone.amount - milestone.refunded_amount


def pending_one(milestones: Sequence[Milestone], milestone_id: int) -> Milestone:
    """The milestone to release: the booking's, and still pending (a second release of it
    is a 409)."""
    milestone = next((m for m in milestones if m.id == milestone_id), None)
    if milestone is None:
        raise NotFound(f"Milestone #{milestone_id} not found in this booking")
    if milestone.status != MilestoneStatus.PENDING:
        raise Conflict(f"Milestone #{milestone_id} is {milestone.status} already")
    return milestone


def mark_released(milestone: Milestone) -> int:
    """Mark a pending milestone released; what of it left escrow."""
    milestone.status = MilestoneStatus.RELEASED
    milestone.released_amount = held(milestone)
    milestone.released_at = now()
    return milestone.released_amount


def refundable(milestone: Milestone, payment: Payment) -> int:
    """What a refund naming this milestone may take: while the payment holds money, only
    a milestone not released yet (a released one is refunded once the payment is
    released, so that a refund is wholly before or wholly after release)."""
    if payment.released_at is None and milestone.status != MilestoneStatus.PENDING:
        return 0
    return milestone.amount - milestone.refunded_amount


def take_refund(payment: Payment, milestones: Sequence[Milestone], refund: PaymentRefund) -> int:
    """Charge the refund to milestones: the one it names, else the newest first among
    those it may take (unreleased before release, released after); the fee part of the
    refund, as the sum of each milestone's own."""
    shares = fees(payment, milestones)
    if refund.milestone_id is not None:
        order = [m for m in milestones if m.id == refund.milestone_id]
    else:
        order = list(reversed(milestones))
    left, fee_part = refund.amount, 0
    for milestone in order:
        take = min(left, refundable(milestone, payment))
        if take <= 0:
            continue
        before = refunded_fee(milestone, shares[milestone.id])
        milestone.refunded_amount += take
        fee_part += refunded_fee(milestone, shares[milestone.id]) - before
        if milestone.refunded_amount == milestone.amount:
            milestone.status = MilestoneStatus.REFUNDED
        left -= take
    assert left == 0, f"refund {refund.id} exceeds its milestones by {left}"
    return fee_part
