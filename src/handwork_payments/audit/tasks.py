from __future__ import annotations

import procrastinate

from handwork_payments.audit import delivery
from handwork_payments.audit.chain import seal
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()

# How often new audit rows are sealed into the chain: the window in which a row not yet
# sealed could be deleted unnoticed.
SEAL_CRON = "* * * * * */10"

# 2, 4, 8 ... 4096 seconds apart: a receiver down for about two hours still gets it.
DELIVERY_ATTEMPTS = 12


@blueprint.periodic(cron=SEAL_CRON)
@blueprint.task(name="seal_audit_chain", queueing_lock="seal-audit-chain")
async def seal_audit_chain(timestamp: int) -> None:
    await seal(current_runtime().sessions)


@blueprint.task(
    name="deliver_alert",
    retry=procrastinate.RetryStrategy(max_attempts=DELIVERY_ATTEMPTS, exponential_wait=2),
)
async def deliver_alert(alert_id: int) -> None:
    """Deferred with the alert's first occurrence (audit/alerts.py)."""
    await delivery.deliver(current_runtime(), alert_id)
