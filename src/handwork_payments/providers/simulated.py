"""The built-in Stripe and PayPal simulators, used whenever real credentials are not set, so
the service runs with no keys and no network.

State lives in the `simulated_objects` table and is read and written in the simulator's own
short transactions, never the caller's: like a remote provider's, it is independent of our
rows and shared by every process on the database. Objects are stored in the provider's own
JSON shape (Stripe PaymentIntents, charges, refunds, transfers; PayPal orders with their
authorisations, captures and refunds nested as `GET /v2/checkout/orders/{id}` shows them)
so that webhook events built from them look like the real ones.

Idempotency works like Stripe's: the first call under a key stores its result (and a
decline, which changes the intent), a repeat returns it without acting, and the same key
with another operation or other parameters is `idempotency_key_in_use`. Refusals that change
nothing (bad state, amount too large, unknown id) are not stored, as Stripe stores nothing
for requests that fail validation, so a retry after the state has changed can succeed.

Test behaviour: Stripe's test payment methods `pm_card_visa` (authorised),
`pm_card_chargeDeclined` (declined) and `pm_card_authenticationRequired` (3-D Secure, see
`authenticate`); PayPal's buyer approval through `approve`; faults through `inject_fault`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from handwork_payments.db import Sessions, transaction
from handwork_payments.kit.money import MAX_AMOUNT_MINOR, MoneyError, format_amount, to_minor
from handwork_payments.kit.money import normalize_currency as _normalize_currency
from handwork_payments.models import SimulatedObject
from handwork_payments.providers import stripe_events
from handwork_payments.providers.base import (
    HoldRef,
    HoldState,
    InvalidSignatureError,
    PaymentDeclinedError,
    PayoutOrder,
    ProviderCapture,
    ProviderError,
    ProviderEvent,
    ProviderHold,
    ProviderRefund,
    ProviderTransfer,
    ProviderUnavailableError,
    TransferState,
)
from handwork_payments.settings import Settings

T = TypeVar("T")
Json = dict[str, Any]

# The webhook secret the Stripe simulator signs with when STRIPE_WEBHOOK_SECRET is unset.
SIMULATOR_WEBHOOK_SECRET = "whsec_handwork_simulator"
# Simulator-only PayPal webhook signature: HMAC-SHA256 (hex) of the body with this key, in
# PAYPAL-TRANSMISSION-SIG. Real PayPal signs with a certificate (or is asked through
# verify-webhook-signature); this scheme is accepted by the simulator and nowhere else.
PAYPAL_SIMULATOR_SIGNATURE_KEY = "paypal-simulator"
PAYPAL_SIGNATURE_HEADER = "PAYPAL-TRANSMISSION-SIG"
# The API version the pinned `stripe` SDK speaks, stamped on events.
STRIPE_API_VERSION = "2026-10-28.endive"
# Where the PayPal buyer "approves": the simulator endpoint on this service itself.
PAYPAL_APPROVAL_PATH = "/api/v1/simulator/paypal/checkoutnow"
PAYPAL_API_BASE = "https://api-m.sandbox.paypal.com"
STRIPE_CONNECT_LINK_BASE = "https://connect.stripe.com/setup/s/simulated"

# Card authorisations lapse after about 7 days at Stripe; PayPal's last 29 days.
STRIPE_AUTHORIZATION_WINDOW = timedelta(days=7)
PAYPAL_AUTHORIZATION_WINDOW = timedelta(days=29)

PM_VISA = "pm_card_visa"
PM_DECLINED = "pm_card_chargeDeclined"
PM_AUTHENTICATION_REQUIRED = "pm_card_authenticationRequired"
_TEST_CARDS: dict[str, str] = {
    PM_VISA: "4242",
    PM_DECLINED: "0002",
    PM_AUTHENTICATION_REQUIRED: "3155",
}

# The protocol's methods a fault can be injected into.
FAULT_OPERATIONS = frozenset(
    {
        "create_hold",
        "confirm_hold",
        "get_hold",
        "capture",
        "cancel",
        "refund",
        "send_payout",
        "send_payout_batch",
        "find_payout",
        "reauthorize",
        "parse_event",
        "create_connected_account",
        "create_account_link",
        "reverse_transfer",
    }
)
FAULT_MODES = frozenset({"timeout", "timeout_after_success", "error", "delay"})

# Row kinds in simulated_objects.
IDEMPOTENCY = "idempotency"
FAULT = "fault"
PAYMENT_INTENT = "payment_intent"
CHARGE = "charge"
REFUND = "refund"
TRANSFER = "transfer"
TRANSFER_REVERSAL = "transfer_reversal"
ACCOUNT = "account"
ORDER = "order"
PAYOUT_ITEM = "payout_item"

_ALNUM = string.ascii_letters + string.digits
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# The unique idempotency_key column holds "{provider}:{key}".
_MAX_KEY_LENGTH = 200


class UnknownObjectError(ProviderError):
    """The id names no object at the provider (a 404 there)."""


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _stripe_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{_random(_ALNUM, length)}"


def _paypal_id(length: int = 17) -> str:
    return _random(_UPPER_ALNUM, length)


def _now() -> datetime:
    return datetime.now(UTC)


def _paypal_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hold_json(hold: ProviderHold) -> Json:
    data = asdict(hold)
    data["state"] = hold.state.value
    data["capture_by"] = hold.capture_by.isoformat() if hold.capture_by else None
    return data


def _hold_from_json(data: Mapping[str, Any]) -> ProviderHold:
    capture_by = data.get("capture_by")
    return ProviderHold(
        **{
            **data,
            "state": HoldState(data["state"]),
            "capture_by": datetime.fromisoformat(capture_by) if capture_by else None,
        }
    )


def _transfer_json(transfer: ProviderTransfer) -> Json:
    data = asdict(transfer)
    data["state"] = transfer.state.value
    return data


def _transfer_from_json(data: Mapping[str, Any]) -> ProviderTransfer:
    return ProviderTransfer(**{**data, "state": TransferState(data["state"])})


def _storable_id(object_id: str) -> bool:
    """Whether an id from a caller could name a stored object at all: PostgreSQL refuses a
    NUL in text and the column holds 64 characters (asking would be a database error)."""
    return "\x00" not in object_id and len(object_id) <= 64


def _save(row: SimulatedObject, data: Json) -> None:
    # JSONB is not mutation-tracked: say the column changed.
    row.data = data
    flag_modified(row, "data")


class SimulatedProvider:
    """A Stripe (name "stripe", also a ConnectProvider) or PayPal (name "paypal") simulator
    behind the PaymentProvider protocol, plus the buyer-side actions a browser would do
    (`client_confirm`, `authenticate`, `approve`), event builders and fault injection."""

    live = False

    def __init__(self, name: str, sessions: Sessions, settings: Settings) -> None:
        assert name in ("stripe", "paypal"), f"no simulator for provider {name!r}"
        self.name = name
        self.sessions = sessions
        self.settings = settings

    @property
    def _stripe(self) -> bool:
        return self.name == "stripe"

    @property
    def webhook_secret(self) -> str:
        return self.settings.stripe_webhook_secret or SIMULATOR_WEBHOOK_SECRET

    # --- the PaymentProvider protocol ---------------------------------------------------

    async def create_hold(
        self,
        *,
        payment_id: int,
        booking_id: int,
        amount: int,
        currency: str,
        payment_method: str | None,
        return_url: str | None,
        cancel_url: str | None,
        idempotency_key: str,
    ) -> ProviderHold:
        params: Json = {
            "payment_id": payment_id,
            "booking_id": booking_id,
            "amount": amount,
            "currency": currency.upper(),
            "payment_method": payment_method,
            "return_url": return_url,
            "cancel_url": cancel_url,
        }

        async def act(session: AsyncSession) -> Json:
            self._check_amount(amount)
            code = self._currency(currency)
            if self._stripe:
                return await self._create_intent(
                    session, payment_id, booking_id, amount, code, payment_method
                )
            return await self._create_order(
                session, payment_id, booking_id, amount, code, return_url, cancel_url
            )

        return _hold_from_json(
            await self._call("create_hold", act, key=idempotency_key, params=params)
        )

    async def confirm_hold(
        self, *, provider_payment_id: str, payer_id: str | None, idempotency_key: str
    ) -> ProviderHold:
        if self._stripe:
            # Retrieving the intent is a read (Stripe applies no idempotency to GETs): what
            # the browser did since (confirm, 3-D Secure) must show, never a stored answer.
            async def read(session: AsyncSession) -> Json:
                return await self._intent_hold(session, provider_payment_id, lock=False)

            return _hold_from_json(await self._call("confirm_hold", read))

        async def authorize(session: AsyncSession) -> Json:
            return await self._authorize_order(session, provider_payment_id, payer_id)

        params: Json = {"order_id": provider_payment_id, "payer_id": payer_id}
        return _hold_from_json(
            await self._call("confirm_hold", authorize, key=idempotency_key, params=params)
        )

    async def get_hold(self, ref: HoldRef) -> ProviderHold:
        async def read(session: AsyncSession) -> Json:
            if self._stripe:
                return await self._intent_hold(session, ref.provider_payment_id, lock=False)
            row = await self._load(session, ref.provider_payment_id, ORDER)
            return _hold_json(_order_hold(row.data))

        return _hold_from_json(await self._call("get_hold", read))

    async def capture(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderCapture:
        params: Json = {
            "ref": asdict(ref),
            "amount": amount,
            "currency": currency.upper(),
        }

        async def act(session: AsyncSession) -> Json:
            if self._stripe:
                return await self._capture_intent(session, ref, amount, currency)
            return await self._capture_order(session, ref, amount, currency)

        result = await self._call("capture", act, key=idempotency_key, params=params)
        return ProviderCapture(capture_id=result["capture_id"], amount=result["amount"])

    async def cancel(self, *, ref: HoldRef, idempotency_key: str) -> None:
        async def act(session: AsyncSession) -> Json:
            if self._stripe:
                await self._cancel_intent(session, ref)
            else:
                await self._void_order(session, ref)
            return {}

        await self._call("cancel", act, key=idempotency_key, params={"ref": asdict(ref)})

    async def refund(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderRefund:
        params: Json = {"ref": asdict(ref), "amount": amount, "currency": currency.upper()}

        async def act(session: AsyncSession) -> Json:
            if self._stripe:
                return await self._refund_intent(session, ref, amount, currency)
            return await self._refund_order(session, ref, amount, currency)

        result = await self._call("refund", act, key=idempotency_key, params=params)
        return ProviderRefund(refund_id=result["refund_id"], amount=result["amount"])

    async def send_payout(self, order: PayoutOrder) -> ProviderTransfer:
        params: Json = {
            "payout_id": order.payout_id,
            "destination": order.destination,
            "amount": order.amount,
            "currency": order.currency.upper(),
        }

        async def act(session: AsyncSession) -> Json:
            self._check_amount(order.amount)
            code = self._currency(order.currency)
            if self._stripe:
                return await self._create_transfer(session, order, code)
            return await self._create_payout_item(session, order, code)

        result = await self._call("send_payout", act, key=order.idempotency_key, params=params)
        return _transfer_from_json(result)

    async def send_payout_batch(
        self, orders: Sequence[PayoutOrder], batch_key: str
    ) -> list[ProviderTransfer]:
        """PayPal Payouts with several items (PayoutBatchProvider): one batch under
        `batch_key` (the sender_batch_id); an item whose receiver is refused fails alone,
        as PayPal lists it FAILED while paying the others."""
        self._only("paypal")
        if not orders:
            return []
        params: Json = {
            "orders": [
                {
                    "payout_id": o.payout_id,
                    "destination": o.destination,
                    "amount": o.amount,
                    "currency": o.currency.upper(),
                }
                for o in orders
            ]
        }

        async def act(session: AsyncSession) -> Json:
            batch_id = _paypal_id(13)
            transfers: list[Json] = []
            for order in orders:
                self._check_amount(order.amount)
                code = self._currency(order.currency)
                try:
                    transfers.append(
                        await self._create_payout_item(session, order, code, batch_id=batch_id)
                    )
                except ProviderError as exc:
                    failed = ProviderTransfer(
                        "", TransferState.FAILED, order.amount, code, batch_id, exc.message
                    )
                    transfers.append(_transfer_json(failed))
            return {"batch_id": batch_id, "transfers": transfers}

        result = await self._call("send_payout_batch", act, key=batch_key, params=params)
        return [_transfer_from_json(t) for t in result["transfers"]]

    async def find_payout(
        self, order: PayoutOrder, *, batch_id: str | None = None
    ) -> ProviderTransfer | None:
        """A pure look-up, by the payout's own key or, for PayPal, by the sender_item_id
        its item carries (`batch_id` narrows it to one batch)."""

        async def read(session: AsyncSession) -> Json:
            record = await self._key_record(session, order.idempotency_key)
            result: Json | None = None
            if record is not None and record.data.get("operation") == "send_payout":
                result = record.data.get("result")
            if result is None:
                if self._stripe:
                    return {}
                # Sent in a batch: found by the item's sender_item_id.
                return await self._payout_item_transfer(session, order, batch_id)
            if self._stripe:
                # Report the transfer as it is now (a reversal may have followed).
                row = await self._load(session, result["transfer_id"], TRANSFER)
                return _transfer_json(_stripe_transfer(row.data))
            return result

        found = await self._call("find_payout", read)
        return _transfer_from_json(found) if found else None

    async def parse_event(self, headers: Mapping[str, str], body: bytes) -> ProviderEvent:
        async def parse() -> ProviderEvent:
            if self._stripe:
                return stripe_events.parse(
                    headers,
                    body,
                    self.webhook_secret,
                    self.settings.stripe_webhook_tolerance_seconds,
                )
            _verify_paypal_event(headers, body)
            return await self.translate_event(body)

        return await self._faulty("parse_event", parse)

    async def translate_event(self, body: bytes) -> ProviderEvent:
        if self._stripe:
            return stripe_events.translate_body(body)
        event = _translate_paypal_event(body)
        if event.object_id is None:
            # Refunds and disputes name a capture, not the order: the real adapter asks
            # PayPal (GET capture); the simulator looks in its own orders.
            from handwork_payments.providers.paypal_events import lookup_hint

            hint = lookup_hint(json.loads(body))
            if hint is not None:
                order_id = await self._order_holding(*hint)
                if order_id is not None:
                    event = replace(event, object_id=order_id)
        return event

    async def _order_holding(self, resource: str, resource_id: str) -> str | None:
        """The id of the order whose nested payments hold this capture / authorization."""
        plural = {"capture": "captures", "authorization": "authorizations"}.get(resource)
        if plural is None:
            return None
        nested = {"purchase_units": [{"payments": {plural: [{"id": resource_id}]}}]}
        async with transaction(self.sessions) as session:
            found = await session.scalar(
                select(SimulatedObject.id).where(
                    SimulatedObject.provider == self.name,
                    SimulatedObject.kind == ORDER,
                    SimulatedObject.data.contains(nested),
                )
            )
        return found

    # --- Stripe Connect (ConnectProvider) -----------------------------------------------

    async def create_connected_account(self, *, worker_id: int, email: str) -> str:
        self._only("stripe")

        async def act(session: AsyncSession) -> Json:
            account_id = _stripe_id("acct", 16)
            account: Json = {
                "id": account_id,
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
            self._insert(session, account_id, ACCOUNT, account)
            return {"account_id": account_id}

        # The key names the worker only, so a changed email still finds the one account.
        result = await self._call(
            "create_connected_account",
            act,
            key=f"connect-account-{worker_id}",
            params={"worker_id": worker_id},
        )
        return str(result["account_id"])

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> str:
        self._only("stripe")

        async def act(session: AsyncSession) -> Json:
            await self._load(session, account_id, ACCOUNT)
            return {"url": f"{STRIPE_CONNECT_LINK_BASE}/{account_id}"}

        result = await self._call("create_account_link", act)
        return str(result["url"])

    async def reverse_transfer(
        self, *, transfer_id: str, amount: int, idempotency_key: str
    ) -> ProviderRefund:
        self._only("stripe")

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, transfer_id, TRANSFER, lock=True)
            transfer = row.data
            if amount < 1:
                raise ProviderError(
                    "Invalid positive integer: amount", code="parameter_invalid_integer"
                )
            left = int(transfer["amount"]) - int(transfer["amount_reversed"])
            if amount > left:
                raise ProviderError(
                    f"The reversal amount ({amount}) exceeds what is left of transfer "
                    f"{transfer_id} ({left}).",
                    code="insufficient_funds",
                )
            reversal_id = _stripe_id("trr")
            reversal: Json = {
                "id": reversal_id,
                "object": "transfer_reversal",
                "amount": amount,
                "currency": transfer["currency"],
                "created": int(time.time()),
                "metadata": {},
                "transfer": transfer_id,
            }
            self._insert(session, reversal_id, TRANSFER_REVERSAL, reversal)
            transfer["amount_reversed"] = int(transfer["amount_reversed"]) + amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            reversals = transfer["reversals"]
            reversals["data"].append(reversal)
            reversals["total_count"] = len(reversals["data"])
            _save(row, transfer)
            return {"refund_id": reversal_id, "amount": amount}

        params: Json = {"transfer_id": transfer_id, "amount": amount}
        result = await self._call("reverse_transfer", act, key=idempotency_key, params=params)
        return ProviderRefund(refund_id=result["refund_id"], amount=result["amount"])

    async def complete_onboarding(self, account_id: str) -> Json:
        """The worker finished Stripe's onboarding form: payouts are enabled. Returns the
        account object, ready for `stripe_event("account.updated", ...)`."""
        self._only("stripe")
        async with transaction(self.sessions) as session:
            row = await self._load(session, account_id, ACCOUNT, lock=True)
            account = row.data
            account.update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
            _save(row, account)
            return dict(account)

    # --- what the buyer's browser does (Stripe.js, PayPal's approval page) --------------

    async def client_confirm(self, provider_payment_id: str, payment_method: str) -> ProviderHold:
        """Stripe.js confirming the intent with a card. A decline raises
        PaymentDeclinedError (after storing it on the intent, as Stripe does)."""
        self._only("stripe")

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT, lock=True)
            await self._confirm_intent(session, row, payment_method)
            return await self._intent_hold(session, provider_payment_id, lock=False)

        return _hold_from_json(await self._perform(act))

    async def authenticate(self, provider_payment_id: str, succeed: bool = True) -> ProviderHold:
        """3-D Secure done in the browser: the intent becomes authorised, or, when the
        cardholder failed it, goes back to requires_payment_method with an error (FAILED)."""
        self._only("stripe")

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT, lock=True)
            intent = row.data
            if intent["status"] != "requires_action":
                raise ProviderError(
                    "This PaymentIntent does not need authentication: it has a status of "
                    f"{intent['status']}.",
                    code="payment_intent_unexpected_state",
                )
            if succeed:
                await self._authorise_intent(session, row)
            else:
                intent.update(
                    status="requires_payment_method",
                    next_action=None,
                    last_payment_error={
                        "type": "card_error",
                        "code": "payment_intent_authentication_failure",
                        "message": "The provided PaymentMethod has failed authentication. "
                        "You can provide payment_method_data or a new PaymentMethod to "
                        "attempt to fulfill this PaymentIntent again.",
                        "payment_method": {"id": intent["payment_method"]},
                    },
                )
                _save(row, intent)
            return await self._intent_hold(session, provider_payment_id, lock=False)

        return _hold_from_json(await self._perform(act))

    async def approve(self, order_id: str) -> str:
        """The PayPal buyer approves the order on PayPal's page; returns their payer id.
        Approving again answers the same payer."""
        self._only("paypal")
        async with transaction(self.sessions) as session:
            row = await self._load(session, order_id, ORDER, lock=True)
            order = row.data
            if order["status"] == "VOIDED":
                raise ProviderError(
                    "The order was voided and cannot be approved.",
                    code="ORDER_COMPLETED_OR_VOIDED",
                )
            if order.get("payer"):
                return str(order["payer"]["payer_id"])
            payer_id = "PAYER" + _random(_UPPER_ALNUM, 9)
            order["payer"] = {
                "payer_id": payer_id,
                "email_address": f"buyer-{payer_id.lower()}@example.com",
                "name": {"given_name": "Simulated", "surname": "Buyer"},
            }
            order["status"] = "APPROVED"
            order["update_time"] = _paypal_time(_now())
            _save(row, order)
            return payer_id

    # --- objects and events ---------------------------------------------------------------

    async def object_data(self, object_id: str) -> Json:
        """Any stored object of this provider (intent, charge, refund, transfer, account,
        order, payout item) in the provider's JSON shape."""
        if not _storable_id(object_id):
            raise self._missing("object", object_id)
        async with transaction(self.sessions) as session:
            row = await session.get(SimulatedObject, object_id)
            if row is None or row.provider != self.name or row.kind in (IDEMPOTENCY, FAULT):
                raise self._missing("object", object_id)
            return dict(row.data)

    async def intent_object(self, provider_payment_id: str) -> Json:
        """The stored Stripe PaymentIntent, as Stripe would put it in an event."""
        self._only("stripe")
        async with transaction(self.sessions) as session:
            row = await self._load(session, provider_payment_id, PAYMENT_INTENT)
            return dict(row.data)

    async def order_object(self, order_id: str) -> Json:
        """The stored PayPal order, authorisations, captures and refunds nested in
        `purchase_units[0].payments` as PayPal's GET order shows them."""
        self._only("paypal")
        async with transaction(self.sessions) as session:
            row = await self._load(session, order_id, ORDER)
            return dict(row.data)

    def stripe_event(self, event_type: str, obj: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """A Stripe event about `obj` and the headers Stripe would send it with, signed with
        the webhook secret."""
        event: Json = {
            "id": _stripe_id("evt"),
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
            "Stripe-Signature": stripe_events.sign(body, self.webhook_secret),
        }
        return body, headers

    def paypal_event(
        self, event_type: str, resource: Mapping[str, Any]
    ) -> tuple[bytes, dict[str, str]]:
        """A PayPal webhook event about `resource`, signed with the simulator-only scheme
        (see PAYPAL_SIMULATOR_SIGNATURE_KEY)."""
        now = _now()
        event: Json = {
            "id": f"WH-{_paypal_id()}-{_paypal_id()}",
            "event_version": "1.0",
            "create_time": _paypal_time(now),
            "resource_type": _paypal_resource_type(event_type),
            "event_type": event_type,
            "summary": f"Simulated {event_type}",
            "resource": dict(resource),
        }
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json",
            "PAYPAL-TRANSMISSION-ID": str(uuid.uuid4()),
            "PAYPAL-TRANSMISSION-TIME": _paypal_time(now),
            "PAYPAL-AUTH-ALGO": "HMACSHA256-SIMULATOR",
            PAYPAL_SIGNATURE_HEADER: paypal_simulator_signature(body),
        }
        return body, headers

    # --- fault injection ------------------------------------------------------------------

    async def inject_fault(
        self, operation: str, mode: str, times: int = 1, *, delay_seconds: float = 0.0
    ) -> None:
        """Make the next `times` calls of `operation` fail: "timeout" (nothing done),
        "timeout_after_success" (done and stored under its idempotency key, the answer
        lost), "error" (refused, nothing done) or "delay" (done and committed, the answer
        `delay_seconds` late: a slow provider, or a caller killed while it waits). Stored
        in the table so every process sees it."""
        if operation not in FAULT_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if delay_seconds < 0 or (delay_seconds > 0) != (mode == "delay"):
            raise ValueError("delay_seconds (positive) goes with the delay mode only")
        # A time-ordered id: faults for one operation are consumed oldest first.
        fault_id = f"fault_{time.time_ns():020d}_{_random(_ALNUM, 8)}"
        data: Json = {"operation": operation, "mode": mode, "times": times}
        if mode == "delay":
            data["delay_seconds"] = delay_seconds
        async with transaction(self.sessions) as session:
            self._insert(session, fault_id, FAULT, data)

    async def clear_faults(self) -> None:
        async with transaction(self.sessions) as session:
            rows = await session.scalars(
                select(SimulatedObject).where(
                    SimulatedObject.provider == self.name, SimulatedObject.kind == FAULT
                )
            )
            for row in rows:
                await session.delete(row)

    async def _take_fault(self, operation: str) -> tuple[str, float] | None:
        async with transaction(self.sessions) as session:
            # FOR UPDATE (not SKIP LOCKED): two concurrent calls must not both use up one
            # remaining fault, nor skip one that is still there.
            row = await session.scalar(
                select(SimulatedObject)
                .where(
                    SimulatedObject.provider == self.name,
                    SimulatedObject.kind == FAULT,
                    SimulatedObject.data.contains({"operation": operation}),
                )
                .order_by(SimulatedObject.id)
                .limit(1)
                .with_for_update()
            )
            if row is None:
                return None
            mode = str(row.data["mode"])
            delay = float(row.data.get("delay_seconds", 0.0))
            remaining = int(row.data["times"]) - 1
            if remaining <= 0:
                await session.delete(row)
            else:
                _save(row, {**row.data, "times": remaining})
            return mode, delay

    async def _faulty(self, operation: str, act: Callable[[], Awaitable[T]]) -> T:
        fault = await self._take_fault(operation)
        mode, delay = fault if fault is not None else (None, 0.0)
        if mode == "timeout":
            raise ProviderUnavailableError(
                f"simulated timeout: {self.name} {operation} was not performed"
            )
        if mode == "error":
            raise ProviderError(
                f"Simulated failure of {self.name} {operation}", code="simulated_failure"
            )
        try:
            result = await act()
        except ProviderError:
            if mode == "timeout_after_success":
                raise ProviderUnavailableError(
                    f"simulated timeout: the answer to {self.name} {operation} was lost"
                ) from None
            raise
        if mode == "timeout_after_success":
            raise ProviderUnavailableError(
                f"simulated timeout: {self.name} {operation} was performed, the answer lost"
            )
        if mode == "delay":
            await asyncio.sleep(delay)
        return result

    # --- transactions and idempotency -----------------------------------------------------

    async def _call(
        self,
        operation: str,
        act: Callable[[AsyncSession], Awaitable[Json]],
        *,
        key: str | None = None,
        params: Json | None = None,
    ) -> Json:
        return await self._faulty(
            operation, lambda: self._perform(act, operation=operation, key=key, params=params)
        )

    async def _perform(
        self,
        act: Callable[[AsyncSession], Awaitable[Json]],
        *,
        operation: str | None = None,
        key: str | None = None,
        params: Json | None = None,
    ) -> Json:
        """Run `act` in one transaction of the simulator's own, under the idempotency key
        when there is one. A decline is committed (the intent keeps its error, the key its
        answer) and raised after; any other error rolls everything back."""
        declined: PaymentDeclinedError | None = None
        async with transaction(self.sessions) as session:
            record = None
            if key is not None:
                assert operation is not None
                record = await self._claim_key(session, operation, key, params or {})
                stored = record.data
                if "result" in stored:
                    return dict(stored["result"])
                if "declined" in stored:
                    declined = PaymentDeclinedError(
                        stored["declined"]["message"], code=stored["declined"]["code"]
                    )
            if declined is None:
                try:
                    result = await act(session)
                except PaymentDeclinedError as exc:
                    declined = exc
                    if record is not None:
                        _save(
                            record,
                            {**record.data, "declined": {"message": exc.message, "code": exc.code}},
                        )
                else:
                    if record is not None:
                        _save(record, {**record.data, "result": result})
                    return result
        assert declined is not None
        raise declined

    async def _claim_key(
        self, session: AsyncSession, operation: str, key: str, params: Json
    ) -> SimulatedObject:
        if not key or len(key) > _MAX_KEY_LENGTH:
            raise ProviderError(
                f"Idempotency keys are 1 to {_MAX_KEY_LENGTH} characters", code="parameter_invalid"
            )
        scoped = f"{self.name}:{key}"
        # A concurrent call with the same key waits here until the first commits (or rolls
        # back), then finds its stored answer: one key, one action, across processes.
        await session.execute(
            pg_insert(SimulatedObject)
            .values(
                id=f"idem_{_random(_ALNUM, 24)}",
                provider=self.name,
                kind=IDEMPOTENCY,
                idempotency_key=scoped,
                data={"operation": operation, "params": params},
            )
            .on_conflict_do_nothing()
        )
        record = await session.scalar(
            select(SimulatedObject)
            .where(SimulatedObject.idempotency_key == scoped)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert record is not None
        if record.data.get("operation") != operation or record.data.get("params") != params:
            raise ProviderError(
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                code="idempotency_key_in_use",
            )
        return record

    async def _key_record(self, session: AsyncSession, key: str) -> SimulatedObject | None:
        return await session.scalar(
            select(SimulatedObject).where(SimulatedObject.idempotency_key == f"{self.name}:{key}")
        )

    # --- rows ------------------------------------------------------------------------------

    def _insert(
        self, session: AsyncSession, object_id: str, kind: str, data: Json
    ) -> SimulatedObject:
        row = SimulatedObject(id=object_id, provider=self.name, kind=kind, data=data)
        session.add(row)
        return row

    async def _load(
        self, session: AsyncSession, object_id: str, kind: str, *, lock: bool = False
    ) -> SimulatedObject:
        if not _storable_id(object_id):
            raise self._missing(kind, object_id)
        query = select(SimulatedObject).where(
            SimulatedObject.id == object_id,
            SimulatedObject.provider == self.name,
            SimulatedObject.kind == kind,
        )
        if lock:
            # Serialises changes to one object across every process on the database.
            query = query.with_for_update().execution_options(populate_existing=True)
        row = await session.scalar(query)
        if row is None:
            raise self._missing(kind, object_id)
        return row

    def _missing(self, kind: str, object_id: str) -> UnknownObjectError:
        if self._stripe:
            return UnknownObjectError(f"No such {kind}: '{object_id}'", code="resource_missing")
        return UnknownObjectError(
            f"The specified resource ({object_id}) does not exist.", code="INVALID_RESOURCE_ID"
        )

    def _only(self, name: str) -> None:
        assert self.name == name, f"only the {name} simulator does this, not {self.name}"

    def _check_amount(self, amount: int) -> None:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ProviderError("Amounts are integers in minor units", code="parameter_invalid")
        if amount < 1:
            code = "parameter_invalid_integer" if self._stripe else "CANNOT_BE_ZERO_OR_NEGATIVE"
            raise ProviderError("The amount must be a positive integer.", code=code)
        if amount > MAX_AMOUNT_MINOR:
            code = "amount_too_large" if self._stripe else "MAX_VALUE_EXCEEDED"
            raise ProviderError(
                f"The amount must be no more than {MAX_AMOUNT_MINOR} minor units.", code=code
            )

    def _currency(self, currency: str) -> str:
        try:
            return _normalize_currency(currency)
        except MoneyError as exc:
            code = "parameter_invalid" if self._stripe else "INVALID_CURRENCY_CODE"
            raise ProviderError(f"Invalid currency: {currency}", code=code) from exc

    # --- Stripe: PaymentIntents ------------------------------------------------------------

    async def _create_intent(
        self,
        session: AsyncSession,
        payment_id: int,
        booking_id: int,
        amount: int,
        currency: str,
        payment_method: str | None,
    ) -> Json:
        if payment_method is not None:
            # Stripe checks the method before it creates anything.
            _check_payment_method(payment_method)
        intent_id = _stripe_id("pi")
        intent: Json = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "manual",
            "client_secret": f"{intent_id}_secret_{_random(_ALNUM, 25)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency.lower(),
            "description": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {"payment_id": str(payment_id), "booking_id": str(booking_id)},
            "next_action": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
        }
        row = self._insert(session, intent_id, PAYMENT_INTENT, intent)
        await session.flush()
        if payment_method is not None:
            await self._confirm_intent(session, row, payment_method)
        return await self._intent_hold(session, intent_id, lock=False)

    async def _confirm_intent(
        self, session: AsyncSession, row: SimulatedObject, payment_method: str
    ) -> None:
        intent = row.data
        _check_payment_method(payment_method)
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise ProviderError(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent["payment_method"] = payment_method
        intent["last_payment_error"] = None
        if payment_method == PM_VISA:
            await self._authorise_intent(session, row)
        elif payment_method == PM_AUTHENTICATION_REQUIRED:
            intent["status"] = "requires_action"
            intent["next_action"] = {
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect", "source": "src_simulated"},
            }
            _save(row, intent)
        else:
            assert payment_method == PM_DECLINED
            charge_id = _stripe_id("ch")
            error: Json = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "charge": charge_id,
                "payment_method": {"id": payment_method},
            }
            self._insert(
                session,
                charge_id,
                CHARGE,
                _charge(intent, charge_id, status="failed", failure_code="card_declined"),
            )
            intent.update(
                status="requires_payment_method", last_payment_error=error, latest_charge=charge_id
            )
            _save(row, intent)
            raise PaymentDeclinedError("Your card was declined.", code="card_declined")

    async def _authorise_intent(self, session: AsyncSession, row: SimulatedObject) -> None:
        intent = row.data
        charge_id = _stripe_id("ch")
        self._insert(session, charge_id, CHARGE, _charge(intent, charge_id, status="succeeded"))
        intent.update(
            status="requires_capture",
            amount_capturable=intent["amount"],
            latest_charge=charge_id,
            last_payment_error=None,
            next_action=None,
        )
        _save(row, intent)
        await session.flush()

    async def _intent_hold(self, session: AsyncSession, intent_id: str, *, lock: bool) -> Json:
        row = await self._load(session, intent_id, PAYMENT_INTENT, lock=lock)
        charge: Json = {}
        if row.data.get("latest_charge"):
            charge = (await self._load(session, row.data["latest_charge"], CHARGE)).data
        return _hold_json(_intent_hold(row.data, charge))

    async def _capture_intent(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row = await self._load(session, ref.provider_payment_id, PAYMENT_INTENT, lock=True)
        intent = row.data
        if intent["status"] != "requires_capture":
            raise ProviderError(
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        _check_same_currency(intent["currency"], currency, "parameter_invalid")
        if amount < 1:
            raise ProviderError(
                "Invalid positive integer: amount_to_capture", code="parameter_invalid_integer"
            )
        if amount > int(intent["amount_capturable"]):
            raise ProviderError(
                f"The amount_to_capture ({amount}) is greater than the amount capturable "
                f"({intent['amount_capturable']}).",
                code="amount_too_large",
            )
        charge_row = await self._load(session, intent["latest_charge"], CHARGE, lock=True)
        charge = charge_row.data
        charge.update(captured=True, amount_captured=amount)
        _save(charge_row, charge)
        # Capturing less than authorised releases the rest: nothing stays capturable.
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        _save(row, intent)
        return {"capture_id": charge["id"], "amount": amount}

    async def _cancel_intent(self, session: AsyncSession, ref: HoldRef) -> None:
        row = await self._load(session, ref.provider_payment_id, PAYMENT_INTENT, lock=True)
        intent = row.data
        if intent["status"] == "canceled":
            return  # already void: the outcome asked for
        if intent["status"] == "succeeded":
            raise ProviderError(
                "You cannot cancel this PaymentIntent because it has a status of succeeded.",
                code="payment_intent_unexpected_state",
            )
        intent.update(
            status="canceled",
            canceled_at=int(time.time()),
            cancellation_reason="requested_by_customer",
            amount_capturable=0,
            next_action=None,
        )
        _save(row, intent)

    async def _refund_intent(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row = await self._load(session, ref.provider_payment_id, PAYMENT_INTENT, lock=True)
        intent = row.data
        if intent["status"] != "succeeded":
            raise ProviderError(
                "This PaymentIntent has no captured charge to refund: it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        _check_same_currency(intent["currency"], currency, "parameter_invalid")
        if amount < 1:
            raise ProviderError(
                "Invalid positive integer: amount", code="parameter_invalid_integer"
            )
        charge_row = await self._load(session, intent["latest_charge"], CHARGE, lock=True)
        charge = charge_row.data
        left = int(charge["amount_captured"]) - int(charge["amount_refunded"])
        if left == 0:
            raise ProviderError(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if amount > left:
            raise ProviderError(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                code="amount_too_large",
            )
        refund_id = _stripe_id("re")
        refund: Json = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": intent["currency"],
            "metadata": {},
            "payment_intent": intent["id"],
            "reason": None,
            "status": "succeeded",
        }
        self._insert(session, refund_id, REFUND, refund)
        charge["amount_refunded"] = int(charge["amount_refunded"]) + amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        _save(charge_row, charge)
        return {"refund_id": refund_id, "amount": amount}

    # --- Stripe: transfers ---------------------------------------------------------------

    async def _create_transfer(
        self, session: AsyncSession, order: PayoutOrder, currency: str
    ) -> Json:
        if not order.destination.startswith("acct_"):
            raise ProviderError(
                f"No such destination: '{order.destination}'", code="invalid_destination"
            )
        transfer_id = _stripe_id("tr")
        transfer: Json = {
            "id": transfer_id,
            "object": "transfer",
            "amount": order.amount,
            "amount_reversed": 0,
            "created": int(time.time()),
            "currency": currency.lower(),
            "description": None,
            "destination": order.destination,
            "livemode": False,
            "metadata": {"payout_id": str(order.payout_id)},
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/transfers/{transfer_id}/reversals",
            },
            "reversed": False,
            "transfer_group": f"payout-{order.payout_id}",
        }
        self._insert(session, transfer_id, TRANSFER, transfer)
        return _transfer_json(_stripe_transfer(transfer))

    # --- PayPal: orders, authorisations, captures, refunds, payouts ----------------------

    async def _create_order(
        self,
        session: AsyncSession,
        payment_id: int,
        booking_id: int,
        amount: int,
        currency: str,
        return_url: str | None,
        cancel_url: str | None,
    ) -> Json:
        order_id = _paypal_id()
        now = _paypal_time(_now())
        order: Json = {
            "id": order_id,
            "intent": "AUTHORIZE",
            "status": "CREATED",
            "purchase_units": [
                {
                    "reference_id": f"booking-{booking_id}",
                    # Our own reference, as the real adapter sets it ("payment-{id}").
                    "custom_id": f"payment-{payment_id}",
                    "invoice_id": f"payment-{payment_id}",
                    "amount": {"currency_code": currency, "value": format_amount(amount, currency)},
                    "payments": {"authorizations": [], "captures": [], "refunds": []},
                }
            ],
            "payment_source": {
                "paypal": {
                    "experience_context": {"return_url": return_url, "cancel_url": cancel_url}
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
        self._insert(session, order_id, ORDER, order)
        return _hold_json(_order_hold(order))

    async def _authorize_order(
        self, session: AsyncSession, order_id: str, payer_id: str | None
    ) -> Json:
        row = await self._load(session, order_id, ORDER, lock=True)
        order = row.data
        if order["status"] == "CREATED":
            raise ProviderError(
                "Payer has not yet approved the Order for payment.", code="ORDER_NOT_APPROVED"
            )
        if order["status"] == "VOIDED":
            raise ProviderError(
                "The order was voided and cannot be authorized.", code="ORDER_COMPLETED_OR_VOIDED"
            )
        if payer_id and payer_id != order["payer"]["payer_id"]:
            raise ProviderError(
                "The payer id does not match the payer who approved the order.",
                code="PAYER_ID_MISMATCH",
            )
        if order["status"] == "COMPLETED":
            # Authorised already (under another key): report the hold as it is.
            return _hold_json(_order_hold(order))
        unit = order["purchase_units"][0]
        now = _now()
        authorization: Json = {
            "id": _paypal_id(),
            "status": "CREATED",
            "amount": dict(unit["amount"]),
            "custom_id": unit["custom_id"],
            "invoice_id": unit["invoice_id"],
            "seller_protection": {"status": "ELIGIBLE"},
            "expiration_time": _paypal_time(now + PAYPAL_AUTHORIZATION_WINDOW),
            "create_time": _paypal_time(now),
            "update_time": _paypal_time(now),
            "supplementary_data": {"related_ids": {"order_id": order_id}},
        }
        unit["payments"]["authorizations"].append(authorization)
        order.update(status="COMPLETED", update_time=_paypal_time(now))
        _save(row, order)
        return _hold_json(_order_hold(order))

    async def _capture_order(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
        order = row.data
        unit = order["purchase_units"][0]
        authorization = _authorization(order, ref)
        if authorization["status"] == "CAPTURED":
            raise ProviderError(
                "Authorization has been previously captured and hence cannot be captured again.",
                code="AUTHORIZATION_ALREADY_CAPTURED",
            )
        if authorization["status"] == "VOIDED":
            raise ProviderError(
                "A voided authorization cannot be captured.", code="AUTHORIZATION_VOIDED"
            )
        code = unit["amount"]["currency_code"]
        _check_same_currency(code, currency, "CURRENCY_MISMATCH")
        authorised = to_minor(authorization["amount"]["value"], code)
        if amount < 1:
            raise ProviderError(
                "The capture amount must be positive.", code="CANNOT_BE_ZERO_OR_NEGATIVE"
            )
        if amount > authorised:
            raise ProviderError(
                f"The capture amount ({amount}) exceeds the authorised amount ({authorised}).",
                code="MAX_CAPTURE_AMOUNT_EXCEEDED",
            )
        now = _paypal_time(_now())
        capture: Json = {
            "id": _paypal_id(),
            "status": "COMPLETED",
            "amount": {"currency_code": code, "value": format_amount(amount, code)},
            "final_capture": True,
            "custom_id": unit["custom_id"],
            "invoice_id": unit["invoice_id"],
            "seller_protection": {"status": "ELIGIBLE"},
            "create_time": now,
            "update_time": now,
            "links": [
                {
                    "href": f"{PAYPAL_API_BASE}/v2/payments/authorizations/{authorization['id']}",
                    "rel": "up",
                    "method": "GET",
                }
            ],
            "supplementary_data": {
                "related_ids": {"order_id": order["id"], "authorization_id": authorization["id"]}
            },
        }
        unit["payments"]["captures"].append(capture)
        # A final capture releases whatever was authorised beyond it.
        authorization.update(status="CAPTURED", update_time=now)
        order["update_time"] = now
        _save(row, order)
        return {"capture_id": capture["id"], "amount": amount}

    async def _void_order(self, session: AsyncSession, ref: HoldRef) -> None:
        row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
        order = row.data
        now = _paypal_time(_now())
        authorizations = order["purchase_units"][0]["payments"]["authorizations"]
        if not authorizations:
            if order["status"] != "VOIDED":
                order.update(status="VOIDED", update_time=now)
                _save(row, order)
            return
        authorization = _authorization(order, ref)
        if authorization["status"] == "VOIDED":
            return  # already void: the outcome asked for
        if authorization["status"] != "CREATED":
            raise ProviderError(
                "A captured authorization cannot be voided.", code="CANNOT_BE_VOIDED"
            )
        authorization.update(status="VOIDED", update_time=now)
        order["update_time"] = now
        _save(row, order)

    async def _refund_order(
        self, session: AsyncSession, ref: HoldRef, amount: int, currency: str
    ) -> Json:
        row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
        order = row.data
        unit = order["purchase_units"][0]
        captures = unit["payments"]["captures"]
        if not captures:
            raise ProviderError(
                "The order has no completed capture to refund.", code="CAPTURE_NOT_COMPLETED"
            )
        capture = captures[-1]
        if ref.capture_id is not None and ref.capture_id != capture["id"]:
            raise self._missing("capture", ref.capture_id)
        code = capture["amount"]["currency_code"]
        _check_same_currency(code, currency, "REFUND_CAPTURE_CURRENCY_MISMATCH")
        if amount < 1:
            raise ProviderError(
                "The refund amount must be positive.", code="CANNOT_BE_ZERO_OR_NEGATIVE"
            )
        captured = to_minor(capture["amount"]["value"], code)
        refunded = sum(to_minor(r["amount"]["value"], code) for r in unit["payments"]["refunds"])
        if refunded >= captured:
            raise ProviderError(
                "The capture has already been fully refunded.", code="CAPTURE_FULLY_REFUNDED"
            )
        if amount > captured - refunded:
            raise ProviderError(
                f"The refund amount ({amount}) exceeds what is left of the capture "
                f"({captured - refunded}).",
                code="REFUND_AMOUNT_EXCEEDED",
            )
        now = _paypal_time(_now())
        refund: Json = {
            "id": _paypal_id(),
            "status": "COMPLETED",
            "amount": {"currency_code": code, "value": format_amount(amount, code)},
            "custom_id": unit["custom_id"],
            "invoice_id": unit["invoice_id"],
            # Cumulative, as PayPal reports it: what the capture has had refunded so far.
            "seller_payable_breakdown": {
                "total_refunded_amount": {
                    "currency_code": code,
                    "value": format_amount(refunded + amount, code),
                }
            },
            "create_time": now,
            "update_time": now,
            "links": [
                {
                    "href": f"{PAYPAL_API_BASE}/v2/payments/captures/{capture['id']}",
                    "rel": "up",
                    "method": "GET",
                }
            ],
        }
        unit["payments"]["refunds"].append(refund)
        capture["status"] = "REFUNDED" if refunded + amount == captured else "PARTIALLY_REFUNDED"
        capture["update_time"] = now
        order["update_time"] = now
        _save(row, order)
        return {"refund_id": refund["id"], "amount": amount}

    async def _create_payout_item(
        self, session: AsyncSession, order: PayoutOrder, currency: str, batch_id: str | None = None
    ) -> Json:
        if not _EMAIL.match(order.destination):
            raise ProviderError(
                f"Receiver is not a valid email address: {order.destination!r}",
                code="RECEIVER_INVALID",
            )
        item_id = _paypal_id(13)
        batch_id = batch_id or _paypal_id(13)
        item: Json = {
            "payout_item_id": item_id,
            "transaction_id": _paypal_id(17),
            "activity_id": _paypal_id(17),
            "transaction_status": "SUCCESS",
            "payout_item_fee": {"currency": currency, "value": format_amount(0, currency)},
            "payout_batch_id": batch_id,
            "payout_item": {
                "recipient_type": "EMAIL",
                "amount": {"currency": currency, "value": format_amount(order.amount, currency)},
                "receiver": order.destination,
                "sender_item_id": order.idempotency_key,
                "recipient_wallet": "PAYPAL",
            },
            "time_processed": _paypal_time(_now()),
        }
        self._insert(session, item_id, PAYOUT_ITEM, item)
        transfer = ProviderTransfer(
            transfer_id=item_id,
            state=TransferState.SUCCEEDED,
            amount=order.amount,
            currency=currency,
            batch_id=batch_id,
        )
        return _transfer_json(transfer)

    async def _payout_item_transfer(
        self, session: AsyncSession, order: PayoutOrder, batch_id: str | None
    ) -> Json:
        nested: Json = {"payout_item": {"sender_item_id": order.idempotency_key}}
        if batch_id is not None:
            nested["payout_batch_id"] = batch_id
        row = await session.scalar(
            select(SimulatedObject).where(
                SimulatedObject.provider == self.name,
                SimulatedObject.kind == PAYOUT_ITEM,
                SimulatedObject.data.contains(nested),
            )
        )
        if row is None:
            return {}
        item = row.data
        currency = str(item["payout_item"]["amount"]["currency"])
        transfer = ProviderTransfer(
            transfer_id=str(item["payout_item_id"]),
            state=(
                TransferState.SUCCEEDED
                if item["transaction_status"] == "SUCCESS"
                else TransferState.FAILED
            ),
            amount=to_minor(item["payout_item"]["amount"]["value"], currency),
            currency=currency,
            batch_id=str(item["payout_batch_id"]),
        )
        return _transfer_json(transfer)

    # --- PayPal: reauthorisation -----------------------------------------------------------

    async def reauthorize(
        self, *, ref: HoldRef, amount: int, currency: str, idempotency_key: str
    ) -> ProviderHold:
        """PayPal's reauthorisation (ReauthorizingProvider), as the PayPal double models it:
        a new authorisation inside the original's 29 days, the original voided so the money
        is reserved once. The honour-period timing rules are not enforced."""
        self._only("paypal")
        params: Json = {"ref": asdict(ref), "amount": amount, "currency": currency.upper()}

        async def act(session: AsyncSession) -> Json:
            row = await self._load(session, ref.provider_payment_id, ORDER, lock=True)
            order = row.data
            unit = order["purchase_units"][0]
            authorization = _authorization(order, ref)
            if authorization["status"] == "VOIDED":
                raise ProviderError(
                    "A voided authorization cannot be reauthorized.", code="AUTHORIZATION_VOIDED"
                )
            if authorization["status"] != "CREATED":
                raise ProviderError(
                    "A captured authorization cannot be reauthorized.",
                    code="AUTHORIZATION_ALREADY_CAPTURED",
                )
            code = unit["amount"]["currency_code"]
            _check_same_currency(code, currency, "AUTH_CURRENCY_MISMATCH")
            if amount < 1:
                raise ProviderError(
                    "The amount must be positive.", code="CANNOT_BE_ZERO_OR_NEGATIVE"
                )
            now = _paypal_time(_now())
            renewed: Json = {
                **authorization,
                "id": _paypal_id(),
                "status": "CREATED",
                "amount": {"currency_code": code, "value": format_amount(amount, code)},
                "create_time": now,
                "update_time": now,
            }
            authorization.update(status="VOIDED", update_time=now)
            unit["payments"]["authorizations"].append(renewed)
            order["update_time"] = now
            _save(row, order)
            return _hold_json(_order_hold(order))

        return _hold_from_json(
            await self._call("reauthorize", act, key=idempotency_key, params=params)
        )


# --- pure translations ------------------------------------------------------------------


def _check_payment_method(payment_method: str) -> None:
    if payment_method not in _TEST_CARDS:
        raise ProviderError(f"No such PaymentMethod: '{payment_method}'", code="resource_missing")


def _check_same_currency(theirs: str, ours: str, code: str) -> None:
    if theirs.upper() != ours.upper():
        raise ProviderError(
            f"The currency {ours.upper()} does not match the payment's {theirs.upper()}.",
            code=code,
        )


def _charge(
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
        "payment_method_details": {
            "type": "card",
            "card": {
                "brand": "visa",
                "last4": _TEST_CARDS.get(pm, "0000"),
                "capture_before": int((_now() + STRIPE_AUTHORIZATION_WINDOW).timestamp()),
            },
        },
        "refunded": False,
        "status": status,
    }


def _intent_hold(intent: Mapping[str, Any], charge: Mapping[str, Any]) -> ProviderHold:
    """A PaymentIntent as a ProviderHold, translated as the real Stripe adapter does."""
    status = intent["status"]
    capture_by: datetime | None = None
    failure_message: str | None = None
    capture_id: str | None = None
    if status == "requires_capture":
        state = HoldState.AUTHORIZED
        card = charge["payment_method_details"]["card"]
        capture_by = datetime.fromtimestamp(int(card["capture_before"]), tz=UTC)
    elif status == "succeeded":
        state = HoldState.CAPTURED
        capture_id = str(charge["id"])
    elif status == "requires_payment_method":
        error = intent.get("last_payment_error")
        # A failed attempt: for us the hold failed (a new attempt is a new payment).
        state = HoldState.FAILED if error else HoldState.REQUIRES_PAYMENT_METHOD
        failure_message = str(error["message"]) if error else None
    elif status == "requires_action":
        state = HoldState.REQUIRES_ACTION
    elif status == "canceled":
        state = HoldState.CANCELED
        failure_message = intent.get("cancellation_reason")
    else:
        raise AssertionError(f"the simulator never sets status {status!r}")
    return ProviderHold(
        provider_payment_id=str(intent["id"]),
        state=state,
        amount=int(intent["amount"]),
        currency=str(intent["currency"]).upper(),
        client_secret=intent["client_secret"],
        capture_id=capture_id,
        captured_amount=int(intent["amount_received"]),
        refunded_amount=int(charge.get("amount_refunded") or 0),
        capture_by=capture_by,
        failure_message=failure_message,
    )


def _stripe_transfer(transfer: Mapping[str, Any]) -> ProviderTransfer:
    amount = int(transfer["amount"])
    reversed_in_full = int(transfer["amount_reversed"]) >= amount
    return ProviderTransfer(
        transfer_id=str(transfer["id"]),
        state=TransferState.FAILED if reversed_in_full else TransferState.SUCCEEDED,
        amount=amount,
        currency=str(transfer["currency"]).upper(),
        failure_reason="transfer reversed" if reversed_in_full else None,
    )


def _authorization(order: Mapping[str, Any], ref: HoldRef) -> Json:
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


def _order_hold(order: Mapping[str, Any]) -> ProviderHold:
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
    elif capture is not None:
        state = HoldState.CAPTURED
    else:
        state = HoldState.AUTHORIZED
        capture_by = datetime.fromisoformat(authorization["expiration_time"])
    approve = next(link["href"] for link in order["links"] if link["rel"] == "approve")
    return ProviderHold(
        provider_payment_id=str(order["id"]),
        state=state,
        amount=to_minor(unit["amount"]["value"], currency),
        currency=currency,
        approval_url=approve if state is HoldState.REQUIRES_APPROVAL else None,
        authorization_id=authorization["id"] if authorization else None,
        capture_id=capture["id"] if capture else None,
        captured_amount=to_minor(capture["amount"]["value"], currency) if capture else 0,
        refunded_amount=sum(to_minor(r["amount"]["value"], currency) for r in payments["refunds"]),
        capture_by=capture_by,
        failure_message=failure_message,
    )


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


def paypal_simulator_signature(body: bytes) -> str:
    """The simulator-only PayPal signature of a webhook body (never accepted by the real
    PayPal adapter)."""
    return hmac.new(PAYPAL_SIMULATOR_SIGNATURE_KEY.encode(), body, hashlib.sha256).hexdigest()


def _verify_paypal_event(headers: Mapping[str, str], body: bytes) -> None:
    signature = next(
        (v for k, v in headers.items() if k.lower() == PAYPAL_SIGNATURE_HEADER.lower()), None
    )
    if not signature:
        raise InvalidSignatureError(f"missing {PAYPAL_SIGNATURE_HEADER} header")
    if not hmac.compare_digest(paypal_simulator_signature(body), signature.strip().lower()):
        raise InvalidSignatureError(f"{PAYPAL_SIGNATURE_HEADER} does not match the payload")


def _translate_paypal_event(body: bytes) -> ProviderEvent:
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidSignatureError("body is not JSON") from exc
    if not isinstance(event, dict):
        raise InvalidSignatureError("not a PayPal event")
    # Imported here: the translation module belongs to the PayPal adapter.
    from handwork_payments.providers.paypal_events import translate

    return translate(event)
