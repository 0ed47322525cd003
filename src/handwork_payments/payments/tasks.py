from __future__ import annotations

import logging

import procrastinate

from handwork_payments import worker
from handwork_payments.kit.errors import DomainError
from handwork_payments.models import Payment, PaymentStatus
from handwork_payments.payments import service

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()


@blueprint.task(
    name="auto_release",
    retry=procrastinate.RetryStrategy(max_attempts=10, exponential_wait=5),
)
async def auto_release(payment_id: int) -> None:
    """Release a completed booking's payment once its deadline passed, unless the client
    released it, disputed it, or it was refunded meanwhile: the state is checked again
    under the payment's lock by `release` itself."""
    runtime = worker.runtime()
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
    if payment is None or payment.status != PaymentStatus.HELD or payment.auto_release_at is None:
        log.info("auto-release of payment %s skipped: %s", payment_id, payment and payment.status)
        return
    if payment.auto_release_at > service.now():
        return  # the deadline moved; the job for the new deadline will run
    try:
        await service.release(runtime, payment_id, actor=None)
    except DomainError as exc:
        log.info("auto-release of payment %s not done: %s", payment_id, exc.detail)
