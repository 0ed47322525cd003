"""PAYOUT_DELAY_HOURS (issue 14): a worker's share of a payment becomes withdrawable only
this long after its release, so that a refund or chargeback arriving in that time is
taken from money still on the platform.

No ledger account of its own: the worker's available account holds released money at
once, as it always did (`ledger verify` is unchanged), and the part still in the delay is
read from that account's postings: per payment, what its entries of the last
PAYOUT_DELAY_HOURS moved (the release, less a refund or clawback of it meanwhile), never
below zero, summed. That part is `available_soon`; the rest of the balance is withdrawable
(`available_balance`). Clawbacks of payments released earlier come out of the withdrawable
part; money back from a failed or rejected payout is withdrawable at once (it was before).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.clock import now
from handwork_payments.models import JournalEntry, LedgerAccount, Posting
from handwork_payments.settings import Settings


def since(settings: Settings) -> datetime | None:
    """Releases after this time are still in the delay; None when there is no delay."""
    hours = settings.payout_delay_hours
    return now() - timedelta(hours=hours) if hours else None


def in_delay(account_code: str, cutoff: datetime) -> ScalarSelect[int]:
    """What of the account's balance arrived from payments after `cutoff` (a subquery)."""
    per_payment = (
        select(func.sum(Posting.amount).label("net"))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(
            LedgerAccount.code == account_code,
            JournalEntry.payment_id.is_not(None),
            JournalEntry.created_at > cutoff,
        )
        .group_by(JournalEntry.payment_id)
        .subquery()
    )
    return select(func.coalesce(func.sum(func.greatest(per_payment.c.net, 0)), 0)).scalar_subquery()


def in_delay_by_currency(accounts: ColumnElement[Any], cutoff: ColumnElement[Any]) -> Select[Any]:
    """in_delay of each of the accounts whose code equals `accounts` (an `ANY(...)` of a
    bound array), as (currency, delayed) rows: one query for all of a worker's currencies
    (GET /payments/balances); `cutoff` a bound parameter too, the statement built once."""
    per_payment = (
        select(
            LedgerAccount.currency.label("currency"),
            func.greatest(func.sum(Posting.amount), 0).label("net"),
        )
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(
            LedgerAccount.code == accounts,
            JournalEntry.payment_id.is_not(None),
            JournalEntry.created_at > cutoff,
        )
        .group_by(LedgerAccount.currency, JournalEntry.payment_id)
        .subquery()
    )
    return select(per_payment.c.currency, func.sum(per_payment.c.net).label("delayed")).group_by(
        per_payment.c.currency
    )


def split(balance: int, delayed: int) -> tuple[int, int]:
    """(withdrawable, available_soon) of an available balance. What was taken back is
    taken from the delayed part first only down to the balance: a balance below zero
    (a debt) has nothing in the delay."""
    soon = min(delayed, max(balance, 0))
    return balance - soon, soon


async def withdrawable(session: AsyncSession, account: LedgerAccount, settings: Settings) -> int:
    """The part of a worker's available account (read under its lock) a payout may take."""
    cutoff = since(settings)
    if cutoff is None:
        return account.balance
    delayed = int(await session.scalar(select(in_delay(account.code, cutoff))) or 0)
    return split(account.balance, delayed)[0]
