from __future__ import annotations

import logging

import procrastinate

from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import DomainError, ProviderUnavailable
from handwork_payments.kit.tasks import periodic_alone
from handwork_payments.models import Payment, PaymentStatus
from handwork_payments.payments import background, service
from handwork_payments.runtime import current_runtime

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

# A provider that did not answer: try again after 30 s, 90 s, 150 s, ... (about 45 min in
# all); after that the periodic sweep of overdue releases takes over.
PROVIDER_RETRY = procrastinate.RetryStrategy(max_attempts=10, wait=30, linear_wait=60)


@blueprint.task(name="auto_release", retry=PROVIDER_RETRY)
async def auto_release(payment_id: int) -> None:
    """Release a completed booking's payment once its deadline passed, unless the client
    released it, disputed it, or it was refunded meanwhile: the state is checked again
    under the payment's lock by `release` itself."""
    runtime = current_runtime()
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
    if payment is None or payment.status != PaymentStatus.HELD or payment.auto_release_at is None:
        log.info("auto-release of payment %s skipped: %s", payment_id, payment and payment.status)
        return
    if payment.auto_release_at > now():
        return  # the deadline moved; the job for the new deadline will run
    try:
        await service.release(runtime, payment_id, actor=None)
    except ProviderUnavailable:
        raise  # the capture's answer was lost: retried, resuming it under the same key
    except DomainError as exc:
        log.info("auto-release of payment %s not done: %s", payment_id, exc.detail)


@periodic_alone(blueprint, cron="*/10 * * * *", name="guard_holds", lock="guard-holds")
async def guard_holds(timestamp: int) -> None:
    """Capture authorisations before they lapse; renew PayPal's after the honour period."""
    await background.guard_holds(current_runtime(), now=now())


@periodic_alone(
    blueprint,
    cron="* * * * *",
    name="resolve_payment_operations",
    lock="resolve-payment-operations",
)
async def resolve_payment_operations(timestamp: int) -> None:
    """Resume provider calls left in flight; release payments whose release is overdue."""
    runtime = current_runtime()
    await background.resolve_operations(runtime, now=now())
    await background.release_overdue(runtime, now=now())
