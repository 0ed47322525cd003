"""Stripe's webhook format, shared by the real adapter and the simulator: the
`Stripe-Signature` scheme (HMAC-SHA256 of "{t}.{payload}", with a tolerance) and the
translation of Stripe events into ProviderEvents."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from handwork_payments.providers.base import (
    ChargebackOutcome,
    EventKind,
    InvalidSignatureError,
    ProviderEvent,
    ProviderIds,
    event_object,
)

# Stripe card authorisations lapse 7 days after the intent was created.
AUTHORIZATION_DAYS = 7

# Stripe event type -> what it means to us. Anything else is recorded and ignored.
KINDS: dict[str, EventKind] = {
    "payment_intent.amount_capturable_updated": EventKind.HOLD_AUTHORIZED,
    "payment_intent.succeeded": EventKind.CAPTURED,
    "payment_intent.payment_failed": EventKind.HOLD_FAILED,
    "payment_intent.canceled": EventKind.HOLD_CANCELED,
    "charge.refunded": EventKind.REFUNDED,
    "charge.dispute.created": EventKind.DISPUTE_OPENED,
    "charge.dispute.closed": EventKind.DISPUTE_CLOSED,
    "transfer.reversed": EventKind.TRANSFER_REVERSED,
    "transfer.failed": EventKind.PAYOUT_FAILED,
    "transfer.created": EventKind.PAYOUT_SUCCEEDED,
    "account.updated": EventKind.ACCOUNT_UPDATED,
    "setup_intent.succeeded": EventKind.SETUP_SUCCEEDED,
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
    # Only ASCII is compared: compare_digest refuses other text, and "²".isdigit() is True.
    signatures = [v for k, v in items if k == "v1" and v.isascii()]
    if not timestamps or not signatures or not _is_ascii_digits(timestamps[0]):
        raise InvalidSignatureError("malformed Stripe-Signature header")
    t = int(timestamps[0])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise InvalidSignatureError("Stripe-Signature does not match the payload")
    if abs(time.time() - t) > tolerance_seconds:
        raise InvalidSignatureError("Stripe-Signature timestamp is outside the tolerance")


def _is_ascii_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _capture_by(intent: Mapping[str, Any]) -> datetime | None:
    created = _int(intent.get("created"))
    if created is None:
        return None
    return datetime.fromtimestamp(created, UTC) + timedelta(days=AUTHORIZATION_DAYS)


def _charge_id(intent: Mapping[str, Any]) -> str | None:
    charge = intent.get("latest_charge")
    if isinstance(charge, Mapping):
        return _str(charge.get("id"))
    return _str(charge)


def _amount_received(intent: Mapping[str, Any]) -> int | None:
    """What the intent captured: `amount_received`, else its expanded charge's."""
    received = _int(intent.get("amount_received"))
    if received is not None:
        return received
    charge = intent.get("latest_charge")
    return _int(charge.get("amount_captured")) if isinstance(charge, Mapping) else None


def _intent_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    error = obj.get("last_payment_error")
    return {
        "object_id": _str(obj.get("id")),
        "amount": _int(obj.get("amount_capturable"))
        or _int(obj.get("amount_received"))
        or _int(obj.get("amount")),
        "failure_message": _str(error.get("message")) if isinstance(error, Mapping) else None,
        "capture_by": _capture_by(obj),
        "cancellation_reason": _str(obj.get("cancellation_reason")),
        "capture_id": _charge_id(obj),
        "captured_amount": _amount_received(obj),
    }


def _refund_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    refunded = _int(obj.get("amount_refunded"))
    return {
        "object_id": _str(obj.get("payment_intent")),
        "amount": refunded,
        "refunded_total": refunded or 0,
    }


def _dispute_fields(obj: Mapping[str, Any], closed: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "object_id": _str(obj.get("payment_intent")),
        "amount": _int(obj.get("amount")),
        "dispute_id": _str(obj.get("id")),
        "failure_message": _str(obj.get("reason")),
        "dispute_fee": _dispute_fee(obj),
    }
    if closed:
        # Only "lost" leaves the money with the payer; "won" and "warning_closed" (an
        # inquiry closed without a chargeback) leave it with us.
        status = _str(obj.get("status")) or "lost"
        fields["dispute_detail"] = status
        fields["dispute_outcome"] = (
            ChargebackOutcome.LOST if status == "lost" else ChargebackOutcome.WON
        )
    return fields


def _dispute_fee(obj: Mapping[str, Any]) -> int | None:
    """The dispute fee Stripe has kept so far: the fees of the dispute's balance
    transactions (the withdrawal's, less the reinstatement's when Stripe returned it on a
    won dispute). None when the dispute lists none (an inquiry, or a peer that keeps none)."""
    lines = obj.get("balance_transactions")
    if not isinstance(lines, list) or not lines:
        return None
    return sum(_int(line.get("fee")) or 0 for line in lines if isinstance(line, Mapping))


def _transfer_fields(obj: Mapping[str, Any], kind: EventKind) -> dict[str, Any]:
    amount = _int(obj.get("amount"))
    reversed_amount = _int(obj.get("amount_reversed")) or 0
    failed = kind in (EventKind.PAYOUT_FAILED, EventKind.TRANSFER_REVERSED)
    return {
        "object_id": _str(obj.get("id")),
        "amount": amount,
        "failure_message": "transfer reversed" if failed else None,
        "reversed_amount": reversed_amount,
        "reversed_in_full": obj.get("reversed") is True
        or (bool(amount) and reversed_amount >= (amount or 0)),
    }


def _foreign(obj: Mapping[str, Any], ids: ProviderIds | None) -> str | None:
    """The reference of an object another installation made on this Stripe account (our
    metadata `reference` under another prefix), or None."""
    metadata = obj.get("metadata")
    reference = metadata.get("reference") if isinstance(metadata, Mapping) else None
    return reference if ids is not None and reference and ids.foreign(reference) else None


def translate(event: Mapping[str, Any], ids: ProviderIds | None = None) -> ProviderEvent:
    """A verified Stripe event as a ProviderEvent. The object is applied as delivered:
    the signature proves Stripe sent it. An event of another shape is refused. With `ids`,
    an object another installation made (its metadata reference under another prefix) is
    IGNORED: recorded, never applied."""
    event_id, event_type, obj = event.get("id"), event.get("type"), None
    data = event.get("data")
    if isinstance(data, Mapping):
        obj = data.get("object")
    if not (_str(event_id) and _str(event_type) and isinstance(obj, Mapping)):
        raise InvalidSignatureError("not a Stripe event (id, type and data.object expected)")
    assert isinstance(event_id, str) and isinstance(event_type, str)
    if "id" in obj and not _str(obj["id"]):
        # Every Stripe object's id is a string: anything else names no object of ours.
        raise InvalidSignatureError("data.object.id must be a string")
    kind = KINDS.get(event_type, EventKind.IGNORED)
    foreign = _foreign(obj, ids)
    if foreign is not None:
        return ProviderEvent(
            provider="stripe",
            event_id=event_id,
            event_type=event_type,
            kind=EventKind.IGNORED,
            object_id=_str(obj.get("id")),
            data=obj,
            failure_message=f"another installation's object ({foreign})",
        )
    if event_type == "charge.refunded" and obj.get("captured") is False:
        # An uncaptured charge "refunded" is a canceled authorisation:
        # payment_intent.canceled says so.
        kind = EventKind.IGNORED
    common: dict[str, Any] = {
        "provider": "stripe",
        "event_id": event_id,
        "event_type": event_type,
        "kind": kind,
        "data": obj,
    }
    if event_type.startswith("payment_intent."):
        return ProviderEvent(**common, **_intent_fields(obj))
    if event_type == "charge.refunded":
        return ProviderEvent(**common, **_refund_fields(obj))
    if event_type.startswith("charge.dispute."):
        return ProviderEvent(**common, **_dispute_fields(obj, event_type.endswith("closed")))
    if event_type.startswith("transfer."):
        return ProviderEvent(**common, **_transfer_fields(obj, kind))
    if event_type == "account.updated":
        return ProviderEvent(
            **common,
            object_id=_str(obj.get("id")),
            payouts_enabled=obj.get("payouts_enabled") is True,
        )
    return ProviderEvent(**common, object_id=_str(obj.get("id")))


def parse(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    tolerance_seconds: int,
    ids: ProviderIds | None = None,
) -> ProviderEvent:
    signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
    verify(body, signature, secret, tolerance_seconds)
    return translate_body(body, ids)


def translate_body(body: bytes, ids: ProviderIds | None = None) -> ProviderEvent:
    return translate(event_object(body, "body is not a JSON event", "not a Stripe event"), ids)
