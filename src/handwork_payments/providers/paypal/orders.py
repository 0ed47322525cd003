"""PayPal's Orders v2 and Payments v2 resources read as our types: money objects as integer
minor units, an order (with its authorisations, captures and refunds) as a ProviderHold.
Pure functions: no HTTP here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from handwork_payments.kit.money import format_amount, normalize_currency
from handwork_payments.providers.base import HoldState, ProviderHold
from handwork_payments.providers.currencies import PAYPAL_WHOLE_UNITS
from handwork_payments.providers.paypal.client import PayPalError
from handwork_payments.providers.paypal.events import minor_amount

# Captures that took the money (PENDING too: only its settlement is pending), and refunds
# that gave it back.
CAPTURE_TAKEN = ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED", "PENDING")
REFUND_GIVEN = ("COMPLETED", "PENDING")


def paypal_value(amount: int, currency: str) -> str:
    """Integer minor units as the decimal string PayPal takes ("12.50", "1500" for JPY)."""
    # HUF and TWD: whole units only ("DECIMALS_NOT_SUPPORTED"; providers/currencies.py).
    unit = PAYPAL_WHOLE_UNITS.get(currency)
    if unit is not None:
        if amount % unit:
            raise PayPalError(
                f"PayPal takes {currency} in whole units only", code="DECIMALS_NOT_SUPPORTED"
            )
        return str(amount // unit)
    return format_amount(amount, currency)


def paypal_money(amount: int, currency: str) -> dict[str, str]:
    """An Orders / Payments v2 money object."""
    currency = normalize_currency(currency)
    return {"currency_code": currency, "value": paypal_value(amount, currency)}


def minor(money: Any, default: int | None = None) -> int | None:
    """A PayPal money object as integer minor units (default when absent)."""
    value = minor_amount(money)
    return default if value is None else value


def currency_of(money: Any, default: str) -> str:
    if isinstance(money, Mapping):
        code = money.get("currency_code") or money.get("currency")
        if isinstance(code, str):
            return code.upper()
    return default


def link(resource: Mapping[str, Any], *rels: str) -> str | None:
    for rel in rels:
        for item in resource.get("links") or ():
            if isinstance(item, Mapping) and item.get("rel") == rel and item.get("href"):
                return str(item["href"])
    return None


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)  # PayPal's RFC 3339, "Z" included (3.11+)
    except ValueError:
        return None


def _status(resource: Mapping[str, Any]) -> str:
    return str(resource.get("status", "")).upper()


def payments_of(order: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """The order's authorisations, captures and refunds, over all its purchase units."""
    found: dict[str, list[Mapping[str, Any]]] = {
        "authorizations": [],
        "captures": [],
        "refunds": [],
    }
    for unit in order.get("purchase_units") or ():
        payments = unit.get("payments") if isinstance(unit, Mapping) else None
        if isinstance(payments, Mapping):
            for kind, items in found.items():
                items.extend(p for p in payments.get(kind) or () if isinstance(p, Mapping))
    return found


def authorization_state(auth: Mapping[str, Any]) -> tuple[HoldState, str | None]:
    status = _status(auth)
    if status == "CREATED":
        return HoldState.AUTHORIZED, None
    if status in ("CAPTURED", "PARTIALLY_CAPTURED"):
        return HoldState.CAPTURED, None
    if status == "VOIDED":
        return HoldState.CANCELED, "authorization voided"
    if status == "EXPIRED":
        return HoldState.CANCELED, "authorization expired"
    if status == "DENIED":
        return HoldState.FAILED, "authorization denied"
    # PENDING: PayPal is still reviewing; nothing is reserved for certain yet.
    return HoldState.REQUIRES_ACTION, f"authorization {status.lower() or 'unknown'}"


def _current_authorization(
    auths: list[Mapping[str, Any]], preferred: str | None
) -> Mapping[str, Any] | None:
    """The preferred authorisation if the order has it, else the newest one still standing
    (a reauthorisation supersedes the original)."""
    chosen = next((a for a in auths if preferred and a.get("id") == preferred), None)
    if chosen is None and auths:
        live = [a for a in auths if _status(a) != "VOIDED"]
        chosen = (live or auths)[-1]
    return chosen


def capture_fee(capture: Mapping[str, Any]) -> int | None:
    """PayPal's fee on a capture (`seller_receivable_breakdown.paypal_fee`); None when the
    answer has no breakdown (a capture still PENDING, or a peer that keeps none)."""
    breakdown = capture.get("seller_receivable_breakdown")
    if not isinstance(breakdown, Mapping):
        return None
    return minor(breakdown.get("paypal_fee"))


def fee_refunded(refund: Mapping[str, Any]) -> int:
    """What PayPal gave back of its fee with a refund (`seller_payable_breakdown.paypal_fee`;
    0 when it says nothing)."""
    breakdown = refund.get("seller_payable_breakdown")
    if not isinstance(breakdown, Mapping):
        return 0
    return minor(breakdown.get("paypal_fee"), 0) or 0


def _settled_hold(
    base: dict[str, Any],
    order: Mapping[str, Any],
    preferred_authorization: str | None,
    extra_authorization: Mapping[str, Any] | None,
) -> ProviderHold:
    """A COMPLETED (or otherwise authorised) order: from its authorisation and captures."""
    payments = payments_of(order)
    auths = list(payments["authorizations"])
    if extra_authorization is not None:
        auths.append(extra_authorization)
    auth = _current_authorization(auths, preferred_authorization)
    captures = [c for c in payments["captures"] if _status(c) in CAPTURE_TAKEN]
    authorization_id = str(auth["id"]) if auth is not None else None
    if captures:
        refunds = [r for r in payments["refunds"] if _status(r) in REFUND_GIVEN]
        return ProviderHold(
            **base,
            state=HoldState.CAPTURED,
            authorization_id=authorization_id,
            capture_id=str(captures[-1]["id"]),
            captured_amount=sum(minor(c.get("amount"), 0) or 0 for c in captures),
            refunded_amount=sum(minor(r.get("amount"), 0) or 0 for r in refunds),
            fee=capture_fee(captures[-1]),
            seller_protection=_protection(captures[-1]),
        )
    if auth is None:
        return ProviderHold(
            **base,
            state=HoldState.REQUIRES_ACTION,
            failure_message=f"order {_status(order).lower()} without an authorization",
        )
    state, failure = authorization_state(auth)
    return ProviderHold(
        **base,
        state=state,
        authorization_id=authorization_id,
        capture_by=parse_time(auth.get("expiration_time"))
        if state is HoldState.AUTHORIZED
        else None,
        failure_message=failure,
        seller_protection=_protection(auth),
    )


def _protection(payment: Mapping[str, Any]) -> str | None:
    status = (payment.get("seller_protection") or {}).get("status")
    return str(status) if status else None


def hold_from_order(
    order: Mapping[str, Any],
    *,
    amount: int | None = None,
    currency: str | None = None,
    preferred_authorization: str | None = None,
    extra_authorization: Mapping[str, Any] | None = None,
) -> ProviderHold:
    """Order states: CREATED / SAVED / PAYER_ACTION_REQUIRED -> REQUIRES_APPROVAL (with
    the approval URL); APPROVED -> REQUIRES_ACTION (the payer approved, our authorise
    call - confirm_hold - is what is missing); VOIDED -> CANCELED; COMPLETED -> from its
    authorisation and captures."""
    units = order.get("purchase_units") or [{}]
    unit: Mapping[str, Any] = units[0] if isinstance(units[0], Mapping) else {}
    base: dict[str, Any] = {
        "provider_payment_id": str(order["id"]),
        "amount": minor(unit.get("amount"), amount) or 0,
        "currency": currency_of(unit.get("amount"), currency or "USD"),
    }
    status = _status(order)
    if status in ("CREATED", "SAVED", "PAYER_ACTION_REQUIRED"):
        return ProviderHold(
            **base,
            state=HoldState.REQUIRES_APPROVAL,
            approval_url=link(order, "payer-action", "approve"),
        )
    if status == "APPROVED":
        return ProviderHold(**base, state=HoldState.REQUIRES_ACTION)
    if status == "VOIDED":
        return ProviderHold(**base, state=HoldState.CANCELED, failure_message="order voided")
    return _settled_hold(base, order, preferred_authorization, extra_authorization)
