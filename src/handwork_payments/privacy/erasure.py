"""Erasure: a person pseudonymised while every financial record stays.

Removed or replaced by a keyed hash (privacy/pseudonyms.py): the user's email (becomes
erased-{id}@invalid), name, PayPal email, Stripe account id and password hash; the personal
part of every audit entry about them (the chain covers it by digest only, so it stays
intact); their identifiers (and the IP addresses their audit entries kept) in payout destinations,
PayPal payer ids, stored webhook bodies, the simulators' state, chargeback evidence, alert
messages and failure texts; their Idempotency-Key cache.
Kept: bookings, payments, refunds, disputes, payouts, the ledger and the audit entries
themselves, with every amount, for FINANCIAL_RETENTION_YEARS.

Refused (409) while the person still has money moving: an open dispute, a payment
pending, held or disputed, a payout pending or processing, or a non-zero balance."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.accounts.service import locked_user
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import Conflict
from handwork_payments.models import (
    AccountKind,
    AuditLog,
    Booking,
    DisputeStatus,
    LedgerAccount,
    Payment,
    PaymentDispute,
    PaymentStatus,
    PayoutStatus,
    RiskSignal,
    User,
    UserStatus,
    WorkerPayout,
)
from handwork_payments.privacy.pseudonyms import Scrubber, key_of, pseudonym
from handwork_payments.runtime import Runtime

ERASED_PASSWORD_HASH = "!erased"  # no argon2 hash: nothing verifies against it
ERASED_NAME = "Erased user"


class ErasureRefused(Conflict):
    """The person still has money in motion: erasing now would orphan it."""


async def erase(runtime: Runtime, admin: User, user_id: int) -> User:
    key = key_of(runtime.settings, runtime.jwt_secret)
    async with transaction(runtime.sessions) as session:
        user = await locked_user(session, user_id)
        if user.status == UserStatus.ERASED:
            return user
        if user.id == admin.id:
            raise Conflict("An admin cannot erase itself")
        await _refuse_money_in_motion(session, user.id)
        scrubber = Scrubber(
            key,
            [
                user.email,
                user.paypal_email or "",
                user.stripe_account_id or "",
                *await _client_ips(session, user.id),
            ],
            [user.full_name],
        )
        await _scrub_records(session, user.id, key, scrubber)
        # The risk rules' digests of the person's addresses, emails and cards: nothing to
        # compare an erased account with any more.
        await session.execute(delete(RiskSignal).where(RiskSignal.user_id == user.id))
        user.email = f"erased-{user.id}@invalid"
        user.full_name = ERASED_NAME
        user.paypal_email = None
        user.stripe_account_id = None
        user.stripe_payouts_enabled = False
        user.password_hash = ERASED_PASSWORD_HASH
        user.status = UserStatus.ERASED
        kept_until = now() + timedelta(days=365 * runtime.settings.financial_retention_years)
        await record(
            session,
            actor_id=admin.id,
            action="user.erased",
            object_type="user",
            object_id=user.id,
            after={
                "status": user.status,
                "financial_records_kept_until": kept_until.date().isoformat(),
            },
        )
    return user


async def _refuse_money_in_motion(session: AsyncSession, user_id: int) -> None:
    parties = or_(Booking.client_id == user_id, Booking.worker_id == user_id)
    of_user = select(Payment.id).join(Booking, Booking.id == Payment.booking_id).where(parties)
    checks: list[tuple[Any, str]] = [
        (
            select(PaymentDispute.id).where(
                PaymentDispute.payment_id.in_(of_user),
                PaymentDispute.status.in_([DisputeStatus.OPEN, DisputeStatus.UNDER_REVIEW]),
            ),
            "The user has an open dispute",
        ),
        (
            of_user.where(
                Payment.status.in_(
                    [PaymentStatus.PENDING, PaymentStatus.HELD, PaymentStatus.DISPUTED]
                )
            ),
            "The user has money in escrow (a payment pending, held or disputed)",
        ),
        (
            select(WorkerPayout.id).where(
                WorkerPayout.worker_id == user_id,
                WorkerPayout.status.in_([PayoutStatus.PENDING, PayoutStatus.PROCESSING]),
            ),
            "The user has a payout pending or processing",
        ),
        (
            select(LedgerAccount.id).where(
                LedgerAccount.owner_id == user_id,
                LedgerAccount.kind.in_(
                    [AccountKind.WORKER_AVAILABLE, AccountKind.WORKER_PAYOUT_RESERVED]
                ),
                LedgerAccount.balance != 0,
            ),
            "The user has a non-zero available balance",
        ),
    ]
    for query, why in checks:
        if await session.scalar(query.limit(1)) is not None:
            raise ErasureRefused(f"{why}: settle it before erasing the user")


async def _client_ips(session: AsyncSession, user_id: int) -> set[str]:
    """The addresses the person's audit entries kept (logins, payments, releases): they
    are quoted in chargeback evidence too, and go with the entries' personal parts."""
    found: set[str] = set()
    for personal in await session.scalars(
        select(AuditLog.personal).where(
            AuditLog.subject_id == user_id, AuditLog.personal.is_not(None)
        )
    ):
        for part in (personal or {}).values():
            if isinstance(part, dict) and isinstance(part.get("client_ip"), str):
                found.add(part["client_ip"])
    return found


async def _scrub_records(
    session: AsyncSession, user_id: int, key: bytes, scrubber: Scrubber
) -> None:
    await session.execute(
        text(
            "UPDATE audit_log SET personal = NULL WHERE personal IS NOT NULL "
            "AND (subject_id = :id OR (subject_id IS NULL AND personal::text ILIKE ANY(:like)))"
        ),
        {"id": user_id, "like": _patterns(scrubber)},
    )
    for payout in (
        await session.scalars(select(WorkerPayout).where(WorkerPayout.worker_id == user_id))
    ).all():
        payout.destination = pseudonym(key, payout.destination)
    client_payments = select(Payment).join(Booking, Booking.id == Payment.booking_id)
    for payment in (
        await session.scalars(
            client_payments.where(Booking.client_id == user_id, Payment.payer_id.is_not(None))
        )
    ).all():
        payment.payer_id = pseudonym(key, payment.payer_id or "")
    await session.execute(
        text("DELETE FROM idempotency_records WHERE scope = :scope"), {"scope": f"user:{user_id}"}
    )
    await _scrub_columns(session, scrubber)


# (table, column, JSON?) that may quote a person's identifiers.
MENTIONS = (
    ("webhook_deliveries", "body", True),
    ("simulated_objects", "data", True),
    ("alerts", "message", False),
    ("webhook_deliveries", "last_error", False),
    ("payments", "failure_reason", False),
    ("payment_transactions", "description", False),
    ("worker_payouts", "failure_reason", False),
    ("dispute_evidence", "evidence", True),
    ("dispute_evidence", "admin_text", False),
)
# The jsonb columns among them (the others are text, JSON or not).
JSONB_COLUMNS = frozenset({("simulated_objects", "data"), ("dispute_evidence", "evidence")})


def _patterns(scrubber: Scrubber) -> list[str]:
    escaped = [
        v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        for v in [*scrubber.identifiers, *scrubber.names]
    ]
    return [f"%{v}%" for v in escaped]


async def _scrub_columns(session: AsyncSession, scrubber: Scrubber) -> None:
    """A scan of each column for the identifiers: erasure is rare and must miss nothing."""
    like = _patterns(scrubber)
    for table, column, is_json in MENTIONS:
        jsonb = (table, column) in JSONB_COLUMNS
        source = f"{column}::text" if jsonb else column
        rows = (
            await session.execute(
                text(f"SELECT id, {source} AS value FROM {table} WHERE {source} ILIKE ANY(:like)"),
                {"like": like},
            )
        ).all()
        scrub = scrubber.json_text if is_json else scrubber.text
        changed = [{"id": row.id, "value": scrub(row.value)} for row in rows]
        if changed:
            cast = "CAST(:value AS jsonb)" if jsonb else ":value"
            await session.execute(
                text(f"UPDATE {table} SET {column} = {cast} WHERE id = :id"), changed
            )
