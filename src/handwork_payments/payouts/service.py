"""Worker payouts: requested from the available balance (reserved at once, under the
balance row's lock), processed by an admin, sent to the provider by a job, settled by
the provider's answer or event. A failure gives the amount back."""

from __future__ import annotations

import logging
import re

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit import jobs, money
from handwork_payments.kit.errors import BadRequest, NotFound
from handwork_payments.ledger import service as ledger
from handwork_payments.ledger.service import History
from handwork_payments.models import (
    PaymentMethod,
    PayoutStatus,
    TransactionType,
    User,
    WorkerPayout,
)
from handwork_payments.payments.service import now
from handwork_payments.payouts import repository
from handwork_payments.payouts.states import PAYOUT
from handwork_payments.providers.base import (
    PayoutOrder,
    ProviderError,
    ProviderTransfer,
    ProviderUnavailableError,
    TransferState,
)
from handwork_payments.runtime import Runtime

log = logging.getLogger(__name__)

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
STRIPE_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]{1,64}$")
SEND_TASK = "hp:send_payout"


async def set_methods(
    runtime: Runtime, worker: User, *, stripe_account_id: str | None, paypal_email: str | None
) -> User:
    if stripe_account_id is not None and not STRIPE_ACCOUNT.match(stripe_account_id):
        raise BadRequest("stripe_account_id must be a Stripe connected account id (acct_...)")
    if paypal_email is not None and not EMAIL.match(paypal_email):
        raise BadRequest("paypal_email must be an email address")
    async with transaction(runtime.sessions) as session:
        user = await session.get(User, worker.id, with_for_update=True)
        assert user is not None
        before = {"stripe_account_id": user.stripe_account_id, "paypal_email": user.paypal_email}
        if stripe_account_id is not None:
            user.stripe_account_id = stripe_account_id
        if paypal_email is not None:
            user.paypal_email = paypal_email
        await record(
            session,
            actor_id=worker.id,
            action="payout_methods.updated",
            object_type="user",
            object_id=worker.id,
            before=before,
            after={"stripe_account_id": user.stripe_account_id, "paypal_email": user.paypal_email},
        )
    return user


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
    async with transaction(runtime.sessions) as session:
        # The balance row's lock is what makes parallel requests queue up: each sees the
        # balance the previous one left.
        available = await ledger.locked_available(session, worker.id, currency)
        if available.balance < amount:
            raise BadRequest(
                "Insufficient available balance: "
                f"{money.format_amount(max(available.balance, 0), currency)} {currency}"
            )
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
        await record(
            session,
            actor_id=worker.id,
            action="payout.requested",
            object_type="payout",
            object_id=payout.id,
            after={"status": payout.status, "amount": amount, "currency": currency},
        )
    return payout


async def process(runtime: Runtime, admin: User, payout_id: int) -> WorkerPayout:
    """pending -> processing, with the job that sends it enqueued in the same commit."""
    async with transaction(runtime.sessions) as session:
        payout = await repository.lock(session, payout_id)
        if payout is None:
            raise NotFound("Payout not found")
        PAYOUT.check(payout.status, PayoutStatus.PROCESSING)
        payout.status = PayoutStatus.PROCESSING
        payout.processed_at = now()
        payout.processed_by = admin.id
        await jobs.defer(
            session, SEND_TASK, args={"payout_id": payout.id}, lock=f"payout-{payout.id}"
        )
        await record(
            session,
            actor_id=admin.id,
            action="payout.processing",
            object_type="payout",
            object_id=payout.id,
            before={"status": PayoutStatus.PENDING},
            after={"status": payout.status},
        )
    return payout


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
        if payout.stripe_transfer_id or payout.paypal_payout_id:
            return payout  # sent, waiting for the provider's settlement
        payout.attempts += 1
        payout.last_attempt_at = now()
        first_attempt = payout.attempts == 1
        order = order_of(payout)
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
    changes nothing."""
    if transfer.transfer_id:
        if payout.payment_method == PaymentMethod.STRIPE:
            payout.stripe_transfer_id = transfer.transfer_id
        else:
            payout.paypal_payout_id = transfer.transfer_id
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
        description=f"Payout #{payout.id} sent to {payout.destination}",
        lines=[(reserved, -payout.amount), (clearing, payout.amount)],
        payout_id=payout.id,
    )
    await record(
        session,
        actor_id=None,
        actor_kind=actor_kind,
        action="payout.completed",
        object_type="payout",
        object_id=payout.id,
        before=before,
        after={"status": payout.status},
    )


async def _fail(session: AsyncSession, payout: WorkerPayout, reason: str, actor_kind: str) -> None:
    """The amount goes back to the available balance: from the reservation, or (a payout
    the provider returned after completing it) from the provider balance it came back to."""
    before = {"status": payout.status}
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
    await record(
        session,
        actor_id=None,
        actor_kind=actor_kind,
        action="payout.failed",
        object_type="payout",
        object_id=payout.id,
        before=before,
        after={"status": payout.status, "reason": reason},
    )
    await alert(
        session, "payout_failed", f"Payout #{payout.id} failed: {reason}", "payout", payout.id
    )
