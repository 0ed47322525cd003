"""Stripe for real against the double: Connect onboarding (one Express account, the
same one after a lost answer, payouts waiting for Stripe to enable them).

The fixtures and the steps are in conftest.py and harness.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from handwork_payments.models import User, WebhookDelivery
from handwork_payments.webhooks import service as inbox
from tests.helpers import Api
from tests.peers.stripe_double import StripeDouble
from tests.providers.stripe.harness import CONNECT_WEBHOOK_SECRET, PREFIX, deliver, paid_out, signed

# The SDK hands httpx its encoded form as `data=`, which httpx 0.28 deprecates; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content.:DeprecationWarning"
)


# --- against the double: Connect onboarding -------------------------------------------------


async def test_onboarding_creates_one_express_account_and_links_to_it(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    pro = await api.user("worker")

    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    first = r.json()
    account_id = first["account_id"]
    assert account_id.startswith("acct_")
    assert first["url"].startswith(f"https://connect.stripe.com/setup/e/{account_id}/")

    (create,) = double.requests("POST", "/v1/accounts")
    assert create.form == {
        "type": "express",
        "email": pro.email,
        "capabilities[transfers][requested]": "true",
        "metadata[worker_id]": str(pro.id),
        "metadata[reference]": f"{PREFIX}-worker-{pro.id}",
    }
    assert create.idempotency_key == f"{PREFIX}-connect-account-{pro.id}"
    (link,) = double.requests("POST", "/v1/account_links")
    settings = api.runtime.settings
    assert link.form == {
        "account": account_id,
        "refresh_url": settings.stripe_connect_refresh_url,
        "return_url": settings.stripe_connect_return_url,
        "type": "account_onboarding",
    }

    # Asking again (the link expired): the same account, a new link.
    again = (await api.post("/payments/stripe/connect/onboarding", pro)).json()
    assert again["account_id"] == account_id and again["url"] != first["url"]
    assert len(double.accounts) == 1 and len(double.requests("POST", "/v1/accounts")) == 1

    # A client has no payouts.
    client = await api.user("client")
    assert (await api.post("/payments/stripe/connect/onboarding", client)).status_code == 403


async def test_onboarding_after_a_lost_answer_uses_the_same_account(
    dbl: Api, double: StripeDouble
) -> None:
    api = dbl
    pro = await api.user("worker")
    double.hang_next("POST", "/v1/accounts", after_effect=True)

    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 502, r.text
    async with api.runtime.sessions() as session:
        assert (await session.get(User, pro.id)).stripe_account_id is None  # type: ignore[union-attr]

    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    assert len(double.accounts) == 1
    assert r.json()["account_id"] == next(iter(double.accounts))
    keys = [q.idempotency_key for q in double.requests("POST", "/v1/accounts")]
    assert keys == [f"{PREFIX}-connect-account-{pro.id}"] * 2


async def test_payouts_wait_for_stripe_to_enable_them(dbl: Api, double: StripeDouble) -> None:
    api = dbl
    client, pro, payment = await api.held_payment("100.00")
    await api.post(f"/payments/{payment['id']}/release", client)
    r = await api.post("/payments/stripe/connect/onboarding", pro)
    account_id = r.json()["account_id"]

    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "50.00", "payment_method": "stripe"}
    )
    assert r.status_code == 400 and "onboarding" in r.json()["detail"], r.text

    double.accounts[account_id].update(payouts_enabled=True, details_submitted=True)
    # From the Connect endpoint, signed with its own secret; a third secret is refused.
    body, headers, _ = signed("account.updated", dict(double.accounts[account_id]), "whsec_x")
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 400, r.text
    delivery = await deliver(
        api, "account.updated", dict(double.accounts[account_id]), secret=CONNECT_WEBHOOK_SECRET
    )
    assert delivery.status == "processed"
    async with api.runtime.sessions() as session:
        assert (await session.get(User, pro.id)).stripe_payouts_enabled  # type: ignore[union-attr]

    payout = await paid_out(api, pro, "50.00")
    (transfer,) = double.requests("POST", "/v1/transfers")
    assert transfer.form == {
        "amount": "5000",
        "currency": "usd",
        "destination": account_id,
        "transfer_group": f"{PREFIX}-payout-{payout['id']}",
        "metadata[payout_id]": str(payout["id"]),
        "metadata[reference]": f"{PREFIX}-payout-{payout['id']}",
    }
    assert transfer.idempotency_key == f"{PREFIX}-payout-{payout['id']}"
    assert double.account_balances[account_id] == {"usd": 5000}

    # Stripe restricts the account: no more payouts until it enables them again.
    double.accounts[account_id].update(payouts_enabled=False)
    await deliver(api, "account.updated", dict(double.accounts[account_id]))
    r = await api.post(
        "/payments/payouts/request", pro, {"amount": "10.00", "payment_method": "stripe"}
    )
    assert r.status_code == 400, r.text


async def test_onboarding_on_the_simulator(api: Api) -> None:
    """Without STRIPE_SECRET_KEY the same endpoint works on the built-in simulator."""
    from handwork_payments.providers.simulated import STRIPE_CONNECT_LINK_BASE, SimulatedProvider

    pro = await api.user("worker")
    r = await api.post("/payments/stripe/connect/onboarding", pro)
    assert r.status_code == 200, r.text
    account_id = r.json()["account_id"]
    assert account_id.startswith("acct_")
    assert r.json()["url"] == f"{STRIPE_CONNECT_LINK_BASE}/{account_id}"
    again = (await api.post("/payments/stripe/connect/onboarding", pro)).json()
    assert again["account_id"] == account_id

    simulator = api.runtime.providers.stripe
    assert isinstance(simulator, SimulatedProvider)
    account = await simulator.complete_onboarding(account_id)
    body, headers = simulator.stripe_event("account.updated", account)
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200, r.text
    async with api.runtime.sessions() as session:
        delivery = (await session.scalars(select(WebhookDelivery))).one()
    await inbox.process(api.runtime, delivery.id)
    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": account_id},
        headers=pro.headers,
    )
    assert r.json() == {
        "stripe_account_id": account_id,
        "paypal_email": None,
        "stripe_payouts_enabled": True,
    }
