"""Compare what we hold, captured, refunded and paid out with what each provider reports
for the same object, and list every difference.

Our side is the payment and payout rows (the ledger's invariants tie them to the journal);
the provider's side is `get_hold` for a payment and a pure look-up for a payout (never a
call that could act: a PayPal payout whose batch id we never got is not asked about, since
PayPal only finds it by sending it again). Objects with a provider call in flight are left
to the resolver, and a payment still waiting for its payer is not a difference yet.

The simulators always agree unless a test makes them disagree; a real provider disagrees
when an event was lost, someone acted in its dashboard, or we have a bug.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.models import (
    Payment,
    PaymentRefund,
    PaymentStatus,
    PayoutStatus,
    RefundStatus,
    WorkerPayout,
)
from handwork_payments.payments.escrow import hold_ref
from handwork_payments.payouts.service import lookup
from handwork_payments.providers.base import (
    HoldState,
    ProviderError,
    ProviderHold,
    ProviderTransfer,
    ProviderUnavailableError,
    TransferState,
)
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# A payment still pending this long after creation is compared too (the payer had time).
PENDING_GRACE = timedelta(hours=1)
# Provider look-ups at once.
CONCURRENCY = 8
HELD_AT_PROVIDER = (HoldState.AUTHORIZED, HoldState.CAPTURED)


@dataclass(frozen=True)
class Difference:
    object_type: str  # "payment" | "payout"
    object_id: int
    field: str
    ours: Any
    theirs: Any
    note: str = ""

    def __str__(self) -> str:
        text = (
            f"{self.object_type} {self.object_id} {self.field}: "
            f"ours {self.ours!r}, provider {self.theirs!r}"
        )
        return f"{text} ({self.note})" if self.note else text


@dataclass
class Result:
    payments_checked: int = 0
    payouts_checked: int = 0
    differences: list[Difference] | None = None

    @property
    def clean(self) -> bool:
        return not self.differences


def compare_payment(
    payment: Payment, hold: ProviderHold, refunded_at_provider: int
) -> list[Difference]:
    """What the provider should report for a payment in its current state."""
    found: list[Difference] = []

    def differ(name: str, ours: Any, theirs: Any, note: str = "") -> None:
        found.append(Difference("payment", payment.id, name, ours, theirs, note))

    status = payment.status
    if status in (PaymentStatus.PENDING, PaymentStatus.FAILED):
        if hold.state in HELD_AT_PROVIDER:
            differ("state", status, hold.state, "money held at the provider, not with us")
        return found
    if status in (PaymentStatus.HELD, PaymentStatus.DISPUTED) and payment.hold_kind != "captured":
        if hold.state != HoldState.AUTHORIZED:
            differ("state", f"{status}, authorised", hold.state)
        elif hold.amount < payment.amount - payment.refunded_amount:
            differ(
                "authorised_amount",
                payment.amount - payment.refunded_amount,
                hold.amount,
                "less authorised than we hold",
            )
        return found
    if status == PaymentStatus.REFUNDED and payment.captured_amount == 0:
        if hold.state != HoldState.CANCELED:
            differ("state", "refunded, authorisation voided", hold.state)
        return found
    # Captured: held on the platform, released, or refunded after capture.
    if hold.state != HoldState.CAPTURED:
        differ("state", f"{status}, captured", hold.state)
        return found
    if hold.captured_amount != payment.captured_amount:
        differ("captured_amount", payment.captured_amount, hold.captured_amount)
    if hold.refunded_amount != refunded_at_provider:
        differ("refunded_amount", refunded_at_provider, hold.refunded_amount)
    return found


def compare_payout(payout: WorkerPayout, transfer: ProviderTransfer | None) -> list[Difference]:
    found: list[Difference] = []

    def differ(name: str, ours: Any, theirs: Any, note: str = "") -> None:
        found.append(Difference("payout", payout.id, name, ours, theirs, note))

    theirs = transfer.state if transfer is not None else None
    if payout.status == PayoutStatus.COMPLETED:
        if transfer is None:
            differ("state", payout.status, None, "no such payout at the provider")
        elif transfer.state != TransferState.SUCCEEDED:
            differ("state", payout.status, theirs, transfer.failure_reason or "")
        elif transfer.amount != payout.amount:
            differ("amount", payout.amount, transfer.amount)
    elif (
        payout.status in (PayoutStatus.FAILED, PayoutStatus.PENDING)
        and transfer is not None
        and transfer.state == TransferState.SUCCEEDED
    ):
        note = (
            "paid at the provider and the amount returned to the worker"
            if payout.status == PayoutStatus.FAILED
            else "paid at the provider before it was processed"
        )
        differ("state", payout.status, theirs, note)
    return found


async def reconcile(runtime: Runtime, *, now: datetime, since: datetime | None = None) -> Result:
    """Every difference between our payments and payouts and the providers' objects.
    `since` limits the settled objects looked at to those that changed after it; every
    payment still in escrow is looked at whatever its age."""
    result = Result(differences=[])
    assert result.differences is not None
    payments, refunded = await _payments(runtime, now=now, since=since)
    payouts = await _payouts(runtime, since=since)
    limiter = asyncio.Semaphore(CONCURRENCY)

    async def one(
        kind: str, object_id: int, check: Awaitable[list[Difference]]
    ) -> list[Difference]:
        async with limiter:
            try:
                return await check
            except ProviderUnavailableError as exc:
                return [Difference(kind, object_id, "provider", "-", "no answer", str(exc))]
            except ProviderError as exc:
                return [Difference(kind, object_id, "provider", "-", exc.code, exc.message)]

    async def check_payment(payment: Payment) -> list[Difference]:
        provider = runtime.providers.for_method(payment.payment_method)
        hold = await provider.get_hold(hold_ref(payment))
        return compare_payment(payment, hold, refunded.get(payment.id, 0))

    async def check_payout(payout: WorkerPayout) -> list[Difference]:
        provider = runtime.providers.for_method(payout.payment_method)
        try:
            transfer = await lookup(provider, payout)
        except LookupError:
            return []  # cannot be asked without acting (see the module's docstring)
        return compare_payout(payout, transfer)

    checks = [one("payment", p.id, check_payment(p)) for p in payments]
    checks += [one("payout", w.id, check_payout(w)) for w in payouts]
    for found in await asyncio.gather(*checks):
        result.differences.extend(found)
    result.payments_checked = len(payments)
    result.payouts_checked = len(payouts)
    return result


async def _payments(
    runtime: Runtime, *, now: datetime, since: datetime | None
) -> tuple[list[Payment], dict[int, int]]:
    changed = func.coalesce(
        Payment.refunded_at, Payment.released_at, Payment.held_at, Payment.created_at
    )
    query = (
        select(Payment)
        .where(
            Payment.provider_operation.is_(None),
            or_(Payment.stripe_payment_id.is_not(None), Payment.paypal_payment_id.is_not(None)),
            or_(
                Payment.status != PaymentStatus.PENDING,
                Payment.created_at <= now - PENDING_GRACE,
            ),
        )
        .order_by(Payment.id)
    )
    if since is not None:
        query = query.where(
            or_(Payment.status.in_((PaymentStatus.HELD, PaymentStatus.DISPUTED)), changed >= since)
        )
    async with runtime.sessions() as session:
        payments = list((await session.scalars(query)).all())
        # What was refunded at the provider: refunds of captured money (a void of a whole
        # authorisation has no provider refund id and refunds nothing there).
        rows = await session.execute(
            select(PaymentRefund.payment_id, func.sum(PaymentRefund.amount))
            .where(
                PaymentRefund.status == RefundStatus.SUCCEEDED,
                PaymentRefund.provider_refund_id.is_not(None),
            )
            .group_by(PaymentRefund.payment_id)
        )
        refunded = {payment_id: int(total) for payment_id, total in rows.all()}
    return payments, refunded


async def _payouts(runtime: Runtime, *, since: datetime | None) -> list[WorkerPayout]:
    query = (
        select(WorkerPayout)
        .where(WorkerPayout.status != PayoutStatus.PROCESSING)
        .order_by(WorkerPayout.id)
    )
    if since is not None:
        changed = func.coalesce(
            WorkerPayout.completed_at, WorkerPayout.processed_at, WorkerPayout.requested_at
        )
        query = query.where(changed >= since)
    async with runtime.sessions() as session:
        return list((await session.scalars(query)).all())


async def alert_differences(runtime: Runtime, result: Result) -> None:
    """One alert per difference (the daily job)."""
    await alert_each(
        runtime, result.differences or [], "reconciliation_difference", "Reconciliation"
    )


class OnObject(Protocol):
    """A difference found on one of our objects."""

    @property
    def object_type(self) -> str: ...
    @property
    def object_id(self) -> int: ...


async def alert_each(
    runtime: Runtime, differences: Sequence[OnObject], kind: str, title: str
) -> None:
    """One alert `kind` per difference, on the object it was found on, in one transaction."""
    if not differences:
        return
    async with transaction(runtime.sessions) as session:
        for difference in differences:
            await alert(
                session,
                kind,
                f"{title}: {difference}",
                difference.object_type,
                difference.object_id,
            )
