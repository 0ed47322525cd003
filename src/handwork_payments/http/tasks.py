"""Housekeeping of the HTTP edge: expired Idempotency-Key records and ended rate-limit
windows are deleted every quarter of an hour (neither is of any use after)."""

from __future__ import annotations

import logging

import procrastinate

from handwork_payments.auth import repository as auth_repository
from handwork_payments.db import transaction
from handwork_payments.http import idempotency_records
from handwork_payments.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="*/15 * * * *")
@blueprint.task(name="purge_expired_records", queueing_lock="purge_expired_records")
async def purge_expired_records(timestamp: int) -> None:
    await purge(current_runtime())


async def purge(runtime: Runtime) -> tuple[int, int]:
    """(idempotency records, rate-limit counters) deleted."""
    async with transaction(runtime.sessions) as session:
        records = await idempotency_records.purge_expired(session)
        counters = await auth_repository.purge_counters(session)
    log.info("purged %d idempotency records and %d rate-limit counters", records, counters)
    return records, counters
