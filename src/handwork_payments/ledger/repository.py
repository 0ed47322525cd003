"""SQL of the ledger."""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.models import AccountKind, JournalEntry, LedgerAccount, Posting


async def get_or_create_account(
    session: AsyncSession, code: str, kind: AccountKind, currency: str, owner_id: int | None
) -> LedgerAccount:
    found = (
        await session.execute(select(LedgerAccount).where(LedgerAccount.code == code))
    ).scalar_one_or_none()
    if found is not None:
        return found  # the usual case: one query
    # ON CONFLICT keeps two transactions creating the same account from failing each other.
    await session.execute(
        insert(LedgerAccount)
        .values(code=code, kind=kind, currency=currency, owner_id=owner_id, balance=0)
        .on_conflict_do_nothing(index_elements=["code"])
    )
    account = (
        await session.execute(select(LedgerAccount).where(LedgerAccount.code == code))
    ).scalar_one()
    return account


async def lock_account(session: AsyncSession, account_id: int) -> LedgerAccount:
    return (
        await session.execute(
            select(LedgerAccount)
            .where(LedgerAccount.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def balance_of(session: AsyncSession, code: str) -> int:
    value = (
        await session.execute(select(LedgerAccount.balance).where(LedgerAccount.code == code))
    ).scalar_one_or_none()
    return value or 0


async def write_entry(
    session: AsyncSession,
    entry: JournalEntry,
    postings: list[tuple[int, int, str]],
) -> None:
    """Insert the entry and its postings and move the balances, account rows in id order
    so that concurrent entries touching the same accounts cannot deadlock."""
    session.add(entry)
    await session.flush()
    session.add_all(
        Posting(entry_id=entry.id, account_id=account_id, amount=amount, currency=currency)
        for account_id, amount, currency in postings
    )
    for account_id, amount, _ in sorted(postings):
        await session.execute(
            update(LedgerAccount)
            .where(LedgerAccount.id == account_id)
            .values(balance=LedgerAccount.balance + amount)
        )
    await session.flush()


async def entry_exists(session: AsyncSession, key: str) -> bool:
    found = await session.execute(text("SELECT 1 FROM journal_entries WHERE key = :k"), {"k": key})
    return found.first() is not None
