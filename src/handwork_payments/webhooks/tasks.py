from __future__ import annotations

import procrastinate

from handwork_payments import worker
from handwork_payments.webhooks import service

blueprint = procrastinate.Blueprint()


@blueprint.task(
    name="process_webhook",
    # The service dead-letters after WEBHOOK_MAX_ATTEMPTS (at most 50); until then, retry.
    retry=procrastinate.RetryStrategy(max_attempts=50, exponential_wait=2),
)
async def process_webhook(delivery_id: int) -> None:
    await service.process(worker.runtime(), delivery_id)
