"""The evidence we hold against a chargeback, assembled from our own records: the booking
(title, dates), its completion and release (when, by whom, from which IP), the payment's
audit trail and the payment's dispute history, and what the admin adds. Provider-neutral
(ChargebackEvidence): each adapter maps it onto its provider's fields and limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit import money
from handwork_payments.models import AuditLog, Booking, Payment, PaymentDispute, User
from handwork_payments.providers.base import ChargebackEvidence

# The audit rows of one payment, its booking and its disputes read at most: a payment has
# a dozen in practice; the providers take 20,000 characters of it anyway.
MAX_AUDIT_ROWS = 500
# What the activity log shows: the payer paying, the worker finishing, the release.
ACTIVITY = frozenset({"payment.created", "payment.held", "booking.completed", "payment.released"})


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _ip(row: AuditLog) -> str | None:
    """The actor's IP the row kept (personal data, gone once erased)."""
    personal: dict[str, Any] = row.personal or {}
    for part in ("after", "details"):
        found = (personal.get(part) or {}).get("client_ip")
        if found:
            return str(found)
    return None


class _Records:
    """What one chargeback's evidence is read from."""

    def __init__(
        self,
        dispute: PaymentDispute,
        payment: Payment,
        booking: Booking,
        users: dict[int, User],
        rows: list[AuditLog],
        disputes: list[PaymentDispute],
        login_ip: str | None,
    ) -> None:
        self.dispute, self.payment, self.booking = dispute, payment, booking
        self.users, self.rows, self.disputes, self.login_ip = users, rows, disputes, login_ip
        self.client = users[booking.client_id]
        self.worker = users[booking.worker_id]

    def who(self, row: AuditLog) -> str:
        if row.actor_id is None:
            return row.actor_kind  # system, stripe, paypal
        user = self.users.get(row.actor_id)
        if user is None:
            return f"user #{row.actor_id}"
        party = {self.client.id: "the client", self.worker.id: "the worker"}.get(user.id, "admin")
        return f"{party} {user.full_name} (user #{user.id})"

    def line(self, row: AuditLog) -> str:
        ip = _ip(row)
        where = f" from IP {ip}" if ip else ""
        return f"{_when(row.created_at)} {row.action} by {self.who(row)}{where}"

    def first(self, action: str) -> AuditLog | None:
        return next((r for r in self.rows if r.action == action), None)

    def client_ip_at(self, *actions: str) -> str | None:
        for row in self.rows:
            if row.action in actions and row.actor_id == self.client.id and _ip(row):
                return _ip(row)
        return None


async def _read(session: AsyncSession, dispute: PaymentDispute) -> _Records:
    payment = await session.get(Payment, dispute.payment_id)
    assert payment is not None
    booking = await session.get(Booking, payment.booking_id)
    assert booking is not None
    disputes = list(
        await session.scalars(
            select(PaymentDispute)
            .where(PaymentDispute.payment_id == payment.id)
            .order_by(PaymentDispute.id)
        )
    )
    rows = list(
        await session.scalars(
            select(AuditLog)
            .where(
                or_(
                    and_(AuditLog.object_type == "payment", AuditLog.object_id == payment.id),
                    and_(AuditLog.object_type == "booking", AuditLog.object_id == booking.id),
                    and_(
                        AuditLog.object_type == "dispute",
                        AuditLog.object_id.in_([d.id for d in disputes]),
                    ),
                )
            )
            .order_by(AuditLog.id)
            .limit(MAX_AUDIT_ROWS)
        )
    )
    ids = {booking.client_id, booking.worker_id} | {r.actor_id for r in rows if r.actor_id}
    ids |= {d.initiated_by for d in disputes if d.initiated_by}
    users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(ids)))}
    # Payments made before their rows kept an IP: the client's last login before paying.
    login = await session.scalar(
        select(AuditLog)
        .where(
            AuditLog.action == "auth.login",
            AuditLog.actor_id == booking.client_id,
            AuditLog.created_at <= payment.created_at,
        )
        .order_by(AuditLog.id.desc())
        .limit(1)
    )
    login_ip = _ip(login) if login is not None else None
    return _Records(dispute, payment, booking, users, rows, disputes, login_ip)


def _product(r: _Records) -> str:
    p, b = r.payment, r.booking
    amount = f"{money.format_amount(p.amount, p.currency)} {p.currency}"
    released = r.first("payment.released")
    parts = [
        f'"{b.title}": a service booked on {_when(b.created_at)} (booking #{b.id}) by '
        f"{r.client.full_name} from the worker {r.worker.full_name}, for {amount}.",
        f"Paid on {_when(p.held_at)} and held in escrow until the client's release.",
        f"Marked done by the worker on {_when(b.completed_at)}."
        if b.completed_at
        else "Not marked done by the worker.",
        f"Released to the worker on {_when(p.released_at)} by {r.who(released)}."
        if released is not None and p.released_at
        else "Not released to the worker.",
    ]
    return " ".join(parts)


def _dispute_history(r: _Records) -> list[str]:
    lines = []
    for d in r.disputes:
        opener = r.users[d.initiated_by].full_name if d.initiated_by in r.users else "the bank"
        line = f"Dispute #{d.id} opened {_when(d.created_at)} by {opener}: {d.reason}; {d.status}"
        if d.resolution_notes:
            line += f" ({d.resolution_notes})"
        lines.append(line)
    return lines


async def assemble(
    session: AsyncSession, dispute: PaymentDispute, admin_text: str | None
) -> ChargebackEvidence:
    r = await _read(session, dispute)
    activity = [r.line(row) for row in r.rows if row.action in ACTIVITY]
    sections = []
    if admin_text:
        sections.append(f"Statement of the platform:\n{admin_text}")
    sections.append("Audit trail of the payment:\n" + "\n".join(r.line(row) for row in r.rows))
    sections.append("Dispute history:\n" + "\n".join(_dispute_history(r)))
    return ChargebackEvidence(
        product_description=_product(r),
        customer_name=r.client.full_name,
        customer_email=r.client.email,
        customer_purchase_ip=r.client_ip_at("payment.created", "payment.held") or r.login_ip,
        service_date=r.booking.completed_at.date().isoformat() if r.booking.completed_at else None,
        access_activity_log="\n".join(activity),
        uncategorized_text="\n\n".join(sections),
    )
