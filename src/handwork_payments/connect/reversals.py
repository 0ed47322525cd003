"""Taking money back from a worker already paid out through Stripe Connect.

A refund of a released payment takes the worker's share back from their available
balance (payments.ledger.post_refund). When the worker has already been paid out, that
balance goes negative: the worker owes the platform. If the payout went to their Stripe
connected account, the platform can reverse (part of) the transfer, which brings the money
back to the platform's Stripe balance; each reversal's entry (provider clearing -> worker
available) pays off that much of the debt. When Stripe refuses (the connected account's
balance cannot cover it, e.g. the worker's bank payout already left) the reversal is
recorded as failed, an alert is raised and the negative balance stays on the books, to be
paid off by later earnings: the difference is never lost silently.

Which transfers: the worker's most recent completed Stripe payouts first (the money most
likely still on the connected account), each reversed at most up to what is left of it.

The provider-call pattern of the payments module applies: the reversals are planned as
rows in a transaction under the worker's balance lock (so two refunds never plan the
same debt twice), Stripe is called outside any transaction with the idempotency key
`payout-{payout_id}-reversal-{reversal_id}`, and the outcome is applied under the payout's
lock. A call that never answers leaves its row pending; `resume_pending` (or the next
refund of that worker) makes the same call with the same key.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.kit import money
from handwork_payments.kit.clock import now
from handwork_payments.kit.rows import lock_row
from handwork_payments.ledger import service as ledger
from handwork_payments.ledger.service import History
from handwork_payments.models import (
    Booking,
    Payment,
    PaymentMethod,
    PaymentRefund,
    PayoutReversal,
    PayoutStatus,
    RefundStatus,
    ReversalStatus,
    TransactionType,
    WorkerPayout,
)
from handwork_payments.payouts import repository as payouts
from handwork_payments.payouts.audit import audit_payout
from handwork_payments.providers.base import (
    ConnectProvider,
    ProviderError,
    ProviderUnavailableError,
)
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

# A limit on everything: how many transfers one refund may draw on, and how many pending
# reversals one sweep resumes.
MAX_PAYOUTS_PER_REFUND = 10
RESUME_BATCH_SIZE = 50


def connect_provider(runtime: Runtime) -> ConnectProvider:
    """The Stripe provider as a ConnectProvider (the real adapter and the simulator both
    are one)."""
    provider = runtime.providers.stripe
    assert all(
        hasattr(provider, name)
        for name in ("create_connected_account", "create_account_link", "reverse_transfer")
    ), f"the {provider.name} provider does not implement Stripe Connect"
    return cast(ConnectProvider, provider)


def idempotency_key(reversal: PayoutReversal) -> str:
    return f"payout-{reversal.payout_id}-reversal-{reversal.id}"


async def reversible_payouts(
    session: AsyncSession, worker_id: int, currency: str, *, limit: int = MAX_PAYOUTS_PER_REFUND
) -> list[tuple[int, int]]:
    """(payout id, amount still reversible) of the worker's completed Stripe payouts, the
    most recent first. Failed reversals do not use a transfer up: Stripe refused them."""
    used = func.coalesce(func.sum(PayoutReversal.amount), 0)
    rows = (
        await session.execute(
            select(WorkerPayout.id, WorkerPayout.amount - used)
            .outerjoin(
                PayoutReversal,
                and_(
                    PayoutReversal.payout_id == WorkerPayout.id,
                    PayoutReversal.status != ReversalStatus.FAILED,
                ),
            )
            .where(
                WorkerPayout.worker_id == worker_id,
                WorkerPayout.currency == currency,
                WorkerPayout.payment_method == PaymentMethod.STRIPE,
                WorkerPayout.status == PayoutStatus.COMPLETED,
                WorkerPayout.stripe_transfer_id.is_not(None),
            )
            .group_by(WorkerPayout.id)
            .having(WorkerPayout.amount - used > 0)
            .order_by(WorkerPayout.completed_at.desc().nulls_last(), WorkerPayout.id.desc())
            .limit(limit)
        )
    ).all()
    return [(int(payout_id), int(left)) for payout_id, left in rows]


async def _pending_total(session: AsyncSession, worker_id: int, currency: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(PayoutReversal.amount), 0))
        .join(WorkerPayout, WorkerPayout.id == PayoutReversal.payout_id)
        .where(
            WorkerPayout.worker_id == worker_id,
            PayoutReversal.currency == currency,
            PayoutReversal.status == ReversalStatus.PENDING,
        )
    )
    return int(total or 0)


async def _plan(runtime: Runtime, refund_id: int) -> tuple[list[int], int | None]:
    """The pending reversals of refund `refund_id` (planned now if it has none yet), and
    its worker. A refund plans once: its rows, whatever became of them, are its plan."""
    async with transaction(runtime.sessions) as session:
        refund = await session.get(PaymentRefund, refund_id)
        if refund is None or refund.status != RefundStatus.SUCCEEDED or refund.before_release:
            return [], None
        payment = await session.get(Payment, refund.payment_id)
        assert payment is not None
        booking = await session.get(Booking, payment.booking_id)
        assert booking is not None
        worker_id, currency = booking.worker_id, payment.currency
        # The balance row's lock: payouts requests, refunds' plans and reversals' entries
        # of this worker queue up behind it, so each plan sees the debt the others left.
        available = await ledger.locked_available(session, worker_id, currency)
        planned = (
            await session.scalars(
                select(PayoutReversal)
                .where(PayoutReversal.refund_id == refund_id)
                .order_by(PayoutReversal.id)
            )
        ).all()
        if planned:
            return [r.id for r in planned if r.status == ReversalStatus.PENDING], worker_id
        # What the worker owes once the reversals already under way have come back, and no
        # more than this refund took from them.
        owed = -(available.balance + await _pending_total(session, worker_id, currency))
        to_cover = min(refund.amount - refund.fee_part, owed)
        if to_cover <= 0:
            return [], worker_id
        pending: list[int] = []
        for payout_id, left in await reversible_payouts(session, worker_id, currency):
            amount = min(left, to_cover)
            reversal = PayoutReversal(
                payout_id=payout_id,
                refund_id=refund_id,
                amount=amount,
                currency=currency,
                status=ReversalStatus.PENDING,
            )
            session.add(reversal)
            await session.flush()
            pending.append(reversal.id)
            await audit_payout(
                session,
                payout_id,
                "payout_reversal.planned",
                after={"reversal_id": reversal.id, "refund_id": refund_id, "amount": amount},
            )
            to_cover -= amount
            if to_cover == 0:
                break
        if to_cover > 0:
            log.info(
                "refund %s: worker %s owes %s %s that no Stripe payout can cover",
                refund_id,
                worker_id,
                money.format_amount(to_cover, currency),
                currency,
            )
        return pending, worker_id


async def cover_refund(runtime: Runtime, refund_id: int) -> list[PayoutReversal]:
    """Reverse Stripe payouts to cover what refund `refund_id` left its worker owing.
    Idempotent, and never raises for Stripe's answer: a refusal is recorded (failed row,
    alert, the negative balance stays), no answer leaves the row pending for a retry."""
    pending, worker_id = await _plan(runtime, refund_id)
    if worker_id is not None:
        # Reversals of this worker a lost answer left pending are resumed first.
        pending = sorted(set(pending) | set(await _pending_of_worker(runtime, worker_id)))
    done: list[PayoutReversal] = []
    for reversal_id in pending:
        reversal = await reverse(runtime, reversal_id)
        if reversal is not None:
            done.append(reversal)
    return done


async def _pending_of_worker(runtime: Runtime, worker_id: int) -> list[int]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(PayoutReversal.id)
            .join(WorkerPayout, WorkerPayout.id == PayoutReversal.payout_id)
            .where(
                WorkerPayout.worker_id == worker_id,
                PayoutReversal.status == ReversalStatus.PENDING,
            )
            .order_by(PayoutReversal.id)
            .limit(RESUME_BATCH_SIZE)
        )
        return list(rows)


async def resume_pending(
    runtime: Runtime, *, older_than_seconds: int = 0, before: datetime | None = None
) -> int:
    """Make again (same key) the reversals whose call never answered, planned before
    `before` (default: `older_than_seconds` ago); run by the payments resolver. Returns
    how many were tried."""
    cutoff = before or now() - timedelta(seconds=older_than_seconds)
    async with runtime.sessions() as session:
        ids = list(
            await session.scalars(
                select(PayoutReversal.id)
                .where(
                    PayoutReversal.status == ReversalStatus.PENDING,
                    PayoutReversal.created_at <= cutoff,
                )
                .order_by(PayoutReversal.id)
                .limit(RESUME_BATCH_SIZE)
            )
        )
    for reversal_id in ids:
        await reverse(runtime, reversal_id)
    return len(ids)


async def reverse(runtime: Runtime, reversal_id: int) -> PayoutReversal | None:
    """Steps 2 and 3 for one planned reversal: Stripe, then the outcome under locks."""
    async with runtime.sessions() as session:
        reversal = await session.get(PayoutReversal, reversal_id)
        payout = await session.get(WorkerPayout, reversal.payout_id) if reversal else None
    if reversal is None or payout is None or reversal.status != ReversalStatus.PENDING:
        return reversal
    assert payout.stripe_transfer_id, f"payout {payout.id} has no Stripe transfer"
    try:
        result = await connect_provider(runtime).reverse_transfer(
            transfer_id=payout.stripe_transfer_id,
            amount=reversal.amount,
            idempotency_key=idempotency_key(reversal),
        )
    except ProviderUnavailableError as exc:
        log.warning(
            "reversal %s of payout %s: no answer (%s); left pending", reversal_id, payout.id, exc
        )
        return reversal
    except ProviderError as exc:
        async with transaction(runtime.sessions) as session:
            locked_payout = await payouts.lock(session, payout.id)
            assert locked_payout is not None
            row = await lock_row(session, PayoutReversal, reversal_id)
            if row.status == ReversalStatus.PENDING:
                await _refused(session, locked_payout, row, exc.message)
            return row
    if result.amount != reversal.amount:
        log.error(
            "reversal %s of payout %s: Stripe reversed %s, we asked %s",
            reversal_id,
            payout.id,
            result.amount,
            reversal.amount,
        )
    async with transaction(runtime.sessions) as session:
        locked_payout = await payouts.lock(session, payout.id)
        assert locked_payout is not None
        row = await lock_row(session, PayoutReversal, reversal_id)
        if row.status == ReversalStatus.PENDING:
            await apply_reversal(
                session,
                locked_payout,
                row,
                provider_reversal_id=result.refund_id,
                actor_kind="system",
            )
        return row


async def apply_reversal(
    session: AsyncSession,
    payout: WorkerPayout,
    reversal: PayoutReversal,
    *,
    provider_reversal_id: str | None,
    actor_kind: str,
) -> None:
    """The money is back on the platform's Stripe balance: the worker's available balance
    gets it back (their debt shrinks). Under the payout's lock."""
    reversal.status = ReversalStatus.SUCCEEDED
    reversal.provider_reversal_id = provider_reversal_id
    reversal.completed_at = now()
    clearing = await ledger.clearing(session, PaymentMethod.STRIPE, reversal.currency)
    available = await ledger.available(session, payout.worker_id, reversal.currency)
    why = (
        f"to cover refund #{reversal.refund_id}"
        if reversal.refund_id is not None
        else "at Stripe, outside this service"
    )
    await ledger.post(
        session,
        key=f"payout-{payout.id}-reversal-{reversal.id}",
        kind="payout_reversal",
        description=f"Payout #{payout.id} reversed by {reversal.amount} {why}",
        lines=[(clearing, -reversal.amount), (available, reversal.amount)],
        history=[
            History(
                payout.worker_id,
                TransactionType.PAYOUT,
                reversal.amount,
                f"Payout #{payout.id} taken back from your Stripe account {why}",
            )
        ],
        payout_id=payout.id,
    )
    await audit_payout(
        session,
        payout.id,
        "payout_reversal.succeeded",
        actor_kind=actor_kind,
        after={
            "reversal_id": reversal.id,
            "refund_id": reversal.refund_id,
            "amount": reversal.amount,
            "provider_reversal_id": provider_reversal_id,
        },
    )


async def _refused(
    session: AsyncSession, payout: WorkerPayout, reversal: PayoutReversal, reason: str
) -> None:
    reversal.status = ReversalStatus.FAILED
    reversal.failure_reason = reason
    reversal.completed_at = now()
    owed = money.format_amount(reversal.amount, reversal.currency)
    await audit_payout(
        session,
        payout.id,
        "payout_reversal.failed",
        after={"reversal_id": reversal.id, "amount": reversal.amount, "reason": reason},
    )
    await alert(
        session,
        "payout_reversal_failed",
        f"Stripe refused to reverse {owed} {reversal.currency} of payout #{payout.id} "
        f"(refund #{reversal.refund_id}): {reason}. Worker #{payout.worker_id} keeps a "
        "negative balance that later earnings pay off.",
        "payout",
        payout.id,
    )


async def record_external_reversal(
    session: AsyncSession, payout: WorkerPayout, *, amount_reversed: int, actor_kind: str
) -> PayoutReversal | None:
    """`transfer.reversed` says the transfer of `payout` is reversed by `amount_reversed`
    in all (Stripe's running total). What exceeds the reversals we know of was made at
    Stripe by someone else: record it (the worker no longer has that money). Under the
    payout's lock; the caller makes sure none of ours is still in flight."""
    known = int(
        await session.scalar(
            select(func.coalesce(func.sum(PayoutReversal.amount), 0)).where(
                PayoutReversal.payout_id == payout.id,
                PayoutReversal.status == ReversalStatus.SUCCEEDED,
            )
        )
        or 0
    )
    extra = min(amount_reversed, payout.amount) - known
    if extra <= 0:
        return None  # ours, or news we have already applied
    reversal = PayoutReversal(
        payout_id=payout.id,
        refund_id=None,
        amount=extra,
        currency=payout.currency,
        status=ReversalStatus.PENDING,
    )
    session.add(reversal)
    await session.flush()
    await apply_reversal(
        session, payout, reversal, provider_reversal_id=None, actor_kind=actor_kind
    )
    await alert(
        session,
        "payout_reversed_externally",
        f"{money.format_amount(extra, payout.currency)} {payout.currency} of payout "
        f"#{payout.id} was reversed at Stripe outside this service; it is back on worker "
        f"#{payout.worker_id}'s available balance",
        "payout",
        payout.id,
    )
    return reversal


async def has_pending(session: AsyncSession, payout_id: int) -> bool:
    found = await session.scalar(
        select(PayoutReversal.id)
        .where(
            PayoutReversal.payout_id == payout_id,
            PayoutReversal.status == ReversalStatus.PENDING,
        )
        .limit(1)
    )
    return found is not None


async def reversals_of(session: AsyncSession, payout_id: int) -> list[PayoutReversal]:
    return list(
        await session.scalars(
            select(PayoutReversal)
            .where(PayoutReversal.payout_id == payout_id)
            .order_by(PayoutReversal.id)
        )
    )
