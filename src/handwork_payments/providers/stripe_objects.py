"""Stripe's objects in our terms: a PaymentIntent (with its expanded charge and balance
transaction) as a ProviderHold, a SetupIntent as a ProviderSetup, a transfer as a
ProviderTransfer. Stripe's statuses and field names are read here and in stripe_events.py,
nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from handwork_payments.providers import stripe_wallets
from handwork_payments.providers.base import (
    HoldState,
    ProviderError,
    ProviderHold,
    ProviderSetup,
    ProviderTransfer,
    SetupState,
    TransferState,
)

# Online (customer-initiated) card authorisations lapse after 7 days, when Stripe cancels
# the intent. Used only when the charge does not say `capture_before` itself.
AUTHORIZATION_WINDOW = timedelta(days=7)

# Radar's verdicts on a charge that say something (it also answers not_assessed, unknown).
RADAR_LEVELS = ("normal", "elevated", "highest")


def charge_of(intent: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The intent's latest charge: its id, and its fields when expanded."""
    charge = intent.get("latest_charge")
    if isinstance(charge, str):
        return charge, {}
    if isinstance(charge, Mapping):
        return (str(charge["id"]) if charge.get("id") else None), charge
    return None, {}


def capture_deadline(intent: Mapping[str, Any], charge: Mapping[str, Any]) -> datetime:
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    capture_before = card.get("capture_before")
    if capture_before:
        return datetime.fromtimestamp(int(capture_before), tz=UTC)
    return datetime.fromtimestamp(int(intent["created"]), tz=UTC) + AUTHORIZATION_WINDOW


def hold_from_intent(intent: Mapping[str, Any]) -> ProviderHold:
    """A PaymentIntent as a ProviderHold: Stripe's statuses translated here, nowhere else."""
    status = intent.get("status")
    amount = int(intent["amount"])
    charge_id, charge = charge_of(intent)
    capture_by: datetime | None = None
    failure_message: str | None = None
    captured_amount = 0
    capture_id: str | None = None
    if status == "requires_capture":
        state = HoldState.AUTHORIZED
        capture_by = capture_deadline(intent, charge)
    elif status == "succeeded":
        state = HoldState.CAPTURED
        capture_id = charge_id
        received = intent.get("amount_received", charge.get("amount_captured"))
        captured_amount = int(received) if received is not None else amount
    elif status == "requires_payment_method":
        error = intent.get("last_payment_error") or {}
        if error:
            # A declined or failed attempt leaves the intent waiting for another method:
            # for us the hold failed (a new attempt is a new payment).
            state = HoldState.FAILED
            failure_message = str(error.get("message") or error.get("code") or "payment failed")
        else:
            state = HoldState.REQUIRES_PAYMENT_METHOD
    elif status == "requires_confirmation":
        # A method is attached, nothing is authorised yet: confirm_hold confirms it.
        state = HoldState.REQUIRES_PAYMENT_METHOD
    elif status in ("requires_action", "processing"):
        # `processing` (the issuer has not answered yet) is pending like 3-D Secure: not
        # held, not failed; the client_secret lets the front end follow it, and the
        # payment_intent.amount_capturable_updated / payment_failed webhook settles it.
        state = HoldState.REQUIRES_ACTION
    elif status == "canceled":
        state = HoldState.CANCELED
        # "automatic" means Stripe let the authorisation lapse.
        failure_message = intent.get("cancellation_reason")
    else:
        raise ProviderError(f"unknown PaymentIntent status {status!r}", code="unknown_status")
    return ProviderHold(
        provider_payment_id=str(intent["id"]),
        state=state,
        amount=amount,
        currency=str(intent["currency"]).upper(),
        client_secret=intent.get("client_secret"),
        capture_id=capture_id,
        captured_amount=captured_amount,
        refunded_amount=int(charge.get("amount_refunded") or 0),
        capture_by=capture_by,
        failure_message=failure_message,
        fee=balance_fee(charge.get("balance_transaction")) if capture_id else None,
        wallet=stripe_wallets.wallet(charge),
        risk_level=radar_level(charge),
        card_fingerprint=((charge.get("payment_method_details") or {}).get("card") or {}).get(
            "fingerprint"
        ),
    )


def radar_level(charge: Mapping[str, Any]) -> str | None:
    """Radar's `outcome.risk_level` on the charge; `not_assessed` and `unknown` (and no
    outcome yet) are no verdict."""
    level = (charge.get("outcome") or {}).get("risk_level")
    return level if level in RADAR_LEVELS else None


def balance_fee(txn: Any) -> int | None:
    """The fee of an expanded balance transaction; None when it is not expanded (an id,
    or a peer that keeps none). A refund's is negative when Stripe gave a fee back."""
    if isinstance(txn, Mapping) and txn.get("fee") is not None:
        return int(txn["fee"])
    return None


def setup_of(data: Mapping[str, Any]) -> ProviderSetup:
    """A SetupIntent as a ProviderSetup: `requires_payment_method`, `requires_confirmation`,
    `requires_action` and `processing` are all still pending for us."""
    status = data.get("status")
    state = {"succeeded": SetupState.SUCCEEDED, "canceled": SetupState.CANCELED}.get(
        str(status), SetupState.PENDING
    )
    method = data.get("payment_method")
    if isinstance(method, Mapping):
        method = method.get("id")
    customer = data.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    return ProviderSetup(
        setup_id=str(data["id"]),
        state=state,
        customer=str(customer or ""),
        payment_method=str(method) if method else None,
        client_secret=data.get("client_secret"),
    )


def transfer_of(data: Mapping[str, Any]) -> ProviderTransfer:
    """A Connect transfer as a ProviderTransfer. A transfer moves the money to the connected
    account when it is created, so it is SUCCEEDED unless it has been reversed in full."""
    amount = int(data["amount"])
    reversed_in_full = bool(data.get("reversed")) or int(data.get("amount_reversed") or 0) >= amount
    destination = data.get("destination")
    if isinstance(destination, Mapping):
        destination = destination.get("id")
    return ProviderTransfer(
        transfer_id=str(data["id"]),
        state=TransferState.FAILED if reversed_in_full else TransferState.SUCCEEDED,
        amount=amount,
        currency=str(data["currency"]).upper(),
        failure_reason="transfer reversed" if reversed_in_full else None,
        destination=str(destination) if destination else None,
    )
