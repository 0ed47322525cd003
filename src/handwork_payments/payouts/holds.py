"""Payouts parked for a person: `held_reason` set, status unchanged (processing), never sent,
sent again or settled automatically while it is set.

Why a payout is parked (the reason starts with its code):
- `mismatch`: the transfer or payout item the provider holds under our key is not this
  payout (amount, currency or destination differ): another installation's, or ours from
  before the database was restored. Settling it would book money the worker never got.
- `negative_balance`: the worker's available balance went below zero (a chargeback or a
  refund clawed back money already released) before the payout was sent: it waits until
  later earnings cover the debt. Released by itself (`release_recovered`, run by the
  payout resolver) once the balance is back at zero or above.
- `batch_not_found`: PayPal said the batch exists but never said which, and
  PAYPAL_DUPLICATE_BATCH_MAX_TRIES look-ups did not find it.
- `admin`: an admin held it (`POST /payments/payouts/{id}/hold`, controls.py), pending or
  processing but never sent; only an admin's `release-hold` or `reject` ends it.

Parked payouts are released by an admin with `decide`: `fail` (the provider did not pay:
the amount goes back to the worker's balance, with the admin's reason), `complete` (the
admin saw the provider pay exactly this) or `send` (clear the hold and send it again, for
a negative balance the admin accepts).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.db import Sessions, transaction
from handwork_payments.kit import jobs
from handwork_payments.ledger import service as ledger
from handwork_payments.models import PayoutStatus, WorkerPayout
from handwork_payments.payouts.audit import audit_payout

log = logging.getLogger(__name__)

MISMATCH = "mismatch"
NEGATIVE_BALANCE = "negative_balance"
BATCH_NOT_FOUND = "batch_not_found"
ADMIN = "admin"
SEND_TASK = "hp:send_payout"


async def park(session: AsyncSession, payout: WorkerPayout, code: str, detail: str) -> None:
    """Park `payout` (locked) for an admin, once: an alert and an audit row say why."""
    if payout.held_reason is not None:
        return
    payout.held_reason = f"{code}: {detail}"
    await audit_payout(
        session,
        payout.id,
        "payout.held",
        after={"status": payout.status, "held_reason": payout.held_reason},
    )
    await alert(
        session,
        "payout_held",
        f"Payout #{payout.id} is held for an admin and will not be sent or settled: "
        f"{payout.held_reason}",
        "payout",
        payout.id,
    )


def code_of(payout: WorkerPayout) -> str | None:
    """Why `payout` is parked (the reason's code), None when it is not."""
    return payout.held_reason.split(":", 1)[0] if payout.held_reason is not None else None


def never_sent(payout: WorkerPayout) -> bool:
    """No provider call was ever made for it: holding or rejecting it cannot leave money
    the provider paid (or may still pay) unaccounted for."""
    return (
        payout.attempts == 0
        and payout.batch_key is None
        and not (payout.stripe_transfer_id or payout.paypal_payout_id or payout.paypal_batch_id)
    )


async def park_if_in_debt(session: AsyncSession, payout: WorkerPayout) -> bool:
    """Before a payout is sent: park it when its worker's available balance is below zero
    (checked under the balance row's lock, so a clawback committing meanwhile is seen by
    the next check, never half). True when parked."""
    available = await ledger.locked_available(session, payout.worker_id, payout.currency)
    if available.balance >= 0:
        return False
    await park(
        session,
        payout,
        NEGATIVE_BALANCE,
        f"the worker's available balance is {available.balance} {payout.currency} (minor "
        "units) after a clawback; sent once later earnings cover it",
    )
    return True


async def release_recovered(sessions: Sessions, *, limit: int = 100) -> list[int]:
    """Release the payouts parked for a negative balance whose worker is out of debt: the
    hold is cleared and the send job deferred in the same commit. The ids released."""
    released: list[int] = []
    async with transaction(sessions) as session:
        parked = (
            await session.scalars(
                select(WorkerPayout)
                .where(
                    WorkerPayout.status == PayoutStatus.PROCESSING,
                    WorkerPayout.held_reason.startswith(f"{NEGATIVE_BALANCE}:"),
                )
                .order_by(WorkerPayout.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for payout in parked:
            available = await ledger.locked_available(session, payout.worker_id, payout.currency)
            if available.balance < 0:
                continue
            await unpark(session, payout, actor_id=None, why="the worker's balance recovered")
            released.append(payout.id)
    return released


async def park_unfound_batch(
    session: AsyncSession, members: list[WorkerPayout], batch_key: str, max_tries: int
) -> bool:
    """After PayPal's "duplicate batch" without a link: once the open members (locked) have
    been tried `max_tries` times, park them for an admin (True). PayPal's Payouts API has
    no look-up by sender_batch_id; only the batch's item webhooks (which carry our
    sender_item_id) can still name the items, and they settle a parked member."""
    if not members or members[0].attempts < max_tries:
        return False
    for member in members:
        await park(
            session,
            member,
            BATCH_NOT_FOUND,
            f"PayPal has batch {batch_key} but never said which it is, after "
            f"{member.attempts} tries; check PayPal's activity, then fail it with a reason "
            "or complete it",
        )
    return True


def settles_held(payout: WorkerPayout) -> bool:
    """Whether the provider's news about a parked payout may settle it: only when it was
    parked because the provider could not be asked (the news is the answer)."""
    return (payout.held_reason or "").startswith(f"{BATCH_NOT_FOUND}:")


async def unpark_found(session: AsyncSession, payout: WorkerPayout) -> None:
    """The provider named the item of a payout parked as not found: the hold ends."""
    before = payout.held_reason
    payout.held_reason = None
    await audit_payout(
        session,
        payout.id,
        "payout.released",
        before={"held_reason": before},
        after={"held_reason": None, "why": "the provider named its item"},
    )


async def unpark(
    session: AsyncSession, payout: WorkerPayout, *, actor_id: int | None, why: str
) -> None:
    before = payout.held_reason
    payout.held_reason = None
    await jobs.defer(session, SEND_TASK, args={"payout_id": payout.id}, lock=f"payout-{payout.id}")
    await audit_payout(
        session,
        payout.id,
        "payout.released",
        actor_id=actor_id,
        actor_kind="admin" if actor_id else "system",
        before={"held_reason": before},
        after={"held_reason": None, "why": why},
    )
