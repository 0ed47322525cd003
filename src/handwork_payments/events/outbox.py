"""Writing events to the outbox. Each function runs inside the caller's transaction, next
to the state change it reports, and never commits: the event exists exactly when the change
does. Its delivery job is enqueued in the same transaction.

`data` is the object as the API shows it to its parties (PaymentOut, DisputeOut,
PayoutOut; never the admins' decrypted metadata)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.disputes.schemas import DisputeOut
from handwork_payments.kit import jobs
from handwork_payments.kit.clock import now
from handwork_payments.kit.money import format_amount
from handwork_payments.ledger.repository import balance_of
from handwork_payments.ledger.service import available_code
from handwork_payments.models import (
    EventStatus,
    Milestone,
    Payment,
    PaymentDispute,
    PaymentRefund,
    WorkerPayout,
)
from handwork_payments.payments.schemas import PaymentOut
from handwork_payments.payouts.schemas import PayoutOut

DELIVER_TASK = "hp:deliver_event"

EVENT_TYPES = (
    "payment.held",
    "payment.failed",
    "payment.released",
    "payment.milestone_released",
    "payment.refunded",
    "dispute.opened",
    "dispute.resolved",
    "payout.completed",
    "payout.failed",
    "payout.rejected",
    "balance.available",
    "recurring.payment_failed",
)


# The event and its delivery job in one round trip.
_EMIT = text(
    "WITH event AS (INSERT INTO marketplace_events (public_id, type, data, status, attempts,"
    " created_at) VALUES (:public_id, :type, CAST(:data AS jsonb), :status, 0, :created_at)"
    " RETURNING id) SELECT "
    + jobs.defer_sql(lock="'event-' || event.id", args="jsonb_build_object('event_id', event.id)")
    + " FROM event"
)


async def emit(session: AsyncSession, event_type: str, data: dict[str, Any]) -> None:
    assert event_type in EVENT_TYPES, event_type
    # The changes the event reports are written first, as the event's own flush did when
    # it was an ORM row: whatever runs after sees them in the database.
    await session.flush()
    await session.execute(
        _EMIT,
        {
            "public_id": f"evt_{uuid.uuid4().hex}",
            "type": event_type,
            "data": json.dumps(data),
            "status": EventStatus.PENDING,
            "created_at": now(),
            "queue": jobs.DEFAULT_QUEUE,
            "task": DELIVER_TASK,
            "at": None,
        },
    )


async def _loaded(session: AsyncSession, row: object) -> None:
    """Columns the database filled at the last flush (created_at) are expired; reading one
    lazily is impossible in async code, so load them now: after a flush, so that no
    change made since is lost, and only those columns."""
    expired = inspect(row).expired_attributes
    if expired:
        await session.flush()
        await session.refresh(row, attribute_names=list(expired))


def _json(model: PaymentOut | DisputeOut | PayoutOut) -> dict[str, Any]:
    return model.model_dump(mode="json")


async def payment_event(
    session: AsyncSession, event_type: str, payment: Payment, *, refund: PaymentRefund | None = None
) -> None:
    await _loaded(session, payment)
    data = _json(PaymentOut.of(payment))
    if refund is not None:
        # A partial refund is a payment.refunded too: the refund says how much this time.
        data["refund"] = {
            "id": refund.id,
            "amount": format_amount(refund.amount, payment.currency),
            "reason": refund.reason,
        }
    await emit(session, event_type, data)


async def released(session: AsyncSession, payment: Payment, worker_id: int, share: int) -> None:
    """payment.released, then balance.available: the worker's share of this release (net
    of refunds made before it and of milestones released earlier) is now on their
    available balance."""
    await payment_event(session, "payment.released", payment)
    await balance_event(session, worker_id, payment.currency, share, payment_id=payment.id)


async def milestone_released(
    session: AsyncSession, payment: Payment, milestone: Milestone, worker_id: int, share: int
) -> None:
    """payment.milestone_released (the payment, still held, and the milestone), then
    balance.available with the worker's share of it."""
    await _loaded(session, payment)
    data = _json(PaymentOut.of(payment))
    data["milestone"] = {
        "id": milestone.id,
        "title": milestone.title,
        "amount": format_amount(milestone.amount, payment.currency),
    }
    await emit(session, "payment.milestone_released", data)
    await balance_event(session, worker_id, payment.currency, share, payment_id=payment.id)


async def balance_event(
    session: AsyncSession,
    worker_id: int,
    currency: str,
    amount: int,
    *,
    payment_id: int | None = None,
    payout_id: int | None = None,
) -> None:
    balance = await balance_of(session, available_code(worker_id, currency))
    await emit(
        session,
        "balance.available",
        {
            "worker_id": worker_id,
            "currency": currency,
            "amount": str(Decimal(format_amount(amount, currency))),
            "available_balance": str(Decimal(format_amount(balance, currency))),
            "payment_id": payment_id,
            "payout_id": payout_id,
        },
    )


async def dispute_event(session: AsyncSession, event_type: str, dispute: PaymentDispute) -> None:
    await _loaded(session, dispute)
    await emit(session, event_type, _json(DisputeOut.model_validate(dispute)))


async def payout_event(session: AsyncSession, event_type: str, payout: WorkerPayout) -> None:
    await _loaded(session, payout)
    await emit(session, event_type, _json(PayoutOut.of(payout)))


async def payout_failed(
    session: AsyncSession, payout: WorkerPayout, event_type: str = "payout.failed"
) -> None:
    """payout.failed (or payout.rejected: an admin refused it), then balance.available:
    the amount went back to the balance."""
    await payout_event(session, event_type, payout)
    await balance_event(
        session, payout.worker_id, payout.currency, payout.amount, payout_id=payout.id
    )
