"""Writing off a worker's debt: a clawback (a refund or a lost chargeback after the worker
was paid out) that no later earning paid back and no transfer reversal recovered. An admin
takes it to platform losses: the worker's available balance comes back to zero, the loss is
on the books, the audit log and the worker's history say who did it and why."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit.errors import Conflict, NotFound, Unprocessable
from handwork_payments.ledger import service as ledger
from handwork_payments.ledger.service import History
from handwork_payments.models import (
    AccountKind,
    LedgerAccount,
    Role,
    TransactionType,
    User,
    WorkerWriteOff,
)
from handwork_payments.runtime import Runtime


async def _owed_currency(session: AsyncSession, worker_id: int, currency: str | None) -> str:
    """The currency to write off: the one named, else the only one the worker owes in."""
    if currency is not None:
        return currency
    owed = (
        await session.scalars(
            select(LedgerAccount.currency).where(
                LedgerAccount.kind == AccountKind.WORKER_AVAILABLE,
                LedgerAccount.owner_id == worker_id,
                LedgerAccount.balance < 0,
            )
        )
    ).all()
    if not owed:
        raise Conflict("The worker owes nothing: there is no negative balance to write off")
    if len(owed) > 1:
        raise Unprocessable(f"The worker owes in {', '.join(sorted(owed))}: name the currency")
    return owed[0]


async def write_off(
    runtime: Runtime, worker_id: int, *, reason: str, currency: str | None, admin: User
) -> WorkerWriteOff:
    """Write off what the worker owes in `currency` (409 when nothing is owed)."""
    async with transaction(runtime.sessions) as session:
        worker = await session.get(User, worker_id)
        if worker is None or worker.role != Role.WORKER:
            raise NotFound("Worker not found")
        currency = await _owed_currency(session, worker_id, currency)
        # Under the account's lock: a payout or release cannot change the debt meanwhile.
        available = await ledger.locked_available(session, worker_id, currency)
        owed = -available.balance
        if owed <= 0:
            raise Conflict(f"The worker owes nothing in {currency}")
        row = WorkerWriteOff(
            worker_id=worker_id, amount=owed, currency=currency, reason=reason, admin_id=admin.id
        )
        session.add(row)
        await session.flush()
        losses = await ledger.losses(session, currency)
        await ledger.post(
            session,
            key=f"write-off-{row.id}",
            kind="write_off",
            description=f"Debt of worker #{worker_id} written off by admin #{admin.id}: {reason}",
            lines=[(available, owed), (losses, -owed)],
            history=[
                History(worker_id, TransactionType.REFUND, owed, f"Debt written off: {reason}")
            ],
        )
        await record(
            session,
            actor_id=admin.id,
            action="worker.debt_written_off",
            object_type="user",
            object_id=worker_id,
            before={"available": -owed, "currency": currency},
            after={"available": 0, "currency": currency, "write_off_id": row.id, "reason": reason},
        )
        return row
