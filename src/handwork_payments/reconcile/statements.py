"""`reconcile --statements`: the providers' own statements (Stripe balance transactions,
PayPal Transaction Search), matched line by line against our books.

Our side is what our journal moved at each provider, read from the rows its entries are
tied to (`ledger verify` ties them: invariants 2, 3, 8 and 9): a capture with the fee the
provider reported (the payment's hold and `provider-fee` entries), each refund made at the
provider with the fee it gave back, each payout and transfer reversal, each dispute's fee
(platform losses). The provider's side is every line of its statement in the window.

- A provider line with no object of ours, or whose amount, fee or currency differ from
  ours, is a difference named by the line's id (a fee changed at the provider, a refund
  made in the provider's dashboard).
- An object of ours in the window with no line is a difference named by our object (a
  transfer the provider does not have).

Lines of kinds we do not keep (payouts to the platform's bank, other adjustments) are not
compared. A dispute's withdrawal and reinstatement are not in our journal until the network
decides (a lost chargeback is booked then, as a refund): only their fees are compared, per
dispute, with the fee booked to platform losses.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import (
    Payment,
    PaymentDispute,
    PaymentRefund,
    PayoutReversal,
    PayoutStatus,
    RefundStatus,
    ReversalStatus,
    WorkerPayout,
)
from handwork_payments.providers.base import StatementKind, StatementLine, StatementProvider
from handwork_payments.reconcile.service import alert_each
from handwork_payments.runtime import Runtime

# Our objects are looked up this far before the window (a hold captured by the hold guard
# is dated by its authorisation, up to 29 days earlier at PayPal).
LOOKBACK = timedelta(days=31)
K = StatementKind


@dataclass(frozen=True)
class Ours:
    """What our books say a statement line must show."""

    kind: StatementKind
    reference: str
    amount: int
    fee: int
    currency: str
    object_type: str
    object_id: int
    at: datetime | None


@dataclass(frozen=True)
class StatementDifference:
    provider: str
    subject: str  # "line txn_123" or "payment 12"
    problem: str
    object_type: str
    object_id: int

    def __str__(self) -> str:
        return f"{self.provider} {self.subject}: {self.problem}"


@dataclass
class StatementResult:
    lines_checked: int = 0
    objects_checked: int = 0
    differences: list[StatementDifference] | None = None


def _describe(kind: StatementKind, amount: int, fee: int, currency: str) -> str:
    return f"{kind} {amount} fee {fee} {currency}"


async def _ours(runtime: Runtime, provider: str, since: datetime) -> list[Ours]:
    found: list[Ours] = []
    async with runtime.sessions() as session:
        captures = await session.scalars(
            select(Payment).where(
                Payment.payment_method == provider,
                Payment.provider_fee.is_not(None),
                func.coalesce(Payment.released_at, Payment.held_at) >= since,
            )
        )
        for p in captures:
            found.append(
                Ours(K.CAPTURE, p.provider_capture_id or "", p.captured_amount,
                     p.provider_fee or 0, p.currency, "payment", p.id,
                     p.released_at or p.held_at)
            )  # fmt: skip
        refunds = await session.execute(
            select(PaymentRefund, Payment.currency)
            .join(Payment, Payment.id == PaymentRefund.payment_id)
            .where(
                Payment.payment_method == provider,
                PaymentRefund.status == RefundStatus.SUCCEEDED,
                PaymentRefund.provider_refund_id.is_not(None),
                PaymentRefund.completed_at >= since,
            )
        )
        for r, currency in refunds.all():
            found.append(
                Ours(K.REFUND, r.provider_refund_id or "", -r.amount, -r.provider_fee_refunded,
                     currency, "refund", r.id, r.completed_at)
            )  # fmt: skip
        found += await _payouts(session, provider, since)
        disputes = await session.execute(
            select(PaymentDispute, Payment.currency)
            .join(Payment, Payment.id == PaymentDispute.payment_id)
            .where(
                Payment.payment_method == provider,
                PaymentDispute.provider_dispute_id.is_not(None),
                PaymentDispute.created_at >= since,
            )
        )
        for d, currency in disputes.all():
            found.append(
                Ours(K.DISPUTE, d.provider_dispute_id or "", 0, d.provider_fee, currency,
                     "dispute", d.id, d.created_at)
            )  # fmt: skip
    return found


async def _payouts(session: AsyncSession, provider: str, since: datetime) -> list[Ours]:
    found: list[Ours] = []
    # A Stripe payout that failed after its transfer (returned: reversed in full) has both
    # lines, the transfer and its reversal; a failed PayPal item has none.
    payouts = await session.scalars(
        select(WorkerPayout).where(
            WorkerPayout.payment_method == provider,
            or_(
                WorkerPayout.status.in_((PayoutStatus.PROCESSING, PayoutStatus.COMPLETED)),
                WorkerPayout.stripe_transfer_id.is_not(None),
            ),
            func.coalesce(WorkerPayout.completed_at, WorkerPayout.processed_at) >= since,
        )
    )
    for w in payouts:
        reference = w.stripe_transfer_id or w.paypal_payout_id
        if reference:
            found.append(
                Ours(K.TRANSFER, reference, -w.amount, 0, w.currency, "payout", w.id,
                     w.completed_at or w.processed_at)
            )  # fmt: skip
            if w.status == PayoutStatus.FAILED:
                # Its reversal, known by the transfer it reverses (the line's parent).
                found.append(
                    Ours(K.TRANSFER_REVERSAL, f"of:{reference}", w.amount, 0, w.currency,
                         "payout", w.id, None)
                )  # fmt: skip
    reversals = await session.scalars(
        select(PayoutReversal).where(
            PayoutReversal.status == ReversalStatus.SUCCEEDED,
            PayoutReversal.provider_reversal_id.is_not(None),
            PayoutReversal.completed_at >= since,
        )
    )
    if provider == "stripe":
        for v in reversals:
            found.append(
                Ours(K.TRANSFER_REVERSAL, v.provider_reversal_id or "", v.amount, 0,
                     v.currency, "payout", v.payout_id, v.completed_at)
            )  # fmt: skip
    return found


def _compare(
    provider: str, lines: list[StatementLine], ours: list[Ours], since: datetime
) -> list[StatementDifference]:
    """Each line against our object of the same kind and reference; each of our objects
    in the window against its lines."""
    by_ref = {(o.kind, o.reference): o for o in ours}
    grouped: dict[tuple[StatementKind, str], list[StatementLine]] = defaultdict(list)
    for line in lines:
        if line.kind is not K.OTHER:
            grouped[(line.kind, line.reference)].append(line)
    found: list[StatementDifference] = []
    for key, group in grouped.items():
        mine = by_ref.get(key)
        if mine is None and key[0] is K.TRANSFER_REVERSAL and group[0].parent:
            mine = by_ref.get((key[0], f"of:{group[0].parent}"))
        if key[0] is K.DISPUTE:
            # Only the fees: the dispute's withdrawal is not in our journal (docstring).
            fee = sum(line.fee for line in group)
            if mine is None and fee and any(line.created >= since for line in group):
                found.append(StatementDifference(
                    provider, f"dispute {key[1]}", f"fee {fee} at the provider, no dispute "
                    "of ours", "dispute", 0))  # fmt: skip
            elif mine is not None and fee != mine.fee:
                found.append(StatementDifference(
                    provider, f"dispute {key[1]}", f"fee {fee} at the provider, {mine.fee} "
                    "booked", "dispute", mine.object_id))  # fmt: skip
            continue
        for line in group:
            theirs = _describe(line.kind, line.amount, line.fee, line.currency)
            if mine is None:
                if line.created >= since:
                    found.append(StatementDifference(
                        provider, f"line {line.line_id} ({line.reference})",
                        f"{theirs}, no entry of ours", "statement", 0))  # fmt: skip
                continue
            expected = _describe(mine.kind, mine.amount, mine.fee, mine.currency)
            if theirs != expected:
                found.append(StatementDifference(
                    provider, f"line {line.line_id} ({line.reference})",
                    f"{theirs}, ours {expected} ({mine.object_type} {mine.object_id})",
                    mine.object_type, mine.object_id))  # fmt: skip
    for mine in ours:
        if (mine.kind, mine.reference) in grouped or mine.at is None or mine.at < since:
            continue
        if mine.kind is K.DISPUTE and mine.fee == 0:
            continue  # no fee booked, none expected (an inquiry, or PayPal)
        found.append(StatementDifference(
            provider, f"{mine.object_type} {mine.object_id} ({mine.reference})",
            f"{_describe(mine.kind, mine.amount, mine.fee, mine.currency)} in our books, "
            "no line at the provider", mine.object_type, mine.object_id))  # fmt: skip
    return found


async def reconcile_statements(
    runtime: Runtime, *, now: datetime, since: datetime
) -> StatementResult:
    """Every provider that has a statement, over [since, now)."""
    result = StatementResult(differences=[])
    assert result.differences is not None
    for name in ("stripe", "paypal"):
        if not runtime.providers.offers(name):
            continue
        provider = runtime.providers.for_method(name)
        if not isinstance(provider, StatementProvider):
            continue
        lines = await provider.statement(since - LOOKBACK, now)
        ours = await _ours(runtime, name, since - LOOKBACK)
        result.lines_checked += sum(1 for line in lines if line.created >= since)
        result.objects_checked += sum(1 for o in ours if o.at is not None and o.at >= since)
        result.differences += _compare(name, lines, ours, since)
    return result


async def alert_statement_differences(runtime: Runtime, result: StatementResult) -> None:
    await alert_each(
        runtime, result.differences or [], "statement_difference", "Statement reconciliation"
    )
