from __future__ import annotations

import logging

import procrastinate

from handwork_payments.kit.clock import now
from handwork_payments.models import PaymentMethod
from handwork_payments.payouts import service
from handwork_payments.providers.base import ProviderUnavailableError
from handwork_payments.runtime import current_runtime

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

# At most this many batches per run, so one run never holds a worker for long.
MAX_BATCHES_PER_RUN = 20


@blueprint.task(
    name="send_payout",
    retry=procrastinate.RetryStrategy(max_attempts=10, exponential_wait=2),
)
async def send_payout(payout_id: int) -> None:
    await service.send(current_runtime(), payout_id)


@blueprint.task(name="send_payout_batch")
async def send_payout_batch(method: str) -> None:
    """Send the processed payouts of `method` waiting for a batch (deferred by `process`,
    locked per method so that payouts processed meanwhile gather for the next one). A
    batch whose answer is lost stays marked; the resolver asks again under its key."""
    try:
        await service.send_batch(current_runtime(), method)
    except ProviderUnavailableError:
        log.warning("%s payout batch: no answer, left to the resolver", method)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(
    name="send_payout_batches", queueing_lock="payout-batches", lock="payout-batch-paypal"
)
async def send_payout_batches(timestamp: int) -> None:
    """What the per-process jobs left: more than PAYOUT_BATCH_SIZE at once, a lost job."""
    runtime = current_runtime()
    for method in PaymentMethod:
        for _ in range(MAX_BATCHES_PER_RUN):
            try:
                if not await service.send_batch(runtime, method):
                    break
            except ProviderUnavailableError:
                log.warning("%s payout batch: no answer, left to the resolver", method)
                break


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="resolve_payouts", queueing_lock="resolve-payouts", lock="resolve-payouts")
async def resolve_payouts(timestamp: int) -> None:
    """Payouts left processing: re-query the provider under the same key, never resend."""
    await service.resolve_payouts(current_runtime(), now=now())
