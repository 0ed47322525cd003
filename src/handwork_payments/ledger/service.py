"""Posting balanced journal entries. Every money movement goes through `post`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.kit.rows import lock_row
from handwork_payments.ledger import repository
from handwork_payments.models import (
    AccountKind,
    JournalEntry,
    LedgerAccount,
    TransactionType,
)


def clearing_code(provider: str, currency: str) -> str:
    return f"{AccountKind.PROVIDER_CLEARING}:{provider}:{currency}"


def escrow_code(payment_id: int, currency: str) -> str:
    return f"{AccountKind.ESCROW}:{payment_id}:{currency}"


def available_code(worker_id: int, currency: str) -> str:
    return f"{AccountKind.WORKER_AVAILABLE}:{worker_id}:{currency}"


def reserved_code(worker_id: int, currency: str) -> str:
    return f"{AccountKind.WORKER_PAYOUT_RESERVED}:{worker_id}:{currency}"


def fee_revenue_code(currency: str) -> str:
    return f"{AccountKind.PLATFORM_FEE_REVENUE}:{currency}"


def provider_fees_code(provider: str, currency: str) -> str:
    return f"{AccountKind.PROVIDER_FEES}:{provider}:{currency}"


def losses_code(currency: str) -> str:
    return f"{AccountKind.PLATFORM_LOSSES}:{currency}"


async def clearing(session: AsyncSession, provider: str, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session, clearing_code(provider, currency), AccountKind.PROVIDER_CLEARING, currency, None
    )


async def escrow(session: AsyncSession, payment_id: int, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session, escrow_code(payment_id, currency), AccountKind.ESCROW, currency, payment_id
    )


async def available(session: AsyncSession, worker_id: int, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session,
        available_code(worker_id, currency),
        AccountKind.WORKER_AVAILABLE,
        currency,
        worker_id,
    )


async def reserved(session: AsyncSession, worker_id: int, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session,
        reserved_code(worker_id, currency),
        AccountKind.WORKER_PAYOUT_RESERVED,
        currency,
        worker_id,
    )


async def fee_revenue(session: AsyncSession, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session, fee_revenue_code(currency), AccountKind.PLATFORM_FEE_REVENUE, currency, None
    )


async def provider_fees(session: AsyncSession, provider: str, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session, provider_fees_code(provider, currency), AccountKind.PROVIDER_FEES, currency, None
    )


async def losses(session: AsyncSession, currency: str) -> LedgerAccount:
    return await repository.get_or_create_account(
        session, losses_code(currency), AccountKind.PLATFORM_LOSSES, currency, None
    )


async def locked_existing_available(
    session: AsyncSession, worker_id: int, currency: str
) -> LedgerAccount | None:
    """locked_available, or None when the worker never had a balance in `currency` (the
    account is not opened for asking)."""
    return await repository.lock_existing(session, available_code(worker_id, currency))


async def locked_available(session: AsyncSession, worker_id: int, currency: str) -> LedgerAccount:
    """The worker's available account under a row lock: hold it while checking a balance
    that is about to be spent, so two payouts cannot both see the same money."""
    account = await available(session, worker_id, currency)
    return await lock_row(session, LedgerAccount, account.id)


@dataclass(frozen=True)
class History:
    """A row of a user's transaction history written with the entry."""

    user_id: int | None
    transaction_type: TransactionType
    amount: int
    description: str


async def post(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    description: str,
    lines: Sequence[tuple[LedgerAccount, int]],
    history: Sequence[History] = (),
    payment_id: int | None = None,
    payout_id: int | None = None,
) -> JournalEntry:
    """Write one balanced entry. Zero lines are dropped (a 0% fee); what remains must sum
    to zero per currency here and again in the database's deferred trigger."""
    postings = [(account.id, amount, account.currency) for account, amount in lines if amount]
    sums: dict[str, int] = defaultdict(int)
    for _, amount, currency in postings:
        sums[currency] += amount
    assert all(v == 0 for v in sums.values()), f"unbalanced entry {key}: {dict(sums)}"
    assert len(postings) >= 2, f"entry {key} moves nothing"
    entry_id, created_at = await repository.write_entry(
        session,
        key=key,
        kind=kind,
        description=description,
        payment_id=payment_id,
        payout_id=payout_id,
        postings=postings,
        codes={account.id: account.code for account, amount in lines if amount},
        platform=frozenset(
            account.id for account, _ in lines if account.kind in repository.PLATFORM_KINDS
        ),
        history=[(h.user_id, str(h.transaction_type), h.amount, h.description) for h in history],
    )
    # Written already (one statement): the returned entry is not attached to the session.
    return JournalEntry(
        id=entry_id,
        key=key,
        kind=kind,
        description=description,
        payment_id=payment_id,
        payout_id=payout_id,
        created_at=created_at,
    )
