"""The providers' processing fees in the ledger: booked as each provider reports them.

A capture costs the platform the provider's fee: the provider keeps it out of what it holds
for us, so the entry `payment-{id}-provider-fee` takes it from the provider clearing
account (less held there) to `provider_fees:<provider>:<currency>`, an expense (negative
balance). The fee is stored on the payment (`provider_fee`), so `ledger verify` can compare
the accounts with what the providers reported. A refund books what the provider gave back
of its fee (`payment_refunds.provider_fee_refunded`, in the refund's own entry).

The rules the adapters read, and the simulators follow (their percentages and fixed parts
are settings, `SIMULATOR_*_FEES`):

- Stripe: the fee is the charge's balance transaction `fee` (`fee_details` itemises it),
  known at capture. "There are no fees to refund a charge, but the fees from the original
  charge are not returned" (stripe.com/docs/refunds), and "Stripe's processing fees from the
  original transaction won't be returned" (support.stripe.com/questions/understanding-fees-
  for-refunded-payments): a refund's balance transaction has fee 0. A dispute debits the
  dispute amount plus the network's dispute fee in one balance transaction
  (support.stripe.com/questions/dispute-fees-faq: "$15.00 (or local equivalent)"); the same
  page says Stripe refunds the dispute fee when the dispute is won, which the dispute's
  second (reinstating) balance transaction shows as a negative fee. We book the net
  dispute fee to platform losses, as reported.
- PayPal: the fee is the capture's `seller_receivable_breakdown.paypal_fee`. "If you refund
  a transaction ... there are no fees to make the refund, but the fees you originally paid
  as the seller are not returned" (PayPal User Agreement, US, as quoted at
  swappa.com/blog/who-pays-the-fees-when-issuing-a-paypal-refund); older and some regional
  rules returned the variable part pro rata but kept the fixed fee (paypal.com/ca/smarthelp/
  article/faq1672). A refund's `seller_payable_breakdown.paypal_fee` says what came back,
  and that is what is booked (0 under the current US rule).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.ledger import service as ledger
from handwork_payments.models import Payment


async def book_capture_fee(session: AsyncSession, payment: Payment, fee: int | None) -> None:
    """Record and book the provider's fee on the payment's capture, once: a payment whose
    fee is known already (our call applied it before the webhook came, or the other way
    round) books nothing more. A provider that did not say (None) books nothing yet."""
    if fee is None or payment.provider_fee is not None:
        return
    payment.provider_fee = fee
    if fee == 0:
        return
    clearing = await ledger.clearing(session, payment.payment_method, payment.currency)
    fees = await ledger.provider_fees(session, payment.payment_method, payment.currency)
    await ledger.post(
        session,
        key=f"payment-{payment.id}-provider-fee",
        kind="provider_fee",
        description=f"{payment.payment_method} fee on the capture of payment #{payment.id}",
        lines=[(clearing, fee), (fees, -fee)],
        payment_id=payment.id,
    )
