"""PayPal's objects as the simulator stores them: orders (with their authorisations,
captures and refunds nested in `purchase_units[0].payments`, as `GET /v2/checkout/orders/{id}`
shows them) and payout items, and their translation into the protocol's types."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from handwork_payments.kit.money import format_amount, to_minor
from handwork_payments.providers.base import (
    HoldRef,
    HoldState,
    NewHold,
    PayoutOrder,
    ProviderError,
    ProviderHold,
    ProviderTransfer,
    TransferState,
)
from handwork_payments.providers.simulated.store import (
    Json,
    UnknownObjectError,
    paypal_id,
    paypal_time,
    utc_now,
)

# Where the PayPal buyer "approves": the simulator endpoint on this service itself.
PAYPAL_APPROVAL_PATH = "/api/v1/simulator/paypal/checkoutnow"
PAYPAL_API_BASE = "https://api-m.sandbox.paypal.com"
# PayPal's authorisations last 29 days.
PAYPAL_AUTHORIZATION_WINDOW = timedelta(days=29)


def money(amount: int, currency: str) -> Json:
    return {"currency_code": currency, "value": format_amount(amount, currency)}


def _up_link(path: str) -> list[Json]:
    return [{"href": f"{PAYPAL_API_BASE}{path}", "rel": "up", "method": "GET"}]


# --- new objects ------------------------------------------------------------------------------


def new_order(hold: NewHold, reference: str) -> Json:
    """An order with intent AUTHORIZE, waiting for the buyer's approval."""
    order_id = paypal_id()
    now = paypal_time(utc_now())
    return {
        "id": order_id,
        "intent": "AUTHORIZE",
        "status": "CREATED",
        "purchase_units": [
            {
                "reference_id": f"booking-{hold.booking_id}",
                # Our own reference, as the real adapter sets it ("{prefix}-payment-{id}").
                "custom_id": reference,
                "invoice_id": reference,
                "amount": money(hold.amount, hold.currency),
                "payments": {"authorizations": [], "captures": [], "refunds": []},
            }
        ],
        "payment_source": {
            "paypal": {
                "experience_context": {"return_url": hold.return_url, "cancel_url": hold.cancel_url}
            }
        },
        "links": [
            {
                "href": f"{PAYPAL_API_BASE}/v2/checkout/orders/{order_id}",
                "rel": "self",
                "method": "GET",
            },
            {
                "href": f"{PAYPAL_APPROVAL_PATH}?token={order_id}",
                "rel": "approve",
                "method": "GET",
            },
        ],
        "create_time": now,
        "update_time": now,
    }


def new_authorization(order: Mapping[str, Any], now: datetime) -> Json:
    unit = order["purchase_units"][0]
    return {
        "id": paypal_id(),
        "status": "CREATED",
        "amount": dict(unit["amount"]),
        "custom_id": unit["custom_id"],
        "invoice_id": unit["invoice_id"],
        "seller_protection": {"status": "ELIGIBLE"},
        "expiration_time": paypal_time(now + PAYPAL_AUTHORIZATION_WINDOW),
        "create_time": paypal_time(now),
        "update_time": paypal_time(now),
        "supplementary_data": {"related_ids": {"order_id": order["id"]}},
    }


def new_capture(
    order: Mapping[str, Any], authorization: Mapping[str, Any], amount: int, fee: int, now: str
) -> Json:
    unit = order["purchase_units"][0]
    code = unit["amount"]["currency_code"]
    return {
        "id": paypal_id(),
        "status": "COMPLETED",
        "amount": money(amount, code),
        "seller_receivable_breakdown": {
            "gross_amount": money(amount, code),
            "paypal_fee": money(fee, code),
            "net_amount": money(amount - fee, code),
        },
        "final_capture": True,
        "custom_id": unit["custom_id"],
        "invoice_id": unit["invoice_id"],
        "seller_protection": {"status": "ELIGIBLE"},
        "create_time": now,
        "update_time": now,
        "links": _up_link(f"/v2/payments/authorizations/{authorization['id']}"),
        "supplementary_data": {
            "related_ids": {"order_id": order["id"], "authorization_id": authorization["id"]}
        },
    }


def new_refund(
    unit: Mapping[str, Any], capture: Mapping[str, Any], amount: int, refunded: int, now: str
) -> Json:
    """A refund of `amount` from a capture that had `refunded` refunded before."""
    code = capture["amount"]["currency_code"]
    return {
        "id": paypal_id(),
        "status": "COMPLETED",
        "amount": money(amount, code),
        "custom_id": unit["custom_id"],
        "invoice_id": unit["invoice_id"],
        # PayPal keeps its fee on a refund (provider_fees.py): paypal_fee is 0. The total
        # is cumulative, as PayPal reports it: what the capture has had refunded so far.
        "seller_payable_breakdown": {
            "gross_amount": money(amount, code),
            "paypal_fee": money(0, code),
            "net_amount": money(amount, code),
            "total_refunded_amount": money(refunded + amount, code),
        },
        "create_time": now,
        "update_time": now,
        "links": _up_link(f"/v2/payments/captures/{capture['id']}"),
    }


def new_payout_item(order: PayoutOrder, currency: str, batch_id: str, sender_item_id: str) -> Json:
    return {
        "payout_item_id": paypal_id(13),
        "transaction_id": paypal_id(17),
        "activity_id": paypal_id(17),
        "transaction_status": "SUCCESS",
        "payout_item_fee": {"currency": currency, "value": format_amount(0, currency)},
        "payout_batch_id": batch_id,
        "payout_item": {
            "recipient_type": "EMAIL",
            "amount": {"currency": currency, "value": format_amount(order.amount, currency)},
            "receiver": order.destination,
            "sender_item_id": sender_item_id,
            "recipient_wallet": "PAYPAL",
        },
        "time_processed": paypal_time(utc_now()),
    }


def statement_line(
    code: str,
    transaction_id: str,
    amount: int,
    fee: int,
    currency: str,
    reference: str | None = None,
) -> Json:
    """A Transaction Search `transaction_details` item: `amount` signed from the
    platform's side, `fee` what PayPal kept (shown negative, as PayPal does)."""
    moment = paypal_time(utc_now())
    info: Json = {
        "transaction_id": transaction_id,
        "transaction_event_code": code,
        "transaction_initiation_date": moment,
        "transaction_updated_date": moment,
        "transaction_amount": money(amount, currency),
        "fee_amount": money(-fee, currency),
        "transaction_status": "S",
    }
    if reference is not None:
        info["paypal_reference_id"] = reference
        info["paypal_reference_id_type"] = "TXN"
    return {"transaction_info": info}


# --- look-ups and translations ----------------------------------------------------------------


def authorization_of(order: Mapping[str, Any], ref: HoldRef) -> Json:
    """The order's latest authorisation, which `ref` must name when it names one."""
    authorizations = order["purchase_units"][0]["payments"]["authorizations"]
    if not authorizations:
        raise ProviderError("The order has not been authorized.", code="ORDER_NOT_AUTHORIZED")
    authorization: Json = authorizations[-1]
    if ref.authorization_id is not None and ref.authorization_id != authorization["id"]:
        raise UnknownObjectError(
            f"The specified resource ({ref.authorization_id}) does not exist.",
            code="INVALID_RESOURCE_ID",
        )
    return authorization


def order_hold(order: Mapping[str, Any]) -> ProviderHold:
    """A PayPal order (with its nested payments) as a ProviderHold."""
    unit = order["purchase_units"][0]
    currency = str(unit["amount"]["currency_code"])
    payments = unit["payments"]
    authorization = payments["authorizations"][-1] if payments["authorizations"] else None
    capture = payments["captures"][-1] if payments["captures"] else None
    capture_by: datetime | None = None
    failure_message: str | None = None
    if order["status"] == "VOIDED":
        state = HoldState.CANCELED
        failure_message = "order voided"
    elif authorization is None:
        # CREATED waits for the buyer; APPROVED waits for our authorize call (confirm_hold).
        state = (
            HoldState.REQUIRES_APPROVAL
            if order["status"] == "CREATED"
            else HoldState.REQUIRES_ACTION
        )
    elif authorization["status"] == "VOIDED":
        state = HoldState.CANCELED
        failure_message = "authorization voided"
    elif authorization["status"] == "DENIED":  # a saved PayPal declined (paypal_vault)
        state = HoldState.FAILED
        failure_message = "authorization denied"
    elif capture is not None:
        state = HoldState.CAPTURED
    else:
        state = HoldState.AUTHORIZED
        capture_by = datetime.fromisoformat(authorization["expiration_time"])
    approve = next((link["href"] for link in order["links"] if link["rel"] == "approve"), None)
    return ProviderHold(
        provider_payment_id=str(order["id"]),
        state=state,
        amount=to_minor(unit["amount"]["value"], currency),
        currency=currency,
        approval_url=approve if state is HoldState.REQUIRES_APPROVAL else None,
        authorization_id=authorization["id"] if authorization else None,
        capture_id=capture["id"] if capture else None,
        captured_amount=to_minor(capture["amount"]["value"], currency) if capture else 0,
        fee=capture_fee(capture) if capture else None,
        refunded_amount=sum(to_minor(r["amount"]["value"], currency) for r in payments["refunds"]),
        capture_by=capture_by,
        failure_message=failure_message,
        seller_protection=(authorization or {}).get("seller_protection", {}).get("status"),
    )


def capture_fee(capture: Mapping[str, Any]) -> int:
    code = str(capture["amount"]["currency_code"])
    return to_minor(capture["seller_receivable_breakdown"]["paypal_fee"]["value"], code)


def item_transfer(item: Mapping[str, Any]) -> ProviderTransfer:
    """A stored payout item as a ProviderTransfer."""
    currency = str(item["payout_item"]["amount"]["currency"])
    return ProviderTransfer(
        transfer_id=str(item["payout_item_id"]),
        state=(
            TransferState.SUCCEEDED
            if item["transaction_status"] == "SUCCESS"
            else TransferState.FAILED
        ),
        amount=to_minor(item["payout_item"]["amount"]["value"], currency),
        currency=currency,
        batch_id=str(item["payout_batch_id"]),
        destination=str(item["payout_item"]["receiver"]),
    )
