"""Stripe's webhook format, shared by the real adapter and the simulator: the
`Stripe-Signature` scheme (HMAC-SHA256 of "{t}.{payload}", with a tolerance) and the
translation of Stripe events into ProviderEvents."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from handwork_payments.providers.base import EventKind, InvalidSignatureError, ProviderEvent

# Stripe event type -> what it means to us. Anything else is recorded and ignored.
KINDS: dict[str, EventKind] = {
    "payment_intent.amount_capturable_updated": EventKind.HOLD_AUTHORIZED,
    "payment_intent.succeeded": EventKind.CAPTURED,
    "payment_intent.payment_failed": EventKind.HOLD_FAILED,
    "payment_intent.canceled": EventKind.HOLD_CANCELED,
    "charge.refunded": EventKind.REFUNDED,
    "charge.dispute.created": EventKind.DISPUTE_OPENED,
    "charge.dispute.closed": EventKind.DISPUTE_CLOSED,
    "transfer.reversed": EventKind.PAYOUT_FAILED,
    "transfer.failed": EventKind.PAYOUT_FAILED,
    "transfer.created": EventKind.PAYOUT_SUCCEEDED,
    "account.updated": EventKind.ACCOUNT_UPDATED,
}


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header value for `payload`, as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(payload: bytes, header: str | None, secret: str, tolerance_seconds: int) -> None:
    if not header:
        raise InvalidSignatureError("missing Stripe-Signature header")
    items = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamps = [v for k, v in items if k == "t"]
    signatures = [v for k, v in items if k == "v1"]
    if not timestamps or not signatures or not timestamps[0].isdigit():
        raise InvalidSignatureError("malformed Stripe-Signature header")
    t = int(timestamps[0])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignatureError("Stripe-Signature does not match the payload")
    if abs(time.time() - t) > tolerance_seconds:
        raise InvalidSignatureError("Stripe-Signature timestamp is outside the tolerance")


def translate(event: Mapping[str, Any]) -> ProviderEvent:
    """A verified Stripe event as a ProviderEvent. The object is applied as delivered:
    the signature proves Stripe sent it."""
    try:
        event_id = str(event["id"])
        event_type = str(event["type"])
        obj: Mapping[str, Any] = event["data"]["object"]
    except (KeyError, TypeError) as exc:
        raise InvalidSignatureError("not a Stripe event") from exc
    kind = KINDS.get(event_type, EventKind.IGNORED)
    common: dict[str, Any] = {
        "provider": "stripe",
        "event_id": event_id,
        "event_type": event_type,
        "kind": kind,
        "data": obj,
    }
    if event_type.startswith("payment_intent."):
        error = obj.get("last_payment_error") or {}
        return ProviderEvent(
            **common,
            object_id=obj.get("id"),
            amount=obj.get("amount_capturable") or obj.get("amount_received") or obj.get("amount"),
            failure_message=error.get("message") if isinstance(error, Mapping) else None,
        )
    if event_type == "charge.refunded":
        return ProviderEvent(
            **common, object_id=obj.get("payment_intent"), amount=obj.get("amount_refunded")
        )
    if event_type.startswith("charge.dispute."):
        return ProviderEvent(
            **common,
            object_id=obj.get("payment_intent"),
            amount=obj.get("amount"),
            dispute_id=obj.get("id"),
            dispute_won=obj.get("status") == "won" if event_type.endswith("closed") else None,
            failure_message=obj.get("reason"),
        )
    if event_type.startswith("transfer."):
        return ProviderEvent(
            **common,
            object_id=obj.get("id"),
            amount=obj.get("amount"),
            failure_message="transfer reversed" if kind is EventKind.PAYOUT_FAILED else None,
        )
    if event_type == "account.updated":
        return ProviderEvent(
            **common, object_id=obj.get("id"), payouts_enabled=bool(obj.get("payouts_enabled"))
        )
    return ProviderEvent(**common, object_id=obj.get("id") if isinstance(obj, Mapping) else None)


def parse(
    headers: Mapping[str, str], body: bytes, secret: str, tolerance_seconds: int
) -> ProviderEvent:
    signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
    verify(body, signature, secret, tolerance_seconds)
    return translate_body(body)


def translate_body(body: bytes) -> ProviderEvent:
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidSignatureError("body is not JSON") from exc
    if not isinstance(event, dict):
        raise InvalidSignatureError("not a Stripe event")
    return translate(event)
