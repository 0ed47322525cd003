from __future__ import annotations

import procrastinate

from handwork_payments.events import delivery
from handwork_payments.kit.tasks import RECORDING_RETRY
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()


# A failed POST schedules its own next attempt (delivery.deliver: backoff visible on the
# event, dead at MARKETPLACE_WEBHOOK_MAX_ATTEMPTS).
@blueprint.task(name="deliver_event", retry=RECORDING_RETRY)
async def deliver_event(event_id: int) -> None:
    await delivery.deliver(current_runtime(), event_id)
