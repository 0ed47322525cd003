from __future__ import annotations

import procrastinate

from handwork_payments.kit.clock import now
from handwork_payments.recurring import runs
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="run_recurring", queueing_lock="run-recurring")
async def run_recurring(timestamp: int) -> None:
    """Book and charge every due occurrence. No job lock: two of these running at once
    (a stalled one retried) meet at the schedule's row lock and the run's claim, and
    charge each occurrence once."""
    await runs.run_due(current_runtime(), now=now())
