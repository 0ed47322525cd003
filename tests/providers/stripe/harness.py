"""The Stripe integration suite's peers, runtimes and steps: rows read back, refunds
asked, events signed and delivered, workers onboarded and paid out."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from handwork_payments.app import create_app
from handwork_payments.models import Alert, JournalEntry, Payment, PayoutReversal, WebhookDelivery
from handwork_payments.payouts import service as payouts_service
from handwork_payments.providers import stripe_events
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as inbox
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import Api, Party
from tests.peers.localstripe_server import LocalStripe
from tests.peers.stripe_double import StripeDouble

_ENV_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
# Only a test-mode key ever sends these tests to Stripe: a live key is ignored.
STRIPE_TEST_MODE = _ENV_KEY.startswith("sk_test_")

PM_CHARGE_FAILS = "pm_card_chargeCustomerFail"  # 4000000000000341: attaches, then declines
CARD_3DS = "4000002500003155"  # needs 3-D Secure for a one-off payment
PM_3DS_STRIPE = "pm_card_authenticationRequiredOnSetup"  # the same card in Stripe test mode
# The signing secret of the Connect endpoint (events on connected accounts).
CONNECT_WEBHOOK_SECRET = "whsec_test_connect_endpoint"
# Starts every id the service sends Stripe (PROVIDER_ID_PREFIX); a new one per run, as real
# Stripe test mode remembers idempotency keys for a day.
PREFIX = "hwst" + uuid.uuid4().hex[:8]


# --- peers and runtimes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str
    secret_key: str
    api_base: str | None
    localstripe: LocalStripe | None = None


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """Print past pytest's capture, so every run says which Stripe it talked to."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line(f"\n{line}")


@contextlib.asynccontextmanager
async def api_for(runtime: Runtime) -> AsyncIterator[Api]:
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, runtime)


# --- helpers -----------------------------------------------------------------------------------


async def payment_row(api: Api, payment_id: int) -> Payment:
    async with api.runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        return payment


async def entry_kinds(api: Api, payment_id: int) -> list[str]:
    async with api.runtime.sessions() as session:
        rows = await session.scalars(
            select(JournalEntry.kind)
            .where(JournalEntry.payment_id == payment_id)
            .order_by(JournalEntry.id)
        )
        return list(rows)


async def alerts(api: Api, kind: str) -> list[Alert]:
    async with api.runtime.sessions() as session:
        return list(await session.scalars(select(Alert).where(Alert.kind == kind)))


async def refund(api: Api, admin: Party, payment_id: int, amount: str | None = None) -> Any:
    body: dict[str, Any] = {"payment_id": payment_id, "reason": "Client asked"}
    if amount is not None:
        body["amount"] = amount
    r = await api.post("/payments/refund", admin, body)
    assert r.status_code == 200, r.text
    return r.json()


def signed(
    event_type: str, obj: dict[str, Any], secret: str = TEST_WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str], str]:
    event_id = f"evt_{secrets.token_hex(8)}"
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Stripe-Signature": stripe_events.sign(body, secret),
    }
    return body, headers, event_id


async def deliver(
    api: Api,
    event_type: str,
    obj: dict[str, Any],
    *,
    retried: bool = False,
    secret: str = TEST_WEBHOOK_SECRET,
) -> WebhookDelivery:
    """Post an event signed with our test secret to our endpoint and process the stored
    delivery as the worker would. `retried`: processing must fail for a retry."""
    body, headers, event_id = signed(event_type, obj, secret)
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session:
        delivery = (
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
            )
        ).one()
    try:
        await inbox.process(api.runtime, delivery.id)
    except Exception:
        # The inbox records the failure for a retry (and may re-raise it for the job).
        if not retried:
            raise
    async with api.runtime.sessions() as session:
        stored = await session.get(WebhookDelivery, delivery.id)
        assert stored is not None
    if retried:
        assert stored.status == "failed" and "in flight" in (stored.last_error or ""), stored
    else:
        assert stored.status == "processed", stored.last_error
    return stored


def intent_event(double: StripeDouble, intent_id: str, **changes: Any) -> dict[str, Any]:
    return {**double.intents[intent_id], **changes}


def charge_of(double: StripeDouble, intent_id: str) -> dict[str, Any]:
    return dict(double.charges[double.intents[intent_id]["latest_charge"]])


def dispute_object(
    double: StripeDouble, intent_id: str, amount: int, status: str, dispute_id: str
) -> dict[str, Any]:
    charge = charge_of(double, intent_id)
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "charge": charge["id"],
        "currency": charge["currency"],
        "payment_intent": intent_id,
        "reason": "fraudulent",
        "status": status,
        "created": int(time.time()),
        "livemode": False,
    }


async def onboarded(api: Api, double: StripeDouble, worker: Party) -> str:
    """The worker's Express account through our endpoint, with payouts enabled by Stripe
    (the double's account updated, and its account.updated delivered)."""
    r = await api.post("/payments/stripe/connect/onboarding", worker)
    assert r.status_code == 200, r.text
    account_id: str = r.json()["account_id"]
    double.accounts[account_id].update(
        payouts_enabled=True, charges_enabled=True, details_submitted=True
    )
    delivery = await deliver(
        api, "account.updated", dict(double.accounts[account_id]), secret=CONNECT_WEBHOOK_SECRET
    )
    assert delivery.status == "processed"
    return account_id


async def paid_out(api: Api, worker: Party, amount: str) -> dict[str, Any]:
    """A Stripe payout of `amount`, requested, processed by an admin and sent (the job's
    work, run here)."""
    r = await api.post(
        "/payments/payouts/request", worker, {"amount": amount, "payment_method": "stripe"}
    )
    assert r.status_code == 201, r.text
    payout_id = r.json()["id"]
    admin = await api.admin()
    r = await api.post(f"/payments/payouts/{payout_id}/process", admin)
    assert r.status_code == 200, r.text
    await payouts_service.send(api.runtime, payout_id)
    items = (await api.get("/payments/payouts", worker))["items"]
    payout: dict[str, Any] = next(p for p in items if p["id"] == payout_id)
    assert payout["status"] == "completed", payout
    return payout


async def reversals_of(api: Api, payout_id: int) -> list[PayoutReversal]:
    async with api.runtime.sessions() as session:
        return list(
            await session.scalars(
                select(PayoutReversal)
                .where(PayoutReversal.payout_id == payout_id)
                .order_by(PayoutReversal.id)
            )
        )
