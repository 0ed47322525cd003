"""GET /auth/me/export: everything we hold about the caller, as one JSON document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.accounts.schemas import AccountOut, AuditEntryOut
from handwork_payments.analytics.schemas import TransactionOut
from handwork_payments.bookings.schemas import BookingOut
from handwork_payments.disputes.schemas import DisputeOut
from handwork_payments.kit.clock import now
from handwork_payments.models import (
    AuditLog,
    Booking,
    Payment,
    PaymentDispute,
    PaymentTransaction,
    User,
    WorkerPayout,
)
from handwork_payments.payments import milestones
from handwork_payments.payments.schemas import PaymentOut
from handwork_payments.payouts.schemas import PayoutMethodsOut, PayoutOut


class ExportOut(BaseModel):
    exported_at: datetime
    profile: AccountOut
    payout_methods: PayoutMethodsOut
    bookings: list[BookingOut]
    # payment_metadata is shown to admins only, as everywhere: null here.
    payments: list[PaymentOut]
    disputes: list[DisputeOut]
    payouts: list[PayoutOut]
    transactions: list[TransactionOut]
    audit_entries: list[AuditEntryOut]


async def export(session: AsyncSession, user: User) -> ExportOut:
    bookings = await _all(
        session, Booking, or_(Booking.client_id == user.id, Booking.worker_id == user.id)
    )
    booking_ids = [b.id for b in bookings]
    payments = await _all(session, Payment, Payment.booking_id.in_(booking_ids))
    payment_ids = [p.id for p in payments]
    parts = await milestones.of_bookings(session, booking_ids)
    return ExportOut(
        exported_at=now(),
        profile=AccountOut.model_validate(user),
        payout_methods=PayoutMethodsOut(
            stripe_account_id=user.stripe_account_id,
            paypal_email=user.paypal_email,
            stripe_payouts_enabled=user.stripe_payouts_enabled,
        ),
        bookings=[BookingOut.of(b, parts[b.id]) for b in bookings],
        payments=[PaymentOut.of(p) for p in payments],
        disputes=[
            DisputeOut.model_validate(d)
            for d in await _all(session, PaymentDispute, PaymentDispute.payment_id.in_(payment_ids))
        ],
        payouts=[
            PayoutOut.of(p)
            for p in await _all(session, WorkerPayout, WorkerPayout.worker_id == user.id)
        ],
        transactions=[
            TransactionOut.of(t)
            for t in await _all(session, PaymentTransaction, PaymentTransaction.user_id == user.id)
        ],
        audit_entries=await _audit(session, user.id),
    )


async def _all(session: AsyncSession, model: Any, where: ColumnElement[bool]) -> list[Any]:
    """The rows of `model` that match, in the order they were made."""
    return list((await session.scalars(select(model).where(where).order_by(model.id))).all())


async def _audit(session: AsyncSession, user_id: int) -> list[AuditEntryOut]:
    """Entries about the user or by the user; personal details only where they are the
    user's own (an admin's entries about others keep those others' details out)."""
    rows = await _all(
        session,
        AuditLog,
        or_(
            AuditLog.subject_id == user_id,
            AuditLog.actor_id == user_id,
            (AuditLog.object_type == "user") & (AuditLog.object_id == user_id),
        ),
    )
    entries = []
    for row in rows:
        entry = AuditEntryOut.model_validate(row)
        if row.subject_id != user_id:
            entry.personal = None
        entries.append(entry)
    return entries
