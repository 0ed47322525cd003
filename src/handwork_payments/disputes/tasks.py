from __future__ import annotations

import procrastinate

from handwork_payments.disputes import submission
from handwork_payments.kit.clock import now
from handwork_payments.kit.tasks import periodic_alone
from handwork_payments.runtime import current_runtime

blueprint = procrastinate.Blueprint()


@periodic_alone(
    blueprint,
    cron="*/5 * * * *",
    name="resume_evidence_submissions",
    lock="resume-evidence-submissions",
)
async def resume_evidence_submissions(timestamp: int) -> None:
    """Chargeback evidence whose submission never got an answer: sent again, once."""
    await submission.resume_stale(current_runtime(), now=now())
