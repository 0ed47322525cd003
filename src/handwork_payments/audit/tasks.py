from __future__ import annotations

import procrastinate

from handwork_payments.audit import delivery
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()

# 2, 4, 8 ... 4096 seconds apart: a receiver down for about two hours still gets it.
DELIVERY_ATTEMPTS = 12


@blueprint.task(
    name="deliver_alert",
    retry=procrastinate.RetryStrategy(max_attempts=DELIVERY_ATTEMPTS, exponential_wait=2),
)
async def deliver_alert(alert_id: int) -> None:
    """Deferred with the alert's first occurrence (audit/alerts.py)."""
    await delivery.deliver(current_runtime(), alert_id)
