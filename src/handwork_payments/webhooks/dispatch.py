"""Which handler applies a translated event: one table from (provider, EventKind) to the
handler, read by `apply`. The shared handlers live in `webhooks.handlers`; what only one
provider does, in `webhooks.stripe` and `webhooks.paypal`. A kind with no entry (IGNORED,
or one a provider never sends) is recorded and not applied."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from handwork_payments.models import PaymentMethod
from handwork_payments.providers.base import EventKind, ProviderEvent
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import handlers, paypal, stripe

log = logging.getLogger(__name__)

Handler = Callable[[Runtime, ProviderEvent], Awaitable[None]]

STRIPE = PaymentMethod.STRIPE
PAYPAL = PaymentMethod.PAYPAL

HANDLERS: dict[tuple[str, EventKind], Handler] = {
    (STRIPE, EventKind.HOLD_AUTHORIZED): handlers.hold_event,
    (STRIPE, EventKind.HOLD_FAILED): handlers.hold_event,
    (STRIPE, EventKind.HOLD_CANCELED): handlers.hold_event,
    (STRIPE, EventKind.CAPTURED): handlers.captured_event,
    (STRIPE, EventKind.REFUNDED): stripe.refunded_event,
    (STRIPE, EventKind.DISPUTE_OPENED): stripe.dispute_event,
    (STRIPE, EventKind.DISPUTE_CLOSED): stripe.dispute_event,
    (STRIPE, EventKind.PAYOUT_SUCCEEDED): handlers.payout_event,
    (STRIPE, EventKind.PAYOUT_FAILED): handlers.payout_event,
    (STRIPE, EventKind.TRANSFER_REVERSED): stripe.transfer_reversed,
    (STRIPE, EventKind.ACCOUNT_UPDATED): handlers.account_event,
    (STRIPE, EventKind.SETUP_SUCCEEDED): stripe.setup_succeeded,
    (PAYPAL, EventKind.HOLD_AUTHORIZED): handlers.hold_event,
    (PAYPAL, EventKind.HOLD_FAILED): handlers.hold_event,
    (PAYPAL, EventKind.HOLD_CANCELED): paypal.voided_event,
    (PAYPAL, EventKind.CAPTURED): handlers.captured_event,
    (PAYPAL, EventKind.REFUNDED): paypal.money_back_event,
    (PAYPAL, EventKind.DISPUTE_OPENED): paypal.dispute_event,
    (PAYPAL, EventKind.DISPUTE_CLOSED): paypal.dispute_event,
    (PAYPAL, EventKind.PAYOUT_SUCCEEDED): handlers.payout_event,
    (PAYPAL, EventKind.PAYOUT_FAILED): handlers.payout_event,
    (PAYPAL, EventKind.PAYOUT_DELAYED): handlers.payout_event,
}


async def apply(runtime: Runtime, event: ProviderEvent) -> None:
    handler = HANDLERS.get((event.provider, event.kind))
    if handler is None or event.object_id is None:
        log.info(
            "%s event %s (%s) recorded, nothing to apply",
            event.provider,
            event.event_id,
            event.event_type,
        )
        return
    await handler(runtime, event)
