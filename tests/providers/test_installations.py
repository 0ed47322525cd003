"""Two installations (two databases, two provider id prefixes) sharing ONE PayPal account and
ONE Stripe account: the PayPal double (every exchange validated against PayPal's specs)
and the Stripe double. Before provider ids were prefixed, both sent `payment-1-hold`,
`connect-account-{worker}`, `payout-1`, `payout-batch-2`: the second installation was
answered with the first one's intent, connected account, transfer and batch, and booked its
worker as paid while the provider held only the other's payout (issue 15)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from handwork_payments import migrate
from handwork_payments.kit.clock import now
from handwork_payments.ledger.verify import verify
from handwork_payments.models import User, WebhookDelivery
from handwork_payments.payouts import service as payouts
from handwork_payments.providers.base import EventKind
from handwork_payments.runtime import Runtime
from handwork_payments.webhooks import service as webhooks
from tests.conftest import make_settings
from tests.database import fresh_database
from tests.faults import payment_row, payout_row
from tests.helpers import Api, Party
from tests.peers.paypal_double import PayPalDouble, SpecValidator, iter_paypal_double
from tests.peers.stripe_double import StripeDouble
from tests.providers.paypal.harness import payouts_to, post_webhook, service

PAYER_ID = "QYR5Z8XDVJNXQ"


@pytest.fixture(scope="module")
def specs() -> SpecValidator:
    return SpecValidator()


@pytest.fixture
def paypal(specs: SpecValidator) -> Iterator[PayPalDouble]:
    yield from iter_paypal_double(specs, stall_seconds=2.0)


@pytest.fixture
def stripe() -> Iterator[StripeDouble]:
    with StripeDouble() as double:
        yield double


@pytest.fixture
def second_database() -> Iterator[str]:
    with fresh_database() as url:
        migrate.upgrade(url)
        yield url


@asynccontextmanager
async def installation(
    url: str, paypal: PayPalDouble, stripe: StripeDouble, prefix: str | None
) -> AsyncIterator[Api]:
    """The service on database `url`, both providers live on the shared doubles; `prefix`
    None: the one this database generated at its first start."""
    overrides: dict[str, Any] = {
        "paypal_client_id": paypal.client_id,
        "paypal_client_secret": paypal.client_secret,
        "paypal_mode": "sandbox",
        "paypal_api_base": paypal.url,
        "paypal_webhook_id": paypal.webhook_id,
        "stripe_secret_key": stripe.secret_key,
        "stripe_api_base": stripe.url,
        "provider_timeout_seconds": 2.0,
    }
    if prefix is not None:
        overrides["provider_id_prefix"] = prefix
    built = Runtime.build(make_settings(url, **overrides), url)
    try:
        async with service(built) as api:
            yield api
    finally:
        await built.aclose()


async def pays_out(api: Api, paypal: PayPalDouble, email: str) -> tuple[Party, list[int]]:
    """The same story in each installation: a Stripe payment of 100.00 released to a worker
    (95.00), who onboards with Stripe Connect and sets a PayPal email; payout #1 (Stripe,
    40.00) and payout #2 (PayPal, 30.00) requested, processed and sent."""
    client, pro, payment = await api.held_payment("100.00")
    r = await api.post(f"/payments/{payment['id']}/release", client)
    assert r.status_code == 200, r.text
    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session, session.begin():
        # What account.updated would say (not what this test is about).
        await session.execute(
            update(User).where(User.id == pro.id).values(stripe_payouts_enabled=True)
        )
    r = await api.client.put(
        "/api/v1/payments/payout-methods", json={"paypal_email": email}, headers=pro.headers
    )
    assert r.status_code == 200, r.text
    admin = await api.admin()
    ids = []
    for amount, method in (("40.00", "stripe"), ("30.00", "paypal")):
        r = await api.post(
            "/payments/payouts/request", pro, {"amount": amount, "payment_method": method}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        r = await api.post(f"/payments/payouts/{ids[-1]}/process", admin)
        assert r.status_code == 200, r.text
    await payouts.send(api.runtime, ids[0])
    assert await payouts.send_batch(api.runtime, "paypal") == [ids[1]]
    return pro, ids


async def test_two_installations_on_one_provider_account_each_pay_their_own_payout_1(
    runtime: Runtime,
    database_url: str,
    second_database: str,
    paypal: PayPalDouble,
    stripe: StripeDouble,
) -> None:
    async with (
        installation(database_url, paypal, stripe, "staging") as a,
        installation(second_database, paypal, stripe, None) as b,
    ):
        pro_a, ids_a = await pays_out(a, paypal, "worker-a@example.com")
        pro_b, ids_b = await pays_out(b, paypal, "worker-b@example.com")
        assert ids_a == ids_b == [1, 2]  # the same local ids in both databases

        # Two intents, two connected accounts, two transfers, two batches at the providers.
        assert len(stripe.intents) == 2 and len(stripe.accounts) == 2
        assert len(stripe.transfers) == 2 and len(paypal.batches) == 2
        rows_a = [await payout_row(a.runtime, i) for i in ids_a]
        rows_b = [await payout_row(b.runtime, i) for i in ids_b]
        assert rows_a[0].stripe_transfer_id != rows_b[0].stripe_transfer_id
        for stripe_row in (rows_a[0], rows_b[0]):
            transfer = stripe.transfers[stripe_row.stripe_transfer_id]
            assert (transfer["amount"], transfer["destination"]) == (4000, stripe_row.destination)
        assert rows_a[1].paypal_batch_id != rows_b[1].paypal_batch_id
        senders = sorted(item["payout_item"]["sender_item_id"] for item in paypal.items.values())
        assert senders == sorted(["staging-payout-2", f"{b.runtime.providers.ids.prefix}-payout-2"])

        # B's prefix was generated at its first start and kept in its database.
        assert b.runtime.providers.ids.prefix.startswith("hw")
        assert b.runtime.providers.ids.prefix != a.runtime.providers.ids.prefix

        # PayPal pays both batches; each installation settles its own item.
        paypal.process_payouts()
        later = now() + timedelta(seconds=a.runtime.settings.provider_operation_stale_seconds + 1)
        for api, rows in ((a, rows_a), (b, rows_b)):
            await payouts.resolve_payouts(api.runtime, now=later)
            settled = [await payout_row(api.runtime, r.id) for r in rows]
            assert [p.status for p in settled] == ["completed", "completed"]
            item = paypal.items[settled[1].paypal_payout_id]
            assert item["payout_item"]["receiver"] == settled[1].destination
        for api, pro in ((a, pro_a), (b, pro_b)):
            earnings = await api.earnings(pro)
            assert (earnings["available_balance"], earnings["total_paid_out"]) == (
                "25.00",
                "70.00",
            )

        # A's item webhook reaches B too (one PayPal account, every webhook): B records it
        # as another installation's and applies nothing.
        a_item = paypal.items[rows_a[1].paypal_payout_id or ""]
        headers, body = paypal.deliver(
            "PAYMENT.PAYOUTS-ITEM.RETURNED",
            {
                **paypal.payout_item_resource(a_item["payout_item_id"]),
                "transaction_status": "RETURNED",
            },
        )
        r = await post_webhook(b, headers, body)
        assert r.status_code == 200, r.text
        async with b.runtime.sessions() as session:
            stored = await session.scalar(
                select(WebhookDelivery).where(WebhookDelivery.event_id == json.loads(body)["id"])
            )
        assert stored is not None
        event = await b.runtime.providers.paypal.translate_event(body)
        assert event.kind is EventKind.IGNORED and event.payout_id is None
        assert "another installation" in (event.failure_message or "")
        await webhooks.process(b.runtime, stored.id)
        assert (await payout_row(b.runtime, ids_b[1])).status == "completed"

        async with b.runtime.sessions() as session:
            assert await verify(session) == []
    assert_validated(paypal)


def assert_validated(paypal: PayPalDouble) -> None:
    """Every exchange with the PayPal double validated against PayPal's specs (when they
    are there: the validator says so loudly otherwise), and none broke them."""
    if paypal.validator is not None and paypal.validator.enabled:
        assert paypal.validated == len(paypal.calls) > 0
    assert paypal.violations == []


async def test_paypal_answers_each_installation_with_its_own_order_and_batch(
    runtime: Runtime,
    database_url: str,
    second_database: str,
    paypal: PayPalDouble,
    stripe: StripeDouble,
) -> None:
    """The issue's report, step by step: B's payment #1 was attached to A's PayPal order
    and B's payout was completed with A's batch, B's worker never paid."""
    async with (
        installation(database_url, paypal, stripe, "prod") as a,
        installation(second_database, paypal, stripe, "staging") as b,
    ):
        _, _, [payout_a] = await payouts_to(a, paypal, [("a@example.com", "10.00")])
        _, _, [payout_b] = await payouts_to(b, paypal, [("b@example.com", "10.00")])
        assert payout_a["id"] == payout_b["id"]
        order_a = (await payment_row(a.runtime, 1)).paypal_payment_id
        order_b = (await payment_row(b.runtime, 1)).paypal_payment_id
        assert order_a != order_b and len(paypal.orders) == 2
        for api in (a, b):
            assert await payouts.send_batch(api.runtime, "paypal") == [payout_a["id"]]
        assert len(paypal.batches) == 2
        paypal.process_payouts()
        later = now() + timedelta(seconds=a.runtime.settings.provider_operation_stale_seconds + 1)
        for api, email in ((a, "a@example.com"), (b, "b@example.com")):
            await payouts.resolve_payouts(api.runtime, now=later)
            row = await payout_row(api.runtime, payout_a["id"])
            assert row.status == "completed"
            assert paypal.items[row.paypal_payout_id or ""]["payout_item"]["receiver"] == email
    assert_validated(paypal)
