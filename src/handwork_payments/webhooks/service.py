"""The webhook inbox: verify, store once, enqueue, answer fast; process in a job.

A delivery is stored before anything else is done with it, unique on (provider, event
id), and its processing job is enqueued in the same transaction, so a delivery is never
lost and never applied twice however often the provider sends it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from handwork_payments.audit.alerts import alert
from handwork_payments.audit.service import record
from handwork_payments.db import transaction
from handwork_payments.kit import jobs
from handwork_payments.kit.clock import now
from handwork_payments.kit.errors import BadRequest, Conflict, NotFound, ProviderUnavailable
from handwork_payments.models import DeliveryStatus, WebhookDelivery
from handwork_payments.providers.base import (
    InvalidSignatureError,
    ProviderEvent,
    ProviderUnavailableError,
)
from handwork_payments.runtime import Runtime
from handwork_payments.settings import Settings
from handwork_payments.webhooks import dispatch, repository

log = logging.getLogger(__name__)

PROCESS_TASK = "hp:process_webhook"
# What webhook_deliveries' columns hold: a longer value is not an event of ours to store.
MAX_EVENT_ID_CHARS = 255
MAX_EVENT_TYPE_CHARS = 120
MAX_TRANSMISSION_ID_CHARS = 255
# Only these headers are kept: what verification needs, never credentials.
KEPT_HEADERS = ("stripe-signature", "content-type", "user-agent")


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): v
        for k, v in headers.items()
        if k.lower() in KEPT_HEADERS or k.lower().startswith("paypal-")
    }


def _check_storable(event: ProviderEvent) -> None:
    """An event whose ids do not fit our columns (or hold a NUL, which PostgreSQL text
    cannot) is refused with a 400, before anything is stored."""
    limits = (
        ("event id", event.event_id, MAX_EVENT_ID_CHARS),
        ("event type", event.event_type, MAX_EVENT_TYPE_CHARS),
        ("transmission id", event.transmission_id, MAX_TRANSMISSION_ID_CHARS),
        ("object id", event.object_id, None),
    )
    for name, value, limit in limits:
        if value is None:
            continue
        if limit is not None and len(value) > limit:
            raise BadRequest(f"Webhook {name} is longer than {limit} characters")
        if "\x00" in value:
            raise BadRequest(f"Webhook {name} contains a NUL character")


async def receive(
    runtime: Runtime, provider_name: str, headers: Mapping[str, str], body: bytes
) -> tuple[WebhookDelivery | None, bool]:
    """Verify and store a delivery; (delivery id, True when it is new). A bad signature
    is a 400 and nothing is stored: it cannot be trusted to name an event."""
    provider = runtime.providers.for_method(provider_name)
    try:
        event = await provider.parse_event(headers, body)
    except InvalidSignatureError as exc:
        log.warning("rejected %s webhook: %s", provider_name, exc)
        raise BadRequest(f"Invalid webhook signature: {exc}") from exc
    except ProviderUnavailableError as exc:
        # PayPal's verification endpoint did not answer: a 5xx makes PayPal deliver again.
        raise ProviderUnavailable(f"Could not verify the {provider_name} webhook now") from exc
    _check_storable(event)
    text = body.decode("utf-8", errors="replace")
    async with transaction(runtime.sessions) as session:
        delivery_id = await repository.insert_once(
            session,
            {
                "provider": provider_name,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "transmission_id": event.transmission_id,
                "headers": _kept(headers),
                "body": text,
                "signature_valid": True,
            },
        )
        if delivery_id is None:
            await _refuse_another_body(session, provider_name, event, text)
            return None, False
        await jobs.defer(
            session,
            PROCESS_TASK,
            args={"delivery_id": delivery_id},
            lock=f"webhook-{provider_name}-{event.object_id or event.event_id}",
        )
    async with runtime.sessions() as session:
        return await session.get(WebhookDelivery, delivery_id), True


async def _refuse_another_body(
    session: AsyncSession, provider_name: str, event: ProviderEvent, text: str
) -> None:
    """A delivery stored before under the same transmission id must be the same body: the
    signature headers of one transmission never vouch for a second body (a forged body
    can match PayPal's CRC32 with a 4-byte pad). The same body is a plain duplicate."""
    if event.transmission_id is None:
        return
    stored = await repository.body_of_transmission(session, provider_name, event.transmission_id)
    if stored is not None and stored != text:
        log.warning(
            "rejected %s webhook: transmission %s was received with another body",
            provider_name,
            event.transmission_id,
        )
        raise BadRequest("Invalid webhook signature: this transmission was received already")


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """Exponential backoff: base, 2 x base, 4 x base, ... at most the maximum."""
    seconds = settings.webhook_retry_base_seconds * 2 ** min(attempts - 1, 30)
    return timedelta(seconds=min(seconds, settings.webhook_retry_max_seconds))


async def process(runtime: Runtime, delivery_id: int) -> WebhookDelivery | None:
    """Apply a stored delivery once. A failure is recorded with the time of the next
    attempt (`next_attempt_at`, exponential backoff), whose job is enqueued in the same
    transaction; after WEBHOOK_MAX_ATTEMPTS the delivery is dead-lettered with an alert
    and waits for an admin's replay."""
    async with runtime.sessions() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status in (DeliveryStatus.PROCESSED, DeliveryStatus.DEAD):
        return delivery
    provider = runtime.providers.for_method(delivery.provider)
    try:
        # Verified when it arrived: translated again, never re-verified (Stripe's signature
        # tolerance would refuse every retry made more than five minutes later).
        # Retention empties only processed bodies, and replay refuses those.
        assert delivery.body is not None, f"delivery {delivery_id} has no body any more"
        event: ProviderEvent = await provider.translate_event(delivery.body.encode())
        await dispatch.apply(runtime, event)
    except Exception as exc:
        return await _failed(runtime, delivery_id, exc)
    async with transaction(runtime.sessions) as session:
        row = await repository.lock(session, delivery_id)
        assert row is not None
        row.attempts += 1
        row.status = DeliveryStatus.PROCESSED
        row.processed_at = now()
        row.next_attempt_at = None
        row.last_error = None
    return row


async def _failed(runtime: Runtime, delivery_id: int, exc: Exception) -> WebhookDelivery:
    async with transaction(runtime.sessions) as session:
        row = await repository.lock(session, delivery_id)
        assert row is not None
        if row.status in (DeliveryStatus.PROCESSED, DeliveryStatus.DEAD):
            return row  # settled by a concurrent attempt (a replay)
        row.attempts += 1
        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if row.attempts >= runtime.settings.webhook_max_attempts:
            row.status = DeliveryStatus.DEAD
            row.next_attempt_at = None
            await alert(
                session,
                "webhook_dead",
                f"{row.provider} webhook {row.event_id} ({row.event_type}) dead-lettered "
                f"after {row.attempts} attempts: {row.last_error}",
                "webhook",
                row.id,
            )
        else:
            row.status = DeliveryStatus.FAILED
            row.next_attempt_at = now() + retry_delay(runtime.settings, row.attempts)
            # No job lock: a delivery waiting for its retry must not hold back later
            # events about the same object (events converge in any order).
            await jobs.defer(
                session,
                PROCESS_TASK,
                args={"delivery_id": row.id},
                scheduled_at=row.next_attempt_at,
            )
    log.warning(
        "webhook delivery %s failed (attempt %s): %s",
        delivery_id,
        row.attempts,
        row.last_error,
        extra={
            "event": "webhook_failed",
            "delivery_id": row.id,
            "provider": row.provider,
            "event_id": row.event_id,
            "attempts": row.attempts,
            "status": str(row.status),
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        },
    )
    return row


async def replay(
    runtime: Runtime, delivery_id: int, actor_id: int | None = None
) -> WebhookDelivery:
    """An admin sends a delivery through processing again (idempotent: applying an event
    twice changes nothing). Audited."""
    async with transaction(runtime.sessions) as session:
        row = await repository.lock(session, delivery_id)
        if row is None:
            raise NotFound("Webhook delivery not found")
        if row.status == DeliveryStatus.RECEIVED and row.attempts == 0:
            raise Conflict("This delivery has not been processed yet")
        if row.body is None:
            raise Conflict("This delivery's body is no longer kept (WEBHOOK_RETENTION_DAYS)")
        await record(
            session,
            actor_id=actor_id,
            action="webhook.replayed",
            object_type="webhook",
            object_id=row.id,
            before={"status": row.status, "attempts": row.attempts},
        )
        row.status = DeliveryStatus.RECEIVED
        row.next_attempt_at = now()
        await jobs.defer(session, PROCESS_TASK, args={"delivery_id": row.id})
    return row
