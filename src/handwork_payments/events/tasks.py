from __future__ import annotations

import procrastinate
from procrastinate.job_context import JobContext

from handwork_payments.events import delivery
from handwork_payments.kit.tasks import RECORDING_RETRY
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()


# A failed POST schedules its own next attempt (delivery.deliver: backoff visible on the
# event, dead at MARKETPLACE_WEBHOOK_MAX_ATTEMPTS).
@blueprint.task(name="deliver_event", retry=RECORDING_RETRY, pass_context=True)
async def deliver_event(context: JobContext, event_id: int) -> None:
    await delivery.deliver(current_runtime(), context.app.connector, event_id)
