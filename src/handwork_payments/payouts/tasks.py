from __future__ import annotations

import procrastinate

from handwork_payments import worker
from handwork_payments.payouts import service

blueprint = procrastinate.Blueprint()


@blueprint.task(
    name="send_payout",
    retry=procrastinate.RetryStrategy(max_attempts=10, exponential_wait=2),
)
async def send_payout(payout_id: int) -> None:
    await service.send(worker.runtime(), payout_id)
