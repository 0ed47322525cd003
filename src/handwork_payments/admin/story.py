"""A payment's full story for admins, in one answer: the payment with its provider ids,
its booking, refunds and disputes, every journal entry with its postings, the audit trail
of the payment and its disputes, and the events sent to the marketplace about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, and_, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.disputes.schemas import DisputeOut
from handwork_payments.http.deps import AdminUser, RuntimeDep, SessionDep
from handwork_payments.http.responses import ADMIN_ONE
from handwork_payments.kit.money import format_amount
from handwork_payments.kit.schemas import PathId
from handwork_payments.models import (
    AuditLog,
    JournalEntry,
    LedgerAccount,
    MarketplaceEvent,
    Payment,
    PaymentDispute,
    PaymentRefund,
    Posting,
)
from handwork_payments.payments.endpoints import with_booking
from handwork_payments.payments.metadata import readable_metadata
from handwork_payments.payments.schemas import PaymentOut

router = APIRouter(prefix="/admin", tags=["administration"])

# Enough for any real payment's story; a runaway one is cut, not slow.
MAX_ROWS = 500


# Read from the payment's own columns, two of them under shorter names.
class ProviderIds(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    payment_method: str
    hold_kind: str | None
    stripe_payment_id: str | None
    paypal_payment_id: str | None
    authorization_id: str | None = Field(validation_alias="provider_authorization_id")
    capture_id: str | None = Field(validation_alias="provider_capture_id")
    payer_id: str | None


class StoryBooking(BaseModel):
    id: int
    title: str
    status: str
    client_id: int
    worker_id: int


class StoryRefund(BaseModel):
    id: int
    amount: str
    fee_part: str
    status: str
    reason: str
    dispute_id: int | None
    provider_refund_id: str | None
    created_at: datetime
    completed_at: datetime | None


class StoryPosting(BaseModel):
    account: str
    amount: str


class StoryEntry(BaseModel):
    id: int
    key: str
    kind: str
    description: str
    created_at: datetime
    postings: list[StoryPosting]


class StoryAudit(BaseModel):
    id: int
    action: str
    actor_id: int | None
    actor_kind: str
    object_type: str
    object_id: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime


class StoryEvent(BaseModel):
    id: int
    public_id: str
    type: str
    status: str
    attempts: int
    created_at: datetime


class PaymentStory(BaseModel):
    payment: PaymentOut
    provider: ProviderIds
    booking: StoryBooking
    refunds: list[StoryRefund]
    disputes: list[DisputeOut]
    journal: list[StoryEntry]
    audit: list[StoryAudit]
    events: list[StoryEvent]


async def _journal(session: AsyncSession, payment: Payment) -> list[StoryEntry]:
    entries = (
        await session.execute(
            select(JournalEntry)
            .where(JournalEntry.payment_id == payment.id)
            .order_by(JournalEntry.id)
            .limit(MAX_ROWS)
        )
    ).scalars()
    found = {e.id: StoryEntry(**_entry_fields(e), postings=[]) for e in entries}
    rows = await session.execute(
        select(Posting.entry_id, LedgerAccount.code, Posting.amount, Posting.currency)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(Posting.entry_id.in_(list(found)))
        .order_by(Posting.id)
    )
    for entry_id, code, amount, currency in rows:
        found[entry_id].postings.append(
            StoryPosting(account=code, amount=format_amount(amount, currency))
        )
    return list(found.values())


def _entry_fields(entry: JournalEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "key": entry.key,
        "kind": entry.kind,
        "description": entry.description,
        "created_at": entry.created_at,
    }


async def _audit(
    session: AsyncSession, payment_id: int, dispute_ids: list[int]
) -> list[StoryAudit]:
    about = or_(
        and_(AuditLog.object_type == "payment", AuditLog.object_id == payment_id),
        and_(AuditLog.object_type == "dispute", AuditLog.object_id.in_(dispute_ids)),
    )
    rows = await session.execute(
        select(AuditLog).where(about).order_by(AuditLog.id).limit(MAX_ROWS)
    )
    return [StoryAudit.model_validate(a, from_attributes=True) for a in rows.scalars()]


def events_query(payment_id: int) -> Select[MarketplaceEvent]:
    """The payment's events, by the partial index `ix_marketplace_events_payment_id`
    (migration 0018): its expression and predicate are spelled here exactly, with the key
    a literal, since a bound `->> $1` would not match the indexed `->> 'id'`."""
    return (
        select(MarketplaceEvent)
        .where(
            MarketplaceEvent.type.like(literal_column("'payment.%'")),
            MarketplaceEvent.data.op("->>")(literal_column("'id'")) == str(payment_id),
        )
        .order_by(MarketplaceEvent.id)
        .limit(MAX_ROWS)
    )


async def _events(session: AsyncSession, payment_id: int) -> list[StoryEvent]:
    rows = await session.execute(events_query(payment_id))
    return [StoryEvent.model_validate(e, from_attributes=True) for e in rows.scalars()]


def _refund(refund: PaymentRefund, currency: str) -> StoryRefund:
    return StoryRefund(
        id=refund.id,
        amount=format_amount(refund.amount, currency),
        fee_part=format_amount(refund.fee_part, currency),
        status=refund.status,
        reason=refund.reason,
        dispute_id=refund.dispute_id,
        provider_refund_id=refund.provider_refund_id,
        created_at=refund.created_at,
        completed_at=refund.completed_at,
    )


@router.get("/payments/{payment_id:int}/story", response_model=PaymentStory, responses=ADMIN_ONE)
async def payment_story(
    payment_id: PathId, admin: AdminUser, session: SessionDep, runtime: RuntimeDep
) -> PaymentStory:
    payment, booking = await with_booking(session, payment_id)
    refunds = await session.execute(
        select(PaymentRefund).where(PaymentRefund.payment_id == payment_id).order_by("id")
    )
    disputes = list(
        (
            await session.execute(
                select(PaymentDispute)
                .where(PaymentDispute.payment_id == payment_id)
                .order_by(PaymentDispute.id)
            )
        ).scalars()
    )
    return PaymentStory(
        payment=PaymentOut.of(payment, metadata=await readable_metadata(runtime, payment, admin)),
        provider=ProviderIds.model_validate(payment),
        booking=StoryBooking.model_validate(booking, from_attributes=True),
        refunds=[_refund(r, payment.currency) for r in refunds.scalars()],
        disputes=[DisputeOut.model_validate(d) for d in disputes],
        journal=await _journal(session, payment),
        audit=await _audit(session, payment_id, [d.id for d in disputes]),
        events=await _events(session, payment_id),
    )
