"""The escrow kernel every payment-moving domain shares: the payment and its booking under
row lock, the in-flight marker of a provider call, audit snapshots, and the appliers that
move a payment between states with its journal entry (hold, failure, release, capture,
refund).

Appliers (`apply_*`) run inside the caller's transaction, under the payment's lock, and
never commit: the command around them owns the transaction (and the provider call that
sits between two of them). Refunds, disputes, chargebacks, webhooks, bookings and the
background jobs all move payments through these functions, so there is one way to do each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.events import outbox
from handwork_payments.kit import money
from handwork_payments.kit.caller import client_ip
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict, NotFound
from handwork_payments.models import (
    Booking,
    BookingStatus,
    HoldKind,
    MilestoneStatus,
    Payment,
    PaymentMethod,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
    Wallet,
)
from handwork_payments.payments import milestones, repository
from handwork_payments.payments.ledger import (
    post_hold,
    post_milestone_release,
    post_refund,
    post_release,
)
from handwork_payments.payments.operations import Operation
from handwork_payments.payments.provider_fees import book_capture_fee
from handwork_payments.payments.states import BOOKING, PAYMENT
from handwork_payments.providers.base import HoldRef, HoldState, ProviderHold
from handwork_payments.risk import service as risk


def snapshot(payment: Payment) -> dict[str, Any]:
    """What the audit log keeps of a payment before and after a change."""
    return {
        "status": payment.status,
        "amount": payment.amount,
        "refunded_amount": payment.refunded_amount,
        "captured_amount": payment.captured_amount,
        "released_amount": payment.released_amount,
        "hold_kind": payment.hold_kind,
        "provider_operation": payment.provider_operation,
    }


async def audit_payment(
    session: AsyncSession,
    payment: Payment,
    action: str,
    *,
    actor_id: int | None,
    actor_kind: str | None = None,
    before: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """The audit row of a change of the payment: `before` as given, after as it is now
    (its snapshot and what else the change is about). A user's change over the API
    records their IP too (kept apart as personal data): chargeback evidence."""
    address = client_ip() if actor_id is not None else None
    if address is not None:
        extra["client_ip"] = address
    await record(
        session,
        actor_id=actor_id,
        actor_kind=actor_kind,
        action=action,
        object_type="payment",
        object_id=payment.id,
        before=before,
        after={**snapshot(payment), **extra},
    )


def hold_ref(payment: Payment) -> HoldRef:
    provider_id = payment.stripe_payment_id or payment.paypal_payment_id
    assert provider_id, f"payment {payment.id} has no provider id"
    return HoldRef(provider_id, payment.provider_authorization_id, payment.provider_capture_id)


def set_provider_id(payment: Payment, provider_id: str) -> None:
    if payment.payment_method == PaymentMethod.STRIPE:
        payment.stripe_payment_id = provider_id
    else:
        payment.paypal_payment_id = provider_id


async def locked(session: AsyncSession, payment_id: int) -> tuple[Payment, Booking]:
    """The payment and its booking, both under row lock (payment first, always)."""
    found = await repository.with_booking(session, payment_id, lock=True)
    if found is None:
        raise NotFound("Payment not found")
    return found


def refundable_now(payment: Payment) -> int:
    """What a refund may take now: all not refunded yet, but while the payment holds
    money only what is still held (milestones released already are refunded once the
    payment is released)."""
    released = payment.released_amount if payment.released_at is None else 0
    return payment.amount - payment.refunded_amount - released


def ensure_no_operation(payment: Payment) -> None:
    if payment.provider_operation is not None:
        raise Conflict(
            f"A provider operation ({payment.provider_operation}) is in progress for this "
            "payment; retry shortly"
        )


def begin_operation(payment: Payment, operation: Operation) -> None:
    ensure_no_operation(payment)
    payment.provider_operation = str(operation)
    payment.provider_operation_at = now()


def operation_of(payment: Payment) -> Operation | None:
    """The provider call in flight for the payment, if any."""
    return Operation.parse(payment.provider_operation)


def end_operation(payment: Payment) -> None:
    payment.provider_operation = None
    payment.provider_operation_at = None


async def abandon_operation(session: AsyncSession, payment: Payment, kind: str, why: str) -> None:
    """The provider refused the call in flight: its marker is cleared (nothing was done, so
    the command may be asked again) and an admin is told."""
    end_operation(payment)
    await alert(session, kind, why, "payment", payment.id)


def move_booking(booking: Booking, target: BookingStatus) -> None:
    if booking.status != target:
        BOOKING.check(booking.status, target)
        booking.status = target


# --- appliers: inside a transaction, under the payment's lock; they never commit -------


async def apply_hold(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    hold: ProviderHold,
    *,
    actor_id: int | None,
    actor_kind: str | None = None,
) -> bool:
    """pending -> held with the escrow entry. False (and nothing done) when the payment is
    already past pending: a late or repeated confirmation never moves it backwards."""
    if payment.status != PaymentStatus.PENDING:
        return False
    before = snapshot(payment)
    PAYMENT.check(payment.status, PaymentStatus.HELD)
    payment.status = PaymentStatus.HELD
    payment.held_at = now()
    if hold.state == HoldState.CAPTURED:
        payment.hold_kind = HoldKind.CAPTURED
        payment.captured_amount = hold.captured_amount or payment.amount
        payment.provider_capture_id = hold.capture_id
        payment.capture_by = None
    else:
        payment.hold_kind = HoldKind.AUTHORIZED
        payment.capture_by = hold.capture_by
    payment.provider_authorization_id = hold.authorization_id or payment.provider_authorization_id
    if hold.wallet is not None:
        payment.wallet = Wallet(hold.wallet)
    move_booking(booking, BookingStatus.PAID)
    await post_hold(session, payment, booking)
    await risk.after_hold(session, payment, booking, hold)
    if hold.state == HoldState.CAPTURED:
        await book_capture_fee(session, payment, hold.fee)
    await audit_payment(
        session, payment, "payment.held", actor_id=actor_id, actor_kind=actor_kind, before=before
    )
    await outbox.payment_event(session, "payment.held", payment)
    return True


async def apply_failure(
    session: AsyncSession,
    payment: Payment,
    reason: str,
    *,
    actor_id: int | None,
    actor_kind: str | None = None,
) -> bool:
    """pending -> failed (nothing was held, so no money moves); raises an alert."""
    if payment.status != PaymentStatus.PENDING:
        return False
    before = snapshot(payment)
    PAYMENT.check(payment.status, PaymentStatus.FAILED)
    payment.status = PaymentStatus.FAILED
    payment.failure_reason = reason
    end_operation(payment)
    await audit_payment(
        session,
        payment,
        "payment.failed",
        actor_id=actor_id,
        actor_kind=actor_kind,
        before=before,
        reason=reason,
    )
    await alert(
        session, "payment_failed", f"Payment #{payment.id} failed: {reason}", "payment", payment.id
    )
    await outbox.payment_event(session, "payment.failed", payment)
    return True


async def apply_release(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    *,
    actor_id: int | None,
    actor_kind: str | None = None,
) -> None:
    """Release all that is still held (every milestone not released yet with it)."""
    before = snapshot(payment)
    PAYMENT.check(payment.status, PaymentStatus.RELEASED)
    payment.status = PaymentStatus.RELEASED
    payment.released_at = now()
    payment.auto_release_at = None
    end_operation(payment)
    move_booking(booking, BookingStatus.CLOSED)
    for milestone in await milestones.of_booking(session, booking):
        if milestone.status == MilestoneStatus.PENDING:
            milestones.mark_released(milestone)
    share = await post_release(session, payment, booking)
    await audit_payment(
        session,
        payment,
        "payment.released",
        actor_id=actor_id,
        actor_kind=actor_kind,
        before=before,
    )
    await outbox.released(session, payment, booking.worker_id, share)


async def apply_milestone_release(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    milestone_id: int,
    *,
    actor_id: int | None,
) -> None:
    """Release one milestone of a held, captured payment: its part of escrow to the worker
    and its fee share to the revenue. The last one pending releases the payment."""
    parts = await milestones.of_booking(session, booking)
    milestone = milestones.pending_one(parts, milestone_id)
    if sum(m.status == MilestoneStatus.PENDING for m in parts) == 1:
        await apply_release(session, payment, booking, actor_id=actor_id)
        return
    before = snapshot(payment)
    fee = milestones.fees(payment, parts)[milestone.id]
    fee -= milestones.refunded_fee(milestone, fee)
    milestones.mark_released(milestone)
    share = await post_milestone_release(session, payment, booking, milestone, fee)
    await audit_payment(
        session,
        payment,
        "payment.milestone_released",
        actor_id=actor_id,
        before=before,
        milestone_id=milestone.id,
        released_amount=payment.released_amount,
    )
    await outbox.milestone_released(session, payment, milestone, booking.worker_id, share)


async def apply_capture(
    session: AsyncSession, payment: Payment, capture_id: str, amount: int, fee: int | None
) -> None:
    """The provider captured the authorisation: the money now sits on the platform's
    provider balance, less the provider's fee (booked here), and no authorisation can
    lapse any more."""
    payment.hold_kind = HoldKind.CAPTURED
    payment.captured_amount = amount
    payment.provider_capture_id = capture_id
    payment.capture_by = None
    await book_capture_fee(session, payment, fee)


async def apply_refund(
    session: AsyncSession,
    payment: Payment,
    booking: Booking,
    refund: PaymentRefund,
    *,
    actor_id: int | None,
    actor_kind: str | None = None,
) -> None:
    """Post a refund whose provider side is done (or not needed): its fee part pro rata,
    and a payment refunded in full ends refunded (cancelling a booking not yet closed)."""
    before = snapshot(payment)
    refunded = payment.refunded_amount + refund.amount
    assert refunded <= payment.amount
    parts = await milestones.of_booking(session, booking)
    if parts:
        fee_total = payment.refunded_fee + milestones.take_refund(payment, parts, refund)
    else:
        fee_total = money.fee_share_of_refunds(refunded, payment.amount, payment.platform_fee)
    refund.fee_part = fee_total - payment.refunded_fee
    refund.status = RefundStatus.SUCCEEDED
    refund.completed_at = now()
    payment.refunded_amount = refunded
    payment.refunded_fee = fee_total
    payment.refund_reason = refund.reason
    if refunded == payment.amount:
        PAYMENT.check(payment.status, PaymentStatus.REFUNDED)
        payment.status = PaymentStatus.REFUNDED
        payment.refunded_at = refund.completed_at
        payment.auto_release_at = None
        if booking.status in (BookingStatus.PAID, BookingStatus.COMPLETED):
            move_booking(booking, BookingStatus.CANCELLED)
    elif payment.released_at is None and refunded + payment.released_amount == payment.amount:
        # The last money held was refunded, the rest released with its milestones: the
        # payment is settled as released (its escrow is empty).
        PAYMENT.check(payment.status, PaymentStatus.RELEASED)
        payment.status = PaymentStatus.RELEASED
        payment.released_at = refund.completed_at
        payment.auto_release_at = None
        move_booking(booking, BookingStatus.CLOSED)
    end_operation(payment)
    await post_refund(session, payment, booking, refund)
    await audit_payment(
        session,
        payment,
        "payment.refunded",
        actor_id=actor_id,
        actor_kind=actor_kind,
        before=before,
        refund_id=refund.id,
        refund_amount=refund.amount,
    )
    await outbox.payment_event(session, "payment.refunded", payment, refund=refund)
