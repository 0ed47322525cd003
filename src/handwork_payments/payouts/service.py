"""Worker payouts: requested from the available balance (reserved at once, under the
balance row's lock), processed by an admin, sent to the provider by a job, settled by
the provider's answer or event. A failure gives the amount back.

Stripe transfers go one by one (`hp:send_payout`). PayPal Payouts takes many items in one
request, so processed PayPal payouts are sent together (`hp:send_payout_batch`, and a
periodic run for any left over), at most PAYOUT_BATCH_SIZE at a time, each batch under
our key `payout-batch-{first payout id}`. A call whose answer is lost leaves its payouts
`processing` with the attempt recorded; the resolver asks the provider again under the
same key (the whole batch again, for a batch) and never pays twice. A batch whose PayPal id
we hold is polled (GET), never sent again; and none is sent again once PayPal's 30-day
memory of its sender_batch_id may have lapsed (BATCH_RESEND_WINDOW): an operator is told."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.events import outbox
from handwork_payments.kit import jobs, money
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import BadRequest, Conflict, NotFound
from handwork_payments.ledger import service as ledger
from handwork_payments.ledger.service import History
from handwork_payments.models import (
    Alert,
    PaymentMethod,
    PayoutStatus,
    ReviewObject,
    TransactionType,
    User,
    WorkerPayout,
)
from handwork_payments.payouts import delay, holds, repository
from handwork_payments.payouts.audit import audit_payout
from handwork_payments.payouts.states import PAYOUT
from handwork_payments.providers.base import (
    PaymentProvider,
    PayoutBatchProvider,
    PayoutOrder,
    ProviderError,
    ProviderTransfer,
    ProviderUnavailableError,
    TransferState,
    UnlinkedDuplicateBatchError,
)
from handwork_payments.risk import reviews
from handwork_payments.risk import service as risk
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

SEND_TASK = holds.SEND_TASK
SEND_BATCH_TASK = "hp:send_payout_batch"
# A batch whose answer was lost is sent again under its key only within this time of its
# processing: PayPal refuses a reused sender_batch_id for 30 days, not longer.
BATCH_RESEND_WINDOW = timedelta(days=25)
# After this many attempts without an answer, an operator is told (once).
UNRESOLVED_ALERT_ATTEMPTS = 3


def batch_sender(runtime: Runtime, method: PaymentMethod | str) -> PayoutBatchProvider | None:
    """The provider of `method` when it pays in batches (PayPal Payouts), else None."""
    if not runtime.providers.offers(method):
        return None  # disabled: the periodic batch jobs have nothing to send
    provider = runtime.providers.for_method(method)
    if provider.name == PaymentMethod.PAYPAL and isinstance(provider, PayoutBatchProvider):
        return provider
    return None


async def request(
    runtime: Runtime, worker: User, *, amount: int, method: PaymentMethod, currency: str
) -> WorkerPayout:
    if amount <= 0:
        raise BadRequest("The payout amount must be positive")
    destination = (
        worker.stripe_account_id if method == PaymentMethod.STRIPE else worker.paypal_email
    )
    if not destination:
        raise BadRequest(f"Set a {method} payout method first (PUT /payments/payout-methods)")
    if (
        method == PaymentMethod.STRIPE
        and runtime.providers.stripe.live
        and not worker.stripe_payouts_enabled
    ):
        # A transfer to an account Stripe has not enabled would fail, or strand the money
        # on a restricted account. The simulator skips this check, so a demo can name any
        # acct_ id without onboarding.
        raise BadRequest(
            f"Stripe has not enabled payouts on {destination} yet: finish onboarding "
            "(POST /payments/stripe/connect/onboarding)"
        )
    # In the balance's own currency, to a provider that pays it out: never converted.
    runtime.providers.rules(method).check_payout(amount, currency)
    async with transaction(runtime.sessions) as session:
        # The payout's row first, the balance row's lock after it: one worker's requests
        # queue on that lock (each sees the balance the previous one left), so it is held
        # for the check, the entry, the audit row and the risk rules only. A request
        # refused for its balance rolls its payout row back.
        payout = WorkerPayout(
            worker_id=worker.id,
            amount=amount,
            currency=currency,
            payment_method=method,
            destination=destination,
            status=PayoutStatus.PENDING,
            attempts=0,
            requested_at=now(),
        )
        session.add(payout)
        await session.flush()
        available = await ledger.locked_existing_available(session, worker.id, currency)
        if available is None:
            raise BadRequest(f"You have no {currency} balance to pay out")
        withdrawable = await delay.withdrawable(session, available, runtime.settings)
        if withdrawable < amount:
            raise BadRequest(
                "Insufficient available balance: "
                f"{money.format_amount(max(withdrawable, 0), currency)} {currency}"
            )
        reserved = await ledger.reserved(session, worker.id, currency)
        await ledger.post(
            session,
            key=f"payout-{payout.id}-reserve",
            kind="payout_reserve",
            description=f"Payout #{payout.id} requested: amount reserved",
            lines=[(available, -amount), (reserved, amount)],
            history=[History(worker.id, TransactionType.PAYOUT, -amount, f"Payout #{payout.id}")],
            payout_id=payout.id,
        )
        await audit_payout(
            session,
            payout.id,
            "payout.requested",
            actor_id=worker.id,
            after={"status": payout.status, "amount": amount, "currency": currency},
        )
        # After the lock: concurrent requests of one worker count each other's payouts.
        await risk.evaluate_payout(session, runtime.settings, worker, payout)
    return payout


async def process(runtime: Runtime, admin: User, payout_id: int) -> WorkerPayout:
    """pending -> processing, with the job that sends it enqueued in the same commit."""
    async with transaction(runtime.sessions) as session:
        payout = await repository.lock(session, payout_id)
        if payout is None:
            raise NotFound("Payout not found")
        PAYOUT.check(payout.status, PayoutStatus.PROCESSING)
        if payout.held_reason is not None:
            raise Conflict(f"Payout #{payout.id} is held ({payout.held_reason}): release it first")
        await reviews.ensure_no_open_review(session, ReviewObject.PAYOUT, payout.id)
        payout.status = PayoutStatus.PROCESSING
        payout.processed_at = now()
        payout.processed_by = admin.id
        await defer_send(runtime, session, payout)
        await audit_payout(
            session,
            payout.id,
            "payout.processing",
            actor_id=admin.id,
            before={"status": PayoutStatus.PENDING},
            after={"status": payout.status},
        )
    return payout


async def defer_send(runtime: Runtime, session: AsyncSession, payout: WorkerPayout) -> None:
    """Enqueue, in the caller's transaction, the job that sends a processing payout."""
    if batch_sender(runtime, payout.payment_method) is not None:
        # One job per method at a time (the lock): while one batch is out, the payouts
        # processed meanwhile gather for the next.
        method = str(payout.payment_method)
        await jobs.defer(
            session, SEND_BATCH_TASK, args={"method": method}, lock=f"payout-batch-{method}"
        )
    else:
        await jobs.defer(
            session, SEND_TASK, args={"payout_id": payout.id}, lock=f"payout-{payout.id}"
        )


def order_of(payout: WorkerPayout) -> PayoutOrder:
    return PayoutOrder(
        payout_id=payout.id,
        destination=payout.destination,
        amount=payout.amount,
        currency=payout.currency,
    )


async def send(runtime: Runtime, payout_id: int) -> WorkerPayout | None:
    """The job: call the provider for a processing payout and settle it. From the second
    attempt on, the provider is asked first whether the payout exists (a timed-out call
    may have succeeded): it is never sent twice. Raises ProviderUnavailableError when the
    outcome is still unknown, for the job to be retried."""
    async with transaction(runtime.sessions) as session:
        payout = await repository.lock(session, payout_id)
        if payout is None or payout.status != PayoutStatus.PROCESSING:
            return payout  # settled meanwhile (a webhook, another attempt)
        if payout.held_reason is not None:
            return payout  # parked for an admin (holds.py)
        if await session.scalar(select(reviews.reviewed(ReviewObject.PAYOUT, payout.id))):
            return payout  # waits for a risk review
        if payout.stripe_transfer_id or payout.paypal_payout_id or payout.paypal_batch_id:
            return payout  # sent, waiting for the provider's settlement
        if payout.attempts == 0 and await holds.park_if_in_debt(session, payout):
            return payout
        batch_key = payout.batch_key
        if batch_key is None:
            payout.attempts += 1
            payout.last_attempt_at = now()
        first_attempt = payout.attempts == 1
        order = order_of(payout)
    if batch_key is not None:
        # Went out in a batch whose answer was lost: the whole batch again, same key.
        await resend_batch(runtime, batch_key)
        async with runtime.sessions() as session:
            return await session.get(WorkerPayout, payout_id)
    provider = runtime.providers.for_method(payout.payment_method)
    try:
        transfer = None if first_attempt else await provider.find_payout(order)
        if transfer is None:
            transfer = await provider.send_payout(order)
    except ProviderError as exc:
        return await settle(
            runtime,
            payout_id,
            ProviderTransfer(
                "", TransferState.FAILED, order.amount, order.currency, None, exc.message
            ),
        )
    except ProviderUnavailableError:
        log.warning("payout %s: %s did not answer; will re-query", payout_id, provider.name)
        raise
    return await settle(runtime, payout_id, transfer)


async def send_batch(runtime: Runtime, method: PaymentMethod | str) -> list[int]:
    """Send up to PAYOUT_BATCH_SIZE processed, never-sent payouts of `method` in one batch
    and settle them; the ids sent (empty when there were none, or the provider does not
    batch). The payouts are marked (attempt, batch key) and committed before the call,
    SKIP LOCKED so that concurrent runs take disjoint sets."""
    provider = batch_sender(runtime, method)
    if provider is None:
        return []
    async with transaction(runtime.sessions) as session:
        payouts = (
            await session.scalars(
                select(WorkerPayout)
                .where(
                    WorkerPayout.status == PayoutStatus.PROCESSING,
                    WorkerPayout.payment_method == method,
                    WorkerPayout.attempts == 0,
                    WorkerPayout.batch_key.is_(None),
                    WorkerPayout.held_reason.is_(None),
                    ~reviews.reviewed(ReviewObject.PAYOUT, WorkerPayout.id),
                )
                .order_by(WorkerPayout.id)
                .limit(runtime.settings.payout_batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        payouts = [p for p in payouts if not await holds.park_if_in_debt(session, p)]
        if not payouts:
            return []
        batch_key = f"payout-batch-{payouts[0].id}"
        for payout in payouts:
            payout.batch_key = batch_key
            payout.attempts = 1
            payout.last_attempt_at = now()
            await audit_payout(
                session,
                payout.id,
                "payout.batched",
                after={"batch_key": batch_key, "batch_size": len(payouts)},
            )
        orders = [order_of(p) for p in payouts]
    await _send_batch(runtime, provider, batch_key, orders)
    return [o.payout_id for o in orders]


async def resend_batch(runtime: Runtime, batch_key: str) -> None:
    """Ask again for a batch whose answer was lost: the same orders under the same key,
    so the provider answers the batch it made (or makes it now if it never got it)."""
    async with transaction(runtime.sessions) as session:
        members = (
            await session.scalars(
                select(WorkerPayout)
                .where(WorkerPayout.batch_key == batch_key)
                .order_by(WorkerPayout.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
        open_members = [
            m
            for m in members
            if m.status == PayoutStatus.PROCESSING
            and m.held_reason is None
            and not (m.stripe_transfer_id or m.paypal_payout_id or m.paypal_batch_id)
        ]
        if not open_members:
            return
        first = min((m.processed_at for m in members if m.processed_at), default=None)
        if first is not None and now() - first > BATCH_RESEND_WINDOW:
            # PayPal pays a sender_batch_id once within 30 days; sent again after that it
            # could pay again. Past the window only a person can tell what was paid.
            for member in open_members:
                member.last_attempt_at = now()
            await _alert_unresolved(session, open_members[0], batch_key, "not sent again")
            return
        for member in open_members:
            member.attempts += 1
            member.last_attempt_at = now()
        if open_members[0].attempts == UNRESOLVED_ALERT_ATTEMPTS:
            await _alert_unresolved(session, open_members[0], batch_key, "still unknown")
        orders = [order_of(m) for m in members]  # all of them: exactly the first call
        method = members[0].payment_method
    provider = batch_sender(runtime, method)
    assert provider is not None, f"batch {batch_key} of a provider that has no batches"
    await _send_batch(runtime, provider, batch_key, orders)


async def _park_if_unfound(runtime: Runtime, batch_key: str) -> None:
    async with transaction(runtime.sessions) as session:
        members = (
            await session.scalars(
                select(WorkerPayout)
                .where(
                    WorkerPayout.batch_key == batch_key,
                    WorkerPayout.status == PayoutStatus.PROCESSING,
                    WorkerPayout.held_reason.is_(None),
                )
                .order_by(WorkerPayout.id)
                .with_for_update()
            )
        ).all()
        max_tries = runtime.settings.paypal_duplicate_batch_max_tries
        await holds.park_unfound_batch(session, list(members), batch_key, max_tries)


async def _alert_unresolved(
    session: AsyncSession, member: WorkerPayout, batch_key: str, what: str
) -> None:
    exists = await session.scalar(
        select(Alert.id)
        .where(
            Alert.kind == "payout_batch_unresolved",
            Alert.object_type == "payout",
            Alert.object_id == member.id,
        )
        .limit(1)
    )
    if exists is None:
        await alert(
            session,
            "payout_batch_unresolved",
            f"Payout batch {batch_key} (payout #{member.id} and the others sent with it): "
            f"the provider's answer is {what} after {member.attempts} attempts; check the "
            "batch at the provider before anything is paid or returned by hand",
            "payout",
            member.id,
        )


async def _send_batch(
    runtime: Runtime, provider: PayoutBatchProvider, batch_key: str, orders: list[PayoutOrder]
) -> None:
    try:
        transfers = await provider.send_payout_batch(orders, batch_key)
    except UnlinkedDuplicateBatchError:
        await _park_if_unfound(runtime, batch_key)
        raise
    except ProviderError as exc:
        # Refused as a whole: none of its items was paid.
        transfers = [
            ProviderTransfer("", TransferState.FAILED, o.amount, o.currency, None, exc.message)
            for o in orders
        ]
    except ProviderUnavailableError:
        log.warning(
            "payout batch %s: no answer; the resolver sends it again under the same key",
            batch_key,
            extra={"event": "payout_batch_unknown", "batch_key": batch_key},
        )
        raise
    assert len(transfers) == len(orders), "one transfer per order"
    for order, transfer in zip(orders, transfers, strict=True):
        await settle(runtime, order.payout_id, transfer)


async def resolve_payouts(runtime: Runtime, *, now: datetime, limit: int = 100) -> dict[int, str]:
    """The payouts left `processing` for longer than PROVIDER_OPERATION_STALE_SECONDS: a
    call whose answer never came is asked again under the same key (`send` re-queries
    first); one the provider took but has not settled is looked up again; one whose job
    was lost is sent. Returns what happened, by payout id."""
    stale = now - timedelta(seconds=runtime.settings.provider_operation_stale_seconds)
    batching = [m for m in PaymentMethod if batch_sender(runtime, m) is not None]
    async with runtime.sessions() as session:
        stuck = (
            await session.scalars(
                select(WorkerPayout)
                .where(
                    WorkerPayout.status == PayoutStatus.PROCESSING,
                    WorkerPayout.held_reason.is_(None),
                    or_(
                        (WorkerPayout.attempts > 0) & (WorkerPayout.last_attempt_at <= stale),
                        # Never sent: its job was lost (batched ones wait for the batch run).
                        (WorkerPayout.attempts == 0)
                        & (WorkerPayout.processed_at <= stale)
                        & WorkerPayout.payment_method.not_in(batching),
                    ),
                )
                .order_by(WorkerPayout.id)
                .limit(limit)
            )
        ).all()
    outcome: dict[int, str] = {
        payout_id: "released" for payout_id in await holds.release_recovered(runtime.sessions)
    }
    batches: dict[str, list[int]] = {}
    for payout in stuck:
        if payout.paypal_batch_id and batch_sender(runtime, payout.payment_method):
            batches.setdefault(payout.paypal_batch_id, []).append(payout.id)
    for batch_id, members in batches.items():
        outcome.update(await poll_batch(runtime, batch_id, members))
    for payout in stuck:
        if payout.id in outcome:
            continue
        try:
            if payout.stripe_transfer_id or payout.paypal_payout_id or payout.paypal_batch_id:
                # Sent (a PayPal batch id is enough): look it up, never send it again.
                settled = await refresh(runtime, payout.id)
            else:
                settled = await send(runtime, payout.id)
            outcome[payout.id] = settled.status if settled else "gone"
        except (ProviderUnavailableError, ProviderError) as exc:
            outcome[payout.id] = f"not resolved: {exc}"
    if outcome:
        log.warning(
            "payout resolver: %s",
            outcome,
            extra={"event": "payout_resolver", "outcome": {str(k): v for k, v in outcome.items()}},
        )
    return outcome


async def poll_batch(runtime: Runtime, batch_id: str, payout_ids: list[int]) -> dict[int, str]:
    """The sent payouts of one PayPal batch, looked up with ONE call for the batch (not one
    per payout), each settled by what its item says. Returns what happened, by payout id."""
    async with transaction(runtime.sessions) as session:
        members = []
        for payout_id in payout_ids:
            payout = await repository.lock(session, payout_id)
            if payout is not None and payout.status == PayoutStatus.PROCESSING:
                payout.last_attempt_at = now()
                members.append(payout)
        orders = [order_of(m) for m in members]
        method = members[0].payment_method if members else None
    provider = batch_sender(runtime, method) if method else None
    if provider is None:
        return {}
    try:
        found = await provider.find_batch(batch_id, orders)
    except (ProviderUnavailableError, ProviderError) as exc:
        return {o.payout_id: f"not resolved: {exc}" for o in orders}
    outcome: dict[int, str] = {}
    for order, transfer in zip(orders, found, strict=True):
        settled = await settle(runtime, order.payout_id, transfer) if transfer else None
        outcome[order.payout_id] = settled.status if settled else "processing"
    return outcome


async def lookup(provider: PaymentProvider, payout: WorkerPayout) -> ProviderTransfer | None:
    """What the provider says of a sent payout, by a pure look-up; None when it has none.
    Raises LookupError when the provider cannot be asked without acting (a PayPal payout
    whose batch id we never got: PayPal only finds it by sending it again)."""
    order = order_of(payout)
    if isinstance(provider, PayoutBatchProvider) and provider.name == PaymentMethod.PAYPAL:
        if not payout.paypal_batch_id:
            raise LookupError(f"payout {payout.id}: no PayPal batch id to look it up by")
        return await provider.find_payout(order, batch_id=payout.paypal_batch_id)
    return await provider.find_payout(order)


async def refresh(runtime: Runtime, payout_id: int) -> WorkerPayout | None:
    """Look up a sent, unsettled payout (PayPal UNCLAIMED, a webhook that never came) and
    apply what the provider says now."""
    async with transaction(runtime.sessions) as session:
        payout = await repository.lock(session, payout_id)
        if payout is None or payout.status != PayoutStatus.PROCESSING:
            return payout
        payout.last_attempt_at = now()
    provider = runtime.providers.for_method(payout.payment_method)
    try:
        transfer = await lookup(provider, payout)
    except LookupError:
        return payout
    if transfer is None:
        return payout
    return await settle(runtime, payout_id, transfer)


async def settle(
    runtime: Runtime, payout_id: int, transfer: ProviderTransfer
) -> WorkerPayout | None:
    async with transaction(runtime.sessions) as session:
        payout = await repository.lock(session, payout_id)
        if payout is None:
            return None
        await apply_transfer(session, payout, transfer, actor_kind="system")
        return payout


async def apply_transfer(
    session: AsyncSession, payout: WorkerPayout, transfer: ProviderTransfer, *, actor_kind: str
) -> None:
    """Apply what the provider says of a payout, under its lock; repeated or stale news
    changes nothing. A transfer that is not this payout (found under our key, but for
    another amount, currency or receiver) is never applied: the payout is parked for an
    admin. A parked payout is left to the admin."""
    if (problem := order_of(payout).mismatch(transfer)) is not None:
        await holds.park(
            session,
            payout,
            holds.MISMATCH,
            f"{payout.payment_method} {transfer.transfer_id} found under our key: {problem}",
        )
        return
    if payout.held_reason is not None:
        if not holds.settles_held(payout):
            log.warning("payout %s is held (%s): news not applied", payout.id, payout.held_reason)
            return
        await holds.unpark_found(session, payout)
    if payout.payment_method == PaymentMethod.STRIPE:
        payout.stripe_transfer_id = transfer.transfer_id or payout.stripe_transfer_id
    else:
        # A batch PayPal has not itemised yet has an id but no item id: keep it to poll.
        payout.paypal_payout_id = transfer.transfer_id or payout.paypal_payout_id
        payout.paypal_batch_id = transfer.batch_id or payout.paypal_batch_id
    if transfer.state == TransferState.SUCCEEDED and PAYOUT.allows(
        payout.status, PayoutStatus.COMPLETED
    ):
        await _complete(session, payout, actor_kind)
    elif transfer.state == TransferState.FAILED and PAYOUT.allows(
        payout.status, PayoutStatus.FAILED
    ):
        await _fail(
            session, payout, transfer.failure_reason or "the provider failed the payout", actor_kind
        )


async def _complete(session: AsyncSession, payout: WorkerPayout, actor_kind: str) -> None:
    before = {"status": payout.status}
    payout.status = PayoutStatus.COMPLETED
    payout.completed_at = now()
    reserved = await ledger.reserved(session, payout.worker_id, payout.currency)
    clearing = await ledger.clearing(session, payout.payment_method, payout.currency)
    await ledger.post(
        session,
        key=f"payout-{payout.id}-complete",
        kind="payout_complete",
        # Not the destination (a PayPal email): the append-only ledger keeps no personal data.
        description=f"Payout #{payout.id} sent by {payout.payment_method}",
        lines=[(reserved, -payout.amount), (clearing, payout.amount)],
        payout_id=payout.id,
    )
    await audit_payout(
        session,
        payout.id,
        "payout.completed",
        actor_kind=actor_kind,
        before=before,
        after={"status": payout.status},
    )
    await outbox.payout_event(session, "payout.completed", payout)


async def _fail(session: AsyncSession, payout: WorkerPayout, reason: str, actor_kind: str) -> None:
    before = {"status": payout.status}
    await give_back(session, payout, reason)
    await audit_payout(
        session,
        payout.id,
        "payout.failed",
        actor_kind=actor_kind,
        before=before,
        after={"status": payout.status, "reason": reason},
    )
    await alert(
        session, "payout_failed", f"Payout #{payout.id} failed: {reason}", "payout", payout.id
    )
    await outbox.payout_failed(session, payout)


async def give_back(session: AsyncSession, payout: WorkerPayout, reason: str) -> None:
    """Fail `payout` (locked): the amount goes back to the available balance, from the
    reservation, or (a payout the provider returned after completing it) from the provider
    balance it came back to."""
    returned = payout.status == PayoutStatus.COMPLETED
    payout.status = PayoutStatus.FAILED
    payout.failure_reason = reason
    source = (
        await ledger.clearing(session, payout.payment_method, payout.currency)
        if returned
        else await ledger.reserved(session, payout.worker_id, payout.currency)
    )
    available = await ledger.available(session, payout.worker_id, payout.currency)
    await ledger.post(
        session,
        key=f"payout-{payout.id}-{'returned' if returned else 'failed'}",
        kind="payout_return" if returned else "payout_fail",
        description=f"Payout #{payout.id} failed ({reason}): amount back to available",
        lines=[(source, -payout.amount), (available, payout.amount)],
        history=[
            History(
                payout.worker_id,
                TransactionType.PAYOUT,
                payout.amount,
                f"Payout #{payout.id} failed: amount returned",
            )
        ],
        payout_id=payout.id,
    )
