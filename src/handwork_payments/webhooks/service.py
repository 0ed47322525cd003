"""The webhook inbox: verify, store once, enqueue, answer fast; process in a job.

A delivery is stored before anything else is done with it, unique on (provider, event
id), and its processing job is enqueued in the same transaction, so a delivery is never
lost and never applied twice however often the provider sends it."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from handwork_payments.audit.alerts import alert
from handwork_payments.db import transaction
from handwork_payments.kit import jobs
from handwork_payments.kit.errors import BadRequest, Conflict, NotFound
from handwork_payments.models import DeliveryStatus, WebhookDelivery
from handwork_payments.payments.service import now
from handwork_payments.providers.base import InvalidSignatureError, ProviderEvent
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import events, repository

log = logging.getLogger(__name__)

PROCESS_TASK = "hp:process_webhook"
# Only these headers are kept: what verification needs, never credentials.
KEPT_HEADERS = ("stripe-signature", "content-type", "user-agent")


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): v
        for k, v in headers.items()
        if k.lower() in KEPT_HEADERS or k.lower().startswith("paypal-")
    }


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
    async with transaction(runtime.sessions) as session:
        delivery_id = await repository.insert_once(
            session,
            {
                "provider": provider_name,
                "event_id": event.event_id,
                "event_type": event.event_type,
                "headers": _kept(headers),
                "body": body.decode("utf-8", errors="replace"),
                "signature_valid": True,
            },
        )
        if delivery_id is None:
            return None, False
        await jobs.defer(
            session,
            PROCESS_TASK,
            args={"delivery_id": delivery_id},
            lock=f"webhook-{provider_name}-{event.object_id or event.event_id}",
        )
    async with runtime.sessions() as session:
        return await session.get(WebhookDelivery, delivery_id), True


async def process(runtime: Runtime, delivery_id: int) -> WebhookDelivery | None:
    """Apply a stored delivery once. Failures are recorded and re-raised for the job to
    retry with backoff; after `webhook_max_attempts` the delivery is dead-lettered."""
    async with runtime.sessions() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status == DeliveryStatus.PROCESSED:
        return delivery
    provider = runtime.providers.for_method(delivery.provider)
    try:
        # Verified when it arrived; parsing again translates the stored body the same way.
        event: ProviderEvent = await provider.parse_event(delivery.headers, delivery.body.encode())
        await events.apply(runtime, event)
    except Exception as exc:
        async with transaction(runtime.sessions) as session:
            row = await repository.lock(session, delivery_id)
            assert row is not None
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if row.attempts >= runtime.settings.webhook_max_attempts:
                row.status = DeliveryStatus.DEAD
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
            dead = row.status == DeliveryStatus.DEAD
        if dead:
            log.warning("webhook delivery %s dead-lettered", delivery_id)
            return row
        raise
    async with transaction(runtime.sessions) as session:
        row = await repository.lock(session, delivery_id)
        assert row is not None
        row.attempts += 1
        row.status = DeliveryStatus.PROCESSED
        row.processed_at = now()
        row.last_error = None
    return row


async def replay(runtime: Runtime, delivery_id: int) -> WebhookDelivery:
    """An admin sends a delivery through processing again (idempotent: applying an event
    twice changes nothing)."""
    async with transaction(runtime.sessions) as session:
        row = await repository.lock(session, delivery_id)
        if row is None:
            raise NotFound("Webhook delivery not found")
        if row.status == DeliveryStatus.RECEIVED and row.attempts == 0:
            raise Conflict("This delivery has not been processed yet")
        row.status = DeliveryStatus.RECEIVED
        await jobs.defer(session, PROCESS_TASK, args={"delivery_id": row.id})
    return row
