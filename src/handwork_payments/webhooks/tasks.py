from __future__ import annotations

import procrastinate

from handwork_payments.runtime import current_runtime
from handwork_payments.webhooks import service

blueprint = procrastinate.Blueprint()


@blueprint.task(
    name="process_webhook",
    # A failed delivery schedules its own next attempt (service.process: backoff visible
    # on the delivery, dead-lettered at WEBHOOK_MAX_ATTEMPTS). This retry is only for a
    # failure to record that (the database gone a moment) or a worker stopped mid-job.
    retry=procrastinate.RetryStrategy(max_attempts=5, wait=5, linear_wait=30),
)
async def process_webhook(delivery_id: int) -> None:
    await service.process(current_runtime(), delivery_id)
