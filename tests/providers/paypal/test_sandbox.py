"""PayPal's own sandbox (PAYPAL_MODE=sandbox and credentials in the environment): the
flows that need no human buyer.

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from handwork_payments.payouts import service as payouts
from handwork_payments.providers.paypal import PayPalProvider
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.faults import payout_row
from tests.helpers import Api
from tests.peers.paypal_double import SpecValidator, ValidatingTransport
from tests.providers.paypal.harness import (
    CANCEL_URL,
    CERT_URL,
    RETURN_URL,
    deliveries,
    event_body,
    execute,
    paypal,
    post_webhook,
    service,
    signed,
    stale,
    throwaway_certificate,
)

# --------------------------------------------------------------------------- PayPal's sandbox

SANDBOX = (
    os.environ.get("PAYPAL_MODE") == "sandbox"
    and bool(os.environ.get("PAYPAL_CLIENT_ID"))
    and bool(os.environ.get("PAYPAL_CLIENT_SECRET"))
)


sandbox_only = pytest.mark.skipif(
    not SANDBOX,
    reason="PayPal sandbox run: set PAYPAL_MODE=sandbox, PAYPAL_CLIENT_ID and "
    "PAYPAL_CLIENT_SECRET (and PAYPAL_WEBHOOK_ID for the webhook check)",
)


@pytest.fixture
async def sandbox(
    runtime: Runtime, database_url: str, paypal_specs: SpecValidator
) -> AsyncIterator[tuple[Api, ValidatingTransport]]:
    """The real service against PayPal's sandbox, every exchange validated against the
    specs on its way (ValidatingTransport). Our ids start at random values: PayPal keeps
    invoice ids and sender_batch_ids of earlier runs on the same sandbox account."""
    settings = make_settings(
        database_url,
        paypal_client_id=os.environ["PAYPAL_CLIENT_ID"],
        paypal_client_secret=os.environ["PAYPAL_CLIENT_SECRET"],
        paypal_mode="sandbox",
        paypal_api_base=None,
        paypal_webhook_id=os.environ.get("PAYPAL_WEBHOOK_ID") or None,
        paypal_webhook_verification="api",
        provider_timeout_seconds=30,
    )
    async with runtime.engine.begin() as conn:
        for sequence in ("payments_id_seq", "worker_payouts_id_seq"):
            start = secrets.randbelow(10**12) + 10**9
            await conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} RESTART WITH {start}")
    built = Runtime.build(settings, database_url)
    transport = ValidatingTransport(paypal_specs)
    built_paypal = built.providers.paypal
    assert isinstance(built_paypal, PayPalProvider)
    await built_paypal.aclose()
    built.providers = replace(
        built.providers,
        paypal=PayPalProvider(settings, transport=transport, ids=built.providers.ids),
    )
    assert isinstance(built.providers.paypal, PayPalProvider)
    assert built.providers.paypal.api_base == "https://api-m.sandbox.paypal.com"
    try:
        async with service(built) as api:
            yield api, transport
    finally:
        await built.aclose()
    assert transport.exchanges > 0
    assert transport.violations == [], "\n".join(transport.violations)


@sandbox_only
async def test_sandbox_order_created_and_paypals_refusal_mapped(
    sandbox: tuple[Api, ValidatingTransport],
) -> None:
    """What runs without a human buyer: the order (our payment id on it, the approval URL
    on paypal.com) and PayPal's refusal to authorise it unapproved, as our {"detail"} with
    PayPal's debug_id."""
    api, transport = sandbox
    client, pro = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, pro, "12.34")
    r = await api.post(
        "/payments/paypal/create",
        client,
        {
            "booking_id": booking["id"],
            "amount": "12.34",
            "currency": "USD",
            "return_url": RETURN_URL,
            "cancel_url": CANCEL_URL,
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    approval = urlsplit(created["approval_url"])
    assert approval.scheme == "https" and (approval.hostname or "").endswith("paypal.com")
    r = await execute(api, client, created)
    assert r.status_code in (400, 409), r.text
    detail = r.json()["detail"]
    assert "debug_id" in detail and ("NOT_APPROVED" in detail or "PAYER_ACTION" in detail)
    assert (await api.get(f"/payments/{created['id']}", client))["status"] == "pending"
    assert transport.exchanges >= 3


@sandbox_only
async def test_sandbox_payouts_in_one_batch_never_paid_twice(
    sandbox: tuple[Api, ValidatingTransport],
) -> None:
    """Two payouts in one real batch (the balance comes from a Stripe-simulated payment:
    PayPal's sandbox buyer cannot approve without a browser), polled, and the batch sent
    again under its key: PayPal answers the same batch."""
    api, transport = sandbox
    client, pro, payment = await api.held_payment("20.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    receiver = os.environ.get("PAYPAL_SANDBOX_RECEIVER", "handwork-sandbox-receiver@example.com")
    r = await api.client.put(
        "/api/v1/payments/payout-methods", json={"paypal_email": receiver}, headers=pro.headers
    )
    assert r.status_code == 200, r.text
    admin = await api.admin()
    ids = []
    for amount in ("1.00", "2.00"):
        r = await api.post(
            "/payments/payouts/request", pro, {"amount": amount, "payment_method": "paypal"}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        await api.post(f"/payments/payouts/{ids[-1]}/process", admin)
    assert await payouts.send_batch(api.runtime, "paypal") == ids
    rows = [await payout_row(api.runtime, i) for i in ids]
    if all(r.status == "failed" for r in rows):
        pytest.skip(f"PayPal refused the payout batch: {rows[0].failure_reason}")
    batch_ids = {r.paypal_batch_id for r in rows}
    assert len(batch_ids) == 1 and None not in batch_ids
    provider = paypal(api)
    again = await provider.send_payout_batch(
        [payouts.order_of(r) for r in rows], batch_key=rows[0].batch_key or ""
    )
    assert {t.batch_id for t in again} == batch_ids
    await asyncio.sleep(5)
    await payouts.resolve_payouts(api.runtime, now=stale(api))
    statuses = [(await payout_row(api.runtime, i)).status for i in ids]
    assert set(statuses) <= {"processing", "completed", "failed"}
    assert transport.violations == []


@sandbox_only
async def test_sandbox_forged_webhook_refused(sandbox: tuple[Api, ValidatingTransport]) -> None:
    api, _transport = sandbox
    if not api.runtime.settings.paypal_webhook_id:
        pytest.skip("PAYPAL_WEBHOOK_ID is not set: PayPal cannot verify webhooks for us")
    key, _ = throwaway_certificate()
    body = event_body("PAYMENT.CAPTURE.COMPLETED", {"id": "FORGED0000000001"})
    headers = signed(key, body, api.runtime.settings.paypal_webhook_id, CERT_URL)
    r = await post_webhook(api, headers, body)
    assert r.status_code == 400, r.text
    assert await deliveries(api.runtime) == []
