"""Delivering the outbox: one POST per event to MARKETPLACE_WEBHOOK_URL, at least once.

The event is read, the POST made with no transaction open (no pooled connection or row
lock across the network), then the outcome written under the event's lock. A failure
schedules the next attempt (exponential backoff from MARKETPLACE_WEBHOOK_RETRY_BASE_SECONDS)
in the same transaction; after MARKETPLACE_WEBHOOK_MAX_ATTEMPTS the event is dead, with an
alert, until an admin redelivers it. The event's id is the same in every delivery: the
receiver deduplicates on it (a delivery whose answer was lost is sent again)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from procrastinate import BaseConnector
from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.events.outbox import DELIVER_TASK
from handwork_payments.events.signing import SIGNATURE_HEADER, signature
from handwork_payments.kit import jobs
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import NotFound
from handwork_payments.kit.outbound import Unreachable
from handwork_payments.kit.rows import lock_row_or_none
from handwork_payments.models import EventStatus, MarketplaceEvent
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings

log = logging.getLogger(__name__)

SETTLED = (EventStatus.DELIVERED, EventStatus.DEAD)


def payload(event: Mapping[str, Any]) -> bytes:
    """The body of a delivery, from the event's row (`_READ`'s columns)."""
    body: dict[str, Any] = {
        "id": event["public_id"],
        "type": event["type"],
        "created": int(event["created_at"].timestamp()),
        "data": event["data"],
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    seconds = settings.marketplace_webhook_retry_base_seconds * 2 ** min(attempts - 1, 30)
    return timedelta(seconds=min(seconds, settings.marketplace_webhook_retry_max_seconds))


async def _post(runtime: Runtime, event: Mapping[str, Any]) -> str | None:
    """POST the event; None when the receiver took it (2xx), else what went wrong."""
    settings = runtime.settings
    if not settings.marketplace_webhook_url or not settings.marketplace_webhook_secret:
        return "MARKETPLACE_WEBHOOK_URL or MARKETPLACE_WEBHOOK_SECRET is not set"
    body = payload(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "handwork-payments",
        SIGNATURE_HEADER: signature(
            body, settings.marketplace_webhook_secret, int(now().timestamp())
        ),
    }
    url, timeout = settings.marketplace_webhook_url, settings.marketplace_webhook_timeout_seconds
    try:
        answer = await runtime.outbound.post(url, body, headers, timeout)
    except Unreachable as exc:
        return str(exc)[:2000]
    if 200 <= answer.status < 300:
        return None
    return f"HTTP {answer.status}: {answer.text}"


async def deliver(runtime: Runtime, sql: BaseConnector, event_id: int) -> None:
    """Deliver one event. `sql` is the job's own connector (procrastinate's psycopg pool):
    a delivery that succeeds is two plain statements on it, the event read and marked
    delivered, each in autocommit. Through the ORM's sessions they cost a third of a
    delivery's CPU, the queue's own work as much again (measured: issue 11)."""
    settings = runtime.settings
    event = await sql.execute_query_one_async(_READ, event_id=event_id)
    if event is None or event["status"] in SETTLED:
        return
    if not settings.marketplace_webhook_url:
        return  # kept, listed, not sent: nobody to send it to (see the README)
    error = await _post(runtime, event)
    if error is None:
        # A concurrent delivery (a redelivery) that settled it first leaves it as it is.
        await sql.execute_query_async(_DELIVERED, event_id=event_id, at=now())
        return
    async with transaction(runtime.sessions) as session:
        row = await lock_row_or_none(session, MarketplaceEvent, event_id)
        assert row is not None
        if row.status in SETTLED:
            return  # settled by a concurrent delivery (a redelivery)
        row.attempts += 1
        await _failed(session, settings, row, error)


_READ = """
    SELECT public_id, type, data, status, created_at FROM marketplace_events
    WHERE id = %(event_id)s
"""
_DELIVERED = f"""
    UPDATE marketplace_events
    SET status = '{EventStatus.DELIVERED}', attempts = attempts + 1, delivered_at = %(at)s,
        next_attempt_at = NULL, last_error = NULL
    WHERE id = %(event_id)s AND status NOT IN ({", ".join(f"'{s}'" for s in SETTLED)})
"""


async def _failed(
    session: AsyncSession, settings: Settings, row: MarketplaceEvent, error: str
) -> None:
    row.last_error = error
    if row.attempts >= settings.marketplace_webhook_max_attempts:
        row.status = EventStatus.DEAD
        row.next_attempt_at = None
        await alert(
            session,
            "event_dead",
            f"Event {row.public_id} ({row.type}) undelivered after {row.attempts} attempts: "
            f"{error}",
            "event",
            row.id,
        )
    else:
        row.status = EventStatus.FAILED
        row.next_attempt_at = now() + retry_delay(settings, row.attempts)
        await jobs.defer(
            session, DELIVER_TASK, args={"event_id": row.id}, scheduled_at=row.next_attempt_at
        )
    log.warning(
        "event %s delivery failed (attempt %s): %s",
        row.public_id,
        row.attempts,
        error,
        extra={"event": "marketplace_event_failed", "event_id": row.public_id},
    )


async def redeliver(runtime: Runtime, event_id: int) -> MarketplaceEvent:
    """An admin sends an event again, whatever its status (the receiver deduplicates)."""
    async with transaction(runtime.sessions) as session:
        row = await lock_row_or_none(session, MarketplaceEvent, event_id)
        if row is None:
            raise NotFound("Event not found")
        row.status = EventStatus.PENDING
        row.next_attempt_at = now()
        await jobs.defer(session, DELIVER_TASK, args={"event_id": row.id})
    return row
