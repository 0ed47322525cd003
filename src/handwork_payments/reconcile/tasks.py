from __future__ import annotations

import logging
from datetime import timedelta

import procrastinate

from handwork_payments.kit.clock import now
from handwork_payments.kit.tasks import periodic_alone
from handwork_payments.reconcile import service, statements
from handwork_payments.runtime import current_runtime

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()

# The daily run looks at what changed in the last two days (runs overlap: none is missed
# when one is late) and at every payment still in escrow.
DAILY_WINDOW = timedelta(days=2)


@periodic_alone(blueprint, cron="30 3 * * *", name="reconcile", lock="reconcile")
async def reconcile(timestamp: int) -> None:
    runtime = current_runtime()
    moment = now()
    result = await service.reconcile(runtime, now=moment, since=moment - DAILY_WINDOW)
    await service.alert_differences(runtime, result)
    log.info(
        "reconciliation: %d payments, %d payouts, %d differences",
        result.payments_checked,
        result.payouts_checked,
        len(result.differences or ()),
        extra={
            "event": "reconciliation",
            "payments_checked": result.payments_checked,
            "payouts_checked": result.payouts_checked,
            "differences": len(result.differences or ()),
        },
    )


@blueprint.periodic(cron="45 3 * * *")
@blueprint.task(name="reconcile_statements", queueing_lock="reconcile_statements")
async def reconcile_statements(timestamp: int) -> None:
    """The providers' statements of the last two days against our books, daily."""
    runtime = current_runtime()
    moment = now()
    result = await statements.reconcile_statements(runtime, now=moment, since=moment - DAILY_WINDOW)
    await statements.alert_statement_differences(runtime, result)
    log.info(
        "statement reconciliation: %d lines, %d differences",
        result.lines_checked,
        len(result.differences or ()),
        extra={
            "event": "statement_reconciliation",
            "lines_checked": result.lines_checked,
            "differences": len(result.differences or ()),
        },
    )
