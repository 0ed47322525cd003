"""PayPal's webhook format, shared by the real adapter and the simulator: the offline
signature check (CRC32 of the body, SHA256withRSA over the certificate PayPal points at)
and the translation of PayPal events into ProviderEvents.

What `object_id` holds, by event (it must be the id our payments / payouts rows store):
- CHECKOUT.ORDER.APPROVED -> IGNORED (see below); the order id.
- PAYMENT.AUTHORIZATION.CREATED / VOIDED -> HOLD_AUTHORIZED / HOLD_CANCELED,
  PAYMENT.CAPTURE.COMPLETED / DENIED -> CAPTURED / HOLD_FAILED: the order id, from
  supplementary_data.related_ids.order_id.
- PAYMENT.CAPTURE.REFUNDED / REVERSED -> REFUNDED: the related order id when PayPal includes
  it, else None.
- CUSTOMER.DISPUTE.CREATED / RESOLVED -> DISPUTE_OPENED / DISPUTE_CLOSED: None (a dispute
  names the capture); dispute_id, and dispute_outcome (won / lost / unknown) from
  dispute_outcome.outcome_code.
- PAYMENT.PAYOUTS-ITEM.SUCCEEDED -> PAYOUT_SUCCEEDED; FAILED / RETURNED / BLOCKED / CANCELED /
  DENIED / REFUNDED -> PAYOUT_FAILED; UNCLAIMED / HELD -> PAYOUT_DELAYED: the payout_item_id.
Amounts are integer minor units; a refund's is the capture's cumulative refunded amount when
PayPal includes it (seller_payable_breakdown.total_refunded_amount), as Stripe's is.

Refunds and disputes do not carry the order id (a refund points at its capture through the
"up" link, a dispute through disputed_transactions[].seller_transaction_id), so `translate`
leaves object_id None and `lookup_hint` says which capture to ask PayPal about; the adapter
(`PayPalProvider.parse_event`) fills the order id in from GET /v2/payments/captures/{id}.
Our own ids travel too, under the installation's prefix (ProviderIds): custom_id and
invoice_id are "{prefix}-payment-{id}" on orders, captures and refunds
(`payment_id_from_reference` reads them), and sender_item_id is "{prefix}-payout-{id}" on
payout items (`payout_id` on the event). Everything the domain needs is a typed field of the
ProviderEvent; `data` (the resource as delivered) is for the audit trail only.

CHECKOUT.ORDER.APPROVED is IGNORED: the payer approved, but nothing is reserved until we
authorise the order (confirm_hold), so it must not move a payment to held. Its object_id is
still the order id, so a service may use it as a hint to authorise an order whose payer never
came back to the return URL.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from handwork_payments.kit.money import MoneyError, normalize_currency, to_minor
from handwork_payments.providers.base import (
    ChargebackOutcome,
    EventKind,
    InvalidSignatureError,
    ProviderEvent,
    ProviderIds,
    event_object,
)

PROVIDER = "paypal"

# PayPal event type -> what it means to us. Anything else is recorded and ignored.
KINDS: dict[str, EventKind] = {
    "PAYMENT.AUTHORIZATION.CREATED": EventKind.HOLD_AUTHORIZED,
    "PAYMENT.AUTHORIZATION.VOIDED": EventKind.HOLD_CANCELED,
    "PAYMENT.CAPTURE.COMPLETED": EventKind.CAPTURED,
    "PAYMENT.CAPTURE.DENIED": EventKind.HOLD_FAILED,
    "PAYMENT.CAPTURE.REFUNDED": EventKind.REFUNDED,
    # A reversal (PayPal or the bank taking the money back, e.g. a chargeback settled
    # against us) takes the money back from us just as a refund does.
    "PAYMENT.CAPTURE.REVERSED": EventKind.REFUNDED,
    "CUSTOMER.DISPUTE.CREATED": EventKind.DISPUTE_OPENED,
    "CUSTOMER.DISPUTE.RESOLVED": EventKind.DISPUTE_CLOSED,
    "PAYMENT.PAYOUTS-ITEM.SUCCEEDED": EventKind.PAYOUT_SUCCEEDED,
    "PAYMENT.PAYOUTS-ITEM.FAILED": EventKind.PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.RETURNED": EventKind.PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.BLOCKED": EventKind.PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.CANCELED": EventKind.PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.DENIED": EventKind.PAYOUT_FAILED,
    "PAYMENT.PAYOUTS-ITEM.REFUNDED": EventKind.PAYOUT_FAILED,
    # UNCLAIMED: the receiver has no PayPal account yet and 30 days to claim; the money is
    # still on its way, so failing the payout here would hand the worker their balance back
    # while the payment may still be claimed. PayPal sends RETURNED when the window closes.
    "PAYMENT.PAYOUTS-ITEM.UNCLAIMED": EventKind.PAYOUT_DELAYED,
    "PAYMENT.PAYOUTS-ITEM.HELD": EventKind.PAYOUT_DELAYED,
}

# Dispute outcomes (disputes v1 `dispute_outcome.outcome_code`) in which the seller keeps
# the money. RESOLVED_WITH_PAYOUT: PayPal paid the buyer from its own funds under seller
# protection; DENIED: the buyer's claim was denied. NONE says nothing: UNKNOWN.
SELLER_WINS = frozenset(
    {"RESOLVED_SELLER_FAVOUR", "RESOLVED_WITH_PAYOUT", "CANCELED_BY_BUYER", "DENIED"}
)
SELLER_LOSES = frozenset({"RESOLVED_BUYER_FAVOUR", "ACCEPTED"})

_REFERENCE = re.compile(r"^payment-(\d+)$")
_PAYOUT_REFERENCE = re.compile(r"^payout-(\d+)$")
_CAPTURE_LINK = re.compile(r"/v2/payments/captures/([A-Za-z0-9-]+)(?:$|[/?])")

# --------------------------------------------------------------------------- amounts


def minor_amount(money: Any) -> int | None:
    """A PayPal money object ({currency_code|currency, value}) as integer minor units, or
    None when absent or unreadable: a webhook is never rejected for an odd amount."""
    if not isinstance(money, Mapping):
        return None
    currency = money.get("currency_code") or money.get("currency")
    value = money.get("value")
    if not isinstance(currency, str) or not isinstance(value, str):
        return None
    try:
        return to_minor(value, normalize_currency(currency))
    except MoneyError:
        return None


def payment_id_from_reference(reference: Any, ids: ProviderIds) -> int | None:
    """Our payment id from a custom_id / invoice_id we set ("{prefix}-payment-{id}"); None
    for anything else, another installation's reference included."""
    local = ids.local(reference)
    if local is not None and (match := _REFERENCE.match(local)):
        return int(match.group(1))
    return None


def foreign_reference(resource: Mapping[str, Any], ids: ProviderIds) -> str | None:
    """The custom_id / sender_item_id of an object another installation made on this PayPal
    account (under another prefix, or none), or None when it is ours or carries none."""
    item = resource.get("payout_item")
    candidates = [
        resource.get("custom_id"),
        item.get("sender_item_id") if isinstance(item, Mapping) else None,
    ]
    units = resource.get("purchase_units")
    if isinstance(units, list) and units and isinstance(units[0], Mapping):
        candidates.append(units[0].get("custom_id"))
    return next((c for c in candidates if ids.foreign(c)), None)


# --------------------------------------------------------------------------- translation


def related_ids(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    """supplementary_data.related_ids of an authorisation, capture or refund ({} if none)."""
    supplementary = resource.get("supplementary_data")
    if isinstance(supplementary, Mapping):
        related = supplementary.get("related_ids")
        if isinstance(related, Mapping):
            return related
    return {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _up_capture_id(resource: Mapping[str, Any]) -> str | None:
    for link in resource.get("links") or ():
        if isinstance(link, Mapping) and link.get("rel") == "up":
            match = _CAPTURE_LINK.search(str(link.get("href", "")))
            if match:
                return match.group(1)
    return None


def _disputed_capture_id(resource: Mapping[str, Any]) -> str | None:
    for transaction in resource.get("disputed_transactions") or ():
        if isinstance(transaction, Mapping) and (
            seller_id := _str(transaction.get("seller_transaction_id"))
        ):
            return seller_id
    return None


def lookup_hint(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """("capture" | "authorization", id): what to GET from PayPal to learn the order id an
    event is about when the resource does not say (refunds, reversals, disputes, or an
    authorisation / capture delivered without supplementary_data). None when nothing to ask."""
    resource = event.get("resource")
    if not isinstance(resource, Mapping):
        return None
    event_type = str(event.get("event_type", ""))
    related = related_ids(resource)
    if _str(related.get("order_id")):
        return None
    if event_type.startswith("PAYMENT.AUTHORIZATION."):
        auth_id = _str(resource.get("id"))
        return ("authorization", auth_id) if auth_id else None
    if event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.DENIED"):
        capture_id = _str(resource.get("id"))
        return ("capture", capture_id) if capture_id else None
    if event_type in ("PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"):
        # A refund-shaped resource points "up" at its capture; some reversals are delivered
        # as the capture itself (its own id, status REVERSED).
        capture_id = _str(related.get("capture_id")) or _up_capture_id(resource)
        if capture_id is None and str(resource.get("status", "")).upper() == "REVERSED":
            capture_id = _str(resource.get("id"))
        return ("capture", capture_id) if capture_id else None
    if event_type.startswith("CUSTOMER.DISPUTE."):
        capture_id = _disputed_capture_id(resource)
        return ("capture", capture_id) if capture_id else None
    return None


def _refunded_amount(resource: Mapping[str, Any]) -> int | None:
    """The capture's cumulative refunded amount, as Stripe's `amount_refunded` is, when PayPal
    includes it (seller_payable_breakdown.total_refunded_amount); else this refund's own
    amount. A reversal may be delivered with a negative value: the size is what counts."""
    breakdown = resource.get("seller_payable_breakdown")
    if isinstance(breakdown, Mapping):
        total = minor_amount(breakdown.get("total_refunded_amount"))
        if total is not None:
            return abs(total)
    amount = minor_amount(resource.get("amount"))
    return abs(amount) if amount is not None else None


def _payout_failure(resource: Mapping[str, Any]) -> str:
    status = str(resource.get("transaction_status") or "FAILED")
    errors = resource.get("errors")
    if isinstance(errors, Mapping) and (message := _str(errors.get("message"))):
        name = _str(errors.get("name"))
        return f"{status}: {name}: {message}" if name else f"{status}: {message}"
    return f"PayPal payout item {status}"


def _authorization_fields(resource: Mapping[str, Any]) -> dict[str, Any]:
    expires = resource.get("expiration_time")
    capture_by = None
    if isinstance(expires, str):
        try:
            capture_by = datetime.fromisoformat(expires)
        except ValueError:
            capture_by = None
    return {
        "amount": minor_amount(resource.get("amount")),
        "authorization_id": _str(resource.get("id")),
        "capture_by": capture_by,
    }


def _capture_fields(resource: Mapping[str, Any], kind: EventKind) -> dict[str, Any]:
    amount = minor_amount(resource.get("amount"))
    failure = None
    if kind is EventKind.HOLD_FAILED:
        details = resource.get("status_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        failure = f"capture {str(resource.get('status', 'DENIED')).lower()}" + (
            f": {reason}" if reason else ""
        )
    return {
        "amount": amount,
        "failure_message": failure,
        "capture_id": _str(resource.get("id")),
        "captured_amount": amount,
    }


def _money_back_fields(resource: Mapping[str, Any], reversal: bool) -> dict[str, Any]:
    """A refund (or reversal): by its own id and its own amount, not the capture's total."""
    own = minor_amount(resource.get("amount"))
    total = _refunded_amount(resource)
    return {
        "amount": total,
        "failure_message": "capture reversed" if reversal else None,
        "refund_id": _str(resource.get("id")),
        "refund_amount": abs(own) if own is not None else total,
        "reversal": reversal,
    }


def _dispute_fields(resource: Mapping[str, Any], kind: EventKind) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "amount": minor_amount(resource.get("dispute_amount")),
        "dispute_id": _str(resource.get("dispute_id")),
        "failure_message": _str(resource.get("reason")),
    }
    if kind is EventKind.DISPUTE_CLOSED:
        outcome = resource.get("dispute_outcome")
        code = outcome.get("outcome_code") if isinstance(outcome, Mapping) else None
        fields["dispute_detail"] = str(code or "RESOLVED")
        fields["dispute_outcome"] = (
            ChargebackOutcome.WON
            if code in SELLER_WINS
            else ChargebackOutcome.LOST
            if code in SELLER_LOSES
            else ChargebackOutcome.UNKNOWN
        )
    return fields


def _payout_item_fields(
    resource: Mapping[str, Any], event_type: str, kind: EventKind, ids: ProviderIds | None
) -> dict[str, Any]:
    item = resource.get("payout_item")
    item = item if isinstance(item, Mapping) else {}
    money = item.get("amount")
    currency = money.get("currency") if isinstance(money, Mapping) else None
    sender_item = _str(item.get("sender_item_id"))
    batch_key = _str(resource.get("sender_batch_id"))
    if ids is not None:
        sender_item, batch_key = ids.local(sender_item), ids.local(batch_key)
    reference = _PAYOUT_REFERENCE.match(sender_item or "")
    delayed = kind is EventKind.PAYOUT_DELAYED
    return {
        "object_id": _str(resource.get("payout_item_id")),
        "amount": minor_amount(money),
        "currency": currency.upper() if isinstance(currency, str) else None,
        "failure_message": _payout_failure(resource)
        if delayed or kind is EventKind.PAYOUT_FAILED
        else None,
        "transfer_batch_id": _str(resource.get("payout_batch_id")),
        "batch_key": batch_key,
        "payout_id": int(reference.group(1)) if reference else None,
        "delayed_reason": event_type.rsplit(".", 1)[-1].lower() if delayed else None,
    }


def _fields(
    event_type: str, kind: EventKind, resource: Mapping[str, Any], ids: ProviderIds | None
) -> dict[str, Any]:
    """The typed fields of one event, by what PayPal calls it."""
    order_id = _str(related_ids(resource).get("order_id"))
    if event_type.startswith("CHECKOUT.ORDER."):
        units = resource.get("purchase_units")
        first = units[0] if isinstance(units, list) and units else {}
        money = first.get("amount") if isinstance(first, Mapping) else None
        return {"object_id": _str(resource.get("id")), "amount": minor_amount(money)}
    if event_type.startswith("PAYMENT.AUTHORIZATION."):
        return {"object_id": order_id, **_authorization_fields(resource)}
    if event_type in ("PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED"):
        reversal = event_type.endswith("REVERSED")
        return {"object_id": order_id, **_money_back_fields(resource, reversal)}
    if event_type.startswith("PAYMENT.CAPTURE."):
        return {"object_id": order_id, **_capture_fields(resource, kind)}
    if event_type.startswith("CUSTOMER.DISPUTE."):
        return {"object_id": None, **_dispute_fields(resource, kind)}
    if event_type.startswith("PAYMENT.PAYOUTS-ITEM."):
        return _payout_item_fields(resource, event_type, kind, ids)
    return {"object_id": _str(resource.get("id"))}


def translate(event: Mapping[str, Any], ids: ProviderIds | None = None) -> ProviderEvent:
    """A verified PayPal event as a ProviderEvent. The resource is applied as delivered: the
    signature proves PayPal sent it. An event of another shape is refused. With `ids`, our
    references are read back without the prefix, and a resource another installation made
    (its custom_id / sender_item_id under another prefix) is IGNORED: recorded, never
    applied."""
    event_id, event_type = _str(event.get("id")), _str(event.get("event_type"))
    resource = event.get("resource")
    if event_id is None or event_type is None or not isinstance(resource, Mapping):
        raise InvalidSignatureError("not a PayPal webhook event (id, event_type, resource)")
    kind = KINDS.get(event_type, EventKind.IGNORED)
    foreign = foreign_reference(resource, ids) if ids is not None else None
    if foreign is not None:
        return ProviderEvent(
            provider=PROVIDER,
            event_id=event_id,
            event_type=event_type,
            kind=EventKind.IGNORED,
            object_id=_str(resource.get("id") or resource.get("payout_item_id")),
            data=resource,
            failure_message=f"another installation's object ({foreign})",
        )
    return ProviderEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        data=resource,
        **_fields(event_type, kind, resource, ids),
    )


def load_event(body: bytes) -> dict[str, Any]:
    """The delivery's JSON object; anything else (not JSON, nested past the parser's
    depth, not an object) is refused as not an event."""
    return event_object(
        body, "PayPal webhook body is not a JSON event", "not a PayPal webhook event"
    )


# --------------------------------------------------------------------------- offline check

TRANSMISSION_ID = "paypal-transmission-id"
TRANSMISSION_TIME = "paypal-transmission-time"
TRANSMISSION_SIG = "paypal-transmission-sig"
CERT_URL = "paypal-cert-url"
AUTH_ALGO = "paypal-auth-algo"
SUPPORTED_ALGO = "SHA256withRSA"

CertFetcher = Callable[[str], Awaitable[bytes]]


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (PayPal sends upper case, proxies lower it)."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def check_transmission_time(headers: Mapping[str, str], tolerance_seconds: int) -> None:
    """PAYPAL-TRANSMISSION-TIME within `tolerance_seconds` of now: a genuine delivery's
    headers cannot be reused (with a forged body of the same CRC32) once it is old."""
    value = header(headers, TRANSMISSION_TIME)
    if not value:
        raise InvalidSignatureError("missing PayPal transmission headers")
    try:
        sent = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidSignatureError("PAYPAL-TRANSMISSION-TIME is not a time") from exc
    if sent.tzinfo is None:
        raise InvalidSignatureError("PAYPAL-TRANSMISSION-TIME has no time zone")
    if abs((datetime.now(UTC) - sent).total_seconds()) > tolerance_seconds:
        raise InvalidSignatureError("PAYPAL-TRANSMISSION-TIME is outside the tolerance")


def is_paypal_cert_url(url: str) -> bool:
    """True only for an https URL on paypal.com or one of its subdomains: whoever can choose
    the certificate can sign anything, so PAYPAL-CERT-URL is the one header we must not trust.
    Rejects other schemes, user-info tricks (https://api.paypal.com@evil.com/), look-alike
    hosts (paypal.com.evil.com, evilpaypal.com), odd ports and characters URL parsers
    disagree on."""
    if not url or any(ch in url for ch in "\\ \t\r\n") or not url.isprintable():
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or "@" in parts.netloc or port not in (None, 443):
        return False
    host = (parts.hostname or "").lower()
    return host == "paypal.com" or host.endswith(".paypal.com")


def signed_message(
    transmission_id: str, transmission_time: str, webhook_id: str, body: bytes
) -> bytes:
    """What PayPal signs: "<transmission id>|<transmission time>|<webhook id>|<crc32>", the
    CRC32 of the raw body as an unsigned decimal."""
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()


def load_certificate(data: bytes) -> x509.Certificate:
    return (
        x509.load_pem_x509_certificate(data)
        if b"-----BEGIN" in data
        else x509.load_der_x509_certificate(data)
    )


async def verify_offline(
    headers: Mapping[str, str], body: bytes, webhook_id: str, fetch_cert: CertFetcher
) -> None:
    """Verify a delivery without calling PayPal's API: SHA256withRSA over `signed_message`
    with the public key of the certificate at PAYPAL-CERT-URL (a paypal.com https address,
    fetched through `fetch_cert`, which should cache by URL). Any failure raises
    InvalidSignatureError. The certificate is trusted because TLS proved it came from a
    paypal.com host; its validity period is checked here."""
    if not webhook_id:
        raise InvalidSignatureError("PAYPAL_WEBHOOK_ID is not set: cannot verify PayPal webhooks")
    transmission_id = header(headers, TRANSMISSION_ID)
    transmission_time = header(headers, TRANSMISSION_TIME)
    signature_b64 = header(headers, TRANSMISSION_SIG)
    cert_url = header(headers, CERT_URL)
    algo = header(headers, AUTH_ALGO)
    if not (transmission_id and transmission_time and signature_b64 and cert_url):
        raise InvalidSignatureError("missing PayPal transmission headers")
    if algo is not None and algo != SUPPORTED_ALGO:
        raise InvalidSignatureError(f"unsupported PAYPAL-AUTH-ALGO {algo!r}")
    if not is_paypal_cert_url(cert_url):
        raise InvalidSignatureError("PAYPAL-CERT-URL is not a paypal.com https address")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignatureError("PAYPAL-TRANSMISSION-SIG is not base64") from exc
    try:
        certificate = load_certificate(await fetch_cert(cert_url))
    except InvalidSignatureError:
        raise
    except Exception as exc:  # any fetch or parse failure means "not verified"
        raise InvalidSignatureError(f"cannot load the PayPal certificate: {exc}") from exc
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise InvalidSignatureError("the PayPal certificate is outside its validity period")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise InvalidSignatureError("the PayPal certificate does not hold an RSA key")
    message = signed_message(transmission_id, transmission_time, webhook_id, body)
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise InvalidSignatureError("PayPal transmission signature does not match") from exc
