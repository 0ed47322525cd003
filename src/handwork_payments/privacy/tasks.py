from __future__ import annotations

import logging

import procrastinate

from handwork_payments.privacy.retention import prune_webhook_bodies
from handwork_payments.runtime import current_runtime

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="40 3 * * *")
@blueprint.task(name="prune_webhook_bodies", queueing_lock="prune-webhook-bodies")
async def prune_old_webhook_bodies(timestamp: int) -> None:
    pruned = await prune_webhook_bodies(current_runtime())
    log.info("webhook retention: %d bodies reduced to their digest", pruned)
