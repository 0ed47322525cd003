"""Stripe's objects as the simulator stores them (PaymentIntents, charges, refunds,
transfers and their reversals, Express accounts). They are translated into the protocol's
types by the real Stripe adapter's own code (providers/stripe_objects.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from handwork_payments.providers.base import (
    PayoutOrder,
    ProviderError,
)
from handwork_payments.providers.simulated.store import (
    ALNUM,
    Json,
    random_string,
    stripe_id,
    utc_now,
)

STRIPE_CONNECT_LINK_BASE = "https://connect.stripe.com/setup/s/simulated"
# Card authorisations lapse after about 7 days at Stripe.
STRIPE_AUTHORIZATION_WINDOW = timedelta(days=7)

PM_VISA = "pm_card_visa"
PM_DECLINED = "pm_card_chargeDeclined"
PM_AUTHENTICATION_REQUIRED = "pm_card_authenticationRequired"
# The simulator's own wallet cards (Stripe has no server-side test PaymentMethods for
# wallets: in test mode the device's wallet hands Stripe.js a test card): authorised, and
# declined, through Apple Pay, Google Pay and Link.
PM_APPLE_PAY = "pm_card_visa_apple_pay"
PM_GOOGLE_PAY = "pm_card_visa_google_pay"
PM_LINK = "pm_card_link"
PM_APPLE_PAY_DECLINED = "pm_card_apple_pay_chargeDeclined"
PM_GOOGLE_PAY_DECLINED = "pm_card_google_pay_chargeDeclined"
PM_LINK_DECLINED = "pm_card_link_chargeDeclined"
# The simulator's stablecoin payer: USDC on Base, paid at once.
PM_CRYPTO = "pm_crypto_usdc"
# Attaches to a customer (a SetupIntent succeeds with it); every charge is then declined.
PM_CHARGE_CUSTOMER_FAIL = "pm_card_chargeCustomerFail"
# Stripe's Radar test cards (docs.stripe.com/radar/testing): authorised, with the charge's
# `outcome.risk_level` elevated (4000000000009235) or highest (4000000000004954).
PM_RISK_ELEVATED = "pm_card_riskLevelElevated"
PM_RISK_HIGHEST = "pm_card_riskLevelHighest"
_TEST_CARDS: dict[str, str] = {
    PM_VISA: "4242",
    PM_DECLINED: "0002",
    PM_AUTHENTICATION_REQUIRED: "3155",
    PM_APPLE_PAY: "4242",
    PM_GOOGLE_PAY: "4242",
    PM_LINK: "4242",
    PM_APPLE_PAY_DECLINED: "0002",
    PM_GOOGLE_PAY_DECLINED: "0002",
    PM_LINK_DECLINED: "0002",
    PM_CHARGE_CUSTOMER_FAIL: "0341",
    PM_RISK_ELEVATED: "9235",
    PM_RISK_HIGHEST: "4954",
}
# The cards that authorise, and the risk level Radar gives their charges.
AUTHORISING_CARDS: dict[str, str] = {
    PM_VISA: "normal",
    PM_APPLE_PAY: "normal",
    PM_GOOGLE_PAY: "normal",
    PM_LINK: "normal",
    PM_RISK_ELEVATED: "elevated",
    PM_RISK_HIGHEST: "highest",
}
WALLET_OF: dict[str, str] = {
    PM_APPLE_PAY: "apple_pay",
    PM_GOOGLE_PAY: "google_pay",
    PM_LINK: "link",
    PM_APPLE_PAY_DECLINED: "apple_pay",
    PM_GOOGLE_PAY_DECLINED: "google_pay",
    PM_LINK_DECLINED: "link",
}
DECLINING = frozenset(
    {PM_DECLINED, PM_APPLE_PAY_DECLINED, PM_GOOGLE_PAY_DECLINED, PM_LINK_DECLINED}
)


def method_type(payment_method: str) -> str:
    """The PaymentMethod's type, as an intent's `payment_method_types` lists it."""
    return "crypto" if payment_method == PM_CRYPTO else "card"


# What a SetupIntent can be confirmed with in the simulator. `pm_card_authenticationRequired`
# (Stripe's 4000002760003184: authentication on every payment) is saved as if 3-D Secure
# was done in the browser at setup; charged off-session it is declined with
# `authentication_required`, as Stripe does.
SETUP_METHODS = frozenset({PM_VISA, PM_CHARGE_CUSTOMER_FAIL, PM_AUTHENTICATION_REQUIRED})


def check_payment_method(payment_method: str) -> None:
    if payment_method not in _TEST_CARDS and payment_method != PM_CRYPTO:
        raise ProviderError(f"No such PaymentMethod: '{payment_method}'", code="resource_missing")


def check_method_allowed(intent: Mapping[str, Any], payment_method: str) -> None:
    """A card on a stablecoin intent, or the other way round, is refused as Stripe does."""
    kind = method_type(payment_method)
    if kind not in intent["payment_method_types"]:
        raise ProviderError(
            f"The PaymentMethod provided ({kind}) is not allowed for this PaymentIntent. "
            f"Allowed types: {', '.join(intent['payment_method_types'])}.",
            code="payment_intent_incompatible_payment_method",
        )


# --- new objects ------------------------------------------------------------------------------


def new_intent(
    payment_id: int,
    booking_id: int,
    amount: int,
    currency: str,
    reference: str,
    *,
    stablecoin: bool = False,
) -> Json:
    """A PaymentIntent waiting for its payment method: manual capture for cards; a
    stablecoin one captures at once (Stripe offers no manual capture for crypto)."""
    intent_id = stripe_id("pi")
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic" if stablecoin else "manual",
        "client_secret": f"{intent_id}_secret_{random_string(ALNUM, 25)}",
        "confirmation_method": "automatic",
        "created": int(time.time()),
        "currency": currency.lower(),
        "description": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": {
            "payment_id": str(payment_id),
            "booking_id": str(booking_id),
            "reference": reference,
        },
        "next_action": None,
        "payment_method": None,
        "payment_method_types": ["crypto" if stablecoin else "card"],
        "status": "requires_payment_method",
    }


def charge(
    intent: Mapping[str, Any], charge_id: str, *, status: str, failure_code: str | None = None
) -> Json:
    pm = str(intent["payment_method"])
    return {
        "id": charge_id,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": 0,
        "amount_refunded": 0,
        "captured": False,
        "created": int(time.time()),
        "currency": intent["currency"],
        "failure_code": failure_code,
        "failure_message": "Your card was declined." if failure_code else None,
        "metadata": dict(intent["metadata"]),
        "paid": status == "succeeded",
        "payment_intent": intent["id"],
        "payment_method": pm,
        "payment_method_details": _method_details(pm),
        "outcome": {
            "type": "authorized" if status == "succeeded" else "issuer_declined",
            "risk_level": AUTHORISING_CARDS.get(pm, "normal"),
        },
        "refunded": False,
        "status": status,
    }


def _method_details(pm: str) -> Json:
    if pm == PM_CRYPTO:
        return {"type": "crypto", "crypto": {"network": "base", "token_currency": "usdc"}}
    card: Json = {
        "brand": "visa",
        "last4": _TEST_CARDS.get(pm, "0000"),
        # As at Stripe: one card, one fingerprint, whoever pays with it.
        "fingerprint": f"simfp{_TEST_CARDS.get(pm, '0000')}",
        "capture_before": int((utc_now() + STRIPE_AUTHORIZATION_WINDOW).timestamp()),
        "wallet": None,
    }
    if pm in WALLET_OF:
        wallet = WALLET_OF[pm]
        card["wallet"] = {"type": wallet, wallet: {}, "dynamic_last4": "4242"}
    return {"type": "card", "card": card}


def declined_error(charge_id: str, payment_method: str) -> Json:
    """The intent's `last_payment_error` after a declined card."""
    return {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
        "charge": charge_id,
        "payment_method": {"id": payment_method},
    }


def new_refund(intent: Mapping[str, Any], charge_id: str, amount: int) -> Json:
    return {
        "id": stripe_id("re"),
        "object": "refund",
        "amount": amount,
        "charge": charge_id,
        "created": int(time.time()),
        "currency": intent["currency"],
        "metadata": {},
        "payment_intent": intent["id"],
        "reason": None,
        "status": "succeeded",
    }


def new_transfer(order: PayoutOrder, currency: str, reference: str) -> Json:
    transfer_id = stripe_id("tr")
    return {
        "id": transfer_id,
        "object": "transfer",
        "amount": order.amount,
        "amount_reversed": 0,
        "created": int(time.time()),
        "currency": currency.lower(),
        "description": None,
        "destination": order.destination,
        "livemode": False,
        "metadata": {"payout_id": str(order.payout_id), "reference": reference},
        "reversals": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/transfers/{transfer_id}/reversals",
        },
        "reversed": False,
        "transfer_group": reference,
    }


def new_reversal(transfer: Mapping[str, Any], amount: int) -> Json:
    return {
        "id": stripe_id("trr"),
        "object": "transfer_reversal",
        "amount": amount,
        "currency": transfer["currency"],
        "created": int(time.time()),
        "metadata": {},
        "transfer": transfer["id"],
    }


def balance_transaction(
    kind: str, source: str, amount: int, fee: int, currency: str, fee_description: str
) -> Json:
    """A line of the platform's Stripe balance: `amount` signed (a charge is positive),
    `fee` what Stripe kept (negative when it gave a fee back), `net` what is left."""
    return {
        "id": stripe_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "created": int(time.time()),
        "currency": currency.lower(),
        "fee": fee,
        "fee_details": (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency.lower(),
                    "description": fee_description,
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        ),
        "net": amount - fee,
        "source": source,
        "status": "available",
        "type": kind,
    }


# Stripe's dispute reasons (Dispute.reason).
DISPUTE_REASONS = (
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
# Dispute statuses in which Stripe takes evidence.
DISPUTE_TAKES_EVIDENCE = ("warning_needs_response", "needs_response")


def new_dispute(
    intent: Mapping[str, Any], charge_id: str, amount: int, reason: str = "fraudulent"
) -> Json:
    created = int(time.time())
    return {
        "id": stripe_id("du"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge_id,
        "created": created,
        "currency": intent["currency"],
        "evidence": {},
        # Stripe gives the seller about a week to answer before the bank decides.
        "evidence_details": {
            "due_by": created + 7 * 24 * 3600,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "payment_intent": intent["id"],
        "reason": reason,
        "status": "needs_response",
    }


def connected_account(worker_id: int, email: str) -> Json:
    """An Express account whose onboarding is not done yet."""
    return {
        "id": stripe_id("acct", 16),
        "object": "account",
        "type": "express",
        "email": email,
        "country": "US",
        "charges_enabled": False,
        "payouts_enabled": False,
        "details_submitted": False,
        "metadata": {"worker_id": str(worker_id)},
        "created": int(time.time()),
    }


def new_customer(email: str, reference: str) -> Json:
    return {
        "id": stripe_id("cus", 14),
        "object": "customer",
        "created": int(time.time()),
        "email": email,
        "metadata": {"reference": reference},
        "payment_methods": [],  # the simulator's record of what is attached
    }


def new_setup_intent(customer_id: str, reference: str) -> Json:
    """An off-session SetupIntent waiting for the payer's card."""
    setup_id = stripe_id("seti")
    return {
        "id": setup_id,
        "object": "setup_intent",
        "client_secret": f"{setup_id}_secret_{random_string(ALNUM, 25)}",
        "created": int(time.time()),
        "customer": customer_id,
        "last_setup_error": None,
        "livemode": False,
        "metadata": {"reference": reference},
        "payment_method": None,
        "payment_method_types": ["card"],
        "status": "requires_payment_method",
        "usage": "off_session",
    }


def payment_method_domain(domain_name: str) -> Json:
    """A registered domain: active for every wallet (test mode does not verify Apple
    Pay's domain-association file)."""
    return {
        "id": stripe_id("pmd"),
        "object": "payment_method_domain",
        "apple_pay": {"status": "active"},
        "created": int(time.time()),
        "domain_name": domain_name,
        "enabled": True,
        "google_pay": {"status": "active"},
        "link": {"status": "active"},
        "livemode": False,
        "paypal": {"status": "active"},
    }


def currency(obj: Mapping[str, Any]) -> str:
    return str(obj["currency"]).upper()
