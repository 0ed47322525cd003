"""Provider modes: once a provider is live, one without credentials is disabled, never
silently simulated (issue 9, critical: simulated Stripe money paid out through live PayPal)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from handwork_payments.app import create_app
from handwork_payments.models import Payment, WorkerPayout
from handwork_payments.providers import (
    DisabledProvider,
    ProviderNotConfigured,
    provider_modes,
)
from handwork_payments.runtime import Runtime
from tests.conftest import make_settings
from tests.helpers import Api

PAYPAL_CREDENTIALS = {"paypal_client_id": "client-id", "paypal_client_secret": "client-secret"}


def modes(**overrides: Any) -> dict[str, str]:
    return dict(provider_modes(make_settings("postgresql://unused/db", **overrides)))


def test_no_credentials_simulates_both() -> None:
    assert modes() == {"stripe": "simulated", "paypal": "simulated"}


def test_one_live_provider_disables_the_other() -> None:
    assert modes(**PAYPAL_CREDENTIALS) == {"stripe": "disabled", "paypal": "live"}
    assert modes(stripe_secret_key="sk_test_x") == {"stripe": "live", "paypal": "disabled"}


def test_only_allow_simulated_providers_brings_the_mixed_mode_back() -> None:
    assert modes(allow_simulated_providers=True, **PAYPAL_CREDENTIALS) == {
        "stripe": "simulated",
        "paypal": "live",
    }


def test_both_live() -> None:
    both = modes(stripe_secret_key="sk_test_x", **PAYPAL_CREDENTIALS)
    assert both == {"stripe": "live", "paypal": "live"}


@pytest.fixture
async def paypal_only(runtime: Runtime, database_url: str) -> AsyncIterator[Api]:
    """PayPal credentials set, Stripe's not (`runtime`: clean tables, ledger checked)."""
    built = Runtime.build(make_settings(database_url, **PAYPAL_CREDENTIALS), database_url)
    transport = httpx.ASGITransport(app=create_app(built))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Api(http, built)
    finally:
        await built.aclose()


def simulator_paths(app: FastAPI) -> list[str]:
    return [path for path in app.openapi()["paths"] if path.startswith("/api/v1/simulator")]


async def count(runtime: Runtime, model: Any) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_simulated_stripe_money_cannot_reach_live_paypal(paypal_only: Api) -> None:
    """The attack: pay through the Stripe simulator, release, ask a PayPal payout."""
    api = paypal_only
    assert isinstance(api.runtime.providers.stripe, DisabledProvider)
    health = await api.client.get("/health")
    assert health.json()["providers"] == {"stripe": "disabled", "paypal": "live"}
    assert not [p for p in simulator_paths(create_app(api.runtime))]
    # Mounted, this would be a 422 (no token given).
    assert (await api.client.get("/api/v1/simulator/paypal/checkoutnow")).status_code == 404

    client, worker = await api.user("client"), await api.user("worker")
    booking = await api.booking(client, worker, "500.00")
    not_configured = {"detail": "stripe is not configured"}
    r = await api.stripe_payment(client, booking)
    assert (r.status_code, r.json()) == (400, not_configured)
    r = await api.post(
        "/payments/stripe/confirm",
        client,
        {"payment_intent_id": "pi_simulated_1", "booking_id": booking["id"]},
    )
    assert (r.status_code, r.json()) == (400, not_configured)
    assert await count(api.runtime, Payment) == 0

    r = await api.client.put(
        "/api/v1/payments/payout-methods",
        json={"stripe_account_id": "acct_123"},
        headers=worker.headers,
    )
    assert (r.status_code, r.json()) == (400, not_configured)
    r = await api.post("/payments/stripe/connect/onboarding", worker)
    assert (r.status_code, r.json()) == (400, not_configured)
    r = await api.post(
        "/payments/payouts/request",
        worker,
        {"amount": "475.00", "currency": "USD", "payment_method": "stripe"},
    )
    assert (r.status_code, r.json()) == (400, not_configured)
    assert await count(api.runtime, WorkerPayout) == 0
    r = await api.client.post("/api/v1/payments/webhooks/stripe", content=b"{}")
    assert (r.status_code, r.json()) == (400, not_configured)


async def test_for_method_refuses_a_disabled_provider(paypal_only: Api) -> None:
    with pytest.raises(ProviderNotConfigured, match=r"^stripe is not configured$"):
        paypal_only.runtime.providers.for_method("stripe")
    with pytest.raises(ProviderNotConfigured):
        await paypal_only.runtime.providers.stripe.send_payout(None)  # type: ignore[arg-type]
    assert paypal_only.runtime.providers.for_method("paypal").live


async def test_the_mixed_mode_is_announced(
    runtime: Runtime, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handwork_payments.providers")
    settings = make_settings(database_url, allow_simulated_providers=True, **PAYPAL_CREDENTIALS)
    built = Runtime.build(settings, database_url)
    try:
        assert built.providers.modes() == {"stripe": "simulated", "paypal": "live"}
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            "ALLOW_SIMULATED_PROVIDERS=true" in m and "stripe is simulated" in m for m in warnings
        ), warnings
        assert "/api/v1/simulator/stripe/payment_intents/{intent_id}" in simulator_paths(
            create_app(built)
        )
    finally:
        await built.aclose()


async def test_background_jobs_skip_a_disabled_provider(paypal_only: Api) -> None:
    """The periodic payout jobs go over every method: a disabled one is not an error."""
    from handwork_payments.kit.clock import now
    from handwork_payments.payouts import service as payouts

    assert await payouts.send_batch(paypal_only.runtime, "stripe") == []
    await payouts.resolve_payouts(paypal_only.runtime, now=now())


async def test_a_stripe_only_deployment_refuses_paypal(runtime: Runtime, database_url: str) -> None:
    settings = make_settings(database_url, stripe_secret_key="sk_test_not_used")
    built = Runtime.build(settings, database_url)
    transport = httpx.ASGITransport(app=create_app(built))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            api = Api(http, built)
            assert (await http.get("/health")).json()["providers"] == {
                "stripe": "live",
                "paypal": "disabled",
            }
            client, worker = await api.user("client"), await api.user("worker")
            booking = await api.booking(client, worker)
            not_configured = (400, {"detail": "paypal is not configured"})
            r = await api.post(
                "/payments/paypal/create",
                client,
                {
                    "booking_id": booking["id"],
                    "amount": "150.00",
                    "currency": "USD",
                    "return_url": "https://shop.example/return",
                    "cancel_url": "https://shop.example/cancel",
                },
            )
            assert (r.status_code, r.json()) == not_configured
            r = await api.post(
                "/payments/paypal/execute",
                client,
                {"payment_id": "ORDER1", "payer_id": "PAYER1", "booking_id": booking["id"]},
            )
            assert (r.status_code, r.json()) == not_configured
            r = await http.put(
                "/api/v1/payments/payout-methods",
                json={"paypal_email": "w@example.com"},
                headers=worker.headers,
            )
            assert (r.status_code, r.json()) == not_configured
            r = await api.post(
                "/payments/payouts/request",
                worker,
                {"amount": "1.00", "currency": "USD", "payment_method": "paypal"},
            )
            assert (r.status_code, r.json()) == not_configured
            r = await http.post("/api/v1/payments/webhooks/paypal", json={"id": "WH-1"})
            assert (r.status_code, r.json()) == not_configured
            assert await count(built, Payment) == 0
    finally:
        await built.aclose()
