"""The platform's own accounts (clearing, fee revenue, provider fees, losses) are moved at
COMMIT: an open money transaction does not hold their rows, so concurrent payments do not
queue on them; what a transaction defers is applied exactly once, or not at all."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text

from handwork_payments.db import transaction
from handwork_payments.ledger import service as ledger
from handwork_payments.models import LedgerAccount
from handwork_payments.runtime import Runtime


async def _clearing_and_escrow(runtime: Runtime, payment_id: int) -> tuple[LedgerAccount, ...]:
    async with transaction(runtime.sessions) as session:
        return (
            await ledger.clearing(session, "stripe", "USD"),
            await ledger.escrow(session, payment_id, "USD"),
        )


async def _balance(runtime: Runtime, code: str) -> int:
    async with runtime.sessions() as session:
        return (
            await session.execute(select(LedgerAccount.balance).where(LedgerAccount.code == code))
        ).scalar_one()


async def test_an_open_transaction_does_not_hold_the_clearing_row(runtime: Runtime) -> None:
    clearing, first = await _clearing_and_escrow(runtime, 9_000_001)
    _, second = await _clearing_and_escrow(runtime, 9_000_002)
    async with transaction(runtime.sessions) as slow:
        await ledger.post(
            slow, key="slow", kind="k", description="d", lines=[(clearing, -700), (first, 700)]
        )

        # The slow transaction is still open: another entry on the clearing account commits
        # at once (it used to wait for the slow one's COMMIT).
        async def other() -> None:
            async with transaction(runtime.sessions) as session:
                await session.execute(text("SET LOCAL lock_timeout = '2s'"))
                await ledger.post(
                    session,
                    key="other",
                    kind="k",
                    description="d",
                    lines=[(clearing, -300), (second, 300)],
                )

        await asyncio.wait_for(other(), timeout=10)
        assert await _balance(runtime, clearing.code) == -300
        assert await _balance(runtime, first.code) == 0  # not committed yet
    assert await _balance(runtime, clearing.code) == -1000
    assert await _balance(runtime, first.code) == 700
    assert await _balance(runtime, second.code) == 300


async def test_a_rolled_back_entry_moves_nothing_at_a_later_commit(runtime: Runtime) -> None:
    clearing, escrow = await _clearing_and_escrow(runtime, 9_000_003)
    async with runtime.sessions() as session:
        await session.begin()
        await ledger.post(
            session, key="gone", kind="k", description="d", lines=[(clearing, -500), (escrow, 500)]
        )
        await session.rollback()
        await session.begin()
        await ledger.post(
            session, key="kept", kind="k", description="d", lines=[(clearing, -40), (escrow, 40)]
        )
        await session.commit()
    assert await _balance(runtime, clearing.code) == -40
    assert await _balance(runtime, escrow.code) == 40


async def test_two_entries_in_one_transaction_add_up_on_the_platform_account(
    runtime: Runtime,
) -> None:
    clearing, escrow = await _clearing_and_escrow(runtime, 9_000_004)
    async with transaction(runtime.sessions) as session:
        for key, amount in (("a", 1000), ("b", 250)):
            await ledger.post(
                session,
                key=key,
                kind="k",
                description="d",
                lines=[(clearing, -amount), (escrow, amount)],
            )
    assert await _balance(runtime, clearing.code) == -1250
    assert await _balance(runtime, escrow.code) == 1250
