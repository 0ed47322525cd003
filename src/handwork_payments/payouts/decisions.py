"""An admin's decision on a payout parked for a person (holds.py): `fail` (the provider did
not pay it: the amount goes back to the worker's balance, with the admin's reason),
`complete` (the admin saw the provider pay exactly this payout) or `send` (clear the hold
and send it: a worker's debt the admin accepts). `handwork-payments payouts decide`."""

from __future__ import annotations

from typing import Literal

from handwork_payments.db import transaction
from handwork_payments.kit.errors import BadRequest, Conflict, NotFound
from handwork_payments.models import PayoutStatus, WorkerPayout
from handwork_payments.payouts import holds, repository
from handwork_payments.payouts.audit import audit_payout
from handwork_payments.payouts.service import apply_transfer
from handwork_payments.providers.base import ProviderTransfer, TransferState
from handwork_payments.runtime import Runtime

Decision = Literal["fail", "complete", "send"]


async def decide(
    runtime: Runtime, payout_id: int, decision: Decision, reason: str, *, actor_id: int | None
) -> WorkerPayout:
    if not reason.strip():
        raise BadRequest("A decision on a held payout needs a reason")
    async with transaction(runtime.sessions) as session:
        payout = await repository.lock(session, payout_id)
        if payout is None:
            raise NotFound("Payout not found")
        if payout.status != PayoutStatus.PROCESSING or payout.held_reason is None:
            raise Conflict(f"Payout #{payout_id} is not held ({payout.status})")
        held = payout.held_reason
        await audit_payout(
            session,
            payout.id,
            f"payout.decided_{decision}",
            actor_id=actor_id,
            actor_kind="admin",
            before={"held_reason": held},
            after={"decision": decision, "reason": reason},
        )
        if decision == "send":
            await holds.unpark(session, payout, actor_id=actor_id, why=reason)
            return payout
        payout.held_reason = None
        state = TransferState.FAILED if decision == "fail" else TransferState.SUCCEEDED
        transfer = ProviderTransfer(
            "", state, payout.amount, payout.currency, None, f"admin: {reason} (was: {held})"
        )
        await apply_transfer(session, payout, transfer, actor_kind="admin")
    return payout
