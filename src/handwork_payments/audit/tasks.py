from __future__ import annotations

import procrastinate

from handwork_payments.audit.chain import seal
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()

# How often new audit rows are sealed into the chain: the window in which a row not yet
# sealed could be deleted unnoticed.
SEAL_CRON = "* * * * * */10"


@blueprint.periodic(cron=SEAL_CRON)
@blueprint.task(name="seal_audit_chain", queueing_lock="seal-audit-chain")
async def seal_audit_chain(timestamp: int) -> None:
    await seal(current_runtime().sessions)
