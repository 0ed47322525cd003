"""An admin's controls over payouts (issue 14): reject one, hold one and release the hold,
and process many in one call.

The rules, each checked under the payout's row lock (the send job takes the same lock and
marks its attempt before calling the provider, so the two never both win):
- hold: a pending or processing payout that is not held and was never sent. It stays in
  its status with `held_reason` `admin: <reason>` (holds.py): a held pending payout cannot
  be processed, a held processing one is never sent, batched, re-queried or resolved.
- release-hold: only an admin's hold (the other codes are decided with `payouts decide`).
  A processing payout's send job is enqueued again in the same commit.
- reject: a pending payout, or a held processing one never sent (pending/processing ->
  failed): the reserved amount goes back to the available balance by the failed-payout
  entry, and the worker is told by `payout.rejected` and `balance.available`. A processing
  payout not held may be at the provider right now: hold it first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.db import transaction
from handwork_payments.events import outbox
from handwork_payments.kit.errors import Conflict, DomainError, NotFound
from handwork_payments.models import PayoutStatus, User, WorkerPayout
from handwork_payments.payouts import holds, repository, service
from handwork_payments.payouts.audit import audit_payout
from handwork_payments.runtime import Runtime

# The most payout ids one `process` call takes: each is its own transaction.
MAX_BULK = 100


async def _locked(session: AsyncSession, payout_id: int) -> WorkerPayout:
    payout = await repository.lock(session, payout_id)
    if payout is None:
        raise NotFound("Payout not found")
    return payout


def _refuse_unless_rejectable(payout: WorkerPayout) -> None:
    if payout.status == PayoutStatus.PENDING:
        return
    if payout.status != PayoutStatus.PROCESSING:
        raise Conflict(f"A {payout.status} payout cannot be rejected")
    if payout.held_reason is None:
        raise Conflict(
            f"Payout #{payout.id} is processing and may be at the provider now: hold it first"
        )
    if not holds.never_sent(payout):
        raise Conflict(
            f"Payout #{payout.id} was sent to the provider ({holds.code_of(payout)}): "
            "decide it with `handwork-payments payouts decide` once the provider is checked"
        )


async def reject(runtime: Runtime, admin: User, payout_id: int, reason: str) -> WorkerPayout:
    async with transaction(runtime.sessions) as session:
        payout = await _locked(session, payout_id)
        _refuse_unless_rejectable(payout)
        before = {"status": payout.status, "held_reason": payout.held_reason}
        payout.held_reason = None
        await service.give_back(session, payout, f"rejected by an admin: {reason}")
        await audit_payout(
            session,
            payout.id,
            "payout.rejected",
            actor_id=admin.id,
            actor_kind="admin",
            before=before,
            after={"status": payout.status, "reason": reason},
        )
        await outbox.payout_failed(session, payout, "payout.rejected")
    return payout


async def hold(runtime: Runtime, admin: User, payout_id: int, reason: str) -> WorkerPayout:
    async with transaction(runtime.sessions) as session:
        payout = await _locked(session, payout_id)
        if payout.status not in (PayoutStatus.PENDING, PayoutStatus.PROCESSING):
            raise Conflict(f"A {payout.status} payout cannot be held")
        if payout.held_reason is not None:
            raise Conflict(f"Payout #{payout.id} is held already ({holds.code_of(payout)})")
        if not holds.never_sent(payout):
            raise Conflict(f"Payout #{payout.id} was sent to the provider: too late to hold it")
        payout.held_reason = f"{holds.ADMIN}: {reason}"
        await audit_payout(
            session,
            payout.id,
            "payout.held",
            actor_id=admin.id,
            actor_kind="admin",
            after={"status": payout.status, "held_reason": payout.held_reason},
        )
    return payout


async def release_hold(runtime: Runtime, admin: User, payout_id: int) -> WorkerPayout:
    async with transaction(runtime.sessions) as session:
        payout = await _locked(session, payout_id)
        code = holds.code_of(payout)
        if code != holds.ADMIN:
            other = f" (held: {code}; see `handwork-payments payouts decide`)" if code else ""
            raise Conflict(f"Payout #{payout.id} is not held by an admin{other}")
        before = payout.held_reason
        payout.held_reason = None
        if payout.status == PayoutStatus.PROCESSING:
            # Its send job found it held and stopped: it needs another.
            await service.defer_send(runtime, session, payout)
        await audit_payout(
            session,
            payout.id,
            "payout.released",
            actor_id=admin.id,
            actor_kind="admin",
            before={"held_reason": before},
            after={"held_reason": None, "status": payout.status},
        )
    return payout


@dataclass(frozen=True)
class Refused:
    payout_id: int
    detail: str


async def process_many(
    runtime: Runtime, admin: User, payout_ids: list[int]
) -> tuple[list[WorkerPayout], list[Refused]]:
    """Each id as `process` does it, in its own transaction (one refused id spoils none of
    the others): the payouts processed, and why each other was not."""
    assert len(payout_ids) <= MAX_BULK, "bounded by the request schema"
    processed: list[WorkerPayout] = []
    refused: list[Refused] = []
    for payout_id in payout_ids:
        try:
            processed.append(await service.process(runtime, admin, payout_id))
        except DomainError as exc:
            refused.append(Refused(payout_id, exc.detail))
    return processed, refused
