"""What chargebacks cost the platform, booked to platform losses (`platform_losses:<cur>`)
against the provider clearing account (the provider took it from the platform's balance):

- the provider's dispute fee, as it reports it (Stripe: the fees of the dispute's balance
  transactions; returned, when Stripe returns it on a won dispute, as a negative change);
- the part of a lost chargeback that no refund-like entry could take back, because the
  payment had been refunded already (in full, or too much of it to cover the chargeback).

Called inside the transaction that applies the dispute event, under the payment's lock."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.ledger import service as ledger
from handwork_payments.models import Payment, PaymentDispute


async def _post_loss(
    session: AsyncSession, payment: Payment, *, key: str, kind: str, amount: int, what: str
) -> None:
    clearing = await ledger.clearing(session, payment.payment_method, payment.currency)
    losses = await ledger.losses(session, payment.currency)
    await ledger.post(
        session,
        key=key,
        kind=kind,
        description=what,
        lines=[(clearing, amount), (losses, -amount)],
        payment_id=payment.id,
    )


async def book_dispute_fee(
    session: AsyncSession, payment: Payment, dispute: PaymentDispute, fee: int | None
) -> None:
    """Bring the dispute's booked fee to what the provider reports now (None: not said).
    Each change is its own entry, keyed by the total it brings the fee to."""
    if fee is None or fee == dispute.provider_fee:
        return
    change = fee - dispute.provider_fee
    dispute.provider_fee = fee
    await _post_loss(
        session,
        payment,
        key=f"dispute-{dispute.id}-fee-{fee}",
        kind="dispute_fee",
        amount=change,
        what=f"{payment.payment_method} dispute fee of dispute #{dispute.id} "
        f"(payment #{payment.id}) now {fee}",
    )


async def book_unrecovered_chargeback(
    session: AsyncSession, payment: Payment, dispute: PaymentDispute, amount: int
) -> None:
    """A lost chargeback's `amount` that nothing in our books could cover."""
    await _post_loss(
        session,
        payment,
        key=f"dispute-{dispute.id}-loss",
        kind="chargeback_loss",
        amount=amount,
        what=f"Chargeback {dispute.provider_dispute_id} lost on payment #{payment.id}, "
        "already refunded: borne by the platform",
    )
