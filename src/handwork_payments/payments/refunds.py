"""Refunds, full and partial, before and after release.

Before release an authorised hold needs no provider call for a partial refund (the
release captures less) and a void for a full one; money already captured is refunded at
the provider. Each refund is a row first, so its id names the provider call
(`payment-{id}-refund-{refund_id}`) and a retry after a timeout never refunds twice."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.connect.reversals import cover_refund
from handwork_payments.db import transaction
from handwork_payments.kit import money
from handwork_payments.kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ProviderUnavailable,
)
from handwork_payments.kit.rows import row_or_none
from handwork_payments.models import (
    Booking,
    HoldKind,
    Payment,
    PaymentRefund,
    PaymentStatus,
    RefundStatus,
    Role,
    User,
)
from handwork_payments.payments import milestones, operations, repository
from handwork_payments.payments.escrow import (
    abandon_operation,
    apply_refund,
    begin_operation,
    ensure_no_operation,
    hold_ref,
    locked,
    operation_of,
    refundable_now,
)
from handwork_payments.providers.base import ProviderError, ProviderUnavailableError
from handwork_payments.runtime import Runtime

REFUNDABLE = {PaymentStatus.HELD, PaymentStatus.RELEASED}


def needs_provider(payment: Payment, refund: PaymentRefund) -> bool:
    """A partial refund of an authorisation changes nothing at the provider yet."""
    full = payment.refunded_amount + refund.amount == payment.amount
    return payment.hold_kind == HoldKind.CAPTURED or full


def check_may_refund(user: User, booking: Booking) -> None:
    if user.role == Role.ADMIN or user.id == booking.worker_id:
        return
    if user.id == booking.client_id:
        raise Forbidden("Refunds are made by the booking's worker or an admin")
    raise NotFound("Payment not found")


async def refund(
    runtime: Runtime,
    payment_id: int,
    *,
    actor: User | None,
    amount: int | None,
    reason: str,
    dispute_id: int | None = None,
    milestone_id: int | None = None,
) -> Payment:
    """Refund `amount` (all that may be refunded when None): of the milestone named, else
    of the newest milestones first. `dispute_id` is set by a dispute's resolution, which
    alone may refund a disputed payment."""
    actor_id = actor.id if actor else None
    async with transaction(runtime.sessions) as session:
        payment, booking = await locked(session, payment_id)
        if actor is not None and dispute_id is None:
            check_may_refund(actor, booking)
        allowed = {PaymentStatus.DISPUTED} if dispute_id is not None else REFUNDABLE
        if payment.status not in allowed:
            raise Conflict(f"A {payment.status} payment cannot be refunded")
        remaining = refundable_now(payment)
        if milestone_id is not None:
            remaining = await _milestone_refundable(session, payment, booking, milestone_id)
        amount = remaining if amount is None else amount
        if amount <= 0:
            raise BadRequest("The refund amount must be positive")
        if amount > remaining:
            raise BadRequest(
                f"Only {money.format_amount(remaining, payment.currency)} {payment.currency} "
                "is left to refund"
            )
        # Every refund, even one that only shrinks a hold: what is left is captured later,
        # and must still be an amount the provider takes (KWD on Stripe ends in 0).
        runtime.providers.rules(payment.payment_method).check_amount(amount, payment.currency)
        row = PaymentRefund(
            payment_id=payment.id,
            amount=amount,
            fee_part=0,
            reason=reason,
            requested_by=actor_id,
            dispute_id=dispute_id,
            milestone_id=milestone_id,
            before_release=payment.released_at is None,
            status=RefundStatus.PENDING,
        )
        session.add(row)
        await session.flush()
        if not needs_provider(payment, row):
            ensure_no_operation(payment)
            await apply_refund(session, payment, booking, row, actor_id=actor_id)
            return payment
        begin_operation(payment, operations.refund(row.id))
        refund_id = row.id
    return await finish_refund(runtime, payment_id, refund_id, actor_id=actor_id)


async def _milestone_refundable(
    session: AsyncSession, payment: Payment, booking: Booking, milestone_id: int
) -> int:
    parts = await milestones.of_booking(session, booking)
    milestone = next((m for m in parts if m.id == milestone_id), None)
    if milestone is None:
        raise NotFound(f"Milestone #{milestone_id} not found in this booking")
    remaining = milestones.refundable(milestone, payment)
    if remaining <= 0:
        raise Conflict(
            f"Milestone #{milestone_id} is {milestone.status}: nothing of it can be refunded "
            "now (a released milestone is refunded once the payment is released)"
        )
    return remaining


async def finish_refund(
    runtime: Runtime, payment_id: int, refund_id: int, *, actor_id: int | None
) -> Payment:
    """The provider side of a refund (a void of a whole authorisation, or a refund of
    captured money), then its entry. Safe to run again after a timeout."""
    # Autocommit reads (no BEGIN and ROLLBACK round trips): nothing is decided on them
    # but whether the operation is still ours to finish, and the marker says that.
    async with runtime.read_sessions() as session:
        payment = await row_or_none(session, Payment, payment_id)
        row = await repository.refund(session, refund_id)
        assert payment is not None and row is not None
    if operation_of(payment) != operations.refund(refund_id):
        return payment  # finished already (by a retry, the resolver, another process)
    provider = runtime.providers.for_method(payment.payment_method)
    try:
        if payment.hold_kind == HoldKind.AUTHORIZED:
            await provider.cancel(
                ref=hold_ref(payment), idempotency_key=f"payment-{payment.id}-void"
            )
            provider_refund_id, fee_refunded = None, 0
        else:
            result = await provider.refund(
                ref=hold_ref(payment),
                amount=row.amount,
                currency=payment.currency,
                idempotency_key=f"payment-{payment.id}-refund-{row.id}",
            )
            provider_refund_id, fee_refunded = result.refund_id, result.fee_refunded
    except ProviderUnavailableError as exc:
        raise ProviderUnavailable(
            f"{provider.name} did not answer the refund; it will be resolved, retry shortly"
        ) from exc
    except ProviderError as exc:
        async with transaction(runtime.sessions) as session:
            payment, _ = await locked(session, payment_id)
            row = await repository.refund(session, refund_id)
            assert row is not None
            row.status = RefundStatus.FAILED
            await abandon_operation(
                session,
                payment,
                "refund_failed",
                f"Refund #{row.id} of payment #{payment.id} failed: {exc.message}",
            )
        raise Conflict(f"{provider.name} refused the refund: {exc.message}") from exc
    async with transaction(runtime.sessions) as session:
        payment, booking = await locked(session, payment_id)
        row = await repository.refund(session, refund_id)
        assert row is not None
        if operation_of(payment) != operations.refund(refund_id):
            return payment  # applied by another process already
        row.provider_refund_id = provider_refund_id
        row.provider_fee_refunded = fee_refunded
        await apply_refund(session, payment, booking, row, actor_id=actor_id)
        after_release = not row.before_release
    if after_release:
        # The worker may have been paid out already: take it back from their Stripe
        # payouts where the connected account can cover it (else the debt stays on the
        # books as a negative balance).
        await cover_refund(runtime, refund_id)
    return payment
