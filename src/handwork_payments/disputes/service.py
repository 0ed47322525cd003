"""Disputes: opened by the booking's client or worker on a held payment (freezing its
release and refunds), reviewed and resolved by admins: release, refund, or split."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import ObjectAudit
from handwork_payments.db import transaction
from handwork_payments.disputes import repository
from handwork_payments.disputes.states import DISPUTE
from handwork_payments.events import outbox
from handwork_payments.kit import money
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import BadRequest, Conflict, NotFound
from handwork_payments.models import (
    DisputeOutcome,
    DisputeStatus,
    Payment,
    PaymentDispute,
    PaymentStatus,
    User,
)
from handwork_payments.payments import refunds
from handwork_payments.payments import repository as payments
from handwork_payments.payments import service as payment_service
from handwork_payments.payments.escrow import (
    audit_payment,
    ensure_no_operation,
    locked,
    refundable_now,
    snapshot,
)
from handwork_payments.payments.states import PAYMENT
from handwork_payments.runtime import Runtime

audit_dispute = ObjectAudit("dispute")

# A dispute not decided yet: one a chargeback may join, evidence may still be sent for.
ACTIVE = (DisputeStatus.OPEN, DisputeStatus.UNDER_REVIEW)


async def alert_opened(session: AsyncSession, dispute_id: int, message: str) -> None:
    """Admins' alert that a dispute was opened, or a chargeback joined one."""
    await alert(session, "dispute_opened", message, "dispute", dispute_id)


async def freeze(
    session: AsyncSession,
    payment: Payment,
    *,
    initiated_by: int | None,
    reason: str,
    description: str,
    provider_dispute_id: str | None = None,
) -> PaymentDispute:
    """held -> disputed with an open dispute; under the payment's lock."""
    ensure_no_operation(payment)
    before = snapshot(payment)
    PAYMENT.check(payment.status, PaymentStatus.DISPUTED)
    payment.status = PaymentStatus.DISPUTED
    dispute = await add_open_dispute(
        session,
        payment,
        before,
        initiated_by=initiated_by,
        actor_kind=None if initiated_by else "provider",
        reason=reason,
        description=description,
        provider_dispute_id=provider_dispute_id,
    )
    await alert_opened(
        session, dispute.id, f"Dispute #{dispute.id} opened on payment #{payment.id}: {reason}"
    )
    return dispute


async def add_open_dispute(
    session: AsyncSession,
    payment: Payment,
    before: dict[str, Any],
    *,
    initiated_by: int | None,
    actor_kind: str | None,
    reason: str,
    description: str,
    provider_dispute_id: str | None,
) -> PaymentDispute:
    """The open dispute row and its audit entry (the payment as it was, and is now)."""
    dispute = PaymentDispute(
        payment_id=payment.id,
        initiated_by=initiated_by,
        reason=reason,
        description=description,
        status=DisputeStatus.OPEN,
        provider_dispute_id=provider_dispute_id,
    )
    session.add(dispute)
    await session.flush()
    await audit_payment(
        session,
        payment,
        "dispute.opened",
        actor_id=initiated_by,
        actor_kind=actor_kind,
        before=before,
        dispute_id=dispute.id,
    )
    await outbox.dispute_event(session, "dispute.opened", dispute)
    return dispute


async def open_dispute(
    runtime: Runtime, user: User, *, payment_id: int, reason: str, description: str
) -> PaymentDispute:
    async with transaction(runtime.sessions) as session:
        payment, booking = await locked(session, payment_id)
        if user.id not in (booking.client_id, booking.worker_id):
            raise NotFound("Payment not found")
        if payment.status != PaymentStatus.HELD:
            raise Conflict(f"A {payment.status} payment cannot be disputed")
        return await freeze(
            session, payment, initiated_by=user.id, reason=reason, description=description
        )


async def _locked_dispute(session: AsyncSession, dispute_id: int) -> PaymentDispute:
    dispute = await repository.lock(session, dispute_id)
    if dispute is None:
        raise NotFound("Dispute not found")
    return dispute


async def _move(
    session: AsyncSession,
    admin: User,
    dispute: PaymentDispute,
    status: DisputeStatus,
    action: str,
    **after: Any,
) -> None:
    """The locked `dispute` to `status` as the state machine allows, audited as the admin's
    change (from the status it had; `after`: what else the row shows)."""
    before = {"status": dispute.status}
    DISPUTE.check(dispute.status, status)
    dispute.status = status
    await audit_dispute(
        session,
        dispute.id,
        action,
        actor_id=admin.id,
        before=before,
        after={"status": dispute.status, **after},
    )


async def review(runtime: Runtime, admin: User, dispute_id: int) -> PaymentDispute:
    async with transaction(runtime.sessions) as session:
        dispute = await _locked_dispute(session, dispute_id)
        await _move(session, admin, dispute, DisputeStatus.UNDER_REVIEW, "dispute.under_review")
        return dispute


async def resolve(
    runtime: Runtime,
    admin: User,
    dispute_id: int,
    *,
    outcome: DisputeOutcome,
    refund_amount: int | None,
    resolution_notes: str,
) -> PaymentDispute:
    """Move the money, then close the books on the dispute. The decision is written first
    so that a resolution interrupted by a provider timeout can be run again and finishes
    what is left without refunding or releasing twice."""
    async with transaction(runtime.sessions) as session:
        payment_id = await _decide(
            session,
            runtime,
            admin,
            dispute_id,
            outcome=outcome,
            refund_amount=refund_amount,
            resolution_notes=resolution_notes,
        )
    reason = f"Dispute #{dispute_id} resolved: {resolution_notes}"
    if outcome in (DisputeOutcome.REFUND, DisputeOutcome.SPLIT):
        async with runtime.sessions() as session:
            done = await payments.dispute_refund(session, dispute_id)
        if done is None:
            await refunds.refund(
                runtime,
                payment_id,
                actor=admin,
                amount=refund_amount,
                reason=reason,
                dispute_id=dispute_id,
            )
    if outcome in (DisputeOutcome.RELEASE, DisputeOutcome.SPLIT):
        async with runtime.sessions() as session:
            current = await session.get(Payment, payment_id)
            assert current is not None
        if current.status == PaymentStatus.DISPUTED:
            await payment_service.release(runtime, payment_id, actor=admin, from_disputed=True)
    async with transaction(runtime.sessions) as session:
        return await _mark_resolved(session, admin, dispute_id)


async def _decide(
    session: AsyncSession,
    runtime: Runtime,
    admin: User,
    dispute_id: int,
    *,
    outcome: DisputeOutcome,
    refund_amount: int | None,
    resolution_notes: str,
) -> int:
    """Check and write the admin's decision on the dispute; the disputed payment's id. The
    same decision again (a resolution resumed after a timeout) passes."""
    found = await session.get(PaymentDispute, dispute_id)
    if found is None:
        raise NotFound("Dispute not found")
    # Payment before dispute: the order every path that touches both takes locks in.
    payment, _ = await locked(session, found.payment_id)
    dispute = await _locked_dispute(session, dispute_id)
    if dispute.provider_dispute_id is not None:
        # A chargeback: the card network decides, and its decision arrives as a
        # webhook (disputes.chargebacks). Refunding or releasing here would move the
        # money a second time.
        raise Conflict(
            f"Dispute #{dispute.id} is chargeback {dispute.provider_dispute_id}: the card "
            "network decides it; it closes when the provider reports the outcome"
        )
    DISPUTE.check(dispute.status, DisputeStatus.RESOLVED)
    if dispute.outcome is not None and (
        dispute.outcome != outcome or dispute.refund_amount != refund_amount
    ):
        raise Conflict(f"This dispute is already being resolved as {dispute.outcome}")
    remaining = refundable_now(payment)
    if outcome == DisputeOutcome.SPLIT:
        if refund_amount is None:
            raise BadRequest("A split needs refund_amount")
        if dispute.outcome is None and not 0 < refund_amount < remaining:
            raise BadRequest(
                "A split's refund_amount must be more than 0 and less than the "
                f"{money.format_amount(remaining, payment.currency)} held"
            )
        # Refused before the decision is written, not by the refund after it.
        runtime.providers.rules(payment.payment_method).check_amount(
            refund_amount, payment.currency
        )
    elif refund_amount is not None:
        raise BadRequest(f"refund_amount goes with a split, not a {outcome}")
    dispute.outcome = outcome
    dispute.refund_amount = refund_amount
    dispute.resolution_notes = resolution_notes
    dispute.resolved_by = admin.id
    return payment.id


async def _mark_resolved(session: AsyncSession, admin: User, dispute_id: int) -> PaymentDispute:
    """The money has moved as decided: the dispute is resolved (once)."""
    dispute = await _locked_dispute(session, dispute_id)
    if dispute.status == DisputeStatus.RESOLVED:
        return dispute
    await _move(
        session,
        admin,
        dispute,
        DisputeStatus.RESOLVED,
        "dispute.resolved",
        outcome=dispute.outcome,
        refund_amount=dispute.refund_amount,
    )
    dispute.resolved_at = now()
    await outbox.dispute_event(session, "dispute.resolved", dispute)
    return dispute
