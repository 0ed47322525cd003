"""PayPal Vault v3 objects as the PayPal simulator stores them: setup tokens (approved by
the payer at the simulator's agreement page), payment tokens, and the order a saved
PayPal pays, authorised at creation with the payer absent. Translated into our types by
the real adapter's own `providers/paypal/vault.py`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from handwork_payments.providers.base import ProviderError
from handwork_payments.providers.simulated.paypal_objects import PAYPAL_API_BASE, new_authorization
from handwork_payments.providers.simulated.store import (
    ALNUM,
    UPPER_ALNUM,
    Json,
    paypal_id,
    paypal_time,
    random_string,
)

# Where the payer approves saving PayPal: the simulator endpoint on this service itself
# (PayPal's own is https://www.sandbox.paypal.com/agreements/approve).
PAYPAL_VAULT_APPROVAL_PATH = "/api/v1/simulator/paypal/agreements/approve"
SETUP_TOKEN = "setup_token"
PAYMENT_TOKEN = "payment_token"


def new_setup_token(return_url: str, cancel_url: str) -> Json:
    """A setup token for a PayPal wallet, waiting for the payer (PAYER_ACTION_REQUIRED),
    for a new PayPal customer, as PayPal makes one when none is given."""
    token_id = paypal_id()
    return {
        "id": token_id,
        "customer": {"id": random_string(ALNUM, 10)},
        "status": "PAYER_ACTION_REQUIRED",
        "payment_source": {
            "paypal": {
                "usage_type": "MERCHANT",
                "customer_type": "CONSUMER",
                "experience_context": {"return_url": return_url, "cancel_url": cancel_url},
            }
        },
        "links": [
            {
                "href": f"{PAYPAL_API_BASE}/v3/vault/setup-tokens/{token_id}",
                "rel": "self",
                "method": "GET",
            },
            {
                "href": f"{PAYPAL_VAULT_APPROVAL_PATH}?approval_session_id={token_id}",
                "rel": "approve",
                "method": "GET",
            },
        ],
    }


def approve_setup_token(token: Json, declines: bool) -> str:
    """The payer approves (once; again answers the same payer). `declines`: a payer whose
    every later charge PayPal declines. Returns the payer id."""
    paypal = token["payment_source"]["paypal"]
    if token["status"] == "PAYER_ACTION_REQUIRED":
        payer_id = "PAYER" + random_string(UPPER_ALNUM, 9)
        paypal.update(
            payer_id=payer_id,
            email_address=f"buyer-{payer_id.lower()}@example.com",
            declines=declines,
        )
        token["status"] = "APPROVED"
    return str(paypal["payer_id"])


def new_payment_token(setup_token: Mapping[str, Any]) -> Json:
    """The payment token made from an approved setup token: its vault id is charged."""
    token_id = random_string(ALNUM, 8).lower()
    paypal = dict(setup_token["payment_source"]["paypal"])
    paypal.pop("experience_context", None)
    return {
        "id": token_id,
        "customer": dict(setup_token["customer"]),
        "payment_source": {"paypal": paypal},
        "links": [
            {
                "href": f"{PAYPAL_API_BASE}/v3/vault/payment-tokens/{token_id}",
                "rel": "self",
                "method": "GET",
            }
        ],
    }


def check_exchangeable(token: Mapping[str, Any]) -> None:
    if token["status"] != "APPROVED":
        raise ProviderError(
            "The setup token has not been approved by the payer.", code="TOKEN_NOT_APPROVED"
        )


def pay_with_token(order: Json, payment_token: Mapping[str, Any], now: datetime) -> None:
    """The order paid with the saved PayPal: COMPLETED at once, its authorisation CREATED,
    or DENIED for a declining payer (an order that completes with the payment declined,
    as PayPal reports it)."""
    paypal = payment_token["payment_source"]["paypal"]
    authorization = new_authorization(order, now)
    if paypal.get("declines"):
        authorization.update(status="DENIED", expiration_time=None)
    order["purchase_units"][0]["payments"]["authorizations"].append(authorization)
    order["payment_source"] = {
        "paypal": {
            "vault_id": payment_token["id"],
            "account_id": paypal["payer_id"],
            "email_address": paypal["email_address"],
        }
    }
    order["payer"] = {"payer_id": paypal["payer_id"], "email_address": paypal["email_address"]}
    order["links"] = [link for link in order["links"] if link["rel"] != "approve"]
    order.update(status="COMPLETED", update_time=paypal_time(now))
