from __future__ import annotations

import procrastinate

from handwork_payments.kit.tasks import RECORDING_RETRY
from handwork_payments.runtime import current_runtime
from handwork_payments.webhooks import service

blueprint = procrastinate.Blueprint()


# A failed delivery schedules its own next attempt (service.process: backoff visible on
# the delivery, dead-lettered at WEBHOOK_MAX_ATTEMPTS).
@blueprint.task(name="process_webhook", retry=RECORDING_RETRY)
async def process_webhook(delivery_id: int) -> None:
    await service.process(current_runtime(), delivery_id)
