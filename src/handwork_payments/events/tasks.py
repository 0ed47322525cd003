from __future__ import annotations

import procrastinate

from handwork_payments.events import delivery
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()


@blueprint.task(
    name="deliver_event",
    # A failed POST schedules its own next attempt (delivery.deliver: backoff visible on
    # the event, dead at MARKETPLACE_WEBHOOK_MAX_ATTEMPTS). This retry is only for a
    # failure to record that, or a worker stopped mid-job.
    retry=procrastinate.RetryStrategy(max_attempts=5, wait=5, linear_wait=30),
)
async def deliver_event(event_id: int) -> None:
    await delivery.deliver(current_runtime(), event_id)
