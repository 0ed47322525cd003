"""Webhook deliveries as the simulated providers send them: a signed Stripe event, and a
PayPal event signed with a scheme only the simulator accepts."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from handwork_payments.providers import stripe_events
from handwork_payments.providers.base import InvalidSignatureError
from handwork_payments.providers.simulated.store import (
    Json,
    paypal_id,
    paypal_time,
    stripe_id,
    utc_now,
)

# The webhook secret the Stripe simulator signs with when STRIPE_WEBHOOK_SECRET is unset.
SIMULATOR_WEBHOOK_SECRET = "whsec_handwork_simulator"
# Simulator-only PayPal webhook signature: HMAC-SHA256 (hex) of the body with this key, in
# PAYPAL-TRANSMISSION-SIG. Real PayPal signs with a certificate (or is asked through
# verify-webhook-signature); this scheme is accepted by the simulator and nowhere else.
PAYPAL_SIMULATOR_SIGNATURE_KEY = "paypal-simulator"
PAYPAL_SIGNATURE_HEADER = "PAYPAL-TRANSMISSION-SIG"
# The API version the pinned `stripe` SDK speaks, stamped on events.
STRIPE_API_VERSION = "2026-10-28.endive"

Delivery = tuple[bytes, dict[str, str]]


def stripe_event(event_type: str, obj: Mapping[str, Any], secret: str) -> Delivery:
    """A Stripe event about `obj` and the headers Stripe would send it with, signed with
    `secret`."""
    event: Json = {
        "id": stripe_id("evt"),
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": int(time.time()),
        "data": {"object": dict(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    body = json.dumps(event, indent=2).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": stripe_events.sign(body, secret),
    }
    return body, headers


def paypal_event(event_type: str, resource: Mapping[str, Any]) -> Delivery:
    """A PayPal webhook event about `resource`, signed with the simulator-only scheme
    (see PAYPAL_SIMULATOR_SIGNATURE_KEY)."""
    now = utc_now()
    event: Json = {
        "id": f"WH-{paypal_id()}-{paypal_id()}",
        "event_version": "1.0",
        "create_time": paypal_time(now),
        "resource_type": _paypal_resource_type(event_type),
        "event_type": event_type,
        "summary": f"Simulated {event_type}",
        "resource": dict(resource),
    }
    body = json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json",
        "PAYPAL-TRANSMISSION-ID": str(uuid.uuid4()),
        "PAYPAL-TRANSMISSION-TIME": paypal_time(now),
        "PAYPAL-AUTH-ALGO": "HMACSHA256-SIMULATOR",
        PAYPAL_SIGNATURE_HEADER: paypal_simulator_signature(body),
    }
    return body, headers


def paypal_simulator_signature(body: bytes) -> str:
    """The simulator-only PayPal signature of a webhook body (never accepted by the real
    PayPal adapter)."""
    return hmac.new(PAYPAL_SIMULATOR_SIGNATURE_KEY.encode(), body, hashlib.sha256).hexdigest()


def verify_paypal_signature(headers: Mapping[str, str], body: bytes) -> None:
    signature = next(
        (v for k, v in headers.items() if k.lower() == PAYPAL_SIGNATURE_HEADER.lower()), None
    )
    if not signature:
        raise InvalidSignatureError(f"missing {PAYPAL_SIGNATURE_HEADER} header")
    # Compared as bytes: a header may carry any Latin-1 text, which compare_digest refuses
    # to compare as str.
    given = signature.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(paypal_simulator_signature(body).encode(), given):
        raise InvalidSignatureError(f"{PAYPAL_SIGNATURE_HEADER} does not match the payload")


def _paypal_resource_type(event_type: str) -> str:
    if event_type == "PAYMENT.CAPTURE.REFUNDED":
        return "refund"
    for prefix, resource_type in (
        ("PAYMENT.CAPTURE.", "capture"),
        ("PAYMENT.AUTHORIZATION.", "authorization"),
        ("CHECKOUT.ORDER.", "checkout-order"),
        ("PAYMENT.PAYOUTS-ITEM.", "payouts_item"),
        ("PAYMENT.PAYOUTSBATCH.", "payouts"),
        ("CUSTOMER.DISPUTE.", "dispute"),
    ):
        if event_type.startswith(prefix):
            return resource_type
    return "unknown"
